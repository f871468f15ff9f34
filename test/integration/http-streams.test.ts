import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readLimitMax } from '../../src/core/limits.js';
import { append, call, createUser, readAll, startTestNode, type TestNode } from './http-harness.js';

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode({ 'storage.sync': 'always' });
});
afterAll(async () => {
  await node?.stop();
});

describe('POST /streams/:bucket/:stream', () => {
  test('appends and answers 201 with meta and Location', async () => {
    const reply = await call(node, 'POST', '/streams/post/s1', { token: node.adminToken, json: { hello: 'world' } });
    expect(reply.status).toBe(201);
    expect(reply.body.meta.id).toBe(1);
    expect(typeof reply.body.meta.t).toBe('number');
    expect(Object.keys(reply.body)).toEqual(['meta']);
    expect(reply.headers.get('location')).toBe('/streams/post/s1?limit=1&from=1');
    const second = await call(node, 'POST', '/streams/post/s1', { token: node.adminToken, json: [1, 2] });
    expect(second.body.meta.id).toBe(2);
    expect(second.headers.get('location')).toBe('/streams/post/s1?limit=1&from=2');
  });

  test('keeps any JSON value; a pretty-printed body comes back compact', async () => {
    for (const value of [42, 'text', null, true, [1, { a: 'é' }], { nested: { deep: [1, 2, 3] } }]) {
      await append(node, 'post', 'values', value);
    }
    await call(node, 'POST', '/streams/post/values', {
      token: node.adminToken,
      body: '{\n  "pretty": [1,\n 2]\n}\n',
      contentType: 'application/json; charset=utf-8',
    });
    const entries = await readAll(node, 'post', 'values');
    expect(entries.map((entry) => entry.data)).toEqual([42, 'text', null, true, [1, { a: 'é' }], { nested: { deep: [1, 2, 3] } }, { pretty: [1, 2] }]);
    const raw = await call(node, 'GET', '/streams/post/values?limit=1', { token: node.adminToken });
    expect(raw.text).toContain('"data":{"pretty":[1,2]}');
  });

  test('a pretty-printed body keeps its numbers and strings byte for byte', async () => {
    const body = '{\r\n  "big": 12345678901234567890,\n\t"float": 22.0, "exp": 1E+2,\n  "text": "a  b\\" \\\\ \\n {",\n  "list": [ 1 , 2 ]\n}\n';
    const reply = await call(node, 'POST', '/streams/post/pretty', { token: node.adminToken, body, contentType: 'application/json' });
    expect(reply.status).toBe(201);
    const raw = await call(node, 'GET', '/streams/post/pretty', { token: node.adminToken });
    expect(raw.text).toContain('"data":{"big":12345678901234567890,"float":22.0,"exp":1E+2,"text":"a  b\\" \\\\ \\n {","list":[1,2]}}');
    expect(raw.body[0].data.text).toBe('a  b" \\ \n {');
  });

  test('x-iorio-expect-seqnum makes the append conditional', async () => {
    const first = await call(node, 'POST', '/streams/cond/s', { token: node.adminToken, json: { n: 1 }, headers: { 'x-iorio-expect-seqnum': '0' } });
    expect(first.status).toBe(201);
    const stale = await call(node, 'POST', '/streams/cond/s', { token: node.adminToken, json: { n: 2 }, headers: { 'x-iorio-expect-seqnum': '0' } });
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ type: 'conflict', expected: 0, got: 1 });
    expect(typeof stale.body.reason).toBe('string');
    const next = await call(node, 'POST', '/streams/cond/s', { token: node.adminToken, json: { n: 2 }, headers: { 'x-iorio-expect-seqnum': '1' } });
    expect(next.status).toBe(201);
    expect(next.body.meta.id).toBe(2);
    expect((await readAll(node, 'cond', 's')).map((entry) => entry.data)).toEqual([{ n: 1 }, { n: 2 }]);
  });

  test('idempotency-key: a retry returns the first meta and writes nothing', async () => {
    const headers = { 'idempotency-key': 'retry-1' };
    const first = await call(node, 'POST', '/streams/idem/s', { token: node.adminToken, json: { n: 1 }, headers });
    const retry = await call(node, 'POST', '/streams/idem/s', { token: node.adminToken, json: { n: 1 }, headers });
    expect(first.status).toBe(201);
    expect(retry.status).toBe(201);
    expect(retry.body).toEqual(first.body);
    expect(retry.headers.get('location')).toBe(first.headers.get('location'));
    const other = await call(node, 'POST', '/streams/idem/s', { token: node.adminToken, json: { n: 2 }, headers: { 'idempotency-key': 'retry-2' } });
    expect(other.body.meta.id).toBe(2);
    expect(await readAll(node, 'idem', 's')).toHaveLength(2);
  });

  test('idempotency-key: concurrent retries write once', async () => {
    const replies = await Promise.all(
      Array.from({ length: 8 }, () =>
        call(node, 'POST', '/streams/idem/concurrent', { token: node.adminToken, json: { once: true }, headers: { 'idempotency-key': 'k' } }),
      ),
    );
    expect(replies.map((reply) => reply.status)).toEqual(Array(8).fill(201));
    expect(new Set(replies.map((reply) => reply.body.meta.id))).toEqual(new Set([1]));
    expect(await readAll(node, 'idem', 'concurrent')).toHaveLength(1);
  });

  test('idempotency keys are per stream: the same key on another stream writes', async () => {
    await call(node, 'POST', '/streams/idem/a', { token: node.adminToken, json: 1, headers: { 'idempotency-key': 'same' } });
    const other = await call(node, 'POST', '/streams/idem/b', { token: node.adminToken, json: 1, headers: { 'idempotency-key': 'same' } });
    expect(other.status).toBe(201);
    expect(await readAll(node, 'idem', 'b')).toHaveLength(1);
  });

  test('idempotency-key: the same key with a different body is 409 conflict naming the key, and writes nothing', async () => {
    const headers = { 'idempotency-key': 'reused' };
    const first = await call(node, 'POST', '/streams/idem/reused', { token: node.adminToken, json: { n: 1 }, headers });
    expect(first.status).toBe(201);
    const other = await call(node, 'POST', '/streams/idem/reused', { token: node.adminToken, json: { n: 2 }, headers });
    expect(other.status).toBe(409);
    expect(other.body).toEqual({ type: 'conflict', reason: 'idempotency key "reused" was used with a different body', key: 'reused' });
    const batch = await call(node, 'POST', '/streams/idem/reused', { token: node.adminToken, body: '{"n":1}\n', contentType: 'application/x-ndjson', headers });
    expect(batch.status).toBe(409);
    const conditional = await call(node, 'POST', '/streams/idem/reused', { token: node.adminToken, json: { n: 1 }, headers: { ...headers, 'x-iorio-expect-seqnum': '0' } });
    expect(conditional.status).toBe(409);
    expect(conditional.body.key).toBe('reused');
    // The same value sent with other whitespace is the same request: a retry.
    const retry = await call(node, 'POST', '/streams/idem/reused', { token: node.adminToken, body: '{ "n" : 1 }\n', contentType: 'application/json', headers });
    expect(retry.body).toEqual(first.body);
    expect((await readAll(node, 'idem', 'reused')).map((entry) => entry.data)).toEqual([{ n: 1 }]);
  });

  test('idempotency keys are per user: user B sending user A\'s key and body gets its own write, not A\'s answer', async () => {
    const alice = await createUser(node, 'idem-alice');
    const bob = await createUser(node, 'idem-bob');
    for (const username of ['idem-alice', 'idem-bob']) {
      for (const permission of ['put', 'get']) {
        const granted = await call(node, 'POST', '/access/idem-shared', { token: node.adminToken, json: { username, permission, action: 'grant' } });
        expect(granted.status).toBe(200);
      }
    }
    const headers = { 'idempotency-key': 'order-1' };
    const fromAlice = await call(node, 'POST', '/streams/idem-shared/s', { token: alice, json: { order: 1 }, headers });
    const fromBob = await call(node, 'POST', '/streams/idem-shared/s', { token: bob, json: { order: 1 }, headers });
    expect(fromAlice.status).toBe(201);
    expect(fromBob.status).toBe(201);
    expect(fromAlice.body.meta.id).toBe(1);
    expect(fromBob.body.meta.id).toBe(2);
    expect(await readAll(node, 'idem-shared', 's')).toHaveLength(2);
    // And each one's retry is still its own.
    expect((await call(node, 'POST', '/streams/idem-shared/s', { token: bob, json: { order: 1 }, headers })).body).toEqual(fromBob.body);
    expect((await call(node, 'POST', '/streams/idem-shared/s', { token: alice, json: { order: 1 }, headers })).body).toEqual(fromAlice.body);
    expect(await readAll(node, 'idem-shared', 's')).toHaveLength(2);
  });

  test('idempotency-key: a conditional append refused with 409 is not remembered; the same request, once it can succeed, writes', async () => {
    const headers = { 'idempotency-key': 'cond-retry', 'x-iorio-expect-seqnum': '1' };
    const refused = await call(node, 'POST', '/streams/idem/cond-retry', { token: node.adminToken, json: { second: true }, headers });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ type: 'conflict', expected: 1, got: 0 });
    await append(node, 'idem', 'cond-retry', { first: true });
    const retried = await call(node, 'POST', '/streams/idem/cond-retry', { token: node.adminToken, json: { second: true }, headers });
    expect(retried.status).toBe(201);
    expect(retried.body.meta.id).toBe(2);
    const again = await call(node, 'POST', '/streams/idem/cond-retry', { token: node.adminToken, json: { second: true }, headers });
    expect(again.body).toEqual(retried.body);
    expect((await readAll(node, 'idem', 'cond-retry')).map((entry) => entry.data)).toEqual([{ first: true }, { second: true }]);
  });

  test('a too long idempotency-key is refused', async () => {
    const reply = await call(node, 'POST', '/streams/idem/long', { token: node.adminToken, json: 1, headers: { 'idempotency-key': 'k'.repeat(300) } });
    expect(reply.status).toBe(400);
    expect(reply.body.type).toBe('invalid-param');
    expect(await readAll(node, 'idem', 'long')).toEqual([]);
  });
});

