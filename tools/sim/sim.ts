/**
 * The replication simulator (DESIGN §9, after TigerBeetle's VOPR): the real
 * replication core (src/cluster/replication/replica.ts) on a simulated
 * network, clock and disk, driven by one seed.
 *
 * - Network: every message is delayed at random (so reordered), sometimes
 *   dropped or duplicated; links are cut both ways or one way.
 * - Nodes: crashed (pending disk writes lost) and restarted from what the
 *   disk holds; paused (SIGSTOP: nothing runs, messages wait, the monotonic
 *   clock runs on) and resumed; clocks drift apart.
 * - Disk: writes complete in order after a random sync delay; a crash loses
 *   the ones not complete. On a minority, a restart finds a bit flipped in a
 *   log entry or the log's tail cut off.
 * - Clients append to a few streams through whichever node they think
 *   leads, with idempotency keys and conditional appends, and retry; readers
 *   read the leader. Everything they saw is kept for the checker.
 *
 * Safety mode faults all the way; liveness mode heals (everything, or a
 * majority) after a while and then requires progress within a bound.
 */

import { majorityOf, Replica } from '../../src/cluster/replication/replica.js';
import type { DurableState, GroupConfig, KeyRecord, LogEntry, LogWrite, ProposeResult, ReplicaEnv, ReplicaMeta, ReplicationMessage, ReplicaTiming } from '../../src/cluster/replication/types.js';
import { Rng } from './rng.js';

export type Mode = 'safety' | 'liveness';

/** A replica class with the same constructor: the real one, or one with a planted bug. */
export type ReplicaClass = new (...args: ConstructorParameters<typeof Replica<SimPayload>>) => Replica<SimPayload>;

export interface SimPayload {
  /** Unique per client request (a retry with the same idempotency key carries the same value). */
  readonly value: string;
}

export interface SimOptions {
  readonly seed: number;
  readonly mode: Mode;
  readonly replicas: number;
  /** The group's first voters (r1 .. rN); the other replicas are spares that changes of the group bring in. Default: all. */
  readonly voters?: number;
  /** Virtual ms of faults (and clients). */
  readonly faultMs: number;
  /** Liveness: virtual ms after healing within which the group must make progress and converge. */
  readonly livenessMs: number;
  readonly clients: number;
  readonly streams: number;
  readonly replicaClass?: ReplicaClass;
  readonly timing?: Partial<ReplicaTiming>;
  /** Every disk write in the event log (with --verbose, for a replay). */
  readonly trace?: boolean;
  /** A scripted run instead of random faults (the scenario drives the network and nodes itself). */
  readonly script?: (sim: Simulation) => void;
}

export const defaultSimOptions: Omit<SimOptions, 'seed'> = {
  mode: 'safety',
  replicas: 3,
  faultMs: 12_000,
  livenessMs: 12_000,
  clients: 4,
  streams: 3,
};

export interface ClientOp {
  readonly id: number;
  readonly client: number;
  /** The primary stream. */
  readonly stream: string;
  /** With a pair: a second stream written in the same op (PATCH's stream and its `-$patch` log). */
  readonly pair?: string;
  readonly value: string;
  readonly key?: string;
  readonly expectSeq?: number;
  readonly sentAt: number;
  /** ok: acknowledged at `seq` (and `pairSeq`); failed: definitely not written; unknown: may or may not be. */
  outcome: 'pending' | 'ok' | 'failed' | 'unknown';
  seq?: number;
  pairSeq?: number;
  ackedAt?: number;
}

/** The (stream, seq) each value of an entry lands at (one entry per write in the simulator). */
export function placements(entry: LogEntry<SimPayload>): { stream: string; seq: number }[] {
  return entry.writes.filter((write) => write.count > 0).map((write) => ({ stream: write.stream, seq: write.firstSeq }));
}

export interface ReadObservation {
  readonly node: string;
  /** When the client sent the read: everything acknowledged before then must be in it. */
  readonly issuedAt: number;
  readonly at: number;
  readonly stream: string;
  readonly entries: readonly { seq: number; value: string }[];
}

export interface Violation {
  readonly at: number;
  readonly what: string;
}

interface Event {
  readonly at: number;
  readonly order: number;
  readonly run: () => void;
}

class EventQueue {
  private readonly heap: Event[] = [];
  private order = 0;

