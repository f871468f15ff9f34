/**
 * request.n = 3 under real faults (DESIGN §7b, §9): three node processes in
 * the test's own network namespace, links cut with iptables, SIGSTOP.
 *
 * - The leader of a stream cut off both ways (a minority of one): through
 *   it, writes answer 503 and never 201; through the majority side a new
 *   leader takes them; healed, every node reads the same log.
 * - The leader paused (SIGSTOP) for five seconds: the others elect and go
 *   on; woken, it answers 503 at once (its lease ran out by its monotonic
 *   clock), then follows; no seqnum is ever given twice.
 *
 * Every answer is 201 or 503 `unavailable`; every 201 reads back at its
 * seqnum; a 503 append appears at most once (the Ledger, ledger.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Ledger } from './ledger.js';
import { FaultCluster, waitFor } from './netns.js';

const bucket = 'rep';

describe('request.n = 3 under faults', () => {
  const cluster = new FaultCluster({ flags: { 'request.n': '3' } });

  beforeAll(async () => {
    await cluster.open();
    await Promise.all([1, 2, 3].map((index) => cluster.start(index)));
    await cluster.joinAll([2, 3]);
  }, 120_000);
  afterAll(async () => {
    await cluster.close();
  }, 60_000);

  async function leaderOf(stream: string): Promise<number> {
    const info = await waitFor(`the leader of ${stream}`, 30_000, async () => {
      const answer = await cluster.call(1, 'GET', `/streams/${bucket}/${stream}/info`);
      return answer.status === 200 ? answer : undefined;
    });
    const node = info.body.node as string;
    return [1, 2, 3].find((index) => cluster.nameOf(index) === node)!;
  }

  test(`the leader cut off both ways (${cluster.description}): it refuses writes; the majority elects and goes on; healed, all agree`, async () => {
    const ledger = new Ledger(cluster, bucket, 'cut');
    for (let index = 0; index < 10; index++) await ledger.appendUntilAcknowledged((index % 3) + 1);
    const leader = await leaderOf('cut');
    const others = [1, 2, 3].filter((index) => index !== leader);
    await cluster.isolate(leader);
    // The majority side: a new leader takes writes.
    const retries = await ledger.appendUntilAcknowledged(others[0]!);
    for (let index = 0; index < 10; index++) await ledger.appendUntilAcknowledged(others[index % 2]!);
    // The cut-off node never acknowledges: it cannot reach a majority.
    for (let index = 0; index < 3; index++) expect((await ledger.append(leader))?.status).toBe(503);
    await cluster.heal();
    await ledger.appendUntilAcknowledged(leader);
    for (const index of [1, 2, 3]) await ledger.check(index);
    console.log(`leader cut off: ${retries} appends of 50 ms apart answered 503 before the majority side's new leader took one`);
  }, 180_000);

  test('the leader paused with SIGSTOP: the others go on; woken, it answers 503 at once, then follows; no seqnum twice', async () => {
    const ledger = new Ledger(cluster, bucket, 'pause');
    for (let index = 0; index < 10; index++) await ledger.appendUntilAcknowledged((index % 3) + 1);
    const leader = await leaderOf('pause');
    const others = [1, 2, 3].filter((index) => index !== leader);
    await cluster.pause(leader);
    await ledger.appendUntilAcknowledged(others[0]!);
    for (let index = 0; index < 10; index++) await ledger.appendUntilAcknowledged(others[index % 2]!);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    await cluster.resume(leader);
    // Every answer is 201 (it already follows and forwards) or 503 (it knows its lease is gone): never a stale success.
    for (let index = 0; index < 5; index++) await ledger.append(leader);
    await ledger.appendUntilAcknowledged(leader);
    for (const index of [1, 2, 3]) await ledger.check(index);
  }, 180_000);
});
