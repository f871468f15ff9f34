/**
 * Every route against bad input: malformed JSON, wrong content types, empty
 * and oversized bodies, invalid and path-like names, bad numbers. Each gets
 * its documented status and `{type, reason}`, nothing is written, and no file
 * appears outside the data folder.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import net from 'node:net';
import { mulberry32 } from '../helpers/clock.js';
import { call, errorOf, readAll, startTestNode, walk, type RequestOptions, type TestNode } from './http-harness.js';

const bodyMax = 4096;
let node: TestNode;
let filesBefore: string[];

beforeAll(async () => {
  node = await startTestNode({ 'http.body.max': bodyMax });
  // Known state every test checks is unchanged.
  await call(node, 'POST', '/streams/keep/s', { token: node.adminToken, json: { original: true } });
  await call(node, 'POST', '/users', { token: node.adminToken, json: { username: 'keeper', password: 'pw' } });
  filesBefore = await walk(node.root);
});
afterAll(async () => {
  await node?.stop();
});

interface Case {
  method: string;
  path: string;
}

/** Every route that takes a body. */
const bodyRoutes: Case[] = [
  { method: 'POST', path: '/streams/keep/s' },
  { method: 'PATCH', path: '/streams/keep/s' },
  { method: 'POST', path: '/sessions' },
  { method: 'POST', path: '/users' },
  { method: 'PUT', path: '/users' },
  { method: 'PUT', path: '/users/keeper' },
  { method: 'POST', path: '/access/keep' },
  { method: 'POST', path: '/access/keep/s' },
  { method: 'PUT', path: '/policies/keep' },
  { method: 'PUT', path: '/policies/keep/s' },
];

async function expectUnchanged(): Promise<void> {
  expect((await readAll(node, 'keep', 's')).map((entry) => entry.data)).toEqual([{ original: true }]);
  expect((await readAll(node, 'keep', 's-$patch'))).toEqual([]);
  const policies = await call(node, 'GET', '/policies/keep', { token: node.adminToken });
  expect(policies.body).toEqual({});
  const users = await call(node, 'GET', '/users', { token: node.adminToken });
  expect(users.body.map((user: { username: string }) => user.username).sort()).toEqual(['admin', 'anonymous', 'keeper'].sort());
  const buckets = await call(node, 'GET', '/buckets', { token: node.adminToken });
  expect(buckets.body.data.filter((bucket: string) => bucket !== '$sys')).toEqual(['keep']);
}

async function expectError(method: string, path: string, options: RequestOptions, status: number, type: string): Promise<void> {
  const reply = await call(node, method, path, { token: node.adminToken, ...options });
  expect({ method, path, ...errorOf(reply) }).toEqual({ method, path, status, type });
}

describe('bodies', () => {
  test.each(bodyRoutes)('malformed JSON on $method $path is 400 invalid-body', async ({ method, path }) => {
    for (const text of ['{"a":', '{a:1}', "{'a':1}", '[1,]', 'undefined', '{"a":1}{"b":2}', '\uFEFF{"a":1}', 'NaN']) {
      await expectError(method, path, { body: text, contentType: method === 'PATCH' ? 'application/json-patch+json' : 'application/json' }, 400, 'invalid-body');
    }
    await expectUnchanged();
  });

  // IorioDB: cowboy_rest's content_types_accepted answers 415 (e.g. iorio_rest_stream.erl:122-128).
  test.each(bodyRoutes)('a wrong content type on $method $path is 415', async ({ method, path }) => {
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'nonsense']) {
      await expectError(method, path, { body: '{"username":"x","password":"y"}', contentType }, 415, 'unsupported-media-type');
    }
    await expectError(method, path, { body: '{"username":"x","password":"y"}' }, 415, 'unsupported-media-type');
    await expectUnchanged();
  });

  test.each(bodyRoutes)('an empty body on $method $path is 400 invalid-body', async ({ method, path }) => {
    await expectError(method, path, { body: '', contentType: 'application/json' }, 400, 'invalid-body');
    await expectError(method, path, { body: '  \n ', contentType: 'application/json' }, 400, 'invalid-body');
    await expectError(method, path, {}, 400, 'invalid-body');
    await expectUnchanged();
  });

  test.each(bodyRoutes)('an oversized body on $method $path is 413 too-large', async ({ method, path }) => {
    const big = JSON.stringify({ username: 'x', password: 'y', padding: 'p'.repeat(bodyMax) });
    await expectError(method, path, { body: big, contentType: 'application/json' }, 413, 'too-large');
    await expectUnchanged();
  });

  test.each(bodyRoutes)('a body nested deeper than 512 levels on $method $path is 400 invalid-body naming the bound', async ({ method, path }) => {
    const contentType = method === 'PATCH' ? 'application/json-patch+json' : 'application/json';
    // Deep inside an object every route would otherwise take, so that only the nesting is wrong.
    const deep = `{"username":"x","password":"y","deep":${'['.repeat(512)}${']'.repeat(512)}}`;
    const reply = await call(node, method, path, { token: node.adminToken, body: deep, contentType });
    expect({ status: reply.status, type: reply.body?.type, reason: reply.body?.reason }).toEqual({
      status: 400,
      type: 'invalid-body',
      reason: 'the body is nested deeper than 512 levels',
    });
    await expectUnchanged();
  });

  test('invalid UTF-8 in a JSON body is 400', async () => {
    const body = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    await expectError('POST', '/streams/keep/s', { body, contentType: 'application/json' }, 400, 'invalid-body');
    await expectUnchanged();
  });

  test('an oversized NDJSON batch is 413 and writes nothing', async () => {
    const lines = Array.from({ length: 200 }, (_, index) => JSON.stringify({ index, padding: 'p'.repeat(40) })).join('\n');
    await expectError('POST', '/streams/keep/s', { body: lines, contentType: 'application/x-ndjson' }, 413, 'too-large');
    await expectUnchanged();
  });

  test('a JSON body on a route that takes another kind is refused', async () => {
    await expectError('POST', '/streams/keep/s', { body: '[]', contentType: 'application/json-patch+json' }, 415, 'unsupported-media-type');
    await expectError('POST', '/users', { body: '{"username":"x","password":"y"}', contentType: 'application/x-ndjson' }, 415, 'unsupported-media-type');
    await expectUnchanged();
  });
});

