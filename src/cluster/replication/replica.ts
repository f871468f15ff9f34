/**
 * One replica of one partition's replicated log (DESIGN §7b).
 *
 * The protocol is Viewstamped Replication Revisited's, with Raft's log
 * matching for the followers and pre-vote and leases for the leader:
 *
 * - An epoch has at most one leader: a candidate needs promises from a
 *   majority, and a replica promises each epoch once, durably, before it
 *   answers.
 * - A replica promises only a candidate whose log is at least as good as its
 *   own by VR's rule: the higher *normal epoch* (the last epoch in which the
 *   replica's whole log was known to be a prefix of that epoch's leader's),
 *   then the higher last op. The winner's log is therefore the one VR's view
 *   change would adopt among that majority; it never fetches another's.
 *   Entries' own epochs are never used to choose (Raft's Figure 8).
 * - Followers accept a leader's entries only where the op before them
 *   matches (op and entry epoch), drop only entries that conflict with the
 *   leader's, and take the leader's epoch as their normal epoch only when
 *   their whole log is verified against the leader's and holds everything
 *   the leader held when its epoch began (VR enters normal status with the
 *   whole log of the view's start). A follower never
 *   truncates on its own (KIP-101) and refuses any message of an epoch below
 *   its promise (KIP-279).
 * - An op is committed when a majority hold it durably with the leader's
 *   epoch as their normal epoch; the client is answered once W do. Reads
 *   serve only committed entries, only from a leader that holds a lease and
 *   has committed everything its log held when it was elected.
 * - Lease: a follower that heard from a leader promises no one else for an
 *   election timeout (also after a restart), so an acknowledgement of a
 *   message the leader sent at t lets it serve until t + leaseMs, with
 *   leaseMs shorter than the election timeout by the drift margin. A leader
 *   paused past its lease answers `unavailable` the moment it wakes.
 * - A replica whose log came back from recovery shorter than what it had
 *   acknowledged is recovering: it never leads, its acknowledgements do not
 *   count, and it votes only for a log at least as good as the one it had
 *   acknowledged, until the leader has filled it in again (Protocol-Aware
 *   Recovery: it is never taken as the source of a shorter log).
 *
 * Pure of I/O: time, messages, randomness and the disk come through `env`
 * and `storage`, with callbacks rather than promises, so the simulator runs
 * exactly this code, deterministically.
 */

import {
  type AppendMessage,
  type AppendReply,
  type InstallMessage,
  type GroupConfig,
  type KeyRecord,
  majorityOf,
  sameMembers,
  type StreamWrite,
  defaultTiming,
  type DurableState,
  type LogEntry,
  type LogWrite,
  type ProposeRequest,
  type ProposeResult,
  type ReplicaEnv,
  type ReplicaId,
  type ReplicaMeta,
  type ReplicaStorage,
  type ReplicaTiming,
  type ReplicationMessage,
  type TimeoutNowMessage,
  type VoteReply,
  type VoteRequest,
} from './types.js';

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

export interface ReplicaOptions<P> {
  readonly self: ReplicaId;
  /** The group to start with, in preflist order (the first live one tries first in an election); the log's configuration ops override it. */
  readonly members: readonly ReplicaId[];
  /** Replicas that must hold an op durably before its client is answered (at least a majority). */
  readonly w: number;
  readonly timing?: Partial<ReplicaTiming>;
  readonly env: ReplicaEnv<P>;
  readonly storage: ReplicaStorage<P>;
  /** What recovery read back from disk. */
  readonly durable: DurableState<P>;
}

type Waiter = (result: ProposeResult) => void;

export type ReconfigureResult = { readonly ok: true } | { readonly ok: false; readonly code: 'not-leader' | 'unavailable' | 'invalid' };



interface Follower {
  /** The next op to send. */
  next: number;
  /** Ops it acknowledged as matching and durable, normal or not (what to resend from). */
  acked: number;
  /** The same, counted only from normal acknowledgements: what commits. */
  match: number;
  /** The leader's monotonic send time of the newest message it acknowledged in this epoch. */
  ackedSentAt: number;
  /** When something was last sent (heartbeats fill gaps). */
  lastSentAt: number;
  /** When its acknowledgements last moved (no move for two heartbeats: resend from acked + 1). */
  lastProgressAt: number;
}

export { majorityOf } from '../../core/replication.js';

export class Replica<P> {
  readonly self: ReplicaId;
  readonly w: number;
  private readonly timing: ReplicaTiming;
  private readonly env: ReplicaEnv<P>;
  private readonly storage: ReplicaStorage<P>;
  /** The group as of `base`; configuration ops in the log (`configOps`) override it. */
  private baseConfig: GroupConfig;
  private configOps: number[] = [];
  /** A change this leader is driving: learners catch up, then joint, then the new group. */
  private change: { voters: readonly ReplicaId[]; payload: P; done: (result: ReconfigureResult) => void } | undefined;

  // Durable state, as this replica means it (writes may still be in flight).
  private promisedEpoch: number;
  private normal: number;
  /** Ops base+1 .. lastOp; everything up to `base` is applied to the state machine and compacted away. */
  private readonly log: LogEntry<P>[];
  private base: number;
  private baseEpoch: number;

  private roleNow: Role = 'follower';
  private leaderId: ReplicaId | undefined;
  private lastLeaderContact: number;
  private electionDeadline = 0;
  /** A leader handing over (transferLeadership): to whom, until when, and whether the target was told to campaign. */
  private transfer: { readonly target: ReplicaId; readonly deadline: number; told: boolean } | undefined;
  private highestSeen: number;
  private votes = new Set<ReplicaId>();
  private recoverTo = 0;
  private failedWith: Error | undefined;

