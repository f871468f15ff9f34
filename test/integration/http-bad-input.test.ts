/**
 * Every route against bad input: malformed JSON, wrong content types, empty
 * and oversized bodies, invalid and path-like names, bad numbers. Each gets
 * its documented status and `{type, reason}`, nothing is written, and no file
 * appears outside the data folder.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
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

  test.each(bodyRoutes)('a wrong content type on $method $path is 400 invalid-body', async ({ method, path }) => {
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'nonsense']) {
      await expectError(method, path, { body: '{"username":"x","password":"y"}', contentType }, 400, 'invalid-body');
    }
    await expectError(method, path, { body: '{"username":"x","password":"y"}' }, 400, 'invalid-body');
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
    await expectError('POST', '/streams/keep/s', { body: '[]', contentType: 'application/json-patch+json' }, 400, 'invalid-body');
    await expectError('POST', '/users', { body: '{"username":"x","password":"y"}', contentType: 'application/x-ndjson' }, 400, 'invalid-body');
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
    await expectError('POST', '/users', { json: { username: decodeURIComponent(name), password: 'x' } }, 400, 'invalid-name');
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
  const badNumbers = ['-1', 'abc', '1e3', '1.5', '0x10', '99999999999999999999', '9007199254740993', '1,2', 'Infinity'];

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

describe('nothing outside the data folder', () => {
  test('after all of the above, every file is under data/', async () => {
    const after = await walk(node.root);
    expect(after.filter((path) => path !== 'data' && !path.startsWith('data/'))).toEqual([]);
    expect(filesBefore.filter((path) => path !== 'data' && !path.startsWith('data/'))).toEqual([]);
    // No stream folder was created for a refused name.
    expect(after.filter((path) => /\.\.|%2e%2e|caf/i.test(path))).toEqual([]);
  });
});
