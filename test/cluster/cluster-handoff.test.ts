/**
 * Handoff with real processes, under load and under faults:
 * - apitest (with its own checks) runs against the first node while three
 *   others join and the plan is committed: it finishes clean, and every
 *   stream then reads the same from every node;
 * - a listener on a stream that moves follows it without reconnecting, and
 *   sees every entry exactly once, in order;
 * - kill -9 of the sender, and of the receiver, in the middle of a transfer
 *   (slowed by handoff.rate): after a restart the transfer resumes from
 *   what the receiver holds, nothing is lost or duplicated, and the bytes
 *   sent twice are at most what was in flight;
 * - a node with the wrong cluster secret is refused, and logged.
 */
import { afterEach, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { formatApitestReport } from '../../tools/apitest/report.js';
import { parseApitestArgs, runApitest } from '../../tools/apitest/run.js';
import { TestCluster, waitFor } from './cluster-harness.js';

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = undefined;
});

/** Every stream of every bucket, read whole from each node: the same everywhere, gap-free seqnums. */
async function expectSameEverywhere(nodes: readonly number[]): Promise<number> {
  const c = cluster!;
  const buckets = (await c.call(nodes[0]!, 'GET', '/buckets')).body.data as string[];
  let entries = 0;
  for (const bucket of buckets) {
    const streams = (await c.call(nodes[0]!, 'GET', `/streams/${bucket}`)).body.data as string[];
    for (const stream of streams) {
      // A read may meet a group between leaders (503, retriable): asked again, boundedly.
      const readThrough = (index: number) => waitFor(`${bucket}/${stream} through node ${index}`, 30_000, async () => {
        const answer = await c.call(index, 'GET', `/streams/${bucket}/${stream}?limit=1000&from=1`);
        return answer.status === 200 ? answer.body : undefined;
      });
      const reads = await Promise.all(nodes.map(readThrough));
      for (const read of reads.slice(1)) expect(read, `${bucket}/${stream}`).toEqual(reads[0]);
      const ids = (reads[0] as { meta: { id: number } }[]).map((entry) => entry.meta.id);
      if (ids.length > 0) expect(ids, `${bucket}/${stream}`).toEqual(Array.from({ length: ids.length }, (_, index) => ids[0]! + index));
      entries += ids.length;
    }
  }
  return entries;
}

/** Handoff proper (whole partitions copied) is request.n = 1's; with replica groups the same joins are changes of the groups. */
const copies = { 'request.n': '1' };

describe.each([
  ['request.n = 1: partitions copied by handoff', '1'],
  ['request.n = 3: partitions move by changes of their replica groups', '3'],
])('joins under load (%s)', (_, n) => {
  test('apitest runs clean on node 1 while three nodes join and partitions move; afterwards every stream reads the same from every node', async () => {
    cluster = new TestCluster({ 'request.n': n });
    await Promise.all([1, 2, 3, 4].map((index) => cluster!.start(index)));
    const parsed = parseApitestArgs(['--url', cluster.node(1).url, '-i', '150', '-B', '4', '-S', '6', '-I', '4', '-Q', '2', '-R', '2', '-L', '1', '--listeners', '3', '--listen-timeout', '2', '-s', '7', '-q']);
    if (parsed.help) throw new Error('unexpected --help');
    const running = runApitest({ ...parsed.options, log: () => {} });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await cluster.joinAll([2, 3, 4]);
    const report = await running;
    if (n === '1') expect(report.errorSamples, formatApitestReport(report)).toEqual([]);
    // A group whose leader leaves it elects another (no leader transfer yet): for about an election timeout its streams answer 503 unavailable, retriable, and nothing else.
    else for (const sample of report.errorSamples) expect(sample, formatApitestReport(report)).toMatch(/: 503 unavailable:? /);
    expect(report.checks.filter((check) => check.failures > 0), formatApitestReport(report)).toEqual([]);
    if (n === '1') expect(report.ok).toBe(true);
    await cluster.settle();
    const entries = await expectSameEverywhere([1, 2, 3, 4]);
    expect(entries).toBeGreaterThan(1000);
  }, 240_000);
});