  private commitOp = 0;
  private appliedOp = 0;
  private verifiedEpoch = 0;
  private verifiedThrough = 0;

  // Leader state.
  private readonly followers = new Map<ReplicaId, Follower>();
  private epochStartOp = 0;
  private selfNormalDurable = false;
  private lastHeartbeat = 0;
  private readonly waiters = new Map<number, { firstSeqs: readonly number[]; epoch: number; list: Waiter[] }>();
  private readonly streamLast = new Map<string, number>();
  /** Idempotency keys of this leader's log, kept past compaction (bounded). */
  private readonly keyIndex = new Map<string, KeyRecord>();
  private installing = false;

  // Durability: writes complete in order; callbacks wait for the last issued.
  private readonly writeQueue: { lastOp: number; after: (() => void)[] }[] = [];
  private durableLastOp: number;

  constructor(options: ReplicaOptions<P>) {
    this.self = options.self;
    const majority = majorityOf(options.members.length);
    // No members: a learner that waits for the group's configuration ops (it never campaigns meanwhile).
    if (options.members.length > 0 && (options.w < majority || options.w > options.members.length)) {
      throw new Error(`w = ${options.w} must be at least a majority (${majority}) of the ${options.members.length} replicas and at most all of them`);
    }
    this.w = options.w;
    this.baseConfig = options.durable.baseConfig ?? { voters: options.members };
    this.timing = { ...defaultTiming, ...options.timing };
    this.env = options.env;
    this.storage = options.storage;
    const { meta, entries } = options.durable;
    this.promisedEpoch = meta.promised;
    this.highestSeen = meta.promised;
    this.normal = meta.normalEpoch;
    this.base = options.durable.base ?? 0;
    this.baseEpoch = options.durable.baseEpoch ?? 0;
    this.log = [...entries];
    for (let index = 0; index < this.log.length; index++) {
      if (this.log[index]!.op !== this.base + index + 1) throw new Error(`log entry ${index} has op ${this.log[index]!.op} after base ${this.base}`);
      if (this.log[index]!.config !== undefined) this.configOps.push(this.log[index]!.op);
    }
    // What is compacted was committed and applied.
    this.commitOp = this.base;
    this.appliedOp = this.base;
    this.verifiedThrough = this.base;
    this.durableLastOp = this.lastOp;
    if (this.lastOp < meta.lastOp) this.recoverTo = meta.lastOp;
    // A restarted replica promises no one for an election timeout: a leader's lease may rest on it.
    this.lastLeaderContact = this.env.monotonic();
    this.resetElectionDeadline(this.lastLeaderContact);
    // The only voter of its group (a single node): no other leader can exist, so it leads at its first tick instead of after a timeout.
    const config = this.config;
    if (config.old === undefined && config.voters.length === 1 && config.voters[0] === this.self) this.electionDeadline = this.lastLeaderContact;
  }

  // --- What others may ask -------------------------------------------------

  get role(): Role {
    return this.roleNow;
  }
  get epoch(): number {
    return this.promisedEpoch;
  }
  get normalEpoch(): number {
    return this.normal;
  }
  get lastOp(): number {
    return this.base + this.log.length;
  }
  /** The group now: the last configuration op in the log, committed or not (Raft's rule), else the one as of the compaction point. */
  get config(): GroupConfig {
    const op = this.configOps[this.configOps.length - 1];
    return op === undefined ? this.baseConfig : this.entry(op)!.config!;
  }

  /** Whether `config` is committed (a replica outside a committed group may let its copy go). */
  get configCommitted(): boolean {
    return (this.configOps[this.configOps.length - 1] ?? this.base) <= this.commitOp;
  }

  /** Every replica the group's decisions need now: the voters, and the old voters while the group is joint. */
  protected voterSets(config: GroupConfig = this.config): (readonly ReplicaId[])[] {
    return config.old === undefined ? [config.voters] : [config.voters, config.old];
  }

  private isVoter(id: ReplicaId, config: GroupConfig = this.config): boolean {
    return config.voters.includes(id) || (config.old?.includes(id) ?? false);
  }

  /** Everyone a leader sends to: voters, old voters, and learners of a change under way. */
  private peers(): ReplicaId[] {
    const config = this.config;
    const all = new Set([...config.voters, ...(config.old ?? []), ...(this.change?.voters ?? [])]);
    all.delete(this.self);
    return [...all];
  }

  /** A majority of every voter set among `ids`. */
  private quorumAmong(ids: ReadonlySet<ReplicaId>, config: GroupConfig = this.config): boolean {
    return this.voterSets(config).every((set) => set.filter((id) => ids.has(id)).length >= majorityOf(set.length));
  }

  /** Ops up to here are compacted out of this replica's log (held by the state machine). */
  get compactedThrough(): number {
    return this.base;
  }
  get applied(): number {
    return this.appliedOp;
  }
  get commit(): number {
    return this.commitOp;
  }
  get leader(): ReplicaId | undefined {
    return this.leaderId;
  }
  get recovering(): boolean {
    return this.recoverTo > 0;
  }
  get failed(): Error | undefined {
    return this.failedWith;
  }

  entry(op: number): LogEntry<P> | undefined {
    return op > this.base ? this.log[op - this.base - 1] : undefined;
  }

  /** The entries from `from` to `to` (inclusive) still in the log (not compacted). */
  entries(from = this.base + 1, to = this.lastOp): readonly LogEntry<P>[] {
    return this.log.slice(Math.max(0, from - this.base - 1), Math.max(0, to - this.base));
  }

  /** The epoch of op `op`: 0 for op 0; undefined when compacted (committed) or beyond the log. */
  private epochAt(op: number): number | undefined {
    if (op === 0) return 0;
    if (op === this.base) return this.baseEpoch;
    return this.entry(op)?.epoch;
  }

