/**
 * The stream store: every stream of this node, in chunk files under
 * `<data>/vnodes/<partition>/<bucket>/<stream>/`, made durable through the
 * node-wide commit log (store/commit-log.ts), with per-stream in-memory tails,
 * a sparse index for reads from disk, retention by whole chunks, and crash
 * recovery from the last checkpoint.
 *
 * Life of an append:
 *  1. seqnums are assigned at once (conditional appends are decided here), the
 *     records encoded, and one frame queued on the commit log;
 *  2. when the frame is durable, its records are applied: written (buffered)
 *     to the stream's active chunk, pushed to the tail, handed to listeners,
 *     and the caller is answered. So chunk files only ever hold durable
 *     records, and readers never see an entry that a crash could take back.
 *
 * A checkpoint rotates the commit log, writes out and fsyncs every chunk that
 * changed, records each stream's validated state in lmdb and drops the old
 * log segments. Recovery replays the log from the checkpoint, stream by
 * stream (store/stream-loader.ts): after a process crash in the same boot the
 * chunks are matched to the log by size (the page cache kept every write);
 * after an OS crash a stream goes back to its checkpointed chunks and is
 * rewritten from the log; a stream the log does not name is checked from its
 * checkpointed position and cut at its first bad record.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Clock } from '../core/clock.js';
import { IorioError, assert } from '../core/errors.js';
import { partitionOf } from '../core/hash.js';
import { payloadBytesMax, readLimitMax } from '../core/limits.js';
import { encodePathSegment } from '../core/names.js';
import { FrameOp, encodeRecordInto, peekRecord, recordBytesAt, recordHeaderBytes, recordSeqAt, type DecodedRecord, type FrameSection } from '../core/record.js';
import { bucketChunksToEvict, chunkCapacity, chunksToEvict, type BucketChunk, type RetentionPolicy } from '../core/retention.js';
import { CommitLog, listSegments, replayCommitLog, type SyncMode } from './commit-log.js';
import { buildSparseIndex, readChunkRange, validateChunk, SparseIndex } from './chunks.js';
import { StreamHandle, streamKey, type Chunk, type ChunkSummaryValue, type StreamState } from './stream-handle.js';
import { StreamLoader } from './stream-loader.js';
import { fsyncDirectories } from './fsync.js';
import { FilePool } from './file-pool.js';
import type { MetaStore } from './meta.js';
import type {
  AppendMeta,
  AppendRequest,
  EvictionPolicy,
  ReadOptions,
  ReadResult,
  Store,
  StoreStats,
  StoredEntry,
  StreamListener,
} from './types.js';

export interface StoreSettings {
  readonly dataDir: string;
  readonly ringSize: number;
  readonly sync: SyncMode;
  readonly syncIntervalMs: number;
  readonly chunkBytes: number;
  readonly chunkAgeMs: number;
  readonly checkpointIntervalMs: number;
  readonly checkpointLogBytes: number;
  readonly filesMax: number;
  readonly streamsOpenMax: number;
  readonly tailCountMax: number;
  readonly tailBytesMax: number;
  readonly evictionIntervalMs: number;
  readonly defaultPolicy: RetentionPolicy | undefined;
  readonly bucketBytesMax: number;
  /** Largest commit-log segment before it rolls. */
  readonly segmentBytesMax: number;
  /** Bytes a commit-log segment is preallocated with (0: none). */
  readonly segmentPreallocBytes: number;
  /**
   * Identity of the running OS boot (Linux's boot_id); recovery after a
   * process crash in the same boot trusts the page cache (see
   * loadForTrustedReplay). Undefined: never trust it.
   */
  readonly bootId: string | undefined;
}

export function storeSettings(dataDir: string, config: Config): StoreSettings {
  const defaultPolicy: RetentionPolicy = {
    max_count: config['eviction.stream.max_count'] || undefined,
    max_bytes: config['eviction.stream.max_bytes'] || undefined,
    max_age_secs: config['eviction.stream.max_age'] ? Math.ceil(config['eviction.stream.max_age'] / 1000) : undefined,
  };
  const hasDefault = defaultPolicy.max_count || defaultPolicy.max_bytes || defaultPolicy.max_age_secs;
  return {
    dataDir,
    ringSize: config['ring.size'],
    sync: config['storage.sync'],
    syncIntervalMs: config['storage.sync.interval'],
    chunkBytes: config['storage.chunk.size'],
    chunkAgeMs: config['storage.chunk.max_age'],
    checkpointIntervalMs: config['storage.checkpoint.interval'],
    checkpointLogBytes: config['storage.checkpoint.log_size'],
    filesMax: config['storage.files.max'],
    streamsOpenMax: config['storage.streams.open.max'],
    tailCountMax: config['channel.max_items'],
    tailBytesMax: config['channel.max_items_size'],
    evictionIntervalMs: config['eviction.interval'],
    defaultPolicy: hasDefault ? defaultPolicy : undefined,
    bucketBytesMax: config['eviction.bucket.size.max'],
    segmentBytesMax: 64 * 1024 * 1024,
    segmentPreallocBytes: 64 * 1024 * 1024,
    bootId: readBootId(),
  };
}

