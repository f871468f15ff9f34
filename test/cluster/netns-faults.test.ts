/**
 * Real node processes under real faults (DESIGN.md §9): three nodes form a
 * cluster through the admin API (join, plan, commit), then links are cut
 * with iptables inside the test's own network namespace (both ways, one
 * way; DROP and REJECT), a node is paused with SIGSTOP and one is killed
 * with SIGKILL and started again. These run with request.n = 1, one copy
 * of each partition, so a node that cannot be reached makes exactly its own
 * partitions unavailable: 503 `unavailable` naming it, everything else
 * served, and once it is back every acknowledged append reads back at its
 * seqnum (the apitest-style check: appends of unknown outcome, a 503, may
 * appear at most once; nothing else may appear).
 *
 * Every request is held to the harness's bound (answerTimeoutMs: the
 * nodes' own request timeout plus a dial and slack): one that gets no
 * answer within it fails its test as a hang.
 *
 * Where no namespace can be made, the first suite's name says so and it
 * runs on the in-repo fault proxy instead; the second suite always runs on
 * the proxy, so both ways of making faults are shown to work.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { clusterRequestTimeoutMs, faultPlan, FaultCluster, LinkAction, waitFor, type Answer } from './netns.js';

const bucket = 'faults';
const streamsPerNode = 3;
/** Bound on how long a healed link or a restarted node takes to serve again (reconnect backoff is at most 2 s). */
const backWithinMs = 30_000;

interface Payload {
  readonly stream: string;
  readonly n: number;
}

/**
 * What was appended and what was answered: the checker. An append answered
 * 201 is acknowledged at its seqnum; one answered 503 has an unknown outcome
 * (the request may have run on the node before the answer was lost).
 */
class Ledger {
  private next = 0;
  private readonly acknowledged = new Map<string, Map<number, number>>();
  private readonly unknown = new Map<string, Set<number>>();

  constructor(private readonly cluster: FaultCluster) {}

  /** Appends through node `via`; every answer must be 201 or 503 `unavailable` (never a 500, never another error). */
  async append(via: number, stream: string): Promise<Answer> {
    const n = ++this.next;
    const answer = await this.cluster.call(via, 'POST', `/streams/${bucket}/${stream}`, { stream, n } satisfies Payload);
    if (answer.status === 201) {
      const seq = answer.body.meta.id as number;
      const acknowledged = this.acknowledged.get(stream) ?? new Map<number, number>();
      expect(acknowledged.has(seq), `${stream}: seq ${seq} acknowledged twice`).toBe(false);
      acknowledged.set(seq, n);
      this.acknowledged.set(stream, acknowledged);
    } else {
      expect(answer.status, `append to ${stream} via node ${via}: ${JSON.stringify(answer.body)}`).toBe(503);
      expect(answer.body.type).toBe('unavailable');
      const unknown = this.unknown.get(stream) ?? new Set<number>();
      unknown.add(n);
      this.unknown.set(stream, unknown);
    }
    return answer;
  }

  acknowledgedCount(): number {
    return [...this.acknowledged.values()].reduce((sum, entries) => sum + entries.size, 0);
  }

  /** Reads every stream whole through node `via` and checks it against what was answered. */
  async check(via: number, streams: readonly string[]): Promise<void> {
    for (const stream of streams) {
      const read = await this.cluster.call(via, 'GET', `/streams/${bucket}/${stream}?limit=10000&from=1`);
      expect(read.status, `read ${stream} via node ${via}: ${JSON.stringify(read.body)}`).toBe(200);
      const entries = read.body as { meta: { id: number }; data: Payload }[];
      const acknowledged = this.acknowledged.get(stream) ?? new Map<number, number>();
      const unknown = this.unknown.get(stream) ?? new Set<number>();
      const seen = new Set<number>();
      entries.forEach((entry, index) => {
        expect(entry.meta.id, `${stream}: seqnums are gap-free from 1`).toBe(index + 1);
        expect(entry.data.stream, `${stream}: an entry of another stream`).toBe(stream);
        expect(seen.has(entry.data.n), `${stream}: append ${entry.data.n} appears twice`).toBe(false);
        seen.add(entry.data.n);
        const expected = acknowledged.get(entry.meta.id);
        if (expected !== undefined) expect(entry.data.n, `${stream} seq ${entry.meta.id}`).toBe(expected);
        else expect(unknown.has(entry.data.n), `${stream} seq ${entry.meta.id}: append ${entry.data.n} was never sent, or was acknowledged elsewhere`).toBe(true);
      });
      for (const [seq, n] of acknowledged) expect(entries[seq - 1]?.data.n, `${stream}: acknowledged append ${n} at seq ${seq} is missing`).toBe(n);
    }
  }
}

