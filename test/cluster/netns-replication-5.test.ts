/**
 * request.n = 3 on five real node processes under real faults (DESIGN
 * §7b, §9): every partition is a group of three of the five, so two nodes
 * of every stream are outside its group and only forward. Links are cut
 * with iptables in the test's own network namespace (netns.ts), nodes are
 * paused with SIGSTOP and killed with SIGKILL.
 *
 * - A stream's leader split away with one node outside its group, both
 *   ways, DROP and then REJECT, while writers go through every node: the
 *   leader's side acknowledges nothing, the other side elects and goes on
 *   through each of its nodes; healed, every node reads the same log and
 *   the replicas converge. Once more with request.n = 5, the leader's side
 *   then holding two of five replicas.
 * - One-way cuts: the leader hears nothing (it can still send), or says
 *   nothing (it can still hear). Whoever ends up leading, every answer is
 *   201 or 503 `unavailable` and the log checks out once healed.
 * - The leader paused for ten seconds with appends waiting in its socket:
 *   the others elect; woken, it never gives a stale 201, then follows.
 * - kill -9 of a leader under load from four writers over three streams,
 *   with a Server-Sent Events listener (through the killed node: it
 *   reconnects and resumes) and a long-poll listener: writes resume (the
 *   gap is logged, bounded generously), the node restarted converges, the
 *   long-poll listener and the SSE one (which reconnects) each saw every
 *   entry once, in order.
 *
 * The checks are the Ledger's (ledger.ts): every answer 201 or 503
 * `unavailable`, no seqnum acknowledged twice, every acknowledged append at
 * its seqnum, appends of unknown outcome at most once, real-time order.
 * Timings are logged, never asserted beyond generous bounds; every loop is
 * bounded in count and time.
 *
 * Bugs these tests found: after the cluster grew, a node outside a group
 * routed the group's requests to a stale replica of its own, and a leader
 * cut off held an append it took within its last lease until the cut
 * healed (both fixed; the two tests below say so); joining nodes before
 * their own one-node groups had leaders could wedge the ring (fixed: a
 * joining node lets its groups of one go, and only a group's first node
 * starts with voters; formCluster no longer waits for them); one stream of
 * an SSE listener could stall after a kill (fixed with the first: it was
 * subscribed through a stale copy; the SSE listener is now held to every
 * entry).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { Ledger, listenedProblems, type SeenEntry } from './ledger.js';
import { answerTimeoutMs, faultPlan, FaultCluster, LinkAction, waitFor, type Answer } from './netns.js';

const bucket = 'rep5';
const nodes = [1, 2, 3, 4, 5] as const;
/** Rounds one writer makes at most, whatever the phase. */
const writerRoundsMax = 5_000;
/** Connections or polls one listener makes at most. */
const listenerRoundsMax = 2_000;
/** A bound on how long writes take to resume after a leader is lost: generous, never a target (DESIGN's is 2 s). */
const resumeWithinMs = 30_000;
const pauseMs = 10_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// The cluster and its groups

/** Attempts at forming the cluster: joining four nodes at once sometimes leaves the ring unsettled (see formCluster). */
const formAttemptsMax = 2;

/** The cluster a describe block runs on, once its beforeAll formed it. */
class FiveNodes {
  private formed: FaultCluster | undefined;
  /** What writes and reads through every node answered right after the cluster grew, before the nodes were restarted. */
  grown: GrownSample[] = [];

  get cluster(): FaultCluster {
    if (this.formed === undefined) throw new Error('the cluster was not formed');
    return this.formed;
  }

  set cluster(cluster: FaultCluster) {
    this.formed = cluster;
  }

  get opened(): boolean {
    return this.formed?.opened === true;
  }
}

/**
 * Five nodes with request.n = `n`, every partition's group settled, then
 * (with n < 5) each node restarted once; faults undone after each test.
 *
 * Why the restart: a node keeps a replica of every group it was in, or was
 * a learner of, while the cluster grew from one node to five, and routes
 * the partition's requests to that replica, which no leader talks to any
 * more: through it writes answer 503 for good and reads can hang (the
 * first test below shows it, marked failing). A restarted node opens only
 * the groups it is in. With n = 5 every node is in every group.
 */
function fiveNodes(n: number): FiveNodes {
  const setup = new FiveNodes();
  beforeAll(async () => {
    setup.cluster = await formCluster(n);
    if (n >= nodes.length) return;
    setup.grown = await sampleEveryNode(setup.cluster);
  }, 240_000);
  afterEach(async () => {
    // Whatever a test did or failed to undo: no fault outlives it.
    if (!setup.opened) return;
    const cluster = setup.cluster;
    await cluster.heal();
    for (const index of nodes) {
      if (cluster.running(index)) await cluster.resume(index);
      else await cluster.start(index);
    }
  }, 60_000);
  afterAll(async () => {
    if (setup.opened) await setup.cluster.close();
  }, 60_000);
  return setup;
}

