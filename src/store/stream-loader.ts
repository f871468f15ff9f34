/**
 * Loading a stream's handle from its folder and its lmdb state: chunks are
 * listed, what was written since the last checkpoint is checked (and a torn
 * or corrupt tail cut), and during recovery the replay cursor that matches
 * chunk data against the commit log. The stream store decides when; this
 * module knows how.
 */
import fs from 'node:fs';
import type { Logger } from 'pino';
import { peekRecord, recordBytesAt, recordSeqAt, scanChunkRecords, type DecodedRecord, type SeqRange } from '../core/record.js';
import { listChunkFiles } from './chunks.js';
import type { MetaStore } from './meta.js';
import type { Chunk, ChunkSummaryValue, StreamHandle, StreamState } from './stream-handle.js';

export interface LoaderHost {
  readonly logger: Logger;
  readonly meta: MetaStore;
  refreshPolicy(handle: StreamHandle): void;
  /** The handle (and the chunk file, when given) changed since the last checkpoint. */
  markDirty(handle: StreamHandle, chunkFile: string | undefined): void;
  /** Entries found lost or unreadable: reported once, stepped over by reads. */
  reportDamage(handle: StreamHandle, range: SeqRange, reason: string): void;
}

export class StreamLoader {
  constructor(private readonly host: LoaderHost) {}

  load(handle: StreamHandle, state: StreamState | undefined): void {
    const files = listChunkFiles(handle.directory);
    handle.deletedAt = state?.deletedAt ?? 0;
    handle.lastMs = state?.lastMs ?? 0;
    let last = Math.max(state?.last ?? 0, handle.deletedAt);
    // Chunks before the checkpointed active one were fsync'd and checked when
    // they closed: their sizes are checked against what lmdb recorded; the
    // rest is read and checked record by record from the checkpointed position.
    const validateFrom = this.validationStart(files, state);
    const chunks: Chunk[] = [];
    let repaired = false;
    let chunkLast = last;
    for (let index = 0; index < files.length; index++) {
      const file = files[index]!;
      if (index < validateFrom.index) {
        chunks.push(this.checkClosedChunk(handle, file));
        continue;
      }
      const resume = index === validateFrom.index && file.bytes >= validateFrom.offset && validateFrom.offset > 0;
      const offset = resume ? validateFrom.offset : 0;
      const expected = resume ? validateFrom.expected : file.firstSeq;
      if (file.bytes === offset) {
        chunks.push({ firstSeq: file.firstSeq, bytes: file.bytes, lastMs: state?.lastMs, index: undefined });
        chunkLast = expected - 1;
        last = Math.max(last, chunkLast);
        continue;
      }
      const isLast = index === files.length - 1;
      const maxSeq = isLast ? Number.MAX_SAFE_INTEGER : files[index + 1]!.firstSeq - 1;
      const scan = scanChunkRecords(readFileFrom(handle.chunkPath(file.firstSeq), offset), expected - 1, maxSeq);
      for (const range of scan.missing) this.host.reportDamage(handle, range, 'damaged in its chunk file');
      let bytes = file.bytes;
      if (scan.damagedEnd && isLast) {
        // A torn tail after the last intact record of the stream (a write the crash cut short): cut it.
        this.host.logger.warn({ bucket: handle.bucket, stream: handle.stream, chunk: file.firstSeq, start: offset + scan.goodBytes, end: file.bytes }, 'chunk: cutting a torn tail');
        bytes = offset + scan.goodBytes;
        if (bytes === 0) fs.rmSync(handle.chunkPath(file.firstSeq), { force: true });
        else fs.truncateSync(handle.chunkPath(file.firstSeq), bytes);
        repaired = true;
      }
      const lastRecord = scan.records[scan.records.length - 1];
      if (bytes > 0) chunks.push({ firstSeq: file.firstSeq, bytes, lastMs: lastRecord?.t ?? state?.lastMs, index: undefined });
      if (lastRecord !== undefined) {
        chunkLast = lastRecord.seq;
        last = Math.max(last, chunkLast);
        handle.lastMs = Math.max(handle.lastMs, lastRecord.t);
      } else if (bytes > 0) {
        chunkLast = expected - 1;
      }
      if (!isLast && scan.damagedEnd) last = Math.max(last, maxSeq);
    }
    handle.chunks = chunks;
    handle.last = last;
    handle.durableLast = last;
    this.host.refreshPolicy(handle);
    const active = handle.active;
    handle.activeLast = active ? chunkLast : last;
    if (active && chunkLast < last) {
      // Checkpointed records are gone (the disk lost fsync'd data). Their
      // seqnums are not handed out again: a reader may have seen them.
      this.host.reportDamage(handle, { from: chunkLast + 1, to: last }, 'checkpointed entries missing from the chunk files');
    }
    handle.activeCount = active ? Math.max(0, handle.activeLast - active.firstSeq + 1) : 0;
    handle.activeFirstMs = undefined;
    if (repaired) {
      // The next checkpoint records the repaired state, so later opens need not check again.
      this.host.markDirty(handle, active ? handle.chunkPath(active.firstSeq) : undefined);
    }
  }