  /** Whether this log holds op `op` with that epoch; everything up to `base` is committed, so it matches any leader's. */
  private matches(op: number, epoch: number): boolean {
    if (op <= this.base) return true;
    return this.entry(op)?.epoch === epoch;
  }

  /**
   * Drops ops up to `upTo` (at most what is applied) from memory, and from
   * the log on disk: the state machine holds them. A follower that needs
   * them later gets the state instead (`fetchState`).
   */
  compact(upTo: number): void {
    const through = Math.min(upTo, this.appliedOp);
    if (through <= this.base) return;
    this.baseEpoch = this.epochAt(through)!;
    const compacted = this.configOps.filter((op) => op <= through);
    if (compacted.length > 0) this.baseConfig = this.entry(compacted[compacted.length - 1]!)!.config!;
    this.configOps = this.configOps.filter((op) => op > through);
    this.log.splice(0, through - this.base);
    this.base = through;
    this.persist({ entries: [], base: { op: this.base, epoch: this.baseEpoch, config: this.baseConfig } });
  }

  /** How far each follower has acknowledged (leader only): for `iorio-admin partitions`. */
  progress(): { replica: ReplicaId; match: number }[] {
    if (this.roleNow !== 'leader') return [];
    return [...this.followers].map(([replica, follower]) => ({ replica, match: follower.match }));
  }

  /** Whether this replica may serve reads now, and up to which op: the leader, within its lease, with its start committed. */
  serveCheck(): { ok: true; commit: number } | { ok: false; code: 'not-leader' | 'unavailable'; leader?: ReplicaId } {
    if (this.failedWith !== undefined) return { ok: false, code: 'unavailable' };
    if (this.roleNow !== 'leader') return this.leaderId === undefined || this.leaderId === this.self ? { ok: false, code: 'unavailable' } : { ok: false, code: 'not-leader', leader: this.leaderId };
    if (!this.servesDuringTransfer() && this.transfer !== undefined) return { ok: false, code: 'unavailable' };
    if (!this.leaseValid() || this.commitOp < this.epochStartOp) return { ok: false, code: 'unavailable' };
    return { ok: true, commit: this.readableOp() };
  }

  /** Reads show committed ops only. */
  protected readableOp(): number {
    return this.commitOp;
  }

  /** The last seqnum of a stream in this leader's log, committed or not (0: none); compacted ops are the state machine's. A delete keeps it: seqnums never restart. */
  lastSeqOf(stream: string): number {
    return this.streamLast.get(stream) ?? this.env.committedLastSeq?.(stream) ?? 0;
  }

  // --- Client writes ---------------------------------------------------------

  propose(request: ProposeRequest<P>, done: Waiter): void {
    if (this.failedWith !== undefined) return done({ ok: false, code: 'unavailable' });
    if (this.roleNow !== 'leader') {
      return done(this.leaderId !== undefined && this.leaderId !== this.self ? { ok: false, code: 'not-leader', leader: this.leaderId } : { ok: false, code: 'unavailable' });
    }
    if (!this.leaseValid() || (this.transfer !== undefined && !this.servesDuringTransfer())) return done({ ok: false, code: 'unavailable' });
    if (request.key !== undefined) {
      const known = this.keyIndex.get(request.key) ?? this.env.committedKey?.(request.key);
      if (known !== undefined) {
        if (known.digest !== request.keyDigest) return done({ ok: false, code: 'conflict' });
        if (known.op <= this.answerableOp()) return done({ ok: true, firstSeqs: known.firstSeqs, op: known.op, epoch: known.epoch, duplicate: true, ...(known.t === undefined ? {} : { t: known.t }) });
        this.wait(known.op, known.firstSeqs, known.epoch, (result) => done(result.ok ? { ...result, duplicate: true } : result));
        return;
      }
    }
    if (this.lastOp - this.commitOp >= this.timing.inflightMax) return done({ ok: false, code: 'unavailable' });
    const writes: StreamWrite[] = [];
    for (const write of request.writes) {
      const last = this.lastSeqOf(write.stream);
      if (write.expectSeq !== undefined && write.expectSeq !== last) return done({ ok: false, code: 'conflict', stream: write.stream, lastSeq: last, expected: write.expectSeq });
      writes.push({ stream: write.stream, firstSeq: last + 1, count: write.delete === true ? 0 : write.count, ...(write.delete === true ? { delete: true } : {}) });
    }
    const entry: LogEntry<P> = {
      epoch: this.promisedEpoch,
      op: this.lastOp + 1,
      writes,
      t: this.env.now(),
      ...(request.key === undefined ? {} : { key: request.key, keyDigest: request.keyDigest ?? '' }),
      payload: request.payload,
    };
    this.log.push(entry);
    this.index(entry);
    this.wait(entry.op, writes.map((write) => write.firstSeq), entry.epoch, done);
    this.persist({ entries: [entry] });
    this.replicate();
  }

  // --- Time ------------------------------------------------------------------

  tick(): void {
    if (this.failedWith !== undefined) return;
    const now = this.env.monotonic();
    if (this.roleNow === 'leader') {
      // A transfer that did not end within its time: step down rather than serve again in this epoch.
      if (this.transfer !== undefined && now >= this.transfer.deadline) return this.stepDown();
      if (now - this.lastHeartbeat >= this.timing.heartbeatMs) this.heartbeat(now);
      return;
    }
    if (now >= this.electionDeadline) this.startPreVote(now);
  }

  // --- Messages --------------------------------------------------------------

