import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { configSpec, type Config } from '../config.js';
import { AclGroup, PrincipalKind, type GrantKey } from '../core/acl.js';
import type { Clock } from '../core/clock.js';
import { isValidName } from '../core/names.js';
import type { MetaStore } from '../store/meta.js';
import { GrantTable } from './grants.js';
import { GroupTable } from './groups.js';
import { LoginThrottle } from './login-throttle.js';
import { Passwords } from './passwords.js';
import { AuthService } from './service.js';
import { loadSessionSecret, Sessions } from './sessions.js';
import type { Auth, Permission } from './types.js';
import { UserTable } from './users.js';

export { AuthService, userBucketOf, userBucketPermissions } from './service.js';

export interface OpenAuthOptions {
  readonly meta: MetaStore;
  readonly config: Config;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Source of the generated session secret and of session generations; crypto.randomBytes by default. */
  readonly randomBytes?: (size: number) => Buffer;
  /** Password worker threads; by default one core is left to the event loop. */
  readonly passwordThreads?: number;
}

/** meta.settings key recording which version of the default grants was applied (once, so later revokes stick). */
export const defaultGrantsSettingKey = 'auth.defaultGrants';
const defaultGrantsVersion = 1;

/** The grants a new node starts with. */
export const defaultGrants: readonly { key: GrantKey; permissions: readonly Permission[] }[] = [
  { key: { scope: { bucket: 'public', stream: '' }, kind: PrincipalKind.group, principal: AclGroup.authenticated }, permissions: ['get'] },
  { key: { scope: { bucket: 'public', stream: '' }, kind: PrincipalKind.group, principal: AclGroup.admin }, permissions: ['put'] },
  { key: { scope: { bucket: '$sys', stream: '' }, kind: PrincipalKind.group, principal: AclGroup.admin }, permissions: ['get'] },
];

/**
 * Opens the auth service on the node's metadata store and ensures the
 * start-up state: the admin user (created with the configured password when
 * missing, never reset), the anonymous user (no usable password), and, on a
 * node's first start only, the default grants (so an operator's later
 * revoke survives restarts). Warns, once, while the admin's password is
 * still the default one. The caller closes it (password worker threads).
 */
export async function openAuth(options: OpenAuthOptions): Promise<Auth> {
  const { meta, config, clock } = options;
  const logger = options.logger.child({ component: 'auth' });
  const randomBytes = options.randomBytes ?? cryptoRandomBytes;
  const secret = await loadSessionSecret(meta, config, logger, randomBytes);
  const passwords = await Passwords.create(config['auth.bcrypt.rounds'], { threads: options.passwordThreads, logger });
  const service = new AuthService({
    meta,
    users: new UserTable(meta),
    grants: new GrantTable(meta),
    groups: new GroupTable(meta),
    passwords,
    sessions: new Sessions(secret, config['auth.algorithm'], config['auth.session.duration']),
    throttle: new LoginThrottle({ failuresMax: config['auth.login.failures.max'], windowMs: config['auth.login.failures.window'] }, clock),
    clock,
    randomBytes,
    logger,
    adminUsername: config['auth.admin.username'],
    defaultAdminPassword: configSpec['auth.admin.password'].default,
    anonymousUsername: config['auth.anonymous.username'],
    anonymousPassword: config['auth.anon.password'],
    userHasBucket: config['auth.permission.user.has_bucket'],
    userBucketPrefix: config['auth.permission.user.bucket.prefix'],
  });
  try {
    await ensureStartupState(service, { meta, config, clock, logger, passwords });
    service.invalidateCaches();
    await warnOfDefaultAdminPassword(service, config['auth.admin.username'], logger);
  } catch (error) {
    await service.close();
    throw error;
  }
  return service;
}

/** Anyone who read the docs knows admin / secret: say so at every start until it changes. */
async function warnOfDefaultAdminPassword(service: AuthService, adminUsername: string, logger: Logger): Promise<void> {
  if (!(await service.adminPasswordIsDefault())) return;
  logger.warn(
    { username: adminUsername },
    `the admin user ${adminUsername} still has the default password: change it with PUT /users/${adminUsername} or iorio-admin user passwd ${adminUsername} <new-password>`,
  );
}

interface StartupContext {
  readonly meta: MetaStore;
  readonly config: Config;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly passwords: Passwords;
}

async function ensureStartupState(service: AuthService, context: StartupContext): Promise<void> {
  const { meta, config, clock, logger, passwords } = context;
  const users = new UserTable(meta);
  const grants = new GrantTable(meta);
  const adminUsername = config['auth.admin.username'];
  const anonymousUsername = config['auth.anonymous.username'];
  // Hash before the transaction (bcrypt is slow and asynchronous); only used when the admin is missing.
  const adminHash = users.exists(adminUsername) ? undefined : await passwords.hash(config['auth.admin.password']);
  const nowMs = clock.now();
  const report = await meta.root.transaction(() => {
    const done: string[] = [];
    const admin = users.get(adminUsername);
    if (admin === undefined && adminHash !== undefined) {
      // Bucket ownership only when _user_<admin> is a valid bucket name (g-admin has everything anyway).
      const record = {
        username: adminUsername,
        passwordHash: adminHash,
        groups: [AclGroup.admin],
        createdMs: nowMs,
        sessionGeneration: service.newSessionGeneration(),
      };
      if (isValidName(service.userBucketOf(adminUsername))) service.insertUserSync(record);
      else users.putSync(record);
      done.push('admin user created');
    } else if (admin !== undefined && !admin.groups.includes(AclGroup.admin)) {
      users.putSync({ ...admin, groups: [...admin.groups, AclGroup.admin] });
      done.push('admin user added to g-admin');
    }
    if (!users.exists(anonymousUsername)) {
      users.putSync({ username: anonymousUsername, passwordHash: '', groups: [], createdMs: nowMs, sessionGeneration: service.newSessionGeneration() });
      done.push('anonymous user created');
    }
    const backfilled = backfillSessionGenerationsSync(service, users);
    if (backfilled > 0) done.push(`session generation given to ${backfilled} users (their older tokens must log in again)`);
    if (meta.settings.get(defaultGrantsSettingKey) === undefined) {
      for (const grant of defaultGrants) grants.changeSync(grant.key, grant.permissions, 'grant');
      meta.settings.putSync(defaultGrantsSettingKey, defaultGrantsVersion);
      done.push('default grants applied');
    }
    return done;
  });
  if (report.length > 0) logger.info({ admin: adminUsername, anonymous: anonymousUsername, changes: report }, 'auth start-up state ensured');
  const anonymous = users.get(anonymousUsername);
  if (anonymous !== undefined && anonymous.passwordHash !== '') {
    logger.warn({ username: anonymousUsername }, 'the anonymous user has a password; logging in as it is refused anyway');
  }
}

/**
 * Inside a transaction: gives every user stored before session generations
 * existed one, so that every token signed from now on can be ended. Returns
 * how many. Tokens issued before carry no generation and are refused anyway.
 */
function backfillSessionGenerationsSync(service: AuthService, users: UserTable): number {
  let count = 0;
  for (const user of users.list()) {
    if (user.sessionGeneration !== '') continue;
    users.putSync({ ...user, sessionGeneration: service.newSessionGeneration() });
    count += 1;
  }
  return count;
}