/**
 * Starts five nodes, waits until each leads its own one-node groups, joins
 * four to the first at once and waits for every group. Joined sooner (as
 * FaultCluster.joinAll alone does), about one formation in three never
 * settles: transfers stay pending, a joined node leading a partition at
 * epoch 1 with all five as voters while the first node, which led that
 * epoch alone, follows it with its own one-node group. Should it happen
 * anyway, its rows are logged and the cluster is made once more.
 */
async function formCluster(n: number): Promise<FaultCluster> {
  for (let attempt = 1; ; attempt++) {
    const cluster = new FaultCluster({ flags: { 'request.n': String(n) } });
    try {
      await cluster.open();
      await Promise.all(nodes.map((index) => cluster.start(index)));
      await cluster.joinAll([2, 3, 4, 5], 45_000);
      await groupsSettled(cluster, n);
      return cluster;
    } catch (error) {
      const state = await unsettledState(cluster).catch((stateError: unknown) => `(its state could not be read: ${(stateError as Error).message})`);
      await cluster.close();
      if (attempt >= formAttemptsMax) throw error;
      console.warn(`forming the cluster failed (${(error as Error).message}); made again from scratch. ${state}`);
    }
  }
}

/** Pending transfers and the replica rows of the first three pending partitions, for a failure message. */
async function unsettledState(cluster: FaultCluster): Promise<string> {
  const ring = await cluster.admin(1, 'GET', 'ring');
  const pending = (ring.body?.pending ?? []) as { partition: number; source: string; target: string }[];
  const answer = await partitionRows(cluster, 1);
  const rows = pending.slice(0, 3).map(({ partition }) => {
    const replicas = (answer?.rows ?? []).filter((row) => row.partition === partition);
    return `partition ${partition}: ${replicas.map((row) => `${row.node} ${row.role} epoch ${row.epoch} leader ${row.leader} voters [${row.voters.join(' ')}] op ${row.lastOp} commit ${row.commit}`).join('; ')}`;
  });
  return `${pending.length} transfers pending; ${rows.join(' | ')}`;
}

interface GrownSample {
  readonly stream: string;
  readonly via: number;
  readonly write: string;
  readonly read: string;
}

/** Writes to and reads six streams through every node, each retried for a few seconds; what each answered last ('201', '503 ...', 'no answer'). */
async function sampleEveryNode(cluster: FaultCluster): Promise<GrownSample[]> {
  const token = await cluster.login();
  const headers = { 'x-session': token };
  const attempt = async (request: () => Promise<Answer>, success: number): Promise<string> => {
    let outcome = '';
    for (let round = 0; round < 3; round++) {
      try {
        const answer = await request();
        if (answer.status === success) return String(success);
        outcome = `${answer.status} ${JSON.stringify(answer.body)}`;
      } catch {
        outcome = 'no answer';
      }
      await sleep(1_000);
    }
    return outcome;
  };
  const streams = Array.from({ length: 6 }, (_, index) => `grown-${index}`);
  return Promise.all(
    streams.flatMap((stream) =>
      nodes.map(async (via) => {
        const path = `/streams/${bucket}/${stream}`;
        const write = await attempt(() => cluster.http(via, 'POST', path, { headers, body: { n: via }, timeoutMs: 3_000 }), 201);
        const read = await attempt(() => cluster.http(via, 'GET', `${path}?limit=10`, { headers, timeoutMs: 3_000 }), 200);
        return { stream, via, write, read };
      }),
    ),
  );
}

interface PartitionRow {
  readonly partition: number;
  readonly node: string;
  readonly role: string;
  readonly epoch: number;
  readonly leader: string | null;
  readonly voters: string[];
  readonly old: string[] | null;
  readonly lastOp: number;
  readonly commit: number;
  readonly applied: number;
  readonly recovering: boolean;
}

async function partitionRows(cluster: FaultCluster, via: number): Promise<{ rows: PartitionRow[]; unreachable: string[] } | undefined> {
  const answer = await cluster.admin(via, 'GET', 'partitions');
  return answer.status === 200 ? (answer.body as { rows: PartitionRow[]; unreachable: string[] }) : undefined;
}

/** The row of a partition's leader, as that leader reports it. */
function leaderRow(rows: readonly PartitionRow[], partition: number): PartitionRow | undefined {
  return rows.find((row) => row.partition === partition && row.role === 'leader' && row.leader === row.node);
}

/** Waits until every partition has a leader with `n` voters and no group change under way. */
async function groupsSettled(cluster: FaultCluster, n: number): Promise<void> {
  const { size } = await cluster.owners();
  await waitFor(`every partition's group of ${n} to have a leader`, 120_000, async () => {
    const answer = await partitionRows(cluster, 1);
    if (answer === undefined || answer.unreachable.length > 0) return undefined;
    for (let partition = 0; partition < size; partition++) {
      const row = leaderRow(answer.rows, partition);
      if (row === undefined || row.voters.length !== n || row.old !== null) return undefined;
    }
    return true;
  }, 250);
}