  receive(message: ReplicationMessage<P>): void {
    if (this.failedWith !== undefined) return;
    // Any replica may write: a learner before it is a voter, a removed voter until it hears the change. Votes count only from voters.
    if (message.from === this.self) return;
    switch (message.type) {
      case 'append':
        return this.onAppend(message);
      case 'install':
        return this.onInstall(message);
      case 'append-reply':
        return this.onAppendReply(message);
      case 'pre-vote':
      case 'vote':
        return this.onVoteRequest(message);
      case 'pre-vote-reply':
      case 'vote-reply':
        return this.onVoteReply(message);
      case 'timeout-now':
        return this.onTimeoutNow(message);
    }
  }

  // --- Follower --------------------------------------------------------------

  private onAppend(message: AppendMessage<P>): void {
    const now = this.env.monotonic();
    if (message.epoch < this.promisedEpoch) {
      const reply: AppendReply = { type: 'append-reply', from: this.self, epoch: this.promisedEpoch, ok: false, matchOp: 0, normal: false, hint: this.lastOp, sentAt: message.sentAt };
      return this.env.send(message.from, reply);
    }
    let metaChanged = false;
    if (message.epoch > this.promisedEpoch || this.roleNow !== 'follower') {
      if (message.epoch > this.promisedEpoch) metaChanged = true;
      this.becomeFollower(message.epoch);
    }
    this.leaderId = message.from;
    this.lastLeaderContact = now;
    this.resetElectionDeadline(now);

    const reject = (hint: number): void => {
      const reply: AppendReply = { type: 'append-reply', from: this.self, epoch: this.promisedEpoch, ok: false, matchOp: 0, normal: false, hint, sentAt: message.sentAt };
      if (metaChanged) this.persist({ entries: [] }, () => this.env.send(message.from, reply));
      else this.afterDurable(() => this.env.send(message.from, reply));
    };
    if (message.prevOp > this.lastOp) return reject(this.lastOp);
    if (!this.matches(message.prevOp, message.prevEpoch)) {
      // Skip back over the whole conflicting epoch, but never below what is known committed.
      const conflictEpoch = this.epochAt(message.prevOp);
      let hint = message.prevOp - 1;
      while (hint > this.commitOp && this.epochAt(hint) === conflictEpoch) hint--;
      return reject(hint);
    }

    // Matching prefix: keep what agrees, drop from the first conflict, append the rest.
    let truncateAfter: number | undefined;
    let index = 0;
    for (; index < message.entries.length; index++) {
      const entry = message.entries[index]!;
      if (entry.op > this.lastOp) break;
      if (!this.matches(entry.op, entry.epoch)) {
        truncateAfter = entry.op - 1;
        break;
      }
    }
    const fresh = message.entries.slice(index);
    if (truncateAfter !== undefined) this.truncate(truncateAfter);
    const verified = message.prevOp + message.entries.length;
    // Entries past the leader's end, from older epochs, are in no leader's log: not committed.
    if (fresh.length === 0 && this.lastOp > message.leaderLast && message.leaderLast >= verified && message.leaderLast >= this.base) {
      const beyond = this.entry(message.leaderLast + 1);
      if (beyond !== undefined && beyond.epoch < message.epoch) {
        this.truncate(message.leaderLast);
        truncateAfter = Math.min(truncateAfter ?? Infinity, message.leaderLast);
      }
    }
    for (const entry of fresh) {
      this.log.push(entry);
      if (entry.config !== undefined) this.configOps.push(entry.op);
    }
    if (this.verifiedEpoch !== message.epoch) {
      this.verifiedEpoch = message.epoch;
      this.verifiedThrough = this.base;
    }
    this.verifiedThrough = Math.max(this.verifiedThrough, this.base, Math.min(verified, this.lastOp));
    // The whole log is the leader's when everything past the verified part is of the leader's epoch;
    // normal in the epoch once it also holds all the leader held when the epoch began.
    const next = this.entry(this.verifiedThrough + 1);
    const wholeLogVerified = (next === undefined || next.epoch === message.epoch) && this.holdsEpochStart(message);
    if (wholeLogVerified && this.normal !== message.epoch) {
      this.normal = message.epoch;
      metaChanged = true;
    }
    if (this.recoverTo > 0 && wholeLogVerified && this.lastOp >= Math.min(this.recoverTo, message.leaderLast)) {
      this.recoverTo = 0;
      metaChanged = true;
    }
    const matchOp = wholeLogVerified ? this.lastOp : this.verifiedThrough;
    const normal = wholeLogVerified && this.recoverTo === 0;
    this.learnCommit(Math.min(message.commit, matchOp));

    const reply: AppendReply = { type: 'append-reply', from: this.self, epoch: this.promisedEpoch, ok: true, matchOp, normal, hint: 0, sentAt: message.sentAt };
    if (fresh.length > 0 || truncateAfter !== undefined || metaChanged) {
      this.persist({ ...(truncateAfter === undefined ? {} : { truncateAfter }), entries: fresh }, () => this.env.send(message.from, reply));
    } else {
      this.afterDurable(() => this.env.send(message.from, reply));
    }
  }

  private truncate(after: number): void {
    if (after < this.commitOp) throw new Error(`${this.self}: refusing to truncate committed op ${this.commitOp} (to ${after})`);
    this.log.length = after - this.base;
    this.configOps = this.configOps.filter((op) => op <= after);
    if (this.verifiedThrough > after) this.verifiedThrough = after;
  }

  private learnCommit(commit: number): void {
    if (commit > this.commitOp) {
      this.commitOp = Math.min(commit, this.lastOp);
      this.applyCommitted();
    }
  }

  private applyCommitted(): void {
    while (this.appliedOp < this.commitOp) {
      this.appliedOp++;
      this.env.applied?.(this.entry(this.appliedOp)!);
    }
  }

