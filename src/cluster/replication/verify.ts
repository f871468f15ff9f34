/**
 * `iorio-admin verify [bucket[/stream]] [--repair]` (issue 9): each stream's
 * replicas compared by last seqnum and digest, and on request repaired:
 * RRSeq's read repair, made explicit.
 *
 * The node that takes the admin request asks, for each partition in scope,
 * every replica of its group over the cluster transport:
 *  1. its streams of the partition, with first and last seqnums
 *     (replicationVerifyStreams);
 *  2. per stream, a SHA-256 over its records from `from` to `upTo` as the
 *     store exports them (seqnum, timestamp, epoch, body: what a reader
 *     sees), and the seqnum ranges it cannot read anywhere in the stream
 *     (replicationVerifyDigests). `upTo` is the lowest last seqnum among the
 *     replicas, so a replica that is only behind still compares on the
 *     common prefix; `from` the highest first (eviction drops whole chunks,
 *     whose bounds differ from replica to replica);
 *  3. judges each stream (judgeStream, pure);
 *  4. with repair, has each replica that lacks records fill them from one
 *     that holds them, the leader first (planRepairs, pure; then
 *     replicationVerifyRepair on the replica), and asks 1-3 again for the
 *     streams repaired: the verdict after is what it reports.
 *
 * A replica fills a tail it lacks through the store's import path
 * (idempotent by seqnum). Records missing inside a stream cannot go that
 * way (an import drops every record at or below the stream's last), so the
 * chunk covering them is rebuilt from the other replica's records
 * (StreamStore.replaceChunk: the old file is first copied aside, nothing is
 * deleted). Records held with another content than the source's are
 * replaced only when the source is the partition's leader. Every change to
 * the store runs between two applies of the partition's committed ops
 * (ReplicaHost.betweenApplies), never racing them. The records travel as
 * the state transfer's (replicationStateRecords, served by the host).
 */

import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { IorioError } from '../../core/errors.js';
import { partitionOf } from '../../core/hash.js';
import { readLimitMax } from '../../core/limits.js';
import { encodeRecord, recordBytesAt, recordSeqAt } from '../../core/record.js';
import { MessageType } from '../../core/wire.js';
import type { ChunkReplaced, ChunkSpan, ExportedRecords, ImportBatch, ReadOptions, ReadResult, StreamInfo, StreamPosition } from '../../store/types.js';
import { VerifyVerdict, type SeqnumRange, type VerifyAnswer, type VerifyRepair, type VerifyReplica, type VerifyRow } from '../admin-api.js';
import type { RequestHandler, RequestOptions } from '../transport.js';
import type { ReplicationGroups } from './groups.js';
import type { ReplicaHost } from './host.js';

/** Streams in one answer to replicationVerifyStreams. */
export const verifyStreamsPageCountMax = 1_000;
/** Streams in one replicationVerifyDigests request. */
export const verifyDigestStreamsCountMax = 64;
/** Missing ranges reported per replica and stream (the first ones). */
export const verifyMissingRangesCountMax = 16;
/** Rows in one answer: past it, ok rows are left out first. */
export const verifyRowsCountMax = 10_000;
/** Partitions verified at once by the asking node. */
const partitionsInFlightMax = 4;
/** Bytes read from the store per export while digesting or fetching. */
const exportBytesMax = 1024 * 1024;
/** Bounds of the requests to replicas: a digest reads whole streams, a repair copies chunks. */
const streamsTimeoutMs = 10_000;
const digestsTimeoutMs = 120_000;
const repairTimeoutMs = 300_000;
const recordsTimeoutMs = 30_000;

// ---------------------------------------------------------------------------
// Wire bodies (MessageType.replicationVerify*)

/** replicationVerifyStreams: a page of the partition's streams (all, one bucket's, or one), after `after` (`bucket/stream`). */
export interface StreamsRequest {
  readonly p: number;
  readonly bucket?: string;
  readonly stream?: string;
  readonly after?: string;
}

export interface StreamsPosition {
  readonly bucket: string;
  readonly stream: string;
  readonly first: number;
  readonly last: number;
  readonly deletedAt: number;
}

export interface StreamsAnswer {
  /** The node runs a replica of the partition (else nothing else is set). */
  readonly holds: boolean;
  readonly role: string | null;
  readonly leader: string | null;
  readonly streams: readonly StreamsPosition[];
  readonly more: boolean;
}

export interface DigestWanted {
  readonly bucket: string;
  readonly stream: string;
  readonly from: number;
  readonly upTo: number;
}

/** replicationVerifyDigests. */
export interface DigestsRequest {
  readonly p: number;
  readonly streams: readonly DigestWanted[];
}

export interface StreamDigest extends StreamsPosition {
  readonly digest: string;
  readonly count: number;
  readonly missing: readonly SeqnumRange[];
}

