import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';
import { pino, type Logger } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../helpers/clock.js';
import { openAuth } from '../../src/auth/index.js';
import { Passwords } from '../../src/auth/passwords.js';
import type { Auth, Permission } from '../../src/auth/types.js';
import { testConfig, type ConfigKey, type ConfigValue } from '../../src/config.js';
import type { Clock } from '../../src/core/clock.js';
import { IorioError } from '../../src/core/errors.js';
import { openMeta, type MetaStore } from '../../src/store/meta.js';

const startMs = Date.UTC(2025, 0, 1);
const dayMs = 24 * 60 * 60 * 1000;
const fixedSecret = 'x'.repeat(64);
/** The client address logins come from (the throttle counts failures per address). */
const localAddress = '127.0.0.1';

interface Node {
  meta: MetaStore;
  auth: Auth;
}

const openAuths: Auth[] = [];

let dataDir: string;
let clock: ManualClock;
const open: MetaStore[] = [];
const logger = pino({ level: 'silent' });

async function startNode(overrides: Partial<Record<ConfigKey, ConfigValue>> = {}, nodeLogger: Logger = logger): Promise<Node> {
  const meta = openMeta(join(dataDir, 'meta'));
  open.push(meta);
  const config = testConfig({ 'auth.bcrypt.rounds': 4, ...overrides });
  const auth = await openAuth({ meta, config, clock, logger: nodeLogger, passwordThreads: 1 });
  openAuths.push(auth);
  return { meta, auth };
}

async function stopNode(node: Node): Promise<void> {
  openAuths.splice(openAuths.indexOf(node.auth), 1);
  await node.auth.close();
  open.splice(open.indexOf(node.meta), 1);
  await node.meta.close();
}

/** Awaits `action` and returns the IorioError code it failed with. */
async function failure(action: () => unknown): Promise<string> {
  try {
    await action();
  } catch (error) {
    if (error instanceof IorioError) return error.code;
    throw error;
  }
  throw new Error('expected an IorioError, got success');
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'iorio-auth-'));
  clock = new ManualClock(startMs);
});

afterEach(async () => {
  for (const auth of openAuths.splice(0)) await auth.close();
  for (const meta of open.splice(0)) await meta.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('auth: start-up state', () => {
  it('creates admin (in g-admin) and anonymous, and the default grants', async () => {
    const { auth } = await startNode();
    expect(auth.userExists('admin')).toBe(true);
    expect(auth.userExists('anonymous')).toBe(true);
    expect(auth.anonymousUsername).toBe('anonymous');
    for (const permission of ['get', 'put', 'delete', 'grant', 'list'] as Permission[]) {
      expect(auth.can('admin', permission, 'anything', 'at-all')).toBe(true);
    }
    expect(auth.can('admin', 'adminusers')).toBe(true);
    expect(auth.can('admin', 'viewstats')).toBe(true);
    expect(auth.listAccess('admin', 'public', undefined)).toEqual({
      users: [],
      groups: [
        { name: 'g-admin', grants: ['put'] },
        { name: 'g-authenticated', grants: ['get'] },
      ],
    });
    expect(auth.listAccess('admin', '$sys', undefined).groups).toEqual([{ name: 'g-admin', grants: ['get'] }]);
  });

  it('lets every authenticated user get bucket public, but not anonymous, and only admins put it', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'alice-pw');
    expect(auth.can('alice', 'get', 'public', 'news')).toBe(true);
    expect(auth.can('alice', 'put', 'public', 'news')).toBe(false);
    expect(auth.can('admin', 'put', 'public', 'news')).toBe(true);
    expect(auth.can('anonymous', 'get', 'public', 'news')).toBe(false);
    expect(auth.can('alice', 'get', '$sys', 'metrics')).toBe(false);
    expect(await failure(() => auth.check('anonymous', 'get', 'public'))).toBe('no-perm');
  });

  it('refuses to log in as anonymous, whatever the password', async () => {
    const { auth } = await startNode();
    expect(await failure(() => auth.login('anonymous', '', localAddress))).toBe('unauthorized');
    expect(await failure(() => auth.login('anonymous', 'secret', localAddress))).toBe('unauthorized');
  });

  it('uses the configured admin and anonymous names', async () => {
    const { auth } = await startNode({ 'auth.admin.username': 'boss', 'auth.admin.password': 'hunter22', 'auth.anonymous.username': 'guest' });
    expect(auth.anonymousUsername).toBe('guest');
    expect(auth.userExists('admin')).toBe(false);
    expect(auth.verifyToken(await auth.login('boss', 'hunter22', localAddress))).toBe('boss');
    expect(auth.can('boss', 'adminusers')).toBe(true);
    expect(await failure(() => auth.login('guest', '', localAddress))).toBe('unauthorized');
  });
});

