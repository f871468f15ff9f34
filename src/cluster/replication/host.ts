/**
 * The replicas one node runs (DESIGN §7b): one per partition whose group
 * includes the node, each on the partition log (store/partition-log.ts),
 * talking to its peers over the cluster transport, applying what commits to
 * the node's stream store.
 *
 * - Messages are coalesced per peer: everything the replicas send to one
 *   peer within one event-loop turn travels in one frame, so heartbeats of
 *   64 partitions cost one frame per peer and period, not 64.
 * - Committed ops are applied to the stream store in op order, per
 *   partition, through importRecords (idempotent by seqnum: a replica
 *   restarted re-applies from its compaction point and nothing doubles). A
 *   client is answered once its op is committed *and* applied here, so a
 *   read that follows sees it.
 * - Reads are served by the leader within its lease, once everything it
 *   knows committed is applied: only committed entries are ever in the
 *   stream store, so a listener never sees an entry a failover takes back.
 *
 * - The log is compacted `keepOps` behind what is applied; a follower behind
 *   that takes the leader's stream store for the partition (as handoff
 *   copies it), then goes on from the log.
 *
 * What is not here yet: which partitions a node replicates comes from the
 * caller (the ring's preflist; wiring into the node is next).
 */

import type { Logger } from 'pino';
import { pack, unpack } from 'msgpackr';
import type { Clock } from '../../core/clock.js';
import { IorioError } from '../../core/errors.js';
import { encodeRecord } from '../../core/record.js';
import type { GroupConfig, LogEntry, ProposeResult, ReplicaTiming, ReplicationMessage, WriteRequest } from '../../core/replication.js';
import { MessageType } from '../../core/wire.js';
import { isNoSpaceError } from '../../store/commit-log.js';
import type { OpPayload, PartitionLogs, StoredKeyRow } from '../../store/partition-log.js';
import type { AppendMeta, AppendRequest, ExportedRecords, ImportBatch, StreamPosition } from '../../store/types.js';
import type { ClusterTransport } from '../transport.js';
import { majorityOf, type ReconfigureResult, Replica } from './replica.js';

/** What the host needs of the node's stream store. */
export interface ReplicatedStateMachine {
  importRecords(batch: ImportBatch): Promise<void>;
  deleteStream(bucket: string, stream: string): Promise<void>;
  lastSeqNow(bucket: string, stream: string): number;
  /** A partition's streams and how far each goes (for a state transfer). */
  partitionStreams(partition: number): StreamPosition[];
  exportRecords(bucket: string, stream: string, afterSeq: number, bytesMax: number): Promise<ExportedRecords>;
  /** Forgets every stream of a partition, durably. */
  dropPartition(partition: number): Promise<number>;
  /** Why the store takes no appends now (a full disk, failing writes), or undefined. */
  writeRefusal(): IorioError | undefined;
  /** Resolves once every write acknowledged before the call is durable (lazy imports included). */
  checkpointAfterNow(): Promise<void>;
}

/** Ops a replica keeps in memory (and in its partition log) behind what it applied; older ones are compacted. */
const keepOpsDefault = 10_000;
/** A client's write not committed within this is answered 503 (unknown outcome). */
const proposeTimeoutMs = 5_000;
/** How long a failed apply, or a replica whose log write failed, waits before it is tried again. */
const applyRetryMs = 1_000;
/** A state-transfer batch, at most. */
const stateBatchBytes = 1024 * 1024;

export interface ReplicaHostOptions {
  readonly self: string;
  readonly w: number;
  readonly transport: ClusterTransport;
  readonly store: ReplicatedStateMachine;
  readonly logs: PartitionLogs;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly timing?: Partial<ReplicaTiming>;
  /** How often replicas check their timers. */
  readonly tickMs?: number;
  /** Called when a partition's leader changes as this node sees it (routes and listeners follow). */
  readonly onLeaderChange?: (partition: number, leader: string | undefined) => void;
  /** Ops kept behind the applied point before compaction (default 10,000). */
  readonly keepOps?: number;
}