export interface DigestsAnswer {
  readonly holds: boolean;
  readonly digests: readonly StreamDigest[];
}

/** replicationVerifyRepair: what the target replica does, from which source. */
export interface RepairPlan {
  readonly p: number;
  readonly bucket: string;
  readonly stream: string;
  readonly target: string;
  /** null: no replica holds what the target lacks (the plan only reports it). */
  readonly source: string | null;
  readonly kind: 'tail' | 'chunks';
  /** tail: import up to this seqnum. */
  readonly to: number;
  /** chunks: rebuild the chunks covering these ranges. */
  readonly ranges: readonly SeqnumRange[];
  /** chunks: records held with another content may be replaced (the source is the leader). */
  readonly replace: boolean;
}

export interface RepairResult {
  readonly records: number;
  readonly chunks: number;
  readonly aside: readonly string[];
  readonly skipped: string | null;
}

// ---------------------------------------------------------------------------
// The pure part: ranges, verdicts, plans

/** The seqnums every reachable replica should hold alike: the highest first to the lowest last. */
export function comparedRange(replicas: readonly { readonly first: number; readonly last: number }[]): { from: number; upTo: number } {
  if (replicas.length === 0) return { from: 1, upTo: 0 };
  return { from: Math.max(...replicas.map((replica) => replica.first)), upTo: Math.min(...replicas.map((replica) => replica.last)) };
}

function overlaps(ranges: readonly SeqnumRange[], from: number, to: number): boolean {
  return ranges.some((range) => range.from <= to && range.to >= from);
}

/** A replica's view as the judge needs it (VerifyReplica's fields). */
type Judged = Pick<VerifyReplica, 'node' | 'reachable' | 'last' | 'deletedAt' | 'digest' | 'missing'>;

/**
 * A stream's verdict from its replicas' answers (VerifyVerdict's order is
 * the precedence): diverged when two replicas that read every record of
 * from..upTo digest them differently; damaged when one cannot read some of
 * its records; unreachable when one did not answer; behind when one's last
 * seqnum (or delete) is below `highestLast` (`highestDeletedAt`), the
 * highest seen at the first look, so a replica only applying a moment later
 * than the leader has caught up by the second.
 */
export function judgeStream(replicas: readonly Judged[], range: { from: number; upTo: number }, highestLast: number, highestDeletedAt = 0): VerifyVerdict {
  const reachable = replicas.filter((replica) => replica.reachable);
  if (range.from <= range.upTo) {
    const whole = reachable.filter((replica) => !overlaps(replica.missing, range.from, range.upTo));
    if (new Set(whole.map((replica) => replica.digest)).size > 1) return VerifyVerdict.diverged;
  }
  if (reachable.some((replica) => replica.missing.length > 0)) return VerifyVerdict.damaged;
  if (reachable.length < replicas.length) return VerifyVerdict.unreachable;
  if (reachable.some((replica) => (replica.last ?? 0) < highestLast || (replica.deletedAt ?? 0) < highestDeletedAt)) return VerifyVerdict.behind;
  return VerifyVerdict.ok;
}

/** Whether `replica` can give every record of `ranges`. */
function holdsAll(replica: Judged & { first: number | null }, ranges: readonly SeqnumRange[]): boolean {
  if (replica.first === null || replica.last === null) return false;
  return ranges.every((range) => range.from >= replica.first! && range.to <= replica.last!) && !ranges.some((range) => overlaps(replica.missing, range.from, range.to));
}

/** The leader when it qualifies, else the first other replica that does. */
function pickSource<R extends { node: string }>(candidates: readonly R[], leader: string | undefined, qualifies: (candidate: R) => boolean): R | undefined {
  const fit = candidates.filter(qualifies);
  return fit.find((candidate) => candidate.node === leader) ?? fit[0];
}

/**
 * What to do for each replica of one stream: fill records it lacks (inside
 * the stream: rebuild the chunks covering them; past its last: import the
 * tail) from a replica that holds them, the leader first; replace records
 * that differ from the leader's (only when the leader itself reads every
 * compared record). A replica that only lacks a delete is left to
 * replication: verify never deletes.
 */