  /**
   * The leader has compacted what this replica lacks: take its state up to
   * `base` (the env copies it into the state machine), drop this log, and go
   * on from there. Entries this replica had acknowledged beyond `base` are
   * dropped too, so it counts as recovering until the leader refills them.
   */
  private onInstall(message: InstallMessage): void {
    if (message.epoch < this.promisedEpoch) {
      const reply: AppendReply = { type: 'append-reply', from: this.self, epoch: this.promisedEpoch, ok: false, matchOp: 0, normal: false, hint: this.lastOp, sentAt: message.sentAt };
      return this.env.send(message.from, reply);
    }
    const asAppend: AppendMessage<P> = { type: 'append', from: message.from, epoch: message.epoch, prevOp: message.base, prevEpoch: message.baseEpoch, entries: [], leaderLast: message.leaderLast, epochStart: message.epochStart, commit: message.commit, sentAt: message.sentAt };
    if (this.lastOp >= message.base && this.matches(message.base, message.baseEpoch)) return this.onAppend(asAppend);
    if (this.installing || this.env.fetchState === undefined) return;
    this.installing = true;
    const epoch = message.epoch;
    this.env.fetchState(message.from, message.base, (ok) => {
      this.installing = false;
      if (!ok || this.failedWith !== undefined || this.promisedEpoch > epoch) return;
      if (this.lastOp >= message.base && this.matches(message.base, message.baseEpoch)) return this.onAppend(asAppend);
      if (this.lastOp > this.base) this.recoverTo = Math.max(this.recoverTo, this.lastOp);
      this.log.length = 0;
      this.configOps = [];
      this.base = message.base;
      this.baseEpoch = message.baseEpoch;
      this.baseConfig = message.baseConfig;
      this.commitOp = Math.max(this.commitOp, this.base);
      this.appliedOp = Math.max(this.appliedOp, this.base);
      this.verifiedThrough = this.base;
      this.persist({ truncateAfter: this.base, entries: [], base: { op: this.base, epoch: this.baseEpoch, config: this.baseConfig } });
      this.onAppend(asAppend);
    });
  }

  private becomeFollower(epoch: number): void {
    const wasLeader = this.roleNow === 'leader';
    this.transfer = undefined;
    this.promisedEpoch = epoch;
    this.highestSeen = Math.max(this.highestSeen, epoch);
    this.roleNow = 'follower';
    this.leaderId = undefined;
    this.votes.clear();
    if (wasLeader) {
      this.followers.clear();
      this.failWaiters('unknown');
      const change = this.change;
      this.change = undefined;
      change?.done({ ok: false, code: 'unavailable' });
    }
  }

  // --- Elections -------------------------------------------------------------

  private resetElectionDeadline(now: number): void {
    const rank = Math.max(0, this.config.voters.indexOf(this.self));
    this.electionDeadline = now + this.timing.electionTimeoutMs + rank * this.timing.electionStepMs + this.env.random() * this.timing.electionJitterMs;
  }

  private heardFromLeaderRecently(now: number): boolean {
    return now - this.lastLeaderContact < this.timing.electionTimeoutMs;
  }

  /** VR's order: normal epoch, then last op (never the entries' own epochs: Raft's Figure 8). */
  protected logAtLeastAsGood(request: VoteRequest): boolean {
    // A recovering replica compares with what it had acknowledged before the damage, not with what is left.
    const lastOp = Math.max(this.lastOp, this.recoverTo);
    return request.normalEpoch > this.normal || (request.normalEpoch === this.normal && request.lastOp >= lastOp);
  }

  /** Whether this log reaches what the leader held when its epoch began. */
  protected holdsEpochStart(message: AppendMessage<P>): boolean {
    return this.lastOp >= message.epochStart;
  }

  /** The epoch of the last entry (0 for an empty log). */
  protected lastEntryEpoch(): number {
    return this.log[this.log.length - 1]?.epoch ?? this.baseEpoch;
  }

  /** The k-th highest of the replicas' matches: what k replicas hold. */
  protected heldByAtLeast(matches: readonly number[], k: number): number {
    return matches[k - 1] ?? 0;
  }

  private startPreVote(now: number): void {
    this.resetElectionDeadline(now);
    // A recovering replica never leads; a learner or a removed voter never campaigns.
    if (this.recoverTo > 0 || !this.isVoter(this.self)) return;
    this.votes = new Set([this.self]);
    if (this.quorumAmong(this.votes)) return this.startElection();
    this.roleNow = 'pre-candidate';
    this.leaderId = undefined;
    const request: VoteRequest = { type: 'pre-vote', from: this.self, epoch: this.highestSeen + 1, normalEpoch: this.normal, lastOp: this.lastOp, lastEpoch: this.lastEntryEpoch() };
    for (const other of this.peers()) this.env.send(other, request);
  }

  private startElection(transfer = false): void {
    this.roleNow = 'candidate';
    this.leaderId = undefined;
    const epoch = this.highestSeen + 1;
    this.promisedEpoch = epoch;
    this.highestSeen = epoch;
    this.votes = new Set([this.self]);
    const request: VoteRequest = { type: 'vote', from: this.self, epoch, normalEpoch: this.normal, lastOp: this.lastOp, lastEpoch: this.lastEntryEpoch(), ...(transfer ? { transfer: true } : {}) };
    this.persist({ entries: [] }, () => {
      if (this.roleNow !== 'candidate' || this.promisedEpoch !== epoch) return;
      if (this.quorumAmong(this.votes)) return this.becomeLeader();
      for (const other of this.peers()) this.env.send(other, request);
    });
  }

