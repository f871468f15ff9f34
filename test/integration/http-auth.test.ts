import jwt from 'jsonwebtoken';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { ManualClock } from '../helpers/clock.js';
import { append, call, createUser, login, readAll, startTestNode, testSecret, type Reply, type TestNode } from './http-harness.js';

let node: TestNode;
let alice: string;
let bob: string;

beforeAll(async () => {
  node = await startTestNode();
  alice = await createUser(node, 'alice');
  bob = await createUser(node, 'bob');
});
afterAll(async () => {
  await node?.stop();
});

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('sessions', () => {
  test('POST /sessions answers 201 with a JWT whose body is {u, exp} plus the session generation g', async () => {
    const reply = await call(node, 'POST', '/sessions', { json: { username: 'admin', password: 'secret' } });
    expect(reply.status).toBe(201);
    expect(reply.body).toEqual({ ok: true, token: expect.any(String), username: 'admin' });
    const claims = jwt.decode(reply.body.token) as Record<string, unknown>;
    expect(claims['u']).toBe('admin');
    expect(typeof claims['exp']).toBe('number');
    expect(claims['g']).toEqual(expect.any(String));
  });

  test.each([
    ['a wrong password', { username: 'admin', password: 'nope' }],
    ['an unknown user', { username: 'nobody', password: 'secret' }],
  ])('%s is 401', async (_name, body) => {
    const reply = await call(node, 'POST', '/sessions', { json: body });
    expect(reply.status).toBe(401);
    expect(reply.body.type).toBe('unauthorized');
  });

  test.each([
    ['no password', { username: 'admin' }],
    ['a number as password', { username: 'admin', password: 1 }],
    ['an array', ['admin', 'secret']],
  ])('%s is 400', async (_name, body) => {
    const reply = await call(node, 'POST', '/sessions', { json: body });
    expect(reply.status).toBe(400);
    expect(reply.body.type).toBe('invalid-body');
  });

  test('GET /sessions tells who the token belongs to, in each place a token may be', async () => {
    expect((await call(node, 'GET', '/sessions', { token: alice })).body).toEqual({ username: 'alice' });
    const bearer = await call(node, 'GET', '/sessions', { headers: { authorization: `Bearer ${alice}` } });
    expect(bearer.body).toEqual({ username: 'alice' });
    const query = await call(node, 'GET', `/sessions?jwt=${encodeURIComponent(alice)}`);
    expect(query.body).toEqual({ username: 'alice' });
  });

  // IorioDB: no token is the anonymous session (iorio_session.erl:34-35, 54-57).
  test('GET /sessions without a token is the anonymous user', async () => {
    const reply = await call(node, 'GET', '/sessions');
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ username: 'anonymous' });
  });
});