export function planRepairs(row: { partition: number; bucket: string; stream: string; from: number; upTo: number }, replicas: readonly (Judged & { first: number | null })[], leader: string | undefined): RepairPlan[] {
  const reachable = replicas.filter((replica) => replica.reachable && replica.last !== null);
  const highest = Math.max(0, ...reachable.map((replica) => replica.last!));
  const leaderReplica = reachable.find((replica) => replica.node === leader);
  const compared = row.from <= row.upTo;
  const reference = leaderReplica !== undefined && compared && !overlaps(leaderReplica.missing, row.from, row.upTo) ? leaderReplica.digest : undefined;
  const plans: RepairPlan[] = [];
  const base = { p: row.partition, bucket: row.bucket, stream: row.stream };
  for (const replica of reachable) {
    const others = reachable.filter((other) => other.node !== replica.node);
    const ranges: SeqnumRange[] = [...replica.missing];
    const differs = reference !== undefined && replica.node !== leader && replica.digest !== reference && !overlaps(replica.missing, row.from, row.upTo);
    if (differs) ranges.push({ from: row.from, to: row.upTo });
    if (ranges.length > 0) {
      const source = differs ? leaderReplica : pickSource(others, leader, (other) => holdsAll(other, replica.missing));
      plans.push({ ...base, target: replica.node, source: source?.node ?? null, kind: 'chunks', to: 0, ranges, replace: source !== undefined && source.node === leader });
    }
    if (replica.last! < highest) {
      const after = { from: replica.last! + 1, to: highest };
      const source = pickSource(others, leader, (other) => other.last === highest && !overlaps(other.missing, after.from, after.to));
      plans.push({ ...base, target: replica.node, source: source?.node ?? null, kind: 'tail', to: highest, ranges: [], replace: false });
    }
  }
  return plans;
}

/** Verdict counts, every verdict present. */
export function countVerdicts(verdicts: readonly VerifyVerdict[]): Record<VerifyVerdict, number> {
  const counts = Object.fromEntries(Object.values(VerifyVerdict).map((verdict) => [verdict, 0])) as Record<VerifyVerdict, number>;
  for (const verdict of verdicts) counts[verdict]++;
  return counts;
}

/** The answer with request.n = 1: one copy per partition, nothing to compare. */
export function singleCopyAnswer(request: VerifyRequest): VerifyAnswer {
  return { n: 1, bucket: request.bucket ?? null, stream: request.stream ?? null, repair: request.repair, partitions: 0, streams: 0, found: countVerdicts([]), counts: countVerdicts([]), rows: [], rowsOmitted: 0, unreachable: [] };
}

/** Keeps at most `max` rows, leaving out ok rows first, then the last ones; how many were left out. */
export function boundRows(rows: readonly VerifyRow[], max: number): { rows: VerifyRow[]; omitted: number } {
  const sorted = [...rows].sort(compareRows);
  if (sorted.length <= max) return { rows: sorted, omitted: 0 };
  const isOk = (row: VerifyRow) => row.verdict === VerifyVerdict.ok && row.found === VerifyVerdict.ok;
  const notOk = sorted.filter((row) => !isOk(row));
  const kept = notOk.length >= max ? notOk.slice(0, max) : [...notOk, ...sorted.filter(isOk).slice(0, max - notOk.length)].sort(compareRows);
  return { rows: kept, omitted: sorted.length - kept.length };
}

function compareRows(a: VerifyRow, b: VerifyRow): number {
  return a.partition - b.partition || (a.bucket < b.bucket ? -1 : a.bucket > b.bucket ? 1 : a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0);
}

/**
 * The leading run of `records` (back to back) that continues `afterSeq`
 * contiguously, up to `toSeq`: its bytes, count and last seqnum, and
 * whether a gap (the source lacks records too) cut it short.
 */
export function leadingRun(records: Buffer, afterSeq: number, toSeq: number): { bytes: Buffer; count: number; lastSeq: number; gap: boolean } {
  let offset = 0;
  let begin = -1;
  let expected = afterSeq + 1;
  let gap = false;
  while (offset < records.length && expected <= toSeq) {
    const seq = recordSeqAt(records, offset);
    const size = recordBytesAt(records, offset);
    if (seq < expected) {
      offset += size;
      continue;
    }
    if (seq > expected) {
      gap = true;
      break;
    }
    if (begin < 0) begin = offset;
    offset += size;
    expected++;
  }
  return { bytes: begin < 0 ? Buffer.alloc(0) : records.subarray(begin, offset), count: expected - afterSeq - 1, lastSeq: expected - 1, gap };
}

// ---------------------------------------------------------------------------
// The node's part

/** What verify needs of the node's stream store (StreamStore). */
export interface VerifiedStore {
  partitionStreams(partition: number): StreamPosition[];
  streamInfo(bucket: string, stream: string): Promise<StreamInfo | null>;
  exportRecords(bucket: string, stream: string, afterSeq: number, bytesMax: number): Promise<ExportedRecords>;
  importRecords(batch: ImportBatch): Promise<void>;
  lastSeqNow(bucket: string, stream: string): number;
  read(bucket: string, stream: string, options: ReadOptions): Promise<ReadResult>;
  chunkSpans(bucket: string, stream: string): ChunkSpan[];
  replaceChunk(bucket: string, stream: string, firstSeq: number, records: Buffer): Promise<ChunkReplaced>;
}