describe('a leave under load (request.n = 3)', () => {
  test('apitest runs on node 1 while node 4 leaves a four-node cluster: every check passes, node 4 ends with no member role and no copy, and every stream reads the same from the three left', async () => {
    cluster = new TestCluster({ 'request.n': '3' });
    await Promise.all([1, 2, 3, 4].map((index) => cluster!.start(index)));
    await cluster.joinAll([2, 3, 4]);
    const parsed = parseApitestArgs(['--url', cluster.node(1).url, '-i', '150', '-B', '4', '-S', '6', '-I', '4', '-Q', '2', '-R', '2', '-L', '1', '--listeners', '3', '--listen-timeout', '2', '-s', '11', '-q']);
    if (parsed.help) throw new Error('unexpected --help');
    const running = runApitest({ ...parsed.options, log: () => {} });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const staged = await cluster.admin(4, 'POST', 'leave', {});
    expect(staged.status, JSON.stringify(staged.body)).toBe(200);
    await cluster.commitPlan();
    const report = await running;
    // A group whose leader leaves it hands over: for that moment its streams answer 503 unavailable, retriable, and nothing else.
    for (const sample of report.errorSamples) expect(sample, formatApitestReport(report)).toMatch(/: 503 unavailable:? /);
    expect(report.checks.filter((check) => check.failures > 0), formatApitestReport(report)).toEqual([]);
    await waitFor('node 4 to leave the ring', 120_000, async () => {
      const members = await cluster!.admin(1, 'GET', 'members');
      return members.body.rows.length === 3 ? true : undefined;
    });
    await cluster.settle(120_000);
    // Its copies go once each group's leader reports a committed group without it.
    await waitFor('node 4 to drop every copy', 60_000, async () => {
      const answer = await cluster!.admin(4, 'GET', 'partitions').catch(() => undefined);
      const rows = (answer?.body?.rows ?? []) as { node: string }[];
      return answer?.status === 200 && !rows.some((row) => row.node === cluster!.nameOf(4)) ? true : undefined;
    });
    const entries = await expectSameEverywhere([1, 2, 3]);
    expect(entries).toBeGreaterThan(1000);
  }, 300_000);
});

describe.each([
  ['request.n = 1', '1'],
  ['request.n = 3', '3'],
])('a listener follows its stream (%s)', (_, n) => {
  test('a WebSocket listener on node 1 sees every entry of streams that move to other nodes exactly once, in order, without reconnecting', async () => {
    cluster = new TestCluster({ 'request.n': n });
    await Promise.all([1, 2, 3].map((index) => cluster!.start(index)));
    const streams = Array.from({ length: 12 }, (_, index) => `f${index}`);
    for (const stream of streams) expect((await cluster.call(1, 'POST', `/streams/follow/${stream}`, { body: { n: 0 } })).status).toBe(201);
    const token = await cluster.login(1);
    const socket = new WebSocket(`${cluster.node(1).url.replace('http', 'ws')}/listen?jwt=${token}&${streams.map((stream) => `s=follow:${stream}:1`).join('&')}`);
    const seen = new Map<string, number[]>();
    let closed = false;
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as unknown;
      if (!Array.isArray(message)) return;
      for (const event of message as { meta: { id: number; stream: string } }[]) {
        const list = seen.get(event.meta.stream) ?? [];
        list.push(event.meta.id);
        seen.set(event.meta.stream, list);
      }
    });
    socket.on('close', () => (closed = true));
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    // A writer through node 1 all along (its requests follow the streams too).
    let writing = true;
    const counts = new Map(streams.map((stream) => [stream, 1]));
    const writer = (async () => {
      for (let round = 1; writing && round < 100_000; round++) {
        const stream = streams[round % streams.length]!;
        // With replica groups a partition is unavailable for a moment while its leadership is handed over: the writer
        // retries a 503 under the same idempotency key (bounded), as a client should; with one copy it never sees one.
        let answer = await cluster!.call(1, 'POST', `/streams/follow/${stream}`, { body: { n: round }, headers: { 'idempotency-key': `w${round}` } });
        for (let retry = 0; n === '3' && answer.status === 503 && retry < 200; retry++) {
          await new Promise((resolve) => setTimeout(resolve, 25));
          answer = await cluster!.call(1, 'POST', `/streams/follow/${stream}`, { body: { n: round }, headers: { 'idempotency-key': `w${round}` } });
        }
        expect(answer.status, JSON.stringify(answer.body)).toBe(201);
        expect(answer.body.meta.id).toBe(counts.get(stream)! + 1);
        counts.set(stream, answer.body.meta.id);
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 500));
    await cluster.joinAll([2, 3]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    writing = false;
    await writer;
    await waitFor('the listener to catch up', 20_000, () => (streams.every((stream) => (seen.get(stream)?.at(-1) ?? 0) === counts.get(stream)) ? true : undefined));
    expect(closed).toBe(false);
    for (const stream of streams) expect(seen.get(stream), stream).toEqual(Array.from({ length: counts.get(stream)! }, (_, index) => index + 1));
    socket.close();
  }, 180_000);
});

