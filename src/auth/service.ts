import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import {
  AclGroup,
  decide,
  knownGroups,
  isAdmin,
  isGlobalPermission,
  PrincipalKind,
  relevantGrantKeys,
  scopeOf,
  subjectOf,
  type AccessRequest,
  type Subject,
} from '../core/acl.js';
import type { Clock } from '../core/clock.js';
import { IorioError } from '../core/errors.js';
import { checkName } from '../core/names.js';
import { nameBytesMax, sessionGenerationBytes } from '../core/limits.js';
import type { MetaStore } from '../store/meta.js';
import { describeResource, parseGrantChange } from './access.js';
import type { GrantTable } from './grants.js';
import type { LoginThrottle } from './login-throttle.js';
import { checkPassword, type Passwords } from './passwords.js';
import type { SessionClaims, Sessions } from './sessions.js';
import type { GroupTable } from './groups.js';
import type { AccessListing, Auth, GrantChange, GroupDetails, GroupSummary, Permission } from './types.js';
import type { UserRecord, UserTable } from './users.js';

/** What every user owns in its own bucket `<prefix><username>`. */
export const userBucketPermissions: readonly Permission[] = ['delete', 'get', 'grant', 'list', 'put'];
/** The default of auth.permission.user.bucket.prefix (IorioDB's, rel/files/iorio.schema). */
export const defaultUserBucketPrefix = '_user_';

export function userBucketOf(username: string, prefix: string = defaultUserBucketPrefix): string {
  return prefix + username;
}

export interface AuthServiceOptions {
  readonly meta: MetaStore;
  readonly users: UserTable;
  readonly grants: GrantTable;
  readonly groups: GroupTable;
  readonly passwords: Passwords;
  readonly sessions: Sessions;
  readonly throttle: LoginThrottle;
  readonly clock: Clock;
  /** Source of session generations (crypto.randomBytes in a node). */
  readonly randomBytes: (size: number) => Buffer;
  readonly logger: Logger;
  readonly adminUsername: string;
  /** The built-in default of auth.admin.password: the admin keeping it is warned about. */
  readonly defaultAdminPassword: string;
  readonly anonymousUsername: string;
  /**
   * auth.anon.password: the password the anonymous user may log in with
   * (IorioDB creates it with one, iorio_app.erl:66-68); '' = it cannot.
   */
  readonly anonymousPassword: string;
  readonly userHasBucket: boolean;
  /** auth.permission.user.bucket.prefix. */
  readonly userBucketPrefix: string;
}

/** Entries each in-memory cache holds before it starts over. */
const tokenCacheEntriesMax = 10_000;
const userCacheEntriesMax = 10_000;
const decisionCacheEntriesMax = 100_000;

/**
 * The auth service on lmdb. Every change is one lmdb transaction that
 * re-reads what it depends on and decides before writing (lmdb does not roll
 * back a transaction whose callback throws).
 *
 * Checks run on every request, so verified tokens, users and access
 * decisions are cached in memory. Every change to users or grants goes
 * through this service and drops the caches (`invalidateCaches`), so a
 * check never sees a revoked grant or a deleted user; an expired token is
 * refused from the cache by its own `exp`. A token is checked against its
 * user's current session generation on every call (one string comparison
 * with the cached user), so a password change, a revoke or a delete ends
 * its sessions at once.
 */
export class AuthService implements Auth {
  readonly anonymousUsername: string;
  private readonly options: AuthServiceOptions;
  private readonly logger: Logger;
  private readonly tokens = new Map<string, SessionClaims>();
  private readonly users = new Map<string, UserRecord | null>();
  private readonly decisions = new Map<string, boolean>();
  /** The last answer of adminPasswordIsDefault, for the admin hash it was computed from (bcrypt is slow). */
  private defaultAdminCheck: { hash: string; isDefault: boolean } | undefined;

  constructor(options: AuthServiceOptions) {
    this.options = options;
    this.anonymousUsername = options.anonymousUsername;
    this.logger = options.logger;
    // Users and grants changed on another node of the cluster, or its session secret adopted here.
    this.offRemote = options.meta.changes.onRemote(() => this.invalidateCaches());
    this.offSecret = options.meta.changes.onSecret((secret) => {
      options.sessions.replaceSecret(secret);
      this.tokens.clear();
      this.invalidateCaches();
    });
  }