describe('bad tokens are 401 on every route and write nothing', () => {
  const now = () => Math.floor(Date.now() / 1000);
  const badTokens: [string, () => string][] = [
    ['expired', () => jwt.sign({ u: 'admin', exp: now() - 60 }, testSecret, { algorithm: 'HS256' })],
    ['tampered', () => {
      const [header, , signature] = jwt.sign({ u: 'alice', exp: now() + 600 }, testSecret, { algorithm: 'HS256' }).split('.');
      return `${header}.${base64url({ u: 'admin', exp: now() + 600 })}.${signature}`;
    }],
    ['alg none', () => `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ u: 'admin', exp: now() + 600 })}.`],
    ['another secret', () => jwt.sign({ u: 'admin', exp: now() + 600 }, 'a-different-secret-0123456789abcdef', { algorithm: 'HS256' })],
    ['another algorithm', () => jwt.sign({ u: 'admin', exp: now() + 600 }, testSecret, { algorithm: 'HS512' })],
    ['garbage', () => 'not-a-jwt'],
  ];

  test.each(badTokens)('%s token', async (_name, makeToken) => {
    const token = makeToken();
    const routes: [string, string, unknown?][] = [
      ['POST', '/streams/tok/s', { x: 1 }],
      ['GET', '/streams/tok/s'],
      ['DELETE', '/streams/tok/s'],
      ['GET', '/sessions'],
      ['POST', '/users', { username: 'mallory', password: 'pw' }],
      ['GET', '/users'],
      ['POST', '/access/tok', { username: 'bob', permission: 'get', action: 'grant' }],
      ['PUT', '/policies/tok', { max_count: 1 }],
      ['GET', '/buckets'],
      ['GET', '/stats'],
    ];
    for (const [method, path, json] of routes) {
      const reply = await call(node, method, path, { token, ...(json === undefined ? {} : { json }) });
      expect({ method, path, status: reply.status, type: reply.body?.type }).toEqual({ method, path, status: 401, type: 'unauthorized' });
    }
    const viaBearer = await call(node, 'GET', '/streams/tok/s', { headers: { authorization: `Bearer ${token}` } });
    expect(viaBearer.status).toBe(401);
    const viaQuery = await call(node, 'GET', `/streams/tok/s?jwt=${encodeURIComponent(token)}`);
    expect(viaQuery.status).toBe(401);
    expect(await readAll(node, 'tok', 's')).toEqual([]);
    expect((await call(node, 'GET', '/users', { token: node.adminToken })).body.map((user: { username: string }) => user.username)).not.toContain('mallory');
  });

  test('/ping and POST /sessions ignore a bad token', async () => {
    expect((await call(node, 'GET', '/ping', { token: 'not-a-jwt' })).status).toBe(200);
    expect((await call(node, 'POST', '/sessions', { token: 'not-a-jwt', json: { username: 'alice', password: 'pw-alice' } })).status).toBe(201);
  });
});

describe('users', () => {
  // IorioDB: 400 user-exists (iorio_rest_user.erl:70-73).
  test('an admin creates a user (201), twice is 400 user-exists', async () => {
    expect((await call(node, 'POST', '/users', { token: node.adminToken, json: { username: 'carol', password: 'pw1' } })).status).toBe(201);
    const again = await call(node, 'POST', '/users', { token: node.adminToken, json: { username: 'carol', password: 'pw2' } });
    expect(again.status).toBe(400);
    expect(again.body.type).toBe('user-exists');
    await login(node.url, 'carol', 'pw1');
  });

  test('only an admin creates, lists and deletes users', async () => {
    const create = await call(node, 'POST', '/users', { token: alice, json: { username: 'eve', password: 'pw' } });
    expect(create.status).toBe(401);
    expect(create.body.type).toBe('no-perm');
    expect((await call(node, 'POST', '/users', { json: { username: 'eve', password: 'pw' } })).status).toBe(401);
    expect((await call(node, 'GET', '/users', { token: alice })).status).toBe(401);
    expect((await call(node, 'DELETE', '/users/bob', { token: alice })).status).toBe(401);
    const list = await call(node, 'GET', '/users', { token: node.adminToken });
    expect(list.status).toBe(200);
    const names = list.body.map((user: { username: string }) => user.username);
    expect(names).toEqual(expect.arrayContaining(['admin', 'alice', 'bob']));
    expect(names).not.toContain('eve');
  });

  test('a user changes their own password (PUT /users/:username and IorioDB PUT /users)', async () => {
    const dave = await createUser(node, 'dave', 'old-pw');
    expect((await call(node, 'PUT', '/users/dave', { token: dave, json: { password: 'new-pw' } })).status).toBe(200);
    const daveAgain = await login(node.url, 'dave', 'new-pw');
    await expect(login(node.url, 'dave', 'old-pw')).rejects.toThrow(/401/);
    // The change ended the session it was made with.
    expect((await call(node, 'GET', '/sessions', { token: dave })).status).toBe(401);
    expect((await call(node, 'PUT', '/users', { token: daveAgain, json: { username: 'dave', password: 'newer-pw' } })).body).toEqual({ ok: true });
    await login(node.url, 'dave', 'newer-pw');
  });

  test("a user cannot change another user's password; an admin can", async () => {
    const reply = await call(node, 'PUT', '/users/bob', { token: alice, json: { password: 'hijacked' } });
    expect(reply.status).toBe(401);
    expect((await call(node, 'PUT', '/users', { token: alice, json: { username: 'bob', password: 'hijacked' } })).status).toBe(401);
    expect((await call(node, 'PUT', '/users/bob', { json: { password: 'hijacked' } })).status).toBe(401);
    await login(node.url, 'bob', 'pw-bob');
    await createUser(node, 'frank', 'f1');
    expect((await call(node, 'PUT', '/users/frank', { token: node.adminToken, json: { password: 'f2' } })).status).toBe(200);
    await login(node.url, 'frank', 'f2');
  });

  test('an admin deletes a user: the login and the session stop working', async () => {
    const gina = await createUser(node, 'gina');
    const reply = await call(node, 'DELETE', '/users/gina', { token: node.adminToken });
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ ok: true });
    await expect(login(node.url, 'gina', 'pw-gina')).rejects.toThrow(/401/);
    const after = await call(node, 'GET', '/sessions', { token: gina });
    expect([401, 401]).toContain(after.status);
  });
});