  push(at: number, run: () => void): void {
    const event: Event = { at, order: this.order++, run };
    const heap = this.heap;
    heap.push(event);
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!before(heap[index]!, heap[parent]!)) break;
      [heap[index], heap[parent]] = [heap[parent]!, heap[index]!];
      index = parent;
    }
  }

  pop(): Event | undefined {
    const heap = this.heap;
    if (heap.length === 0) return undefined;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let index = 0;
      for (;;) {
        const left = index * 2 + 1;
        const right = left + 1;
        let smallest = index;
        if (left < heap.length && before(heap[left]!, heap[smallest]!)) smallest = left;
        if (right < heap.length && before(heap[right]!, heap[smallest]!)) smallest = right;
        if (smallest === index) break;
        [heap[index], heap[smallest]] = [heap[smallest]!, heap[index]!];
        index = smallest;
      }
    }
    return top;
  }

  peek(): Event | undefined {
    return this.heap[0];
  }

  get size(): number {
    return this.heap.length;
  }
}

function before(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.order < b.order);
}

/**
 * What a node's disk holds durably: the replication log after its
 * compaction point (entries carry a flag for a flipped bit), and the state
 * machine (the stream store) with every committed op applied so far.
 */
class SimDisk {
  meta: ReplicaMeta = { promised: 0, normalEpoch: 0, lastOp: 0 };
  base = 0;
  baseEpoch = 0;
  baseConfig: GroupConfig | undefined;
  entries: { entry: LogEntry<SimPayload>; damaged: boolean }[] = [];
  /** The state machine: committed ops 1 .. n, durable as applied. */
  readonly store: LogEntry<SimPayload>[] = [];
  readonly storeLastSeq = new Map<string, number>();
  readonly storeKeys = new Map<string, KeyRecord>();

  get lastOp(): number {
    return this.base + this.entries.length;
  }

  apply(write: LogWrite<SimPayload>): void {
    if (write.truncateAfter !== undefined && write.truncateAfter < this.lastOp) this.entries.length = Math.max(0, write.truncateAfter - this.base);
    for (const entry of write.entries) {
      if (entry.op !== this.lastOp + 1) throw new Error(`disk: write of op ${entry.op} after ${this.lastOp} (truncate ${write.truncateAfter}, ${write.entries.length} entries from ${write.entries[0]?.op})`);
      this.entries.push({ entry, damaged: false });
    }
    if (write.base !== undefined && write.base.op > this.base) {
      if (write.base.op > this.store.length) throw new Error(`disk: compaction to ${write.base.op} beyond the store's ${this.store.length}`);
      this.entries.splice(0, Math.min(this.entries.length, write.base.op - this.base));
      this.base = write.base.op;
      this.baseEpoch = write.base.epoch;
      this.baseConfig = write.base.config;
    }
    this.meta = write.meta;
  }

  /** Applies a committed op to the store; again is a no-op (the same op must be the same entry). */
  applyToStore(entry: LogEntry<SimPayload>): string | undefined {
    if (entry.op <= this.store.length) return sameEntry(this.store[entry.op - 1]!, entry) ? undefined : `store op ${entry.op} is ${describe(this.store[entry.op - 1]!)}, applied again as ${describe(entry)}`;
    if (entry.op !== this.store.length + 1) return `store: op ${entry.op} applied after ${this.store.length}`;
    this.store.push(entry);
    for (const write of entry.writes) if (write.count > 0) this.storeLastSeq.set(write.stream, write.firstSeq + write.count - 1);
    if (entry.key !== undefined) this.storeKeys.set(entry.key, { op: entry.op, firstSeqs: entry.writes.map((write) => write.firstSeq), epoch: entry.epoch, digest: entry.keyDigest });
    return undefined;
  }

  /** Damaged tails recovery set aside (never deleted). */
  readonly setAside: { entry: LogEntry<SimPayload>; damaged: boolean }[][] = [];

  /** What recovery reads back: every entry up to the first damaged one (checksums catch the flip); the rest is set aside. */
  recover(): DurableState<SimPayload> {
    const good = this.entries.findIndex((stored) => stored.damaged);
    if (good >= 0) this.setAside.push(this.entries.splice(good));
    return { meta: this.meta, base: this.base, baseEpoch: this.baseEpoch, ...(this.baseConfig === undefined ? {} : { baseConfig: this.baseConfig }), entries: this.entries.map((stored) => stored.entry) };
  }
}

export class SimNode {
  replica: Replica<SimPayload> | undefined;
  readonly disk = new SimDisk();
  /** Bumped on each crash: events of an earlier life are dropped. */
  life = 0;
  pausedUntil = 0;
  /** Messages and disk completions that arrived while paused. */
  held: (() => void)[] = [];
  readonly drift: number;
  readonly clockOffset: number;
  corrupted = false;

  constructor(
    readonly id: string,
    rng: Rng,
  ) {
    this.drift = (rng.next() - 0.5) * 0.002; // ±0.1% against the virtual clock
    this.clockOffset = rng.int(1_000, 1_000_000);
  }

  get up(): boolean {
    return this.replica !== undefined;
  }
}