export interface StreamStoreOptions {
  readonly dataDir: string;
  readonly meta: MetaStore;
  readonly config: Config;
  readonly clock: Clock;
  readonly logger: Logger;
}

export async function openStreamStore(options: StreamStoreOptions): Promise<StreamStore> {
  return StreamStore.open(storeSettings(options.dataDir, options.config), options.meta, options.clock, options.logger);
}

/** A stream's active-chunk writes are buffered up to this much, and all streams' together up to the second. */
const writeBufferFlushBytes = 64 * 1024;
const writeBuffersBytesMax = 32 * 1024 * 1024;

export class StreamStore implements Store {
  private readonly settings: StoreSettings;
  private readonly meta: MetaStore;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly pool: FilePool;
  private log!: CommitLog;
  private readonly loader: StreamLoader;
  /** Recovery only: the OS has not restarted since the data was written. */
  private sameBoot = false;
  /** Every stream handle in memory: loaded ones, and dirty ones until the next checkpoint. */
  private readonly handles = new Map<string, StreamHandle>();
  /** Loaded handles (tail, indexes) in least-recently-used order. */
  private readonly loaded = new Map<string, StreamHandle>();
  private readonly dirtyHandles = new Set<StreamHandle>();
  private readonly dirtyChunkFiles = new Set<string>();
  private readonly dirtyDirectories = new Set<string>();
  private readonly bufferedHandles = new Set<StreamHandle>();
  private writeBuffersBytes = 0;
  private checkpointRunning: Promise<void> | undefined;
  private evictionRunning: Promise<void> | undefined;
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  private readonly counters: StoreStats = {
    appends: 0,
    appendBytes: 0,
    reads: 0,
    readsFromTail: 0,
    readsFromDisk: 0,
    logFlushes: 0,
    checkpoints: 0,
    evictedChunks: 0,
    evictedBytes: 0,
    openStreams: 0,
    openFiles: 0,
  };

  private constructor(settings: StoreSettings, meta: MetaStore, clock: Clock, logger: Logger) {
    this.settings = settings;
    this.meta = meta;
    this.clock = clock;
    this.logger = logger.child({ component: 'store' });
    this.pool = new FilePool(settings.filesMax);
    this.loader = new StreamLoader({
      logger: this.logger,
      meta,
      refreshPolicy: (handle) => this.refreshPolicy(handle),
      markDirty: (handle, chunkFile) => this.markDirty(handle, chunkFile),
    });
  }

  private markDirty(handle: StreamHandle, chunkFile?: string): void {
    if (chunkFile !== undefined) this.dirtyChunkFiles.add(chunkFile);
    if (handle.dirty) return;
    handle.dirty = true;
    this.dirtyHandles.add(handle);
  }

  static async open(settings: StoreSettings, meta: MetaStore, clock: Clock, logger: Logger): Promise<StreamStore> {
    const store = new StreamStore(settings, meta, clock, logger);
    await store.recover();
    store.startTimers();
    return store;
  }

  private get logDirectory(): string {
    return path.join(this.settings.dataDir, 'commitlog');
  }

  // -------------------------------------------------------------------------
  // Recovery

  private async recover(): Promise<void> {
    const started = this.clock.monotonic();
    fs.mkdirSync(path.join(this.settings.dataDir, 'vnodes'), { recursive: true });
    const checkpoint = (this.meta.settings.get('checkpoint') as { segment: number } | undefined) ?? { segment: 0 };
    const bootId = this.settings.bootId;
    this.sameBoot = bootId !== undefined && this.meta.settings.get('bootId') === bootId;
    let losses = 0;
    const stats = replayCommitLog(
      this.logDirectory,
      checkpoint.segment,
      (sections) => {
        for (const section of sections) losses += this.replaySection(section);
      },
      this.logger,
    );
    for (const handle of this.handles.values()) if (handle.replay) this.loader.endReplayCursor(handle);
    this.sameBoot = false;
    if (bootId !== undefined) await this.meta.settings.put('bootId', bootId);
    const segments = listSegments(this.logDirectory);
    const nextSegment = Math.max(checkpoint.segment, (segments[segments.length - 1] ?? -1) + 1);
    this.log = CommitLog.open(
      {
        directory: this.logDirectory,
        sync: this.settings.sync,
        syncIntervalMs: this.settings.syncIntervalMs,
        segmentBytesMax: this.settings.segmentBytesMax,
        preallocBytes: this.settings.segmentPreallocBytes,
        logger: this.logger,
      },
      nextSegment,
    );
    if (stats.frames > 0 || stats.dropped.length > 0) {
      this.logger.info(
        { frames: stats.frames, bytes: stats.bytes, segments: stats.segments, dropped: stats.dropped, gaps: losses, sameBoot: bootId !== undefined && this.meta.settings.get('bootId') === bootId, ms: this.clock.monotonic() - started },
        'recovered from the commit log',
      );
      // Make the recovered state the new checkpoint in the background; the
      // replayed segments stay until it is durable.
      void this.checkpoint().catch((error) => this.logger.error({ err: error }, 'checkpoint after recovery failed'));
    }
  }