  private onVoteRequest(request: VoteRequest): void {
    const now = this.env.monotonic();
    const logOk = this.logAtLeastAsGood(request);
    // A transfer's vote is granted though the leader was heard: that leader sent the candidate (and stopped serving first).
    const free = request.transfer === true ? this.roleNow !== 'leader' || this.transfer?.target === request.from : this.roleNow !== 'leader' && !this.heardFromLeaderRecently(now);
    const granted = request.epoch > this.promisedEpoch && logOk && free;
    const better = !logOk && this.recoverTo === 0;
    const replyType = request.type === 'pre-vote' ? 'pre-vote-reply' : 'vote-reply';
    if (request.epoch > this.highestSeen) this.highestSeen = request.epoch;
    if (!granted) {
      const reply: VoteReply = { type: replyType, from: this.self, epoch: request.epoch, granted: false, promised: this.promisedEpoch, better };
      this.env.send(request.from, reply);
      // A replica with a better log that hears no leader tries at once rather than waiting its turn.
      if (better && this.roleNow === 'follower' && !this.heardFromLeaderRecently(now)) this.startPreVote(now);
      return;
    }
    if (request.type === 'pre-vote') {
      return this.env.send(request.from, { type: replyType, from: this.self, epoch: request.epoch, granted: true, promised: this.promisedEpoch, better: false });
    }
    // A promise is durable before it is answered.
    this.becomeFollower(request.epoch);
    this.resetElectionDeadline(now);
    const reply: VoteReply = { type: replyType, from: this.self, epoch: request.epoch, granted: true, promised: request.epoch, better: false };
    this.persist({ entries: [] }, () => this.env.send(request.from, reply));
  }

  private onVoteReply(reply: VoteReply): void {
    if (reply.promised > this.highestSeen) this.highestSeen = reply.promised;
    if (!reply.granted) return;
    if (reply.type === 'pre-vote-reply') {
      if (this.roleNow !== 'pre-candidate' || reply.epoch !== this.highestSeen + 1) return;
      this.votes.add(reply.from);
      if (this.quorumAmong(this.votes)) this.startElection();
      return;
    }
    if (this.roleNow !== 'candidate' || reply.epoch !== this.promisedEpoch) return;
    this.votes.add(reply.from);
    if (this.quorumAmong(this.votes)) this.becomeLeader();
  }

  private becomeLeader(): void {
    const now = this.env.monotonic();
    this.roleNow = 'leader';
    this.leaderId = this.self;
    this.normal = this.promisedEpoch;
    this.epochStartOp = this.lastOp;
    this.selfNormalDurable = false;
    this.followers.clear();
    this.addFollowers(now);
    this.streamLast.clear();
    this.keyIndex.clear();
    for (const entry of this.log) this.index(entry);
    const epoch = this.promisedEpoch;
    this.persist({ entries: [] }, () => {
      if (this.roleNow === 'leader' && this.promisedEpoch === epoch) {
        this.selfNormalDurable = true;
        this.advanceCommit();
      }
    });
    this.heartbeat(now);
  }

  // --- Leader ----------------------------------------------------------------

  private index(entry: LogEntry<P>): void {
    for (const write of entry.writes) if (write.count > 0) this.streamLast.set(write.stream, write.firstSeq + write.count - 1);
    if (entry.key !== undefined) {
      this.keyIndex.set(entry.key, { op: entry.op, firstSeqs: entry.writes.map((write) => write.firstSeq), epoch: entry.epoch, digest: entry.keyDigest, t: entry.t });
      // Bounded: the oldest keys go first (Map keeps insertion order).
      if (this.keyIndex.size > this.timing.keysMax) this.keyIndex.delete(this.keyIndex.keys().next().value!);
    }
  }

  /** Followers for every peer not yet followed (a new configuration op, or learners of a change). */
  private addFollowers(now: number): void {
    for (const peer of this.peers()) {
      if (!this.followers.has(peer)) this.followers.set(peer, { next: this.lastOp + 1, acked: 0, match: 0, ackedSentAt: -Infinity, lastSentAt: -Infinity, lastProgressAt: now });
    }
  }

  /** Within a lease from a majority of every voter set. */
  protected leaseValid(): boolean {
    let expiry = Infinity;
    for (const set of this.voterSets()) {
      const acked = set.map((id) => (id === this.self ? Infinity : (this.followers.get(id)?.ackedSentAt ?? -Infinity))).sort((a, b) => b - a);
      expiry = Math.min(expiry, acked[majorityOf(set.length) - 1]! + this.timing.leaseMs);
    }
    return this.env.monotonic() < expiry;
  }

  private heartbeat(now: number): void {
    this.lastHeartbeat = now;
    for (const [id, follower] of this.followers) {
      // No progress for two heartbeats: what was sent may be lost; send again from what it holds.
      if (follower.acked < this.lastOp && now - follower.lastProgressAt >= 2 * this.timing.heartbeatMs) {
        follower.next = follower.acked + 1;
        follower.lastProgressAt = now;
      }
      this.sendAppend(id, follower, now, true);
    }
  }

  /** Sends what each follower lacks, pipelined. */
  private replicate(): void {
    const now = this.env.monotonic();
    for (const [id, follower] of this.followers) {
      if (follower.next <= this.lastOp) this.sendAppend(id, follower, now, false);
    }
  }

