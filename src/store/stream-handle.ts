/**
 * A stream as the store holds it in memory: its seqnums, its chunks, the
 * write buffer of its active chunk, its tail and its listeners. Plain data;
 * the stream store (store/stream-store.ts) owns every change to it.
 */
import path from 'node:path';
import type { DecodedRecord } from '../core/record.js';
import type { ChunkCapacity, RetentionPolicy } from '../core/retention.js';
import { chunkFileName, type SparseIndex } from './chunks.js';
import type { StoredEntry, StreamListener } from './types.js';

/** What lmdb keeps of a stream at each checkpoint (meta.streams). */
export interface StreamState {
  /** Last seqnum ever assigned and durable. */
  readonly last: number;
  /** First seqnum of the active chunk and its validated length (none: no chunk). */
  readonly activeFirst: number | null;
  readonly activeBytes: number;
  /** Seqnum of the last record within activeBytes. */
  readonly activeLast: number;
  readonly lastMs: number;
  /** Seqnum at which the stream was last deleted (0: never). */
  readonly deletedAt: number;
}

/** A closed chunk's summary (meta.chunks). */
export interface ChunkSummaryValue {
  readonly lastSeq: number;
  readonly lastMs: number;
  readonly bytes: number;
}

export interface Chunk {
  readonly firstSeq: number;
  /** Logical size: written plus buffered bytes. */
  bytes: number;
  lastMs: number | undefined;
  index: SparseIndex | undefined;
  /**
   * Durable records not yet written to the chunk file, oldest first: they
   * wait in memory (the commit log holds them) until a write succeeds.
   */
  unwritten?: Buffer[];
  unwrittenBytes?: number;
}


export class StreamHandle {
  readonly key: string;
  readonly bucket: string;
  readonly stream: string;
  readonly partition: number;
  readonly directory: string;
  /** Last seqnum assigned (in flight included). */
  last = 0;
  /** Last seqnum durable and visible. */
  durableLast = 0;
  lastMs = 0;
  deletedAt = 0;
  chunks: Chunk[] = [];
  activeCount = 0;
  /** Seqnum of the last record in the active chunk. */
  activeLast = 0;
  activeFirstMs: number | undefined;
  /** Bytes of this stream's chunks waiting in memory to be written. */
  unwrittenBytes = 0;
  tail: StoredEntry[] = [];
  tailBytes = 0;
  readonly listeners = new Set<StreamListener>();
  inflight = 0;
  dirty = false;
  /** During a trusted replay: chunk bytes not yet matched to log records, and the files after them. */
  replay: { files: { firstSeq: number; bytes: number }[]; remaining: number } | undefined;
  /**
   * Recovery only: intact records read from chunk bytes that recovery cut
   * (past what the log confirmed), ascending. A damaged commit log may have
   * lost their frames; they fill such gaps instead of being lost.
   */
  salvage: DecodedRecord[] | undefined;
  /** lmdb holds a state for the stream (checkpointed, or recorded when it was created). */
  hasState = false;
  /** In the loaded set, and used since the last sweep passed it. */
  isLoaded = false;
  referenced = false;
  capacity: ChunkCapacity | undefined;
  policy: RetentionPolicy | undefined;

  constructor(bucket: string, stream: string, partition: number, directory: string) {
    this.key = streamKey(bucket, stream);
    this.bucket = bucket;
    this.stream = stream;
    this.partition = partition;
    this.directory = directory;
  }

  get first(): number {
    const chunk = this.chunks[0];
    return chunk !== undefined && chunk.firstSeq <= this.durableLast ? chunk.firstSeq : this.durableLast + 1;
  }

  get active(): Chunk | undefined {
    return this.chunks[this.chunks.length - 1];
  }

  /** The stream holds entries written since it was last deleted. */
  get exists(): boolean {
    return this.durableLast > this.deletedAt;
  }

  chunkPath(firstSeq: number): string {
    return path.join(this.directory, chunkFileName(firstSeq));
  }
}

export function streamKey(bucket: string, stream: string): string {
  return `${bucket}\u0000${stream}`;
}