  private readonly offRemote: () => void;
  private readonly offSecret: () => void;

  private changes = 0;

  get generation(): number {
    return this.changes;
  }

  /** Drops every cached user and decision (tokens stay: their user is re-checked). */
  invalidateCaches(): void {
    this.changes++;
    this.users.clear();
    this.decisions.clear();
  }

  /** One lmdb transaction; the caches are dropped once it has committed, before the caller answers. */
  private async write<T>(body: () => T): Promise<T> {
    try {
      return await this.options.meta.root.transaction(body);
    } finally {
      this.invalidateCaches();
    }
  }

  private cachedUser(username: string): UserRecord | undefined {
    const cached = this.users.get(username);
    if (cached !== undefined) return cached ?? undefined;
    const user = this.options.users.get(username);
    if (this.users.size >= userCacheEntriesMax) this.users.clear();
    this.users.set(username, user ?? null);
    return user;
  }

  // -------------------------------------------------------------------------
  // Sessions

  async login(username: string, password: string, clientAddress: string): Promise<string> {
    const { users, passwords, sessions, clock, throttle } = this.options;
    // Before the password is looked at: a throttled guess costs no bcrypt and learns nothing.
    const attempt = throttle.admit(username, clientAddress);
    if (username === this.anonymousUsername && this.options.anonymousPassword !== '') {
      return this.loginAnonymous(password, attempt, clientAddress);
    }
    const user = username === this.anonymousUsername ? undefined : users.get(username);
    let matches: boolean;
    try {
      matches = await passwords.verify(typeof password === 'string' ? password : '', user?.passwordHash);
    } catch (error) {
      attempt.abandoned();
      throw error;
    }
    if (user === undefined || !matches) {
      const reached = attempt.failed();
      const shownName = typeof username === 'string' ? username.slice(0, 128) : undefined;
      this.logger.info({ username: shownName, clientAddress }, 'login refused');
      if (reached.length > 0) this.logger.warn({ username: shownName, clientAddress, throttled: reached }, 'too many failed logins: throttling');
      throw new IorioError('unauthorized', 'wrong username or password');
    }
    attempt.succeeded();
    if (passwords.needsRehash(user.passwordHash)) await this.rehash(user, password);
    return sessions.sign(user.username, user.sessionGeneration, clock.now());
  }

  /** The anonymous user's login (auth.anon.password set): a token that acts as anonymous, nothing more. */
  private loginAnonymous(password: string, attempt: ReturnType<LoginThrottle['admit']>, clientAddress: string): string {
    const expected = Buffer.from(this.options.anonymousPassword, 'utf8');
    const given = Buffer.from(typeof password === 'string' ? password : '', 'utf8');
    const user = this.options.users.get(this.anonymousUsername);
    if (user === undefined || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      attempt.failed();
      this.logger.info({ username: this.anonymousUsername, clientAddress }, 'login refused');
      throw new IorioError('unauthorized', 'wrong username or password');
    }
    attempt.succeeded();
    return this.options.sessions.sign(user.username, user.sessionGeneration, this.options.clock.now());
  }

  verifyToken(token: string): string {
    const nowMs = this.options.clock.now();
    let claims = this.tokens.get(token);
    if (claims === undefined || claims.expiresAtSec <= Math.floor(nowMs / 1000)) {
      claims = this.options.sessions.verify(token, nowMs);
      if (this.tokens.size >= tokenCacheEntriesMax) this.tokens.clear();
      this.tokens.set(token, claims);
    }
    const user = this.cachedUser(claims.username);
    if (user === undefined || (user.username === this.anonymousUsername && this.options.anonymousPassword === '')) {
      throw new IorioError('unauthorized', 'the session user does not exist');
    }
    // Another generation: the password changed, the sessions were revoked, or the name now belongs to a new user.
    if (claims.generation !== user.sessionGeneration) throw new IorioError('unauthorized', 'session ended: log in again');
    return user.username;
  }

