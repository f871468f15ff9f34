/**
 * GET /streams/:bucket/:stream/info on a real node: seqnums, entries,
 * bytes and chunks as eviction moves them, the policy in force and where
 * it comes from (stream, bucket, config default, none), and the refusals.
 * The same route through a node that does not own the stream is in
 * test/cluster/cluster-stream-info.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { append, call, createUser, startTestNode, type TestNode } from './http-harness.js';

let node: TestNode;
let alice: string;

beforeAll(async () => {
  // Small chunks, so that a few entries make several of them, and a config default policy.
  node = await startTestNode({ 'storage.chunk.size': 1024, 'eviction.stream.max_count': 1000, 'eviction.bucket.size.max': 1_000_000_000 });
  alice = await createUser(node, 'alice');
});
afterAll(async () => {
  await node?.stop();
});

const info = (path: string, token = node.adminToken) => call(node, 'GET', `/streams/${path}/info`, { token });

describe('stream info', () => {
  test('seqnums, entries, bytes and chunks of a stream, and the config default policy', async () => {
    for (let index = 1; index <= 40; index++) await append(node, 'inf', 'many', { index, text: 'x'.repeat(100) });
    const reply = await info('inf/many');
    expect(reply.status).toBe(200);
    expect(reply.headers.get('content-type')).toBe('application/json');
    expect(reply.body).toEqual({
      bucket: 'inf',
      stream: 'many',
      partition: expect.any(Number),
      node: 'iorio@127.0.0.1',
      first: 1,
      last: 40,
      entries: 40,
      bytes: expect.any(Number),
      chunks: expect.any(Number),
      last_t: expect.any(Number),
      deleted_at: 0,
      policy: { max_count: 1000 },
      policy_source: 'default',
      bucket_size_max: 1_000_000_000,
    });
    // Each record is its payload plus a 28-byte header; 40 of them do not fit in one 1 KB chunk.
    expect(reply.body.bytes).toBeGreaterThan(40 * 100);
    expect(reply.body.chunks).toBeGreaterThan(1);
    expect(reply.body.last_t).toBeGreaterThan(0);
  });

  test('a bucket policy evicts whole old chunks: first moves up, and the policy comes from the bucket', async () => {
    const before = (await info('inf/many')).body;
    expect((await call(node, 'PUT', '/policies/inf', { token: node.adminToken, json: { max_count: 10 } })).status).toBe(200);
    const after = (await info('inf/many')).body;
    expect(after.policy).toEqual({ max_count: 10 });
    expect(after.policy_source).toBe('bucket');
    expect(after.last).toBe(40);
    expect(after.first).toBeGreaterThan(1);
    expect(after.entries).toBe(40 - after.first + 1);
    expect(after.entries).toBeGreaterThanOrEqual(10);
    expect(after.chunks).toBeLessThan(before.chunks);
    expect(after.bytes).toBeLessThan(before.bytes);
    // A read from 1 starts where info says.
    const read = await call(node, 'GET', '/streams/inf/many?from=1&limit=1', { token: node.adminToken });
    expect(read.body[0].meta.id).toBe(after.first);
  });

  test('a stream policy overrides the bucket one; deleting it gives the bucket one back', async () => {
    await call(node, 'PUT', '/policies/inf/many', { token: node.adminToken, json: { max_age_secs: 3600 } });
    expect((await info('inf/many')).body).toMatchObject({ policy: { max_age_secs: 3600 }, policy_source: 'stream' });
    await call(node, 'DELETE', '/policies/inf/many', { token: node.adminToken });
    expect((await info('inf/many')).body).toMatchObject({ policy: { max_count: 10 }, policy_source: 'bucket' });
  });

  test('a deleted stream: no entries, first after last, deleted_at its last seqnum', async () => {
    await append(node, 'inf', 'gone', { n: 1 });
    await append(node, 'inf', 'gone', { n: 2 });
    expect((await call(node, 'DELETE', '/streams/inf/gone', { token: node.adminToken })).status).toBe(204);
    expect((await info('inf/gone')).body).toMatchObject({ first: 3, last: 2, entries: 0, bytes: 0, chunks: 0, deleted_at: 2 });
  });

  test('needs get: 401 no-perm without it; the owner of a bucket has it', async () => {
    const refused = await info('inf/many', alice);
    expect(refused.status).toBe(401);
    expect(refused.body.type).toBe('no-perm');
    expect(refused.headers.get('www-authenticate')).toBe('jwt');
    expect((await call(node, 'GET', '/streams/inf/many/info')).status).toBe(401);
    await append(node, '_user_alice', 'mine', { n: 1 }, alice);
    expect((await info('_user_alice/mine', alice)).body).toMatchObject({ first: 1, last: 1, entries: 1 });
  });

  test('a stream never written is 404 not-found; a bad name is 400 invalid-name', async () => {
    const missing = await info('inf/never');
    expect(missing.status).toBe(404);
    expect(missing.body.type).toBe('not-found');
    expect((await call(node, 'GET', '/streams/inf/bad%20name/info', { token: node.adminToken })).body.type).toBe('invalid-name');
  });

  test('without a policy anywhere: policy {} from none', async () => {
    const plain = await startTestNode();
    try {
      await append(plain, 'p', 's', { n: 1 });
      const reply = await call(plain, 'GET', '/streams/p/s/info', { token: plain.adminToken });
      expect(reply.body).toMatchObject({ first: 1, last: 1, entries: 1, chunks: 1, policy: {}, policy_source: 'none', bucket_size_max: 0 });
    } finally {
      await plain.stop();
    }
  });
});
