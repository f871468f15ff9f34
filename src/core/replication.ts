/**
 * The replication core's vocabulary (DESIGN §7b): one replicated log per
 * partition, ordered by a leader per epoch. Everything here is plain data:
 * the core (replica.ts) runs the same on the real transport and store and
 * inside the simulator (tools/sim), which is what makes the simulator's
 * verdicts mean something for the node.
 */

export type ReplicaId = string;

/** A majority of n replicas. */
export function majorityOf(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** The same replicas, in any order. */
export function sameMembers(a: readonly ReplicaId[], b: readonly ReplicaId[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}

/**
 * Who replicates a partition. `voters` decide (elections, commits); while a
 * change is under way the group is *joint*: `old` are the voters before it,
 * and every decision needs a majority of both (Raft's joint consensus; VR
 * Revisited's epoch change promised by the old and the new group).
 */
export interface GroupConfig {
  readonly voters: readonly ReplicaId[];
  readonly old?: readonly ReplicaId[];
}

/** One stream's part of an op. */
export interface StreamWrite {
  /** `bucket/stream`. */
  readonly stream: string;
  /** The first seqnum of the appended entries (for a delete: the stream's last seqnum + 1). */
  readonly firstSeq: number;
  readonly count: number;
  readonly delete?: boolean;
}

/** One op of a partition log. `epoch` is the epoch of the leader that created it. */
export interface LogEntry<P = unknown> {
  readonly epoch: number;
  readonly op: number;
  /**
   * What the op does to streams, all or nothing: appends of `count` entries
   * from `firstSeq` (a stream and its `-$patch` log in one PATCH), or a
   * delete (`count` 0; its seqnums never restart).
   */
  readonly writes: readonly StreamWrite[];
  /** A configuration op (no writes): the group from this op on, committed or not. */
  readonly config?: GroupConfig;
  /** Wall-clock ms the leader stamped (kept through failover and handoff). */
  readonly t: number;
  /** Idempotency key, if the client gave one: part of the log, so a retry after failover is deduplicated. */
  readonly key?: string;
  /** A digest of the request that used `key` (a reused key with another body is a conflict). */
  readonly keyDigest?: string;
  readonly payload: P;
}

/** What a replica keeps durable besides its entries. */
export interface ReplicaMeta {
  /** The highest epoch promised (to a candidate or by accepting a leader's append). */
  readonly promised: number;
  /** The last epoch in which this replica's log was known to be a prefix of the leader's (VR's normal epoch). */
  readonly normalEpoch: number;
  /**
   * The last op of the log at the last durable write. A log that recovery
   * finds shorter than this lost acknowledged entries: the replica is
   * recovering (it repairs from the leader, never votes or leads until then).
   */
  readonly lastOp: number;
}

export interface DurableState<P> {
  readonly meta: ReplicaMeta;
  /** Ops up to here are compacted: applied to the state machine, no longer in the log (0: none). */
  readonly base?: number;
  /** The epoch of op `base`. */
  readonly baseEpoch?: number;
  /** The group as of op `base` (when a configuration op was compacted away). */
  readonly baseConfig?: GroupConfig;
  /** Every entry recovery could read, in op order from op base + 1 (a damaged tail is left out). */
  readonly entries: readonly LogEntry<P>[];
}

/**
 * One durable write: drop every entry after `truncateAfter` (when given),
 * append `entries`, and record `meta`, all or nothing. `done` is called once
 * it is durable (or with an error: the replica then stops answering, as a
 * failed fsync leaves the log's state unknown).
 */
export interface LogWrite<P> {
  readonly truncateAfter?: number;
  readonly entries: readonly LogEntry<P>[];
  readonly meta: ReplicaMeta;
  /** Ops up to `op` are in the state machine now: the log may drop them. `config` is the group as of `op`. */
  readonly base?: { readonly op: number; readonly epoch: number; readonly config?: GroupConfig };
}

export interface ReplicaStorage<P> {
  /** Writes complete in the order they were issued. */
  write(write: LogWrite<P>, done: (error?: Error) => void): void;
}

/** The replica's surroundings: time, messages, randomness, and where committed entries go. */
export interface ReplicaEnv<P> {
  /** Monotonic ms (never goes back; keeps running while the process is stopped). */
  monotonic(): number;
  /** Wall-clock ms, for entry timestamps only. */
  now(): number;
  /** Uniform in [0, 1): from a seeded generator in the simulator. */
  random(): number;
  send(to: ReplicaId, message: ReplicationMessage<P>): void;
  /** Called once per committed op, in op order, on every replica (again after a restart, for ops past the compaction point: applying must be idempotent). */
  applied?(entry: LogEntry<P>): void;
  /** An idempotency key the state machine has applied (for keys whose ops are compacted out of the log, or not in a new leader's index). */
  committedKey?(key: string): KeyRecord | undefined;
  /** The last seqnum the state machine holds for a stream (for streams whose ops are compacted out of the log). */
  committedLastSeq?(stream: string): number;
  /**
   * Copies the committed state up to op `upTo` (at least) from `from`, the
   * leader, into this replica's state machine, durably; `done(false)` if it
   * could not (it will be asked again).
   */
  fetchState?(from: ReplicaId, upTo: number, done: (ok: boolean) => void): void;
}

export interface ReplicaTiming {
  /** Leader heartbeat period. */
  readonly heartbeatMs: number;
  /** A follower that heard nothing from a leader for this long may start an election. */
  readonly electionTimeoutMs: number;
  /** Added per place in the preflist, so the first live replica tries first. */
  readonly electionStepMs: number;
  /** Random extra wait, up to this, against split votes. */
  readonly electionJitterMs: number;
  /**
   * How long an acknowledgement lets the leader serve, from when the
   * acknowledged message was sent. Shorter than the election timeout by the
   * clock-drift margin, so a paused leader's lease ends before anyone else
   * can be elected.
   */
  readonly leaseMs: number;
  /** Entries per append message. */
  readonly batchMax: number;
  /** Ops proposed but not committed, at most; more is `unavailable` (retriable). */
  readonly inflightMax: number;
  /** Idempotency keys a leader remembers, at most (the oldest are forgotten first). */
  readonly keysMax: number;
}

export const defaultTiming: ReplicaTiming = {
  heartbeatMs: 100,
  electionTimeoutMs: 1000,
  electionStepMs: 150,
  electionJitterMs: 150,
  leaseMs: 800,
  batchMax: 256,
  inflightMax: 4096,
  keysMax: 100_000,
};

export interface AppendMessage<P> {
  readonly type: 'append';
  readonly from: ReplicaId;
  readonly epoch: number;
  readonly prevOp: number;
  readonly prevEpoch: number;
  readonly entries: readonly LogEntry<P>[];
  /** The leader's last op when it sent this. */
  readonly leaderLast: number;
  /**
   * The leader's last op when its epoch began: its log then held every op
   * committed before. A follower takes the epoch as its normal epoch only
   * once it holds that much (VR: normal status only with the whole log of
   * the view's start), so every replica normal in an epoch holds all that
   * was committed before it.
   */
  readonly epochStart: number;
  readonly commit: number;
  /** The leader's monotonic ms at send: an acknowledgement extends its lease from here. */
  readonly sentAt: number;
}

export interface AppendReply {
  readonly type: 'append-reply';
  readonly from: ReplicaId;
  /** The replier's promised epoch (higher than the leader's: the leader is deposed). */
  readonly epoch: number;
  readonly ok: boolean;
  /** With ok: every op up to here matches the leader's log and is durable here. */
  readonly matchOp: number;
  /** With ok: this replica's whole log is a prefix of the leader's (its normal epoch is `epoch`). */
  readonly normal: boolean;
  /** Without ok: where the leader should try from (the replier's last op, or before a conflict). */
  readonly hint: number;
  readonly sentAt: number;
}

export interface VoteRequest {
  readonly type: 'pre-vote' | 'vote';
  readonly from: ReplicaId;
  readonly epoch: number;
  readonly normalEpoch: number;
  readonly lastOp: number;
  /** The epoch of the candidate's last entry: informational (choosing by it is Raft's Figure 8). */
  readonly lastEpoch: number;
  /**
   * A leader transfer: the leader of the candidate's epoch told it to
   * campaign now (and gave up its lease first), so a voter that hears that
   * leader still grants the vote. Set only after a `timeout-now`.
   */
  readonly transfer?: boolean;
}

/** From a leader handing its leadership to an up-to-date voter: campaign now (Raft's TimeoutNow). */
export interface TimeoutNowMessage {
  readonly type: 'timeout-now';
  readonly from: ReplicaId;
  readonly epoch: number;
}

export interface VoteReply {
  readonly type: 'pre-vote-reply' | 'vote-reply';
  readonly from: ReplicaId;
  readonly epoch: number;
  readonly granted: boolean;
  /** The replier's promised epoch, so a refused candidate can aim higher. */
  readonly promised: number;
  /** Refused because the replier's log is better: it will try itself. */
  readonly better: boolean;
}

/** The leader has compacted what the follower lacks: take the state up to `base` instead (answered with an append-reply). */
export interface InstallMessage {
  readonly type: 'install';
  readonly from: ReplicaId;
  readonly epoch: number;
  readonly base: number;
  readonly baseEpoch: number;
  /** The group as of `base` (the follower's log starts there). */
  readonly baseConfig: GroupConfig;
  readonly leaderLast: number;
  readonly epochStart: number;
  readonly commit: number;
  readonly sentAt: number;
}

export type ReplicationMessage<P> = AppendMessage<P> | AppendReply | VoteRequest | VoteReply | InstallMessage | TimeoutNowMessage;

/** What an idempotency key was used for. */
export interface KeyRecord {
  readonly op: number;
  readonly firstSeqs: readonly number[];
  readonly epoch: number;
  readonly digest: string | undefined;
  /** The op's wall-clock stamp, when known (a retry is answered with the first write's). */
  readonly t?: number;
}

/** One stream's part of a client's write. */
export interface WriteRequest {
  readonly stream: string;
  /** Entries to append (0 with `delete`). */
  readonly count: number;
  /** Conditional: the stream's last seqnum must be this (0: the stream is empty). */
  readonly expectSeq?: number;
  readonly delete?: boolean;
}

/** A client's write, as the leader receives it: every part applies, or none. */
export interface ProposeRequest<P> {
  readonly writes: readonly WriteRequest[];
  readonly payload: P;
  readonly key?: string;
  readonly keyDigest?: string;
}

export type ProposeResult =
  | { readonly ok: true; readonly firstSeqs: readonly number[]; readonly op: number; readonly epoch: number; readonly duplicate: boolean; readonly t?: number }
  | {
      readonly ok: false;
      /**
       * not-leader: nothing was written, try `leader`; unavailable: nothing was
       * written, retry later; unknown: it may or may not be committed (a
       * failover happened), retry with the same idempotency key; conflict:
       * `expectSeq` did not hold, or the key was used for another request.
       */
      readonly code: 'not-leader' | 'unavailable' | 'unknown' | 'conflict';
      readonly leader?: ReplicaId;
      /** With conflict: the stream whose condition failed, and its last seqnum. */
      readonly stream?: string;
      readonly lastSeq?: number;
      /** With a failed condition: the last seqnum the client expected. */
      readonly expected?: number;
    };

export type ReadResult<P> =
  | { readonly ok: true; readonly entries: readonly LogEntry<P>[]; readonly lastSeq: number }
  | { readonly ok: false; readonly code: 'not-leader' | 'unavailable'; readonly leader?: ReplicaId };