describe('names', () => {
  const badNames: [string, string][] = [
    ['..', '..'],
    ['%2e%2e', '%2e%2e'],
    ['.', '%2E'],
    ['a/b encoded', 'a%2Fb'],
    ['..%2F..%2Fetc', '..%2F..%2Fetc'],
    ['NUL', 'a%00b'],
    ['400 bytes', 'n'.repeat(400)],
    ['non-ASCII', 'caf%C3%A9'],
    ['space', 'a%20b'],
    ['backslash', 'a%5Cb'],
    ['colon', 'a%3Ab'],
  ];

  test.each(badNames)('a bucket or stream named %s is 400 invalid-name on every route', async (_label, name) => {
    const routes: [string, string, RequestOptions][] = [
      ['POST', `/streams/${name}/s`, { json: { x: 1 } }],
      ['POST', `/streams/keep/${name}`, { json: { x: 1 } }],
      ['POST', `/streams/keep/${name}`, { body: '1\n2', contentType: 'application/x-ndjson' }],
      ['GET', `/streams/${name}/s`, {}],
      ['GET', `/streams/keep/${name}`, {}],
      ['DELETE', `/streams/${name}/s`, {}],
      ['DELETE', `/streams/keep/${name}`, {}],
      ['PATCH', `/streams/keep/${name}`, { json: [], contentType: 'application/json-patch+json' }],
      ['GET', `/streams/${name}`, {}],
      ['POST', `/access/${name}`, { json: { username: 'keeper', permission: 'get', action: 'grant' } }],
      ['POST', `/access/keep/${name}`, { json: { username: 'keeper', permission: 'get', action: 'grant' } }],
      ['GET', `/access/${name}`, {}],
      ['PUT', `/policies/${name}`, { json: { max_count: 1 } }],
      ['PUT', `/policies/keep/${name}`, { json: { max_count: 1 } }],
      ['GET', `/policies/${name}`, {}],
      ['DELETE', `/policies/keep/${name}`, {}],
      ['PUT', `/users/${name}`, { json: { password: 'x' } }],
      ['DELETE', `/users/${name}`, {}],
    ];
    for (const [method, path, options] of routes) {
      await expectError(method, path, { ...options, raw: true }, 400, 'invalid-name');
    }
    // IorioDB's own code for a user name (iorio_rest_user.erl:74-77).
    await expectError('POST', '/users', { json: { username: decodeURIComponent(name), password: 'x' } }, 400, 'illegal-username');
    await expectUnchanged();
  });

  test('a/b as a path is another route: 404 not-found', async () => {
    await expectError('POST', '/streams/keep/a/b', { json: { x: 1 } }, 404, 'not-found');
    await expectError('GET', '/streams/a/b/c', {}, 404, 'not-found');
    await expectUnchanged();
  });

  test('a malformed percent-encoding is 400', async () => {
    const reply = await call(node, 'GET', '/streams/keep/%E0%A4%A', { token: node.adminToken });
    expect(reply.status).toBe(400);
    expect(reply.body.type).toMatch(/^invalid-/);
  });
});