describe('ownership and grants', () => {
  test('a user owns _user_<name>; another user may not read, write or delete it', async () => {
    await append(node, '_user_alice', 'diary', { secret: 1 }, alice);
    const reads = await call(node, 'GET', '/streams/_user_alice/diary', { token: bob });
    expect(reads.status).toBe(401);
    expect(reads.body.type).toBe('no-perm');
    const writes = await call(node, 'POST', '/streams/_user_alice/diary', { token: bob, json: { forged: true } });
    expect(writes.status).toBe(401);
    const deletes = await call(node, 'DELETE', '/streams/_user_alice/diary', { token: bob });
    expect(deletes.status).toBe(401);
    const patches = await call(node, 'PATCH', '/streams/_user_alice/diary', {
      token: bob,
      json: [{ op: 'add', path: '/x', value: 1 }],
      contentType: 'application/json-patch+json',
    });
    expect(patches.status).toBe(401);
    expect((await call(node, 'GET', '/streams/_user_alice', { token: bob })).status).toBe(401);
    const grant = await call(node, 'POST', '/access/_user_alice', { token: bob, json: { username: 'bob', permission: 'put', action: 'grant' } });
    expect(grant.status).toBe(401);
    expect((await call(node, 'PUT', '/policies/_user_alice', { token: bob, json: { max_count: 1 } })).status).toBe(401);
    expect((await readAll(node, '_user_alice', 'diary')).map((entry) => entry.data)).toEqual([{ secret: 1 }]);
    const buckets = await call(node, 'GET', '/buckets', { token: bob });
    expect(buckets.body.data).not.toContain('_user_alice');
    expect((await call(node, 'GET', '/buckets', { token: alice })).body.data).toContain('_user_alice');
  });

  test('the owner grants and revokes on the bucket; GET /access lists grants', async () => {
    const granted = await call(node, 'POST', '/access/_user_alice', { token: alice, json: { username: 'bob', permission: 'get', action: 'grant' } });
    expect(granted.status).toBe(200);
    expect(granted.body).toEqual({ ok: true });
    expect((await call(node, 'GET', '/streams/_user_alice/diary', { token: bob })).status).toBe(200);
    expect((await call(node, 'POST', '/streams/_user_alice/diary', { token: bob, json: 1 })).status).toBe(401);
    const listing = await call(node, 'GET', '/access/_user_alice', { token: alice });
    expect(listing.status).toBe(200);
    expect(listing.body.users).toEqual(expect.arrayContaining([{ name: 'bob', grants: ['get'] }]));
    expect(Array.isArray(listing.body.groups)).toBe(true);
    expect((await call(node, 'GET', '/access/_user_alice', { token: bob })).status).toBe(401);
    const revoked = await call(node, 'POST', '/access/_user_alice', { token: alice, json: { username: 'bob', permission: 'get', action: 'revoke' } });
    expect(revoked.status).toBe(200);
    expect((await call(node, 'GET', '/streams/_user_alice/diary', { token: bob })).status).toBe(401);
  });

  test('grants on one stream', async () => {
    await append(node, '_user_alice', 'shared', { s: 1 }, alice);
    const granted = await call(node, 'POST', '/access/_user_alice/shared', { token: alice, json: { username: 'bob', permission: 'get', action: 'grant' } });
    expect(granted.status).toBe(200);
    expect((await call(node, 'GET', '/streams/_user_alice/shared', { token: bob })).status).toBe(200);
    expect((await call(node, 'GET', '/streams/_user_alice/diary', { token: bob })).status).toBe(401);
    const listing = await call(node, 'GET', '/access/_user_alice/shared', { token: alice });
    expect(listing.body.users).toEqual(expect.arrayContaining([{ name: 'bob', grants: ['get'] }]));
  });

  test.each([
    ['both username and group', { username: 'bob', group: 'g-admin', permission: 'get', action: 'grant' }],
    ['neither', { permission: 'get', action: 'grant' }],
    ['a global permission', { username: 'bob', permission: 'adminusers', action: 'grant' }],
    ['an unknown permission', { username: 'bob', permission: 'root', action: 'grant' }],
    ['an unknown action', { username: 'bob', permission: 'get', action: 'give' }],
    ['a bad user name', { username: '../bob', permission: 'get', action: 'grant' }],
  ])('an access change with %s is 400', async (_name, body) => {
    const reply = await call(node, 'POST', '/access/_user_alice', { token: alice, json: body });
    expect(reply.status).toBe(400);
    expect(reply.body.type).toMatch(/^invalid-/);
  });

  test('public: authenticated users get, only admin puts, anonymous neither', async () => {
    await append(node, 'public', 'news', { n: 1 });
    expect((await call(node, 'GET', '/streams/public/news', { token: alice })).status).toBe(200);
    expect((await call(node, 'POST', '/streams/public/news', { token: alice, json: 1 })).status).toBe(401);
    expect((await call(node, 'GET', '/streams/public/news')).status).toBe(401);
    expect(await readAll(node, 'public', 'news')).toHaveLength(1);
  });

  test('$sys: admin may get, others not', async () => {
    expect((await call(node, 'GET', '/streams/$sys/metrics', { token: node.adminToken })).status).toBe(200);
    expect((await call(node, 'GET', '/streams/$sys/metrics', { token: alice })).status).toBe(401);
  });
});