function expectUnavailableNaming(answer: Answer, node: string, what: string): void {
  expect(answer.status, `${what}: ${JSON.stringify(answer.body)}`).toBe(503);
  expect(answer.body.type).toBe('unavailable');
  expect(answer.body.reason, what).toContain(node);
}

/** A cluster of three, with `streamsPerNode` streams on each node's partitions. */
function threeNodes(faults: 'auto' | 'proxy'): { cluster: FaultCluster; ledger: () => Ledger; streamsOf: (index: number) => string[]; all: () => string[] } {
  // One copy per partition: a dead owner makes its partitions unavailable (request.n = 3 under the same faults: netns-replication*.test.ts).
  const cluster = new FaultCluster({ faults, flags: { 'request.n': '1' } });
  let ledger: Ledger | undefined;
  const streams = new Map<number, string[]>();
  beforeAll(async () => {
    await cluster.open();
    await Promise.all([1, 2, 3].map((index) => cluster.start(index)));
    await cluster.joinAll([2, 3]);
    const { ownerOf } = await cluster.owners();
    for (let k = 0; k < 200 && [1, 2, 3].some((index) => (streams.get(index)?.length ?? 0) < streamsPerNode); k++) {
      const owner = ownerOf(bucket, `s${k}`);
      const list = streams.get(owner) ?? [];
      if (list.length < streamsPerNode) list.push(`s${k}`);
      streams.set(owner, list);
    }
    for (const index of [1, 2, 3]) expect(streams.get(index), `streams on node ${index}`).toHaveLength(streamsPerNode);
    ledger = new Ledger(cluster);
    // Something on every stream before any fault, through every node.
    for (const [k, stream] of [...streams.values()].flat().entries()) expect((await ledger.append((k % 3) + 1, stream)).status).toBe(201);
  }, 90_000);
  afterEach(async () => {
    // Whatever a test did or failed to undo: no fault outlives it.
    for (const index of [1, 2, 3]) if (cluster.running(index)) await cluster.resume(index);
    if (cluster.opened) await cluster.heal();
  });
  afterAll(async () => {
    await cluster.close();
  }, 60_000);
  return {
    cluster,
    ledger: () => ledger!,
    streamsOf: (index) => streams.get(index)!,
    all: () => [...streams.values()].flat(),
  };
}

/** Appends once to each stream of `streams` through each node of `via`, all at once. */
function appendEach(ledger: Ledger, via: readonly number[], streams: readonly string[]): Promise<{ via: number; stream: string; answer: Answer }[]> {
  return Promise.all(via.flatMap((index) => streams.map(async (stream) => ({ via: index, stream, answer: await ledger.append(index, stream) }))));
}

async function waitUntilServed(cluster: FaultCluster, ledger: Ledger, via: number, stream: string): Promise<void> {
  await waitFor(`${stream} to be served through node ${via} again`, backWithinMs, async () => ((await ledger.append(via, stream)).status === 201 ? true : undefined), 250);
}

async function checkEverywhere(ledger: Ledger, streams: readonly string[]): Promise<void> {
  for (const via of [1, 2, 3]) await ledger.check(via, streams);
}