  /**
   * A closed chunk as lmdb recorded it when it closed: a file shorter than
   * that lost entries (reported, with their seqnums); reads step over them.
   */
  private checkClosedChunk(handle: StreamHandle, file: { firstSeq: number; bytes: number }): Chunk {
    const summary = this.host.meta.chunks.get([handle.bucket, handle.stream, file.firstSeq]) as ChunkSummaryValue | undefined;
    if (summary !== undefined && file.bytes < summary.bytes) {
      const scan = scanChunkRecords(readFileFrom(handle.chunkPath(file.firstSeq), 0), file.firstSeq - 1, summary.lastSeq);
      const missing = scan.missing.length > 0 ? scan.missing : [{ from: file.firstSeq, to: summary.lastSeq }];
      for (const range of missing) this.host.reportDamage(handle, range, `chunk file truncated (${file.bytes} of ${summary.bytes} bytes)`);
    }
    const bytes = summary !== undefined && file.bytes > summary.bytes ? summary.bytes : file.bytes;
    return { firstSeq: file.firstSeq, bytes, lastMs: summary?.lastMs, index: undefined };
  }

  /**
   * Same boot as the crashed run (the OS did not crash, so the page cache
   * kept every write that returned): what the chunks hold past the
   * checkpoint is a byte-for-byte prefix of the stream's records in the log.
   * Replay walks the log's record headers against the chunk sizes instead of
   * reading and checking the chunk data, and writes only the missing suffix.
   */
  loadForTrustedReplay(handle: StreamHandle, state: StreamState): void {
    const files = listChunkFiles(handle.directory);
    handle.deletedAt = state.deletedAt;
    handle.lastMs = state.lastMs;
    const activeIndex = state.activeFirst === null ? -1 : files.findIndex((file) => file.firstSeq === state.activeFirst);
    if (state.activeFirst !== null && (activeIndex < 0 || files[activeIndex]!.bytes < state.activeBytes)) {
      // The checkpointed chunk is gone or short: not the simple case; check it the slow way.
      this.resetToCheckpoint(handle, state);
      this.load(handle, state);
      return;
    }
    const confirmedFiles = activeIndex < 0 ? [] : files.slice(0, activeIndex + 1);
    handle.chunks = confirmedFiles.map((file, index) => ({
      firstSeq: file.firstSeq,
      bytes: index === activeIndex ? state.activeBytes : file.bytes,
      lastMs: index === activeIndex ? state.lastMs : this.closedChunkLastMs(handle, file.firstSeq),
      index: undefined,
    }));
    const last = Math.max(state.last, state.deletedAt);
    handle.last = last;
    handle.durableLast = last;
    handle.activeLast = state.activeFirst === null ? last : state.activeLast;
    handle.activeCount = state.activeFirst === null ? 0 : Math.max(0, state.activeLast - state.activeFirst + 1);
    this.host.refreshPolicy(handle);
    const pending = activeIndex < 0 ? files.filter((file) => file.firstSeq > last) : files.slice(activeIndex + 1);
    const remaining = activeIndex < 0 ? 0 : files[activeIndex]!.bytes - state.activeBytes;
    handle.replay = { files: pending, remaining };
    for (const file of files) if (activeIndex < 0 && file.firstSeq <= last) fs.rmSync(handle.chunkPath(file.firstSeq), { force: true });
  }

  /** Confirms the records (from `offset`) that the chunk files already hold; returns the offset of the first one they do not. */
  confirmFromCursor(handle: StreamHandle, source: Buffer, offset: number): number {
    const cursor = handle.replay!;
    let position = offset;
    let lastConfirmed = -1;
    let ended = false;
    while (position < source.length) {
      const bytes = recordBytesAt(source, position);
      const seq = recordSeqAt(source, position);
      if (cursor.remaining === 0 && cursor.files.length > 0 && cursor.files[0]!.firstSeq === seq) {
        const file = cursor.files.shift()!;
        handle.chunks.push({ firstSeq: file.firstSeq, bytes: 0, lastMs: undefined, index: undefined });
        handle.activeCount = 0;
        cursor.remaining = file.bytes;
      }
      if (cursor.remaining < bytes || handle.chunks.length === 0) {
        ended = true;
        break;
      }
      handle.active!.bytes += bytes;
      cursor.remaining -= bytes;
      handle.durableLast = seq;
      handle.last = seq;
      handle.activeLast = seq;
      handle.activeCount++;
      lastConfirmed = position;
      position += bytes;
    }
    if (lastConfirmed >= 0) {
      const lastMs = peekRecord(source, lastConfirmed)!.t;
      handle.lastMs = Math.max(handle.lastMs, lastMs);
      handle.active!.lastMs = lastMs;
      this.host.markDirty(handle, handle.chunkPath(handle.active!.firstSeq));
    }
    if (ended) this.endReplayCursor(handle);
    return position;
  }