export class Simulation {
  readonly options: SimOptions;
  readonly rng: Rng;
  private readonly netRng: Rng;
  private readonly diskRng: Rng;
  readonly nodes: SimNode[];
  readonly ids: string[];
  private readonly queue = new EventQueue();
  time = 0;
  /** Directed links that drop everything: `from>to`. */
  readonly cut = new Set<string>();
  dropRate = 0.02;
  duplicateRate = 0.01;
  readonly ops: ClientOp[] = [];
  readonly reads: ReadObservation[] = [];
  readonly violations: Violation[] = [];
  /** epoch -> leader: at most one. */
  readonly leaders = new Map<number, string>();
  /** The first committed entry seen at each op, by any replica. */
  readonly committed = new Map<number, LogEntry<SimPayload>>();
  /** Per node, the last normal acknowledgement (epoch, op) it sent. */
  private readonly lastAck = new Map<string, { epoch: number; op: number }>();
  private nextOpId = 0;
  private clientsStopped = false;
  events = 0;
  readonly log: string[] = [];
  /** Virtual ms from each kill of a serving leader to another replica leading and serving (writes resume). */
  readonly failovers: number[] = [];
  private failoverFrom: { leader: string; at: number } | undefined;

  constructor(options: SimOptions) {
    this.options = options;
    this.rng = new Rng(options.seed);
    this.netRng = this.rng.fork();
    this.diskRng = this.rng.fork();
    this.ids = Array.from({ length: options.replicas }, (_, index) => `r${index + 1}`);
    this.nodes = this.ids.map((id) => new SimNode(id, this.rng));
    for (const node of this.nodes) this.start(node);
  }

  /** How many voters the group has (changes of the group keep the size). */
  get groupSize(): number {
    return this.options.voters ?? this.ids.length;
  }

  node(id: string): SimNode {
    return this.nodes.find((node) => node.id === id)!;
  }

  at(delayMs: number, run: () => void): void {
    this.queue.push(this.time + Math.max(0, delayMs), run);
  }

  note(text: string): void {
    if (this.log.length < (this.options.trace ? 1e6 : 2000)) this.log.push(`${this.time.toFixed(1)} ${text}`);
  }

  violation(what: string): void {
    if (this.violations.length < 50) this.violations.push({ at: this.time, what });
  }

  // --- Nodes -----------------------------------------------------------------

  start(node: SimNode): void {
    const life = node.life;
    const env: ReplicaEnv<SimPayload> = {
      monotonic: () => node.clockOffset + this.time * (1 + node.drift),
      now: () => 1_800_000_000_000 + this.time,
      random: () => this.rng.next(),
      send: (to, message) => this.send(node, to, message),
      applied: (entry) => this.onApplied(node, entry),
      committedLastSeq: (stream) => node.disk.storeLastSeq.get(stream) ?? 0,
      committedKey: (key) => node.disk.storeKeys.get(key),
      fetchState: (from, upTo, done) => this.fetchState(node, life, from, upTo, done),
    };
    const ReplicaType = this.options.replicaClass ?? Replica<SimPayload>;
    node.replica = new ReplicaType({
      self: node.id,
      members: this.ids.slice(0, this.groupSize),
      w: majorityOf(this.groupSize),
      env,
      ...(this.options.timing === undefined ? {} : { timing: this.options.timing }),
      storage: {
        write: (write, done) => {
          // Writes complete in order: each after the one before it.
          const delay = 0.2 + this.diskRng.next() * 2;
          if (this.options.trace) this.note(`${node.id} issue: ${write.truncateAfter ?? "-"} +${write.entries.map((e) => e.op).join(",")}`);
          const at = Math.max(this.time + delay, this.diskBusyUntil.get(node.id) ?? 0);
          this.diskBusyUntil.set(node.id, at);
          this.queue.push(at, () => {
            if (node.life !== life) return; // lost with the crash
            if (this.options.trace) this.note(`${node.id} disk: ${write.truncateAfter ?? "-"} +${write.entries.map((e) => e.op).join(",")} meta ${JSON.stringify(write.meta)}`);
            node.disk.apply(write);
            this.onNode(node, life, () => done());
          });
        },
      },
      durable: node.disk.recover(),
    });
    if (node.replica.recovering) this.note(`${node.id} starts recovering (log ${node.replica.lastOp} < acknowledged ${node.disk.meta.lastOp})`);
    this.scheduleTick(node, life);
  }

  private readonly diskBusyUntil = new Map<string, number>();
  /** Liveness: the node left down after healing (scheduled restarts skip it). */
  private keptDown: string | undefined;