function indexOf(cluster: FaultCluster, name: string): number {
  const index = nodes.find((candidate) => cluster.nameOf(candidate) === name);
  if (index === undefined) throw new Error(`${name} is none of the test's nodes`);
  return index;
}

interface Group {
  readonly partition: number;
  readonly epoch: number;
  readonly leader: number;
  readonly members: number[];
}

/** A written stream's partition, its leader and its voters, as node `via` and the leader it finds report them. */
async function groupOf(cluster: FaultCluster, stream: string, via = 1): Promise<Group> {
  return waitFor(`the group of ${stream} as node ${via} sees it`, 30_000, async () => {
    const info = await cluster.call(via, 'GET', `/streams/${bucket}/${stream}/info`);
    if (info.status !== 200) return undefined;
    const answer = await partitionRows(cluster, via);
    const row = answer === undefined ? undefined : leaderRow(answer.rows, info.body.partition as number);
    if (row === undefined || row.node !== info.body.node) return undefined;
    return { partition: row.partition, epoch: row.epoch, leader: indexOf(cluster, row.node), members: row.voters.map((name) => indexOf(cluster, name)) };
  }, 200);
}

/** Waits until every voter of the partition reports the leader's epoch and log, all of it committed and applied. */
async function converged(cluster: FaultCluster, partition: number): Promise<string> {
  return waitFor(`the replicas of partition ${partition} to converge`, 30_000, async () => {
    const answer = await partitionRows(cluster, 1);
    if (answer === undefined || answer.unreachable.length > 0) return undefined;
    const leader = leaderRow(answer.rows, partition);
    if (leader === undefined) return undefined;
    const voters = answer.rows.filter((row) => row.partition === partition && leader.voters.includes(row.node));
    if (voters.length !== leader.voters.length) return undefined;
    const same = voters.every((row) => row.epoch === leader.epoch && row.lastOp === leader.lastOp && row.commit === leader.lastOp && row.applied === leader.lastOp && !row.recovering);
    return same ? `${voters.length} replicas at op ${leader.lastOp} of epoch ${leader.epoch}` : undefined;
  }, 250);
}

/** Appends through every node until each has one acknowledged (each is back and routes to the leader), then reads the log through every node. */
async function settleAndCheck(ledger: Ledger): Promise<SeenEntry[]> {
  for (const index of nodes) await ledger.appendUntilAcknowledged(index);
  let log: SeenEntry[] = [];
  for (const index of nodes) log = await ledger.check(index);
  return log;
}

// ---------------------------------------------------------------------------
// Load: concurrent writers

interface Sent {
  readonly via: number;
  readonly stream: string;
  /** Undefined: the answer was lost with a killed node. */
  readonly status: number | undefined;
  readonly sentMs: number;
  readonly answeredMs: number;
}

/**
 * Writers appending concurrently, each to the ledgers in turn through the
 * node `via(writer, round)` picks (none: it waits), until stopped. A writer
 * whose check fails stops them all; finished() rethrows its error.
 */
class Load {
  readonly answers: Sent[] = [];
  /** Appends sent and not answered yet, by writer. */
  readonly outstanding = new Map<number, { via: number; sentMs: number }>();
  private stopping = false;
  private error: unknown;
  private readonly done: Promise<unknown>;

  constructor(
    private readonly ledgers: readonly Ledger[],
    writers: number,
    private readonly via: (writer: number, round: number) => number | undefined,
    private readonly pauseAfterMs = { acknowledged: 20, refused: 100 },
  ) {
    this.done = Promise.all(Array.from({ length: writers }, (_, writer) => this.write(writer)));
  }

  private async write(writer: number): Promise<void> {
    try {
      for (let round = 0; round < writerRoundsMax && !this.stopping; round++) {
        const via = this.via(writer, round);
        if (via === undefined) {
          await sleep(this.pauseAfterMs.refused);
          continue;
        }
        const ledger = this.ledgers[(writer + round) % this.ledgers.length]!;
        const sentMs = Date.now();
        this.outstanding.set(writer, { via, sentMs });
        const answer: Answer | undefined = await ledger.append(via);
        this.outstanding.delete(writer);
        this.answers.push({ via, stream: ledger.stream, status: answer?.status, sentMs, answeredMs: Date.now() });
        await sleep(answer?.status === 201 ? this.pauseAfterMs.acknowledged : this.pauseAfterMs.refused);
      }
    } catch (error) {
      this.error ??= error;
      this.stopping = true;
    }
  }

  acknowledgedVia(via: number, sinceMs = 0): number {
    return this.answers.filter((sent) => sent.via === via && sent.status === 201 && sent.answeredMs >= sinceMs).length;
  }

  acknowledged(sinceMs = 0): number {
    return this.answers.filter((sent) => sent.status === 201 && sent.answeredMs >= sinceMs).length;
  }

