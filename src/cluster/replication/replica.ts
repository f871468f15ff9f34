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
 *   their whole log is verified against the leader's. A follower never
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
  type VoteReply,
  type VoteRequest,
} from './types.js';

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

export interface ReplicaOptions<P> {
  readonly self: ReplicaId;
  /** The group, in preflist order: the first live one tries first in an election. */
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

export function majorityOf(n: number): number {
  return Math.floor(n / 2) + 1;
}

export class Replica<P> {
  readonly self: ReplicaId;
  readonly members: readonly ReplicaId[];
  readonly majority: number;
  readonly w: number;
  private readonly timing: ReplicaTiming;
  private readonly env: ReplicaEnv<P>;
  private readonly storage: ReplicaStorage<P>;
  private readonly others: readonly ReplicaId[];
  private readonly rank: number;

  // Durable state, as this replica means it (writes may still be in flight).
  private promisedEpoch: number;
  private normal: number;
  private readonly log: LogEntry<P>[];

  private roleNow: Role = 'follower';
  private leaderId: ReplicaId | undefined;
  private lastLeaderContact: number;
  private electionDeadline = 0;
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
  private readonly waiters = new Map<number, Waiter[]>();
  private readonly streamLast = new Map<string, number>();
  private readonly keyIndex = new Map<string, number>();

  // Durability: writes complete in order; callbacks wait for the last issued.
  private readonly writeQueue: { lastOp: number; normalEpoch: number; after: (() => void)[] }[] = [];
  private durableLastOp: number;
  private durableNormal: number;

  constructor(options: ReplicaOptions<P>) {
    this.self = options.self;
    this.members = options.members;
    this.rank = Math.max(0, options.members.indexOf(options.self));
    this.others = options.members.filter((member) => member !== options.self);
    this.majority = majorityOf(options.members.length);
    if (!options.members.includes(options.self)) throw new Error(`${options.self} is not a member of its group`);
    if (options.w < this.majority || options.w > options.members.length) {
      throw new Error(`w = ${options.w} must be at least a majority (${this.majority}) of the ${options.members.length} replicas and at most all of them`);
    }
    this.w = options.w;
    this.timing = { ...defaultTiming, ...options.timing };
    this.env = options.env;
    this.storage = options.storage;
    const { meta, entries } = options.durable;
    this.promisedEpoch = meta.promised;
    this.highestSeen = meta.promised;
    this.normal = meta.normalEpoch;
    this.log = [...entries];
    for (let index = 0; index < this.log.length; index++) {
      if (this.log[index]!.op !== index + 1) throw new Error(`log entry ${index} has op ${this.log[index]!.op}`);
    }
    this.durableLastOp = this.log.length;
    this.durableNormal = this.normal;
    if (this.log.length < meta.lastOp) this.recoverTo = meta.lastOp;
    // A restarted replica promises no one for an election timeout: a leader's lease may rest on it.
    this.lastLeaderContact = this.env.monotonic();
    this.resetElectionDeadline(this.lastLeaderContact);
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
    return this.log.length;
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
    return this.log[op - 1];
  }

  /** The entries from `from` to `to` (inclusive), as held now. */
  entries(from = 1, to = this.log.length): readonly LogEntry<P>[] {
    return this.log.slice(Math.max(0, from - 1), Math.max(0, to));
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
    if (!this.leaseValid() || this.commitOp < this.epochStartOp) return { ok: false, code: 'unavailable' };
    return { ok: true, commit: this.readableOp() };
  }

  /** Reads show committed ops only. */
  protected readableOp(): number {
    return this.commitOp;
  }

  /** The last seqnum of a stream in this leader's log, committed or not (0: none). */
  lastSeqOf(stream: string): number {
    return this.streamLast.get(stream) ?? 0;
  }

  // --- Client writes ---------------------------------------------------------

  propose(request: ProposeRequest<P>, done: Waiter): void {
    if (this.failedWith !== undefined) return done({ ok: false, code: 'unavailable' });
    if (this.roleNow !== 'leader') {
      return done(this.leaderId !== undefined && this.leaderId !== this.self ? { ok: false, code: 'not-leader', leader: this.leaderId } : { ok: false, code: 'unavailable' });
    }
    if (!this.leaseValid()) return done({ ok: false, code: 'unavailable' });
    if (request.key !== undefined) {
      const op = this.keyIndex.get(request.key);
      if (op !== undefined) {
        const entry = this.log[op - 1]!;
        if (entry.keyDigest !== request.keyDigest) return done({ ok: false, code: 'conflict', lastSeq: this.lastSeqOf(request.stream) });
        if (op <= this.answerableOp()) return done({ ok: true, seq: entry.seq, op, epoch: entry.epoch, duplicate: true });
        this.wait(op, (result) => done(result.ok ? { ...result, duplicate: true } : result));
        return;
      }
    }
    if (this.log.length - this.commitOp >= this.timing.inflightMax) return done({ ok: false, code: 'unavailable' });
    const last = this.lastSeqOf(request.stream);
    if (request.expectSeq !== undefined && request.expectSeq !== last) return done({ ok: false, code: 'conflict', lastSeq: last });
    const entry: LogEntry<P> = {
      epoch: this.promisedEpoch,
      op: this.log.length + 1,
      stream: request.stream,
      seq: last + 1,
      t: this.env.now(),
      ...(request.key === undefined ? {} : { key: request.key, keyDigest: request.keyDigest ?? '' }),
      payload: request.payload,
    };
    this.log.push(entry);
    this.index(entry);
    this.wait(entry.op, done);
    this.persist({ entries: [entry] });
    this.replicate();
  }