  async revokeSessions(actor: string, username: string): Promise<void> {
    checkName('user', username);
    const target = this.authorizeUserChange(actor, username, 'end the sessions of');
    if (target.username === this.anonymousUsername) {
      throw new IorioError('invalid-param', `${username} is the anonymous user and has no sessions`);
    }
    const sessionGeneration = this.newSessionGeneration();
    const revoked = await this.write(() => {
      const current = this.options.users.get(username);
      if (current === undefined) return false;
      this.options.users.putSync({ ...current, sessionGeneration });
      return true;
    });
    if (!revoked) throw unknownUser(username);
    this.logger.info({ actor, username }, 'sessions revoked');
  }

  /** A fresh random session generation: tokens of any earlier one no longer fit. */
  newSessionGeneration(): string {
    return this.options.randomBytes(sessionGenerationBytes).toString('base64url');
  }

  async adminPasswordIsDefault(): Promise<boolean> {
    const admin = this.options.users.get(this.options.adminUsername);
    if (admin === undefined) return false;
    const known = this.defaultAdminCheck;
    if (known !== undefined && known.hash === admin.passwordHash) return known.isDefault;
    const isDefault = await this.options.passwords.verify(this.options.defaultAdminPassword, admin.passwordHash);
    this.defaultAdminCheck = { hash: admin.passwordHash, isDefault };
    return isDefault;
  }

  close(): Promise<void> {
    this.offRemote();
    this.offSecret();
    return this.options.passwords.close();
  }

  // -------------------------------------------------------------------------
  // Permission checks

  check(username: string, permission: Permission, bucket?: string, stream?: string): void {
    if (!this.can(username, permission, bucket, stream)) {
      throw new IorioError('no-perm', `${username} may not ${permission} ${describeResource(bucket, stream)}`);
    }
  }

  can(username: string, permission: Permission, bucket?: string, stream?: string): boolean {
    const key = `${username}\u0000${permission}\u0000${bucket ?? ''}\u0000${stream ?? ''}\u0000${bucket === undefined ? 0 : 1}${stream === undefined ? 0 : 1}`;
    const cached = this.decisions.get(key);
    if (cached !== undefined) return cached;
    const allowed = this.decide(username, permission, bucket, stream);
    if (this.decisions.size >= decisionCacheEntriesMax) this.decisions.clear();
    this.decisions.set(key, allowed);
    return allowed;
  }

  private decide(username: string, permission: Permission, bucket?: string, stream?: string): boolean {
    if (bucket !== undefined) checkName('bucket', bucket);
    if (stream !== undefined) checkName('stream', stream);
    if (stream !== undefined && bucket === undefined) throw new IorioError('invalid-param', 'a stream needs its bucket');
    const subject = this.subject(username);
    if (subject === undefined) return false;
    const request: AccessRequest = { permission, bucket, stream };
    return decide(subject, request, this.options.grants.fetch(relevantGrantKeys(subject, request))).allowed;
  }

  canListSomewhere(username: string): boolean {
    const key = `${username}\u0000list-somewhere`;
    const cached = this.decisions.get(key);
    if (cached !== undefined) return cached;
    const subject = this.subject(username);
    const allowed =
      subject !== undefined &&
      (isAdmin(subject) ||
        this.options.grants.some(
          (grant) =>
            grant.permissions.includes('list') &&
            (grant.kind === PrincipalKind.user ? grant.principal === subject.username : subject.groups.includes(grant.principal)),
        ));
    if (this.decisions.size >= decisionCacheEntriesMax) this.decisions.clear();
    this.decisions.set(key, allowed);
    return allowed;
  }

  userBucketOf(username: string): string {
    return userBucketOf(username, this.options.userBucketPrefix);
  }

  userExists(username: string): boolean {
    return this.options.users.exists(username);
  }

  // -------------------------------------------------------------------------
  // Users

  async createUser(actor: string, username: string, password: string): Promise<void> {
    this.check(actor, 'adminusers');
    this.checkNewUsername(username);
    checkPassword(password);
    if (this.options.users.exists(username)) throw conflictUser(username);
    const passwordHash = await this.options.passwords.hash(password);
    const user: UserRecord = {
      username,
      passwordHash,
      groups: [],
      createdMs: this.options.clock.now(),
      sessionGeneration: this.newSessionGeneration(),
    };
    const created = await this.write(() => this.insertUserSync(user));
    if (!created) throw conflictUser(username);
    this.logger.info({ actor, username }, 'user created');
  }