describe('numbers', () => {
  const badNumbers = ['-1', 'abc', '1e3', '1.5', '0x10', '+1', '1 2', '99999999999999999999', '9007199254740993', '1,2', 'Infinity'];

  test.each(badNumbers)('limit=%s and from=%s are 400 invalid-param', async (value) => {
    const encoded = encodeURIComponent(value);
    await expectError('GET', `/streams/keep/s?limit=${encoded}`, {}, 400, 'invalid-param');
    await expectError('GET', `/streams/keep/s?from=${encoded}`, {}, 400, 'invalid-param');
  });

  test('a repeated limit is 400', async () => {
    await expectError('GET', '/streams/keep/s?limit=1&limit=2', {}, 400, 'invalid-param');
  });

  test.each(badNumbers)('x-iorio-expect-seqnum: %s is 400 and writes nothing', async (value) => {
    await expectError('POST', '/streams/keep/s', { json: { x: 1 }, headers: { 'x-iorio-expect-seqnum': value } }, 400, 'invalid-param');
    await expectError('PATCH', '/streams/keep/s', {
      json: [{ op: 'add', path: '/x', value: 1 }],
      contentType: 'application/json-patch+json',
      headers: { 'x-iorio-expect-seqnum': value },
    }, 400, 'invalid-param');
    await expectUnchanged();
  });

  test.each(['', ' ', '\t'])('an empty x-iorio-expect-seqnum (%j) is 400 invalid-param, not an unconditional append', async (value) => {
    const appended = await call(node, 'POST', '/streams/keep/s', { token: node.adminToken, json: { x: 1 }, headers: { 'x-iorio-expect-seqnum': value } });
    expect({ status: appended.status, type: appended.body.type }).toEqual({ status: 400, type: 'invalid-param' });
    expect(appended.body.reason).toContain('x-iorio-expect-seqnum');
    await expectError('PATCH', '/streams/keep/s', {
      json: [{ op: 'add', path: '/x', value: 1 }],
      contentType: 'application/json-patch+json',
      headers: { 'x-iorio-expect-seqnum': value },
    }, 400, 'invalid-param');
    await expectUnchanged();
  });

  test('an empty idempotency-key is 400 invalid-param, not an append without one', async () => {
    await expectError('POST', '/streams/keep/s', { json: { x: 1 }, headers: { 'idempotency-key': '' } }, 400, 'invalid-param');
    await expectUnchanged();
  });

  test.each([
    [{ max_count: -1 }],
    [{ max_count: 1.5 }],
    [{ max_bytes: '10' }],
    [{ max_age_secs: null }],
    [{ max_count: 1e300 }],
    [{ maxCount: 1 }],
    [[1]],
    ['text'],
  ])('policy %j is 400 invalid-body', async (body) => {
    await expectError('PUT', '/policies/keep/s', { json: body }, 400, 'invalid-body');
    await expectUnchanged();
  });
});

/** Writes raw bytes to the node and returns everything it answers until it closes the connection. */
function rawExchange(bytes: string | Buffer): Promise<string> {
  const { hostname, port } = new URL(node.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? resolve(Buffer.concat(chunks).toString('latin1')) : reject(error)));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.write(bytes);
  });
}

function statusAndBody(response: string): { status: number; body: unknown } {
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(response)?.[1] ?? 0);
  const text = response.slice(response.indexOf('\r\n\r\n') + 4);
  return { status, body: JSON.parse(text) as unknown };
}