describe('ending sessions (the node clock stands still: every token here is issued in the same second)', () => {
  const clock = new ManualClock();
  let frozen: TestNode;
  beforeAll(async () => {
    frozen = await startTestNode({}, { clock });
  });
  afterAll(async () => {
    await frozen?.stop();
  });

  async function whoami(token: string): Promise<number> {
    return (await call(frozen, 'GET', '/sessions', { token })).status;
  }
  const issuedAt = (token: string) => (jwt.decode(token) as { iat: number }).iat;

  test('a password change ends every earlier token of the user at once, and nobody else\'s', async () => {
    const first = await createUser(frozen, 'pat', 'old-pw');
    const second = await login(frozen.url, 'pat', 'old-pw');
    const other = await createUser(frozen, 'quinn');
    expect([await whoami(first), await whoami(second)]).toEqual([200, 200]);
    expect((await call(frozen, 'PUT', '/users/pat', { token: frozen.adminToken, json: { password: 'new-pw' } })).status).toBe(200);
    expect([await whoami(first), await whoami(second)]).toEqual([401, 401]);
    const fresh = await login(frozen.url, 'pat', 'new-pw');
    // Same second as the ended ones: their iat alone could not tell them apart.
    expect(issuedAt(fresh)).toBe(issuedAt(first));
    expect(await whoami(fresh)).toBe(200);
    expect([await whoami(other), await whoami(frozen.adminToken)]).toEqual([200, 200]);
  });

  test('a user deleted and created again in the same second does not accept the old user\'s token', async () => {
    const old = await createUser(frozen, 'rita', 'same-pw');
    expect((await call(frozen, 'DELETE', '/users/rita', { token: frozen.adminToken })).status).toBe(200);
    expect((await call(frozen, 'POST', '/users', { token: frozen.adminToken, json: { username: 'rita', password: 'same-pw' } })).status).toBe(201);
    const reply = await call(frozen, 'GET', '/sessions', { token: old });
    expect([reply.status, reply.body.type]).toEqual([401, 'unauthorized']);
    const fresh = await login(frozen.url, 'rita', 'same-pw');
    expect(issuedAt(fresh)).toBe(issuedAt(old));
    expect(await whoami(fresh)).toBe(200);
  });

  test('DELETE /sessions ends every session of the caller, and only the caller\'s', async () => {
    const one = await createUser(frozen, 'sam');
    const two = await login(frozen.url, 'sam', 'pw-sam');
    const other = await createUser(frozen, 'tom');
    const reply = await call(frozen, 'DELETE', '/sessions', { token: one });
    expect([reply.status, reply.body]).toEqual([200, { ok: true }]);
    expect([await whoami(one), await whoami(two)]).toEqual([401, 401]);
    expect([await whoami(other), await whoami(frozen.adminToken)]).toEqual([200, 200]);
    expect((await call(frozen, 'DELETE', '/sessions', { token: one })).status).toBe(401);
    const anonymous = await call(frozen, 'DELETE', '/sessions');
    expect([anonymous.status, anonymous.body.type]).toEqual([401, 'no-perm']);
    expect(await whoami(await login(frozen.url, 'sam', 'pw-sam'))).toBe(200);
  });

  test('DELETE /sessions/:username: an admin or the user itself, nobody else', async () => {
    const uma = await createUser(frozen, 'uma');
    const vic = await createUser(frozen, 'vic');
    const byOther = await call(frozen, 'DELETE', '/sessions/uma', { token: vic });
    expect([byOther.status, byOther.body.type]).toEqual([401, 'no-perm']);
    expect((await call(frozen, 'DELETE', '/sessions/uma')).status).toBe(401);
    expect(await whoami(uma)).toBe(200);
    expect((await call(frozen, 'DELETE', '/sessions/uma', { token: frozen.adminToken })).body).toEqual({ ok: true });
    expect([await whoami(uma), await whoami(vic)]).toEqual([401, 200]);
    expect((await call(frozen, 'DELETE', '/sessions/vic', { token: vic })).status).toBe(200);
    expect(await whoami(vic)).toBe(401);
    const errors = await Promise.all(['/sessions/nobody', '/sessions/anonymous', '/sessions/bad%2Fname'].map((path) => call(frozen, 'DELETE', path, { token: frozen.adminToken })));
    expect(errors.map((reply) => [reply.status, reply.body.type])).toEqual([[404, 'not-found'], [400, 'invalid-param'], [400, 'invalid-name']]);
    expect(await whoami(frozen.adminToken)).toBe(200);
  });

  test('a token without a session generation (issued before the upgrade) is refused: log in again', async () => {
    const nowSec = Math.floor(clock.now() / 1000);
    const old = jwt.sign({ u: 'admin', iat: nowSec, exp: nowSec + 600 }, testSecret, { algorithm: 'HS256' });
    const reply = await call(frozen, 'GET', '/sessions', { token: old });
    expect([reply.status, reply.body.type]).toEqual([401, 'unauthorized']);
    expect(reply.body.reason).toMatch(/older format: log in again/);
  });
});