interface Hosted {
  readonly partition: number;
  readonly replica: Replica<OpPayload>;
  /** Ops applied to the stream store. */
  applied: number;
  /** Ops applied and known durable in the stream store (a checkpoint covered them): the log is compacted no further. */
  durable: number;
  /** The apply of the next committed ops waits for this one. */
  applying: Promise<void>;
  /** Applies that failed in a row (reset by one that succeeds). */
  applyFailures: number;
  /** The members the replica was opened with (a failed replica is opened again with them). */
  readonly members: readonly string[];
  /** When the replica's partition log write failed (monotonic ms): it is opened again from its log a second later. */
  failedAt?: number;
  /** Committed ops waiting to be applied. */
  readonly queue: LogEntry<OpPayload>[];
  readonly appliedWaiters: { op: number; resolve: () => void }[];
  leader: string | undefined;
}

interface StateRecordsRequest {
  readonly p: number;
  readonly bucket: string;
  readonly stream: string;
  readonly after: number;
}

/** A leader's answer to a state transfer's first request: its streams and its remembered idempotency keys. */
interface StateStreams {
  readonly streams: StreamPosition[];
  readonly keys: StoredKeyRow[];
}

interface Envelope {
  readonly p: number;
  readonly m: ReplicationMessage<OpPayload>;
}

/** `bucket/stream`: names never hold a '/' (core/names.ts). */
function noSpaceError(): IorioError {
  return new IorioError('insufficient-storage', 'the disk of this node is full; appends resume by themselves once space is freed');
}

function streamKey(bucket: string, stream: string): string {
  return `${bucket}/${stream}`;
}

function splitKey(key: string): { bucket: string; stream: string } {
  const at = key.indexOf('/');
  return { bucket: key.slice(0, at), stream: key.slice(at + 1) };
}

/** An op's payload: each write's entry bodies. */
function encodePayload(bodies: readonly (readonly Buffer[])[]): OpPayload {
  return pack(bodies);
}

function decodePayload(payload: OpPayload): Buffer[][] {
  return payload.length === 0 ? [] : (unpack(payload) as Buffer[][]);
}

const emptyPayload: OpPayload = Buffer.alloc(0);

export class ReplicaHost {
  private readonly hosted = new Map<number, Hosted>();
  private readonly outbox = new Map<string, Envelope[]>();
  private flushScheduled = false;
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private readonly logger: Logger;
  private closed = false;
  private checkpointing = false;
  /** Until when (monotonic ms) appends are refused 507 up front: a partition log met a full disk (every partition shares it). */
  private noSpaceUntil = -Infinity;

  constructor(private readonly options: ReplicaHostOptions) {
    this.logger = options.logger.child({ component: 'replication' });
    const offBatch = options.transport.on(MessageType.replicationBatch, (body, from) => this.receive(body, from));
    const offStreams = options.transport.handle(MessageType.replicationStateStreams, (body) => this.serveStateStreams(body as { p: number }));
    const offRecords = options.transport.handle(MessageType.replicationStateRecords, (body) => this.serveStateRecords(body as StateRecordsRequest));
    this.unsubscribe = () => {
      offBatch();
      offStreams();
      offRecords();
    };
    this.timer = setInterval(() => this.tick(), options.tickMs ?? 20);
    this.timer.unref();
  }

  /** Starts (or keeps) the replica of a partition; `members` is the group to start with when its log names none. */
  open(partition: number, members: readonly string[]): void {
    if (this.closed || this.hosted.has(partition)) return;
    let durable = this.options.logs.recover(partition);
    // A new group's first members are recorded with its log: after a restart the log, not the ring, says who the voters are.
    if (members.length > 0 && durable.baseConfig === undefined && durable.entries.length === 0 && durable.meta.promised === 0 && durable.base === 0) {
      this.options.logs.recordFirstConfig(partition, { voters: [...members] });
      durable = this.options.logs.recover(partition);
    }
    if (durable.damaged !== undefined) this.logger.warn({ partition, damaged: durable.damaged }, 'replication: damaged ops set aside; the replica repairs from its leader before it votes or leads');
    const hosted: Hosted = { partition, members: [...members], applyFailures: 0, applied: durable.base ?? 0, durable: durable.base ?? 0, applying: Promise.resolve(), queue: [], appliedWaiters: [], leader: undefined, replica: undefined as unknown as Replica<OpPayload> };
    const replica = new Replica<OpPayload>({
      self: this.options.self,
      members,
      w: Math.max(majorityOf(members.length), Math.min(this.options.w, members.length)),
      ...(this.options.timing === undefined ? {} : { timing: this.options.timing }),
      storage: this.options.logs.storage(partition),
      durable,
      env: {
        monotonic: () => this.options.clock.monotonic(),
        now: () => this.options.clock.now(),
        random: Math.random,
        send: (to, message) => this.post(to, { p: partition, m: message }),
        applied: (entry) => this.apply(hosted, entry),
        committedKey: (key) => this.options.logs.committedKey(partition, key),
        committedLastSeq: (key) => {
          const { bucket, stream } = splitKey(key);
          return this.options.store.lastSeqNow(bucket, stream);
        },
        fetchState: (from, upTo, done) => {
          this.fetchState(hosted, from, upTo).then(
            () => {
              // The store now holds every op up to `upTo` (the replica's apply point moves there).
              this.markApplied(hosted, upTo);
              done(true);
            },
            (error: unknown) => {
              this.logger.warn({ err: error, partition, from }, 'replication: a state transfer failed; it will be asked again');
              done(false);
            },
          );
        },
      },
    });
    (hosted as { replica: Replica<OpPayload> }).replica = replica;
    this.hosted.set(partition, hosted);
  }