  /** Re-applies one logged section; returns 1 when it found a gap it could not fill. */
  private replaySection(section: FrameSection): number {
    const handle = this.handle(section.bucket, section.stream, true, true)!;
    if (section.op === FrameOp.delete) {
      if (handle.replay) this.loader.endReplayCursor(handle);
      if (handle.deletedAt < section.lastSeq || handle.chunks.length > 0) this.applyDelete(handle, section.lastSeq);
      handle.last = Math.max(handle.last, section.lastSeq);
      handle.durableLast = Math.max(handle.durableLast, section.lastSeq);
      return 0;
    }
    // Skip what the chunks already hold; apply the rest as one contiguous run.
    const source = section.records;
    let offset = 0;
    while (offset < source.length && recordSeqAt(source, offset) <= handle.durableLast) offset += recordBytesAt(source, offset);
    if (handle.replay) offset = this.loader.confirmFromCursor(handle, source, offset);
    if (offset >= source.length) return 0;
    const firstSeq = recordSeqAt(source, offset);
    if (firstSeq !== handle.durableLast + 1) {
      this.logger.error({ bucket: handle.bucket, stream: handle.stream, expected: handle.durableLast + 1, found: firstSeq }, 'commit log replay: gap in seqnums');
      return 1;
    }
    const records: DecodedRecord[] = [];
    for (let position = offset; position < source.length; position += recordBytesAt(source, position)) records.push(peekRecord(source, position)!);
    const lastRecord = records[records.length - 1]!;
    handle.last = Math.max(handle.last, lastRecord.seq);
    handle.lastMs = Math.max(handle.lastMs, lastRecord.t);
    this.applyRecords(handle, records, source, offset);
    return 0;
  }

  // -------------------------------------------------------------------------
  // Handles

  private streamDirectory(partition: number, bucket: string, stream: string): string {
    return path.join(this.settings.dataDir, 'vnodes', String(partition), encodePathSegment(bucket), encodePathSegment(stream));
  }

  /**
   * The stream's handle, loading it from lmdb and its folder when needed.
   * With `create` false, a stream that never existed gives undefined.
   */
  private handle(bucket: string, stream: string, create: boolean, replaying = false): StreamHandle | undefined {
    const key = streamKey(bucket, stream);
    let handle = this.handles.get(key);
    if (handle === undefined) {
      const partition = partitionOf(bucket, stream, this.settings.ringSize);
      const directory = this.streamDirectory(partition, bucket, stream);
      const state = this.meta.streams.get([bucket, stream]) as StreamState | undefined;
      if (!create && state === undefined && !fs.existsSync(directory)) return undefined;
      handle = new StreamHandle(bucket, stream, partition, directory);
      handle.hasState = state !== undefined;
      // A stream the commit log is about to replay goes back to its
      // checkpointed state: the log holds everything after it, so nothing
      // written since needs checking (recovery reads the data once, not twice).
      if (replaying && state !== undefined && this.sameBoot) {
        this.loader.loadForTrustedReplay(handle, state);
      } else {
        if (replaying && state !== undefined) this.loader.resetToCheckpoint(handle, state);
        this.loader.load(handle, state);
      }
      this.handles.set(key, handle);
    }
    this.touch(handle);
    return handle;
  }

  /**
   * Marks a handle used. Loaded handles are bounded by a CLOCK (second
   * chance) sweep rather than a strict LRU, so a touch on the hot path is one
   * field write, not a map reordering.
   */
  private touch(handle: StreamHandle): void {
    handle.referenced = true;
    if (handle.isLoaded) return;
    handle.isLoaded = true;
    this.loaded.set(handle.key, handle);
    if (this.loaded.size > this.settings.streamsOpenMax) this.sweepLoaded(handle);
  }

  private sweepLoaded(keep: StreamHandle): void {
    for (const [key, handle] of this.loaded) {
      if (this.loaded.size <= this.settings.streamsOpenMax) return;
      if (handle === keep) continue;
      this.loaded.delete(key);
      if (handle.referenced) {
        // Second chance: to the back of the line, unmarked.
        handle.referenced = false;
        this.loaded.set(key, handle);
        continue;
      }
      handle.isLoaded = false;
      this.unload(handle);
    }
  }

  /** Drops what a handle holds in memory; forgets it entirely when nothing needs it. */
  private unload(handle: StreamHandle): void {
    this.flushWriteBuffer(handle);
    handle.tail = [];
    handle.tailBytes = 0;
    for (const chunk of handle.chunks) chunk.index = undefined;
    if (!handle.dirty && handle.inflight === 0 && handle.listeners.size === 0) this.handles.delete(handle.key);
  }

  // -------------------------------------------------------------------------
  // Appends

