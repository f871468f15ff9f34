/**
 * /stats and /metrics under one rule (a client on this machine, or a caller
 * with viewstats), and what /metrics measures: latency histograms of
 * appends, reads and commit-log fsyncs, and disk-usage gauges. A client
 * from another machine is simulated with fastify's inject (the nodes of
 * the tests listen on loopback only).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { append, call, createUser, startTestNode, type TestNode } from './http-harness.js';

let node: TestNode;
let alice: string;

beforeAll(async () => {
  // storage.sync = always: every append waits for an fdatasync of the commit log.
  node = await startTestNode({ 'storage.sync': 'always' });
  alice = await createUser(node, 'alice');
});
afterAll(async () => {
  await node?.stop();
});

/** A request as if from 192.0.2.7 (TEST-NET-1), not a loopback address. */
async function fromAfar(path: string, token?: string): Promise<{ status: number; body: any; text: string }> {
  const reply = await node.node.app.inject({ method: 'GET', url: path, remoteAddress: '192.0.2.7', headers: token === undefined ? {} : { 'x-session': token } });
  let body: unknown;
  try {
    body = JSON.parse(reply.body);
  } catch {
    body = undefined;
  }
  return { status: reply.statusCode, body, text: reply.body };
}

/** The value of one sample line of Prometheus text (`name{labels} value`). */
function sample(text: string, line: string): number {
  const escaped = line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = new RegExp(`^${escaped} ([0-9.e+-]+)$`, 'm').exec(text);
  if (match === null) throw new Error(`no sample ${line} in /metrics`);
  return Number(match[1]);
}

describe('/stats and /metrics: loopback or viewstats', () => {
  test.each(['/stats', '/metrics'])('%s answers any caller on this machine, anonymous included', async (path) => {
    expect((await call(node, 'GET', path)).status).toBe(200);
    expect((await call(node, 'GET', path, { token: alice })).status).toBe(200);
  });

  test.each(['/stats', '/metrics'])('%s from another machine needs viewstats: 401 no-perm without it', async (path) => {
    const anonymous = await fromAfar(path);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).toEqual({ type: 'no-perm', reason: expect.any(String) });
    expect((await fromAfar(path, alice)).status).toBe(401);
    expect((await fromAfar(path, node.adminToken)).status).toBe(200);
  });

  test('a viewstats grant opens both to a user from afar', async () => {
    const bob = await createUser(node, 'bob');
    // A global permission: POST /access, without a bucket (test/integration/http-global-access.test.ts).
    const granted = await call(node, 'POST', '/access', { token: node.adminToken, json: { username: 'bob', permission: 'viewstats', action: 'grant' } });
    expect(granted.status).toBe(200);
    expect((await fromAfar('/stats', bob)).status).toBe(200);
    expect((await fromAfar('/metrics', bob)).status).toBe(200);
  });

  test('a bad token is 401 unauthorized even on loopback', async () => {
    expect((await call(node, 'GET', '/stats', { token: 'not-a-jwt' })).body.type).toBe('unauthorized');
  });
});

describe('/metrics measures', () => {
  test('append, read and fsync latencies: one more observation per append and per read', async () => {
    const before = (await call(node, 'GET', '/metrics')).text;
    await append(node, 'met', 's', { n: 1 });
    await append(node, 'met', 's', { n: 2 });
    expect((await call(node, 'GET', '/streams/met/s?limit=2', { token: node.adminToken })).status).toBe(200);
    const after = (await call(node, 'GET', '/metrics')).text;
    const grew = (line: string) => sample(after, line) - sample(before, line);
    expect(grew('iorio_append_duration_seconds_count')).toBe(2);
    expect(grew('iorio_read_duration_seconds_count')).toBe(1);
    // Group commit may cover both appends with one fdatasync.
    expect(grew('iorio_fsync_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'iorio_fsync_duration_seconds_bucket{le="+Inf"}')).toBe(sample(after, 'iorio_fsync_duration_seconds_count'));
    expect(after).toMatch(/^# TYPE iorio_forward_duration_seconds histogram$/m);
  });

  test('disk gauges: the file system size and free space, and the data folder by part', async () => {
    // A node of its own: the walk of the data folder is reused for 30 s, so its first scrape must come after the append.
    const fresh = await startTestNode({ 'storage.sync': 'always' });
    let text: string;
    try {
      await append(fresh, 'met', 'disk', { text: 'x'.repeat(1000) });
      text = (await call(fresh, 'GET', '/metrics')).text;
    } finally {
      await fresh.stop();
    }
    const size = sample(text, 'iorio_disk_size_bytes');
    const free = sample(text, 'iorio_disk_free_bytes');
    expect(size).toBeGreaterThan(0);
    expect(free).toBeGreaterThan(0);
    expect(free).toBeLessThanOrEqual(size);
    // The append is in the commit log (its chunk write may still be buffered); lmdb's file exists from the start.
    expect(sample(text, 'iorio_disk_data_bytes{part="commitlog"}')).toBeGreaterThan(1000);
    expect(sample(text, 'iorio_disk_data_bytes{part="meta"}')).toBeGreaterThan(0);
    expect(sample(text, 'iorio_disk_data_bytes{part="vnodes"}')).toBeGreaterThanOrEqual(0);
  });
});
