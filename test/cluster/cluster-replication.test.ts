/**
 * request.n = 3 on real node processes (DESIGN §7b): a cluster that grows
 * from one node to three changes every partition's group (learners, joint,
 * new group) instead of copying data; appends through any node reach the
 * partition's leader and are acknowledged once a majority holds them; kill
 * -9 of a stream's leader, and appends resume through the others with
 * nothing acknowledged lost; the killed node comes back and catches up.
 */

import { afterEach, describe, expect, test } from 'vitest';
import { formatPartitions } from '../../src/cli/admin-format.js';
import { TestCluster, waitFor } from './cluster-harness.js';

let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.stopAll();
  cluster = undefined;
});

/** Appends through node `index`, retrying 503s (a failover, an election) a bounded number of times; the seqnum. */
async function append(index: number, stream: string, body: unknown): Promise<{ seq: number; retries: number }> {
  for (let attempt = 0; attempt < 400; attempt++) {
    const answer = await cluster!.call(index, 'POST', `/streams/rep/${stream}`, { body });
    if (answer.status === 201) return { seq: Number(answer.body.meta.id), retries: attempt };
    if (answer.status !== 503) throw new Error(`append answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error('append kept answering 503');
}

/** An append with an idempotency key through node `index`, retrying 503s (bounded); the seqnum. */
async function keyedAppend(index: number, key: string, body: unknown): Promise<number> {
  for (let attempt = 0; attempt < 400; attempt++) {
    const answer = await cluster!.call(index, 'POST', '/streams/rep/s', { body, headers: { 'idempotency-key': key } });
    if (answer.status === 201) return Number(answer.body.meta.id);
    if (answer.status !== 503) throw new Error(`keyed append answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error('keyed append kept answering 503');
}

/** The node (index) serving a stream now: its partition's leader. */
async function streamLeader(stream: string): Promise<number> {
  const info = await waitFor(`the leader of ${stream}`, 30_000, async () => {
    const answer = await cluster!.call(1, 'GET', `/streams/rep/${stream}/info`);
    return answer.status === 200 ? answer : undefined;
  });
  return [1, 2, 3].find((index) => cluster!.nameOf(index) === info.body.node)!;
}

async function readAll(index: number, stream: string): Promise<unknown[]> {
  const answer = await waitFor(`a read of ${stream} through node ${index}`, 30_000, async () => {
    const read = await cluster!.call(index, 'GET', `/streams/rep/${stream}?limit=1000`);
    return read.status === 200 ? read : undefined;
  });
  return (answer.body as { data: unknown }[]).map((entry) => entry.data);
}

describe('request.n = 3 on real processes', () => {
  test('a growing cluster changes groups; a leader killed with kill -9 is replaced, nothing acknowledged is lost, and it catches up when back', async () => {
    cluster = new TestCluster({ 'request.n': '3' });
    await cluster.start(1);
    // One node: every partition is a group of one.
    const before = await append(1, 's', { n: 0 });
    expect(before.seq).toBe(1);
    await Promise.all([2, 3].map((index) => cluster!.start(index)));
    await cluster.joinAll([2, 3]);
    const bodies: unknown[] = [{ n: 0 }];
    for (let n = 1; n < 30; n++) {
      const { seq } = await append(1 + (n % 3), 's', { n });
      expect(seq).toBe(n + 1);
      bodies.push({ n });
    }
    for (const index of [1, 2, 3]) expect(await readAll(index, 's'), `read through node ${index}`).toEqual(bodies);

    // iorio-admin partitions: every partition a group of the three, each with one leader.
    const partitions = await waitFor('a leader in every partition', 30_000, async () => {
      const answer = await cluster!.admin(1, 'GET', 'partitions');
      const rows = answer.body.rows as { partition: number; node: string; role: string; leader: string | null; voters: string[] }[];
      const leaders = new Set(rows.filter((row) => row.role === 'leader' && row.leader === row.node).map((row) => row.partition));
      return answer.status === 200 && leaders.size === 64 ? answer.body : undefined;
    });
    expect(partitions.n).toBe(3);
    for (const row of partitions.rows) expect([...row.voters].sort()).toEqual([1, 2, 3].map((index) => cluster!.nameOf(index)).sort());
    const table = formatPartitions(partitions);
    expect(table).toContain('64 partitions: 64 with a leader, 0 without; 0 changing their group; unreachable: none');

    // Leadership balancing: the cluster grew from node 1, which led every partition; leaders move to each partition's owner.
    const spread = await waitFor('leaders spread over the three nodes', 60_000, async () => {
      const answer = await cluster!.admin(1, 'GET', 'partitions');
      const rows = answer.body.rows as { partition: number; node: string; role: string; leader: string | null }[];
      const counts = new Map<string, number>();
      for (const row of rows) if (row.role === 'leader' && row.leader === row.node) counts.set(row.node, (counts.get(row.node) ?? 0) + 1);
      const total = [...counts.values()].reduce((sum, count) => sum + count, 0);
      return total === 64 && [1, 2, 3].every((index) => (counts.get(cluster!.nameOf(index)) ?? 0) >= 16) ? counts : undefined;
    });
    console.log(`leaders after balancing: ${[...spread.values()].join(' / ')}`);

    // The node that serves the stream now is its partition's leader.
    const info = await cluster.call(1, 'GET', '/streams/rep/s/info');
    expect(info.status).toBe(200);
    const leaderName = info.body.node as string;
    const leaderIndex = [1, 2, 3].find((index) => cluster!.nameOf(index) === leaderName)!;
    await cluster.kill(leaderIndex);
    const others = [1, 2, 3].filter((index) => index !== leaderIndex);
    let retries = 0;
    for (let n = 30; n < 60; n++) {
      const answer = await append(others[n % 2]!, 's', { n });
      expect(answer.seq).toBe(n + 1);
      retries += answer.retries;
      bodies.push({ n });
    }
    console.log(`kill -9 of the leader ${leaderName}: the first append after it was retried ${retries} times (25 ms apart) before a new leader took it`);
    for (const index of others) expect(await readAll(index, 's'), `read through node ${index}`).toEqual(bodies);

    // Back: it follows the new leader and serves reads through it.
    await cluster.start(leaderIndex);
    await append(leaderIndex, 's', { n: 60 });
    bodies.push({ n: 60 });
    expect(await readAll(leaderIndex, 's')).toEqual(bodies);

    // Idempotency keys and conditions across a failover: a keyed append is acknowledged, its leader is killed,
    // and the client's retry through another node gets the first answer, not a second entry.
    // Three different nodes: the first attempt goes through one, the leader is another, the retry goes through the third
    // (so neither the leader's memory nor the first node's HTTP window can answer it: only the replicated log).
    const current = await streamLeader('s');
    const [first, survivor] = [1, 2, 3].filter((index) => index !== current) as [number, number];
    const keyed = await keyedAppend(first, 'retry-me', { n: 'keyed' });
    bodies.push({ n: 'keyed' });
    await cluster.kill(current);
    expect(await keyedAppend(survivor, 'retry-me', { n: 'keyed' }), 'the retry after a failover').toBe(keyed);
    expect(await readAll(survivor, 's')).toEqual(bodies);
    const conflicting = await cluster.call(survivor, 'POST', '/streams/rep/s', { body: { n: 'other' }, headers: { 'idempotency-key': 'retry-me' } });
    expect(conflicting.status, 'the same key with another body').toBe(409);
    const conditional = await cluster.call(survivor, 'POST', '/streams/rep/s', { body: { n: 'conditional' }, headers: { 'x-iorio-expect-seqnum': String(keyed) } });
    expect(conditional.status).toBe(201);
    expect(conditional.body.meta.id).toBe(keyed + 1);
    const stale = await cluster.call(survivor, 'POST', '/streams/rep/s', { body: { n: 'stale' }, headers: { 'x-iorio-expect-seqnum': String(keyed) } });
    expect(stale.status, 'a condition the new leader knows is stale').toBe(409);
  }, 240_000);
});
