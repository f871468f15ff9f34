/**
 * /groups on a real node: groups made, listed, given members, granted to
 * through /access and deleted (their grants and memberships with them), the
 * built-in groups' rules, and every refusal with its status and type.
 * Groups across a cluster: test/cluster/cluster-operator.test.ts.
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

describe('groups', () => {
  test('created with POST /groups (201, Location), listed after the built-in ones, shown with their members', async () => {
    const created = await admin('POST', '/groups', { name: 'ops' });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ ok: true });
    expect(created.headers.get('location')).toBe('/groups/ops');
    expect(created.headers.get('content-type')).toBe('application/json');
    const listed = await admin('GET', '/groups/');
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual([
      { name: 'g-admin', builtin: true },
      { name: 'g-authenticated', builtin: true },
      { name: 'ops', builtin: false },
    ]);
    expect((await admin('GET', '/groups/ops')).body).toEqual({ name: 'ops', builtin: false, users: [] });
    expect((await admin('GET', '/groups/g-admin')).body).toEqual({ name: 'g-admin', builtin: true, users: ['admin'] });
    expect((await admin('GET', '/groups/g-authenticated')).body).toEqual({ name: 'g-authenticated', builtin: true, users: ['admin', 'alice', 'bob'] });
  });

  test('a member gets what the group is granted, and loses it when removed', async () => {
    await append(node, 'team', 'notes', { n: 1 });
    expect((await call(node, 'GET', '/streams/team/notes', { token: bob })).status).toBe(401);
    expect((await admin('POST', '/access/team', { group: 'ops', permission: 'get', action: 'grant' })).status).toBe(200);
    // IorioDB's form: a role that is no user is a group.
    expect((await admin('POST', '/access/team', { role: 'ops', permission: 'list', action: 'grant' })).status).toBe(200);
    expect((await admin('GET', '/access/team')).body.groups).toEqual([{ name: 'ops', grants: ['get', 'list'] }]);
    const added = await admin('POST', '/groups/ops/users', { username: 'bob' });
    expect(added.status).toBe(200);
    expect(added.body).toEqual({ ok: true });
    // Idempotent.
    expect((await admin('POST', '/groups/ops/users', { username: 'bob' })).status).toBe(200);
    expect((await admin('GET', '/groups/ops')).body.users).toEqual(['bob']);
    expect((await call(node, 'GET', '/streams/team/notes', { token: bob })).status).toBe(200);
    expect((await call(node, 'GET', '/streams/team', { token: bob })).body).toEqual({ status: 'ok', data: ['notes'] });
    expect((await call(node, 'GET', '/streams/team/notes', { token: alice })).status).toBe(401);
    const removed = await admin('DELETE', '/groups/ops/users/bob');
    expect(removed.status).toBe(200);
    expect(removed.body).toEqual({ ok: true });
    expect((await call(node, 'GET', '/streams/team/notes', { token: bob })).status).toBe(401);
    const again = await admin('DELETE', '/groups/ops/users/bob');
    expect(again.status).toBe(404);
    expect(again.body.type).toBe('not-found');
  });

  test('deleting a group deletes its grants and memberships: a group made again under the name starts empty', async () => {
    await admin('POST', '/groups', { name: 'temp' });
    await admin('POST', '/access/team', { group: 'temp', permission: 'put', action: 'grant' });
    await admin('POST', '/groups/temp/users', { username: 'alice' });
    expect((await call(node, 'POST', '/streams/team/notes', { token: alice, json: { by: 'alice' } })).status).toBe(201);
    const deleted = await admin('DELETE', '/groups/temp');
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual({ ok: true });
    expect((await call(node, 'POST', '/streams/team/notes', { token: alice, json: { by: 'alice' } })).status).toBe(401);
    expect((await admin('GET', '/access/team')).body.groups.map((group: { name: string }) => group.name)).toEqual(['ops']);
    expect((await admin('GET', '/groups/temp')).status).toBe(404);
    // A grant to a group that no longer exists is refused like one to an unknown user.
    const grant = await admin('POST', '/access/team', { group: 'temp', permission: 'put', action: 'grant' });
    expect(grant.status).toBe(400);
    expect(grant.body).toMatchObject({ type: 'invalid-field', field: 'group', value: 'temp' });
    await admin('POST', '/groups', { name: 'temp' });
    expect((await admin('GET', '/groups/temp')).body.users).toEqual([]);
    expect((await call(node, 'POST', '/streams/team/notes', { token: alice, json: { by: 'alice' } })).status).toBe(401);
  });

  test('g-admin: members are admins; only a g-admin member changes it; the configured admin stays in it', async () => {
    const carol = await createUser(node, 'carol');
    // carol may manage users (adminusers) but is no admin: she cannot make anyone one.
    await node.node.auth.changeAccess('admin', 'any', undefined, { username: 'carol', permission: 'adminusers', action: 'grant' });
    expect((await call(node, 'GET', '/groups', { token: carol })).status).toBe(200);
    const refused = await call(node, 'POST', '/groups/g-admin/users', { token: carol, json: { username: 'carol' } });
    expect(refused.status).toBe(401);
    expect(refused.body.type).toBe('no-perm');
    expect((await admin('POST', '/groups/g-admin/users', { username: 'carol' })).status).toBe(200);
    expect((await call(node, 'POST', '/access/anywhere', { token: carol, json: { username: 'bob', permission: 'get', action: 'grant' } })).status).toBe(200);
    expect((await admin('DELETE', '/groups/g-admin/users/carol')).status).toBe(200);
    expect((await call(node, 'POST', '/access/anywhere', { token: carol, json: { username: 'bob', permission: 'get', action: 'grant' } })).status).toBe(401);
    const kept = await admin('DELETE', '/groups/g-admin/users/admin');
    expect(kept.status).toBe(400);
    expect(kept.body.type).toBe('invalid-param');
    const anonymous = await admin('POST', '/groups/g-admin/users', { username: 'anonymous' });
    expect(anonymous.status).toBe(400);
    expect(anonymous.body.type).toBe('invalid-param');
  });

  test('refusals: the built-in groups, names, unknown users and groups', async () => {
    const cases: [string, string, unknown, number, string][] = [
      ['POST', '/groups', { name: 'ops' }, 409, 'conflict'],
      ['POST', '/groups', { name: 'g-admin' }, 409, 'conflict'],
      ['POST', '/groups', {}, 400, 'invalid-field'],
      ['POST', '/groups', { name: 7 }, 400, 'invalid-field'],
      ['POST', '/groups', { name: '../x' }, 400, 'invalid-name'],
      ['POST', '/groups', [], 400, 'invalid-body'],
      ['DELETE', '/groups/g-admin', undefined, 400, 'invalid-param'],
      ['DELETE', '/groups/g-authenticated', undefined, 400, 'invalid-param'],
      ['DELETE', '/groups/nothing', undefined, 404, 'not-found'],
      ['GET', '/groups/nothing', undefined, 404, 'not-found'],
      ['POST', '/groups/nothing/users', { username: 'bob' }, 404, 'not-found'],
      ['POST', '/groups/ops/users', { username: 'nobody' }, 404, 'not-found'],
      ['POST', '/groups/ops/users', {}, 400, 'invalid-field'],
      ['POST', '/groups/g-authenticated/users', { username: 'bob' }, 400, 'invalid-param'],
      ['DELETE', '/groups/g-authenticated/users/bob', undefined, 400, 'invalid-param'],
      ['DELETE', '/groups/ops/users/nobody', undefined, 404, 'not-found'],
    ];
    for (const [method, path, json, status, type] of cases) {
      const reply = await admin(method, path, json);
      expect({ method, path, status: reply.status, type: reply.body?.type }).toEqual({ method, path, status, type });
    }
    const notJson = await call(node, 'POST', '/groups', { token: node.adminToken, body: 'name=x', contentType: 'text/plain' });
    expect(notJson.status).toBe(415);
  });

  test('every route needs adminusers: 401 no-perm, with www-authenticate: jwt', async () => {
    const routes: [string, string, unknown?][] = [
      ['POST', '/groups', { name: 'mine' }],
      ['GET', '/groups'],
      ['GET', '/groups/ops'],
      ['DELETE', '/groups/ops'],
      ['POST', '/groups/ops/users', { username: 'alice' }],
      ['DELETE', '/groups/ops/users/bob'],
    ];
    for (const [method, path, json] of routes) {
      for (const token of [alice, undefined]) {
        const reply = await call(node, method, path, { ...(token === undefined ? {} : { token }), ...(json === undefined ? {} : { json }) });
        expect({ method, path, status: reply.status, type: reply.body?.type }).toEqual({ method, path, status: 401, type: 'no-perm' });
        expect(reply.headers.get('www-authenticate')).toBe('jwt');
      }
    }
    expect((await admin('GET', '/groups/ops')).status).toBe(200);
  });

  test('deleting a user drops it from its groups', async () => {
    await createUser(node, 'dave');
    await admin('POST', '/groups/ops/users', { username: 'dave' });
    expect((await admin('GET', '/groups/ops')).body.users).toContain('dave');
    expect((await admin('DELETE', '/users/dave')).status).toBe(200);
    expect((await admin('GET', '/groups/ops')).body.users).not.toContain('dave');
  });
});
