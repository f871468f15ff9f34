import type { SeqRange } from '../core/record.js';

export type { SeqRange };

/**
 * The stream store's public contract, used by the HTTP layer (and later by
 * replication). Implemented by `StreamStore` in store/stream-store.ts.
 */

/** One stored entry. `payload` is the JSON text of the entry's data, as UTF-8 bytes. */
export interface StoredEntry {
  readonly seq: number;
  /** Append time, ms since the epoch. */
  readonly t: number;
  readonly epoch: number;
  readonly payload: Buffer;
}

export interface AppendMeta {
  readonly id: number;
  readonly t: number;
}

export interface AppendRequest {
  readonly bucket: string;
  readonly stream: string;
  /** JSON texts, already validated by the caller. At least one. */
  readonly payloads: readonly Buffer[];
  /** Conditional append: the stream's last seqnum must be this (0: the stream must be empty). */
  readonly expectSeq?: number;
  /**
   * The client's idempotency key (scoped to its user, bucket and stream) and
   * a digest of its request. A replicated partition keeps it in its log, so
   * a retry after a failover is answered, not written again; a single copy
   * (request.n = 1) leaves it to the HTTP layer's window.
   */
  readonly idempotency?: { readonly key: string; readonly digest: string };
}

export interface ReadOptions {
  /** How many entries at most (0 gives none). */
  readonly limit: number;
  /** First seqnum wanted; absent: the last `limit` entries. */
  readonly from?: number;
}

export interface ReadResult {
  readonly entries: readonly StoredEntry[];
  /** Oldest seqnum still kept (last + 1 when nothing is kept). */
  readonly first: number;
  /** Last seqnum ever assigned (0 when the stream was never written). */
  readonly last: number;
  /** True when `from` was below `first`: the range started at the oldest kept entry instead. */
  readonly truncated: boolean;
  /**
   * Seqnums inside the span read that no longer exist (lost to a damaged
   * file): the entries after them are returned, and the caller is told.
   */
  readonly missing?: readonly SeqRange[];
}


/** Entries of a stream that were lost or cannot be read (a damaged chunk or commit log). */
export interface DamageReport {
  readonly bucket: string;
  readonly stream: string;
  readonly from: number;
  readonly to: number;
  readonly reason: string;
}

/** Names gathered from the nodes that hold them (a coverage query). */
export interface Listing {
  readonly names: string[];
  /** Some node did not answer: the names may be incomplete. */
  readonly partial: boolean;
  /** The nodes that did not answer. */
  readonly missing?: readonly string[];
}

/** How far a stream goes on this node: where a handoff to it resumes. */
export interface StreamPosition {
  readonly bucket: string;
  readonly stream: string;
  /** Last durable seqnum (0: none). */
  readonly last: number;
  /** Seqnum up to which the stream was deleted (0: never). */
  readonly deletedAt: number;
}

export interface ExportedRecords {
  /** Records back to back (core/record.ts), ascending; empty when nothing follows `afterSeq`. */
  readonly records: Buffer;
  readonly count: number;
  /** Seqnum up to which the stream was read: the next batch starts after it; `last` when the stream was read to its end. */
  readonly lastSeq: number;
  /** The stream's last durable seqnum and delete tombstone when the batch was read. */
  readonly last: number;
  readonly deletedAt: number;
}

/** The seqnums one chunk of a stream covers: its first, up to the next chunk's first minus one (the last chunk: the stream's last). */
export interface ChunkSpan {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly bytes: number;
  /** The chunk appends go to. */
  readonly active: boolean;
}

/** A chunk rebuilt by StreamStore.replaceChunk. */
export interface ChunkReplaced {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly bytes: number;
  /** Where the replaced file was copied, relative to the data folder (`damaged/vnodes/...`); null when there was no file. */
  readonly aside: string | null;
}

export interface ImportBatch {
  readonly bucket: string;
  readonly stream: string;
  /** Records as exported: ascending, each with its checksum; a gap is a range the source no longer had. */
  readonly records: Buffer;
  /** The source's delete tombstone for the stream. */
  readonly deletedAt: number;
  /**
   * Acknowledged once written to the commit log, without waiting for its
   * fdatasync: for a replicated partition, whose log already holds the ops
   * durably (the replica host compacts its log only behind a checkpoint).
   */
  readonly lazy?: boolean;
}

export interface EvictionPolicy {
  readonly max_count?: number;
  readonly max_bytes?: number;
  readonly max_age_secs?: number;
}

