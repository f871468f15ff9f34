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
import { payloadBytesMax, readLimitMax, sparseIndexStrideBytes } from '../core/limits.js';
import { encodePathSegment } from '../core/names.js';
import { FrameOp, decodeRecord, encodeRecord, encodeRecordInto, peekRecord, scanChunkRecords, recordBytesAt, recordHeaderBytes, recordSeqAt, type DecodedRecord, type FrameSection, type SeqRange } from '../core/record.js';
import { bucketChunksToEvict, chunkCapacity, chunksToEvict, type BucketChunk, type RetentionPolicy } from '../core/retention.js';
import { CommitLog, isNoSpaceError, listSegments, replayCommitLog, type LogFileOps, type SyncMode } from './commit-log.js';
import { buildSparseIndex, chunkFileName, readChunkRange, validateChunk, SparseIndex } from './chunks.js';
import { StreamHandle, streamKey, type Chunk, type ChunkSummaryValue, type StreamState } from './stream-handle.js';
import { StreamLoader } from './stream-loader.js';
import { fsyncDirectories, fsyncDirectorySync } from './fsync.js';
import { FilePool } from './file-pool.js';
import type { MetaStore } from './meta.js';
import type {
  AppendMeta,
  AppendRequest,
  ChunkReplaced,
  ChunkSpan,
  DamageReport,
  ExportedRecords,
  ImportBatch,
  Listing,
  StreamPosition,
  EvictionPolicy,
  ReadOptions,
  ReadResult,
  Store,
  StoreStats,
  StoredEntry,
  StreamInfo,
  StreamListener,
} from './types.js';
import { PolicySource } from './types.js';

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
  /** Start even though the commit log is damaged in a way that cannot be decided (storage.commitlog.accept_damage). */
  readonly acceptLogDamage: boolean;
  /** The commit log's durability-critical calls (tests hold back or fail them). */
  readonly logFiles?: LogFileOps;
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
    acceptLogDamage: config['storage.commitlog.accept_damage'],
  };
}

export interface StreamStoreOptions {
  readonly dataDir: string;
  readonly meta: MetaStore;
  readonly config: Config;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The commit log's durability-critical calls (the node wraps them to time its fdatasyncs); node:fs by default. */
  readonly logFiles?: LogFileOps;
}

export async function openStreamStore(options: StreamStoreOptions): Promise<StreamStore> {
  const settings = storeSettings(options.dataDir, options.config);
  return StreamStore.open(options.logFiles === undefined ? settings : { ...settings, logFiles: options.logFiles }, options.meta, options.clock, options.logger);
}

