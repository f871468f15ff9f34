/**
 * In a cluster of two real node processes: stream info comes from the node
 * serving the stream's partition, whichever node is asked, and the asking
 * node times the forwarded request; groups (made, given members, granted
 * to, deleted) are cluster metadata, in force on the other node once the
 * change is acknowledged.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TestCluster } from './cluster-harness.js';

// request.n = 1: the figures below name each partition's one owner (replica groups: cluster-replication.test.ts).
const cluster = new TestCluster({ 'metrics.enabled': 'yes', 'request.n': '1' });

beforeAll(async () => {
  await Promise.all([1, 2].map((index) => cluster.start(index)));
  await cluster.joinAll([2]);
}, 180_000);

afterAll(async () => {
  await cluster.stopAll();
});

function forwardCount(metrics: string, operation: string): number {
  const match = new RegExp(`^iorio_forward_duration_seconds_count\\{operation="${operation}"\\} ([0-9]+)$`, 'm').exec(metrics);
  return match === null ? 0 : Number(match[1]);
}

describe('stream info in a cluster', () => {
  test('answers from the node serving the stream, through either node; the forwarding node times it', async () => {
    // Streams on both nodes: 16 of them land on node 2 with overwhelming likelihood (half the ring each).
    const served = new Map<string, string>();
    for (let index = 0; index < 16; index++) {
      const path = `/streams/ci/s${index}`;
      expect((await cluster.call(1, 'POST', path, { body: { index } })).status).toBe(201);
      const fromOne = await cluster.call(1, 'GET', `${path}/info`);
      expect(fromOne.status).toBe(200);
      const fromTwo = await cluster.call(2, 'GET', `${path}/info`);
      expect(fromTwo.body).toEqual(fromOne.body);
      expect(fromOne.body).toMatchObject({ bucket: 'ci', stream: `s${index}`, first: 1, last: 1, entries: 1, chunks: 1 });
      served.set(path, fromOne.body.node);
    }
    const byNode2 = [...served.entries()].filter(([, node]) => node === cluster.nameOf(2)).map(([path]) => path);
    expect(byNode2.length).toBeGreaterThan(0);
    expect(new Set(served.values())).toEqual(new Set([cluster.nameOf(1), cluster.nameOf(2)]));

    const metrics = async () => (await fetch(`${cluster.node(1).url}/metrics`)).text();
    const before = await metrics();
    expect((await cluster.call(1, 'GET', `${byNode2[0]}/info`)).status).toBe(200);
    expect((await cluster.call(1, 'GET', `${byNode2[0]}?limit=1`)).status).toBe(200);
    const after = await metrics();
    expect(forwardCount(after, 'streamInfo') - forwardCount(before, 'streamInfo')).toBe(1);
    expect(forwardCount(after, 'streamRead') - forwardCount(before, 'streamRead')).toBe(1);
  });
});

describe('groups in a cluster', () => {
  test('a group made on one node, its members and grants, hold on the other; a delete on the other holds back here', async () => {
    expect((await cluster.call(1, 'POST', '/users', { body: { username: 'bob', password: 'bob-password' } })).status).toBe(201);
    expect((await cluster.call(1, 'POST', '/groups', { body: { name: 'readers' } })).status).toBe(201);
    expect((await cluster.call(1, 'POST', '/groups/readers/users', { body: { username: 'bob' } })).status).toBe(200);
    expect((await cluster.call(1, 'POST', '/access/shared', { body: { group: 'readers', permission: 'get', action: 'grant' } })).status).toBe(200);
    expect((await cluster.call(1, 'POST', '/streams/shared/s', { body: { n: 1 } })).status).toBe(201);

    expect((await cluster.call(2, 'GET', '/groups/readers')).body).toEqual({ name: 'readers', builtin: false, users: ['bob'] });
    const bob = await cluster.login(2, 'bob', 'bob-password');
    expect((await cluster.call(2, 'GET', '/streams/shared/s', { token: bob })).status).toBe(200);

    expect((await cluster.call(2, 'DELETE', '/groups/readers')).status).toBe(200);
    expect((await cluster.call(1, 'GET', '/groups/readers')).status).toBe(404);
    expect((await cluster.call(1, 'GET', '/streams/shared/s', { token: bob })).status).toBe(401);
  });
});