  async changePassword(actor: string, username: string, password: string): Promise<void> {
    checkName('user', username);
    const target = this.authorizeUserChange(actor, username, 'change the password of');
    if (target.username === this.anonymousUsername) {
      throw new IorioError('invalid-param', `${username} is the anonymous user and has no password`);
    }
    checkPassword(password);
    const passwordHash = await this.options.passwords.hash(password);
    // Whoever had the old password may hold a token: every earlier session ends with it.
    const sessionGeneration = this.newSessionGeneration();
    const changed = await this.write(() => {
      const current = this.options.users.get(username);
      if (current === undefined) return false;
      this.options.users.putSync({ ...current, passwordHash, sessionGeneration });
      return true;
    });
    if (!changed) throw unknownUser(username);
    this.logger.info({ actor, username }, 'password changed, earlier sessions ended');
  }

  async deleteUser(actor: string, username: string): Promise<void> {
    checkName('user', username);
    this.authorizeUserChange(actor, username, 'delete', { selfAllowed: false });
    if (username === this.options.adminUsername) {
      throw new IorioError('invalid-param', `${username} is the configured admin user (auth.admin.username) and cannot be deleted`);
    }
    if (username === this.anonymousUsername) {
      throw new IorioError('invalid-param', `${username} is the anonymous user (auth.anonymous.username) and cannot be deleted`);
    }
    const removedGrants = await this.write(() => {
      if (!this.options.users.removeSync(username)) return undefined;
      return this.options.grants.removePrincipalSync(PrincipalKind.user, username);
    });
    if (removedGrants === undefined) throw unknownUser(username);
    this.logger.info({ actor, username, removedGrants }, 'user deleted');
  }

  listUsers(actor: string): { username: string }[] {
    this.check(actor, 'adminusers');
    return this.options.users.list().map((user) => ({ username: user.username }));
  }

  // -------------------------------------------------------------------------
  // Grants

  async changeAccess(actor: string, bucket: string | undefined, stream: string | undefined, change: GrantChange): Promise<void> {
    if (bucket !== undefined) checkName('bucket', bucket);
    if (stream !== undefined && bucket === undefined) throw new IorioError('invalid-param', 'a stream needs its bucket');
    if (stream !== undefined) checkName('stream', stream);
    const parsed = parseGrantChange(change, (name) => this.options.users.exists(name), (name) => this.groupExists(name));
    this.authorizeGrant(actor, parsed.permission, bucket, stream);
    const key = { scope: scopeOf(parsed.permission, bucket, stream), kind: parsed.kind, principal: parsed.principal };
    const applied = await this.write(() => {
      if (parsed.kind === PrincipalKind.user && !this.options.users.exists(parsed.principal)) return false;
      this.options.grants.changeSync(key, [parsed.permission], parsed.action);
      return true;
    });
    if (!applied) throw unknownUser(parsed.principal);
    this.logger.info({ actor, ...parsed, bucket: key.scope.bucket, stream: key.scope.stream }, 'access changed');
  }

  listAccess(actor: string, bucket: string | undefined, stream: string | undefined): AccessListing {
    if (bucket !== undefined) checkName('bucket', bucket);
    if (stream !== undefined && bucket === undefined) throw new IorioError('invalid-param', 'a stream needs its bucket');
    if (stream !== undefined) checkName('stream', stream);
    // The global scope holds adminusers and viewstats: who has them is an admin's business.
    if (bucket === undefined) this.check(actor, 'adminusers');
    else this.check(actor, 'grant', bucket, stream);
    const listing: AccessListing = { users: [], groups: [] };
    for (const grant of this.options.grants.listScope({ bucket: bucket ?? '', stream: stream ?? '' })) {
      const permissions = [...grant.permissions].sort() as Permission[];
      if (grant.kind === PrincipalKind.user) listing.users.push({ name: grant.principal, grants: permissions });
      else listing.groups.push({ name: grant.principal, grants: permissions });
    }
    return listing;
  }

  // -------------------------------------------------------------------------
  // Groups

  private groupExists(name: string): boolean {
    return knownGroups.includes(name) || this.options.groups.exists(name);
  }

