/**
 * The node-wide commit log (write-ahead log): `<data>/commitlog/<segment id, 20 digits>.log`.
 * Frames (core/record.ts) are appended in order; a frame is acknowledged once
 * it is durable for the configured `storage.sync` mode:
 *
 * - always: written and fdatasync'd. Group commit: frames that arrive while a
 *   flush is in flight wait for the next flush, which takes them all, so one
 *   fdatasync covers every stream's appends of that moment.
 * - batch: written to the kernel (acknowledged then), fdatasync'd every
 *   `storage.sync.interval`.
 * - none: written to the kernel (acknowledged then); a process crash loses
 *   nothing, an OS crash may.
 *
 * Checkpoints (driven by the stream store) rotate to a new segment and delete
 * the segments before it once everything they hold is in fsync'd chunks.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { decodeFrame, encodeFramePieces, type FrameSection } from '../core/record.js';
import { commitLogFrameBytesMax } from '../core/limits.js';

export type SyncMode = 'always' | 'batch' | 'none';

export interface CommitLogOptions {
  readonly directory: string;
  readonly sync: SyncMode;
  readonly syncIntervalMs: number;
  /** A segment rolls over past this size. */
  readonly segmentBytesMax: number;
  readonly logger: Logger;
}

/** Called once the frame is durable (no argument) or can never be (the error). */
export type DurableCallback = (error?: Error) => void;

export interface ReplayStats {
  segments: number;
  frames: number;
  bytes: number;
  /** Byte ranges dropped because a frame was torn or corrupt. */
  dropped: { segment: string; start: number; end: number; reason: string }[];
}

const segmentPattern = /^(\d{20})\.log$/;

export function segmentName(id: number): string {
  return `${String(id).padStart(20, '0')}.log`;
}

export function listSegments(directory: string): number[] {
  if (!fs.existsSync(directory)) return [];
  return fs
    .readdirSync(directory)
    .map((name) => segmentPattern.exec(name))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => Number(match[1]))
    .sort((a, b) => a - b);
}

/**
 * Reads every frame of the segments with id >= `fromSegment`, in order, and
 * hands each to `onFrame`. A torn or corrupt frame ends its segment: the rest
 * of that segment is truncated away and reported.
 */
export function replayCommitLog(
  directory: string,
  fromSegment: number,
  onFrame: (sections: FrameSection[]) => void,
  logger: Logger,
): ReplayStats {
  const stats: ReplayStats = { segments: 0, frames: 0, bytes: 0, dropped: [] };
  for (const id of listSegments(directory)) {
    if (id < fromSegment) continue;
    const file = path.join(directory, segmentName(id));
    const data = fs.readFileSync(file);
    stats.segments++;
    let offset = 0;
    while (offset < data.length) {
      const result = decodeFrame(data, offset, commitLogFrameBytesMax);
      if (result.status !== 'ok') {
        stats.dropped.push({ segment: segmentName(id), start: offset, end: data.length, reason: result.status });
        logger.warn({ segment: segmentName(id), start: offset, end: data.length, reason: result.status }, 'commit log: dropping a torn or corrupt tail');
        fs.truncateSync(file, offset);
        break;
      }
      onFrame(result.sections);
      stats.frames++;
      offset += result.bytes;
    }
    stats.bytes += offset;
  }
  return stats;
}

export class CommitLog {
  private readonly options: CommitLogOptions;
  private segmentId: number;
  private fd: number;
  private segmentBytes = 0;
  /** Frames encoded but not yet written. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private pendingWaiters: DurableCallback[] = [];
  private flushing = false;
  private flushScheduled = false;
  private failure: Error | undefined;
  private batchTimer: NodeJS.Timeout | undefined;
  private unsyncedFds = new Set<number>();
  /** Bytes written since the last checkpoint rotation. */
  bytesSinceRotation = 0;
  flushes = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private rotationWaiters: { resolve(segment: number): void; reject(error: Error): void }[] = [];

  private constructor(options: CommitLogOptions, segmentId: number) {
    this.options = options;
    this.segmentId = segmentId;
    this.fd = this.openSegment(segmentId);
    if (options.sync === 'batch') {
      this.batchTimer = setInterval(() => this.syncUnsynced(), Math.max(1, options.syncIntervalMs));
      this.batchTimer.unref();
    }
  }

  /** Opens the log for appending into a fresh segment after `lastSegment`. */
  static open(options: CommitLogOptions, nextSegmentId: number): CommitLog {
    fs.mkdirSync(options.directory, { recursive: true });
    return new CommitLog(options, nextSegmentId);
  }