/** What verify needs of the node's replicas (ReplicaHost, ReplicationGroups). */
export interface VerifiedReplicas {
  holds(partition: number): boolean;
  role(partition: number): string | undefined;
  leaderOf(partition: number): string | undefined;
  /** The nodes of the partition's group, to be asked. */
  members(partition: number): readonly string[];
  /** Runs `work` between two applies of the partition's committed ops. */
  betweenApplies<T>(partition: number, work: () => Promise<T>): Promise<T>;
}

/** A node's replicas as verify sees them: the group to ask is this node's replica's voters (and old voters while it changes), else the ring's. */
export function hostReplicas(host: ReplicaHost, groups: ReplicationGroups): VerifiedReplicas {
  return {
    holds: (partition) => host.holds(partition),
    role: (partition) => host.status(partition)?.role,
    leaderOf: (partition) => host.leaderOf(partition),
    members: (partition) => {
      const config = host.status(partition)?.config;
      return config === undefined || config.voters.length === 0 ? groups.members(partition) : [...new Set([...config.voters, ...(config.old ?? [])])];
    },
    betweenApplies: (partition, work) => host.betweenApplies(partition, work),
  };
}

/** The transport as verify uses it (ClusterTransport). */
export interface VerifyTransport {
  request<T = unknown>(peer: string, type: number, body: unknown, options?: RequestOptions): Promise<T>;
  handle(type: number, handler: RequestHandler): () => void;
}

export interface VerifyRequest {
  readonly bucket?: string;
  readonly stream?: string;
  readonly repair: boolean;
}

export interface ReplicaVerifierOptions {
  readonly self: string;
  readonly n: number;
  readonly ringSize: () => number;
  readonly transport: VerifyTransport;
  readonly store: VerifiedStore;
  readonly replicas: VerifiedReplicas;
  readonly logger: Logger;
}

/** One replica's answers about a partition's streams. */
interface ReplicaLook {
  readonly node: string;
  readonly error: string | null;
  readonly answer: StreamsAnswer | undefined;
  readonly positions: ReadonlyMap<string, StreamsPosition>;
}

/** One stream as compared: its range and each replica's answer. */
interface StreamLook {
  readonly bucket: string;
  readonly stream: string;
  readonly from: number;
  readonly upTo: number;
  readonly highestLast: number;
  readonly highestDeletedAt: number;
  readonly replicas: VerifyReplica[];
}