  /**
   * Opens the replica of every partition the partition log holds and that is
   * not open yet, with no members of its own (its log's configuration, if
   * any, decides): called at start after the ring's groups are open, so
   * that a copy of a group this node left while it was down is found, and
   * dropped once its leader confirms.
   */
  openStored(): void {
    for (const partition of this.options.logs.partitions()) this.open(partition, []);
  }

  partitions(): number[] {
    return [...this.hosted.keys()].sort((a, b) => a - b);
  }

  /** Whether this node's replica of the partition is one of its group's voters (a learner, or a copy of a group it left, is not). */
  votesIn(partition: number): boolean {
    const config = this.hosted.get(partition)?.replica.config;
    return config !== undefined && (config.voters.includes(this.options.self) || (config.old?.includes(this.options.self) ?? false));
  }

  /** Whether this node runs a replica of the partition (asked on every request: no allocation). */
  holds(partition: number): boolean {
    return this.hosted.has(partition);
  }

  /** The partition's leader as this node knows it (itself when it leads). */
  leaderOf(partition: number): string | undefined {
    return this.hosted.get(partition)?.replica.leader;
  }

  status(partition: number): { role: string; epoch: number; leader: string | undefined; lastOp: number; commit: number; applied: number; config: GroupConfig; configCommitted: boolean; recovering: boolean; followers: { replica: string; match: number }[] } | undefined {
    const hosted = this.hosted.get(partition);
    if (hosted === undefined) return undefined;
    const replica = hosted.replica;
    return { role: replica.role, epoch: replica.epoch, leader: replica.leader, lastOp: replica.lastOp, commit: replica.commit, applied: hosted.applied, config: replica.config, configCommitted: replica.configCommitted, recovering: replica.recovering, followers: replica.progress() };
  }

  /**
   * Lets go of this node's copy of a partition whose group no longer has it
   * (the caller checked that the group's committed configuration leaves it
   * out): the replica stops, then the partition's streams and its log are
   * dropped. Resolves with how many streams went.
   */
  async drop(partition: number): Promise<number> {
    const hosted = this.hosted.get(partition);
    if (hosted === undefined) return 0;
    hosted.replica.retire();
    this.hosted.delete(partition);
    this.options.onLeaderChange?.(partition, undefined);
    await hosted.applying.catch(() => undefined);
    const streams = await this.options.store.dropPartition(partition);
    await this.options.logs.drop(partition);
    this.logger.info({ partition, streams }, 'replication: dropped the copy of a partition this node no longer replicates');
    return streams;
  }

  // --- Writes and reads ----------------------------------------------------

  /** Appends to one or more streams of the partition, all or nothing (PATCH: a stream and its -$patch log). */
  async append(partition: number, requests: readonly AppendRequest[]): Promise<AppendMeta[][]> {
    const writes: WriteRequest[] = requests.map((request) => ({ stream: streamKey(request.bucket, request.stream), count: request.payloads.length, ...(request.expectSeq === undefined ? {} : { expectSeq: request.expectSeq }) }));
    const idempotency = requests[0]?.idempotency;
    const result = await this.propose(partition, writes, encodePayload(requests.map((request) => request.payloads)), idempotency);
    return requests.map((request, index) => {
      const first = result.firstSeqs[index]!;
      return request.payloads.map((_, offset) => ({ id: first + offset, t: result.t }));
    });
  }

