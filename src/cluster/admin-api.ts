/**
 * The cluster admin API's answers: what `/admin/cluster/*` returns (admin
 * session, or the cluster secret in `x-iorio-cluster-secret`) and what
 * `iorio-admin` prints from. Types only, shared by the server
 * (src/http/routes-admin.ts) and the CLI (src/cli/iorio-admin.ts).
 *
 * | method, path                              | body                          | answer |
 * |-------------------------------------------|-------------------------------|--------|
 * | GET  /admin/cluster/members               |                               | MembersAnswer |
 * | GET  /admin/cluster/ring                  |                               | RingAnswer |
 * | GET  /admin/cluster/ringready             |                               | RingReadyAnswer |
 * | POST /admin/cluster/join                  | {node}                        | {ok, staged: 'join', node} |
 * | POST /admin/cluster/leave                 | {node?} (default: this node)  | {ok, staged: 'leave', node} |
 * | POST /admin/cluster/force-remove          | {node}                        | {ok, staged, node} |
 * | POST /admin/cluster/replace               | {node, by}                    | {ok, staged, node, by} |
 * | POST /admin/cluster/force-replace         | {node, by}                    | {ok, staged, node, by} |
 * | GET  /admin/cluster/plan                  |                               | PlanAnswer |
 * | POST /admin/cluster/commit                |                               | {ok, version} |
 * | POST /admin/cluster/clear                 |                               | {ok} |
 * | POST /admin/cluster/down                  | {node}                        | {ok, version} |
 * | GET  /admin/cluster/transfers             |                               | TransfersAnswer |
 * | POST /admin/cluster/transfer-limit        | {concurrency?, rate?}         | TransferLimits |
 * | DELETE /admin/cluster/transfers/:partition|                               | {ok, partition} |
 * | GET  /admin/cluster/partitions            |                               | PartitionsAnswer |
 * | GET  /admin/cluster/verify?bucket=&stream=|                               | VerifyAnswer (report only) |
 * | POST /admin/cluster/verify                | {bucket?, stream?, repair?}   | VerifyAnswer (repair unless repair: false; also ?repair=) |
 *
 * Refusals are the usual `{type, reason}` errors; a refusal of the claimant
 * carries Riak's reason atom in `reason_code` (e.g. `plan_changed`,
 * `not_member`, `ring_not_ready`).
 */
import type { MemberStatus } from '../core/ring.js';
import type { PlanSummary } from '../core/plan.js';

export interface MemberRow {
  readonly node: string;
  readonly status: MemberStatus;
  /** Share of the partitions it owns now, in percent. */
  readonly ringPercent: number;
  /** Share once the committed transfers finish; null ("--") when none involves it. */
  readonly pendingPercent: number | null;
  /** This node can reach it now (failure detector). */
  readonly reachable: boolean;
}

export interface MembersAnswer {
  readonly node: string;
  readonly cluster: string;
  readonly version: number;
  readonly claimant: string;
  /** Riak's order: by status, then by name. */
  readonly rows: readonly MemberRow[];
  readonly valid: number;
  readonly leaving: number;
  readonly exiting: number;
  readonly joining: number;
  readonly down: number;
}

export interface RingAnswer {
  readonly node: string;
  readonly cluster: string;
  readonly version: number;
  readonly size: number;
  readonly claimant: string;
  readonly ringReady: boolean;
  /** Members this node cannot reach now. */
  readonly unreachable: readonly string[];
  /** Partitions owned now, per member. */
  readonly ownership: readonly { node: string; partitions: number }[];
  /** The owner of each partition now, by partition. */
  readonly owners: readonly string[];
  /** Committed ownership changes not finished yet. */
  readonly pending: readonly { partition: number; source: string; target: string }[];
}

export interface RingReadyAnswer {
  /** Every reachable member holds the same ring, and no member is unreachable. */
  readonly ready: boolean;
  readonly nodes: readonly string[];
  /** Members whose ring differs (or that could not be asked), with why. */
  readonly disagreeing: readonly { node: string; reason: string }[];
}

export interface PlanAnswer {
  readonly summary: PlanSummary;
  readonly transfers: readonly { partition: number; source: string; target: string }[];
  readonly warnings: readonly string[];
}

export const TransferState = { waiting: 'waiting', running: 'running', finishing: 'finishing' } as const;
export type TransferState = (typeof TransferState)[keyof typeof TransferState];

export interface TransferRow {
  readonly partition: number;
  readonly source: string;
  readonly target: string;
  readonly state: TransferState;
  readonly streamsDone: number;
  readonly streams: number;
  readonly bytes: number;
  readonly entries: number;
  /** Bytes per second over the last few seconds. */
  readonly rateBytesPerSec: number;
  /** Seconds to go at that rate; null when not known. */
  readonly etaSecs: number | null;
  readonly startedMs: number | null;
}

export interface TransferLimits {
  readonly concurrency: number;
  /** Bytes per second, 0 = no limit. */
  readonly rateBytesPerSec: number;
}