describe('NDJSON batch append', () => {
  test('appends every line atomically with contiguous seqnums', async () => {
    await append(node, 'batch', 's', { before: true });
    const reply = await call(node, 'POST', '/streams/batch/s', {
      token: node.adminToken,
      body: '{"n":1}\n\n[2]\r\n"three"\n  \n{"n":4}',
      contentType: 'application/x-ndjson',
    });
    expect(reply.status).toBe(201);
    expect(reply.body.meta.map((meta: { id: number }) => meta.id)).toEqual([2, 3, 4, 5]);
    expect(reply.headers.get('location')).toBe('/streams/batch/s?limit=4&from=2');
    expect((await readAll(node, 'batch', 's')).map((entry) => entry.data)).toEqual([{ before: true }, { n: 1 }, [2], 'three', { n: 4 }]);
  });

  test('an invalid line refuses the whole batch, naming the line', async () => {
    const reply = await call(node, 'POST', '/streams/batch/bad', {
      token: node.adminToken,
      body: '{"n":1}\n{"n":\n{"n":3}\n',
      contentType: 'application/x-ndjson',
    });
    expect(reply.status).toBe(400);
    expect(reply.body.type).toBe('invalid-body');
    expect(reply.body.reason).toMatch(/line 2/);
    expect(await readAll(node, 'batch', 'bad')).toEqual([]);
  });

  test('a conditional batch is all or nothing', async () => {
    const refused = await call(node, 'POST', '/streams/batch/cond', {
      token: node.adminToken,
      body: '1\n2\n',
      contentType: 'application/x-ndjson',
      headers: { 'x-iorio-expect-seqnum': '5' },
    });
    expect(refused.status).toBe(409);
    expect(await readAll(node, 'batch', 'cond')).toEqual([]);
  });

  test('a batch with no line is refused', async () => {
    const reply = await call(node, 'POST', '/streams/batch/empty', { token: node.adminToken, body: '\n\n', contentType: 'application/x-ndjson' });
    expect(reply.status).toBe(400);
    expect(reply.body.type).toBe('invalid-body');
  });
});