  /**
   * The intact records a trusted replay's chunk files hold past what the
   * log confirmed (read before they are cut: a damaged log may have lost
   * their frames).
   */
  readUnconfirmed(handle: StreamHandle): DecodedRecord[] {
    const cursor = handle.replay!;
    const active = handle.active;
    const records: DecodedRecord[] = [];
    let previous = handle.durableLast;
    const collect = (file: string, offset: number) => {
      for (const record of scanChunkRecords(readFileFrom(file, offset), previous, Number.MAX_SAFE_INTEGER).records) {
        records.push(record);
        previous = record.seq;
      }
    };
    if (active !== undefined && cursor.remaining > 0) collect(handle.chunkPath(active.firstSeq), active.bytes);
    for (const file of cursor.files) collect(handle.chunkPath(file.firstSeq), 0);
    return records;
  }

  /** The intact records past a stream's checkpoint, read before resetToCheckpoint cuts them. */
  readPastCheckpoint(handle: StreamHandle, state: StreamState): DecodedRecord[] {
    const records: DecodedRecord[] = [];
    let previous = state.activeFirst === null ? state.last : state.activeLast;
    for (const file of listChunkFiles(handle.directory)) {
      let offset: number;
      if (state.activeFirst !== null && file.firstSeq === state.activeFirst) offset = state.activeBytes;
      else if (state.activeFirst === null || file.firstSeq > state.activeFirst) offset = 0;
      else continue;
      if (file.bytes <= offset) continue;
      for (const record of scanChunkRecords(readFileFrom(handle.chunkPath(file.firstSeq), offset), previous, Number.MAX_SAFE_INTEGER).records) {
        records.push(record);
        previous = record.seq;
      }
    }
    return records;
  }

  /** Ends a trusted replay: what the chunks hold past the confirmed records is cut away. */
  endReplayCursor(handle: StreamHandle): void {
    const cursor = handle.replay!;
    handle.replay = undefined;
    const active = handle.active;
    if (active !== undefined && cursor.remaining > 0) {
      this.host.logger.warn({ bucket: handle.bucket, stream: handle.stream, bytes: cursor.remaining }, 'recovery: cutting chunk bytes the commit log does not hold');
      fs.truncateSync(handle.chunkPath(active.firstSeq), active.bytes);
    }
    for (const file of cursor.files) fs.rmSync(handle.chunkPath(file.firstSeq), { force: true });
    this.host.markDirty(handle, active !== undefined ? handle.chunkPath(active.firstSeq) : undefined);
  }

  resetToCheckpoint(handle: StreamHandle, state: StreamState): void {
    for (const file of listChunkFiles(handle.directory)) {
      const chunkPath = handle.chunkPath(file.firstSeq);
      if (state.activeFirst === null || file.firstSeq > state.activeFirst) fs.rmSync(chunkPath, { force: true });
      else if (file.firstSeq === state.activeFirst && file.bytes > state.activeBytes) fs.truncateSync(chunkPath, state.activeBytes);
    }
  }

  /** Where a stream's chunks need checking after a restart: the checkpointed active chunk's end, or everything. */
  private validationStart(files: readonly { firstSeq: number; bytes: number }[], state: StreamState | undefined): { index: number; offset: number; expected: number } {
    if (state === undefined || state.activeFirst === null) return { index: 0, offset: 0, expected: 0 };
    const index = files.findIndex((file) => file.firstSeq === state.activeFirst);
    if (index >= 0) return { index, offset: state.activeBytes, expected: (state.activeLast ?? state.last) + 1 };
    // The checkpointed active chunk is gone (evicted since): check every later chunk.
    const later = files.findIndex((file) => file.firstSeq > state.activeFirst!);
    return { index: later < 0 ? files.length : later, offset: 0, expected: 0 };
  }

  private closedChunkLastMs(handle: StreamHandle, firstSeq: number): number | undefined {
    const summary = this.host.meta.chunks.get([handle.bucket, handle.stream, firstSeq]) as ChunkSummaryValue | undefined;
    return summary?.lastMs;
  }
}

function readFileFrom(file: string, offset: number): Buffer {
  try {
    const data = fs.readFileSync(file);
    return data.subarray(Math.min(offset, data.length));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw error;
  }
}
