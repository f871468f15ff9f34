import type { StoredEntry } from '../../store/types.js';

/**
 * The listen wire format, built by concatenation: the stored payload is
 * already JSON text, so it is never parsed again on the way out.
 *
 *   event:  {"meta":{"id":<seq>,"t":<ms>,"bucket":"b","stream":"s"},"data":<payload>}
 *   batch:  [event, event, ...]            (one WebSocket message, one SSE `data:` line)
 *   notice: {"type":"truncated","bucket":"b","stream":"s","requested":<seq>,"first":<seq>}
 */

/** A (bucket, stream) pair with its JSON-quoted names, computed once per stream. */
export interface StreamRef {
  readonly bucket: string;
  readonly stream: string;
  /** Map key; names never hold ':' (core/names.ts). */
  readonly key: string;
  readonly metaSuffix: string;
}

export function streamRef(bucket: string, stream: string): StreamRef {
  return {
    bucket,
    stream,
    key: streamKey(bucket, stream),
    metaSuffix: ',"bucket":' + JSON.stringify(bucket) + ',"stream":' + JSON.stringify(stream) + '},"data":',
  };
}

export function streamKey(bucket: string, stream: string): string {
  return bucket + ':' + stream;
}

export function encodeEvent(ref: StreamRef, entry: StoredEntry): string {
  return '{"meta":{"id":' + entry.seq + ',"t":' + entry.t + ref.metaSuffix + entry.payload.toString('utf8') + '}';
}

export interface TruncatedNotice {
  readonly type: 'truncated';
  readonly bucket: string;
  readonly stream: string;
  readonly requested: number;
  readonly first: number;
}

export function truncatedNotice(ref: StreamRef, requested: number, first: number): TruncatedNotice {
  return { type: 'truncated', bucket: ref.bucket, stream: ref.stream, requested, first };
}

/** Approximate memory held by a batch of entries (payloads plus per-entry overhead). */
export function batchBytes(entries: readonly StoredEntry[]): number {
  let bytes = 0;
  for (const entry of entries) bytes += entry.payload.length + 96;
  return bytes;
}

/**
 * One batch of consecutive entries of one stream, encoded lazily and at most
 * once whatever the number of listeners: a live batch is shared by every
 * listener of its stream, and most of them want all of it.
 */
export class EncodedBatch {
  private events: string[] | undefined;
  private wholeItemsText: string | undefined;
  private wholeArray: string | undefined;
  private wholeArrayBytes: Buffer | undefined;
  private wholeSseBytes: Buffer | undefined;

  constructor(
    readonly ref: StreamRef,
    readonly entries: readonly StoredEntry[],
  ) {}

  get firstSeq(): number {
    return this.entries[0]!.seq;
  }

  get lastSeq(): number {
    return this.entries[this.entries.length - 1]!.seq;
  }

  /** How many entries have seq >= from. */
  countFrom(from: number): number {
    return this.entries.length - this.indexOf(from);
  }

  /** The comma-separated events with seq >= from ('' when none). */
  itemsFrom(from: number): string {
    const start = this.indexOf(from);
    if (start === 0) return this.wholeItems();
    return this.encoded().slice(start).join(',');
  }

  /** The JSON array of the events with seq >= from. */
  arrayFrom(from: number): string {
    if (this.indexOf(from) === 0) return (this.wholeArray ??= '[' + this.wholeItems() + ']');
    return '[' + this.itemsFrom(from) + ']';
  }

  /** arrayFrom() as UTF-8 bytes, shared by every WebSocket listener that takes the whole batch. */
  arrayBytesFrom(from: number): Buffer {
    if (this.indexOf(from) === 0) return (this.wholeArrayBytes ??= Buffer.from(this.arrayFrom(from), 'utf8'));
    return Buffer.from(this.arrayFrom(from), 'utf8');
  }

  /** One SSE event (`data: [...]\n\n`), shared by every SSE listener that takes the whole batch. */
  sseBytesFrom(from: number): Buffer {
    if (this.indexOf(from) === 0) return (this.wholeSseBytes ??= Buffer.from('data: ' + this.arrayFrom(from) + '\n\n', 'utf8'));
    return Buffer.from('data: ' + this.arrayFrom(from) + '\n\n', 'utf8');
  }

  private wholeItems(): string {
    return (this.wholeItemsText ??= this.encoded().join(','));
  }

  private encoded(): string[] {
    return (this.events ??= this.entries.map((entry) => encodeEvent(this.ref, entry)));
  }

  /** Index of the first entry with seq >= from (entries are consecutive and ascending). */
  private indexOf(from: number): number {
    const offset = from - this.firstSeq;
    if (offset <= 0) return 0;
    if (offset >= this.entries.length) return this.entries.length;
    // Consecutive seqnums make the offset exact; fall back to a scan if a batch ever is not.
    if (this.entries[offset]!.seq === from) return offset;
    const index = this.entries.findIndex((entry) => entry.seq >= from);
    return index < 0 ? this.entries.length : index;
  }
}
