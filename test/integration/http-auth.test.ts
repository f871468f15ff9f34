import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { append, call, createUser, login, readAll, startTestNode, testSecret, type TestNode } from './http-harness.js';

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
  test('POST /sessions answers 201 with a JWT whose body is {u, exp}', async () => {
    const reply = await call(node, 'POST', '/sessions', { json: { username: 'admin', password: 'secret' } });
    expect(reply.status).toBe(201);
    expect(reply.body).toEqual({ ok: true, token: expect.any(String), username: 'admin' });
    const claims = jwt.decode(reply.body.token) as Record<string, unknown>;
    expect(claims['u']).toBe('admin');
    expect(typeof claims['exp']).toBe('number');
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

  test('GET /sessions without a token is 403', async () => {
    const reply = await call(node, 'GET', '/sessions');
    expect(reply.status).toBe(403);
    expect(reply.body.type).toBe('no-perm');
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
  test('an admin creates a user (201), twice is 409', async () => {
    expect((await call(node, 'POST', '/users', { token: node.adminToken, json: { username: 'carol', password: 'pw1' } })).status).toBe(201);
    const again = await call(node, 'POST', '/users', { token: node.adminToken, json: { username: 'carol', password: 'pw2' } });
    expect(again.status).toBe(409);
    expect(again.body.type).toBe('conflict');
    await login(node.url, 'carol', 'pw1');
  });

  test('only an admin creates, lists and deletes users', async () => {
    const create = await call(node, 'POST', '/users', { token: alice, json: { username: 'eve', password: 'pw' } });
    expect(create.status).toBe(403);
    expect(create.body.type).toBe('no-perm');
    expect((await call(node, 'POST', '/users', { json: { username: 'eve', password: 'pw' } })).status).toBe(403);
    expect((await call(node, 'GET', '/users', { token: alice })).status).toBe(403);
    expect((await call(node, 'DELETE', '/users/bob', { token: alice })).status).toBe(403);
    const list = await call(node, 'GET', '/users', { token: node.adminToken });
    expect(list.status).toBe(200);
    const names = list.body.map((user: { username: string }) => user.username);
    expect(names).toEqual(expect.arrayContaining(['admin', 'alice', 'bob']));
    expect(names).not.toContain('eve');
  });

  test('a user changes their own password (PUT /users/:username and IorioDB PUT /users)', async () => {
    const dave = await createUser(node, 'dave', 'old-pw');
    expect((await call(node, 'PUT', '/users/dave', { token: dave, json: { password: 'new-pw' } })).status).toBe(200);
    await login(node.url, 'dave', 'new-pw');
    await expect(login(node.url, 'dave', 'old-pw')).rejects.toThrow(/401/);
    expect((await call(node, 'PUT', '/users', { token: dave, json: { username: 'dave', password: 'newer-pw' } })).body).toEqual({ ok: true });
    await login(node.url, 'dave', 'newer-pw');
  });

  test("a user cannot change another user's password; an admin can", async () => {
    const reply = await call(node, 'PUT', '/users/bob', { token: alice, json: { password: 'hijacked' } });
    expect(reply.status).toBe(403);
    expect((await call(node, 'PUT', '/users', { token: alice, json: { username: 'bob', password: 'hijacked' } })).status).toBe(403);
    expect((await call(node, 'PUT', '/users/bob', { json: { password: 'hijacked' } })).status).toBe(403);
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
    expect([401, 403]).toContain(after.status);
  });
});

describe('ownership and grants', () => {
  test('a user owns _user_<name>; another user may not read, write or delete it', async () => {
    await append(node, '_user_alice', 'diary', { secret: 1 }, alice);
    const reads = await call(node, 'GET', '/streams/_user_alice/diary', { token: bob });
    expect(reads.status).toBe(403);
    expect(reads.body.type).toBe('no-perm');
    const writes = await call(node, 'POST', '/streams/_user_alice/diary', { token: bob, json: { forged: true } });
    expect(writes.status).toBe(403);
    const deletes = await call(node, 'DELETE', '/streams/_user_alice/diary', { token: bob });
    expect(deletes.status).toBe(403);
    const patches = await call(node, 'PATCH', '/streams/_user_alice/diary', {
      token: bob,
      json: [{ op: 'add', path: '/x', value: 1 }],
      contentType: 'application/json-patch+json',
    });
    expect(patches.status).toBe(403);
    expect((await call(node, 'GET', '/streams/_user_alice', { token: bob })).status).toBe(403);
    const grant = await call(node, 'POST', '/access/_user_alice', { token: bob, json: { username: 'bob', permission: 'put', action: 'grant' } });
    expect(grant.status).toBe(403);
    expect((await call(node, 'PUT', '/policies/_user_alice', { token: bob, json: { max_count: 1 } })).status).toBe(403);
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
    expect((await call(node, 'POST', '/streams/_user_alice/diary', { token: bob, json: 1 })).status).toBe(403);
    const listing = await call(node, 'GET', '/access/_user_alice', { token: alice });
    expect(listing.status).toBe(200);
    expect(listing.body.users).toEqual(expect.arrayContaining([{ username: 'bob', permissions: ['get'] }]));
    expect(Array.isArray(listing.body.groups)).toBe(true);
    expect((await call(node, 'GET', '/access/_user_alice', { token: bob })).status).toBe(403);
    const revoked = await call(node, 'POST', '/access/_user_alice', { token: alice, json: { username: 'bob', permission: 'get', action: 'revoke' } });
    expect(revoked.status).toBe(200);
    expect((await call(node, 'GET', '/streams/_user_alice/diary', { token: bob })).status).toBe(403);
  });

  test('grants on one stream', async () => {
    await append(node, '_user_alice', 'shared', { s: 1 }, alice);
    const granted = await call(node, 'POST', '/access/_user_alice/shared', { token: alice, json: { username: 'bob', permission: 'get', action: 'grant' } });
    expect(granted.status).toBe(200);
    expect((await call(node, 'GET', '/streams/_user_alice/shared', { token: bob })).status).toBe(200);
    expect((await call(node, 'GET', '/streams/_user_alice/diary', { token: bob })).status).toBe(403);
    const listing = await call(node, 'GET', '/access/_user_alice/shared', { token: alice });
    expect(listing.body.users).toEqual(expect.arrayContaining([{ username: 'bob', permissions: ['get'] }]));
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
    expect((await call(node, 'POST', '/streams/public/news', { token: alice, json: 1 })).status).toBe(403);
    expect((await call(node, 'GET', '/streams/public/news')).status).toBe(403);
    expect(await readAll(node, 'public', 'news')).toHaveLength(1);
  });

  test('$sys: admin may get, others not', async () => {
    expect((await call(node, 'GET', '/streams/$sys/metrics', { token: node.adminToken })).status).toBe(200);
    expect((await call(node, 'GET', '/streams/$sys/metrics', { token: alice })).status).toBe(403);
  });
});
