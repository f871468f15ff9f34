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
 * seqnum; a 503 append appears at most once (the Ledger below).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FaultCluster, waitFor, type Answer } from './netns.js';

const bucket = 'rep';

class Ledger {
  private next = 0;
  readonly acknowledged = new Map<number, number>();
  readonly unknown = new Set<number>();

  constructor(
    private readonly cluster: FaultCluster,
    private readonly stream: string,
  ) {}

  async append(via: number): Promise<Answer> {
    const n = ++this.next;
    const answer = await this.cluster.call(via, 'POST', `/streams/${bucket}/${this.stream}`, { n });
    if (answer.status === 201) {
      const seq = answer.body.meta.id as number;
      expect(this.acknowledged.has(seq), `seq ${seq} acknowledged twice`).toBe(false);
      this.acknowledged.set(seq, n);
    } else {
      expect(answer.status, `append via node ${via}: ${JSON.stringify(answer.body)}`).toBe(503);
      expect(answer.body.type).toBe('unavailable');
      this.unknown.add(n);
    }
    return answer;
  }

  /** Appends through `via` until one is acknowledged (bounded). */
  async appendUntilAcknowledged(via: number): Promise<number> {
    for (let attempt = 0; attempt < 300; attempt++) {
      const answer = await this.append(via);
      if (answer.status === 201) return attempt;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no append through node ${via} was acknowledged`);
  }

  async check(via: number): Promise<void> {
    const read = await waitFor(`a read through node ${via}`, 30_000, async () => {
      const answer = await this.cluster.call(via, 'GET', `/streams/${bucket}/${this.stream}?limit=10000&from=1`);
      return answer.status === 200 ? answer : undefined;
    });
    const entries = read.body as { meta: { id: number }; data: { n: number } }[];
    const seen = new Set<number>();
    entries.forEach((entry, index) => {
      expect(entry.meta.id, 'seqnums are gap-free from 1').toBe(index + 1);
      expect(seen.has(entry.data.n), `append ${entry.data.n} appears twice`).toBe(false);
      seen.add(entry.data.n);
      const expected = this.acknowledged.get(entry.meta.id);
      if (expected !== undefined) expect(entry.data.n, `seq ${entry.meta.id}`).toBe(expected);
      else expect(this.unknown.has(entry.data.n), `seq ${entry.meta.id}: append ${entry.data.n} was acknowledged elsewhere or never sent`).toBe(true);
    });
    for (const [seq, n] of this.acknowledged) expect(entries[seq - 1]?.data.n, `acknowledged append ${n} at seq ${seq} is missing`).toBe(n);
  }
}

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
    const ledger = new Ledger(cluster, 'cut');
    for (let index = 0; index < 10; index++) await ledger.appendUntilAcknowledged((index % 3) + 1);
    const leader = await leaderOf('cut');
    const others = [1, 2, 3].filter((index) => index !== leader);
    await cluster.isolate(leader);
    // The majority side: a new leader takes writes.
    const retries = await ledger.appendUntilAcknowledged(others[0]!);
    for (let index = 0; index < 10; index++) await ledger.appendUntilAcknowledged(others[index % 2]!);
    // The cut-off node never acknowledges: it cannot reach a majority.
    for (let index = 0; index < 3; index++) expect((await ledger.append(leader)).status).toBe(503);
    await cluster.heal();
    await ledger.appendUntilAcknowledged(leader);
    for (const index of [1, 2, 3]) await ledger.check(index);
    console.log(`leader cut off: ${retries} appends of 50 ms apart answered 503 before the majority side's new leader took one`);
  }, 180_000);

  test('the leader paused with SIGSTOP: the others go on; woken, it answers 503 at once, then follows; no seqnum twice', async () => {
    const ledger = new Ledger(cluster, 'pause');
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