describe('auth: sessions', () => {
  it('logs in with the right password and signs {u, g, iat, exp} with the configured algorithm and duration', async () => {
    const { auth } = await startNode({ 'auth.secret': fixedSecret, 'auth.session.duration': 3_600_000 });
    const token = await auth.login('admin', 'secret', localAddress);
    expect(auth.verifyToken(token)).toBe('admin');
    const decoded = jwt.decode(token, { complete: true });
    expect(decoded?.header.alg).toBe('HS256');
    expect(decoded?.payload).toEqual({ u: 'admin', g: expect.stringMatching(/^[A-Za-z0-9_-]{16}$/), iat: startMs / 1000, exp: startMs / 1000 + 3600 });
    // Signed with the configured secret: verifiable independently.
    expect(jwt.verify(token, fixedSecret, { algorithms: ['HS256'], clockTimestamp: startMs / 1000 })).toMatchObject({ u: 'admin' });
  });

  it('refuses a wrong password and an unknown user alike', async () => {
    const { auth } = await startNode();
    const wrong = await auth.login('admin', 'not-secret', localAddress).catch((error: IorioError) => error);
    const unknown = await auth.login('nobody', 'secret', localAddress).catch((error: IorioError) => error);
    expect(wrong).toBeInstanceOf(IorioError);
    expect(unknown).toBeInstanceOf(IorioError);
    expect((wrong as IorioError).code).toBe('unauthorized');
    expect((unknown as IorioError).code).toBe('unauthorized');
    expect((unknown as IorioError).message).toBe((wrong as IorioError).message);
    expect(await failure(() => auth.login('not a name!', 'secret', localAddress))).toBe('unauthorized');
    expect(await failure(() => auth.login('admin', 'secret' + 'x'.repeat(100), localAddress))).toBe('unauthorized');
  });

  it('compares unknown users against a real hash and never matches them', async () => {
    const passwords = await Passwords.create(4);
    expect(await passwords.verify('anything', undefined)).toBe(false);
    expect(await passwords.verify('', '')).toBe(false);
    const hash = await passwords.hash('pw');
    expect(await passwords.verify('pw', hash)).toBe(true);
    expect(await passwords.verify('pw2', hash)).toBe(false);
    expect(passwords.needsRehash(hash)).toBe(false);
    expect((await Passwords.create(5)).needsRehash(hash)).toBe(true);
  });

  it('expires tokens by the injected clock', async () => {
    const { auth } = await startNode({ 'auth.session.duration': 60_000 });
    const token = await auth.login('admin', 'secret', localAddress);
    clock.advance(59_000);
    expect(auth.verifyToken(token)).toBe('admin');
    clock.advance(1_000);
    expect(() => auth.verifyToken(token)).toThrow(/expired/);
    expect(await failure(() => auth.verifyToken(token))).toBe('unauthorized');
  });

  it('refuses tampered, malformed and foreign tokens', async () => {
    const { auth } = await startNode({ 'auth.secret': fixedSecret });
    await auth.createUser('admin', 'alice', 'alice-pw');
    const token = await auth.login('alice', 'alice-pw', localAddress);
    const [header, , signature] = token.split('.');
    const forgedPayload = base64url({ u: 'admin', iat: startMs / 1000, exp: startMs / 1000 + 3600 });
    expect(await failure(() => auth.verifyToken(`${header}.${forgedPayload}.${signature}`))).toBe('unauthorized');
    const flipped = signature!.slice(0, -2) + (signature!.endsWith('AA') ? 'BB' : 'AA');
    expect(await failure(() => auth.verifyToken(`${token.split('.').slice(0, 2).join('.')}.${flipped}`))).toBe('unauthorized');
    for (const bad of ['', 'abc', 'a.b.c', `${token}.extra`, 'x'.repeat(10_000)]) {
      expect(await failure(() => auth.verifyToken(bad))).toBe('unauthorized');
    }
    const otherSecret = jwt.sign({ u: 'alice', iat: startMs / 1000, exp: startMs / 1000 + 3600 }, 'y'.repeat(64), { algorithm: 'HS256' });
    expect(await failure(() => auth.verifyToken(otherSecret))).toBe('unauthorized');
  });

  it('refuses alg none', async () => {
    const { auth } = await startNode({ 'auth.secret': fixedSecret });
    const body = { u: 'admin', iat: startMs / 1000, exp: startMs / 1000 + 3600 };
    const none = `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url(body)}.`;
    expect(await failure(() => auth.verifyToken(none))).toBe('unauthorized');
  });

  it('refuses a token signed with another HMAC algorithm than the configured one', async () => {
    const { auth } = await startNode({ 'auth.secret': fixedSecret, 'auth.algorithm': 'HS256' });
    const { g } = jwt.decode(await auth.login('admin', 'secret', localAddress)) as { g: string };
    const body = { u: 'admin', g, iat: startMs / 1000, exp: startMs / 1000 + 3600 };
    const hs512 = jwt.sign(body, fixedSecret, { algorithm: 'HS512' });
    expect(await failure(() => auth.verifyToken(hs512))).toBe('unauthorized');
    const hs256 = jwt.sign(body, fixedSecret, { algorithm: 'HS256' });
    expect(auth.verifyToken(hs256)).toBe('admin');
  });

  it('signs with HS512 when configured', async () => {
    const { auth } = await startNode({ 'auth.algorithm': 'HS512' });
    const token = await auth.login('admin', 'secret', localAddress);
    expect(jwt.decode(token, { complete: true })?.header.alg).toBe('HS512');
    expect(auth.verifyToken(token)).toBe('admin');
  });

  it('refuses the token of a deleted user, even once the name is created again', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'alice-pw');
    const token = await auth.login('alice', 'alice-pw', localAddress);
    await auth.deleteUser('admin', 'alice');
    expect(await failure(() => auth.verifyToken(token))).toBe('unauthorized');
    clock.advance(5_000);
    await auth.createUser('admin', 'alice', 'another-pw');
    expect(await failure(() => auth.verifyToken(token))).toBe('unauthorized');
    expect(auth.verifyToken(await auth.login('alice', 'another-pw', localAddress))).toBe('alice');
  });
});