  async deleteStream(partition: number, bucket: string, stream: string): Promise<void> {
    await this.propose(partition, [{ stream: streamKey(bucket, stream), count: 0, delete: true }], emptyPayload);
  }

  /** Runs `read` on this node if it leads the partition within its lease, once all it knows committed is applied. */
  async serve<T>(partition: number, read: () => Promise<T>): Promise<T> {
    const hosted = this.hostedOrThrow(partition);
    const check = hosted.replica.serveCheck();
    if (!check.ok) {
      // The only voter of its group (a single node) that cannot lead now (its log met a full disk): no one else can have taken a write, so its store is the truth.
      const config = hosted.replica.config;
      if (config.old === undefined && config.voters.length === 1 && config.voters[0] === this.options.self && !hosted.replica.recovering) return read();
      throw this.notServing(partition, check.code, check.leader);
    }
    await this.appliedThrough(hosted, check.commit);
    return read();
  }

  /** Runs `work` between two applies of the partition's committed ops, never racing them (iorio-admin verify --repair writes to the store). */
  betweenApplies<T>(partition: number, work: () => Promise<T>): Promise<T> {
    const hosted = this.hostedOrThrow(partition);
    const run = hosted.applying.catch(() => undefined).then(work);
    hosted.applying = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Hands the partition's leadership to `target` (leader only; see Replica.transferLeadership); false when it cannot start now. */
  transferLeadership(partition: number, target: string): boolean {
    return this.hosted.get(partition)?.replica.transferLeadership(target) ?? false;
  }

  /** Changes the partition's group (leader only): learners catch up, then joint, then the new group. */
  reconfigure(partition: number, voters: readonly string[]): Promise<void> {
    const hosted = this.hostedOrThrow(partition);
    return new Promise((resolve, reject) =>
      hosted.replica.reconfigure(voters, emptyPayload, (result: ReconfigureResult) => {
        if (result.ok) resolve();
        else reject(result.code === 'not-leader' ? this.notServing(partition, 'not-leader', hosted.replica.leader) : new IorioError(result.code === 'invalid' ? 'invalid-param' : 'unavailable', `partition ${partition}: the group cannot change now (${result.code})`));
      }),
    );
  }

  private propose(partition: number, writes: readonly WriteRequest[], payload: OpPayload, idempotency?: { key: string; digest: string }): Promise<{ firstSeqs: readonly number[]; t: number }> {
    const hosted = this.hostedOrThrow(partition);
    // Refused up front, as a single copy refuses: the store cannot take more (a full disk, failing writes), or a partition log met a full disk just now.
    const refusal = this.options.store.writeRefusal();
    if (refusal !== undefined) return Promise.reject(refusal);
    if (this.options.clock.monotonic() < this.noSpaceUntil) return Promise.reject(noSpaceError());
    return new Promise((resolve, reject) => {
      // Bounded: a leader cut off from its group (its lease ran out with the op in flight) would otherwise hold the client until the cut heals.
      const timer = setTimeout(() => reject(new IorioError('unavailable', `partition ${partition}: the write was not committed within ${proposeTimeoutMs / 1000} s (its leader may be cut off from the group): it may or may not have been written; retry (with the same idempotency key)`)), proposeTimeoutMs);
      timer.unref();
      hosted.replica.propose({ writes, payload, ...(idempotency === undefined ? {} : { key: idempotency.key, keyDigest: idempotency.digest }) }, (result: ProposeResult) => {
        clearTimeout(timer);
        if (!result.ok) return reject(this.refusal(partition, result));
        const t = result.t ?? hosted.replica.entry(result.op)?.t ?? this.options.clock.now();
        // Answered once applied here: a read that follows the answer sees it.
        this.appliedThrough(hosted, result.op).then(() => resolve({ firstSeqs: result.firstSeqs, t }), reject);
      });
    });
  }

  private refusal(partition: number, result: Extract<ProposeResult, { ok: false }>): IorioError {
    const failure = this.hosted.get(partition)?.replica.failed;
    const now = this.options.clock.monotonic();
    if (failure !== undefined && this.noSpace(failure)) this.noSpaceUntil = Math.max(this.noSpaceUntil, now + applyRetryMs * 2);
    if (failure !== undefined && now < this.noSpaceUntil && (result.code === 'unknown' || result.code === 'unavailable')) {
      return new IorioError('insufficient-storage', 'the disk of this node is full; the write may or may not have been taken: retry (with the same idempotency key) once space is freed');
    }
    switch (result.code) {
      case 'conflict':
        return result.stream === undefined
          ? new IorioError('conflict', 'the idempotency key was used for another request')
          : new IorioError('conflict', `expected last seqnum ${result.expected}, the stream is at ${result.lastSeq}`, { expected: result.expected, got: result.lastSeq });
      case 'unknown':
        return new IorioError('unavailable', `partition ${partition} changed leader while the write was in flight: it may or may not have been written; retry (with the same idempotency key)`);
      case 'not-leader':
      case 'unavailable':
        return this.notServing(partition, result.code, result.leader);
    }
  }

  private notServing(partition: number, code: 'not-leader' | 'unavailable', leader: string | undefined): IorioError {
    if (code === 'not-leader' && leader !== undefined) return new IorioError('unavailable', `partition ${partition} is led by ${leader}; retry there`, { leader });
    return new IorioError('unavailable', `partition ${partition} has no leader that can serve now (an election or a lost majority); retry`);
  }

  private hostedOrThrow(partition: number): Hosted {
    const hosted = this.hosted.get(partition);
    if (hosted === undefined) throw new IorioError('unavailable', `this node holds no replica of partition ${partition}`);
    return hosted;
  }

  // --- Applying committed ops ------------------------------------------------

  /**
   * Queues a committed op for the stream store. Ops committed while an
   * apply runs are applied together, one import per stream (a group
   * commit: one store sync for many ops, not one each), in op order; a
   * delete ends a group.
   */
  private apply(hosted: Hosted, entry: LogEntry<OpPayload>): void {
    hosted.queue.push(entry);
    if (hosted.queue.length > 1) return;
    hosted.applying = hosted.applying.then(() => this.drain(hosted));
    hosted.applying.catch((error: unknown) => this.logger.error({ err: error, partition: hosted.partition }, 'replication: committed ops could not be applied to the stream store'));
  }

  private async drain(hosted: Hosted): Promise<void> {
    // Yield once so ops committed in this turn join the group.
    await new Promise((resolve) => setImmediate(resolve));
    while (hosted.queue.length > 0) {
      const batch = hosted.queue.splice(0, hosted.queue.length);
      const pending = new Map<string, Buffer[]>();
      const flush = async (): Promise<void> => {
        const groups = [...pending];
        pending.clear();
        await Promise.all(
          groups.map(([key, records]) => {
            const { bucket, stream } = splitKey(key);
            // Lazy: the partition log holds these ops durably; the store's checkpoint makes them durable there before the log lets them go.
            return this.options.store.importRecords({ bucket, stream, records: Buffer.concat(records), deletedAt: 0, lazy: true });
          }),
        );
      };
      // Entries batch[0..done) are applied whole: a failure retries from there (appends again are no-ops by seqnum; a delete is never run twice).
      let done = 0;
      try {
        for (const [position, entry] of batch.entries()) {
          if (entry.writes.length === 0) continue;
          const bodies = decodePayload(entry.payload);
          for (const [index, write] of entry.writes.entries()) {
            if (write.delete === true) {
              await flush();
              done = position;
              const { bucket, stream } = splitKey(write.stream);
              await this.options.store.deleteStream(bucket, stream);
              // A delete is an op of its own (ClusterStore.deleteStream): applied whole now.
              if (entry.writes.length === 1) done = position + 1;
              continue;
            }
            const records = pending.get(write.stream) ?? [];
            for (const [offset, body] of (bodies[index] ?? []).entries()) records.push(encodeRecord(write.firstSeq + offset, entry.t, entry.epoch, body));
            pending.set(write.stream, records);
          }
        }
        await flush();
        this.markApplied(hosted, batch[batch.length - 1]!.op);
      } catch (error) {
        // Committed ops are never skipped: what is not applied goes back in front, and is tried again in a second (a full disk, failing chunk writes).
        if (done > 0) this.markApplied(hosted, batch[done - 1]!.op);
        hosted.queue.unshift(...batch.slice(done));
        hosted.applyFailures++;
        if (hosted.applyFailures === 1 || hosted.applyFailures % 60 === 0) this.logger.warn({ err: error, partition: hosted.partition, failures: hosted.applyFailures }, 'replication: committed ops could not be applied to the stream store; trying again every second');
        if (this.closed) return;
        await new Promise((resolve) => setTimeout(resolve, applyRetryMs).unref());
        if (this.closed || this.hosted.get(hosted.partition) !== hosted) return;
        continue;
      }
      hosted.applyFailures = 0;
    }
  }

  private markApplied(hosted: Hosted, op: number): void {
    if (op <= hosted.applied) return;
    hosted.applied = op;
    for (let index = hosted.appliedWaiters.length - 1; index >= 0; index--) {
      const waiter = hosted.appliedWaiters[index]!;
      if (waiter.op <= op) {
        hosted.appliedWaiters.splice(index, 1);
        waiter.resolve();
      }
    }
  }

  private appliedThrough(hosted: Hosted, op: number): Promise<void> {
    if (hosted.applied >= op) return Promise.resolve();
    return new Promise((resolve) => hosted.appliedWaiters.push({ op, resolve }));
  }

  // --- State transfer (a follower behind the leader's compaction point) ---------

  /**
   * Copies the leader's stream store for the partition: every stream past
   * what this node holds, in bounded batches, as handoff does (records with
   * their seqnums, timestamps and epochs). The leader has applied at least
   * `upTo`; what it sends may go further, and applying those ops again later
   * writes nothing twice.
   */
  private async fetchState(hosted: Hosted, from: string, upTo: number): Promise<void> {
    const request = <T>(type: number, body: object): Promise<T> => this.options.transport.request<T>(from, type, body, { timeoutMs: 30_000 });
    const state = await request<StateStreams>(MessageType.replicationStateStreams, { p: hosted.partition, upTo });
    const { streams } = state;
    // The leader's remembered idempotency keys come with its state: a retry that reaches this node as leader later is still answered.
    await this.options.logs.putKeys(hosted.partition, state.keys);
    for (const position of streams) {
      let after = this.options.store.lastSeqNow(position.bucket, position.stream);
      while (after < position.last) {
        const batch = await request<{ records: Buffer; lastSeq: number; deletedAt: number }>(MessageType.replicationStateRecords, { p: hosted.partition, bucket: position.bucket, stream: position.stream, after });
        await this.options.store.importRecords({ bucket: position.bucket, stream: position.stream, records: Buffer.from(batch.records), deletedAt: batch.deletedAt, lazy: true });
        if (batch.lastSeq <= after) break;
        after = batch.lastSeq;
      }
      if (position.deletedAt > 0 && position.deletedAt >= position.last) await this.options.store.deleteStream(position.bucket, position.stream);
    }
    this.logger.info({ partition: hosted.partition, from, upTo, streams: streams.length }, 'replication: took the state of a partition from its leader');
  }

  private serveStateStreams(body: { p: number }): StateStreams {
    const hosted = this.hostedOrThrow(body.p);
    if (hosted.replica.role !== 'leader') throw new IorioError('unavailable', `this node does not lead partition ${body.p} now`);
    return { streams: this.options.store.partitionStreams(body.p), keys: this.options.logs.keysOf(body.p) };
  }

  private async serveStateRecords(body: StateRecordsRequest): Promise<{ records: Buffer; lastSeq: number; deletedAt: number }> {
    this.hostedOrThrow(body.p);
    const batch = await this.options.store.exportRecords(body.bucket, body.stream, body.after, stateBatchBytes);
    return { records: batch.records, lastSeq: batch.lastSeq, deletedAt: batch.deletedAt };
  }

  // --- Messages ----------------------------------------------------------------

  private post(to: string, envelope: Envelope): void {
    const box = this.outbox.get(to);
    if (box === undefined) this.outbox.set(to, [envelope]);
    else box.push(envelope);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** One frame per peer for everything posted this turn; a peer that cannot take it loses it (the protocol resends). */
  private flush(): void {
    this.flushScheduled = false;
    for (const [peer, envelopes] of this.outbox) {
      this.outbox.delete(peer);
      try {
        this.options.transport.send(peer, MessageType.replicationBatch, envelopes);
      } catch (error) {
        this.logger.warn({ err: error, peer, messages: envelopes.length }, 'replication: a batch could not be sent');
      }
    }
  }

  private receive(body: unknown, from: string): void {
    if (!Array.isArray(body)) return;
    for (const envelope of body as Envelope[]) {
      const hosted = this.hosted.get(envelope.p);
      if (hosted === undefined || envelope.m.from !== from) continue;
      hosted.replica.receive(envelope.m);
      this.noticeLeader(hosted);
    }
  }

  private tick(): void {
    const keep = this.options.keepOps ?? keepOpsDefault;
    let wantCheckpoint = false;
    for (const hosted of [...this.hosted.values()]) {
      const failure = hosted.replica.failed;
      if (failure !== undefined) {
        // Its partition log could not be written (a full disk, an I/O error): the replica stops, and a second later starts again from its log, as after a restart.
        const now = this.options.clock.monotonic();
        if (hosted.failedAt === undefined) {
          hosted.failedAt = now;
          if (this.noSpace(failure)) this.noSpaceUntil = Math.max(this.noSpaceUntil, now + applyRetryMs * 2);
          this.logger.warn({ err: failure, partition: hosted.partition }, 'replication: the partition log could not be written; the replica starts again from its log in a second');
        } else if (now - hosted.failedAt >= applyRetryMs) {
          this.reopen(hosted);
        }
        continue;
      }
      hosted.replica.tick();
      this.noticeLeader(hosted);
      // Bounded memory: what is applied here and `keep` ops old goes; a follower further behind takes the state.
      // Only what a store checkpoint made durable: the store took those ops lazily, and after a crash they come back from this log.
      const replica = hosted.replica;
      if (hosted.applied - replica.compactedThrough <= 2 * keep) continue;
      const upTo = Math.min(hosted.applied - keep, hosted.durable);
      if (upTo > replica.compactedThrough) replica.compact(upTo);
      if (hosted.durable < hosted.applied - keep) wantCheckpoint = true;
    }
    if (wantCheckpoint) this.checkpointStore();
  }

  /** Why appends are refused up front now (a partition log met a full disk), or undefined. */
  writeRefusal(): string | undefined {
    return this.options.clock.monotonic() < this.noSpaceUntil ? noSpaceError().message : undefined;
  }

  /** A failed replica, opened again from its partition log; clients waiting for its ops to apply wait on the new one. */
  private reopen(hosted: Hosted): void {
    this.hosted.delete(hosted.partition);
    this.open(hosted.partition, hosted.members);
    const fresh = this.hosted.get(hosted.partition);
    if (fresh === undefined) return;
    fresh.appliedWaiters.push(...hosted.appliedWaiters.splice(0));
    fresh.applying = hosted.applying.catch(() => undefined);
  }

  /** A full disk, as the OS or lmdb reports it, or an I/O error while the partition log's file system has no room left. */
  private noSpace(error: Error): boolean {
    // lmdb reports ENOSPC as errno 28 with its own message.
    if (isNoSpaceError(error) || (error as { code?: unknown }).code === 28 || /no space left|MDB_MAP_FULL/i.test(error.message)) return true;
    return this.options.logs.diskFull();
  }

  /** One store checkpoint at a time, for every partition: what each had applied when it began is durable once it ends. */
  private checkpointStore(): void {
    if (this.checkpointing) return;
    this.checkpointing = true;
    const appliedBefore = new Map([...this.hosted.values()].map((hosted) => [hosted, hosted.applied] as const));
    this.options.store
      .checkpointAfterNow()
      .then(
        () => {
          for (const [hosted, applied] of appliedBefore) hosted.durable = Math.max(hosted.durable, applied);
        },
        (error: unknown) => this.logger.warn({ err: error }, 'replication: a store checkpoint failed; the partition logs keep their ops until one succeeds'),
      )
      .finally(() => {
        this.checkpointing = false;
      });
  }

  private noticeLeader(hosted: Hosted): void {
    const leader = hosted.replica.leader;
    if (leader !== hosted.leader) {
      hosted.leader = leader;
      this.options.onLeaderChange?.(hosted.partition, leader);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.unsubscribe();
    await Promise.all([...this.hosted.values()].map((hosted) => hosted.applying.catch(() => undefined)));
    this.hosted.clear();
  }
}