  /** Appends outstanding for longer than `ms` now. */
  heldLongerThan(ms: number): { via: number; heldMs: number }[] {
    const now = Date.now();
    return [...this.outstanding.values()].filter((sent) => now - sent.sentMs > ms).map((sent) => ({ via: sent.via, heldMs: now - sent.sentMs }));
  }

  /** Waits (within `timeoutMs`) until `done()` holds; a writer's failure ends the wait and is rethrown. */
  async until(what: string, timeoutMs: number, done: () => boolean): Promise<void> {
    await waitFor(what, timeoutMs, () => (this.error !== undefined || done() ? true : undefined), 100);
    if (this.error !== undefined) await this.stop();
  }

  /** Lets the writers go on for `ms` (a phase's length, never a check). */
  async runFor(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && this.error === undefined) await sleep(100);
    if (this.error !== undefined) await this.stop();
  }

  /** No writer sends another append; those in flight still get their answers (see finished()). */
  stopWriting(): void {
    this.stopping = true;
  }

  /** Every answer, once every writer has its last one; a writer's failure is rethrown. */
  async finished(): Promise<Sent[]> {
    await this.done;
    if (this.error !== undefined) throw this.error;
    return this.answers;
  }

  stop(): Promise<Sent[]> {
    this.stopWriting();
    return this.finished();
  }
}

function countBy<T>(items: readonly T[], key: (item: T) => string): string {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return [...counts].map(([name, count]) => `${name}: ${count}`).join(', ');
}

// ---------------------------------------------------------------------------
// Listeners

/** What a listener saw, per stream, in the order it saw it; subscribed from seqnum 1 and resumed from the last seqnum seen + 1. */
abstract class Listener {
  readonly seen = new Map<string, SeenEntry[]>();
  /** Anything a correct server never sends: a truncation notice, an entry of another stream, an error status. */
  readonly problems: string[] = [];
  /** Connections or polls that ended without an answer (a node killed under them). */
  lost = 0;
  connections = 0;
  /** The node of the last connection or poll. */
  via: number | undefined;
  protected stopping = false;
  private done: Promise<void> | undefined;

  constructor(
    protected readonly cluster: FaultCluster,
    protected readonly streams: readonly string[],
    /** The node to listen through now (none: wait). */
    protected readonly pick: () => number | undefined,
  ) {
    for (const stream of streams) this.seen.set(stream, []);
  }