/** One replica of one partition, as the node that holds it reports it (request.n > 1). */
export interface PartitionRow {
  readonly partition: number;
  /** The node reporting (it holds this replica). */
  readonly node: string;
  readonly role: string;
  readonly epoch: number;
  readonly leader: string | null;
  readonly voters: readonly string[];
  /** While the group changes: the voters before. */
  readonly old: readonly string[] | null;
  /** Whether this replica knows its configuration (voters, old) committed. */
  readonly configCommitted?: boolean;
  readonly lastOp: number;
  readonly commit: number;
  readonly applied: number;
  readonly recovering: boolean;
  /** From a leader: each follower's acknowledged op, and how far behind the leader's log it is. */
  readonly followers: readonly { readonly replica: string; readonly match: number; readonly lag: number }[];
}

export interface PartitionsAnswer {
  /** request.n of the asked node (1: no replica groups, no rows). */
  readonly n: number;
  /** Every replica every reachable member holds, by partition then node. */
  readonly rows: readonly PartitionRow[];
  readonly unreachable: readonly string[];
}

export interface TransfersAnswer {
  /** Transfers every reachable member reports (each sender reports its own), by partition. */
  readonly transfers: readonly TransferRow[];
  /** This node's limits. */
  readonly limits: TransferLimits;
  /** Members that could not be asked. */
  readonly unreachable: readonly string[];
  /** What the asked node received as a transfer target since it started (resent batches counted apart). */
  readonly received: { readonly batches: number; readonly bytes: number; readonly duplicateBytes: number };
}

/** What `verify` finds of a stream across its replicas; the order is also the precedence (the first that applies). */
export const VerifyVerdict = {
  /** Two replicas that can read every compared record hold different content (a bug, or disk damage a checksum missed). */
  diverged: 'diverged',
  /** A replica cannot read some of its records (lost or damaged chunks). */
  damaged: 'damaged',
  /** A replica of the group did not answer (or holds no replica of the partition). */
  unreachable: 'unreachable',
  /** A replica's last seqnum stays below another's (applied later, e.g. after a crash). */
  behind: 'behind',
  ok: 'ok',
} as const;
export type VerifyVerdict = (typeof VerifyVerdict)[keyof typeof VerifyVerdict];

export interface SeqnumRange {
  readonly from: number;
  readonly to: number;
}

/** One replica of one stream, as it answered. */
export interface VerifyReplica {
  readonly node: string;
  /** It answered, holding a replica of the partition. */
  readonly reachable: boolean;
  /** It leads the partition. */
  readonly leader: boolean;
  /** Oldest and last seqnum it holds (null when not reachable). */
  readonly first: number | null;
  readonly last: number | null;
  /** Seqnum up to which the stream was deleted (0: never). */
  readonly deletedAt: number | null;
  /** SHA-256 (hex) over its records from..upTo of the row, as the store exports them (seqnum, timestamp, epoch, body). */
  readonly digest: string | null;
  /** Records that digest covers. */
  readonly count: number | null;
  /** Seqnum ranges within first..last it cannot read (the first few). */
  readonly missing: readonly SeqnumRange[];
  /** Why it could not be asked. */
  readonly error: string | null;
}

/** One repair of one replica of a stream (verify --repair). */
export interface VerifyRepair {
  /** The replica filled. */
  readonly target: string;
  /** The replica the records came from (null: none holds them). */
  readonly source: string | null;
  /** `tail`: records after its last seqnum imported; `chunks`: chunks lacking or differing rebuilt. */
  readonly kind: 'tail' | 'chunks';
  /** Records filled or replaced. */
  readonly records: number;
  /** Chunks rebuilt. */
  readonly chunks: number;
  /** Where each replaced chunk file was copied on the target, relative to its data folder. */
  readonly aside: readonly string[];
  /** What was left undone and why (null: done). */
  readonly skipped: string | null;
}

/** One stream: how its replicas compare. */
export interface VerifyRow {
  readonly partition: number;
  readonly bucket: string;
  readonly stream: string;
  /** The seqnums compared (none when from > upTo): the highest first and the lowest last among the replicas. */
  readonly from: number;
  readonly upTo: number;
  /** The verdict as first found. */
  readonly found: VerifyVerdict;
  /** The verdict now: after the repairs when repairing, else the one found. */
  readonly verdict: VerifyVerdict;
  readonly replicas: readonly VerifyReplica[];
  readonly repairs: readonly VerifyRepair[];
}

export interface VerifyAnswer {
  /** request.n of the asked node (1: one copy per partition, nothing to compare, no rows). */
  readonly n: number;
  readonly bucket: string | null;
  readonly stream: string | null;
  readonly repair: boolean;
  /** Partitions and streams compared. */
  readonly partitions: number;
  readonly streams: number;
  /** Streams by verdict as found, and as they are now. */
  readonly found: Readonly<Record<VerifyVerdict, number>>;
  readonly counts: Readonly<Record<VerifyVerdict, number>>;
  /** The streams compared, by partition, bucket and stream; when there are too many, the ok ones are left out first. */
  readonly rows: readonly VerifyRow[];
  readonly rowsOmitted: number;
  /** Replicas that could not be asked. */
  readonly unreachable: readonly string[];
}