describe('login throttling (auth.login.failures.max = 5 within 1m; clients on distinct loopback addresses)', () => {
  const clock = new ManualClock();
  let guarded: TestNode;
  beforeAll(async () => {
    guarded = await startTestNode({}, { clock });
    for (const username of ['tina', 'ursula', 'wade', 'xena', 'yann', 'zoe']) {
      const reply = await call(guarded, 'POST', '/users', { token: guarded.adminToken, json: { username, password: `pw-${username}` } });
      expect(reply.status).toBe(201);
    }
  });
  afterAll(async () => {
    await guarded?.stop();
  });
  afterEach(() => {
    // Every window of the previous test passes.
    clock.advance(60_000);
  });

  function attempt(username: string, password: string, from: string): Promise<Reply> {
    return call(guarded, 'POST', '/sessions', { json: { username, password }, localAddress: from });
  }

  function expectThrottled(reply: Reply, retryAfterSecs: number, reason: RegExp): void {
    expect(reply.status).toBe(429);
    expect(reply.headers.get('retry-after')).toBe(String(retryAfterSecs));
    expect(reply.body).toEqual({ type: 'rate-limited', reason: expect.stringMatching(reason), retry_after_secs: retryAfterSecs });
  }

  test('after 5 failures from one address its next login is 429 with Retry-After, even with the right password; other addresses log in', async () => {
    for (const username of ['tina', 'nobody-1', 'ursula', 'nobody-2', 'tina']) {
      expect((await attempt(username, 'wrong', '127.0.0.2')).status).toBe(401);
    }
    expectThrottled(await attempt('wade', 'pw-wade', '127.0.0.2'), 60, /from 127\.0\.0\.2/);
    expect((await attempt('wade', 'pw-wade', '127.0.0.3')).status).toBe(201);
    clock.advance(30_000);
    expectThrottled(await attempt('wade', 'pw-wade', '127.0.0.2'), 30, /from 127\.0\.0\.2/);
    clock.advance(30_000);
    expect((await attempt('wade', 'pw-wade', '127.0.0.2')).status).toBe(201);
  });

  test('after 5 failures of one user name, from any addresses, its next login is 429 even with the right password; other users log in', async () => {
    for (const last of [4, 5, 6, 7, 8]) expect((await attempt('xena', 'wrong', `127.0.0.${last}`)).status).toBe(401);
    expectThrottled(await attempt('xena', 'pw-xena', '127.0.0.9'), 60, /for user xena/);
    expect((await attempt('yann', 'pw-yann', '127.0.0.9')).status).toBe(201);
    clock.advance(59_999);
    expectThrottled(await attempt('xena', 'pw-xena', '127.0.0.9'), 1, /for user xena/);
    clock.advance(1);
    expect((await attempt('xena', 'pw-xena', '127.0.0.9')).status).toBe(201);
  });

  test('an unknown user name is throttled like a known one: a 429 tells nothing about which users exist', async () => {
    for (const last of [10, 11, 12, 13, 14]) expect((await attempt('nobody-at-all', 'wrong', `127.0.0.${last}`)).status).toBe(401);
    expectThrottled(await attempt('nobody-at-all', 'wrong', '127.0.0.15'), 60, /for user nobody-at-all/);
  });

  test('a successful login resets the count of its user name', async () => {
    for (const last of [20, 21, 22, 23]) expect((await attempt('zoe', 'wrong', `127.0.0.${last}`)).status).toBe(401);
    expect((await attempt('zoe', 'pw-zoe', '127.0.0.24')).status).toBe(201);
    // Without the reset the second of these would already be the 6th failure.
    for (const last of [25, 26, 27, 28, 29]) expect((await attempt('zoe', 'wrong', `127.0.0.${last}`)).status).toBe(401);
    expectThrottled(await attempt('zoe', 'pw-zoe', '127.0.0.30'), 60, /for user zoe/);
  });
});