  start(): void {
    this.done = this.run().catch((error: unknown) => {
      this.problems.push(`the listener failed: ${(error as Error).message}`);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.interrupt();
    await this.done;
  }

  /** `s=bucket:stream:from` for every stream, each from after the last entry seen. */
  protected query(): string {
    return this.streams.map((stream) => `s=${bucket}:${stream}:${(this.seen.get(stream)!.at(-1)?.seq ?? 0) + 1}`).join('&');
  }

  protected receive(events: unknown): void {
    if (!Array.isArray(events)) {
      this.problems.push(`not an event array: ${JSON.stringify(events)}`);
      return;
    }
    for (const event of events as { meta: { id: number; bucket: string; stream: string }; data: { n: number } }[]) {
      const seen = event.meta.bucket === bucket ? this.seen.get(event.meta.stream) : undefined;
      if (seen === undefined) this.problems.push(`an event of a stream not listened to: ${JSON.stringify(event)}`);
      else seen.push({ seq: event.meta.id, n: event.data.n });
    }
  }

  protected abstract run(): Promise<void>;
  protected abstract interrupt(): void;
}

/** A Server-Sent Events listener: one long response; when its node goes, it reconnects through the next one picked. */
class SseListener extends Listener {
  private close: (() => void) | undefined;
  /** Why the server ended connections (its `event: close` reasons). */
  readonly closedBecause: string[] = [];

  protected async run(): Promise<void> {
    for (let round = 0; round < listenerRoundsMax && !this.stopping; round++) {
      const via = this.pick();
      if (via !== undefined) {
        try {
          await this.listenOnce(via);
        } catch {
          this.lost++;
        }
      }
      if (!this.stopping) await sleep(250);
    }
  }

  protected interrupt(): void {
    this.close?.();
  }

  private async listenOnce(via: number): Promise<void> {
    const token = await this.cluster.login();
    this.via = via;
    const { response, close } = await this.cluster.stream(via, `/listen?${this.query()}`, { accept: 'text/event-stream', 'x-session': token });
    this.close = close;
    this.connections++;
    if (this.stopping) close();
    await new Promise<void>((resolve) => {
      if (response.statusCode !== 200) this.problems.push(`listen through node ${via} answered ${response.statusCode}`);
      let buffer = '';
      response.setEncoding('utf8');
      response.on('data', (text: string) => {
        buffer += text;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          this.event(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      });
      // A connection lost with its node errors, then closes: both end this connection.
      response.on('error', () => undefined);
      response.once('close', () => resolve());
    });
    this.close = undefined;
  }

  /** One SSE event: `data:` lines (an event array, or a notice), `event:` and `id:` lines, `:` comments. */
  private event(block: string): void {
    const data = block
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => line.slice('data: '.length))
      .join('\n');
    if (data === '') return;
    const parsed = JSON.parse(data) as unknown;
    if (!Array.isArray(parsed) && (parsed as { type?: string }).type === 'closed') {
      this.closedBecause.push((parsed as { reason?: string }).reason ?? '');
      return;
    }
    this.receive(parsed);
  }
}

/** A long-poll listener: GET /listen answers 200 with what is there or 204 after its timeout; it asks again from after what it saw. */
class LongPollListener extends Listener {
  protected async run(): Promise<void> {
    const token = await this.cluster.login();
    for (let round = 0; round < listenerRoundsMax && !this.stopping; round++) {
      const via = this.pick();
      if (via === undefined) {
        await sleep(250);
        continue;
      }
      let answer: Answer;
      this.via = via;
      try {
        answer = await this.cluster.http(via, 'GET', `/listen?${this.query()}&timeout=2`, { headers: { 'x-session': token } });
      } catch {
        this.lost++;
        await sleep(250);
        continue;
      }
      this.connections++;
      if (answer.status === 200) this.receive(answer.body);
      else if (answer.status === 503 && answer.body?.type === 'unavailable') await sleep(250);
      else if (answer.status !== 204) this.problems.push(`long-poll through node ${via} answered ${answer.status} ${JSON.stringify(answer.body)}`);
    }
  }

  protected interrupt(): void {
    // A poll in flight ends within its own timeout (2 s).
  }
}

// ---------------------------------------------------------------------------
// The scenarios

/**
 * How long an append through a leader that was just cut off may wait for its
 * answer in the scenarios below. Such an append is answered 503 within 5 s
 * now (it used to be held until the cut healed); the writer still waits up
 * to this long, so that a regression shows as the test that asserts no
 * answer came past the harness's bound failing, not as a hang. Appends
 * through any other node must answer within the bound.
 */
const heldAnswerTimeoutMs = 120_000;

/** Appends held past the harness's bound by a leader cut off, in the scenarios so far (a test below asserts there are none). */
const heldPastBound: string[] = [];

/** Each answer within the harness's bound, unless it came through `exempt` (the old leader, see heldAnswerTimeoutMs). */
function expectAnsweredWithinBound(answers: readonly Sent[], exempt: number, what: string): void {
  const slow = answers.filter((sent) => sent.via !== exempt && sent.answeredMs - sent.sentMs > answerTimeoutMs);
  expect(slow.map((sent) => `via node ${sent.via}: ${sent.status} after ${sent.answeredMs - sent.sentMs} ms`), `${what}: answers past the harness's bound`).toEqual([]);
}

/**
 * The leader of a stream and one other node (outside the group with n = 3,
 * a second member with n = 5: never a majority of the group) split from the
 * other three, both ways, with `action`; writers through every node from the
 * moment of the split. `holdMs`: the split lasts at least this long, so that
 * an append the leader holds shows as held past the harness's bound.
 */
async function leaderSplitAway(cluster: FaultCluster, n: number, action: LinkAction, holdMs = 0): Promise<void> {
  const ledger = new Ledger(cluster, bucket, `split-${action}-n${n}`, { answerTimeoutMs: heldAnswerTimeoutMs });
  for (const index of nodes) await ledger.appendUntilAcknowledged(index);
  const group = await groupOf(cluster, ledger.stream);
  expect(group.members, 'the group').toHaveLength(n);
  const outsiders = nodes.filter((index) => !group.members.includes(index));
  const companion = n === 5 ? group.members.find((index) => index !== group.leader)! : outsiders[0]!;
  const minority = [group.leader, companion];
  const majority = nodes.filter((index) => !minority.includes(index));
  // One writer through each node, already writing when the split lands, and one more through the old leader once the other side has a new one.
  let elected = false;
  const load = new Load([ledger], nodes.length + 1, (writer) => (writer < nodes.length ? nodes[writer] : elected ? group.leader : undefined));
  await load.until('appends acknowledged through every node before the split', 30_000, () => nodes.every((index) => load.acknowledgedVia(index) >= 1));
  await cluster.split(minority, action);
  const splitMs = Date.now();
  await load.until('every node of the majority side to have three appends acknowledged', 60_000, () => majority.every((index) => load.acknowledgedVia(index, splitMs) >= 3));
  elected = true;
  await load.until(`node ${companion}, with the leader, to answer an append sent after the split`, 60_000, () => load.answers.some((sent) => sent.via === companion && sent.sentMs >= splitMs));
  const newGroup = await groupOf(cluster, ledger.stream, majority[0]);
  await load.runFor(Math.max(2_000, splitMs + holdMs - Date.now()));
  load.stopWriting();
  const held = load.heldLongerThan(answerTimeoutMs);
  heldPastBound.push(...held.map(({ via, heldMs }) => `split (${action}, n = ${n}): an append through node ${via} (the old leader: node ${group.leader}) held ${heldMs} ms`));
  // Everything but what the old leader holds is answered while split; then heal, and the held appends are answered too.
  await waitFor('the writers to stop', answerTimeoutMs + 5_000, () => ([...load.outstanding.values()].every((sent) => sent.via === group.leader) ? true : undefined));
  const healMs = Date.now();
  await cluster.heal();
  const answers = await load.finished();
  // The leader's side cannot reach a majority of the group: it acknowledges nothing sent once the split is in place.
  const minorityAnswers = answers.filter((sent) => minority.includes(sent.via) && sent.sentMs >= splitMs && sent.answeredMs < healMs);
  expect(minorityAnswers.filter((sent) => sent.status !== 503).map((sent) => `via node ${sent.via}: ${sent.status}`), "the leader's side answers 503 to every write").toEqual([]);
  // The old leader's writers get the longer allowance (see heldAnswerTimeoutMs); its companion must answer within the bound.
  expect(minorityAnswers.filter((sent) => sent.via === companion).length, `node ${companion}, with the leader, answered`).toBeGreaterThan(0);
  expectAnsweredWithinBound(answers, group.leader, `split (${action})`);
  expect(majority, `the new leader (node ${newGroup.leader}) is on the majority side`).toContain(newGroup.leader);
  expect(newGroup.epoch).toBeGreaterThan(group.epoch);
  await settleAndCheck(ledger);
  const replicas = await converged(cluster, group.partition);
  const firstMs = Math.min(...answers.filter((sent) => sent.status === 201 && sent.sentMs >= splitMs).map((sent) => sent.answeredMs));
  const lastBeforeMs = Math.max(...answers.filter((sent) => sent.status === 201 && sent.answeredMs < splitMs).map((sent) => sent.answeredMs));
  const slowest = Math.max(...minorityAnswers.map((sent) => sent.answeredMs - sent.sentMs));
  console.log(
    `split (${action}, n = ${n}): leader node ${group.leader} + node ${companion} | nodes ${majority.join(', ')}; writes acknowledged until ${splitMs - lastBeforeMs} ms before the split was in place, again ${firstMs - splitMs} ms after; ` +
      `new leader node ${newGroup.leader} (epoch ${group.epoch} -> ${newGroup.epoch}); the leader's side answered ${minorityAnswers.length} writes 503 while split (${minorityAnswers.filter((sent) => sent.via === group.leader).length} through the leader) (slowest ${slowest} ms); ` +
      `held by the old leader past ${answerTimeoutMs} ms: ${held.length === 0 ? 'none' : held.map((entry) => `${entry.heldMs} ms`).join(', ')}; ` +
      `answers by node/status: ${countBy(answers, (sent) => `n${sent.via}/${sent.status}`)}; healed: ${replicas}`,
  );
}

const oneWay = {
  deaf: 'the leader hears nothing from the others (what it sends still arrives)',
  mute: 'nothing the leader sends arrives (it still hears the others)',
} as const;

async function leaderCutOneWay(cluster: FaultCluster, direction: keyof typeof oneWay): Promise<void> {
  const ledger = new Ledger(cluster, bucket, `oneway-${direction}`, { answerTimeoutMs: heldAnswerTimeoutMs });
  for (const index of nodes) await ledger.appendUntilAcknowledged(index);
  const group = await groupOf(cluster, ledger.stream);
  const others = nodes.filter((index) => index !== group.leader);
  // Writers through every node, already writing when the cut lands.
  const load = new Load([ledger], nodes.length, (writer) => nodes[writer]);
  await load.until('appends acknowledged through every node before the cut', 30_000, () => nodes.every((index) => load.acknowledgedVia(index) >= 1));
  for (const other of others) {
    if (direction === 'deaf') await cluster.cutOneWay(other, group.leader, LinkAction.drop);
    else await cluster.cutOneWay(group.leader, other, LinkAction.drop);
  }
  const cutMs = Date.now();
  await load.runFor(10_000);
  load.stopWriting();
  // Whoever leads now, as a node other than the old leader finds it (the old leader may still believe it leads).
  const during = await groupOf(cluster, ledger.stream, others[0]).catch((error: unknown) => (error as Error).message);
  await waitFor('the writers to stop', answerTimeoutMs + 5_000, () => ([...load.outstanding.values()].every((sent) => sent.via === group.leader) ? true : undefined));
  const held = load.heldLongerThan(0);
  await cluster.heal();
  const answers = await load.finished();
  expectAnsweredWithinBound(answers, group.leader, `one-way cut (${direction})`);
  await settleAndCheck(ledger);
  const replicas = await converged(cluster, group.partition);
  console.log(
    `one-way cut (${direction}) of leader node ${group.leader}, epoch ${group.epoch}: during the cut ${typeof during === 'string' ? during : `node ${during.leader} led, epoch ${during.epoch}`}; ` +
      `first 201 sent after the cut came ${Math.min(...answers.filter((sent) => sent.status === 201 && sent.sentMs >= cutMs).map((sent) => sent.answeredMs)) - cutMs} ms after it; ` +
      `still held by the old leader at the heal: ${held.length === 0 ? 'none' : held.map((entry) => `${entry.heldMs} ms`).join(', ')}; answers by node/status: ${countBy(answers, (sent) => `n${sent.via}/${sent.status}`)}; healed: ${replicas}`,
  );
}

// ---------------------------------------------------------------------------

const plan = faultPlan();

describe(`request.n = 3 on five nodes under faults (${plan.description})`, () => {
  const setup = fiveNodes(3);

  // Found by this suite and fixed: a node outside a group sent the group's requests to a stale replica of its own.
  test('right after the cluster grew from one node to five, writes and reads through every node are served, the two outside each group included', () => {
    const refused = setup.grown.filter((sample) => sample.write !== '201' || sample.read !== '200');
    console.log(
      `after growing: ${refused.length} of ${setup.grown.length} (stream, node) pairs not served; writes ${countBy(setup.grown, (sample) => sample.write.slice(0, 3))}; ` +
        `reads ${countBy(setup.grown, (sample) => sample.read.slice(0, 9))}; e.g. ${refused.slice(0, 2).map((sample) => `${sample.stream} via node ${sample.via}: write ${sample.write}, read ${sample.read}`).join('; ')}`,
    );
    expect(refused).toEqual([]);
  });

  test(`the leader and a node outside its group split away (iptables DROP): that side answers 503, the other three elect and go on; healed, all agree`, async () => {
    await leaderSplitAway(setup.cluster, 3, LinkAction.drop, answerTimeoutMs + 2_000);
  }, 150_000);

  // Found by this suite and fixed: a leader cut off held an append it took within its last lease until the cut healed (now 503 after 5 s).
  test('an append the leader took just before it was split away is answered within the harness bound (503), not held until the cut heals (as the split above saw it)', () => {
    expect(heldPastBound).toEqual([]);
  });

  test('the same split with REJECT (connections refused at once rather than black-holed)', async () => {
    await leaderSplitAway(setup.cluster, 3, LinkAction.reject);
  }, 150_000);

  test.each(Object.entries(oneWay))('a one-way cut, %s: only 201 or 503 unavailable, no seqnum acknowledged twice; healed, all agree', async (direction) => {
    await leaderCutOneWay(setup.cluster, direction as keyof typeof oneWay);
  }, 150_000);

  test(`the leader paused (SIGSTOP) for ${pauseMs / 1000} s with appends waiting in its socket: the others elect and go on; woken, it never gives a stale 201, then follows`, async () => {
    const cluster = setup.cluster;
    const ledger = new Ledger(cluster, bucket, 'pause');
    for (const index of nodes) await ledger.appendUntilAcknowledged(index);
    const group = await groupOf(cluster, ledger.stream);
    const others = nodes.filter((index) => index !== group.leader);
    const load = new Load([ledger], others.length, (writer) => others[writer]);
    await cluster.pause(group.leader);
    const pausedMs = Date.now();
    // Accepted by its kernel, read once it runs again: the deposed leader's first work.
    const waiting = Array.from({ length: 3 }, () => ledger.append(group.leader));
    // Awaited below; a failure meanwhile is not an unhandled rejection.
    for (const answer of waiting) answer.catch(() => undefined);
    await load.until('the others to elect and take appends', resumeWithinMs, () => load.acknowledged(pausedMs) >= 5);
    const newGroup = await groupOf(cluster, ledger.stream, others[0]);
    expect(newGroup.leader).not.toBe(group.leader);
    await sleep(Math.max(0, pausedMs + pauseMs - Date.now()));
    await cluster.resume(group.leader);
    const woken = await Promise.all([...waiting, ...Array.from({ length: 5 }, () => ledger.append(group.leader))]);
    const follows = await ledger.appendUntilAcknowledged(group.leader);
    const answers = await load.stop();
    await settleAndCheck(ledger);
    const replicas = await converged(cluster, group.partition);
    console.log(
      `paused leader node ${group.leader} (epoch ${group.epoch}) for ${pauseMs} ms: node ${newGroup.leader} led (epoch ${newGroup.epoch}); woken, it answered ${woken.map((answer) => answer?.status).join(', ')} ` +
        `(the first three sent while it was stopped), then took an append after ${follows} refusals; others' answers: ${countBy(answers, (sent) => `n${sent.via}/${sent.status}`)}; ${replicas}`,
    );
  }, 150_000);

  test('kill -9 of a leader under load from four writers over three streams, with an SSE and a long-poll listener: writes resume, the node restarted converges, the long-poll listener saw every entry once, in order, the SSE one (reconnecting) too', async () => {
    const cluster = setup.cluster;
    const streams = ['load-a', 'load-b', 'load-c'];
    const live = new Set<number>(nodes);
    const ledgers = streams.map((stream) => new Ledger(cluster, bucket, stream, { answerMayBeLost: (via) => !live.has(via) }));
    for (const ledger of ledgers) await ledger.appendUntilAcknowledged(1);
    const groups = await Promise.all(streams.map((stream) => groupOf(cluster, stream)));
    const victim = groups[0]!.leader;
    const survivors = nodes.filter((index) => index !== victim);
    const liveNodes = (): number[] => nodes.filter((index) => live.has(index));
    // The SSE listener goes through the victim, so it must reconnect; the long-poll one through a node that stays.
    const sse = new SseListener(cluster, streams, () => [victim, ...survivors].find((index) => live.has(index)));
    const listeners: Listener[] = [sse, new LongPollListener(cluster, streams, () => survivors[0])];
    for (const listener of listeners) listener.start();
    const load = new Load(ledgers, 4, (writer, round) => {
      const through = liveNodes();
      return through[(writer + round) % through.length];
    });
    await load.until('30 appends acknowledged before the kill', 60_000, () => load.acknowledged() >= 30);
    live.delete(victim);
    const killedMs = Date.now();
    await cluster.kill(victim);
    const first = ledgers[0]!.history;
    await load.until(`writes to ${streams[0]} to resume after the kill`, resumeWithinMs, () => first.acknowledgedSince(killedMs).length > 0);
    const resumedMs = Math.min(...first.acknowledgedSince(killedMs).map((record) => record.answeredMs!));
    const lastBeforeMs = Math.max(...first.appends.filter((record) => record.answeredMs !== undefined && record.answeredMs < killedMs).map((record) => record.answeredMs!));
    await load.until(`20 appends to ${streams[0]} acknowledged after the kill`, 60_000, () => first.acknowledgedSince(killedMs).length >= 20);
    await cluster.start(victim);
    const restartedMs = Date.now();
    live.add(victim);
    await load.until('appends acknowledged through the restarted node', 60_000, () => load.acknowledgedVia(victim, restartedMs) >= 5);
    const answers = await load.stop();
    const logs = new Map<string, SeenEntry[]>();
    for (const ledger of ledgers) logs.set(ledger.stream, await settleAndCheck(ledger));
    const replicas = [];
    for (const group of groups) replicas.push(await converged(cluster, group.partition));
    // Each listener catches up with the log (read again: an append of unknown outcome may still land).
    for (const listener of listeners) {
      await waitFor('the listeners to catch up with the log', 30_000, async () => {
        for (const ledger of ledgers) logs.set(ledger.stream, await ledger.read(1));
        return streams.every((stream) => listener.seen.get(stream)!.length >= logs.get(stream)!.length) ? true : undefined;
      }, 500).catch(() => undefined);
    }
    for (const listener of listeners) await listener.stop();
    const after = await Promise.all(streams.map((stream) => groupOf(cluster, stream)));
    const kinds = ['SSE', 'long-poll'];
    // Both listeners are held to everything: every entry of each stream once, in order. (One stream of the SSE listener used to
    // stall now and then: it was subscribed through a node whose stale copy of the group answered for it; fixed with the router.)
    const logFor = (_listener: Listener, stream: string): SeenEntry[] => logs.get(stream)!;
    const problems = listeners.flatMap((listener, index) => [
      ...listener.problems.map((problem) => `${kinds[index]}: ${problem}`),
      ...streams.flatMap((stream) => listenedProblems(listener.seen.get(stream)!, logFor(listener, stream)).map((problem) => `${kinds[index]}, ${stream}: ${problem}`)),
    ]);
    console.log(
      `kill -9 of node ${victim}, leader of ${streams[0]}: its last 201 came ${killedMs - lastBeforeMs} ms before the kill, the first after it ${resumedMs - killedMs} ms after; ` +
        `${answers.length} appends (${countBy(answers, (sent) => String(sent.status))}); leaders before ${groups.map((group) => `n${group.leader}`).join('/')}, after ${after.map((group) => `n${group.leader}`).join('/')}; ` +
        `logs ${streams.map((stream) => logs.get(stream)!.length).join('/')} entries; seen by SSE ${streams.map((stream) => sse.seen.get(stream)!.length).join('/')}, by long-poll ${streams.map((stream) => listeners[1]!.seen.get(stream)!.length).join('/')}; ` +
        `SSE: ${sse.connections} connections (the last through node ${sse.via}), ${sse.lost} lost, ended by the server: ${countBy(sse.closedBecause, (reason) => reason) || 'never'}; ` +
        `long-poll: ${listeners[1]!.connections} polls, ${listeners[1]!.lost} lost; ${replicas.join('; ')}`,
    );
    expect(problems).toEqual([]);
  }, 180_000);
});

describe(`request.n = 5 on five nodes under faults (${plan.description})`, () => {
  const setup = fiveNodes(5);

  test(`the leader and a second replica split away from the other three (DROP): two of five acknowledge nothing, three elect and go on; healed, all agree`, async () => {
    await leaderSplitAway(setup.cluster, 5, LinkAction.drop);
  }, 150_000);
});
