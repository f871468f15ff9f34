/**
 * IorioDB wire compatibility (issue 10): one test per row of the issue's
 * table, each against a real node, each citing the IorioDB source
 * (marianoguerra/ioriodb, src/*.erl) whose behaviour it pins down.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig, type ConfigOverrides } from '../../src/config.js';
import { call, createUser, startTestNode, type TestNode } from './http-harness.js';
import { ListenSocket, SseClient, longPoll, waitFor } from './listen-helpers.js';

describe('IorioDB wire compatibility', () => {
  let node: TestNode;
  let alice: string;

  beforeAll(async () => {
    node = await startTestNode();
    alice = await createUser(node, 'alice');
  });
  afterAll(async () => {
    await node?.stop();
  });

  it('answers JSON as application/json exactly, errors included (iorio_http.erl:21-24)', async () => {
    const replies = [
      await call(node, 'POST', '/streams/_user_alice/ct', { token: alice, json: { a: 1 } }),
      await call(node, 'GET', '/streams/_user_alice/ct', { token: alice }),
      await call(node, 'GET', '/sessions', { token: alice }),
      await call(node, 'GET', '/streams/nope/ct', { token: alice }),
      await call(node, 'GET', '/ping'),
    ];
    for (const reply of replies) expect(reply.headers.get('content-type'), reply.text).toBe('application/json');
  });

  it('answers a missing permission 401 no-perm with www-authenticate: jwt (iorio_rest_stream.erl:297-302, iorio_http.erl:13)', async () => {
    const reply = await call(node, 'POST', '/streams/private/s', { token: alice, json: { a: 1 } });
    expect(reply.status).toBe(401);
    expect(reply.body.type).toBe('no-perm');
    expect(reply.headers.get('www-authenticate')).toBe('jwt');
    const badToken = await call(node, 'GET', '/streams/public/s', { token: 'not-a-token' });
    expect(badToken.status).toBe(401);
    expect(badToken.headers.get('www-authenticate')).toBe('jwt');
  });

  it('treats a request without credentials as the anonymous session (iorio_session.erl:34-35, 54-57)', async () => {
    const session = await call(node, 'GET', '/sessions');
    expect(session.status).toBe(200);
    expect(session.body).toEqual({ username: 'anonymous' });
    // anonymous has only what grants give it.
    expect((await call(node, 'GET', '/streams/_user_alice/ct')).status).toBe(401);
    expect((await call(node, 'POST', '/access/_user_alice', { token: alice, json: { role: 'anonymous', permission: 'get', action: 'grant' } })).status).toBe(200);
    expect((await call(node, 'GET', '/streams/_user_alice/ct')).status).toBe(200);
  });

  it('answers POST /users errors as IorioDB (iorio_rest_user.erl:48-82; 415 from content_types_accepted :10-11)', async () => {
    const post = (json: unknown) => call(node, 'POST', '/users', { token: node.adminToken, json });
    const typeOf = async (json: unknown) => {
      const reply = await post(json);
      return `${reply.status} ${reply.body?.type}`;
    };
    expect(await typeOf({})).toBe('400 no-user-and-pass');
    expect(await typeOf({ password: 'x' })).toBe('400 no-user');
    expect(await typeOf({ username: 'bob' })).toBe('400 no-pass');
    expect(await typeOf({ username: 'alice', password: 'x' })).toBe('400 user-exists');
    expect(await typeOf({ username: 'bad/name', password: 'x' })).toBe('400 illegal-username');
    const created = await post({ username: 'carol', password: 'pw' });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ ok: true });
    const notJson = await call(node, 'POST', '/users', { token: node.adminToken, body: 'username=dave', contentType: 'application/x-www-form-urlencoded' });
    expect(notJson.status).toBe(415);
  });

  it('takes IorioDB\'s POST /access body {role, permission, action}, and answers 400 invalid-field (iorio_rest_access.erl:69-109)', async () => {
    const access = (json: unknown) => call(node, 'POST', '/access/_user_alice/shared', { token: alice, json });
    const granted = await access({ role: 'carol', permission: 'get', action: 'grant' });
    expect(granted.status).toBe(200);
    expect(granted.body).toEqual({ ok: true });
    expect((await access({ role: 'g-authenticated', permission: 'put', action: 'grant' })).status).toBe(200);
    // Iorio's own fields still work.
    expect((await access({ username: 'carol', permission: 'put', action: 'grant' })).status).toBe(200);
    expect((await access({ group: 'g-authenticated', permission: 'put', action: 'revoke' })).status).toBe(200);
    const missingAction = await access({ role: 'carol', permission: 'get' });
    expect(missingAction.status).toBe(400);
    expect(missingAction.body).toMatchObject({ type: 'invalid-field', field: 'action', value: null });
    expect((await access({ permission: 'get', action: 'grant' })).body).toMatchObject({ type: 'invalid-field', field: 'role', value: null });
    expect((await access({ role: 'carol', action: 'grant' })).body).toMatchObject({ type: 'invalid-field', field: 'permission', value: null });
    expect((await access({ role: 'nobody', permission: 'get', action: 'grant' })).body).toMatchObject({ type: 'invalid-field', field: 'role', value: 'nobody' });
  });

  it('lists access in IorioDB\'s shape {users:[{name,grants}],groups:[{name,grants}]} (iorio_rest_access.erl:78-87)', async () => {
    const reply = await call(node, 'GET', '/access/_user_alice/shared', { token: alice });
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ users: [{ name: 'carol', grants: ['get', 'put'] }], groups: [] });
    const bucket = await call(node, 'GET', '/access/_user_alice', { token: alice });
    expect(bucket.body.users).toContainEqual({ name: 'alice', grants: ['delete', 'get', 'grant', 'list', 'put'] });
  });

  it('answers DELETE /streams/b/s 204 with no body (iorio_rest_stream.erl:139-144)', async () => {
    await call(node, 'POST', '/streams/_user_alice/doomed', { token: alice, json: { a: 1 } });
    const reply = await call(node, 'DELETE', '/streams/_user_alice/doomed', { token: alice });
    expect(reply.status).toBe(204);
    expect(reply.text).toBe('');
    expect((await call(node, 'GET', '/streams/_user_alice/doomed', { token: alice })).body).toEqual([]);
  });

  it('takes PATCH only as application/json-patch+json; an empty stream is 400 not-found; a lost race is IorioDB\'s 409 (iorio_rest_stream.erl:122-128, 206-213, 271-273)', async () => {
    const patch = [{ op: 'add', path: '/n', value: 1 }];
    const path = '/streams/_user_alice/doc';
    const asJson = await call(node, 'PATCH', path, { token: alice, json: patch });
    expect(asJson.status).toBe(415);
    const empty = await call(node, 'PATCH', path, { token: alice, json: patch, contentType: 'application/json-patch+json' });
    expect(empty.status).toBe(400);
    expect(empty.body.type).toBe('not-found');
    await call(node, 'POST', path, { token: alice, json: { n: 0 } });
    const applied = await call(node, 'PATCH', path, { token: alice, json: patch, contentType: 'application/json-patch+json' });
    expect(applied.status).toBe(200);
    expect(applied.body.meta.id).toBe(2);
    // The race, forced with Iorio's conditional header: the body is IorioDB's, its spelling included.
    const raced = await call(node, 'PATCH', path, { token: alice, json: patch, contentType: 'application/json-patch+json', headers: { 'x-iorio-expect-seqnum': '1' } });
    expect(raced.status).toBe(409);
    expect(raced.body).toEqual({ type: 'error', reason: { reason: 'confict', field: 'seqnum', expected: 1, got: 2 } });
  });

  it('answers GET /buckets 401 to a caller who may list no bucket, and the filtered list to others (iorio_rest_list.erl:58-71)', async () => {
    await call(node, 'POST', '/streams/_user_alice/x', { token: alice, json: 1 });
    const anonymous = await call(node, 'GET', '/buckets');
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.type).toBe('no-perm');
    const listed = await call(node, 'GET', '/buckets', { token: alice });
    expect(listed.status).toBe(200);
    expect(listed.body.data).toEqual(['_user_alice']);
  });

  it('listen skips a subscription the caller may not read and serves the others; no token is anonymous (iorio_listen_handler.erl:124-168, 236-251)', async () => {
    const first = (await call(node, 'POST', '/streams/_user_alice/feed', { token: alice, json: { n: 1 } })).body.meta.id as number;
    await call(node, 'POST', '/streams/private/feed', { token: node.adminToken, json: { secret: true } });
    const poll = longPoll(node.url, `?jwt=${alice}&s=private:feed:1&s=_user_alice:feed:${first}&timeout=5`);
    const result = await poll.done;
    expect(result.status).toBe(200);
    const events = JSON.parse(result.body) as { meta: { bucket: string } }[];
    expect(events.map((event) => event.meta.bucket)).toEqual(['_user_alice']);
    // No token: anonymous, who may read _user_alice since an earlier test granted it.
    const anonymous = await longPoll(node.url, `?s=private:feed:1&s=_user_alice:feed:${first}&timeout=5`).done;
    expect(anonymous.status).toBe(200);
    expect((JSON.parse(anonymous.body) as unknown[]).length).toBe(1);
  });

  it('answers WebSocket commands as IorioDB: already subscribed, not subscribed, unknown command, missing stream, id 0 by default (iorio_listen_handler.erl:27-35, 109-122, 178-230)', async () => {
    const socket = await ListenSocket.open(node.url.replace(/^http/, 'ws'), `?jwt=${alice}`);
    try {
      expect(await socket.command({ cmd: 'subscribe', bucket: '_user_alice', stream: 'ws', id: 1 })).toEqual({ ok: true, id: 1, type: 'subscribe' });
      expect(await socket.command({ cmd: 'subscribe', bucket: '_user_alice', stream: 'ws', id: 2 })).toEqual({ ok: false, id: 2, reason: 'already subscribed' });
      expect(await socket.command({ cmd: 'unsubscribe', bucket: '_user_alice', stream: 'other', id: 3 })).toEqual({ ok: false, id: 3, reason: 'not subscribed' });
      expect(await socket.command({ cmd: 'dance', id: 4 })).toEqual({ ok: false, id: 4, reason: 'unknown command' });
      expect(await socket.command({ cmd: 'subscribe', bucket: '_user_alice', id: 5 })).toEqual({ ok: false, id: 5, reason: 'missing stream' });
      expect(await socket.command({ cmd: 'subscribe', stream: 's', id: 6 })).toEqual({ ok: false, id: 6, reason: 'missing bucket' });
      expect(await socket.command({ cmd: 'subscribe', bucket: 'private', stream: 's', id: 7 })).toEqual({ ok: false, id: 7, reason: 'no-perm' });
      // IorioDB's browser client sends its heartbeat without an id (priv/assets/js/ioriodb.js:329).
      socket.send({ cmd: 'ping' });
      await waitFor('the ping reply', () => socket.messages.some((message) => (message as { type?: string }).type === 'ping'));
      expect(socket.messages.find((message) => (message as { type?: string }).type === 'ping')).toEqual({ ok: true, id: 0, type: 'ping' });
    } finally {
      await socket.close();
    }
  });

  it('has no rate limit unless configured, and answers over it as IorioDB: 400 rate-limited (iorio_http.erl:19, 35-44; iorio_rlimit.erl:62-67)', async () => {
    expect(testConfig()['http.ratelimit.enabled']).toBe(false);
    const limited = await startTestNode({ 'http.ratelimit.enabled': true, 'http.ratelimit.max': 3, 'http.ratelimit.window': 3_600_000 });
    try {
      const statuses: number[] = [];
      for (let index = 0; index < 6; index += 1) statuses.push((await call(limited, 'GET', '/streams/public/s', { token: limited.adminToken })).status);
      expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
      const over = await call(limited, 'GET', '/streams/public/s', { token: limited.adminToken });
      expect(over.status).toBe(400);
      expect(over.body.type).toBe('rate-limited');
    } finally {
      await limited.stop();
    }
  });

  it('names the user bucket with auth.permission.user.bucket.prefix (ioriol_access.erl:100-114, 196-198)', async () => {
    const prefixed = await startTestNode({ 'auth.permission.user.bucket.prefix': 'home-' });
    try {
      const bob = await createUser(prefixed, 'bob');
      expect((await call(prefixed, 'POST', '/streams/home-bob/s', { token: bob, json: 1 })).status).toBe(201);
      expect((await call(prefixed, 'POST', '/streams/_user_bob/s', { token: bob, json: 1 })).status).toBe(401);
    } finally {
      await prefixed.stop();
    }
  });

  it('answers CORS as IorioDB when enabled: origins, headers (X-Socket-Transport of its browser client), max-age; OPTIONS answered (iorio_cors.erl:28-49, iorio_app.erl:332-343, bala.js:195)', async () => {
    const cors = await startTestNode({ 'http.cors.enabled': true, 'http.cors.headers': 'x-custom', 'http.cors.maxage': 120_000 });
    try {
      const preflight = await call(cors, 'OPTIONS', '/listen?s=public:s', {
        headers: { origin: 'http://app.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-socket-transport,x-session' },
      });
      expect(preflight.status).toBeLessThan(300);
      expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
      const allowed = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(',').map((header) => header.trim());
      expect(allowed).toEqual(expect.arrayContaining(['x-session', 'content-type', 'x-socket-transport', 'x-custom']));
      expect(preflight.headers.get('access-control-max-age')).toBe('120');
      const refused = await call(cors, 'GET', '/streams/private/s', { headers: { origin: 'http://app.example' } });
      expect(refused.status).toBe(401);
      expect(refused.headers.get('access-control-allow-origin')).toBe('*');
    } finally {
      await cors.stop();
    }
  });

  it('serves extensions at /x/<name>/...: echo, a module of extension.module.<name>, its extension.config.<name> (iorio_rest_custom.erl, ioriox_echo.erl, iorio_x.erl)', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'iorio-x-'));
    const modulePath = join(folder, 'greet.mjs');
    const configPath = join(folder, 'greet.json');
    await writeFile(
      modulePath,
      `export default ({ config }) => ({ methods: ['GET', 'POST'], isAuthorized: (request) => request.username !== 'anonymous',
        async handle(request) {
          if (request.method === 'POST') return { json: { meta: await request.streams.append(config.bucket, 'greetings', request.body) } };
          return request.path[0] === 'fail' ? { error: 'failed' } : { json: { greeting: config.greeting + ' ' + request.username } };
        } });\n`,
    );
    await writeFile(configPath, JSON.stringify({ greeting: 'hello', bucket: '_user_alice' }));
    const overrides: ConfigOverrides = { 'extension.module.greet': modulePath, 'extension.config.greet': configPath };
    const extended = await startTestNode(overrides as Parameters<typeof startTestNode>[0]);
    try {
      const echo = await call(extended, 'GET', '/x/echo/a/b?x=1');
      expect(echo.status).toBe(200);
      expect(echo.headers.get('content-type')).toBe('application/json');
      expect(echo.body).toEqual({ method: 'GET', path: ['a', 'b'], query: { x: '1' } });
      const posted = await call(extended, 'POST', '/x/echo/c', { json: { y: 2 } });
      expect(posted.body).toEqual({ method: 'POST', path: ['c'], query: {}, body: { y: 2 } });
      const badJson = await call(extended, 'POST', '/x/echo', { body: '{nope', contentType: 'application/json' });
      expect(badJson.status).toBe(400);
      expect(badJson.body).toEqual({ type: 'error', reason: 'invalid-json' });
      expect((await call(extended, 'PATCH', '/x/echo')).status).toBe(405);
      expect((await call(extended, 'GET', '/x/missing/a')).status).toBe(501);
      const bob = await createUser(extended, 'bob');
      expect((await call(extended, 'GET', '/x/greet', { token: bob })).body).toEqual({ greeting: 'hello bob' });
      expect((await call(extended, 'GET', '/x/greet')).status).toBe(401);
      expect((await call(extended, 'GET', '/x/greet/fail', { token: bob })).body).toEqual({ type: 'error', reason: 'failed' });
      // The stream API acts as the caller: bob may not write alice's bucket.
      expect((await call(extended, 'POST', '/x/greet', { token: bob, json: { hi: 1 } })).status).toBe(401);
    } finally {
      await extended.stop();
      await rm(folder, { recursive: true, force: true });
    }
  });

  it('appends the node\'s activity to $sys/activity beside $sys/metrics (iorio_stats.erl:284-304, iorio_activity.erl, iorio_rest_session.erl:76-80)', async () => {
    const busy = await startTestNode({ 'metrics.interval': 100 });
    try {
      await call(busy, 'GET', '/sessions', { token: busy.adminToken });
      let activity: { data: { session_check?: { key: string[]; count: number }[] } }[] = [];
      const deadline = Date.now() + 20_000;
      while (!activity.some((entry) => entry.data.session_check !== undefined) && Date.now() < deadline) {
        activity = (await call(busy, 'GET', '/streams/$sys/activity?from=1&limit=100', { token: busy.adminToken })).body;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const checks = activity.flatMap((entry) => entry.data.session_check ?? []);
      expect(checks).toContainEqual({ key: ['admin', expect.any(String), expect.any(String)], count: 1 });
      const metrics = await call(busy, 'GET', '/streams/$sys/metrics', { token: busy.adminToken });
      expect(metrics.body).toHaveLength(1);
    } finally {
      await busy.stop();
    }
  });

  it('has IorioDB\'s config keys that apply (rel/files/iorio.schema)', () => {
    const config = testConfig();
    expect(config['http.enabled']).toBe(true);
    expect(config['https.enabled']).toBe(false);
    expect(config['http.cors.enabled']).toBe(false);
    expect(config['http.cors.origins']).toBe('*');
    expect(config['http.cors.headers']).toBe('');
    expect(config['http.cors.maxage']).toBe(60_000);
    expect(config['metrics.bucket']).toBe('$sys');
    expect(config['metrics.stream']).toBe('metrics');
    expect(config['auth.permission.user.bucket.prefix']).toBe('_user_');
    expect(config['auth.anon.password']).toBe('');
    const extended = testConfig({ 'extension.config.echo': 'echo.json' });
    expect(extended['extension.config']).toEqual({ echo: join(process.cwd(), 'echo.json') });
    expect(() => testConfig({ 'http.enabled': false })).toThrow(/https.enabled/);
  });

  it('lets the anonymous user log in when auth.anon.password is set, its token acting as anonymous (iorio_app.erl:66-81)', async () => {
    expect((await call(node, 'POST', '/sessions', { json: { username: 'anonymous', password: 'secret' } })).status).toBe(401);
    const open = await startTestNode({ 'auth.anon.password': 'secret' });
    try {
      const login = await call(open, 'POST', '/sessions', { json: { username: 'anonymous', password: 'secret' } });
      expect(login.status).toBe(201);
      const session = await call(open, 'GET', '/sessions', { token: login.body.token });
      expect(session.body).toEqual({ username: 'anonymous' });
      expect((await call(open, 'POST', '/sessions', { json: { username: 'anonymous', password: 'wrong' } })).status).toBe(401);
    } finally {
      await open.stop();
    }
  });

  it('gives SSE events an id: line (the seqnum) and resumes after Last-Event-ID', async () => {
    for (const n of [1, 2, 3]) await call(node, 'POST', '/streams/_user_alice/sse', { token: alice, json: { n } });
    const first = await SseClient.open(node.url, `?jwt=${alice}&s=_user_alice:sse:1`);
    try {
      await waitFor('three events', () => first.events.length >= 3);
      expect(first.ids.at(-1)).toBe('3');
    } finally {
      first.close();
    }
    await call(node, 'POST', '/streams/_user_alice/sse', { token: alice, json: { n: 4 } });
    const resumed = await SseClient.open(node.url, `?jwt=${alice}&s=_user_alice:sse:1`, { 'last-event-id': '3' });
    try {
      await waitFor('the entry after 3', () => resumed.events.length >= 1);
      expect(resumed.events.map((event) => event.meta.id)).toEqual([4]);
    } finally {
      resumed.close();
    }
    const several = await SseClient.open(node.url, `?jwt=${alice}&s=_user_alice:sse:4&s=_user_alice:feed:1`);
    try {
      await waitFor('events of both streams', () => several.ids.length >= 2);
      expect(several.ids.at(-1)).toMatch(/^(_user_alice:(sse|feed):\d+,?)+$/);
    } finally {
      several.close();
    }
  });
});