  async createGroup(actor: string, name: string): Promise<void> {
    this.check(actor, 'adminusers');
    checkName('group', name);
    if (knownGroups.includes(name)) throw new IorioError('conflict', `group ${name} is built in`);
    const created = await this.write(() => {
      if (this.options.groups.exists(name)) return false;
      this.options.groups.putSync({ name, createdMs: this.options.clock.now() });
      return true;
    });
    if (!created) throw new IorioError('conflict', `group ${name} already exists`);
    this.logger.info({ actor, group: name }, 'group created');
  }

  async deleteGroup(actor: string, name: string): Promise<void> {
    this.check(actor, 'adminusers');
    checkName('group', name);
    if (knownGroups.includes(name)) throw new IorioError('invalid-param', `group ${name} is built in and cannot be deleted`);
    const removed = await this.write(() => {
      if (!this.options.groups.removeSync(name)) return undefined;
      let members = 0;
      for (const user of this.options.users.list()) {
        if (!user.groups.includes(name)) continue;
        this.options.users.putSync({ ...user, groups: user.groups.filter((group) => group !== name) });
        members += 1;
      }
      return { members, grants: this.options.grants.removePrincipalSync(PrincipalKind.group, name) };
    });
    if (removed === undefined) throw unknownGroup(name);
    this.logger.info({ actor, group: name, removedMembers: removed.members, removedGrants: removed.grants }, 'group deleted');
  }

  listGroups(actor: string): GroupSummary[] {
    this.check(actor, 'adminusers');
    const builtin = [...knownGroups].sort().map((name) => ({ name, builtin: true }));
    return [...builtin, ...this.options.groups.list().map((group) => ({ name: group.name, builtin: false }))];
  }

  getGroup(actor: string, name: string): GroupDetails {
    this.check(actor, 'adminusers');
    checkName('group', name);
    if (!this.groupExists(name)) throw unknownGroup(name);
    const members = this.options.users
      .list()
      .filter((user) => user.username !== this.anonymousUsername || name !== AclGroup.authenticated)
      .filter((user) => name === AclGroup.authenticated || user.groups.includes(name))
      .map((user) => user.username);
    return { name, builtin: knownGroups.includes(name), users: members };
  }

  async addGroupMember(actor: string, group: string, username: string): Promise<void> {
    this.authorizeMembershipChange(actor, group, username, 'add');
    if (username === this.anonymousUsername && group === AclGroup.admin) {
      throw new IorioError('invalid-param', `${username} is the anonymous user: it cannot be in ${AclGroup.admin}`);
    }
    const outcome = await this.write(() => {
      if (!this.groupExists(group)) return 'no-group';
      const user = this.options.users.get(username);
      if (user === undefined) return 'no-user';
      if (!user.groups.includes(group)) this.options.users.putSync({ ...user, groups: [...user.groups, group] });
      return 'done';
    });
    if (outcome === 'no-group') throw unknownGroup(group);
    if (outcome === 'no-user') throw unknownUser(username);
    this.logger.info({ actor, group, username }, 'user added to a group');
  }

  async removeGroupMember(actor: string, group: string, username: string): Promise<void> {
    this.authorizeMembershipChange(actor, group, username, 'remove');
    if (group === AclGroup.admin && username === this.options.adminUsername) {
      throw new IorioError('invalid-param', `${username} is the configured admin user (auth.admin.username) and stays in ${AclGroup.admin}`);
    }
    const outcome = await this.write(() => {
      const user = this.options.users.get(username);
      if (user === undefined) return 'no-user';
      if (!user.groups.includes(group)) return 'not-member';
      this.options.users.putSync({ ...user, groups: user.groups.filter((name) => name !== group) });
      return 'done';
    });
    if (outcome === 'no-user') throw unknownUser(username);
    if (outcome === 'not-member') throw new IorioError('not-found', `${username} is not in group ${group}`);
    this.logger.info({ actor, group, username }, 'user removed from a group');
  }