describe('kill -9 in the middle of a transfer', () => {
  for (const victim of ['sender', 'receiver'] as const) {
    test(`of the ${victim}: after a restart the transfer resumes from what the receiver holds; nothing lost or duplicated`, async () => {
      cluster = new TestCluster({ ...copies, 'handoff.rate': '2MB', 'handoff.concurrency': '1' });
      await Promise.all([1, 2].map((index) => cluster!.start(index)));
      // About 8 MB on node 1, in 64 streams: four seconds of transfer at 2 MB/s.
      const pad = 'p'.repeat(4000);
      for (let index = 0; index < 2000; index++) {
        expect((await cluster.call(1, 'POST', `/streams/big/s${index % 64}`, { body: { index, pad } })).status).toBe(201);
      }
      const before = await expectSameEverywhere([1]);
      for (const index of [2]) expect((await cluster.admin(index, 'POST', 'join', { node: cluster.nameOf(1) })).status).toBe(200);
      await cluster.commitPlan();
      // Wait until a third of the data has moved, then kill.
      await waitFor('the transfer to be under way', 60_000, async () => {
        const transfers = await cluster!.admin(1, 'GET', 'transfers');
        return transfers.body.received !== undefined && (await cluster!.admin(2, 'GET', 'transfers')).body.received.bytes > 2_500_000 ? true : undefined;
      });
      const index = victim === 'sender' ? 1 : 2;
      const receivedBefore = (await cluster.admin(2, 'GET', 'transfers')).body.received.bytes as number;
      await cluster.kill(index);
      await cluster.start(index);
      await cluster.settle(120_000);
      const received = (await cluster.admin(2, 'GET', 'transfers')).body.received as { bytes: number; duplicateBytes: number };
      const total = victim === 'receiver' ? receivedBefore + received.bytes : received.bytes;
      // At most the batches in flight when it died were sent twice (a batch is at most 1 MB).
      expect(received.duplicateBytes).toBeLessThanOrEqual(2 * 1024 * 1024);
      expect(total).toBeGreaterThan(0);
      expect(await expectSameEverywhere([1, 2])).toBe(before);
      console.log(`kill -9 of the ${victim}: ${receivedBefore} bytes received before, ${received.duplicateBytes} bytes re-sent after the restart`);
    }, 240_000);
  }
});

describe('transfer limits and cancel, at run time', () => {
  test('transfer-limit changes the rate and concurrency of running transfers; a cancelled transfer is tried again and finishes; nothing lost', async () => {
    // 256 KB/s gives 64 KB batches: each of the 16 streams (~200 KB) takes several, so a transfer is
    // seen running with bytes moved for most of a second (~1.6 MB moves, ~6 s in all).
    cluster = new TestCluster({ ...copies, 'handoff.rate': '256KB', 'handoff.concurrency': '1' });
    await Promise.all([1, 2].map((index) => cluster!.start(index)));
    const pad = 'q'.repeat(4000);
    for (let index = 0; index < 800; index++) expect((await cluster.call(1, 'POST', `/streams/lim/s${index % 16}`, { body: { index, pad } })).status).toBe(201);
    const before = await expectSameEverywhere([1]);
    expect((await cluster.admin(2, 'POST', 'join', { node: cluster.nameOf(1) })).status).toBe(200);
    await cluster.commitPlan();
    const running = await waitFor('a running transfer', 30_000, async () => {
      const answer = await cluster!.admin(1, 'GET', 'transfers');
      return answer.body.transfers.find((row: { state: string; bytes: number }) => row.state === 'running' && row.bytes > 0);
    });
    expect((await cluster.admin(1, 'GET', 'transfers')).body.limits).toEqual({ concurrency: 1, rateBytesPerSec: 256 * 1024 });
    const cancelled = await cluster.admin(1, 'DELETE', `transfers/${running.partition}`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toEqual({ ok: true, partition: running.partition });
    expect((await cluster.admin(1, 'DELETE', 'transfers/63')).status).toBe(404);
    const limits = await cluster.admin(1, 'POST', 'transfer-limit', { concurrency: 4, rate: '0' });
    expect(limits.body).toEqual({ concurrency: 4, rateBytesPerSec: 0 });
    expect((await cluster.admin(1, 'POST', 'transfer-limit', { concurrency: 0 })).status).toBe(400);
    await cluster.settle(120_000);
    expect(await expectSameEverywhere([1, 2])).toBe(before);
  }, 180_000);
});

describe('the cluster secret', () => {
  test('a node with the wrong secret cannot join, and the refusal is logged naming it', async () => {
    cluster = new TestCluster(copies);
    await cluster.start(1);
    await cluster.start(2, { 'cluster.secret': 'not-the-secret' });
    const joined = await fetch(`${cluster.node(2).url}/admin/cluster/join`, {
      method: 'POST',
      headers: { 'x-iorio-cluster-secret': 'not-the-secret', 'content-type': 'application/json' },
      body: JSON.stringify({ node: cluster.nameOf(1) }),
    });
    expect(joined.status).toBe(503);
    expect(((await joined.json()) as { reason: string }).reason).toMatch(/secret|refused|authenticat/i);
    await waitFor('the refusal in node 1 log', 5_000, () => (cluster!.node(1).log.some((line) => line.includes(cluster!.nameOf(2)) && /secret|proof|refus/i.test(line)) ? true : undefined));
    expect((await cluster.admin(1, 'GET', 'members')).body.rows).toHaveLength(1);
  }, 60_000);
});