describe('malformed requests', () => {
  test('headers over the size limit are 413 too-large with a {type, reason} body', async () => {
    const response = await rawExchange(`GET /ping HTTP/1.1\r\nhost: x\r\nx-filler: ${'a'.repeat(70_000)}\r\n\r\n`);
    expect(statusAndBody(response)).toEqual({ status: 413, body: { type: 'too-large', reason: expect.any(String) } });
  });

  test('bytes that are not HTTP are 400 with a {type, reason} body', async () => {
    const response = await rawExchange('HELLO THERE\r\n\r\n');
    expect(statusAndBody(response)).toEqual({ status: 400, body: { type: 'invalid-param', reason: 'the request is not valid HTTP' } });
  });

  test('a name too long for the router is 400 invalid-name, with a short reason', async () => {
    const reply = await call(node, 'POST', `/streams/keep/${'n'.repeat(2000)}`, { token: node.adminToken, json: { x: 1 } });
    expect(errorOf(reply)).toEqual({ status: 400, type: 'invalid-name' });
    expect(reply.body.reason.length).toBeLessThan(200);
    await expectUnchanged();
  });

  test('seeded random requests never get a 5xx, and every refusal is {type, reason}', async () => {
    const random = mulberry32(20261121);
    const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)]!;
    const methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
    const roots = ['streams', 'access', 'policies', 'users', 'sessions', 'buckets', 'listen', 'ping', 'stats', 'metrics', 'nowhere'];
    const segments = ['fuzz', 's', '%00', '%2f', '%2e%2e', 'caf%C3%A9', '%F0%9F%98%80', 'a:b', '%ff', '%C0%AE', 'x-$patch', 'n'.repeat(129)];
    const queries = ['', '?limit=1e999', '?from=-0', '?from=0x10', '?limit=%205%20', '?limit=1&limit=2', '?s=a:b:c:d', '?timeout=0.01&s=fuzz:x', '?download=%00', '?1732200000.12', '?jwt=', '?limit[]=1', '?a=%'];
    const types = ['application/json', 'application/x-ndjson', 'application/json-patch+json', 'text/plain', 'application/json; charset=utf-16', 'multipart/form-data', 'APPLICATION/JSON', ''];
    const bodies = [
      () => Buffer.from(Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256))),
      () => Buffer.from('[{"op":"add","path":"/x","value":1}]'),
      () => Buffer.from('1\n2\n{'),
      () => Buffer.from('{"max_count":1e400}'),
      () => Buffer.from('\ufeff{"a":1}'),
      () => Buffer.from('{"username":"fuzz","permission":"get","action":"grant"}'),
    ];
    const failures: string[] = [];
    for (let index = 0; index < 400; index++) {
      const parts = [pick(roots), ...Array.from({ length: Math.floor(random() * 3) }, () => pick(segments))];
      const path = '/' + parts.join('/') + (random() < 0.2 ? '/' : '') + pick(queries);
      const method = pick(methods);
      const contentType = pick(types);
      const headers: Record<string, string> = {};
      if (random() < 0.2) headers['x-iorio-expect-seqnum'] = pick(['0', '-1', '1e3', 'abc', ' 3 ']);
      if (random() < 0.2) headers['idempotency-key'] = pick(['k', 'x'.repeat(300)]);
      const body = method === 'GET' || method === 'HEAD' ? undefined : pick(bodies)();
      const reply = await call(node, method, path, { token: node.adminToken, headers, raw: true, ...(body === undefined ? {} : { body, ...(contentType === '' ? {} : { contentType }) }) });
      const isErrorBody = typeof reply.body?.type === 'string' && typeof reply.body?.reason === 'string';
      if (reply.status >= 500 || (reply.status >= 400 && method !== 'HEAD' && !isErrorBody)) failures.push(`${method} ${path}: ${reply.status} ${reply.text.slice(0, 200)}`);
    }
    expect(failures).toEqual([]);
    await expectUnchanged();
  });
});

describe('a client that dies mid-request', () => {
  test.each([
    ['a JSON append', 'application/json', '{"half": "of a bo'],
    ['an NDJSON batch', 'application/x-ndjson', '{"a":1}\n{"a":2}\n{"a":'],
    ['a JSON Patch', 'application/json-patch+json', '[{"op":"add","path":"/x","val'],
  ])('%s cut off after half its body writes nothing, and the node goes on', async (_label, type, half) => {
    const { hostname, port } = new URL(node.url);
    const method = type === 'application/json-patch+json' ? 'PATCH' : 'POST';
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(Number(port), hostname, () => {
        socket.write(
          `${method} /streams/keep/s HTTP/1.1\r\nhost: x\r\ncontent-type: ${type}\r\ncontent-length: ${half.length * 2}\r\nx-session: ${node.adminToken}\r\n\r\n${half}`,
        );
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 50);
      });
      socket.on('error', reject);
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await expectUnchanged();
    expect((await call(node, 'GET', '/ping')).status).toBe(200);
  });
});

describe('nothing outside the data folder', () => {
  test('after all of the above, every file is under data/', async () => {
    const after = await walk(node.root);
    expect(after.filter((path) => path !== 'data' && !path.startsWith('data/'))).toEqual([]);
    expect(filesBefore.filter((path) => path !== 'data' && !path.startsWith('data/'))).toEqual([]);
    // No stream folder was created for a refused name.
    expect(after.filter((path) => /\.\.|%2e%2e|caf/i.test(path))).toEqual([]);
  });
});