  get currentSegment(): number {
    return this.segmentId;
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  /**
   * Queues one frame; `onDurable` runs once it is durable per the sync mode.
   * Callbacks run synchronously in frame order, so whoever applies the frame
   * sees frames in the order they were logged.
   */
  append(sections: readonly FrameSection[], onDurable: DurableCallback): void {
    if (this.failure || this.closed) {
      const error = this.failure ?? new Error('commit log closed');
      queueMicrotask(() => onDurable(error));
      return;
    }
    const frame = encodeFramePieces(sections);
    for (const piece of frame.pieces) this.pending.push(piece);
    this.pendingBytes += frame.bytes;
    this.pendingWaiters.push(onDurable);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushing || this.flushScheduled) return;
    this.flushScheduled = true;
    // Let every append of this turn of the event loop join the batch.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.flushing || this.pending.length === 0) {
      if (!this.flushing) this.notifyIdle();
      return;
    }
    this.flushing = true;
    const frames = this.pending;
    const waiters = this.pendingWaiters;
    const bytes = this.pendingBytes;
    this.pending = [];
    this.pendingWaiters = [];
    this.pendingBytes = 0;
    try {
      writeAll(this.fd, frames, bytes);
    } catch (error) {
      this.fail(error as Error, waiters);
      return;
    }
    this.segmentBytes += bytes;
    this.bytesSinceRotation += bytes;
    this.flushes++;
    const fd = this.fd;
    const retiring = this.segmentBytes >= this.options.segmentBytesMax;
    if (retiring) {
      this.segmentId++;
      this.fd = this.openSegment(this.segmentId);
    }
    if (this.options.sync !== 'always') {
      if (retiring) this.retire(fd);
      else if (this.options.sync === 'batch') this.unsyncedFds.add(fd);
      this.finishFlush(waiters);
      return;
    }
    fs.fdatasync(fd, (error) => {
      if (retiring) fs.close(fd, () => undefined);
      if (error) {
        this.fail(error, waiters);
        return;
      }
      this.finishFlush(waiters);
    });
  }

  private finishFlush(waiters: DurableCallback[]): void {
    this.flushing = false;
    for (const waiter of waiters) waiter();
    this.rotateNow();
    if (this.pending.length > 0) this.flush();
    else this.notifyIdle();
  }

  private fail(error: Error, waiters: DurableCallback[]): void {
    // A failed write or fsync leaves the log's state unknown (fsyncgate): stop
    // accepting appends; a restart recovers from what is really on disk.
    this.failure = error;
    this.flushing = false;
    this.options.logger.fatal({ err: error }, 'commit log write failed: appends refused until restart');
    for (const waiter of [...waiters, ...this.pendingWaiters]) waiter(error);
    this.pending = [];
    this.pendingWaiters = [];
    this.notifyIdle();
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Resolves when everything queued so far has been flushed (and synced, for `always`). */
  drain(): Promise<void> {
    if (!this.flushing && this.pending.length === 0 && !this.flushScheduled) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private openSegment(id: number): number {
    const file = path.join(this.options.directory, segmentName(id));
    const fd = fs.openSync(file, 'a');
    this.segmentBytes = fs.fstatSync(fd).size;
    return fd;
  }

  /** Syncs and closes a segment that is no longer written (batch and none modes). */
  private retire(fd: number): void {
    this.unsyncedFds.delete(fd);
    fs.fdatasync(fd, (error) => {
      fs.close(fd, () => undefined);
      if (error) this.fail(error, []);
    });
  }

  private syncUnsynced(): void {
    for (const fd of this.unsyncedFds) {
      this.unsyncedFds.delete(fd);
      fs.fdatasync(fd, (error) => {
        if (error) this.fail(error, []);
      });
    }
  }

  /**
   * Checkpoint support: waits until everything queued is written, starts a
   * new segment, syncs the old one, and returns the new segment's id. Frames
   * appended after this call land in the new segment.
   */
  rotate(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.rotationWaiters.push({ resolve, reject });
      // Between flushes every logged frame is durable; rotate right there
      // (under steady load the log is never idle, so waiting for idle would starve).
      if (!this.flushing) this.rotateNow();
    });
  }

  private rotateNow(): void {
    const waiters = this.rotationWaiters;
    if (waiters.length === 0) return;
    this.rotationWaiters = [];
    const old = this.fd;
    this.segmentId++;
    this.fd = this.openSegment(this.segmentId);
    this.bytesSinceRotation = 0;
    this.unsyncedFds.delete(old);
    const id = this.segmentId;
    fs.fdatasync(old, (error) => {
      fs.close(old, () => undefined);
      if (error) {
        this.fail(error, []);
        for (const waiter of waiters) waiter.reject(error);
      } else {
        for (const waiter of waiters) waiter.resolve(id);
      }
    });
  }

  /** Deletes every segment before `segmentId`. */
  deleteBefore(segmentId: number): number {
    let deleted = 0;
    for (const id of listSegments(this.options.directory)) {
      if (id >= segmentId) break;
      fs.rmSync(path.join(this.options.directory, segmentName(id)), { force: true });
      deleted++;
    }
    return deleted;
  }

  async close(): Promise<void> {
    await this.drain();
    this.closed = true;
    if (this.batchTimer) clearInterval(this.batchTimer);
    if (!this.failure) fs.fdatasyncSync(this.fd);
    fs.closeSync(this.fd);
  }
}

/** Writes the buffers back to back: writev, in slices of the kernel's IOV_MAX. */
function writeAll(fd: number, buffers: Buffer[], bytes: number): void {
  const iovMax = 1024;
  let written = 0;
  for (let start = 0; start < buffers.length; start += iovMax) {
    const slice = buffers.slice(start, start + iovMax);
    let sliceBytes = 0;
    for (const buffer of slice) sliceBytes += buffer.length;
    const done = fs.writevSync(fd, slice);
    if (done < sliceBytes) {
      // A short write (rare: a signal, a full disk): write the rest plainly.
      const rest = Buffer.concat(slice, sliceBytes).subarray(done);
      let offset = 0;
      while (offset < rest.length) offset += fs.writeSync(fd, rest, offset, rest.length - offset);
    }
    written += sliceBytes;
  }
  if (written !== bytes) throw new Error(`commit log: wrote ${written} bytes, expected ${bytes}`);
}