describe('GET /streams/:bucket/:stream', () => {
  beforeAll(async () => {
    for (let n = 1; n <= 10; n += 1) await append(node, 'read', 's', { n });
  });

  test('limit defaults to 1: the last entry', async () => {
    const reply = await call(node, 'GET', '/streams/read/s', { token: node.adminToken });
    expect(reply.status).toBe(200);
    expect(reply.body).toHaveLength(1);
    expect(reply.body[0]).toEqual({ meta: { id: 10, t: expect.any(Number) }, data: { n: 10 } });
    expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
  });

  test('limit=N gives the last N ascending; from=S gives N from S', async () => {
    const last = await call(node, 'GET', '/streams/read/s?limit=3', { token: node.adminToken });
    expect(last.body.map((entry: { meta: { id: number } }) => entry.meta.id)).toEqual([8, 9, 10]);
    const from = await call(node, 'GET', '/streams/read/s?from=4&limit=2', { token: node.adminToken });
    expect(from.body.map((entry: { data: { n: number } }) => entry.data.n)).toEqual([4, 5]);
    const beyond = await call(node, 'GET', '/streams/read/s?from=11&limit=2', { token: node.adminToken });
    expect(beyond.body).toEqual([]);
  });

  test('limit=0 gives []', async () => {
    const reply = await call(node, 'GET', '/streams/read/s?limit=0', { token: node.adminToken });
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual([]);
  });

  test('unknown query parameters and a trailing slash are ignored', async () => {
    const reply = await call(node, 'GET', '/streams/read/s/?limit=2&1732200000.12&foo=bar', { token: node.adminToken });
    expect(reply.status).toBe(200);
    expect(reply.body).toHaveLength(2);
  });

  test('an unknown stream gives []', async () => {
    const reply = await call(node, 'GET', '/streams/read/never-written?limit=5', { token: node.adminToken });
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual([]);
  });

  test('a limit above the cap is clamped to it', async () => {
    const lines = Array.from({ length: readLimitMax + 50 }, (_, index) => JSON.stringify({ i: index })).join('\n');
    const batch = await call(node, 'POST', '/streams/read/many', { token: node.adminToken, body: lines, contentType: 'application/x-ndjson' });
    expect(batch.status).toBe(201);
    const reply = await call(node, 'GET', `/streams/read/many?from=1&limit=${readLimitMax * 10}`, { token: node.adminToken });
    expect(reply.status).toBe(200);
    expect(reply.body).toHaveLength(readLimitMax);
    expect(reply.body[0].meta.id).toBe(1);
  });

  test('download= adds a Content-Disposition attachment with a safe file name', async () => {
    const reply = await call(node, 'GET', '/streams/read/s?limit=2&download=my%20data/..%2F%22x%22.json', { token: node.adminToken });
    expect(reply.status).toBe(200);
    const disposition = reply.headers.get('content-disposition') ?? '';
    expect(disposition).toMatch(/^attachment; filename="[A-Za-z0-9._-]+"$/);
    expect(disposition).not.toContain('/');
    expect(reply.body).toHaveLength(2);
  });
});

