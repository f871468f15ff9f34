/**
 * The auth service's contract, used by the HTTP layer. Implemented in
 * src/auth/ (users, groups, grants, sessions) on the lmdb metadata store,
 * with the pure decision in src/core/acl.ts.
 */

export const Permission = {
  get: 'get',
  put: 'put',
  delete: 'delete',
  grant: 'grant',
  list: 'list',
  adminusers: 'adminusers',
  viewstats: 'viewstats',
} as const;
export type Permission = (typeof Permission)[keyof typeof Permission];

/** Permissions that apply to a bucket or a stream (the others are global). */
export const resourcePermissions: readonly Permission[] = ['get', 'put', 'delete', 'grant', 'list'];

export const Group = { authenticated: 'g-authenticated', admin: 'g-admin' } as const;

/** GET /groups: every group, the built-in ones (g-admin, g-authenticated) included. */
export interface GroupSummary {
  readonly name: string;
  /** g-admin and g-authenticated: always there, never deleted. */
  readonly builtin: boolean;
}

/** GET /groups/:name: a group and its members (for g-authenticated, every user but the anonymous one). */
export interface GroupDetails extends GroupSummary {
  readonly users: string[];
}

/** GET /access: IorioDB's shape (iorio_rest_access.erl:78-87). */
export interface AccessListing {
  users: { name: string; grants: Permission[] }[];
  groups: { name: string; grants: Permission[] }[];
}

/**
 * A POST /access body as it came: IorioDB's `{role, permission, action}`
 * (role: a user or a group name), or Iorio's `{username | group,
 * permission, action}`. Checked by the auth service (400 invalid-field).
 */
export type GrantChange = Readonly<Record<string, unknown>>;

export interface Auth {
  /**
   * Checks the password (bcrypt, on a worker thread) and returns a signed
   * JWT `{u, g, iat, exp}`; throws `unauthorized`, or `rate-limited` (429,
   * details.retry_after_secs) once the user name or the client address has
   * had auth.login.failures.max failures within auth.login.failures.window.
   */
  login(username: string, password: string, clientAddress: string): Promise<string>;
  /**
   * Verifies a JWT with the configured algorithm only, and that its session
   * generation `g` is still its user's; returns the username; throws
   * `unauthorized`.
   */
  verifyToken(token: string): string;
  /**
   * Ends every session of `username` issued so far (its tokens get 401 from
   * now on, open listeners end at their next check): the user itself, or an
   * actor with `adminusers` (a g-admin member for a g-admin user).
   */
  revokeSessions(actor: string, username: string): Promise<void>;
  /** True while the configured admin user's stored password is still the default one (`secret`). */
  adminPasswordIsDefault(): Promise<boolean>;
  /** Stops the password worker threads. The node calls it once HTTP is closed; idempotent. */
  close(): Promise<void>;
  /** The username requests without credentials act as. */
  readonly anonymousUsername: string;
  /**
   * Changes whenever a user or a grant changes: a decision taken at one
   * generation holds as long as the generation stays the same (and, for a
   * session, until its token expires).
   */
  readonly generation: number;
  /** Whether `username` may `list` some bucket (GET /buckets needs it, as in IorioDB: 401 otherwise). */
  canListSomewhere(username: string): boolean;
  /** The bucket a user owns: auth.permission.user.bucket.prefix + its name. */
  userBucketOf(username: string): string;
  /** Throws `no-perm` unless `username` may do `permission` on the bucket (or the stream, or globally when bucket is absent). */
  check(username: string, permission: Permission, bucket?: string, stream?: string): void;
  can(username: string, permission: Permission, bucket?: string, stream?: string): boolean;
  userExists(username: string): boolean;
  createUser(actor: string, username: string, password: string): Promise<void>;
  /** Also ends every session of the user issued before (see revokeSessions). */
  changePassword(actor: string, username: string, password: string): Promise<void>;
  /** Its sessions end with it; a user created again under the name does not inherit them. */
  deleteUser(actor: string, username: string): Promise<void>;
  listUsers(actor: string): { username: string }[];
  /**
   * bucket undefined: the global scope, where adminusers and viewstats live
   * (granting those takes a g-admin member; a resource permission granted
   * there covers every bucket and takes `grant` globally).
   */
  changeAccess(actor: string, bucket: string | undefined, stream: string | undefined, change: GrantChange): Promise<void>;
  /** Groups: every operation needs `adminusers`; changing who is in g-admin takes a g-admin member. */
  createGroup(actor: string, name: string): Promise<void>;
  /** Its grants and memberships go with it. */
  deleteGroup(actor: string, name: string): Promise<void>;
  listGroups(actor: string): GroupSummary[];
  getGroup(actor: string, name: string): GroupDetails;
  /** Idempotent: a member already is one afterwards. */
  addGroupMember(actor: string, group: string, username: string): Promise<void>;
  removeGroupMember(actor: string, group: string, username: string): Promise<void>;
  /** bucket undefined: the global scope's grants (needs adminusers). */
  listAccess(actor: string, bucket: string | undefined, stream: string | undefined): AccessListing;
}
