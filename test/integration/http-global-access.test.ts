/**
 * Global grants over HTTP on a real node: POST /access and GET /access (no
 * bucket), IorioDB's own form /access/$$iorio.permissions$$, and what a
 * global grant changes for the user: viewstats opens /stats and /metrics to
 * a client on another machine, adminusers opens /users, a resource
 * permission granted globally covers every bucket. Refusals keep IorioDB's
 * shapes: 401 no-perm with www-authenticate: jwt, 400 invalid-field.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { append, call, createUser, startTestNode, type TestNode } from './http-harness.js';

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

const admin = (method: string, path: string, json?: unknown) => call(node, method, path, { token: node.adminToken, ...(json === undefined ? {} : { json }) });

/** A GET as a client on another machine sees it (the node allows /stats to loopback callers without viewstats). */
async function fromAfar(path: string, token: string): Promise<number> {
  const reply = await node.node.app.inject({ method: 'GET', url: path, remoteAddress: '192.0.2.7', headers: { 'x-session': token } });
  return reply.statusCode;
}

describe('global grants', () => {
  test('POST /access grants viewstats: /stats and /metrics open to the user from afar; revoking closes them', async () => {
    expect(await fromAfar('/stats', bob)).toBe(401);
    const granted = await admin('POST', '/access', { username: 'bob', permission: 'viewstats', action: 'grant' });
    expect(granted.status).toBe(200);
    expect(granted.headers.get('content-type')).toBe('application/json');
    expect(granted.body).toEqual({ ok: true });
    expect(await fromAfar('/stats', bob)).toBe(200);
    expect(await fromAfar('/metrics', bob)).toBe(200);
    expect((await admin('GET', '/access')).body.users).toContainEqual({ name: 'bob', grants: ['viewstats'] });

    expect((await admin('POST', '/access', { role: 'bob', permission: 'viewstats', action: 'revoke' })).status).toBe(200);
    expect(await fromAfar('/stats', bob)).toBe(401);
    expect((await admin('GET', '/access')).body.users).not.toContainEqual(expect.objectContaining({ name: 'bob' }));
  });

  test("IorioDB's form, /access/$$iorio.permissions$$ with role: adminusers for a user, listed as global", async () => {
    const carol = await createUser(node, 'carol');
    expect((await call(node, 'GET', '/users', { token: carol })).status).toBe(401);
    const granted = await admin('POST', '/access/%24%24iorio.permissions%24%24', { role: 'carol', permission: 'adminusers', action: 'grant' });
    expect(granted.status).toBe(200);
    expect((await call(node, 'GET', '/users', { token: carol })).status).toBe(200);
    expect((await admin('GET', '/access/%24%24iorio.permissions%24%24')).body).toEqual((await admin('GET', '/access')).body);
    expect((await admin('GET', '/access')).body.users).toContainEqual({ name: 'carol', grants: ['adminusers'] });
  });

  test('a resource permission granted globally covers every bucket, and groups take global grants too', async () => {
    await append(node, 'anywhere', 's', { n: 1 });
    expect((await call(node, 'GET', '/streams/anywhere/s', { token: alice })).status).toBe(401);
    expect((await admin('POST', '/groups', { name: 'readers' })).status).toBe(201);
    expect((await admin('POST', '/groups/readers/users', { username: 'alice' })).status).toBe(200);
    expect((await admin('POST', '/access', { group: 'readers', permission: 'get', action: 'grant' })).status).toBe(200);
    expect((await call(node, 'GET', '/streams/anywhere/s', { token: alice })).status).toBe(200);
    expect((await admin('GET', '/access')).body.groups).toContainEqual({ name: 'readers', grants: ['get'] });
  });

  test('who may: no-perm (401, www-authenticate: jwt) without adminusers, and adminusers alone cannot give global permissions', async () => {
    const refused = await call(node, 'POST', '/access', { token: bob, json: { username: 'bob', permission: 'viewstats', action: 'grant' } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toBe('jwt');
    expect(refused.body.type).toBe('no-perm');
    expect((await call(node, 'GET', '/access', { token: bob })).status).toBe(401);
    expect((await call(node, 'GET', '/access')).status).toBe(401);

    const dave = await createUser(node, 'dave');
    expect((await admin('POST', '/access', { username: 'dave', permission: 'adminusers', action: 'grant' })).status).toBe(200);
    expect((await call(node, 'GET', '/access', { token: dave })).status).toBe(200);
    const escalation = await call(node, 'POST', '/access', { token: dave, json: { username: 'dave', permission: 'viewstats', action: 'grant' } });
    expect(escalation.status).toBe(401);
    expect(escalation.body.type).toBe('no-perm');
  });

  test('bad fields: 400 invalid-field with field and value, in the order IorioDB checks them', async () => {
    const cases: [unknown, string, unknown][] = [
      [{ username: 'bob', permission: 'viewstats' }, 'action', null],
      [{ permission: 'viewstats', action: 'grant' }, 'role', null],
      [{ username: 'bob', permission: 'stats', action: 'grant' }, 'permission', 'stats'],
      [{ username: 'nobody', permission: 'viewstats', action: 'grant' }, 'username', 'nobody'],
      [{ username: 'bob', permission: 'viewstats', action: 'give' }, 'action', 'give'],
    ];
    for (const [body, field, value] of cases) {
      const reply = await admin('POST', '/access', body);
      expect(reply.status, JSON.stringify(body)).toBe(400);
      expect(reply.headers.get('content-type')).toBe('application/json');
      expect(reply.body).toEqual({ type: 'invalid-field', reason: expect.any(String), field, value });
    }
  });

  test('a global permission on a bucket is still refused, and the answer says where it goes', async () => {
    const reply = await admin('POST', '/access/somebucket', { username: 'bob', permission: 'viewstats', action: 'grant' });
    expect(reply.status).toBe(400);
    expect(reply.body).toEqual({ type: 'invalid-field', reason: expect.stringContaining('POST /access'), field: 'permission', value: 'viewstats' });
  });
});