  /**
   * Membership changes take `adminusers`; g-admin's take a g-admin member
   * (as acting on an admin account does); g-authenticated's are implicit.
   */
  private authorizeMembershipChange(actor: string, group: string, username: string, verb: 'add' | 'remove'): void {
    this.check(actor, 'adminusers');
    checkName('group', group);
    checkName('user', username);
    if (group === AclGroup.authenticated) {
      throw new IorioError('invalid-param', `every user but the anonymous one is in ${AclGroup.authenticated}: its members cannot be changed`);
    }
    if (group === AclGroup.admin && !this.isAdminUser(actor)) {
      throw new IorioError('no-perm', `only a g-admin member may ${verb} members of ${AclGroup.admin}`);
    }
    if (!this.groupExists(group)) throw unknownGroup(group);
  }

  // -------------------------------------------------------------------------
  // Helpers

  /** The subject a stored user acts as, or undefined for an unknown user. */
  private subject(username: string): Subject | undefined {
    const user = this.cachedUser(username);
    return user === undefined ? undefined : subjectOf(user, this.anonymousUsername);
  }

  private isAdminUser(username: string): boolean {
    const subject = this.subject(username);
    return subject !== undefined && isAdmin(subject);
  }

  /**
   * Who may act on a user: one holding `adminusers`, or (when selfAllowed)
   * the user itself; acting on a g-admin member other than oneself takes a
   * g-admin member, so `adminusers` alone cannot take over an admin account.
   * Returns the target; `not-found` only to actors who may know.
   */
  private authorizeUserChange(actor: string, username: string, verb: string, { selfAllowed = true } = {}): UserRecord {
    const isSelf = selfAllowed && actor === username && actor !== this.anonymousUsername;
    if (!isSelf && !this.can(actor, 'adminusers')) throw new IorioError('no-perm', `${actor} may not ${verb} ${username}`);
    const target = this.options.users.get(username);
    if (target === undefined) throw unknownUser(username);
    if (!isSelf && target.groups.includes(AclGroup.admin) && !this.isAdminUser(actor)) {
      throw new IorioError('no-perm', `only a g-admin member may ${verb} ${username}, a g-admin member`);
    }
    return target;
  }

  /**
   * Changing grants takes `grant` on the bucket (or the stream, or its
   * bucket); global permissions (adminusers, viewstats) are changed by
   * g-admin members only, whatever the bucket named.
   */
  private authorizeGrant(actor: string, permission: Permission, bucket: string | undefined, stream: string | undefined): void {
    if (!isGlobalPermission(permission)) return this.check(actor, 'grant', bucket, stream);
    if (!this.isAdminUser(actor)) {
      throw new IorioError('no-perm', `${permission} is a global permission: only a g-admin member may grant or revoke it`);
    }
  }

  private checkNewUsername(username: string): void {
    checkName('user', username);
    const prefix = this.options.userBucketPrefix;
    if (this.options.userHasBucket && Buffer.byteLength(this.userBucketOf(username)) > nameBytesMax) {
      const longest = nameBytesMax - Buffer.byteLength(prefix);
      throw new IorioError('invalid-name', `invalid user name: at most ${longest} bytes, so that its bucket ${prefix}<name> fits in ${nameBytesMax}`);
    }
  }

  /** Inside a transaction: stores a new user and its bucket ownership; false when the name is taken. */
  insertUserSync(user: UserRecord): boolean {
    if (this.options.users.exists(user.username)) return false;
    this.options.users.putSync(user);
    if (this.options.userHasBucket && user.username !== this.anonymousUsername) {
      const scope = { bucket: this.userBucketOf(user.username), stream: '' };
      this.options.grants.changeSync({ scope, kind: PrincipalKind.user, principal: user.username }, userBucketPermissions, 'grant');
    }
    return true;
  }

  private async rehash(user: UserRecord, password: string): Promise<void> {
    const passwordHash = await this.options.passwords.hash(password);
    await this.write(() => {
      const current = this.options.users.get(user.username);
      // Only if the password did not change meanwhile.
      if (current !== undefined && current.passwordHash === user.passwordHash) this.options.users.putSync({ ...current, passwordHash });
    });
    this.logger.info({ username: user.username, rounds: this.options.passwords.rounds }, 'password rehashed at the configured cost');
  }
}

function unknownUser(username: string): IorioError {
  return new IorioError('not-found', `no user ${username}`);
}

function unknownGroup(name: string): IorioError {
  return new IorioError('not-found', `no group ${name}`);
}

function conflictUser(username: string): IorioError {
  return new IorioError('conflict', `user ${username} already exists`);
}