  private sendAppend(id: ReplicaId, follower: Follower, now: number, evenIfEmpty: boolean): void {
    if (follower.next <= this.base) {
      // What it lacks is compacted here: it takes the state instead.
      const install: InstallMessage = { type: 'install', from: this.self, epoch: this.promisedEpoch, base: this.base, baseEpoch: this.baseEpoch, baseConfig: this.baseConfig, leaderLast: this.lastOp, epochStart: this.epochStartOp, commit: this.commitOp, sentAt: now };
      follower.next = this.base + 1;
      follower.lastSentAt = now;
      this.env.send(id, install);
      return;
    }
    const from = Math.min(follower.next, this.lastOp + 1);
    const to = Math.min(this.lastOp, from + this.timing.batchMax - 1);
    if (to < from && !evenIfEmpty) return;
    const prevOp = from - 1;
    const message: AppendMessage<P> = {
      type: 'append',
      from: this.self,
      epoch: this.promisedEpoch,
      prevOp,
      prevEpoch: this.epochAt(prevOp)!,
      entries: this.entries(from, to),
      leaderLast: this.lastOp,
      epochStart: this.epochStartOp,
      commit: this.commitOp,
      sentAt: now,
    };
    follower.next = to + 1;
    follower.lastSentAt = now;
    this.env.send(id, message);
  }

  private onAppendReply(reply: AppendReply): void {
    if (reply.epoch > this.promisedEpoch) {
      this.becomeFollower(reply.epoch);
      this.persist({ entries: [] });
      this.resetElectionDeadline(this.env.monotonic());
      return;
    }
    if (this.roleNow !== 'leader' || reply.epoch !== this.promisedEpoch) return;
    const follower = this.followers.get(reply.from);
    if (follower === undefined) return;
    follower.ackedSentAt = Math.max(follower.ackedSentAt, reply.sentAt);
    const now = this.env.monotonic();
    if (!reply.ok) {
      follower.next = Math.max(1, Math.min(follower.next, reply.hint + 1));
      follower.lastProgressAt = now;
      this.sendAppend(reply.from, follower, now, true);
      return;
    }
    if (reply.matchOp > follower.acked) {
      follower.acked = reply.matchOp;
      follower.lastProgressAt = now;
    }
    if (reply.normal && reply.matchOp > follower.match) follower.match = reply.matchOp;
    if (follower.next <= reply.matchOp) follower.next = reply.matchOp + 1;
    this.advanceCommit();
    if (this.roleNow !== 'leader') return;
    this.maybeTimeoutNow();
    if (follower.next <= this.lastOp) this.sendAppend(reply.from, follower, now, false);
  }

  private matchOf(id: ReplicaId): number {
    if (id === this.self) return this.selfNormalDurable ? this.durableLastOp : 0;
    return this.followers.get(id)?.match ?? 0;
  }

  /** What every voter set holds: `k(set)` of its voters, the lowest over the sets. */
  private heldBySets(k: (set: readonly ReplicaId[]) => number): number {
    let held = Infinity;
    for (const set of this.voterSets()) {
      const matches = set.map((id) => this.matchOf(id)).sort((a, b) => b - a);
      held = Math.min(held, this.heldByAtLeast(matches, k(set)));
    }
    return held;
  }

  /** W of each voter set: at least its majority, at most all of it. */
  private wOf(set: readonly ReplicaId[]): number {
    return Math.max(majorityOf(set.length), Math.min(this.w, set.length));
  }

  private advanceCommit(): void {
    if (this.roleNow !== 'leader') return;
    const committed = this.heldBySets((set) => majorityOf(set.length));
    if (committed > this.commitOp) {
      this.commitOp = committed;
      this.applyCommitted();
    }
    this.answerWaiters(this.answerableOp());
    this.stepConfig();
  }

  /** The highest op whose client may be answered: committed, and durable on W replicas. */
  private answerableOp(): number {
    if (this.roleNow !== 'leader') return 0;
    return Math.min(this.commitOp, this.heldBySets((set) => this.wOf(set)));
  }

  // --- Changes of the group --------------------------------------------------

  /**
   * Changes the group to `voters` (leader only): new members first follow as
   * learners until they hold what is committed; then a joint configuration
   * op (old and new voters must both agree from it on); once that commits,
   * the new configuration op; once that commits, `done`. A leader not in the
   * new group then steps down and the new voters elect one of themselves.
   * `payload` is what the configuration ops carry (the state machine ignores it).
   */
  reconfigure(voters: readonly ReplicaId[], payload: P, done: (result: ReconfigureResult) => void): void {
    if (this.roleNow !== 'leader') return done({ ok: false, code: this.leaderId !== undefined && this.leaderId !== this.self ? 'not-leader' : 'unavailable' });
    if (voters.length === 0 || new Set(voters).size !== voters.length) return done({ ok: false, code: 'invalid' });
    if (this.change !== undefined || this.config.old !== undefined) return done({ ok: false, code: 'unavailable' });
    if (sameMembers(this.config.voters, voters)) return done({ ok: true });
    this.change = { voters, payload, done };
    this.addFollowers(this.env.monotonic());
    this.replicate();
    this.stepConfig();
  }

  /** Moves a change along: joint once the learners caught up, final once joint committed, done once final committed. */
  private stepConfig(): void {
    if (this.roleNow !== 'leader') return;
    const config = this.config;
    const configOp = this.configOps[this.configOps.length - 1] ?? this.base;
    if (config.old !== undefined) {
      // Joint (this leader's change, or one a previous leader began): once committed, the new group alone.
      if (configOp <= this.commitOp) this.appendConfig({ voters: config.voters }, this.entry(configOp)!.payload);
      return;
    }
    const change = this.change;
    if (change === undefined) {
      if (!config.voters.includes(this.self) && configOp <= this.commitOp) this.handOver();
      return;
    }
    if (sameMembers(config.voters, change.voters)) {
      if (configOp > this.commitOp) return;
      this.change = undefined;
      change.done({ ok: true });
      if (!config.voters.includes(this.self)) this.handOver();
      return;
    }
    const learners = change.voters.filter((id) => !config.voters.includes(id) && id !== this.self);
    if (learners.every((id) => (this.followers.get(id)?.acked ?? 0) >= this.commitOp)) this.appendConfig({ voters: change.voters, old: config.voters }, change.payload);
  }