  // --- Time ------------------------------------------------------------------

  tick(): void {
    if (this.failedWith !== undefined) return;
    const now = this.env.monotonic();
    if (this.roleNow === 'leader') {
      if (now - this.lastHeartbeat >= this.timing.heartbeatMs) this.heartbeat(now);
      return;
    }
    if (now >= this.electionDeadline) this.startPreVote(now);
  }

  // --- Messages --------------------------------------------------------------

  receive(message: ReplicationMessage<P>): void {
    if (this.failedWith !== undefined) return;
    if (!this.members.includes(message.from) || message.from === this.self) return;
    switch (message.type) {
      case 'append':
        return this.onAppend(message);
      case 'append-reply':
        return this.onAppendReply(message);
      case 'pre-vote':
      case 'vote':
        return this.onVoteRequest(message);
      case 'pre-vote-reply':
      case 'vote-reply':
        return this.onVoteReply(message);
    }
  }

  // --- Follower --------------------------------------------------------------

  private onAppend(message: AppendMessage<P>): void {
    const now = this.env.monotonic();
    if (message.epoch < this.promisedEpoch) {
      const reply: AppendReply = { type: 'append-reply', from: this.self, epoch: this.promisedEpoch, ok: false, matchOp: 0, normal: false, hint: this.log.length, sentAt: message.sentAt };
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
    if (message.prevOp > this.log.length) return reject(this.log.length);
    if (message.prevOp > 0 && this.log[message.prevOp - 1]!.epoch !== message.prevEpoch) {
      // Skip back over the whole conflicting epoch, but never below what is known committed.
      const conflictEpoch = this.log[message.prevOp - 1]!.epoch;
      let hint = message.prevOp - 1;
      while (hint > this.commitOp && this.log[hint - 1]!.epoch === conflictEpoch) hint--;
      return reject(hint);
    }

    // Matching prefix: keep what agrees, drop from the first conflict, append the rest.
    let truncateAfter: number | undefined;
    let index = 0;
    for (; index < message.entries.length; index++) {
      const entry = message.entries[index]!;
      if (entry.op > this.log.length) break;
      if (this.log[entry.op - 1]!.epoch !== entry.epoch) {
        truncateAfter = entry.op - 1;
        break;
      }
    }
    const fresh = message.entries.slice(index);
    if (truncateAfter !== undefined) this.truncate(truncateAfter);
    const verified = message.prevOp + message.entries.length;
    // Entries past the leader's end, from older epochs, are in no leader's log: not committed.
    if (fresh.length === 0 && this.log.length > message.leaderLast && message.leaderLast >= verified) {
      const beyond = this.log[message.leaderLast];
      if (beyond !== undefined && beyond.epoch < message.epoch) {
        this.truncate(message.leaderLast);
        truncateAfter = Math.min(truncateAfter ?? Infinity, message.leaderLast);
      }
    }
    for (const entry of fresh) this.log.push(entry);
    if (this.verifiedEpoch !== message.epoch) {
      this.verifiedEpoch = message.epoch;
      this.verifiedThrough = 0;
    }
    this.verifiedThrough = Math.max(this.verifiedThrough, Math.min(verified, this.log.length));
    // The whole log is the leader's when everything past the verified part is of the leader's epoch.
    const next = this.log[this.verifiedThrough];
    const wholeLogVerified = next === undefined || next.epoch === message.epoch;
    if (wholeLogVerified && this.normal !== message.epoch) {
      this.normal = message.epoch;
      metaChanged = true;
    }
    if (this.recoverTo > 0 && wholeLogVerified && this.log.length >= Math.min(this.recoverTo, message.leaderLast)) {
      this.recoverTo = 0;
      metaChanged = true;
    }
    const matchOp = wholeLogVerified ? this.log.length : this.verifiedThrough;
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
    this.log.length = after;
    if (this.verifiedThrough > after) this.verifiedThrough = after;
  }

  private learnCommit(commit: number): void {
    if (commit > this.commitOp) {
      this.commitOp = Math.min(commit, this.log.length);
      this.applyCommitted();
    }
  }

  private applyCommitted(): void {
    while (this.appliedOp < this.commitOp) {
      this.appliedOp++;
      this.env.applied?.(this.log[this.appliedOp - 1]!);
    }
  }

  private becomeFollower(epoch: number): void {
    const wasLeader = this.roleNow === 'leader';
    this.promisedEpoch = epoch;
    this.highestSeen = Math.max(this.highestSeen, epoch);
    this.roleNow = 'follower';
    this.leaderId = undefined;
    this.votes.clear();
    if (wasLeader) {
      this.followers.clear();
      this.failWaiters('unknown');
    }
  }

  // --- Elections -------------------------------------------------------------

  private resetElectionDeadline(now: number): void {
    this.electionDeadline = now + this.timing.electionTimeoutMs + this.rank * this.timing.electionStepMs + this.env.random() * this.timing.electionJitterMs;
  }

  private heardFromLeaderRecently(now: number): boolean {
    return now - this.lastLeaderContact < this.timing.electionTimeoutMs;
  }

  /** VR's order: normal epoch, then last op (never the entries' own epochs: Raft's Figure 8). */
  protected logAtLeastAsGood(request: VoteRequest): boolean {
    // A recovering replica compares with what it had acknowledged before the damage, not with what is left.
    const lastOp = Math.max(this.log.length, this.recoverTo);
    return request.normalEpoch > this.normal || (request.normalEpoch === this.normal && request.lastOp >= lastOp);
  }

  /** The epoch of the last entry (0 for an empty log). */
  protected lastEntryEpoch(): number {
    return this.log[this.log.length - 1]?.epoch ?? 0;
  }

  /** The k-th highest of the replicas' matches: what k replicas hold. */
  protected heldByAtLeast(matches: readonly number[], k: number): number {
    return matches[k - 1]!;
  }

  private startPreVote(now: number): void {
    this.resetElectionDeadline(now);
    if (this.recoverTo > 0) return;
    if (this.members.length === 1) return this.startElection();
    this.roleNow = 'pre-candidate';
    this.leaderId = undefined;
    this.votes = new Set([this.self]);
    const request: VoteRequest = { type: 'pre-vote', from: this.self, epoch: this.highestSeen + 1, normalEpoch: this.normal, lastOp: this.log.length, lastEpoch: this.lastEntryEpoch() };
    for (const other of this.others) this.env.send(other, request);
  }

  private startElection(): void {
    this.roleNow = 'candidate';
    this.leaderId = undefined;
    const epoch = this.highestSeen + 1;
    this.promisedEpoch = epoch;
    this.highestSeen = epoch;
    this.votes = new Set([this.self]);
    const request: VoteRequest = { type: 'vote', from: this.self, epoch, normalEpoch: this.normal, lastOp: this.log.length, lastEpoch: this.lastEntryEpoch() };
    this.persist({ entries: [] }, () => {
      if (this.roleNow !== 'candidate' || this.promisedEpoch !== epoch) return;
      if (this.votes.size >= this.majority) return this.becomeLeader();
      for (const other of this.others) this.env.send(other, request);
    });
  }

  private onVoteRequest(request: VoteRequest): void {
    const now = this.env.monotonic();
    const logOk = this.logAtLeastAsGood(request);
    const free = this.roleNow !== 'leader' && !this.heardFromLeaderRecently(now);
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
      if (this.votes.size >= this.majority) this.startElection();
      return;
    }
    if (this.roleNow !== 'candidate' || reply.epoch !== this.promisedEpoch) return;
    this.votes.add(reply.from);
    if (this.votes.size >= this.majority) this.becomeLeader();
  }