function keyOf(bucket: string, stream: string): string {
  return `${bucket}/${stream}`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class ReplicaVerifier {
  private readonly logger: Logger;
  private readonly unsubscribe: () => void;

  constructor(private readonly options: ReplicaVerifierOptions) {
    this.logger = options.logger.child({ component: 'verify' });
    const { transport } = options;
    const offStreams = transport.handle(MessageType.replicationVerifyStreams, (body) => this.serveStreams(body as StreamsRequest));
    const offDigests = transport.handle(MessageType.replicationVerifyDigests, (body) => this.serveDigests(body as DigestsRequest));
    const offRepair = transport.handle(MessageType.replicationVerifyRepair, (body) => this.serveRepair(body as RepairPlan));
    this.unsubscribe = () => {
      offStreams();
      offDigests();
      offRepair();
    };
  }

  close(): void {
    this.unsubscribe();
  }

  // --- Asking --------------------------------------------------------------

  /** Every stream in scope compared across its replicas (and repaired, with `repair`). */
  async verify(request: VerifyRequest): Promise<VerifyAnswer> {
    if (request.stream !== undefined && request.bucket === undefined) throw new IorioError('invalid-param', 'a stream is verified within its bucket: bucket/stream');
    const ringSize = this.options.ringSize();
    const partitions = request.bucket !== undefined && request.stream !== undefined ? [partitionOf(request.bucket, request.stream, ringSize)] : Array.from({ length: ringSize }, (_, partition) => partition);
    const rows: VerifyRow[] = [];
    const unreachable = new Set<string>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < partitions.length) {
        const partition = partitions[next++]!;
        rows.push(...(await this.verifyPartition(partition, request, unreachable)));
      }
    };
    await Promise.all(Array.from({ length: Math.min(partitionsInFlightMax, partitions.length) }, worker));
    const bounded = boundRows(rows, verifyRowsCountMax);
    return {
      n: this.options.n,
      bucket: request.bucket ?? null,
      stream: request.stream ?? null,
      repair: request.repair,
      partitions: partitions.length,
      streams: rows.length,
      found: countVerdicts(rows.map((row) => row.found)),
      counts: countVerdicts(rows.map((row) => row.verdict)),
      rows: bounded.rows,
      rowsOmitted: bounded.omitted,
      unreachable: [...unreachable].sort(),
    };
  }

  private async verifyPartition(partition: number, request: VerifyRequest, unreachable: Set<string>): Promise<VerifyRow[]> {
    const scope = { ...(request.bucket === undefined ? {} : { bucket: request.bucket }), ...(request.stream === undefined ? {} : { stream: request.stream }) };
    const { looks, leader } = await this.look(partition, scope, unreachable);
    const rows: VerifyRow[] = [];
    for (const look of looks) {
      const found = judgeStream(look.replicas, look, look.highestLast, look.highestDeletedAt);
      const row: VerifyRow = { partition, bucket: look.bucket, stream: look.stream, from: look.from, upTo: look.upTo, found, verdict: found, replicas: look.replicas, repairs: [] };
      rows.push(request.repair && found !== VerifyVerdict.ok ? await this.repairRow(row, leader, unreachable) : row);
    }
    return rows;
  }

  /** Runs the row's repairs, then looks at the stream again. */
  private async repairRow(row: VerifyRow, leader: string | undefined, unreachable: Set<string>): Promise<VerifyRow> {
    const plans = planRepairs(row, row.replicas, leader);
    if (plans.length === 0) return row;
    const repairs: VerifyRepair[] = [];
    for (const plan of plans) repairs.push(await this.runRepair(plan));
    const again = await this.look(row.partition, { bucket: row.bucket, stream: row.stream }, unreachable);
    const look = again.looks[0];
    if (look === undefined) return { ...row, repairs };
    const verdict = judgeStream(look.replicas, look, look.highestLast, look.highestDeletedAt);
    return { ...row, from: look.from, upTo: look.upTo, verdict, replicas: look.replicas, repairs };
  }

  private async runRepair(plan: RepairPlan): Promise<VerifyRepair> {
    const reported = { target: plan.target, source: plan.source, kind: plan.kind };
    if (plan.source === null) {
      const what = plan.kind === 'tail' ? `seqnums after its last, up to ${plan.to}` : `seqnums ${plan.ranges.map((range) => `${range.from}-${range.to}`).join(', ')}`;
      return { ...reported, records: 0, chunks: 0, aside: [], skipped: `no reachable replica holds ${what}` };
    }
    try {
      const result = await this.ask<RepairResult>(plan.target, MessageType.replicationVerifyRepair, plan, repairTimeoutMs);
      this.logger.info({ ...plan, ...result }, 'verify: a replica was repaired');
      return { ...reported, ...result };
    } catch (error) {
      return { ...reported, records: 0, chunks: 0, aside: [], skipped: `the repair failed: ${errorText(error)}` };
    }
  }

  /** Asks every replica of the partition about the streams in scope: positions, then digests over the compared ranges. */
  private async look(partition: number, scope: { bucket?: string; stream?: string }, unreachable: Set<string>): Promise<{ looks: StreamLook[]; leader: string | undefined }> {
    const members = [...this.options.replicas.members(partition)].sort();
    const views = await Promise.all(members.map((node) => this.askStreams(node, partition, scope)));
    for (const view of views) if (view.error !== null) unreachable.add(view.node);
    const leader = leaderOf(views);
    const keys = [...new Set(views.flatMap((view) => [...view.positions.keys()]))].sort();
    const looks: StreamLook[] = [];
    for (let start = 0; start < keys.length; start += verifyDigestStreamsCountMax) {
      looks.push(...(await this.digestPage(partition, keys.slice(start, start + verifyDigestStreamsCountMax), views, leader)));
    }
    return { looks, leader };
  }

  private async digestPage(partition: number, keys: readonly string[], views: readonly ReplicaLook[], leader: string | undefined): Promise<StreamLook[]> {
    const answering = views.filter((view) => view.error === null);
    const wanted = keys.map((key) => {
      const { bucket, stream } = views.map((view) => view.positions.get(key)).find((position) => position !== undefined)!;
      const positions = answering.map((view) => view.positions.get(key) ?? { first: 1, last: 0, deletedAt: 0 });
      return { bucket, stream, ...comparedRange(positions), highestLast: Math.max(...positions.map((position) => position.last)), highestDeletedAt: Math.max(...positions.map((position) => position.deletedAt)) };
    });
    const request: DigestsRequest = { p: partition, streams: wanted.map(({ bucket, stream, from, upTo }) => ({ bucket, stream, from, upTo })) };
    const answers = await Promise.all(
      views.map(async (view) => {
        if (view.error !== null) return { node: view.node, error: view.error, digests: new Map<string, StreamDigest>() };
        try {
          const answer = await this.ask<DigestsAnswer>(view.node, MessageType.replicationVerifyDigests, request, digestsTimeoutMs);
          if (!answer.holds) return { node: view.node, error: `${view.node} holds no replica of partition ${partition} now`, digests: new Map<string, StreamDigest>() };
          return { node: view.node, error: null, digests: new Map(answer.digests.map((digest) => [keyOf(digest.bucket, digest.stream), digest])) };
        } catch (error) {
          return { node: view.node, error: errorText(error), digests: new Map<string, StreamDigest>() };
        }
      }),
    );
    return wanted.map((stream) => ({
      ...stream,
      replicas: answers.map((answer) => replicaOf(answer.node, answer.node === leader, answer.error, answer.digests.get(keyOf(stream.bucket, stream.stream)))),
    }));
  }

  /** One replica's streams of the partition in scope, every page; an error instead when it cannot answer. */
  private async askStreams(node: string, partition: number, scope: { bucket?: string; stream?: string }): Promise<ReplicaLook> {
    const positions = new Map<string, StreamsPosition>();
    let answer: StreamsAnswer | undefined;
    let after: string | undefined;
    try {
      do {
        answer = await this.ask<StreamsAnswer>(node, MessageType.replicationVerifyStreams, { p: partition, ...scope, ...(after === undefined ? {} : { after }) }, streamsTimeoutMs);
        if (!answer.holds) return { node, error: `${node} holds no replica of partition ${partition} now`, answer, positions };
        for (const position of answer.streams) positions.set(keyOf(position.bucket, position.stream), position);
        const last = answer.streams[answer.streams.length - 1];
        after = last === undefined ? undefined : keyOf(last.bucket, last.stream);
      } while (answer.more && after !== undefined);
    } catch (error) {
      return { node, error: errorText(error), answer: undefined, positions };
    }
    return { node, error: null, answer, positions };
  }

  /** A request to a replica; to this node itself, the handler is called directly. */
  private async ask<T>(node: string, type: number, body: unknown, timeoutMs: number): Promise<T> {
    if (node === this.options.self) {
      switch (type) {
        case MessageType.replicationVerifyStreams:
          return (await this.serveStreams(body as StreamsRequest)) as T;
        case MessageType.replicationVerifyDigests:
          return (await this.serveDigests(body as DigestsRequest)) as T;
        case MessageType.replicationVerifyRepair:
          return (await this.serveRepair(body as RepairPlan)) as T;
      }
    }
    return this.options.transport.request<T>(node, type, body, { timeoutMs });
  }

  // --- Answering -----------------------------------------------------------

  private async serveStreams(body: StreamsRequest): Promise<StreamsAnswer> {
    const { replicas, store } = this.options;
    if (!replicas.holds(body.p)) return { holds: false, role: null, leader: null, streams: [], more: false };
    const inScope = store
      .partitionStreams(body.p)
      .filter((position) => (body.bucket === undefined || position.bucket === body.bucket) && (body.stream === undefined || position.stream === body.stream))
      .filter((position) => body.after === undefined || keyOf(position.bucket, position.stream) > body.after)
      .sort((a, b) => (keyOf(a.bucket, a.stream) < keyOf(b.bucket, b.stream) ? -1 : 1));
    const page = inScope.slice(0, verifyStreamsPageCountMax);
    const streams: StreamsPosition[] = [];
    for (const position of page) {
      const info = await store.streamInfo(position.bucket, position.stream);
      streams.push({ bucket: position.bucket, stream: position.stream, first: info?.first ?? position.last + 1, last: position.last, deletedAt: position.deletedAt });
    }
    return { holds: true, role: replicas.role(body.p) ?? null, leader: replicas.leaderOf(body.p) ?? null, streams, more: inScope.length > page.length };
  }

  private async serveDigests(body: DigestsRequest): Promise<DigestsAnswer> {
    if (!this.options.replicas.holds(body.p)) return { holds: false, digests: [] };
    if (body.streams.length > verifyDigestStreamsCountMax) throw new IorioError('too-large', `at most ${verifyDigestStreamsCountMax} streams per digest request`);
    const digests: StreamDigest[] = [];
    for (const wanted of body.streams) digests.push(await this.digestOf(wanted));
    return { holds: true, digests };
  }

  /**
   * Reads the whole stream as the store exports it: a SHA-256 over the
   * records from..upTo, and the ranges within first..last it cannot read
   * (records the store steps over).
   */
  private async digestOf(wanted: DigestWanted): Promise<StreamDigest> {
    const { store } = this.options;
    const info = await store.streamInfo(wanted.bucket, wanted.stream);
    const last = info?.last ?? 0;
    const first = info?.first ?? last + 1;
    const hash = createHash('sha256');
    const missing: SeqnumRange[] = [];
    const addMissing = (range: SeqnumRange) => {
      if (missing.length < verifyMissingRangesCountMax) missing.push(range);
    };
    let count = 0;
    let expected = first;
    let after = first - 1;
    while (after < last) {
      const batch = await store.exportRecords(wanted.bucket, wanted.stream, after, exportBytesMax);
      for (let offset = 0; offset < batch.records.length; offset += recordBytesAt(batch.records, offset)) {
        const seq = recordSeqAt(batch.records, offset);
        if (seq > last) break;
        if (seq > expected) addMissing({ from: expected, to: seq - 1 });
        if (seq >= wanted.from && seq <= wanted.upTo) {
          hash.update(batch.records.subarray(offset, offset + recordBytesAt(batch.records, offset)));
          count++;
        }
        expected = seq + 1;
      }
      if (batch.lastSeq <= after) break;
      after = batch.lastSeq;
    }
    if (expected <= last) addMissing({ from: expected, to: last });
    return { bucket: wanted.bucket, stream: wanted.stream, first, last, deletedAt: info?.deletedAt ?? 0, digest: hash.digest('hex'), count, missing };
  }

  private async serveRepair(plan: RepairPlan): Promise<RepairResult> {
    if (!this.options.replicas.holds(plan.p)) throw new IorioError('unavailable', `${this.options.self} holds no replica of partition ${plan.p} now`);
    if (plan.source === null || plan.source === this.options.self) throw new IorioError('invalid-param', 'a repair needs another replica as its source');
    return plan.kind === 'tail' ? this.fillTail(plan, plan.source) : this.rebuildChunks(plan, plan.source);
  }

  /** Imports the source's records after this replica's last seqnum, up to `plan.to`, never past a gap. */
  private async fillTail(plan: RepairPlan, source: string): Promise<RepairResult> {
    const { store, replicas } = this.options;
    let records = 0;
    let after = store.lastSeqNow(plan.bucket, plan.stream);
    while (after < plan.to) {
      const batch = await this.fetchRecords(source, plan, after);
      const run = leadingRun(batch.records, after, plan.to);
      if (run.count === 0) return { records, chunks: 0, aside: [], skipped: `${source} has no seqnum ${after + 1} to give` };
      await replicas.betweenApplies(plan.p, () => store.importRecords({ bucket: plan.bucket, stream: plan.stream, records: run.bytes, deletedAt: 0 }));
      records += run.count;
      after = Math.max(run.lastSeq, store.lastSeqNow(plan.bucket, plan.stream));
      if (run.gap) return { records, chunks: 0, aside: [], skipped: `${source} lacks seqnums after ${run.lastSeq} too` };
    }
    return { records, chunks: 0, aside: [], skipped: null };
  }

  /**
   * Rebuilds each of this replica's chunks that covers a range of the plan
   * and lacks records, or holds some with another content than the
   * source's (replaced only when `plan.replace`), from the source's records.
   */
  private async rebuildChunks(plan: RepairPlan, source: string): Promise<RepairResult> {
    const spans = this.options.store.chunkSpans(plan.bucket, plan.stream).filter((span) => overlaps(plan.ranges, span.firstSeq, span.lastSeq));
    if (spans.length === 0) return { records: 0, chunks: 0, aside: [], skipped: 'no chunk of this replica covers the ranges (their files are gone): not rebuilt' };
    const result = { records: 0, chunks: 0, aside: [] as string[], skipped: [] as string[] };
    for (const span of spans) {
      try {
        const done = await this.rebuildChunk(plan, source, span);
        if (typeof done === 'string') {
          result.skipped.push(done);
          continue;
        }
        if (done === undefined) continue;
        result.records += done.records;
        result.chunks++;
        if (done.aside !== null) result.aside.push(done.aside);
      } catch (error) {
        result.skipped.push(`chunk ${span.firstSeq}-${span.lastSeq}: ${errorText(error)}`);
      }
    }
    return { records: result.records, chunks: result.chunks, aside: result.aside, skipped: result.skipped.length === 0 ? null : result.skipped.join('; ') };
  }

  /** One chunk: undefined when it already matches, a reason when it cannot be rebuilt, else what was done. */
  private async rebuildChunk(plan: RepairPlan, source: string, span: ChunkSpan): Promise<{ records: number; aside: string | null } | string | undefined> {
    const { store, replicas } = this.options;
    const theirs = await this.fetchRange(source, plan, span.firstSeq, span.lastSeq);
    if (typeof theirs === 'string') return `chunk ${span.firstSeq}-${span.lastSeq}: ${theirs}`;
    const ours = await this.ownRecords(plan, span.firstSeq, span.lastSeq);
    const { lacking, differing } = compareRecords(theirs, ours);
    if (lacking === 0 && differing.length === 0) return undefined;
    if (differing.length > 0 && !plan.replace) {
      return `chunk ${span.firstSeq}-${span.lastSeq}: seqnums ${differing.slice(0, 5).join(', ')}${differing.length > 5 ? ', ...' : ''} differ from ${source}'s; only the leader's copy replaces them`;
    }
    const replaced = await replicas.betweenApplies(plan.p, async () => {
      // The active chunk may have grown since: the records applied meanwhile are this replica's own, just committed.
      const now = store.chunkSpans(plan.bucket, plan.stream).find((candidate) => candidate.firstSeq === span.firstSeq);
      const grown = now !== undefined && now.lastSeq > span.lastSeq ? await this.ownRun(plan, span.lastSeq, now.lastSeq) : Buffer.alloc(0);
      return store.replaceChunk(plan.bucket, plan.stream, span.firstSeq, grown.length === 0 ? theirs : Buffer.concat([theirs, grown]));
    });
    return { records: lacking + differing.length, aside: replaced.aside };
  }

  /** The source's records firstSeq..lastSeq back to back, or why it cannot give them all. */
  private async fetchRange(source: string, plan: RepairPlan, firstSeq: number, lastSeq: number): Promise<Buffer | string> {
    const pieces: Buffer[] = [];
    let after = firstSeq - 1;
    while (after < lastSeq) {
      const batch = await this.fetchRecords(source, plan, after);
      const run = leadingRun(batch.records, after, lastSeq);
      if (run.count > 0) pieces.push(Buffer.from(run.bytes));
      if (run.gap || run.count === 0) return `${source} cannot give seqnums ${run.lastSeq + 1}-${lastSeq} either`;
      after = run.lastSeq;
    }
    return Buffer.concat(pieces);
  }

  /** This replica's records after afterSeq up to toSeq, all of them (else a conflict: the caller tries again later). */
  private async ownRun(plan: RepairPlan, afterSeq: number, toSeq: number): Promise<Buffer> {
    const ours = await this.ownRecords(plan, afterSeq + 1, toSeq);
    const records: Buffer[] = [];
    for (let seq = afterSeq + 1; seq <= toSeq; seq++) {
      const record = ours.get(seq);
      if (record === undefined) throw new IorioError('conflict', `the active chunk grew while it was repaired and seqnum ${seq} cannot be read; verify again`);
      records.push(record);
    }
    return Buffer.concat(records);
  }

  /** This replica's readable records firstSeq..lastSeq, encoded as stored, by seqnum. */
  private async ownRecords(plan: RepairPlan, firstSeq: number, lastSeq: number): Promise<Map<number, Buffer>> {
    const records = new Map<number, Buffer>();
    let from = firstSeq;
    while (from <= lastSeq) {
      const page = await this.options.store.read(plan.bucket, plan.stream, { from, limit: readLimitMax });
      const entries = page.entries.filter((entry) => entry.seq <= lastSeq);
      for (const entry of entries) records.set(entry.seq, encodeRecord(entry.seq, entry.t, entry.epoch, entry.payload));
      const lastEntry = page.entries[page.entries.length - 1];
      if (lastEntry === undefined || lastEntry.seq >= lastSeq) break;
      from = lastEntry.seq + 1;
    }
    return records;
  }

  /** A batch of the source's records after `afterSeq` (the state transfer's request, served by its replica host). */
  private fetchRecords(source: string, plan: RepairPlan, afterSeq: number): Promise<{ records: Buffer; lastSeq: number }> {
    return this.options.transport
      .request<{ records: Buffer; lastSeq: number }>(source, MessageType.replicationStateRecords, { p: plan.p, bucket: plan.bucket, stream: plan.stream, after: afterSeq }, { timeoutMs: recordsTimeoutMs })
      .then((batch) => ({ records: Buffer.from(batch.records), lastSeq: batch.lastSeq }));
  }
}