/** Node 3 cut off from 1 and 2, both ways, silently; then healed. */
async function cutOffBothWays(setup: ReturnType<typeof threeNodes>): Promise<void> {
  const { cluster, streamsOf, all } = setup;
  const ledger = setup.ledger();
  const name3 = cluster.nameOf(3);
  await cluster.isolate(3, LinkAction.drop);
  // Each answer comes within the harness's bound (the node's request timeout, or its failure detector, ends the wait).
  const cutOff = await appendEach(ledger, [1, 2], streamsOf(3));
  for (const { via, stream, answer } of cutOff) expectUnavailableNaming(answer, name3, `${stream} (node 3) via node ${via}`);
  const elsewhere = await appendEach(ledger, [1, 2], [...streamsOf(1), ...streamsOf(2)]);
  for (const { via, stream, answer } of elsewhere) expect(answer.status, `${stream} via node ${via}: ${JSON.stringify(answer.body)}`).toBe(201);
  // Node 3 itself, which the test still reaches, serves its own partitions and names node 1 for node 1's.
  for (const { stream, answer } of await appendEach(ledger, [3], streamsOf(3))) expect(answer.status, `${stream} via node 3`).toBe(201);
  for (const { stream, answer } of await appendEach(ledger, [3], streamsOf(1))) expectUnavailableNaming(answer, cluster.nameOf(1), `${stream} (node 1) via node 3`);
  await cluster.heal();
  for (const via of [1, 2]) await waitUntilServed(cluster, ledger, via, streamsOf(3)[0]!);
  await waitUntilServed(cluster, ledger, 3, streamsOf(1)[0]!);
  await checkEverywhere(ledger, all());
}

/** Node 1 → node 3 dropped, node 3 → node 1 open; then healed. */
async function cutOneWay(setup: ReturnType<typeof threeNodes>): Promise<void> {
  const { cluster, streamsOf, all } = setup;
  const ledger = setup.ledger();
  await cluster.cutOneWay(1, 3, LinkAction.drop);
  // Two rounds: the first meets the connections as they were, the second what the nodes made of the cut.
  for (let round = 1; round <= 2; round++) {
    const [throughCut, around, backward] = await Promise.all([
      appendEach(ledger, [1], streamsOf(3)),
      appendEach(ledger, [2], streamsOf(3)),
      appendEach(ledger, [3], streamsOf(1)),
    ]);
    // Through the cut: an answer (the ledger accepts only 201 or 503 unavailable), and a 503 names node 3.
    for (const { stream, answer } of throughCut) if (answer.status === 503) expect(answer.body.reason, `round ${round}, ${stream} via node 1`).toContain(cluster.nameOf(3));
    for (const { stream, answer } of backward) if (answer.status === 503) expect(answer.body.reason, `round ${round}, ${stream} via node 3`).toContain(cluster.nameOf(1));
    // Around it, node 2 to node 3, nothing is cut.
    for (const { stream, answer } of around) expect(answer.status, `round ${round}, ${stream} via node 2: ${JSON.stringify(answer.body)}`).toBe(201);
    for (const via of [1, 2, 3]) expect((await ledger.append(via, streamsOf(2)[0]!)).status, `round ${round}, node 2's stream via node ${via}`).toBe(201);
  }
  await cluster.heal();
  await waitUntilServed(cluster, ledger, 1, streamsOf(3)[0]!);
  await waitUntilServed(cluster, ledger, 3, streamsOf(1)[0]!);
  await checkEverywhere(ledger, all());
}

const plan = faultPlan('auto');