  private scheduleTick(node: SimNode, life: number): void {
    this.at(10, () => {
      if (node.life !== life) return;
      this.onNode(node, life, () => {
        const replica = node.replica!;
        replica.tick();
        if (this.failoverFrom !== undefined && node.id !== this.failoverFrom.leader && replica.role === 'leader' && replica.serveCheck().ok) {
          this.failovers.push(this.time - this.failoverFrom.at);
          this.failoverFrom = undefined;
        }
        // Now and then the log is compacted up to (nearly) what is applied: laggards then need the state.
        if (this.diskRng.chance(0.01) && replica.applied > replica.compactedThrough + 20) replica.compact(replica.applied - this.diskRng.int(0, 20));
      });
      this.scheduleTick(node, life);
    });
  }

  /** A state transfer from `fromId`'s store to `node`'s, after a while; fails if the source is down or behind. */
  private fetchState(node: SimNode, life: number, fromId: string, upTo: number, done: (ok: boolean) => void): void {
    const source = this.node(fromId);
    this.at(1 + this.netRng.next() * 20, () => {
      if (node.life !== life) return;
      const ok = source.up && !this.cut.has(`${fromId}>${node.id}`) && source.disk.store.length >= upTo;
      if (ok) {
        for (let op = node.disk.store.length + 1; op <= source.disk.store.length; op++) {
          const problem = node.disk.applyToStore(source.disk.store[op - 1]!);
          if (problem !== undefined) this.violation(`${node.id} state transfer: ${problem}`);
        }
        this.note(`${node.id} took the state up to op ${source.disk.store.length} from ${fromId}`);
      }
      this.onNode(node, life, () => done(ok));
    });
  }

  /** Runs `work` on the node now, or when it resumes if it is paused; never after a crash. */
  private onNode(node: SimNode, life: number, work: () => void): void {
    if (node.life !== life || node.replica === undefined) return;
    if (this.time < node.pausedUntil) {
      node.held.push(() => {
        if (node.life === life && node.replica !== undefined) this.guarded(node, work);
      });
      return;
    }
    this.guarded(node, work);
  }

  private guarded(node: SimNode, work: () => void): void {
    try {
      work();
    } catch (error) {
      this.violation(`${node.id} threw: ${(error as Error).message}`);
    }
    this.observeLeader(node);
  }

  crash(node: SimNode): void {
    if (!node.up) return;
    this.note(`${node.id} crashes`);
    node.life++;
    node.replica = undefined;
    node.pausedUntil = 0;
    node.held = [];
    this.diskBusyUntil.delete(node.id);
  }

  restart(node: SimNode, damage: 'none' | 'flip' | 'truncate' = 'none'): void {
    if (node.up || node.id === this.keptDown) return;
    // Damage stays on a minority: no more than a majority minus one damaged and not yet repaired, counting this one.
    for (const each of this.nodes) if (each.corrupted && each.replica !== undefined && !each.replica.recovering) each.corrupted = false;
    const othersDamaged = this.nodes.filter((each) => each !== node && each.corrupted).length;
    if (othersDamaged + 1 > this.groupSize - majorityOf(this.groupSize)) damage = 'none';
    if (damage !== 'none' && node.disk.entries.length > 0) {
      const count = node.disk.entries.length;
      const base = node.disk.base;
      if (damage === 'flip') {
        const index = this.diskRng.int(Math.max(1, count - 30), count);
        node.disk.entries[index - 1]!.damaged = true;
        this.note(`${node.id}: a bit flips in op ${base + index} of ${base + count}`);
      } else {
        const keep = this.diskRng.int(Math.max(0, count - 30), count - 1);
        node.disk.entries.length = keep;
        this.note(`${node.id}: the log is cut from ${base + count} to ${base + keep} ops`);
      }
      node.corrupted = true;
    }
    this.note(`${node.id} restarts`);
    this.start(node);
  }

  pause(node: SimNode, forMs: number): void {
    if (!node.up) return;
    this.note(`${node.id} pauses for ${forMs.toFixed(0)} ms`);
    node.pausedUntil = this.time + forMs;
    const life = node.life;
    this.at(forMs, () => {
      if (node.life !== life) return;
      const held = node.held;
      node.held = [];
      for (const work of held) work();
    });
  }

  // --- Network ---------------------------------------------------------------

  private send(from: SimNode, to: string, message: ReplicationMessage<SimPayload>): void {
    if (message.type === 'append-reply' && message.ok && message.normal) this.checkAck(from.id, message.epoch, message.matchOp);
    if (this.cut.has(`${from.id}>${to}`)) return;
    if (this.netRng.chance(this.dropRate)) return;
    const copies = this.netRng.chance(this.duplicateRate) ? 2 : 1;
    const target = this.node(to);
    for (let copy = 0; copy < copies; copy++) {
      const delay = 0.1 + this.netRng.next() * (this.netRng.chance(0.05) ? 40 : 3);
      this.at(delay, () => {
        if (this.cut.has(`${from.id}>${to}`)) return;
        this.onNode(target, target.life, () => target.replica!.receive(message));
      });
    }
  }