/** The leader as the replicas say: the one that says it leads, else the one most of them name. */
function leaderOf(views: readonly ReplicaLook[]): string | undefined {
  const leading = views.find((view) => view.answer?.role === 'leader' && view.answer.leader === view.node);
  if (leading !== undefined) return leading.node;
  const named = new Map<string, number>();
  for (const view of views) if (view.answer?.leader) named.set(view.answer.leader, (named.get(view.answer.leader) ?? 0) + 1);
  return [...named].sort((a, b) => b[1] - a[1])[0]?.[0];
}

function replicaOf(node: string, leader: boolean, error: string | null, digest: StreamDigest | undefined): VerifyReplica {
  if (error !== null) return { node, reachable: false, leader, first: null, last: null, deletedAt: null, digest: null, count: null, missing: [], error };
  if (digest === undefined) return { node, reachable: false, leader, first: null, last: null, deletedAt: null, digest: null, count: null, missing: [], error: 'no digest in its answer' };
  return { node, reachable: true, leader, first: digest.first, last: digest.last, deletedAt: digest.deletedAt, digest: digest.digest, count: digest.count, missing: digest.missing, error: null };
}

/** Records the source gives (back to back) against this replica's (by seqnum): how many it lacks, which differ. */
export function compareRecords(theirs: Buffer, ours: ReadonlyMap<number, Buffer>): { lacking: number; differing: number[] } {
  let lacking = 0;
  const differing: number[] = [];
  for (let offset = 0; offset < theirs.length; offset += recordBytesAt(theirs, offset)) {
    const seq = recordSeqAt(theirs, offset);
    const own = ours.get(seq);
    if (own === undefined) lacking++;
    else if (!own.equals(theirs.subarray(offset, offset + recordBytesAt(theirs, offset)))) differing.push(seq);
  }
  return { lacking, differing };
}