describe(`faults between real nodes (${plan.description})`, () => {
  const setup = threeNodes('auto');
  const { cluster, streamsOf, all } = setup;

  test('node 3 cut off both ways (DROP): its streams answer 503 unavailable naming it, the others keep working; healed, every acknowledged append reads back', async () => {
    await cutOffBothWays(setup);
  }, 90_000);

  test('a one-way cut (node 1 → node 3 dropped, node 3 → node 1 open): every request answers within the bound, 201 or 503 unavailable, never a wrong answer; node 2 still reaches node 3', async () => {
    await cutOneWay(setup);
  }, 90_000);

  test('node 3 cut off with REJECT: the resets make its streams answer 503 naming it before the request timeout, where DROP waits for it', async () => {
    const ledger = setup.ledger();
    await cluster.isolate(3, LinkAction.reject);
    const cutOff = await appendEach(ledger, [1, 2], streamsOf(3));
    for (const { via, stream, answer } of cutOff) {
      expectUnavailableNaming(answer, cluster.nameOf(3), `${stream} (node 3) via node ${via}`);
      expect(answer.elapsedMs, `${stream} via node ${via} answered from a reset, not a timeout: ${answer.body.reason}`).toBeLessThan(clusterRequestTimeoutMs);
    }
    for (const { stream, answer } of await appendEach(ledger, [1, 2], [...streamsOf(1), ...streamsOf(2)])) expect(answer.status, stream).toBe(201);
    await cluster.heal();
    for (const via of [1, 2]) await waitUntilServed(cluster, ledger, via, streamsOf(3)[0]!);
    await checkEverywhere(ledger, all());
  }, 90_000);

  test('node 2 paused (SIGSTOP): its streams answer 503 naming it while it is stopped, the others keep working; continued (SIGCONT), nothing is lost', async () => {
    const ledger = setup.ledger();
    await cluster.pause(2);
    try {
      const stopped = await appendEach(ledger, [1, 3], streamsOf(2));
      for (const { via, stream, answer } of stopped) expectUnavailableNaming(answer, cluster.nameOf(2), `${stream} (node 2) via node ${via}`);
      for (const { via, stream, answer } of await appendEach(ledger, [1, 3], [...streamsOf(1), ...streamsOf(3)])) expect(answer.status, `${stream} via node ${via}`).toBe(201);
    } finally {
      await cluster.resume(2);
    }
    for (const via of [1, 3]) await waitUntilServed(cluster, ledger, via, streamsOf(2)[0]!);
    await checkEverywhere(ledger, all());
  }, 90_000);

  test('node 3 killed (SIGKILL) and started again on its data folder and address: every append it acknowledged is back', async () => {
    const ledger = setup.ledger();
    const before = { httpPort: cluster.node(3).httpPort, clusterPort: cluster.node(3).clusterPort };
    for (const { stream, answer } of await appendEach(ledger, [1, 2, 3], streamsOf(3))) expect(answer.status, stream).toBe(201);
    await cluster.kill(3);
    for (const { via, stream, answer } of await appendEach(ledger, [1, 2], streamsOf(3))) expectUnavailableNaming(answer, cluster.nameOf(3), `${stream} (node 3, killed) via node ${via}`);
    await cluster.start(3);
    expect({ httpPort: cluster.node(3).httpPort, clusterPort: cluster.node(3).clusterPort }).toEqual(before);
    for (const via of [1, 2]) await waitUntilServed(cluster, ledger, via, streamsOf(3)[0]!);
    await checkEverywhere(ledger, all());
    expect(ledger.acknowledgedCount()).toBeGreaterThan(0);
  }, 90_000);

  test.runIf(cluster.mode === 'netns')('random loss (namespace only: iptables statistic, 20% each way between every pair): every answer is 201 or 503 unavailable; healed, every acknowledged append reads back', async () => {
    const ledger = setup.ledger();
    for (const [a, b] of [[1, 2], [1, 3], [2, 3]] as const) await cluster.loss(a, b, 0.2);
    for (let round = 0; round < 3; round++) await appendEach(ledger, [1, 2, 3], all());
    await cluster.heal();
    for (const via of [1, 2, 3]) for (const index of [1, 2, 3]) if (index !== via) await waitUntilServed(cluster, ledger, via, streamsOf(index)[0]!);
    await checkEverywhere(ledger, all());
  }, 90_000);
});

describe(`the fault proxy, forced (the fallback where no namespace can be made)`, () => {
  const setup = threeNodes('proxy');

  test('node 3 cut off both ways (dropped by the proxy): 503 naming it for its streams, the others keep working; healed, every acknowledged append reads back', async () => {
    expect(setup.cluster.mode).toBe('proxy');
    await cutOffBothWays(setup);
  }, 90_000);

  test('a one-way cut by the proxy (node 1 → node 3): answers within the bound, 201 or 503 unavailable; node 2 still reaches node 3', async () => {
    await cutOneWay(setup);
  }, 90_000);
});