  isolate(id: string, oneWay: 'in' | 'out' | 'both' = 'both'): void {
    for (const other of this.ids) {
      if (other === id) continue;
      if (oneWay !== 'in') this.cut.add(`${id}>${other}`);
      if (oneWay !== 'out') this.cut.add(`${other}>${id}`);
    }
  }

  split(side: readonly string[]): void {
    for (const a of side) for (const b of this.ids) if (!side.includes(b)) {
      this.cut.add(`${a}>${b}`);
      this.cut.add(`${b}>${a}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  // --- Observations ----------------------------------------------------------

  private observeLeader(node: SimNode): void {
    const replica = node.replica;
    if (replica === undefined || replica.role !== 'leader') return;
    const known = this.leaders.get(replica.epoch);
    if (known === undefined) {
      this.leaders.set(replica.epoch, node.id);
      this.note(`${node.id} leads epoch ${replica.epoch} (log ${replica.lastOp}, commit ${replica.commit})`);
    } else if (known !== node.id) this.violation(`two leaders in epoch ${replica.epoch}: ${known} and ${node.id}`);
  }

  private checkAck(id: string, epoch: number, op: number): void {
    const last = this.lastAck.get(id);
    if (last !== undefined && (epoch < last.epoch || (epoch === last.epoch && op < last.op))) {
      this.violation(`${id} acknowledged (${epoch}, ${op}) after (${last.epoch}, ${last.op})`);
    }
    if (last === undefined || epoch > last.epoch || (epoch === last.epoch && op > last.op)) this.lastAck.set(id, { epoch, op });
  }

  private onApplied(node: SimNode, entry: LogEntry<SimPayload>): void {
    const problem = node.disk.applyToStore(entry);
    if (problem !== undefined) this.violation(`${node.id}: ${problem}`);
    const known = this.committed.get(entry.op);
    if (known === undefined) this.committed.set(entry.op, entry);
    else if (!sameEntry(known, entry)) {
      this.violation(`op ${entry.op} committed as ${describe(known)} and, at ${node.id}, as ${describe(entry)}`);
    }
  }

  // --- Clients ---------------------------------------------------------------

  private startClients(): void {
    for (let client = 0; client < this.options.clients; client++) {
      const rng = this.rng.fork();
      const state = { guess: rng.pick(this.ids), lastSeq: new Map<string, number>() };
      // Each client runs two requests at a time: one at a time would hide ordering between its own appends.
      const loop = (): void => {
        if (this.clientsStopped) return;
        if (rng.chance(0.15)) {
          this.clientRead(rng, state.guess);
          this.at(rng.next() * 30, loop);
        } else this.clientAppend(client, rng, state, () => this.at(rng.next() * 30, loop));
      };
      this.at(rng.next() * 50, loop);
      this.at(rng.next() * 50, loop);
      // And a reader that never waits on a write: what a listener polling the leader would see.
      const reader = (): void => {
        if (this.clientsStopped) return;
        this.clientRead(rng, state.guess);
        this.at(20 + rng.next() * 80, reader);
      };
      this.at(rng.next() * 50, reader);
    }
  }

  /** A client's request to a node and the answer back, each way over the client's own (reliable, delayed) link. */
  private request(nodeId: string, work: (replica: Replica<SimPayload>, answer: (result: ProposeResult) => void) => void, answer: (result: ProposeResult | undefined) => void): void {
    const node = this.node(nodeId);
    let answered = false;
    const finish = (result: ProposeResult | undefined): void => {
      if (answered) return;
      answered = true;
      answer(result);
    };
    // A node that never answers (crashed, paused, cut off): the client gives up after 1.5 s, outcome unknown.
    this.at(1_500, () => finish(undefined));
    this.at(0.2 + this.netRng.next(), () => {
      const life = node.life;
      if (!node.up) return finish({ ok: false, code: 'unavailable' });
      this.onNode(node, life, () => work(node.replica!, (result) => this.at(0.2 + this.netRng.next(), () => finish(result))));
    });
  }

  private clientAppend(client: number, rng: Rng, state: { guess: string; lastSeq: Map<string, number> }, next: () => void): void {
    const stream = `s${rng.int(1, this.options.streams)}`;
    const useKey = rng.chance(0.5);
    const conditional = rng.chance(0.1);
    const pair = rng.chance(0.1) ? `${stream}-$patch` : undefined;
    const op: ClientOp = {
      id: this.nextOpId++,
      client,
      stream,
      ...(pair === undefined ? {} : { pair }),
      value: `c${client}-${this.nextOpId}`,
      ...(useKey ? { key: `k${client}-${this.nextOpId}` } : {}),
      ...(conditional ? { expectSeq: state.lastSeq.get(stream) ?? 0 } : {}),
      sentAt: this.time,
      outcome: 'pending',
    };
    this.ops.push(op);
    const attempt = (tries: number): void => {
      this.request(
        state.guess,
        (replica, answer) =>
          replica.propose(
            {
              writes: [{ stream, count: 1, ...(op.expectSeq === undefined ? {} : { expectSeq: op.expectSeq }) }, ...(pair === undefined ? [] : [{ stream: pair, count: 1 }])],
              payload: { value: op.value },
              ...(op.key === undefined ? {} : { key: op.key, keyDigest: op.value }),
            },
            answer,
          ),
        (result) => {
          if (result?.ok) {
            if (op.outcome !== 'unknown' && op.outcome !== 'pending') this.violation(`op ${op.id} answered twice`);
            op.outcome = 'ok';
            op.seq = result.firstSeqs[0];
            if (pair !== undefined) op.pairSeq = result.firstSeqs[1];
            op.ackedAt = this.time;
            state.lastSeq.set(stream, Math.max(state.lastSeq.get(stream) ?? 0, result.firstSeqs[0]!));
            return next();
          }
          const code = result?.code ?? 'unknown';
          if (code === 'not-leader' && result !== undefined && !result.ok && result.leader !== undefined) state.guess = result.leader;
          else if (code !== 'conflict') state.guess = rng.pick(this.ids);
          if (code === 'unknown') op.outcome = 'unknown';
          if (code === 'conflict') {
            if (op.outcome === 'pending') op.outcome = 'failed';
            if (result !== undefined && !result.ok && result.lastSeq !== undefined && result.stream === stream) state.lastSeq.set(stream, result.lastSeq);
            return next();
          }
          // Retry: with a key, always (the key makes it safe); without one, only while nothing could have been written.
          const mayRetry = op.key !== undefined || (code !== 'unknown' && op.outcome === 'pending');
          if (this.clientsStopped || tries >= 20 || !mayRetry) {
            if (op.outcome === 'pending') op.outcome = code === 'unknown' ? 'unknown' : 'failed';
            return next();
          }
          this.at(20 + rng.next() * 100, () => attempt(tries + 1));
        },
      );
    };
    attempt(0);
  }

  private clientRead(rng: Rng, guess: string): void {
    this.clientReadAt(guess, `s${rng.int(1, this.options.streams)}`);
  }

  private clientReadAt(nodeId: string, stream: string): void {
    const node = this.node(nodeId);
    const issuedAt = this.time;
    this.at(0.2 + this.netRng.next(), () => {
      const life = node.life;
      if (!node.up) return;
      this.onNode(node, life, () => {
        const replica = node.replica!;
        const check = replica.serveCheck();
        if (!check.ok) return;
        // The store holds what is applied; a replica serving past that (a bug) shows its log beyond.
        const store = node.disk.store;
        const upTo = Math.min(check.commit, store.length);
        const entries = [...store.slice(0, upTo), ...replica.entries(Math.max(upTo + 1, replica.compactedThrough + 1), check.commit)]
          .flatMap((entry) => placements(entry).filter((place) => place.stream === stream).map((place) => ({ seq: place.seq, value: entry.payload.value })));
        this.reads.push({ node: node.id, issuedAt, at: this.time, stream, entries });
      });
    });
  }

  // --- Scripting -------------------------------------------------------------

  /** A client append straight to one node's replica (recorded for the checker like any other). */
  appendAt(nodeId: string, stream: string, value: string): ClientOp {
    const op: ClientOp = { id: this.nextOpId++, client: -1, stream, value, sentAt: this.time, outcome: 'pending' };
    this.ops.push(op);
    const node = this.node(nodeId);
    this.onNode(node, node.life, () =>
      node.replica!.propose({ writes: [{ stream, count: 1 }], payload: { value } }, (result) => {
        if (result.ok) {
          op.outcome = 'ok';
          op.seq = result.firstSeqs[0];
          op.ackedAt = this.time;
        } else op.outcome = result.code === 'unknown' ? 'unknown' : 'failed';
      }),
    );
    this.note(`script: ${value} appended at ${nodeId}`);
    return op;
  }

  /** No message loss or duplication from now on (scripted histories control faults themselves). */
  quiet(): void {
    this.dropRate = 0;
    this.duplicateRate = 0;
  }

  /** A client read of one stream at one node (recorded for the checker like any other). */
  readAt(nodeId: string, stream: string): void {
    this.clientReadAt(nodeId, stream);
  }

  /** Runs until `done` holds (checked every 10 virtual ms) or `withinMs` passes; says which. */
  runUntilTrue(done: () => boolean, withinMs: number): boolean {
    const deadline = this.time + withinMs;
    while (this.time < deadline) {
      if (done()) return true;
      this.runUntil(this.time + 10);
    }
    return done();
  }

  /** The node leading and able to serve now, if any. */
  servingLeader(among: readonly string[] = this.ids): SimNode | undefined {
    return this.nodes.find((node) => among.includes(node.id) && node.replica?.role === 'leader' && node.replica.serveCheck().ok);
  }

  // --- Faults ----------------------------------------------------------------

  private faultLoop(): void {
    const until = this.options.faultMs;
    const step = (): void => {
      if (this.time >= until) return;
      this.oneFault();
      this.at(this.rng.int(100, 1_200), step);
    };
    this.at(this.rng.int(200, 800), step);
  }

  private oneFault(): void {
    const rng = this.rng;
    const node = rng.pick(this.nodes);
    const kind = rng.next();
    if (kind < 0.25) {
      // A partition: a random side, or one node alone, possibly one way.
      this.heal();
      const shape = rng.next();
      if (shape < 0.4) this.isolate(node.id, rng.pick(['in', 'out', 'both'] as const));
      else {
        const side = this.ids.filter(() => rng.chance(0.5));
        this.split(side);
      }
      this.note(`network: ${[...this.cut].join(' ') || 'whole'}`);
      const healIn = rng.int(200, 3_000);
      this.at(healIn, () => {
        this.heal();
        this.note('network healed');
      });
    } else if (kind < 0.5) {
      this.crash(node);
      const damage = rng.pick(['none', 'none', 'flip', 'truncate'] as const);
      this.at(rng.int(50, 3_000), () => this.restart(node, damage));
    } else if (kind < 0.65) {
      this.pause(node, rng.int(300, 4_000));
    } else if (kind < 0.75) {
      this.dropRate = rng.pick([0, 0.02, 0.1, 0.3]);
      this.duplicateRate = rng.pick([0, 0.01, 0.05]);
    } else if (kind < 0.85 && this.groupSize < this.ids.length) {
      this.changeGroup();
    } else {
      // The leader, in particular: kill it or pause it.
      const leader = this.nodes.find((each) => each.replica?.role === 'leader');
      if (leader === undefined) return;
      const what = rng.next();
      if (what < 0.4) {
        if (leader.replica!.serveCheck().ok && this.cut.size === 0) this.failoverFrom = { leader: leader.id, at: this.time };
        this.crash(leader);
        this.at(rng.int(100, 2_000), () => this.restart(leader));
      } else if (what < 0.6) this.pause(leader, rng.int(500, 3_000));
      else if (what < 0.8) this.transferLeader(leader);
      else {
        // Cut off while clients still reach it: it must not show them what it cannot commit.
        this.heal();
        this.isolate(leader.id, rng.pick(['in', 'out', 'both'] as const));
        this.note(`network: the leader ${leader.id} cut off (${[...this.cut].join(' ')})`);
        this.at(rng.int(500, 5_000), () => {
          this.heal();
          this.note('network healed');
        });
      }
    }
  }

  /** kill -9 of the serving leader, timed until another replica leads and serves. */
  killServingLeader(): void {
    const leader = this.servingLeader();
    if (leader === undefined) return;
    this.failoverFrom = { leader: leader.id, at: this.time };
    this.crash(leader);
  }

  /** Asks the leader to hand its leadership to another voter (as leadership balancing does). */
  transferLeader(leader: SimNode): void {
    const others = leader.replica!.config.voters.filter((id) => id !== leader.id);
    if (others.length === 0) return;
    const target = this.rng.pick(others);
    const started = leader.replica!.transferLeadership(target);
    this.note(`leader transfer asked of ${leader.id} to ${target}: ${started ? 'started' : 'refused'}`);
  }

  /** Asks the leader to swap one voter for a spare (as a ring change moves a partition's replica). */
  changeGroup(): void {
    const leader = this.nodes.find((each) => each.replica?.role === 'leader');
    if (leader === undefined) return;
    const config = leader.replica!.config;
    if (config.old !== undefined) return;
    const out = this.rng.pick(config.voters);
    const spares = this.ids.filter((id) => !config.voters.includes(id));
    const into = this.rng.pick(spares);
    const voters = config.voters.map((id) => (id === out ? into : id));
    this.note(`group change asked of ${leader.id}: ${config.voters.join(',')} -> ${voters.join(',')}`);
    const life = leader.life;
    leader.replica!.reconfigure(voters, { value: 'config' }, (result) => {
      if (leader.life === life) this.note(`group change to ${voters.join(',')} at ${leader.id}: ${result.ok ? 'done' : result.code}`);
    });
  }

  /** Everything back: links, rates, crashed and paused nodes; `keepDown` stays crashed. */
  healAll(keepDown?: string): void {
    this.keptDown = keepDown;
    this.failoverFrom = undefined;
    this.heal();
    this.quiet();
    for (const node of this.nodes) {
      if (node.id === keepDown) {
        this.crash(node);
        continue;
      }
      if (!node.up) this.restart(node);
      if (node.pausedUntil > this.time) {
        node.pausedUntil = this.time;
        const held = node.held;
        node.held = [];
        for (const work of held) work();
      }
    }
  }

  // --- Running ---------------------------------------------------------------

  runUntil(time: number, maxEvents = 5_000_000): void {
    while (this.queue.size > 0 && this.events < maxEvents) {
      if (this.queue.peek()!.at > time) break;
      const event = this.queue.pop()!;
      this.time = event.at;
      this.events++;
      event.run();
    }
    this.time = Math.max(this.time, time);
  }

  /** The whole run; returns what the checker needs. */
  run(): SimResult {
    const options = this.options;
    if (options.script !== undefined) {
      options.script(this);
    } else {
      this.startClients();
      this.faultLoop();
      this.runUntil(options.faultMs);
    }
    let liveness: string | undefined;
    if (options.mode === 'liveness' && options.script === undefined) {
      // A majority of intact replicas is healed: one node may stay down only if no other has a damaged log.
      const damaged = this.nodes.some((node) => node.corrupted && (node.replica === undefined || node.replica.recovering));
      const keepDown = this.rng.chance(0.3) && !damaged ? this.rng.pick(this.ids) : undefined;
      this.note(`liveness: healing${keepDown === undefined ? '' : `, ${keepDown} stays down`}`);
      this.healAll(keepDown);
      liveness = this.awaitProgress(options.livenessMs, keepDown);
    }
    this.clientsStopped = true;
    // Let answers in flight land, without new faults.
    this.runUntil(this.time + 4_000);
    return { liveness };
  }

  /** Liveness: a probe append commits and every live replica holds the same committed log. */
  private awaitProgress(withinMs: number, keepDown: string | undefined): string | undefined {
    const deadline = this.time + withinMs;
    let probe: ProposeResult | undefined;
    let proposedAt = -1;
    const live = this.nodes.filter((node) => node.id !== keepDown);
    while (this.time < deadline) {
      this.runUntil(this.time + 50);
      const leader = live.find((node) => node.replica?.role === 'leader' && node.replica.serveCheck().ok);
      if (leader !== undefined && probe === undefined && proposedAt < 0) {
        proposedAt = this.time;
        // With a key: a probe whose answer was lost (a failover) and is sent again is not appended twice.
        leader.replica!.propose({ writes: [{ stream: 'probe', count: 1 }], payload: { value: 'probe' }, key: 'probe', keyDigest: 'probe' }, (result) => {
          probe = result;
        });
      }
      if (probe !== undefined && !probe.ok) {
        probe = undefined;
        proposedAt = -1;
      }
      if (probe?.ok && leader !== undefined) {
        const commit = leader.replica!.commit;
        const config = leader.replica!.config;
        const voters = live.filter((node) => config.voters.includes(node.id) || (config.old?.includes(node.id) ?? false));
        const converged = voters.every((node) => node.replica !== undefined && node.replica.commit >= commit && !node.replica.recovering);
        if (converged) return undefined;
      }
    }
    const states = this.nodes.map((node) => `${node.id}: ${node.replica === undefined ? 'down' : `${node.replica.role} e${node.replica.epoch} n${node.replica.normalEpoch} log ${node.replica.lastOp} commit ${node.replica.commit}${node.replica.recovering ? ' recovering' : ''}`}`);
    return `no progress within ${withinMs} ms of healing (${probe === undefined ? 'no probe committed' : 'replicas did not converge'}): ${states.join('; ')}`;
  }

  /** Every live replica's committed log (for the convergence check). */
  committedLogs(): { id: string; entries: readonly LogEntry<SimPayload>[] }[] {
    return this.nodes
      .filter((node) => node.replica !== undefined)
      .map((node) => {
        const commit = node.replica!.commit;
        const store = node.disk.store.slice(0, commit);
        return { id: node.id, entries: [...store, ...node.replica!.entries(store.length + 1, commit)] };
      });
  }
}

export interface SimResult {
  readonly liveness: string | undefined;
}

export function sameEntry(a: LogEntry<SimPayload>, b: LogEntry<SimPayload>): boolean {
  return a.op === b.op && a.epoch === b.epoch && JSON.stringify(a.writes) === JSON.stringify(b.writes) && JSON.stringify(a.config) === JSON.stringify(b.config) && a.payload.value === b.payload.value && a.key === b.key && a.t === b.t;
}

export function describe(entry: LogEntry<SimPayload>): string {
  if (entry.config !== undefined) return `(e${entry.epoch} config ${entry.config.voters.join(',')}${entry.config.old === undefined ? '' : ` old ${entry.config.old.join(',')}`})`;
  return `(e${entry.epoch} ${entry.writes.map((write) => `${write.stream}#${write.firstSeq}`).join('+')} ${entry.payload.value})`;
}