describe('DELETE and lists', () => {
  test('DELETE removes the stream; its seqnums do not restart', async () => {
    await append(node, 'del', 's', 1);
    await append(node, 'del', 's', 2);
    const reply = await call(node, 'DELETE', '/streams/del/s', { token: node.adminToken });
    // IorioDB: 204 without a body (iorio_rest_stream.erl:139-144).
    expect(reply.status).toBe(204);
    expect(reply.text).toBe('');
    expect(await readAll(node, 'del', 's')).toEqual([]);
    const next = await append(node, 'del', 's', 3);
    expect(next).toBeGreaterThan(2);
  });

  test('GET /streams/:bucket lists the streams; GET /buckets the buckets', async () => {
    await append(node, 'listed', 'one', 1);
    await append(node, 'listed', 'two', 2);
    const streams = await call(node, 'GET', '/streams/listed', { token: node.adminToken });
    expect(streams.status).toBe(200);
    expect(streams.body.status).toBe('ok');
    expect([...streams.body.data].sort()).toEqual(['one', 'two']);
    const buckets = await call(node, 'GET', '/buckets/', { token: node.adminToken });
    expect(buckets.status).toBe(200);
    expect(buckets.body.status).toBe('ok');
    expect(buckets.body.data).toEqual(expect.arrayContaining(['listed', 'read', 'post']));
    const unknown = await call(node, 'GET', '/streams/no-such-bucket', { token: node.adminToken });
    expect(unknown.body).toEqual({ status: 'ok', data: [] });
  });
});

describe('x-iorio-first-seqnum', () => {
  test('a read from an evicted seqnum starts at the oldest kept and says so', async () => {
    const evicting = await startTestNode({ 'storage.chunk.size': 64, 'eviction.interval': 20 });
    try {
      const policy = await call(evicting, 'PUT', '/policies/ev/s', { token: evicting.adminToken, json: { max_count: 2 } });
      expect(policy.status).toBe(200);
      for (let n = 1; n <= 8; n += 1) await append(evicting, 'ev', 's', { n, padding: 'x'.repeat(80) });
      let first: string | null = null;
      let body: { meta: { id: number } }[] = [];
      const deadline = Date.now() + 10_000;
      while (first === null && Date.now() < deadline) {
        const reply = await call(evicting, 'GET', '/streams/ev/s?from=1&limit=10', { token: evicting.adminToken });
        first = reply.headers.get('x-iorio-first-seqnum');
        body = reply.body;
        if (first === null) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(first).not.toBeNull();
      expect(Number(first)).toBeGreaterThan(1);
      expect(body[0]!.meta.id).toBe(Number(first));
      expect(body.at(-1)!.meta.id).toBe(8);
      const fromKept = await call(evicting, 'GET', `/streams/ev/s?from=${first}&limit=10`, { token: evicting.adminToken });
      expect(fromKept.headers.get('x-iorio-first-seqnum')).toBeNull();
    } finally {
      await evicting.stop();
    }
  });
});