  private appendConfig(config: GroupConfig, payload: P): void {
    const entry: LogEntry<P> = { epoch: this.promisedEpoch, op: this.lastOp + 1, writes: [], t: this.env.now(), config, payload };
    this.log.push(entry);
    this.configOps.push(entry.op);
    this.addFollowers(this.env.monotonic());
    this.persist({ entries: [entry] });
    this.replicate();
  }

  // --- Leader transfer ----------------------------------------------------------

  /**
   * Hands leadership to `target`, an up-to-date voter (Raft's leadership
   * transfer): this leader stops serving reads and writes at once (it gives
   * up its lease), brings the target up to date, then tells it to campaign
   * now; the voters grant that vote though they hear this leader. If the
   * target is not leader within an election timeout, this leader steps down
   * (it never serves again in this epoch: a vote for the target may still
   * be on its way) and an ordinary election follows. False when it cannot
   * start now (not leader, a group change or a transfer under way, not a
   * voter).
   */
  transferLeadership(target: ReplicaId): boolean {
    if (this.failedWith !== undefined || this.roleNow !== 'leader' || this.transfer !== undefined || this.change !== undefined) return false;
    const config = this.config;
    if (config.old !== undefined || target === this.self || !config.voters.includes(target) || !this.followers.has(target)) return false;
    this.transfer = { target, deadline: this.env.monotonic() + this.timing.electionTimeoutMs, told: false };
    this.maybeTimeoutNow();
    if (this.transfer !== undefined && !this.transfer.told) this.replicate();
    return true;
  }

  /** Whether a leader serves while it transfers (never; a planted bug says otherwise). */
  protected servesDuringTransfer(): boolean {
    return false;
  }

  private maybeTimeoutNow(): void {
    const transfer = this.transfer;
    if (transfer === undefined || transfer.told) return;
    const follower = this.followers.get(transfer.target);
    if (follower === undefined || follower.match < this.lastOp) return;
    transfer.told = true;
    this.env.send(transfer.target, { type: 'timeout-now', from: this.self, epoch: this.promisedEpoch });
  }

  private onTimeoutNow(message: TimeoutNowMessage): void {
    if (message.epoch !== this.promisedEpoch || message.from !== this.leaderId || this.roleNow !== 'follower') return;
    if (this.recoverTo > 0 || !this.isVoter(this.self)) return;
    this.startElection(true);
  }

  /**
   * This leader is not in the group any more: it hands leadership to a new
   * voter that holds its whole log (no election timeout without a leader),
   * else steps down; either way it never campaigns again (it is no voter).
   */
  private handOver(): void {
    if (this.transfer !== undefined) return;
    const voters = this.config.voters;
    const target = voters.find((id) => (this.followers.get(id)?.match ?? 0) >= this.lastOp) ?? voters[0];
    if (target !== undefined && this.transferLeadership(target)) return;
    this.stepDown();
  }

  /** This leader is not in the group any more: it stops leading, and never campaigns (it is no voter). */
  private stepDown(): void {
    this.becomeFollower(this.promisedEpoch);
    this.resetElectionDeadline(this.env.monotonic());
  }

  private wait(op: number, firstSeqs: readonly number[], epoch: number, waiter: Waiter): void {
    const waiting = this.waiters.get(op);
    if (waiting === undefined) this.waiters.set(op, { firstSeqs, epoch, list: [waiter] });
    else waiting.list.push(waiter);
  }

  private answerWaiters(through: number): void {
    if (this.waiters.size === 0) return;
    for (const [op, waiting] of this.waiters) {
      if (op > through) continue;
      this.waiters.delete(op);
      for (const waiter of waiting.list) waiter({ ok: true, firstSeqs: waiting.firstSeqs, op, epoch: waiting.epoch, duplicate: false });
    }
  }

  private failWaiters(code: 'unknown' | 'unavailable'): void {
    const waiters = [...this.waiters.values()];
    this.waiters.clear();
    for (const waiting of waiters) for (const waiter of waiting.list) waiter({ ok: false, code });
  }

  // --- Durability ------------------------------------------------------------

  private meta(): ReplicaMeta {
    return { promised: this.promisedEpoch, normalEpoch: this.normal, lastOp: Math.max(this.lastOp, this.recoverTo) };
  }

  /** Writes the entries (after an optional truncation) with the current meta; `after` runs once durable. */
  private persist(change: { truncateAfter?: number; entries: readonly LogEntry<P>[]; base?: { op: number; epoch: number; config?: GroupConfig } }, after?: () => void): void {
    const write: LogWrite<P> = { ...change, meta: this.meta() };
    const pending = { lastOp: this.lastOp, after: after === undefined ? [] : [after] };
    this.writeQueue.push(pending);
    this.storage.write(write, (error) => {
      const done = this.writeQueue.shift();
      if (done !== pending) throw new Error(`${this.self}: storage completed writes out of order`);
      if (error !== undefined) return this.fail(error);
      this.durableLastOp = pending.lastOp;
      for (const callback of pending.after) callback();
      if (this.roleNow === 'leader') this.advanceCommit();
    });
  }

  private afterDurable(callback: () => void): void {
    const last = this.writeQueue[this.writeQueue.length - 1];
    if (last === undefined) callback();
    else last.after.push(callback);
  }

  /** The node lets this replica go (it left the group): it answers nothing more, and waiting clients get `unknown`. */
  retire(): void {
    if (this.failedWith === undefined) this.fail(new Error('the replica was retired: this node left the group'));
  }

  private fail(error: Error): void {
    this.failedWith = error;
    this.roleNow = 'follower';
    this.leaderId = undefined;
    this.failWaiters('unknown');
  }

}