describe('auth: ending sessions (the clock stands still: every token is issued in the same millisecond)', () => {
  const generationOf = (token: string) => (jwt.decode(token) as { g: string }).g;

  it('a password change ends every earlier token of the user at once; other users keep theirs', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'old-pw');
    await auth.createUser('admin', 'bob', 'bob-pw');
    const first = await auth.login('alice', 'old-pw', localAddress);
    const second = await auth.login('alice', 'old-pw', localAddress);
    const bob = await auth.login('bob', 'bob-pw', localAddress);
    expect(generationOf(first)).toBe(generationOf(second));
    expect(generationOf(first)).not.toBe(generationOf(bob));
    await auth.changePassword('alice', 'alice', 'new-pw');
    expect(await failure(() => auth.verifyToken(first))).toBe('unauthorized');
    expect(() => auth.verifyToken(second)).toThrow(/session ended/);
    const fresh = await auth.login('alice', 'new-pw', localAddress);
    expect(auth.verifyToken(fresh)).toBe('alice');
    expect(auth.verifyToken(bob)).toBe('bob');
  });

  it('refuses the old token of a user deleted and created again within the same millisecond', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'same-pw');
    const old = await auth.login('alice', 'same-pw', localAddress);
    await auth.deleteUser('admin', 'alice');
    await auth.createUser('admin', 'alice', 'same-pw');
    expect(await failure(() => auth.verifyToken(old))).toBe('unauthorized');
    expect(auth.verifyToken(await auth.login('alice', 'same-pw', localAddress))).toBe('alice');
  });

  it('revokes sessions for the user itself or an adminusers holder; a g-admin member only by g-admin members', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    await auth.createUser('admin', 'bob', 'pw');
    const alice = await auth.login('alice', 'pw', localAddress);
    const bob = await auth.login('bob', 'pw', localAddress);
    const admin = await auth.login('admin', 'secret', localAddress);
    expect(await failure(() => auth.revokeSessions('bob', 'alice'))).toBe('no-perm');
    expect(await failure(() => auth.revokeSessions('anonymous', 'alice'))).toBe('no-perm');
    expect(auth.verifyToken(alice)).toBe('alice');
    await auth.revokeSessions('alice', 'alice');
    expect(await failure(() => auth.verifyToken(alice))).toBe('unauthorized');
    expect(auth.verifyToken(bob)).toBe('bob');
    await auth.changeAccess('admin', 'any', undefined, { username: 'bob', permission: 'adminusers', action: 'grant' });
    expect(await failure(() => auth.revokeSessions('bob', 'admin'))).toBe('no-perm');
    expect(auth.verifyToken(admin)).toBe('admin');
    const aliceAgain = await auth.login('alice', 'pw', localAddress);
    await auth.revokeSessions('bob', 'alice');
    expect(await failure(() => auth.verifyToken(aliceAgain))).toBe('unauthorized');
    expect(await failure(() => auth.revokeSessions('admin', 'nobody'))).toBe('not-found');
    expect(await failure(() => auth.revokeSessions('admin', 'anonymous'))).toBe('invalid-param');
    expect(await failure(() => auth.revokeSessions('admin', 'bad/name'))).toBe('invalid-name');
  });

  it('moves the auth generation, so that open listeners check their tokens again', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    const before = auth.generation;
    await auth.revokeSessions('alice', 'alice');
    expect(auth.generation).not.toBe(before);
  });

  it('refuses a token without a session generation (issued before the upgrade)', async () => {
    const { auth } = await startNode({ 'auth.secret': fixedSecret });
    const body = { u: 'admin', iat: startMs / 1000, exp: startMs / 1000 + 3600 };
    const old = jwt.sign(body, fixedSecret, { algorithm: 'HS256' });
    expect(() => auth.verifyToken(old)).toThrow(/older format: log in again/);
    expect(await failure(() => auth.verifyToken(jwt.sign({ ...body, g: '' }, fixedSecret, { algorithm: 'HS256' })))).toBe('unauthorized');
  });

  it('gives users stored before session generations existed one at start-up, so their new tokens can be ended', async () => {
    const first = await startNode();
    await first.auth.createUser('admin', 'alice', 'pw');
    await first.meta.root.transaction(() => {
      const { sessionGeneration: _dropped, ...legacy } = first.meta.users.get('alice') as Record<string, unknown>;
      first.meta.users.putSync('alice', legacy);
    });
    await stopNode(first);
    const second = await startNode();
    const token = await second.auth.login('alice', 'pw', localAddress);
    expect(generationOf(token)).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(second.auth.verifyToken(token)).toBe('alice');
    await second.auth.revokeSessions('admin', 'alice');
    expect(await failure(() => second.auth.verifyToken(token))).toBe('unauthorized');
  });
});