/** A stream's active-chunk writes are buffered up to this much, and all streams' together up to the second. */
const writeBufferFlushBytes = 64 * 1024;
const writeBuffersBytesMax = 32 * 1024 * 1024;
/** Where replaced chunk files are copied (below the data folder), as the commit log keeps `commitlog/damaged/`. */
const damagedFolder = 'damaged';
/** Copies of one chunk file kept aside, at most (`.1`, `.2` ...): repairs of the same chunk beyond that are refused. */
const asideCopiesMax = 100;
/** Damage reports kept for stats (each is also logged once). */
const damageReportsMax = 100;
/** While writes fail for want of disk space or descriptors, how often they are tried again. */
const writeRetryMs = 1000;

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
  /** Recovery only: the commit log is damaged; chunk bytes are read before they are cut. */
  private salvageMode = false;
  /** Lost or unreadable ranges found since start, by stream and first seqnum. */
  private readonly damage = new Map<string, DamageReport>();
  /** Resolves (with the number of damaged chunks) once every closed chunk was checked after open. */
  closedChunksChecked: Promise<number> = Promise.resolve(0);
  /** The error a chunk write last failed with, while buffered chunk bytes wait to be written. */
  private chunkWriteError: NodeJS.ErrnoException | undefined;
  private writeRetryTimer: NodeJS.Timeout | undefined;
  /** Until then (monotonic ms) appends are refused at once: the commit log just met a full disk. */
  private logNoSpaceUntilMs = 0;
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
    damagedRanges: 0,
    damaged: [],
    writesRefused: null,
  };

  private constructor(settings: StoreSettings, meta: MetaStore, clock: Clock, logger: Logger) {
    this.settings = settings;
    this.meta = meta;
    this.clock = clock;
    this.logger = logger.child({ component: 'store' });
    this.pool = new FilePool(settings.filesMax);
    // A policy changed on another node of the cluster: streams here follow it.
    meta.changes.onRemote((change) => {
      if (change === undefined || change.table === 'policies') this.refreshAllPolicies();
    });
    this.loader = new StreamLoader({
      logger: this.logger,
      meta,
      refreshPolicy: (handle) => this.refreshPolicy(handle),
      markDirty: (handle, chunkFile) => this.markDirty(handle, chunkFile),
      reportDamage: (handle, range, reason) => this.reportDamage(handle, range, reason),
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
    store.closedChunksChecked = store.checkClosedChunks().catch((error: unknown) => {
      store.logger.error({ err: error }, 'checking closed chunks failed');
      return 0;
    });
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
    const sameBoot = this.sameBoot;
    const replayOptions = { acceptDamage: this.settings.acceptLogDamage, onDamage: () => this.enterSalvageMode() };
    // After an OS crash streams go back to their checkpoint before the log
    // is replayed; if the log is damaged, what the chunks hold past the
    // checkpoint must be kept, so find out first (a read-only pass).
    if (!sameBoot && replayCommitLog(this.logDirectory, checkpoint.segment, () => undefined, this.logger.child({ pass: 'check' }), { acceptDamage: this.settings.acceptLogDamage }).damaged.length > 0) {
      this.enterSalvageMode();
    }
    const stats = replayCommitLog(
      this.logDirectory,
      checkpoint.segment,
      (sections) => {
        for (const section of sections) this.replaySection(section);
      },
      this.logger,
      replayOptions,
    );
    for (const handle of this.handles.values()) {
      if (handle.replay) this.salvageCursor(handle);
      if (handle.salvage) this.applySalvage(handle, Number.MAX_SAFE_INTEGER);
    }
    this.sameBoot = false;
    if (bootId !== undefined) await this.meta.settings.put('bootId', bootId).catch((error: Error) => this.logger.warn({ err: error }, 'could not record the boot id'));
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
        previousSegmentBytes: stats.lastSegment === nextSegment - 1 ? stats.lastSegmentBytes : 0,
        ...(this.settings.logFiles === undefined ? {} : { files: this.settings.logFiles }),
      },
      nextSegment,
    );
    if (stats.frames > 0 || stats.damaged.length > 0 || stats.cut.length > 0) {
      this.logger.info(
        { frames: stats.frames, bytes: stats.bytes, segments: stats.segments, damaged: stats.damaged, cut: stats.cut, lost: this.damage.size, sameBoot, ms: this.clock.monotonic() - started },
        'recovered from the commit log',
      );
      // Make the recovered state the new checkpoint in the background; the
      // replayed segments stay until it is durable.
      void this.checkpoint().catch((error) => this.logger.error({ err: error }, 'checkpoint after recovery failed'));
    }
  }

  /**
   * The commit log is damaged: from now on no chunk byte past what the log
   * confirmed is cut without being read first. Trusted cursors are ended
   * (their unconfirmed bytes salvaged) and later streams take the checked
   * path, since the log no longer accounts for every record in order.
   */
  private enterSalvageMode(): void {
    if (this.salvageMode) return;
    this.salvageMode = true;
    this.sameBoot = false;
    for (const handle of this.handles.values()) if (handle.replay) this.salvageCursor(handle);
  }

  private salvageCursor(handle: StreamHandle): void {
    this.addSalvage(handle, this.loader.readUnconfirmed(handle));
    this.loader.endReplayCursor(handle);
  }

  private addSalvage(handle: StreamHandle, records: DecodedRecord[]): void {
    if (records.length === 0) return;
    handle.salvage = [...(handle.salvage ?? []), ...records].sort((a, b) => a.seq - b.seq);
  }

  /** Re-applies one logged section: what the chunks lack, salvaged records first, gaps counted as lost. */
  private replaySection(section: FrameSection): void {
    if (section.op === FrameOp.dropPartition) {
      this.applyDropPartition(section.partition);
      return;
    }
    const handle = this.handle(section.bucket, section.stream, true, true)!;
    if (section.op === FrameOp.delete) {
      if (handle.replay) this.salvageCursor(handle);
      handle.salvage = undefined;
      if (handle.deletedAt < section.lastSeq || handle.chunks.length > 0) this.applyDelete(handle, section.lastSeq);
      handle.last = Math.max(handle.last, section.lastSeq);
      handle.durableLast = Math.max(handle.durableLast, section.lastSeq);
      return;
    }
    const source = section.records;
    let offset = this.skipHeld(handle, source, 0);
    if (handle.replay) offset = this.loader.confirmFromCursor(handle, source, offset);
    if (offset >= source.length) return;
    const firstSeq = recordSeqAt(source, offset);
    if (firstSeq !== handle.durableLast + 1 && handle.salvage) {
      this.applySalvage(handle, firstSeq - 1);
      offset = this.skipHeld(handle, source, offset);
      if (offset >= source.length) return;
    }
    const runSeq = recordSeqAt(source, offset);
    if (runSeq > handle.durableLast + 1) this.acceptGap(handle, runSeq - 1, 'commit log damage');
    const records: DecodedRecord[] = [];
    for (let position = offset; position < source.length; position += recordBytesAt(source, position)) records.push(peekRecord(source, position)!);
    const lastRecord = records[records.length - 1]!;
    handle.last = Math.max(handle.last, lastRecord.seq);
    handle.lastMs = Math.max(handle.lastMs, lastRecord.t);
    this.applyRecords(handle, records, source, offset);
  }

  /** The offset of the first record in `source` (from `offset`) that the stream does not hold yet. */
  private skipHeld(handle: StreamHandle, source: Buffer, offset: number): number {
    while (offset < source.length && recordSeqAt(source, offset) <= handle.durableLast) offset += recordBytesAt(source, offset);
    return offset;
  }

  /** Applies the salvaged records that continue the stream, up to `uptoSeq`; a gap before one is counted as lost. */
  private applySalvage(handle: StreamHandle, uptoSeq: number): void {
    const salvage = handle.salvage!;
    let index = 0;
    while (index < salvage.length && salvage[index]!.seq <= handle.durableLast) index++;
    const run: DecodedRecord[] = [];
    while (index < salvage.length && salvage[index]!.seq <= uptoSeq) {
      const record = salvage[index]!;
      if (record.seq > handle.durableLast + run.length + 1) {
        this.applySalvaged(handle, run.splice(0));
        this.acceptGap(handle, record.seq - 1, 'commit log damage');
      }
      run.push(record);
      index++;
    }
    this.applySalvaged(handle, run);
    handle.salvage = index < salvage.length ? salvage.slice(index) : undefined;
  }

  private applySalvaged(handle: StreamHandle, records: DecodedRecord[]): void {
    if (records.length === 0) return;
    const source = Buffer.concat(records.map((record) => encodeRecord(record.seq, record.t, record.epoch, record.payload)));
    let offset = 0;
    const decoded = records.map((record) => {
      const copy = peekRecord(source, offset)!;
      offset += record.bytes;
      return copy;
    });
    const last = decoded[decoded.length - 1]!;
    handle.last = Math.max(handle.last, last.seq);
    handle.lastMs = Math.max(handle.lastMs, last.t);
    this.applyRecords(handle, decoded, source, 0);
    this.logger.warn({ bucket: handle.bucket, stream: handle.stream, from: decoded[0]!.seq, to: last.seq }, 'recovery: entries the damaged commit log lost were found in their chunk files and kept');
  }

  /**
   * Seqnums up to `uptoSeq` that nothing holds any more: they are never
   * handed out again (a reader may have seen them), reads step over them and
   * say so, and the loss is reported.
   */
  private acceptGap(handle: StreamHandle, uptoSeq: number, reason: string): void {
    const range = { from: handle.durableLast + 1, to: uptoSeq };
    this.reportDamage(handle, range, reason);
    handle.last = Math.max(handle.last, uptoSeq);
    handle.durableLast = uptoSeq;
    // The tail stays contiguous: reads index it by seqnum.
    handle.tail = [];
    handle.tailBytes = 0;
  }

  /** Records (once per stream and range) entries that are lost or unreadable: logged, and listed in stats. */
  private reportDamage(handle: StreamHandle, range: SeqRange, reason: string): void {
    const key = `${handle.key}\u0000${range.from}`;
    if (this.damage.has(key)) return;
    for (const known of this.damage.values()) {
      if (known.bucket === handle.bucket && known.stream === handle.stream && known.from <= range.from && range.to <= known.to) return;
    }
    const entry: DamageReport = { bucket: handle.bucket, stream: handle.stream, from: range.from, to: range.to, reason };
    this.damage.set(key, entry);
    this.counters.damagedRanges++;
    if (this.damage.size > damageReportsMax) this.damage.delete(this.damage.keys().next().value!);
    this.logger.error(entry, 'entries lost or unreadable: reads step over them');
  }

  /**
   * Every closed chunk's file against the size lmdb recorded when it closed,
   * in the background after open, a slice at a time: a stream with a damaged
   * chunk is loaded at once, which reports what was lost (the rest of the
   * checking happens when a stream is opened and when a record is read).
   */
  private async checkClosedChunks(): Promise<number> {
    let damaged = 0;
    let checked = 0;
    for (const { key, value } of this.meta.chunks.getRange({})) {
      if (this.closed) break;
      const [bucket, stream, firstSeq] = key as [string, string, number];
      const file = path.join(this.streamDirectory(partitionOf(bucket, stream, this.settings.ringSize), bucket, stream), chunkFileName(firstSeq));
      const size = fileSizeOrUndefined(file);
      if (size !== undefined && size < (value as ChunkSummaryValue).bytes && !this.handles.has(streamKey(bucket, stream))) {
        damaged++;
        this.handle(bucket, stream, false);
      }
      if (++checked % 1000 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    return damaged;
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
        if (replaying && state !== undefined) {
          if (this.salvageMode) this.addSalvage(handle, this.loader.readPastCheckpoint(handle, state));
          this.loader.resetToCheckpoint(handle, state);
        }
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
          if (error) {
            this.rollBack(handle, batch.metas[0]!.id);
            return reject(this.logFailure(error));
          }
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
    const trouble = this.writeTrouble();
    if (trouble !== undefined) throw trouble;
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
        if (error) {
          for (const batch of batches) this.rollBack(batch.handle, batch.metas[0]!.id);
          return reject(this.logFailure(error));
        }
        for (const batch of batches) this.applyDurable(batch.handle, batch.records, batch.decoded);
        resolve(batches.map((batch) => batch.metas));
        this.afterWrite();
      });
    });
  }

  /**
   * A batch the log refused never happened: its seqnums are handed out again
   * (every later batch of the stream was refused with it, since the log
   * fails whole batches in order, and a refused frame can never be replayed).
   */
  private rollBack(handle: StreamHandle, firstSeq: number): void {
    handle.last = Math.min(handle.last, firstSeq - 1);
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
    // Only the last tailCountMax can stay in the tail: a long batch (a handoff) skips pushing the rest.
    const tailFrom = records.length - this.settings.tailCountMax;
    if (tailFrom > 0) {
      handle.tail = [];
      handle.tailBytes = 0;
    }
    for (let position = 0; position < records.length; position++) {
      const record = records[position]!;
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
        this.removeFile(handle.chunkPath(active.firstSeq));
        active = undefined;
      }
      if (active === undefined) {
        active = { firstSeq: record.seq, bytes: 0, lastMs: undefined, index: new SparseIndex() };
        handle.chunks.push(active);
        handle.activeCount = 0;
        handle.activeFirstMs = record.t;
        // The file (and the stream's folder) is made by its first write.
        this.dirtyDirectories.add(handle.directory);
      }
      active.index?.add(record.seq, active.bytes, record.bytes, record.t);
      active.bytes += record.bytes;
      active.lastMs = record.t;
      handle.activeCount++;
      handle.activeLast = record.seq;
      handle.activeFirstMs ??= record.t;
      handle.durableLast = record.seq;
      if (position >= tailFrom) this.pushTail(handle, record);
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
    const summary: ChunkSummaryValue = { lastSeq: handle.activeLast, lastMs: closing.lastMs ?? handle.lastMs, bytes: closing.bytes };
    this.meta.chunks.put([handle.bucket, handle.stream, closing.firstSeq], summary).catch((error: Error) => {
      this.logger.error({ err: error }, 'could not record a chunk summary');
    });
    handle.chunks.push({ firstSeq: nextSeq, bytes: 0, lastMs: undefined, index: new SparseIndex() });
    handle.activeCount = 0;
    handle.activeFirstMs = undefined;
    queueMicrotask(() => {
      try {
        this.enforceRetention(handle);
      } catch (error) {
        this.logger.error({ err: error }, 'eviction after a chunk roll failed');
      }
    });
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
    const chunk = handle.active!;
    (chunk.unwritten ??= []).push(bytes);
    chunk.unwrittenBytes = (chunk.unwrittenBytes ?? 0) + bytes.length;
    handle.unwrittenBytes += bytes.length;
    this.writeBuffersBytes += bytes.length;
    this.bufferedHandles.add(handle);
    if (chunk.unwrittenBytes >= writeBufferFlushBytes) this.flushWriteBuffer(handle);
  }

  /**
   * Writes a stream's buffered chunk bytes to their files, oldest chunk
   * first. Never throws: the bytes are durable in the commit log already,
   * so a failed write (a full disk, no descriptors, EIO) leaves them
   * buffered and readable, appends are refused meanwhile, and the write is
   * tried again until it succeeds. False when something is still waiting.
   */
  private flushWriteBuffer(handle: StreamHandle): boolean {
    if (handle.unwrittenBytes === 0) return true;
    for (const chunk of handle.chunks) {
      if (!chunk.unwrittenBytes) continue;
      if (!this.writeChunk(handle, chunk)) return false;
    }
    this.bufferedHandles.delete(handle);
    return true;
  }

  private writeChunk(handle: StreamHandle, chunk: Chunk): boolean {
    const file = handle.chunkPath(chunk.firstSeq);
    const pieces = chunk.unwritten!;
    const data = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, chunk.unwrittenBytes);
    let written = 0;
    const write = () =>
      this.pool.with(file, (fd) => {
        while (written < data.length) written += fs.writeSync(fd, data, written, data.length - written);
      });
    try {
      try {
        write();
      } catch (error) {
        // A new stream's first chunk: its folder is made on first write.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        fs.mkdirSync(handle.directory, { recursive: true });
        this.dirtyDirectories.add(handle.directory);
        write();
      }
    } catch (error) {
      this.keepUnwritten(handle, chunk, data, written);
      this.writeFailed(error as NodeJS.ErrnoException);
      return false;
    }
    this.keepUnwritten(handle, chunk, data, written);
    this.dirtyChunkFiles.add(file);
    return true;
  }

  /** Drops the first `written` bytes of a chunk's buffer (they reached the file). */
  private keepUnwritten(handle: StreamHandle, chunk: Chunk, data: Buffer, written: number): void {
    if (written === 0) return;
    this.writeBuffersBytes -= written;
    handle.unwrittenBytes -= written;
    const rest = data.length - written;
    chunk.unwritten = rest === 0 ? undefined : [data.subarray(written)];
    chunk.unwrittenBytes = rest === 0 ? undefined : rest;
    if (written > 0 && rest < data.length) this.dirtyChunkFiles.add(handle.chunkPath(chunk.firstSeq));
  }

  /** A chunk write failed: appends are refused until every buffered byte is written again. */
  /** A chunk whose file goes away (deleted, evicted): its buffered bytes go with it. */
  private dropUnwritten(handle: StreamHandle, chunk: Chunk): void {
    const bytes = chunk.unwrittenBytes ?? 0;
    if (bytes === 0) return;
    this.writeBuffersBytes -= bytes;
    handle.unwrittenBytes -= bytes;
    chunk.unwritten = undefined;
    chunk.unwrittenBytes = undefined;
    if (handle.unwrittenBytes === 0) this.bufferedHandles.delete(handle);
  }

  /** Removes a file or folder that is no longer needed; a failure is logged (recovery removes it again), never thrown. */
  private removeFile(target: string): void {
    try {
      fs.rmSync(target, { recursive: true, force: true });
    } catch (error) {
      this.logger.error({ code: (error as NodeJS.ErrnoException).code }, 'could not remove a deleted stream\'s file');
    }
  }

  private writeFailed(error: NodeJS.ErrnoException): void {
    if (this.chunkWriteError === undefined) {
      this.logger.error({ code: error.code, message: error.message }, 'chunk writes failing: appends refused until they succeed again; nothing acknowledged is lost');
    }
    this.chunkWriteError = error;
    if (this.writeRetryTimer !== undefined || this.closed) return;
    this.writeRetryTimer = setInterval(() => this.retryWrites(), writeRetryMs);
    this.writeRetryTimer.unref();
  }

  private retryWrites(): void {
    for (const handle of [...this.bufferedHandles]) {
      if (!this.flushWriteBuffer(handle)) return;
    }
    clearInterval(this.writeRetryTimer);
    this.writeRetryTimer = undefined;
    this.chunkWriteError = undefined;
    this.logger.info('chunk writes succeed again: appends accepted');
  }

  /** Why appends are refused right now, if they are: a full disk is 507, anything else 503; both retriable. */
  /** Why appends are refused now (closing, a failed log, a full disk, failing chunk writes), or undefined. */
  writeRefusal(): IorioError | undefined {
    return this.writeTrouble();
  }

  private writeTrouble(): IorioError | undefined {
    if (this.closed) return new IorioError('unavailable', 'the store is closing');
    if (this.log?.failed) return new IorioError('unavailable', `the commit log failed (${(this.log.failed as NodeJS.ErrnoException).code ?? 'error'}); the node must be restarted`);
    const error = this.chunkWriteError;
    if (error !== undefined) {
      return isNoSpaceError(error)
        ? new IorioError('insufficient-storage', 'the disk of this node is full; appends resume by themselves once space is freed')
        : new IorioError('unavailable', `writing chunk files fails (${error.code ?? 'error'}); appends resume by themselves once it succeeds`);
    }
    if (this.clock.monotonic() < this.logNoSpaceUntilMs) {
      return new IorioError('insufficient-storage', 'the disk of this node is full; appends resume by themselves once space is freed');
    }
    return undefined;
  }

  /** A commit-log failure as the error the caller gets (a full disk is 507 and starts a short refusal window). */
  private logFailure(error: Error): IorioError {
    if (isNoSpaceError(error)) {
      this.logNoSpaceUntilMs = this.clock.monotonic() + writeRetryMs;
      return new IorioError('insufficient-storage', 'the disk of this node is full; appends resume by themselves once space is freed');
    }
    return new IorioError('unavailable', `the commit log failed (${(error as NodeJS.ErrnoException).code ?? error.message})`);
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
    // A read from a seqnum goes on past missing entries until it has `limit` of them.
    const result = await this.readFromDisk(handle, start, options.from === undefined ? end : last, limit);
    return { entries: result.entries, first: handle.first, last, truncated, ...(result.missing.length > 0 ? { missing: result.missing } : {}) };
  }

  private async readFromDisk(handle: StreamHandle, start: number, end: number, limit: number): Promise<{ entries: StoredEntry[]; missing: SeqRange[] }> {
    this.flushWriteBuffer(handle);
    const records: DecodedRecord[] = [];
    const missing: SeqRange[] = [];
    let seq = start;
    while (seq <= end && records.length < limit) {
      const chunkIndex = findChunk(handle.chunks, seq);
      if (chunkIndex < 0) {
        // Evicted under the read: go on from the oldest kept entry.
        if (handle.chunks.length === 0 || handle.chunks[0]!.firstSeq <= seq) break;
        seq = handle.chunks[0]!.firstSeq;
        continue;
      }
      const chunk = handle.chunks[chunkIndex]!;
      const stop = Math.min(end, chunkIndex + 1 < handle.chunks.length ? handle.chunks[chunkIndex + 1]!.firstSeq - 1 : handle.durableLast);
      const want = limit - records.length;
      const got: DecodedRecord[] = [];
      try {
        await this.readChunk(handle, chunk, seq, stop, want, got);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw storeReadError(error);
      }
      let expected = seq;
      for (const record of got) {
        if (record.seq > expected) missing.push({ from: expected, to: record.seq - 1 });
        records.push(record);
        expected = record.seq + 1;
      }
      if (got.length === want) break;
      if (expected <= stop) missing.push({ from: expected, to: stop });
      seq = stop + 1;
    }
    for (const range of missing) this.reportDamage(handle, range, 'unreadable in its chunk file');
    return { entries: records.map(toEntry), missing };
  }

  /** Reads records [startSeq, stopSeq] (at most `countMax`) of one chunk: from its file, then from what waits in memory to be written. */
  private async readChunk(handle: StreamHandle, chunk: Chunk, startSeq: number, stopSeq: number, countMax: number, into: DecodedRecord[]): Promise<void> {
    const file = handle.chunkPath(chunk.firstSeq);
    const unwritten = chunk.unwrittenBytes ?? 0;
    const diskBytes = chunk.bytes - unwritten;
    if (diskBytes > 0) {
      const index = chunk.index ?? (chunk.index = await buildSparseIndex(file, diskBytes, chunk.firstSeq));
      const point = index.floor(startSeq);
      if ((point?.offset ?? 0) < diskBytes) {
        await this.pool.withAsync(file, (fd) => readChunkRange(fd, point?.offset ?? 0, point?.seq ?? chunk.firstSeq, diskBytes, startSeq, stopSeq, countMax, into));
      }
    }
    if (unwritten === 0 || into.length >= countMax || into[into.length - 1]?.seq === stopSeq) return;
    const buffered = Buffer.concat(chunk.unwritten!, unwritten);
    const after = into.length > 0 ? into[into.length - 1]!.seq : startSeq - 1;
    for (const record of scanChunkRecords(buffered, 0, stopSeq).records) {
      if (record.seq <= after) continue;
      into.push({ ...record, payload: Buffer.from(record.payload) });
      if (into.length >= countMax) return;
    }
  }

  /** The last durable seqnum, now (0 for a stream never written). */
  lastSeqNow(bucket: string, stream: string): number {
    return this.handle(bucket, stream, false)?.durableLast ?? 0;
  }

  async lastSeq(bucket: string, stream: string): Promise<number> {
    return this.handle(bucket, stream, false)?.durableLast ?? 0;
  }

  async streamInfo(bucket: string, stream: string): Promise<StreamInfo | null> {
    const handle = this.handle(bucket, stream, false);
    if (handle === undefined || (handle.durableLast === 0 && handle.deletedAt === 0)) return null;
    const first = handle.first;
    const last = handle.durableLast;
    const { policy, source } = this.policyInForce(bucket, stream);
    return {
      bucket,
      stream,
      partition: handle.partition,
      first,
      last,
      entries: Math.max(0, last - first + 1),
      bytes: handle.chunks.reduce((sum, chunk) => sum + chunk.bytes, 0),
      chunks: handle.chunks.length,
      lastMs: handle.lastMs,
      deletedAt: handle.deletedAt,
      // The configured default leaves its unset limits undefined: only the set ones are shown.
      policy: Object.fromEntries(Object.entries(policy ?? {}).filter(([, value]) => value !== undefined)) as EvictionPolicy,
      policySource: source,
      bucketBytesMax: this.settings.bucketBytesMax,
    };
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
          reject(this.logFailure(error));
          return;
        }
        this.applyDelete(handle, lastSeq);
        resolve();
      });
    });
  }

  private applyDelete(handle: StreamHandle, lastSeq: number): void {
    for (const chunk of handle.chunks) {
      const file = handle.chunkPath(chunk.firstSeq);
      this.dropUnwritten(handle, chunk);
      this.pool.close(file);
      this.dirtyChunkFiles.delete(file);
      this.meta.chunks.remove([handle.bucket, handle.stream, chunk.firstSeq]).catch(() => undefined);
    }
    this.bufferedHandles.delete(handle);
    this.removeFile(handle.directory);
    handle.chunks = [];
    handle.tail = [];
    handle.tailBytes = 0;
    handle.deletedAt = lastSeq;
    handle.activeCount = 0;
    handle.durableLast = Math.max(handle.durableLast, lastSeq);
    this.markDirty(handle);
  }

  /** Buckets holding streams on this node, synchronously (from lmdb and memory). */
  localBucketsNow(): string[] {
    const buckets = new Set<string>();
    for (const { key } of this.meta.streams.getRange({})) buckets.add((key as [string, string])[0]);
    for (const handle of this.handles.values()) if (handle.exists) buckets.add(handle.bucket);
    return [...buckets].sort();
  }

  async listBuckets(): Promise<Listing> {
    const buckets = new Set<string>();
    for (const { key, value } of this.meta.streams.getRange({})) {
      const [bucket, stream] = key as [string, string];
      if (buckets.has(bucket)) continue;
      const handle = this.handles.get(streamKey(bucket, stream));
      if (handle ? handle.exists : stateExists(value as StreamState)) buckets.add(bucket);
    }
    for (const handle of this.handles.values()) if (handle.exists) buckets.add(handle.bucket);
    return { names: [...buckets].sort(), partial: false };
  }

  async listStreams(bucket: string): Promise<Listing> {
    const streams = new Set<string>();
    for (const { key, value } of this.meta.streams.getRange({ start: [bucket], end: [bucket + '\u0000'] })) {
      const stream = (key as [string, string])[1];
      const handle = this.handles.get(streamKey(bucket, stream));
      if (handle ? handle.exists : stateExists(value as StreamState)) streams.add(stream);
    }
    for (const handle of this.handles.values()) if (handle.bucket === bucket && handle.exists) streams.add(handle.stream);
    return { names: [...streams].sort(), partial: false };
  }

  // -------------------------------------------------------------------------
  // Partitions: handoff export and import, drop

  partitionStreams(partition: number): StreamPosition[] {
    const positions = new Map<string, StreamPosition>();
    for (const { key, value } of this.meta.streams.getRange({})) {
      const [bucket, stream] = key as [string, string];
      if (partitionOf(bucket, stream, this.settings.ringSize) !== partition) continue;
      const state = value as StreamState;
      positions.set(streamKey(bucket, stream), { bucket, stream, last: Math.max(state.last, state.deletedAt), deletedAt: state.deletedAt });
    }
    // Streams in memory are newer than what lmdb holds (dirty until the next checkpoint).
    for (const handle of this.handles.values()) {
      if (handle.partition !== partition || (handle.durableLast === 0 && handle.deletedAt === 0)) continue;
      positions.set(handle.key, { bucket: handle.bucket, stream: handle.stream, last: handle.durableLast, deletedAt: handle.deletedAt });
    }
    return [...positions.values()].sort((a, b) => (a.bucket === b.bucket ? (a.stream < b.stream ? -1 : 1) : a.bucket < b.bucket ? -1 : 1));
  }

  async exportRecords(bucket: string, stream: string, afterSeq: number, bytesMax: number): Promise<ExportedRecords> {
    const handle = this.handle(bucket, stream, false);
    if (handle === undefined) return { records: Buffer.alloc(0), count: 0, lastSeq: afterSeq, last: 0, deletedAt: 0 };
    const raw = await this.exportRaw(handle, afterSeq, bytesMax);
    return raw ?? this.exportDecoded(handle, afterSeq, bytesMax);
  }

  /**
   * A handoff batch straight from the chunk bytes: records are stored in the
   * very format a batch carries, so they are read and checked (checksums,
   * seqnum order) but never decoded and encoded again. Undefined when the
   * bytes are not a clean run (damage, or bytes waiting in memory): the
   * decoding path handles those.
   */
  private async exportRaw(handle: StreamHandle, afterSeq: number, bytesMax: number): Promise<ExportedRecords | undefined> {
    if (!this.flushWriteBuffer(handle)) return undefined;
    const last = handle.durableLast;
    const pieces: Buffer[] = [];
    let bytes = 0;
    let count = 0;
    let seq = Math.max(afterSeq + 1, handle.first);
    let lastSeq = afterSeq;
    while (bytes < bytesMax && seq <= last) {
      const chunkIndex = findChunk(handle.chunks, seq);
      if (chunkIndex < 0) return undefined;
      const chunk = handle.chunks[chunkIndex]!;
      const chunkLast = chunkIndex + 1 < handle.chunks.length ? handle.chunks[chunkIndex + 1]!.firstSeq - 1 : last;
      if ((chunk.unwrittenBytes ?? 0) > 0) return undefined;
      const file = handle.chunkPath(chunk.firstSeq);
      const index = chunk.index ?? (chunk.index = await buildSparseIndex(file, chunk.bytes, chunk.firstSeq));
      const point = index.floor(seq) ?? { seq: chunk.firstSeq, offset: 0 };
      const length = Math.min(chunk.bytes - point.offset, bytesMax - bytes + 2 * sparseIndexStrideBytes);
      const data = Buffer.allocUnsafe(length);
      const read = await this.pool.withAsync(file, (fd) => readFully(fd, data, point.offset));
      const run = rawRun(data.subarray(0, read), point.seq, seq, Math.min(chunkLast, last), Math.max(1, bytesMax - bytes));
      if (run === undefined) return undefined;
      pieces.push(run.bytes);
      bytes += run.bytes.length;
      count += run.count;
      lastSeq = run.lastSeq;
      seq = lastSeq + 1;
      if (run.count === 0) return undefined;
    }
    // Nothing kept up to `last` (deleted or evicted away): read to its end.
    if (count === 0 && seq > last) lastSeq = last;
    return { records: pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, bytes), count, lastSeq, last, deletedAt: handle.deletedAt };
  }

  /** The batch from decoded entries: steps over damage and missing ranges as reads do. */
  private async exportDecoded(handle: StreamHandle, afterSeq: number, bytesMax: number): Promise<ExportedRecords> {
    const last = handle.durableLast;
    const deletedAt = handle.deletedAt;
    const pieces: Buffer[] = [];
    let bytes = 0;
    let lastSeq = afterSeq;
    while (bytes < bytesMax && lastSeq < last) {
      const page = await this.read(handle.bucket, handle.stream, { from: lastSeq + 1, limit: readLimitMax });
      if (page.entries.length === 0) {
        // Nothing is kept up to `last` (deleted or evicted): the stream is read to its end.
        lastSeq = last;
        break;
      }
      for (const entry of page.entries) {
        const record = encodeRecord(entry.seq, entry.t, entry.epoch, entry.payload);
        pieces.push(record);
        bytes += record.length;
        lastSeq = entry.seq;
        if (bytes >= bytesMax) break;
      }
    }
    return { records: Buffer.concat(pieces, bytes), count: pieces.length, lastSeq, last, deletedAt };
  }

  /**
   * A handoff batch, made durable through the commit log like any append
   * (so recovery replays it), but with the source's seqnums, timestamps and
   * epochs. A stream that starts past seqnum 1 here (its head was evicted or
   * deleted at the source) gets a tombstone up to there first, in the same
   * frame; a gap inside (entries the source had lost) is counted as lost.
   */
  importRecords(batch: ImportBatch): Promise<void> {
    try {
      // A replicated apply (lazy) is of ops already committed and durable in the partition log: only a closed store or a failed log refuses it;
      // failing chunk writes keep its bytes in memory, as they keep an append's.
      if (batch.lazy === true) {
        if (this.closed || this.log?.failed) this.checkWritable();
      } else {
        this.checkWritable();
      }
      const handle = this.handle(batch.bucket, batch.stream, true)!;
      if (handle.inflight > 0) throw new IorioError('unavailable', 'the stream is being written here; a handoff batch cannot be applied now');
      const runs = contiguousRuns(batch.records, handle.durableLast);
      const held = handle.chunks.length > 0 && handle.durableLast > handle.deletedAt;
      const headGap = runs.length > 0 && !held ? recordSeqAt(runs[0]!, 0) - 1 : 0;
      const tombstone = Math.max(batch.deletedAt, headGap);
      const sections: FrameSection[] = [];
      if (tombstone > handle.deletedAt) sections.push({ op: FrameOp.delete, partition: handle.partition, bucket: handle.bucket, stream: handle.stream, lastSeq: tombstone });
      for (const records of runs) sections.push({ op: FrameOp.append, partition: handle.partition, bucket: handle.bucket, stream: handle.stream, records });
      if (sections.length === 0) return Promise.resolve();
      // Before the seqnums are reserved: the empty state it records must not claim them.
      this.ensureState(handle);
      const lastRun = runs[runs.length - 1];
      const reserved = lastRun === undefined ? tombstone : lastRecordSeq(lastRun);
      handle.last = Math.max(handle.last, reserved);
      handle.inflight++;
      return new Promise((resolve, reject) => {
        this.log.append(sections, (error) => {
          handle.inflight--;
          if (error) {
            handle.last = handle.durableLast;
            return reject(this.logFailure(error));
          }
          for (const section of sections) this.applyImported(handle, section);
          if (batch.lazy === true) {
            // A replicated partition's appends reach the store as applies of its log: counted as appends here.
            for (const section of sections) {
              if (section.op !== FrameOp.append) continue;
              for (let position = 0; position < section.records.length; position += recordBytesAt(section.records, position)) this.counters.appends++;
              this.counters.appendBytes += section.records.length;
            }
          }
          resolve();
          this.afterWrite();
        }, batch.lazy === true);
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private applyImported(handle: StreamHandle, section: FrameSection): void {
    if (section.op === FrameOp.delete) {
      this.applyDelete(handle, section.lastSeq);
      handle.last = Math.max(handle.last, section.lastSeq);
      return;
    }
    if (section.op !== FrameOp.append) return;
    const first = recordSeqAt(section.records, 0);
    if (first > handle.durableLast + 1) this.acceptGap(handle, first - 1, 'lost at the handoff source');
    const records: DecodedRecord[] = [];
    for (let position = 0; position < section.records.length; position += recordBytesAt(section.records, position)) records.push(peekRecord(section.records, position)!);
    handle.lastMs = Math.max(handle.lastMs, records[records.length - 1]!.t);
    this.applyDurable(handle, section.records, records);
  }

  // -------------------------------------------------------------------------
  // Repair (iorio-admin verify --repair)

  /**
   * A stream's chunks and the seqnums each covers: from its first seqnum to
   * the next chunk's first minus one (the last chunk: to the stream's last),
   * so entries lost inside a chunk, or between two, belong to one chunk.
   */
  chunkSpans(bucket: string, stream: string): ChunkSpan[] {
    const handle = this.handle(bucket, stream, false);
    if (handle === undefined) return [];
    const chunks = handle.chunks;
    return chunks.flatMap((chunk, index) => {
      const lastSeq = index + 1 < chunks.length ? chunks[index + 1]!.firstSeq - 1 : handle.durableLast;
      return chunk.firstSeq <= lastSeq ? [{ firstSeq: chunk.firstSeq, lastSeq, bytes: chunk.bytes, active: index === chunks.length - 1 }] : [];
    });
  }

  /**
   * Rewrites one chunk of a stream with `records`: every seqnum of its span
   * (chunkSpans), contiguous and intact, taken from another replica. Nothing
   * is lost: the chunk's file is first copied to `<data>/damaged/` (the same
   * path below it; an earlier copy is never overwritten), then the new file
   * is written beside it, synced and renamed over it, and its summary in
   * lmdb follows. The active chunk is closed first (appends go on in a new
   * chunk) and a checkpoint records that before its file changes, so
   * recovery never matches the rebuilt bytes against the commit log as an
   * active chunk's. A crash before the summary is written leaves the
   * rebuilt file read only up to the old size: the repair is simply due
   * again. A span that changed since the caller read it is a conflict: the
   * caller reads it again.
   *
   * Why not the import path: importRecords only extends a stream's tail (it
   * drops every record at or below the last seqnum), and chunk files are
   * append-only, so entries missing in the middle can only come back by
   * rebuilding the chunk that covers them.
   */
  async replaceChunk(bucket: string, stream: string, firstSeq: number, records: Buffer): Promise<ChunkReplaced> {
    const run = checkedRun(records, firstSeq);
    let handle = this.replaceableChunk(bucket, stream, firstSeq, run.lastSeq);
    if (handle.chunks[handle.chunks.length - 1]!.firstSeq === firstSeq) {
      // The active chunk: closed, and recorded so by a checkpoint, before its file changes; recovery then takes it as a closed chunk.
      this.rollChunk(handle, handle.durableLast + 1);
      this.markDirty(handle);
      // A checkpoint already running took its dirty streams before the roll: the next one records it.
      await this.checkpointRunning?.catch(() => undefined);
      await this.checkpoint();
      handle = this.replaceableChunk(bucket, stream, firstSeq, run.lastSeq);
    }
    // From here to the rename nothing yields: no append, eviction or read of the chunk's index runs in between.
    const chunk = handle.chunks.find((candidate) => candidate.firstSeq === firstSeq)!;
    const file = handle.chunkPath(firstSeq);
    const aside = this.copyAside(file);
    this.writeReplacement(handle, file, records);
    chunk.bytes = records.length;
    chunk.index = undefined;
    chunk.lastMs = run.lastMs;
    if (handle.tail.length > 0 && handle.tail[0]!.seq <= run.lastSeq) {
      // The tail may hold entries of the old chunk: reads go to the rebuilt file instead.
      handle.tail = [];
      handle.tailBytes = 0;
    }
    this.forgetDamage(handle, firstSeq, run.lastSeq);
    const summary: ChunkSummaryValue = { lastSeq: run.lastSeq, lastMs: run.lastMs, bytes: records.length };
    await this.meta.chunks.put([bucket, stream, firstSeq], summary);
    await this.meta.root.flushed;
    this.logger.warn({ bucket, stream, firstSeq, lastSeq: run.lastSeq, bytes: records.length, aside }, 'repair: a chunk was rebuilt from another replica; the replaced file was copied aside');
    return { firstSeq, lastSeq: run.lastSeq, bytes: records.length, aside };
  }

  /** The stream's handle, once its chunk from `firstSeq` covers exactly firstSeq..lastSeq and can be rewritten now; throws otherwise. */
  private replaceableChunk(bucket: string, stream: string, firstSeq: number, lastSeq: number): StreamHandle {
    this.checkWritable();
    const handle = this.handle(bucket, stream, false);
    if (handle === undefined) throw new IorioError('not-found', `no stream ${bucket}/${stream} on this node`);
    if (handle.inflight > 0) throw new IorioError('unavailable', 'the stream is being written here; try again');
    const index = handle.chunks.findIndex((chunk) => chunk.firstSeq === firstSeq);
    if (index < 0) throw new IorioError('conflict', `stream ${bucket}/${stream} has no chunk from seqnum ${firstSeq} now (evicted or deleted since)`);
    const spanLast = index === handle.chunks.length - 1 ? handle.durableLast : handle.chunks[index + 1]!.firstSeq - 1;
    if (spanLast !== lastSeq) throw new IorioError('conflict', `the chunk of ${bucket}/${stream} from seqnum ${firstSeq} covers ${firstSeq}..${spanLast} now, the records ${firstSeq}..${lastSeq}; read it again`);
    if (!this.flushWriteBuffer(handle)) throw new IorioError('unavailable', 'chunk writes are failing here; try again once they succeed');
    return handle;
  }

  /** Copies a file to the same path under `<data>/damaged/` (a free name: `.1`, `.2` ... after an earlier copy), synced; its path relative to the data folder, or null when there is no file. */
  private copyAside(file: string): string | null {
    const relative = path.relative(this.settings.dataDir, file);
    const base = path.join(this.settings.dataDir, damagedFolder, relative);
    fs.mkdirSync(path.dirname(base), { recursive: true });
    for (let copy = 0; copy < asideCopiesMax; copy++) {
      const target = copy === 0 ? base : `${base}.${copy}`;
      try {
        fs.copyFileSync(file, target, fs.constants.COPYFILE_EXCL);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') continue;
        if (code === 'ENOENT' && !fs.existsSync(file)) return null;
        throw error;
      }
      const fd = fs.openSync(target, 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fsyncDirectorySync(path.dirname(target));
      return path.relative(this.settings.dataDir, target);
    }
    throw new IorioError('conflict', `${asideCopiesMax} copies of ${relative} are already set aside in ${damagedFolder}/; move them away first`);
  }

  /** Writes `data` beside `file`, syncs it, and renames it over `file` (an open descriptor of the old file is closed first). */
  private writeReplacement(handle: StreamHandle, file: string, data: Buffer): void {
    const temporary = `${file}.replacing`;
    fs.mkdirSync(handle.directory, { recursive: true });
    const fd = fs.openSync(temporary, 'w', 0o644);
    try {
      let written = 0;
      while (written < data.length) written += fs.writeSync(fd, data, written, data.length - written);
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    this.pool.close(file);
    fs.renameSync(temporary, file);
    fsyncDirectorySync(handle.directory);
  }

  /** Damage reports of a stream within first..last are no longer true (the range was rebuilt). */
  private forgetDamage(handle: StreamHandle, first: number, last: number): void {
    for (const [key, report] of this.damage) {
      if (report.bucket === handle.bucket && report.stream === handle.stream && report.from >= first && report.to <= last) this.damage.delete(key);
    }
  }

  dropPartition(partition: number): Promise<number> {
    if (this.closed) return Promise.reject(new IorioError('unavailable', 'the store is closing'));
    const count = this.partitionStreams(partition).length;
    return new Promise((resolve, reject) => {
      this.log.append([{ op: FrameOp.dropPartition, partition, bucket: '', stream: '' }], (error) => {
        if (error) return reject(this.logFailure(error));
        this.applyDropPartition(partition);
        resolve(count);
      });
    });
  }

  /** Removes every stream of a partition: handles, lmdb state and summaries, and the partition's folder. */
  private applyDropPartition(partition: number): void {
    const keys: [string, string][] = [];
    for (const { key } of this.meta.streams.getRange({})) {
      const [bucket, stream] = key as [string, string];
      if (partitionOf(bucket, stream, this.settings.ringSize) === partition) keys.push([bucket, stream]);
    }
    for (const handle of [...this.handles.values()]) {
      if (handle.partition !== partition) continue;
      for (const chunk of handle.chunks) {
        this.dropUnwritten(handle, chunk);
        this.pool.close(handle.chunkPath(chunk.firstSeq));
        this.dirtyChunkFiles.delete(handle.chunkPath(chunk.firstSeq));
      }
      this.bufferedHandles.delete(handle);
      this.dirtyHandles.delete(handle);
      this.loaded.delete(handle.key);
      this.handles.delete(handle.key);
    }
    // Synchronously: what lists a partition must not see its streams again (a rare operation, one transaction).
    try {
      this.meta.root.transactionSync(() => {
        for (const [bucket, stream] of keys) {
          this.meta.streams.removeSync([bucket, stream]);
          for (const { key } of this.meta.chunks.getRange({ start: [bucket, stream], end: [bucket, stream, Number.MAX_SAFE_INTEGER] })) {
            this.meta.chunks.removeSync(key as [string, string, number]);
          }
        }
      });
    } catch (error) {
      // The log holds the drop: recovery does it again.
      this.logger.error({ err: error, partition }, 'could not forget a dropped partition\'s streams in lmdb');
    }
    this.removeFile(path.join(this.settings.dataDir, 'vnodes', String(partition)));
    this.logger.info({ partition, streams: keys.length }, 'dropped a partition that moved to another node');
  }

  // -------------------------------------------------------------------------
  // Policies and retention

  getPolicy(bucket: string, stream?: string): EvictionPolicy | undefined {
    return this.meta.policies.get([bucket, stream ?? '']) as EvictionPolicy | undefined;
  }

  /** The policy in force: the stream's, else the bucket's, else the configured default. */
  effectivePolicy(bucket: string, stream: string): RetentionPolicy | undefined {
    return this.policyInForce(bucket, stream).policy;
  }

  /** The policy in force and where it comes from. */
  private policyInForce(bucket: string, stream: string): { policy: RetentionPolicy | undefined; source: PolicySource } {
    const own = this.getPolicy(bucket, stream);
    if (own !== undefined) return { policy: own, source: PolicySource.stream };
    const ofBucket = this.getPolicy(bucket);
    if (ofBucket !== undefined) return { policy: ofBucket, source: PolicySource.bucket };
    const fallback = this.settings.defaultPolicy;
    return { policy: fallback, source: fallback === undefined ? PolicySource.none : PolicySource.default };
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

  private refreshAllPolicies(): void {
    for (const handle of this.handles.values()) {
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
      let lastMs: number | undefined;
      try {
        lastMs = validateChunk(handle.chunkPath(chunk.firstSeq), 0, chunk.firstSeq).lastMs;
      } catch {
        lastMs = undefined; // not written yet, or unreadable: its age stays unknown
      }
      // An unknown time never makes a chunk look old (eviction by age skips it).
      if (lastMs === undefined) continue;
      chunk.lastMs = lastMs;
      const summary: ChunkSummaryValue = { lastSeq: next.firstSeq - 1, lastMs: chunk.lastMs, bytes: chunk.bytes };
      this.meta.chunks.put([handle.bucket, handle.stream, chunk.firstSeq], summary).catch(() => undefined);
    }
  }

  private evictOldestChunk(handle: StreamHandle): void {
    const chunk = handle.chunks.shift()!;
    const file = handle.chunkPath(chunk.firstSeq);
    this.dropUnwritten(handle, chunk);
    this.pool.close(file);
    this.dirtyChunkFiles.delete(file);
    this.removeFile(file);
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

  /**
   * A checkpoint that starts after this call (the one running now may have
   * begun before writes its caller needs durable): once it resolves, every
   * write acknowledged before the call, lazy ones included, is durable.
   */
  checkpointAfterNow(): Promise<void> {
    const running = this.checkpointRunning;
    if (running === undefined) return this.checkpoint();
    return running.catch(() => undefined).then(() => this.checkpoint());
  }

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
    const handles = [...this.dirtyHandles];
    const files = [...this.dirtyChunkFiles];
    const directories = [...this.dirtyDirectories];
    this.dirtyHandles.clear();
    this.dirtyChunkFiles.clear();
    this.dirtyDirectories.clear();
    for (const handle of handles) handle.dirty = false;
    try {
      await this.writeCheckpoint(segment, handles, files, directories);
    } catch (error) {
      // Nothing was recorded: everything stays dirty for the next checkpoint, and the log keeps every segment.
      for (const handle of handles) this.markDirty(handle);
      for (const file of files) this.dirtyChunkFiles.add(file);
      for (const directory of directories) this.dirtyDirectories.add(directory);
      throw error;
    }
    this.log.deleteBefore(segment);
    this.counters.checkpoints++;
    for (const handle of handles) {
      if (!this.loaded.has(handle.key) && !handle.dirty && handle.inflight === 0 && handle.listeners.size === 0) this.handles.delete(handle.key);
    }
  }

  private async writeCheckpoint(segment: number, handles: StreamHandle[], files: string[], directories: string[]): Promise<void> {
    const states: [string[], StreamState][] = [];
    for (const handle of handles) {
      // A state may only name bytes that are in the chunk file.
      if (!this.flushWriteBuffer(handle)) throw new IorioError('unavailable', 'checkpoint postponed: chunk writes are failing');
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
    // Written since the dirty sets were taken (flushes above): synced too.
    for (const file of this.dirtyChunkFiles) files.push(file);
    for (const directory of this.dirtyDirectories) directories.push(directory);
    this.dirtyChunkFiles.clear();
    this.dirtyDirectories.clear();
    await this.syncFiles(files);
    await fsyncDirectories(directories);
    await this.meta.root.transaction(() => {
      for (const [key, state] of states) this.meta.streams.put(key, state);
      this.meta.settings.put('checkpoint', { segment });
    });
    await this.meta.root.flushed;
    for (const handle of handles) handle.hasState = true;
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
    const refused = this.writeTrouble();
    return {
      ...this.counters,
      logFlushes: this.log.flushes,
      openStreams: this.loaded.size,
      openFiles: this.pool.size,
      damaged: [...this.damage.values()],
      writesRefused: refused === undefined ? null : refused.message,
    };
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

function fileSizeOrUndefined(file: string): number | undefined {
  try {
    return fs.statSync(file).size;
  } catch {
    return undefined;
  }
}

/** An unexpected failure reading chunk files, as a retriable error that names no path of the server. */
function storeReadError(error: unknown): IorioError {
  if (error instanceof IorioError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  return new IorioError('unavailable', `reading the stream failed${code === undefined ? '' : ` (${code})`}; try again`);
}

/**
 * The records of `data` (which starts at a record of seqnum `startSeq`) from
 * seqnum `fromSeq` to at most `toSeq`, as one slice of whole, checked,
 * contiguous records of at most `bytesMax` (at least one record); undefined
 * at the first record that is short, damaged or out of order.
 */
function rawRun(data: Buffer, startSeq: number, fromSeq: number, toSeq: number, bytesMax: number): { bytes: Buffer; count: number; lastSeq: number } | undefined {
  let offset = 0;
  let expected = startSeq;
  let begin = -1;
  let count = 0;
  let lastSeq = fromSeq - 1;
  while (offset < data.length && expected <= toSeq) {
    const result = decodeRecord(data, offset);
    if (result.status === 'short') break;
    if (result.status !== 'ok' || result.record.seq !== expected) return undefined;
    const size = result.record.bytes;
    if (expected >= fromSeq) {
      if (begin < 0) begin = offset;
      if (count > 0 && offset + size - begin > bytesMax) break;
      count++;
      lastSeq = expected;
    }
    offset += size;
    expected++;
  }
  if (begin < 0) return count === 0 && expected > toSeq ? { bytes: Buffer.alloc(0), count: 0, lastSeq: toSeq } : undefined;
  return { bytes: data.subarray(begin, offset), count, lastSeq };
}

/** Records that must be whole, intact and contiguous from `firstSeq` (a chunk's rebuilt content); their last seqnum and newest timestamp. */
function checkedRun(records: Buffer, firstSeq: number): { lastSeq: number; lastMs: number } {
  let offset = 0;
  let expected = firstSeq;
  let lastMs = 0;
  while (offset < records.length) {
    const result = decodeRecord(records, offset);
    if (result.status !== 'ok') throw new IorioError('invalid-body', `chunk records: ${result.status} record at byte ${offset}`);
    if (result.record.seq !== expected) throw new IorioError('invalid-body', `chunk records: seqnum ${result.record.seq} where ${expected} belongs`);
    lastMs = Math.max(lastMs, result.record.t);
    offset += result.record.bytes;
    expected++;
  }
  if (expected === firstSeq) throw new IorioError('invalid-body', 'chunk records: none');
  return { lastSeq: expected - 1, lastMs };
}

function readFully(fd: number, buffer: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = () =>
      fs.read(fd, buffer, done, buffer.length - done, position + done, (error, bytesRead) => {
        if (error) return reject(error);
        done += bytesRead;
        if (bytesRead === 0 || done >= buffer.length) resolve(done);
        else step();
      });
    step();
  });
}

/** Splits handoff records into contiguous runs after `afterSeq` (held records dropped), checking each record. */
function contiguousRuns(records: Buffer, afterSeq: number): Buffer[] {
  const runs: Buffer[] = [];
  let runStart = -1;
  let previous = afterSeq;
  let offset = 0;
  while (offset < records.length) {
    const result = decodeRecord(records, offset);
    if (result.status !== 'ok') throw new IorioError('invalid-body', `handoff batch: ${result.status} record at byte ${offset}`);
    const seq = result.record.seq;
    if (seq <= previous) {
      if (runStart >= 0) throw new IorioError('invalid-body', 'handoff batch: seqnums out of order');
      offset += result.record.bytes;
      continue;
    }
    if (runStart >= 0 && seq !== previous + 1) {
      runs.push(records.subarray(runStart, offset));
      runStart = -1;
    }
    if (runStart < 0) runStart = offset;
    previous = seq;
    offset += result.record.bytes;
  }
  if (runStart >= 0) runs.push(records.subarray(runStart, offset));
  return runs;
}

function lastRecordSeq(records: Buffer): number {
  let offset = 0;
  let seq = 0;
  while (offset < records.length) {
    seq = recordSeqAt(records, offset);
    offset += recordBytesAt(records, offset);
  }
  return seq;
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