  append(request: AppendRequest): Promise<AppendMeta[]> {
    try {
      const handle = this.writableHandle(request);
      const batch = this.encodeBatch(handle, request.payloads, this.clock.now());
      const section: FrameSection = { op: FrameOp.append, partition: handle.partition, bucket: handle.bucket, stream: handle.stream, records: batch.records };
      return new Promise((resolve, reject) => {
        this.log.append([section], (error) => {
          handle.inflight--;
          if (error) return reject(logFailure(error));
          this.applyDurable(handle, batch.records, batch.decoded);
          resolve(batch.metas);
          this.afterWrite();
        });
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  appendAtomic(requests: readonly AppendRequest[]): Promise<AppendMeta[][]> {
    try {
      return this.startAtomicAppend(requests);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private checkWritable(): void {
    if (this.closed) throw new IorioError('unavailable', 'the store is closing');
    if (this.log.failed) throw new IorioError('unavailable', 'the commit log failed; the node must be restarted');
  }

  private writableHandle(request: AppendRequest): StreamHandle {
    this.checkWritable();
    const handle = this.handle(request.bucket, request.stream, true)!;
    checkAppend(request, handle);
    this.ensureState(handle);
    return handle;
  }

  /**
   * A new stream's first append records an empty state in lmdb, so that
   * recovery knows every chunk of it is in the commit log (and rewrites it
   * from there instead of checking it).
   */
  private ensureState(handle: StreamHandle): void {
    if (handle.hasState) return;
    handle.hasState = true;
    const state: StreamState = { last: handle.last, activeFirst: null, activeBytes: 0, activeLast: handle.last, lastMs: handle.lastMs, deletedAt: handle.deletedAt };
    if (handle.chunks.length > 0) return;
    this.meta.streams.put([handle.bucket, handle.stream], state).catch((error: Error) => this.logger.error({ err: error }, 'could not record a new stream'));
  }

  private startAtomicAppend(requests: readonly AppendRequest[]): Promise<AppendMeta[][]> {
    this.checkWritable();
    assert(requests.length > 0, 'an append names at least one stream');
    const handles = requests.map((request) => this.handle(request.bucket, request.stream, true)!);
    assert(handles.every((handle) => handle.partition === handles[0]!.partition), 'an atomic append stays in one partition');
    for (let index = 0; index < requests.length; index++) checkAppend(requests[index]!, handles[index]!);
    for (const handle of handles) this.ensureState(handle);
    const now = this.clock.now();
    const batches = requests.map((request, index) => ({ handle: handles[index]!, ...this.encodeBatch(handles[index]!, request.payloads, now) }));
    const sections: FrameSection[] = batches.map(({ handle, records }) => ({
      op: FrameOp.append,
      partition: handle.partition,
      bucket: handle.bucket,
      stream: handle.stream,
      records,
    }));
    return new Promise((resolve, reject) => {
      this.log.append(sections, (error) => {
        for (const batch of batches) batch.handle.inflight--;
        if (error) return reject(logFailure(error));
        for (const batch of batches) this.applyDurable(batch.handle, batch.records, batch.decoded);
        resolve(batches.map((batch) => batch.metas));
        this.afterWrite();
      });
    });
  }

  private encodeBatch(handle: StreamHandle, payloads: readonly Buffer[], now: number): { records: Buffer; metas: AppendMeta[]; decoded: DecodedRecord[] } {
    let bytes = 0;
    for (const payload of payloads) bytes += recordHeaderBytes + payload.length;
    const records = Buffer.allocUnsafe(bytes);
    const t = Math.max(now, handle.lastMs);
    const metas: AppendMeta[] = [];
    const decoded: DecodedRecord[] = [];
    let offset = 0;
    for (const payload of payloads) {
      const seq = ++handle.last;
      const start = offset;
      offset = encodeRecordInto(records, offset, seq, t, 0, payload);
      metas.push({ id: seq, t });
      decoded.push({ seq, t, epoch: 0, payload: records.subarray(start + recordHeaderBytes, offset), bytes: offset - start });
    }
    handle.lastMs = t;
    handle.inflight++;
    this.counters.appends += payloads.length;
    this.counters.appendBytes += bytes;
    return { records, metas, decoded };
  }

  /** Applies a durable batch of records (encoded back to back in `records`) to its stream. */
  private applyDurable(handle: StreamHandle, records: Buffer, decoded: DecodedRecord[]): void {
    this.applyRecords(handle, decoded, records, 0);
    if (handle.listeners.size === 0) return;
    for (const listener of handle.listeners) {
      try {
        listener(decoded);
      } catch (error) {
        this.logger.error({ err: error }, 'stream listener threw');
      }
    }
  }

  /** Writes records (contiguous, starting at durableLast + 1) to chunks and the tail. */
  private applyRecords(handle: StreamHandle, records: readonly DecodedRecord[], source: Buffer, sourceOffset: number): void {
    let runStart = sourceOffset;
    let runBytes = 0;
    for (const record of records) {
      assert(record.seq === handle.durableLast + 1, 'durable records arrive in seqnum order');
      if (this.shouldRoll(handle, record)) {
        this.bufferWrite(handle, source.subarray(runStart, runStart + runBytes));
        runStart += runBytes;
        runBytes = 0;
        this.rollChunk(handle, record.seq);
      }
      let active = handle.active;
      if (active !== undefined && active.bytes === 0 && active.firstSeq !== record.seq) {
        // An empty chunk named for a seqnum that will not come (lost data was skipped): replace it.
        handle.chunks.pop();
        this.pool.close(handle.chunkPath(active.firstSeq));
        fs.rmSync(handle.chunkPath(active.firstSeq), { force: true });
        active = undefined;
      }
      if (active === undefined) {
        active = { firstSeq: record.seq, bytes: 0, lastMs: undefined, index: new SparseIndex() };
        handle.chunks.push(active);
        handle.activeCount = 0;
        handle.activeFirstMs = record.t;
        this.dirtyDirectories.add(handle.directory);
        fs.mkdirSync(handle.directory, { recursive: true });
      }
      active.index?.add(record.seq, active.bytes, record.bytes, record.t);
      active.bytes += record.bytes;
      active.lastMs = record.t;
      handle.activeCount++;
      handle.activeLast = record.seq;
      handle.activeFirstMs ??= record.t;
      handle.durableLast = record.seq;
      this.pushTail(handle, record);
      runBytes += record.bytes;
    }
    this.bufferWrite(handle, source.subarray(runStart, runStart + runBytes));
    this.markDirty(handle);
  }

  private shouldRoll(handle: StreamHandle, record: DecodedRecord): boolean {
    const active = handle.active;
    if (active === undefined || active.bytes === 0) return false;
    // A chunk's seqnums are contiguous; after lost entries a new chunk starts.
    if (record.seq !== handle.activeLast + 1) return true;
    const capacity = handle.capacity!;
    if (active.bytes + record.bytes > capacity.bytes) return true;
    if (handle.activeCount >= capacity.count) return true;
    return capacity.ageMs > 0 && handle.activeFirstMs !== undefined && record.t - handle.activeFirstMs >= capacity.ageMs;
  }

  private rollChunk(handle: StreamHandle, nextSeq: number): void {
    const closing = handle.active!;
    this.flushWriteBuffer(handle);
    const closingPath = handle.chunkPath(closing.firstSeq);
    this.dirtyChunkFiles.add(closingPath);
    this.pool.close(closingPath);
    const summary: ChunkSummaryValue = { lastSeq: nextSeq - 1, lastMs: closing.lastMs ?? handle.lastMs, bytes: closing.bytes };
    this.meta.chunks.put([handle.bucket, handle.stream, closing.firstSeq], summary).catch((error: Error) => {
      this.logger.error({ err: error }, 'could not record a chunk summary');
    });
    handle.chunks.push({ firstSeq: nextSeq, bytes: 0, lastMs: undefined, index: new SparseIndex() });
    handle.activeCount = 0;
    handle.activeFirstMs = undefined;
    queueMicrotask(() => this.enforceRetention(handle));
  }

  private pushTail(handle: StreamHandle, entry: StoredEntry): void {
    handle.tail.push(entry);
    handle.tailBytes += entry.payload.length;
    while (handle.tail.length > this.settings.tailCountMax || (handle.tailBytes > this.settings.tailBytesMax && handle.tail.length > 1)) {
      handle.tailBytes -= handle.tail.shift()!.payload.length;
    }
  }

  private bufferWrite(handle: StreamHandle, bytes: Buffer): void {
    if (bytes.length === 0) return;
    handle.writeBuffer.push(bytes);
    handle.writeBufferBytes += bytes.length;
    this.writeBuffersBytes += bytes.length;
    this.bufferedHandles.add(handle);
    if (handle.writeBufferBytes >= writeBufferFlushBytes) this.flushWriteBuffer(handle);
  }

  private flushWriteBuffer(handle: StreamHandle): void {
    if (handle.writeBufferBytes === 0) return;
    const active = handle.active!;
    const file = handle.chunkPath(active.firstSeq);
    const data = handle.writeBuffer.length === 1 ? handle.writeBuffer[0]! : Buffer.concat(handle.writeBuffer, handle.writeBufferBytes);
    this.writeBuffersBytes -= handle.writeBufferBytes;
    handle.writeBuffer = [];
    handle.writeBufferBytes = 0;
    this.bufferedHandles.delete(handle);
    this.pool.with(file, (fd) => {
      let offset = 0;
      while (offset < data.length) offset += fs.writeSync(fd, data, offset, data.length - offset);
    });
    this.dirtyChunkFiles.add(file);
  }

  private afterWrite(): void {
    if (this.writeBuffersBytes > writeBuffersBytesMax) {
      for (const handle of [...this.bufferedHandles]) this.flushWriteBuffer(handle);
    }
    if (this.log.bytesSinceRotation >= this.settings.checkpointLogBytes && this.checkpointRunning === undefined) {
      void this.checkpoint().catch((error) => this.logger.error({ err: error }, 'checkpoint failed'));
    }
  }

  // -------------------------------------------------------------------------
  // Reads

  async read(bucket: string, stream: string, options: ReadOptions): Promise<ReadResult> {
    this.counters.reads++;
    const handle = this.handle(bucket, stream, false);
    if (handle === undefined) return { entries: [], first: 1, last: 0, truncated: false };
    const last = handle.durableLast;
    const first = handle.first;
    const truncated = options.from !== undefined && options.from < first && first > 1;
    const limit = Math.min(Math.max(0, Math.floor(options.limit)), readLimitMax);
    const start = options.from === undefined ? Math.max(first, last - limit + 1) : Math.max(options.from, first);
    const end = Math.min(last, start + limit - 1);
    if (limit === 0 || start > end) return { entries: [], first, last, truncated };
    const tailFirst = handle.tail[0]?.seq;
    if (tailFirst !== undefined && tailFirst <= start) {
      this.counters.readsFromTail++;
      const from = start - tailFirst;
      return { entries: handle.tail.slice(from, from + (end - start + 1)), first, last, truncated };
    }
    this.counters.readsFromDisk++;
    const entries = await this.readFromDisk(handle, start, end);
    return { entries, first: handle.first, last, truncated };
  }

  private async readFromDisk(handle: StreamHandle, start: number, end: number): Promise<StoredEntry[]> {
    this.flushWriteBuffer(handle);
    const records: DecodedRecord[] = [];
    let seq = start;
    while (seq <= end) {
      const chunkIndex = findChunk(handle.chunks, seq);
      if (chunkIndex < 0) break;
      const chunk = handle.chunks[chunkIndex]!;
      const file = handle.chunkPath(chunk.firstSeq);
      const chunkEnd = chunkIndex + 1 < handle.chunks.length ? handle.chunks[chunkIndex + 1]!.firstSeq - 1 : handle.durableLast;
      const before = records.length;
      try {
        const diskBytes = chunk.bytes;
        const index = chunk.index ?? (chunk.index = await buildSparseIndex(file, diskBytes));
        const point = index.floor(seq);
        await this.pool.withAsync(file, (fd) => readChunkRange(fd, file, point?.offset ?? 0, diskBytes, seq, Math.min(end, chunkEnd), records));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        // The chunk was evicted under the read: go on from the oldest kept entry.
        seq = Math.max(seq, handle.first);
        continue;
      }
      if (records.length === before) break;
      seq = records[records.length - 1]!.seq + 1;
    }
    return records.map(toEntry);
  }

  async lastSeq(bucket: string, stream: string): Promise<number> {
    return this.handle(bucket, stream, false)?.durableLast ?? 0;
  }

  subscribe(bucket: string, stream: string, listener: StreamListener): () => void {
    const handle = this.handle(bucket, stream, true)!;
    handle.listeners.add(listener);
    return () => {
      handle.listeners.delete(listener);
    };
  }

  // -------------------------------------------------------------------------
  // Delete, lists

  async deleteStream(bucket: string, stream: string): Promise<void> {
    if (this.closed) throw new IorioError('unavailable', 'the store is closing');
    const handle = this.handle(bucket, stream, false);
    if (handle === undefined) return;
    const lastSeq = handle.last;
    handle.inflight++;
    await new Promise<void>((resolve, reject) => {
      this.log.append([{ op: FrameOp.delete, partition: handle.partition, bucket, stream, lastSeq }], (error) => {
        handle.inflight--;
        if (error) {
          reject(new IorioError('unavailable', `the commit log failed: ${error.message}`));
          return;
        }
        this.applyDelete(handle, lastSeq);
        resolve();
      });
    });
  }

  private applyDelete(handle: StreamHandle, lastSeq: number): void {
    this.flushWriteBuffer(handle);
    for (const chunk of handle.chunks) {
      const file = handle.chunkPath(chunk.firstSeq);
      this.pool.close(file);
      this.dirtyChunkFiles.delete(file);
      this.meta.chunks.remove([handle.bucket, handle.stream, chunk.firstSeq]).catch(() => undefined);
    }
    fs.rmSync(handle.directory, { recursive: true, force: true });
    handle.chunks = [];
    handle.tail = [];
    handle.tailBytes = 0;
    handle.deletedAt = lastSeq;
    handle.activeCount = 0;
    handle.durableLast = Math.max(handle.durableLast, lastSeq);
    this.markDirty(handle);
  }

  async listBuckets(): Promise<string[]> {
    const buckets = new Set<string>();
    for (const { key, value } of this.meta.streams.getRange({})) {
      const [bucket, stream] = key as [string, string];
      if (buckets.has(bucket)) continue;
      const handle = this.handles.get(streamKey(bucket, stream));
      if (handle ? handle.exists : stateExists(value as StreamState)) buckets.add(bucket);
    }
    for (const handle of this.handles.values()) if (handle.exists) buckets.add(handle.bucket);
    return [...buckets].sort();
  }

  async listStreams(bucket: string): Promise<string[]> {
    const streams = new Set<string>();
    for (const { key, value } of this.meta.streams.getRange({ start: [bucket], end: [bucket + '\u0000'] })) {
      const stream = (key as [string, string])[1];
      const handle = this.handles.get(streamKey(bucket, stream));
      if (handle ? handle.exists : stateExists(value as StreamState)) streams.add(stream);
    }
    for (const handle of this.handles.values()) if (handle.bucket === bucket && handle.exists) streams.add(handle.stream);
    return [...streams].sort();
  }

  // -------------------------------------------------------------------------
  // Policies and retention

  getPolicy(bucket: string, stream?: string): EvictionPolicy | undefined {
    return this.meta.policies.get([bucket, stream ?? '']) as EvictionPolicy | undefined;
  }

  /** The policy in force: the stream's, else the bucket's, else the configured default. */
  effectivePolicy(bucket: string, stream: string): RetentionPolicy | undefined {
    return this.getPolicy(bucket, stream) ?? this.getPolicy(bucket) ?? this.settings.defaultPolicy;
  }

  async setPolicy(bucket: string, stream: string | undefined, policy: EvictionPolicy): Promise<void> {
    const clean: Record<string, number> = {};
    for (const key of ['max_count', 'max_bytes', 'max_age_secs'] as const) {
      const value = policy[key];
      if (value === undefined) continue;
      if (!Number.isSafeInteger(value) || value < 0) throw new IorioError('invalid-body', `${key} must be a non-negative integer`);
      clean[key] = value;
    }
    await this.meta.policies.put([bucket, stream ?? ''], clean);
    this.policyChanged(bucket, stream);
  }

  async deletePolicy(bucket: string, stream: string | undefined): Promise<void> {
    await this.meta.policies.remove([bucket, stream ?? '']);
    this.policyChanged(bucket, stream);
  }

  private policyChanged(bucket: string, stream: string | undefined): void {
    for (const handle of this.handles.values()) {
      if (handle.bucket !== bucket || (stream !== undefined && handle.stream !== stream)) continue;
      this.refreshPolicy(handle);
      this.enforceRetention(handle);
    }
  }

  private refreshPolicy(handle: StreamHandle): void {
    handle.policy = this.effectivePolicy(handle.bucket, handle.stream);
    handle.capacity = chunkCapacity(this.settings.chunkBytes, this.settings.chunkAgeMs, handle.policy);
  }

  /** Deletes the stream's oldest chunks its policy no longer needs. */
  private enforceRetention(handle: StreamHandle): void {
    const policy = handle.policy;
    if (policy === undefined || handle.chunks.length < 2) return;
    this.fillChunkTimes(handle);
    const evict = chunksToEvict(handle.chunks, handle.durableLast, policy, this.clock.now());
    for (let index = 0; index < evict; index++) this.evictOldestChunk(handle);
  }

  private fillChunkTimes(handle: StreamHandle): void {
    for (let index = 0; index < handle.chunks.length - 1; index++) {
      const chunk = handle.chunks[index]!;
      if (chunk.lastMs !== undefined) continue;
      const next = handle.chunks[index + 1]!;
      const result = validateChunk(handle.chunkPath(chunk.firstSeq), 0, chunk.firstSeq);
      chunk.lastMs = result.lastMs ?? 0;
      const summary: ChunkSummaryValue = { lastSeq: next.firstSeq - 1, lastMs: chunk.lastMs, bytes: chunk.bytes };
      this.meta.chunks.put([handle.bucket, handle.stream, chunk.firstSeq], summary).catch(() => undefined);
    }
  }

  private evictOldestChunk(handle: StreamHandle): void {
    const chunk = handle.chunks.shift()!;
    const file = handle.chunkPath(chunk.firstSeq);
    this.pool.close(file);
    this.dirtyChunkFiles.delete(file);
    fs.rmSync(file, { force: true });
    this.meta.chunks.remove([handle.bucket, handle.stream, chunk.firstSeq]).catch(() => undefined);
    this.counters.evictedChunks++;
    this.counters.evictedBytes += chunk.bytes;
    const first = handle.first;
    while (handle.tail.length > 0 && handle.tail[0]!.seq < first) handle.tailBytes -= handle.tail.shift()!.payload.length;
    this.logger.debug({ bucket: handle.bucket, stream: handle.stream, firstSeq: chunk.firstSeq, bytes: chunk.bytes }, 'evicted a chunk');
    this.markDirty(handle);
  }

  /** One pass of the retention timer: every stream with closed chunks, then bucket size caps. */
  async runEviction(): Promise<void> {
    if (this.evictionRunning) return this.evictionRunning;
    this.evictionRunning = (async () => {
      const byBucket = new Map<string, BucketChunk[]>();
      const streams = new Set<string>();
      for (const { key, value } of this.meta.chunks.getRange({})) {
        const [bucket, stream, firstSeq] = key as [string, string, number];
        const summary = value as ChunkSummaryValue;
        streams.add(streamKey(bucket, stream));
        const list = byBucket.get(bucket) ?? [];
        list.push({ stream, firstSeq, bytes: summary.bytes, lastMs: summary.lastMs });
        byBucket.set(bucket, list);
      }
      for (const key of streams) {
        const [bucket, stream] = key.split('\u0000') as [string, string];
        const handle = this.handle(bucket, stream, false);
        if (handle) this.enforceRetention(handle);
      }
      if (this.settings.bucketBytesMax > 0) this.enforceBucketCaps(byBucket);
    })().finally(() => {
      this.evictionRunning = undefined;
    });
    return this.evictionRunning;
  }

  private enforceBucketCaps(byBucket: Map<string, BucketChunk[]>): void {
    for (const [bucket, closed] of byBucket) {
      let activeBytes = 0;
      const seen = new Set(closed.map((chunk) => chunk.stream));
      for (const stream of seen) activeBytes += this.handle(bucket, stream, false)?.active?.bytes ?? 0;
      for (const chunk of bucketChunksToEvict(closed, activeBytes, this.settings.bucketBytesMax)) {
        const handle = this.handle(bucket, chunk.stream, false);
        if (handle && handle.chunks.length > 1 && handle.chunks[0]!.firstSeq === chunk.firstSeq) this.evictOldestChunk(handle);
      }
    }
  }

  // -------------------------------------------------------------------------
  // Checkpoints, timers, close

  /** Makes everything durable so far part of the chunk files, and drops the old log segments. */
  checkpoint(): Promise<void> {
    if (this.checkpointRunning) return this.checkpointRunning;
    this.checkpointRunning = this.runCheckpoint().finally(() => {
      this.checkpointRunning = undefined;
    });
    return this.checkpointRunning;
  }

  private async runCheckpoint(): Promise<void> {
    const segment = await this.log.rotate();
    const states: [string[], StreamState][] = [];
    const handles = [...this.dirtyHandles];
    this.dirtyHandles.clear();
    for (const handle of handles) {
      handle.dirty = false;
      handle.hasState = true;
      this.flushWriteBuffer(handle);
      const active = handle.active;
      states.push([
        [handle.bucket, handle.stream],
        {
          last: handle.durableLast,
          activeFirst: active?.firstSeq ?? null,
          activeBytes: active?.bytes ?? 0,
          activeLast: active ? handle.activeLast : handle.durableLast,
          lastMs: handle.lastMs,
          deletedAt: handle.deletedAt,
        },
      ]);
    }
    const files = [...this.dirtyChunkFiles];
    this.dirtyChunkFiles.clear();
    const directories = [...this.dirtyDirectories];
    this.dirtyDirectories.clear();
    await this.syncFiles(files);
    await fsyncDirectories(directories);
    await this.meta.root.transaction(() => {
      for (const [key, state] of states) this.meta.streams.put(key, state);
      this.meta.settings.put('checkpoint', { segment });
    });
    await this.meta.root.flushed;
    this.log.deleteBefore(segment);
    this.counters.checkpoints++;
    for (const handle of handles) {
      if (!this.loaded.has(handle.key) && !handle.dirty && handle.inflight === 0 && handle.listeners.size === 0) this.handles.delete(handle.key);
    }
  }

  private async syncFiles(files: string[]): Promise<void> {
    const parallel = 8;
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const file = files[next++]!;
        if (!fs.existsSync(file)) continue;
        await this.pool.withAsync(file, (fd) => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(error) : resolve()))));
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, files.length) }, worker));
  }

  private startTimers(): void {
    const every = (ms: number, task: () => Promise<void>, name: string) => {
      if (ms <= 0) return;
      const timer = setInterval(() => {
        task().catch((error) => this.logger.error({ err: error }, `${name} failed`));
      }, ms);
      timer.unref();
      this.timers.push(timer);
    };
    every(this.settings.checkpointIntervalMs, () => (this.dirtyHandles.size > 0 || this.log.bytesSinceRotation > 0 ? this.checkpoint() : Promise.resolve()), 'checkpoint');
    every(this.settings.evictionIntervalMs, () => this.runEviction(), 'eviction');
  }

  stats(): StoreStats {
    return { ...this.counters, logFlushes: this.log.flushes, openStreams: this.loaded.size, openFiles: this.pool.size };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    await this.log.drain();
    await this.evictionRunning;
    await this.checkpointRunning;
    if (!this.log.failed) await this.checkpoint();
    await this.log.close();
    this.pool.closeAll();
  }
}