describe('auth: login throttling', () => {
  it('refuses the 6th login after 5 failures with 429, even with the right password; a success resets the user', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    for (const address of ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']) expect(await failure(() => auth.login('alice', 'wrong', address))).toBe('unauthorized');
    expect(auth.verifyToken(await auth.login('alice', 'pw', '10.0.0.5'))).toBe('alice');
    for (const address of ['10.0.1.1', '10.0.1.2', '10.0.1.3', '10.0.1.4', '10.0.1.5']) expect(await failure(() => auth.login('alice', 'wrong', address))).toBe('unauthorized');
    const refused = await auth.login('alice', 'pw', '10.0.1.6').catch((error: IorioError) => error);
    expect([refused.code, refused.details]).toEqual(['rate-limited', { retry_after_secs: 60 }]);
    expect(auth.verifyToken(await auth.login('admin', 'secret', '10.0.1.6'))).toBe('admin');
    clock.advance(60_000);
    expect(auth.verifyToken(await auth.login('alice', 'pw', '10.0.1.6'))).toBe('alice');
  });

  it('uses auth.login.failures.max and auth.login.failures.window', async () => {
    const { auth } = await startNode({ 'auth.login.failures.max': 2, 'auth.login.failures.window': 10_000 });
    for (const address of ['10.0.0.1', '10.0.0.2']) expect(await failure(() => auth.login('admin', 'wrong', address))).toBe('unauthorized');
    const refused = await auth.login('admin', 'secret', '10.0.0.3').catch((error: IorioError) => error);
    expect([refused.code, refused.details]).toEqual(['rate-limited', { retry_after_secs: 10 }]);
  });
});

describe('auth: the default admin password', () => {
  function capture(): { logger: Logger; warnings: () => Record<string, unknown>[] } {
    const lines: Record<string, unknown>[] = [];
    const captured = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    return { logger: captured, warnings: () => lines.filter((line) => line['level'] === 40) };
  }
  const warningText = /the admin user admin still has the default password: change it with PUT \/users\/admin or iorio-admin user passwd admin/;

  it('warns once at start, naming the user and how to change it', async () => {
    const { logger: captured, warnings } = capture();
    const { auth } = await startNode({}, captured);
    expect(await auth.adminPasswordIsDefault()).toBe(true);
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ component: 'auth', username: 'admin', msg: expect.stringMatching(warningText) });
  });

  it('is quiet when the admin was created with another password', async () => {
    const { logger: captured, warnings } = capture();
    const { auth } = await startNode({ 'auth.admin.password': 'a-better-one' }, captured);
    expect(await auth.adminPasswordIsDefault()).toBe(false);
    expect(warnings()).toEqual([]);
  });

  it('checks the stored password, not the config: a config changed after the admin was created still warns', async () => {
    await stopNode(await startNode());
    const { logger: captured, warnings } = capture();
    const { auth } = await startNode({ 'auth.admin.password': 'changed-in-config-only' }, captured);
    expect(await auth.adminPasswordIsDefault()).toBe(true);
    expect(warnings().map((line) => line['msg'])).toEqual([expect.stringMatching(warningText)]);
  });

  it('stops once the password is changed, and stays quiet after a restart', async () => {
    const first = await startNode();
    await first.auth.changePassword('admin', 'admin', 'not-secret-any-more');
    expect(await first.auth.adminPasswordIsDefault()).toBe(false);
    await stopNode(first);
    const { logger: captured, warnings } = capture();
    const second = await startNode({}, captured);
    expect(await second.auth.adminPasswordIsDefault()).toBe(false);
    expect(warnings()).toEqual([]);
  });
});