  private becomeLeader(): void {
    const now = this.env.monotonic();
    this.roleNow = 'leader';
    this.leaderId = this.self;
    this.normal = this.promisedEpoch;
    this.epochStartOp = this.log.length;
    this.selfNormalDurable = false;
    this.followers.clear();
    for (const other of this.others) {
      this.followers.set(other, { next: this.log.length + 1, acked: 0, match: 0, ackedSentAt: -Infinity, lastSentAt: -Infinity, lastProgressAt: now });
    }
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
    if (entry.seq > 0) this.streamLast.set(entry.stream, entry.seq);
    if (entry.key !== undefined) this.keyIndex.set(entry.key, entry.op);
  }

  protected leaseValid(): boolean {
    if (this.others.length === 0) return true;
    const acked = [...this.followers.values()].map((follower) => follower.ackedSentAt).sort((a, b) => b - a);
    const oldestOfMajority = acked[this.majority - 2] ?? -Infinity;
    return this.env.monotonic() < oldestOfMajority + this.timing.leaseMs;
  }

  private heartbeat(now: number): void {
    this.lastHeartbeat = now;
    for (const [id, follower] of this.followers) {
      // No progress for two heartbeats: what was sent may be lost; send again from what it holds.
      if (follower.acked < this.log.length && now - follower.lastProgressAt >= 2 * this.timing.heartbeatMs) {
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
      if (follower.next <= this.log.length) this.sendAppend(id, follower, now, false);
    }
  }

  private sendAppend(id: ReplicaId, follower: Follower, now: number, evenIfEmpty: boolean): void {
    const from = Math.min(follower.next, this.log.length + 1);
    const to = Math.min(this.log.length, from + this.timing.batchMax - 1);
    if (to < from && !evenIfEmpty) return;
    const prevOp = from - 1;
    const message: AppendMessage<P> = {
      type: 'append',
      from: this.self,
      epoch: this.promisedEpoch,
      prevOp,
      prevEpoch: prevOp === 0 ? 0 : this.log[prevOp - 1]!.epoch,
      entries: this.log.slice(from - 1, to),
      leaderLast: this.log.length,
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
    if (follower.next <= this.log.length) this.sendAppend(reply.from, follower, now, false);
  }

  private advanceCommit(): void {
    if (this.roleNow !== 'leader') return;
    const self = this.selfNormalDurable ? this.durableLastOp : 0;
    const matches = [self, ...[...this.followers.values()].map((follower) => follower.match)].sort((a, b) => b - a);
    const committed = this.heldByAtLeast(matches, this.majority);
    if (committed > this.commitOp) {
      this.commitOp = committed;
      this.applyCommitted();
    }
    this.answerWaiters(Math.min(this.commitOp, this.heldByAtLeast(matches, this.w)));
  }

  /** The highest op whose client may be answered: committed, and durable on W replicas. */
  private answerableOp(): number {
    if (this.roleNow !== 'leader') return 0;
    const self = this.selfNormalDurable ? this.durableLastOp : 0;
    const matches = [self, ...[...this.followers.values()].map((follower) => follower.match)].sort((a, b) => b - a);
    return Math.min(this.commitOp, this.heldByAtLeast(matches, this.w));
  }

  private wait(op: number, waiter: Waiter): void {
    const list = this.waiters.get(op);
    if (list === undefined) this.waiters.set(op, [waiter]);
    else list.push(waiter);
  }

  private answerWaiters(through: number): void {
    if (this.waiters.size === 0) return;
    for (const [op, list] of this.waiters) {
      if (op > through) continue;
      this.waiters.delete(op);
      const entry = this.log[op - 1]!;
      for (const waiter of list) waiter({ ok: true, seq: entry.seq, op, epoch: entry.epoch, duplicate: false });
    }
  }

  private failWaiters(code: 'unknown' | 'unavailable'): void {
    const waiters = [...this.waiters.values()];
    this.waiters.clear();
    for (const list of waiters) for (const waiter of list) waiter({ ok: false, code });
  }

  // --- Durability ------------------------------------------------------------

  private meta(): ReplicaMeta {
    return { promised: this.promisedEpoch, normalEpoch: this.normal, lastOp: Math.max(this.log.length, this.recoverTo) };
  }

  /** Writes the entries (after an optional truncation) with the current meta; `after` runs once durable. */
  private persist(change: { truncateAfter?: number; entries: readonly LogEntry<P>[] }, after?: () => void): void {
    const write: LogWrite<P> = { ...change, meta: this.meta() };
    const pending = { lastOp: this.log.length, normalEpoch: this.normal, after: after === undefined ? [] : [after] };
    this.writeQueue.push(pending);
    this.storage.write(write, (error) => {
      const done = this.writeQueue.shift();
      if (done !== pending) throw new Error(`${this.self}: storage completed writes out of order`);
      if (error !== undefined) return this.fail(error);
      this.durableLastOp = pending.lastOp;
      this.durableNormal = pending.normalEpoch;
      for (const callback of pending.after) callback();
      if (this.roleNow === 'leader') this.advanceCommit();
    });
  }

  private afterDurable(callback: () => void): void {
    const last = this.writeQueue[this.writeQueue.length - 1];
    if (last === undefined) callback();
    else last.after.push(callback);
  }

  private fail(error: Error): void {
    this.failedWith = error;
    this.roleNow = 'follower';
    this.leaderId = undefined;
    this.failWaiters('unknown');
  }

  /** For checks: what the disk is known to hold. */
  durable(): { lastOp: number; normalEpoch: number } {
    return { lastOp: this.durableLastOp, normalEpoch: this.durableNormal };
  }
}