/** The boot's identity (Linux), to tell a process crash (page cache intact) from an OS crash. */
function readBootId(): string | undefined {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function checkAppend(request: AppendRequest, handle: StreamHandle): void {
  assert(request.payloads.length > 0, 'an append holds at least one entry');
  for (const payload of request.payloads) {
    if (payload.length > payloadBytesMax) throw new IorioError('too-large', `an entry is at most ${payloadBytesMax} bytes`);
  }
  if (request.expectSeq !== undefined && request.expectSeq !== handle.last) {
    throw new IorioError('conflict', `expected last seqnum ${request.expectSeq}, the stream is at ${handle.last}`, {
      expected: request.expectSeq,
      got: handle.last,
    });
  }
}

function logFailure(error: Error): IorioError {
  return new IorioError('unavailable', `the commit log failed: ${error.message}`);
}

function stateExists(state: StreamState): boolean {
  return state.last > state.deletedAt;
}

function toEntry(record: DecodedRecord): StoredEntry {
  return { seq: record.seq, t: record.t, epoch: record.epoch, payload: record.payload };
}

/** Index of the chunk holding `seq` (the last whose firstSeq <= seq), or -1. */
function findChunk(chunks: readonly Chunk[], seq: number): number {
  let low = 0;
  let high = chunks.length - 1;
  let found = -1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (chunks[middle]!.firstSeq <= seq) {
      found = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return found;
}