describe('auth: users', () => {
  it('creates users: adminusers needed, conflicts, bad names and bad passwords refused', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'alice-pw');
    expect(auth.verifyToken(await auth.login('alice', 'alice-pw', localAddress))).toBe('alice');
    expect(await failure(() => auth.createUser('alice', 'bob', 'bob-pw'))).toBe('no-perm');
    expect(await failure(() => auth.createUser('anonymous', 'bob', 'bob-pw'))).toBe('no-perm');
    expect(auth.userExists('bob')).toBe(false);
    expect(await failure(() => auth.createUser('admin', 'alice', 'other'))).toBe('conflict');
    expect(await failure(() => auth.createUser('admin', 'anonymous', 'other'))).toBe('conflict');
    expect(await failure(() => auth.createUser('admin', 'bad/name', 'pw'))).toBe('invalid-name');
    expect(await failure(() => auth.createUser('admin', '..', 'pw'))).toBe('invalid-name');
    expect(await failure(() => auth.createUser('admin', 'bob', ''))).toBe('invalid-body');
    expect(await failure(() => auth.createUser('admin', 'bob', 'é'.repeat(37)))).toBe('invalid-body');
    expect(await failure(() => auth.createUser('admin', 'bob', 42 as unknown as string))).toBe('invalid-body');
    await auth.createUser('admin', 'bob', 'é'.repeat(36));
    expect(auth.verifyToken(await auth.login('bob', 'é'.repeat(36), localAddress))).toBe('bob');
  });

  it('refuses a user name whose own bucket name would be too long', async () => {
    const { auth } = await startNode();
    expect(await failure(() => auth.createUser('admin', 'u'.repeat(123), 'pw'))).toBe('invalid-name');
    await auth.createUser('admin', 'u'.repeat(122), 'pw');
    expect(auth.can('u'.repeat(122), 'put', '_user_' + 'u'.repeat(122))).toBe(true);
  });

  it('allows the longest user names when users get no bucket', async () => {
    const { auth } = await startNode({ 'auth.permission.user.has_bucket': false });
    await auth.createUser('admin', 'u'.repeat(128), 'pw');
    expect(auth.userExists('u'.repeat(128))).toBe(true);
    expect(await failure(() => auth.createUser('admin', 'u'.repeat(129), 'pw'))).toBe('invalid-name');
  });

  it('creates one user when two create the same name at once', async () => {
    const { auth } = await startNode();
    const results = await Promise.allSettled([auth.createUser('admin', 'carol', 'one'), auth.createUser('admin', 'carol', 'two')]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((result) => result.status === 'rejected') as PromiseRejectedResult;
    expect((rejected.reason as IorioError).code).toBe('conflict');
  });

  it('lists users for admins only', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'bob', 'pw');
    await auth.createUser('admin', 'alice', 'pw');
    expect(auth.listUsers('admin')).toEqual([{ username: 'admin' }, { username: 'alice' }, { username: 'anonymous' }, { username: 'bob' }]);
    expect(await failure(() => auth.listUsers('alice'))).toBe('no-perm');
  });

  it('changes passwords: the user itself or an admin', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'old-pw');
    await auth.createUser('admin', 'bob', 'bob-pw');
    await auth.changePassword('alice', 'alice', 'new-pw');
    expect(await failure(() => auth.login('alice', 'old-pw', localAddress))).toBe('unauthorized');
    expect(auth.verifyToken(await auth.login('alice', 'new-pw', localAddress))).toBe('alice');
    expect(await failure(() => auth.changePassword('bob', 'alice', 'taken-over'))).toBe('no-perm');
    expect(await failure(() => auth.changePassword('anonymous', 'alice', 'taken-over'))).toBe('no-perm');
    await auth.changePassword('admin', 'alice', 'reset-pw');
    expect(auth.verifyToken(await auth.login('alice', 'reset-pw', localAddress))).toBe('alice');
    expect(await failure(() => auth.changePassword('admin', 'nobody', 'pw'))).toBe('not-found');
    expect(await failure(() => auth.changePassword('admin', 'anonymous', 'pw'))).toBe('invalid-param');
    expect(await failure(() => auth.changePassword('alice', 'alice', ''))).toBe('invalid-body');
    expect(await failure(() => auth.changePassword('alice', 'alice', 'x'.repeat(73)))).toBe('invalid-body');
  });

  it('deletes users with their grants; admin and anonymous cannot be deleted', async () => {
    const { auth, meta } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    await auth.createUser('admin', 'bob', 'pw');
    await auth.changeAccess('alice', '_user_alice', 'inbox', { username: 'bob', permission: 'put', action: 'grant' });
    expect(auth.can('bob', 'put', '_user_alice', 'inbox')).toBe(true);
    expect(await failure(() => auth.deleteUser('alice', 'bob'))).toBe('no-perm');
    await auth.deleteUser('admin', 'bob');
    expect(auth.userExists('bob')).toBe(false);
    expect([...meta.grants.getKeys({})].filter((key) => (key as string[])[3] === 'bob')).toEqual([]);
    expect(auth.listAccess('alice', '_user_alice', 'inbox')).toEqual({ users: [], groups: [] });
    await auth.createUser('admin', 'bob', 'pw');
    expect(auth.can('bob', 'put', '_user_alice', 'inbox')).toBe(false);
    expect(await failure(() => auth.deleteUser('admin', 'bob2'))).toBe('not-found');
    expect(await failure(() => auth.deleteUser('admin', 'admin'))).toBe('invalid-param');
    expect(await failure(() => auth.deleteUser('admin', 'anonymous'))).toBe('invalid-param');
    expect(await failure(() => auth.deleteUser('admin', 'no/such'))).toBe('invalid-name');
  });
});