/** Where the eviction policy in force on a stream comes from. */
export const PolicySource = { stream: 'stream', bucket: 'bucket', default: 'default', none: 'none' } as const;
export type PolicySource = (typeof PolicySource)[keyof typeof PolicySource];

/** A stream's state as the node serving it holds it (GET /streams/:bucket/:stream/info). */
export interface StreamInfo {
  readonly bucket: string;
  readonly stream: string;
  readonly partition: number;
  /** Oldest seqnum still kept (last + 1 when none is). */
  readonly first: number;
  /** Last seqnum assigned and durable (0: never written). */
  readonly last: number;
  /** Entries kept: last - first + 1 (entries lost to a damaged file included). */
  readonly entries: number;
  /** Bytes of its chunk files (record headers included), written or waiting to be. */
  readonly bytes: number;
  readonly chunks: number;
  /** Time of the last append, ms since the epoch (0: unknown or never). */
  readonly lastMs: number;
  /** Seqnum up to which the stream was deleted (0: never). */
  readonly deletedAt: number;
  /** The eviction policy in force (`{}`: none) and where it comes from. */
  readonly policy: EvictionPolicy;
  readonly policySource: PolicySource;
  /** eviction.bucket.size.max: the bucket's size cap in bytes, also in force (0: none). */
  readonly bucketBytesMax: number;
  /** The node that answered (set by the cluster's router). */
  readonly node?: string;
}

export type StreamListener = (entries: readonly StoredEntry[]) => void;

export interface StoreStats {
  appends: number;
  appendBytes: number;
  reads: number;
  readsFromTail: number;
  readsFromDisk: number;
  logFlushes: number;
  checkpoints: number;
  evictedChunks: number;
  evictedBytes: number;
  openStreams: number;
  openFiles: number;
  /** Ranges of entries found lost or unreadable since start (each reported once). */
  damagedRanges: number;
  /** The most recent of them (bounded). */
  damaged: DamageReport[];
  /** Why appends are refused right now (a full disk, a failing chunk write), or null. */
  writesRefused: string | null;
}

export interface Store {
  /** Appends all payloads to one stream atomically with contiguous seqnums; resolves once durable. */
  append(request: AppendRequest): Promise<AppendMeta[]>;
  /**
   * Appends to several streams of one partition in one atomic write (PATCH: a
   * stream and its `-$patch` log). Every `expectSeq` is checked first; if one
   * fails nothing is written (409 conflict).
   */
  appendAtomic(requests: readonly AppendRequest[]): Promise<AppendMeta[][]>;
  read(bucket: string, stream: string, options: ReadOptions): Promise<ReadResult>;
  /** Last assigned seqnum, 0 for a stream never written. */
  lastSeq(bucket: string, stream: string): Promise<number>;
  /** The stream's seqnums, size, chunks and policy in force; null for a stream never written. */
  streamInfo(bucket: string, stream: string): Promise<StreamInfo | null>;
  /** Removes the stream's files; its seqnums still never restart. */
  deleteStream(bucket: string, stream: string): Promise<void>;
  /** Buckets with at least one stream; `partial` when part of the cluster did not answer. */
  listBuckets(): Promise<Listing>;
  listStreams(bucket: string): Promise<Listing>;
  /** Called with each durable batch of new entries, in seqnum order. Returns an unsubscribe function. */
  subscribe(bucket: string, stream: string, listener: StreamListener): () => void;
  getPolicy(bucket: string, stream?: string): EvictionPolicy | undefined;
  setPolicy(bucket: string, stream: string | undefined, policy: EvictionPolicy): Promise<void>;
  deletePolicy(bucket: string, stream: string | undefined): Promise<void>;
  stats(): StoreStats;
  /** The streams this node holds in a partition (deleted ones too: their tombstones move with them), and how far each goes. */
  partitionStreams(partition: number): StreamPosition[];
  /** Up to about `bytesMax` of a stream's durable records after `afterSeq`, exactly as stored (seqnums, timestamps, epochs): a handoff batch. */
  exportRecords(bucket: string, stream: string, afterSeq: number, bytesMax: number): Promise<ExportedRecords>;
  /** Makes a handoff batch durable here as it came; records already held are skipped, so a resumed transfer writes nothing twice. */
  importRecords(batch: ImportBatch): Promise<void>;
  /** Forgets every stream of a partition, durably (its new owner has taken over); resolves with how many it held. */
  dropPartition(partition: number): Promise<number>;
  /** Flushes, checkpoints and closes every file. */
  close(): Promise<void>;
}