describe('auth: grants', () => {
  it('gives every new user its own bucket, and nobody else access to it', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    await auth.createUser('admin', 'bob', 'pw');
    for (const permission of ['get', 'put', 'delete', 'grant', 'list'] as Permission[]) {
      expect(auth.can('alice', permission, '_user_alice')).toBe(true);
      expect(auth.can('alice', permission, '_user_alice', 'any-stream')).toBe(true);
      expect(auth.can('bob', permission, '_user_alice', 'any-stream')).toBe(false);
      expect(auth.can('alice', permission, '_user_bob')).toBe(false);
      expect(auth.can('anonymous', permission, '_user_alice')).toBe(false);
    }
    expect(auth.listAccess('alice', '_user_alice', undefined)).toEqual({
      users: [{ name: 'alice', grants: ['delete', 'get', 'grant', 'list', 'put'] }],
      groups: [],
    });
    expect(await failure(() => auth.listAccess('bob', '_user_alice', undefined))).toBe('no-perm');
    expect(await failure(() => auth.changeAccess('bob', '_user_alice', undefined, { username: 'bob', permission: 'get', action: 'grant' }))).toBe(
      'no-perm',
    );
    expect(auth.can('bob', 'get', '_user_alice')).toBe(false);
  });

  it('gives no bucket when auth.permission.user.has_bucket is no', async () => {
    const { auth } = await startNode({ 'auth.permission.user.has_bucket': false });
    await auth.createUser('admin', 'alice', 'pw');
    expect(auth.can('alice', 'get', '_user_alice')).toBe(false);
    expect(auth.listAccess('admin', '_user_alice', undefined)).toEqual({ users: [], groups: [] });
  });

  it('grants and revokes at bucket level: every stream of the bucket', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    await auth.createUser('admin', 'bob', 'pw');
    await auth.changeAccess('alice', '_user_alice', undefined, { username: 'bob', permission: 'get', action: 'grant' });
    expect(auth.can('bob', 'get', '_user_alice', 's1')).toBe(true);
    expect(auth.can('bob', 'get', '_user_alice', 's2')).toBe(true);
    expect(auth.can('bob', 'put', '_user_alice', 's1')).toBe(false);
    expect(auth.listAccess('alice', '_user_alice', undefined).users).toContainEqual({ name: 'bob', grants: ['get'] });
    // Granting twice is harmless; revoking what was never granted too.
    await auth.changeAccess('alice', '_user_alice', undefined, { username: 'bob', permission: 'get', action: 'grant' });
    await auth.changeAccess('alice', '_user_alice', undefined, { username: 'bob', permission: 'list', action: 'revoke' });
    expect(auth.listAccess('alice', '_user_alice', undefined).users).toContainEqual({ name: 'bob', grants: ['get'] });
    await auth.changeAccess('alice', '_user_alice', undefined, { username: 'bob', permission: 'get', action: 'revoke' });
    expect(auth.can('bob', 'get', '_user_alice', 's1')).toBe(false);
    expect(auth.listAccess('alice', '_user_alice', undefined).users).toEqual([
      { name: 'alice', grants: ['delete', 'get', 'grant', 'list', 'put'] },
    ]);
  });

  it('grants and revokes at stream level: that stream only', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    await auth.createUser('admin', 'bob', 'pw');
    await auth.changeAccess('alice', '_user_alice', 's1', { username: 'bob', permission: 'put', action: 'grant' });
    await auth.changeAccess('alice', '_user_alice', 's1', { username: 'bob', permission: 'grant', action: 'grant' });
    expect(auth.can('bob', 'put', '_user_alice', 's1')).toBe(true);
    expect(auth.can('bob', 'put', '_user_alice', 's2')).toBe(false);
    expect(auth.can('bob', 'put', '_user_alice')).toBe(false);
    expect(auth.listAccess('alice', '_user_alice', 's1')).toEqual({ users: [{ name: 'bob', grants: ['grant', 'put'] }], groups: [] });
    expect(auth.listAccess('alice', '_user_alice', undefined).users.map((user) => user.name)).toEqual(['alice']);
    // `grant` on the stream lets bob manage that stream, not the bucket or another stream.
    expect(auth.listAccess('bob', '_user_alice', 's1').users).toHaveLength(1);
    expect(await failure(() => auth.listAccess('bob', '_user_alice', undefined))).toBe('no-perm');
    expect(await failure(() => auth.changeAccess('bob', '_user_alice', 's2', { username: 'bob', permission: 'get', action: 'grant' }))).toBe('no-perm');
    await auth.changeAccess('bob', '_user_alice', 's1', { username: 'bob', permission: 'get', action: 'grant' });
    expect(auth.can('bob', 'get', '_user_alice', 's1')).toBe(true);
    await auth.changeAccess('alice', '_user_alice', 's1', { username: 'bob', permission: 'put', action: 'revoke' });
    expect(auth.can('bob', 'put', '_user_alice', 's1')).toBe(false);
    expect(auth.can('bob', 'get', '_user_alice', 's1')).toBe(true);
  });

  it('grants to groups: g-authenticated reaches every user but anonymous', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    await auth.createUser('admin', 'bob', 'pw');
    await auth.changeAccess('admin', 'shared', undefined, { group: 'g-authenticated', permission: 'put', action: 'grant' });
    expect(auth.can('alice', 'put', 'shared', 'x')).toBe(true);
    expect(auth.can('bob', 'put', 'shared', 'y')).toBe(true);
    expect(auth.can('anonymous', 'put', 'shared', 'x')).toBe(false);
    expect(auth.listAccess('admin', 'shared', undefined)).toEqual({ users: [], groups: [{ name: 'g-authenticated', grants: ['put'] }] });
    await auth.changeAccess('admin', 'shared', undefined, { username: 'anonymous', permission: 'get', action: 'grant' });
    expect(auth.can('anonymous', 'get', 'shared', 'x')).toBe(true);
    await auth.changeAccess('admin', 'shared', undefined, { group: 'g-authenticated', permission: 'put', action: 'revoke' });
    expect(auth.can('alice', 'put', 'shared', 'x')).toBe(false);
  });

  it('validates grant changes', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    const change = (body: unknown) => auth.changeAccess('admin', 'b', undefined, body as never);
    // IorioDB's 400 invalid-field (iorio_rest_access.erl:105-118), fields checked in its order: action, role, permission.
    expect(await failure(() => change({ username: 'nobody', permission: 'get', action: 'grant' }))).toBe('invalid-field');
    expect(await failure(() => change({ group: 'g-nope', permission: 'get', action: 'grant' }))).toBe('invalid-field');
    expect(await failure(() => change({ role: 'nobody', permission: 'get', action: 'grant' }))).toBe('invalid-field');
    expect(await failure(() => change({ username: 'alice', permission: 'fly', action: 'grant' }))).toBe('invalid-field');
    expect(await failure(() => change({ username: 'alice', permission: 'get', action: 'give' }))).toBe('invalid-field');
    expect(await failure(() => change({ username: 'alice', permission: 'get' }))).toBe('invalid-field');
    expect(await failure(() => change({ username: 'alice', group: 'g-admin', permission: 'get', action: 'grant' }))).toBe('invalid-field');
    expect(await failure(() => change({ permission: 'get', action: 'grant' }))).toBe('invalid-field');
    expect(await failure(() => change(null))).toBe('invalid-body');
    expect(await failure(() => change({ username: 'a/b', permission: 'get', action: 'grant' }))).toBe('invalid-name');
    expect(await failure(() => auth.changeAccess('admin', '..', undefined, { username: 'alice', permission: 'get', action: 'grant' }))).toBe(
      'invalid-name',
    );
    expect(await failure(() => auth.listAccess('admin', 'b', 'bad name'))).toBe('invalid-name');
    expect(auth.can('alice', 'get', 'b')).toBe(false);
  });

  it('gives global permissions globally, from g-admin members only', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    await auth.createUser('admin', 'bob', 'pw');
    const grantGlobal = (actor: string, username: string, permission: Permission) =>
      auth.changeAccess(actor, `_user_${actor}`, undefined, { username, permission, action: 'grant' });
    // alice owns her bucket, which does not let her hand out global permissions.
    expect(await failure(() => grantGlobal('alice', 'alice', 'adminusers'))).toBe('no-perm');
    expect(auth.can('alice', 'adminusers')).toBe(false);
    await grantGlobal('admin', 'alice', 'viewstats');
    expect(auth.can('alice', 'viewstats')).toBe(true);
    expect(auth.can('bob', 'viewstats')).toBe(false);
    await grantGlobal('admin', 'alice', 'adminusers');
    await auth.createUser('alice', 'carol', 'pw');
    expect(auth.listUsers('alice').map((user) => user.username)).toContain('carol');
    await auth.changePassword('alice', 'bob', 'reset-by-alice');
    expect(auth.verifyToken(await auth.login('bob', 'reset-by-alice', localAddress))).toBe('bob');
    // adminusers does not reach the admins themselves.
    expect(await failure(() => auth.changePassword('alice', 'admin', 'taken-over'))).toBe('no-perm');
    expect(await failure(() => auth.deleteUser('alice', 'admin'))).toBe('no-perm');
    expect(auth.verifyToken(await auth.login('admin', 'secret', localAddress))).toBe('admin');
    expect(await failure(() => grantGlobal('alice', 'bob', 'adminusers'))).toBe('no-perm');
    await auth.changeAccess('admin', 'whatever', 'stream', { username: 'alice', permission: 'adminusers', action: 'revoke' });
    expect(auth.can('alice', 'adminusers')).toBe(false);
  });

  it('checks current grants on every call', async () => {
    const { auth } = await startNode();
    await auth.createUser('admin', 'alice', 'pw');
    expect(() => auth.check('alice', 'put', 'logs', 'app')).toThrow(IorioError);
    await auth.changeAccess('admin', 'logs', 'app', { username: 'alice', permission: 'put', action: 'grant' });
    auth.check('alice', 'put', 'logs', 'app');
    await auth.changeAccess('admin', 'logs', 'app', { username: 'alice', permission: 'put', action: 'revoke' });
    expect(await failure(() => auth.check('alice', 'put', 'logs', 'app'))).toBe('no-perm');
    expect(auth.can('ghost', 'get', 'public')).toBe(false);
  });
});

describe('auth: restarts', () => {
  it('keeps users, passwords, grants and the generated secret', async () => {
    const first = await startNode();
    await first.auth.createUser('admin', 'alice', 'pw');
    await first.auth.changePassword('admin', 'admin', 'changed');
    await first.auth.changeAccess('admin', 'public', undefined, { group: 'g-authenticated', permission: 'get', action: 'revoke' });
    const token = await first.auth.login('alice', 'pw', localAddress);
    await stopNode(first);

    clock.advance(dayMs / 2);
    const second = await startNode();
    expect(second.auth.verifyToken(token)).toBe('alice');
    expect(second.auth.verifyToken(await second.auth.login('alice', 'pw', localAddress))).toBe('alice');
    // The admin password is not reset to the configured one, and a revoked default stays revoked.
    expect(await failure(() => second.auth.login('admin', 'secret', localAddress))).toBe('unauthorized');
    expect(second.auth.verifyToken(await second.auth.login('admin', 'changed', localAddress))).toBe('admin');
    expect(second.auth.can('alice', 'get', 'public')).toBe(false);
    expect(second.auth.can('alice', 'put', '_user_alice', 's')).toBe(true);
  });

  it('refuses tokens after the secret changes', async () => {
    const first = await startNode();
    const token = await first.auth.login('admin', 'secret', localAddress);
    await stopNode(first);
    const second = await startNode({ 'auth.secret': fixedSecret });
    expect(await failure(() => second.auth.verifyToken(token))).toBe('unauthorized');
  });

  it('puts an existing user named as the admin into g-admin', async () => {
    const first = await startNode();
    await first.auth.createUser('admin', 'boss', 'boss-pw');
    expect(first.auth.can('boss', 'adminusers')).toBe(false);
    await stopNode(first);
    const second = await startNode({ 'auth.admin.username': 'boss', 'auth.admin.password': 'ignored' });
    expect(second.auth.can('boss', 'adminusers')).toBe(true);
    expect(second.auth.verifyToken(await second.auth.login('boss', 'boss-pw', localAddress))).toBe('boss');
  });
});
