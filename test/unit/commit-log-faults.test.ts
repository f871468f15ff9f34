/**
 * The commit log under faults: damaged bytes on disk (bit flips, torn and
 * truncated segments) and system calls that fail or hang (fdatasync held
 * back or failing with EIO, writes meeting a full disk), through the log's
 * file-operations seam. What must hold: an append is acknowledged only once
 * the fdatasync of its own segment returned after its write; replay never
 * loses an intact frame and never changes a file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { StartupError } from '../../src/core/errors.js';
import { decodeFrame, encodeRecord, FrameOp, type FrameSection } from '../../src/core/record.js';
import { CommitLog, damagedSegmentsFolder, listSegments, nodeLogFileOps, replayCommitLog, segmentName, type LogFileOps } from '../../src/store/commit-log.js';
import { mulberry32 } from '../helpers/clock.js';
import { silentLogger, tempDir } from '../helpers/store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function newDir(): string {
  const dir = tempDir('iorio-logfault-');
  dirs.push(dir);
  return dir;
}

function openLog(dir: string, options: { files?: LogFileOps; segmentBytesMax?: number; preallocBytes?: number } = {}): CommitLog {
  return CommitLog.open(
    {
      directory: dir,
      sync: 'always',
      syncIntervalMs: 5,
      segmentBytesMax: options.segmentBytesMax ?? 64 * 1024 * 1024,
      preallocBytes: options.preallocBytes ?? 0,
      logger: silentLogger,
      ...(options.files ? { files: options.files } : {}),
    },
    0,
  );
}

function section(seq: number, padBytes = 60): FrameSection {
  return { op: FrameOp.append, partition: 1, bucket: 'b', stream: 's', records: encodeRecord(seq, 1000 + seq, 0, Buffer.from(JSON.stringify({ seq, pad: 'p'.repeat(padBytes) }))) };
}

function append(log: CommitLog, seq: number, padBytes?: number): Promise<void> {
  return new Promise((resolve, reject) => log.append([section(seq, padBytes)], (error) => (error ? reject(error) : resolve())));
}

function replay(dir: string, options: { acceptDamage?: boolean } = {}) {
  const seen: number[] = [];
  const stats = replayCommitLog(dir, 0, (sections) => {
    for (const item of sections) if (item.op === FrameOp.append) seen.push(item.records.readUInt32LE(8));
  }, silentLogger, options);
  return { seen, stats };
}

/** Where each frame of a segment starts and ends (the first is the segment-start frame). */
function frameBounds(file: string, id: number): { start: number; end: number; seq: number | undefined }[] {
  const data = fs.readFileSync(file);
  const bounds: { start: number; end: number; seq: number | undefined }[] = [];
  let offset = 0;
  for (;;) {
    const result = decodeFrame(data, offset, 1 << 30, id);
    if (result.status !== 'ok') return bounds;
    const first = result.sections[0];
    bounds.push({ start: offset, end: offset + result.bytes, seq: first?.op === FrameOp.append ? first.records.readUInt32LE(8) : undefined });
    offset += result.bytes;
  }
}

/** Seeded integers below a bound. */
class Prng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  below(bound: number): number {
    return Math.floor(this.next() * bound);
  }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, index) => from + index);

describe('commit-log replay of damaged segments', () => {
  test('a flipped bit anywhere in a segment with frames after it loses only the frame holding it, reported with its byte range; the file is not changed', async () => {
    const dir = newDir();
    const log = openLog(dir);
    for (let seq = 1; seq <= 400; seq++) await append(log, seq, seq % 50);
    // A second segment follows, so even the first segment's last frame has a recorded end.
    await log.rotate();
    await append(log, 401);
    await log.close();
    const file = path.join(dir, segmentName(0));
    const original = fs.readFileSync(file);
    const bounds = frameBounds(file, 0);
    expect(bounds).toHaveLength(401);
    const random = new Prng(7);
    const offsets = [...range(0, 40), ...Array.from({ length: 300 }, () => random.below(original.length)), original.length - 1];
    for (const offset of offsets) {
      const damaged = Buffer.from(original);
      damaged[offset]! ^= 1 << random.below(8);
      fs.writeFileSync(file, damaged);
      const hit = bounds.find((bound) => bound.start <= offset && offset < bound.end)!;
      const { seen, stats } = replay(dir);
      const expected = range(1, 401).filter((seq) => seq !== hit.seq);
      expect(seen, `bit flip at byte ${offset}`).toEqual(expected);
      expect(stats.damaged, `bit flip at byte ${offset}`).toHaveLength(1);
      expect(stats.damaged[0]!.start).toBe(hit.start);
      expect(stats.damaged[0]!.end).toBe(hit.end);
      expect(fs.readFileSync(file).equals(damaged)).toBe(true);
    }
    fs.writeFileSync(file, original);
  });

  test('the damaged last frame of the newest segment is a torn tail: cut (ignored), reported, the file left as it is', async () => {
    const dir = newDir();
    const log = openLog(dir);
    for (let seq = 1; seq <= 20; seq++) await append(log, seq);
    await log.close();
    const file = path.join(dir, segmentName(0));
    const last = frameBounds(file, 0).at(-1)!;
    const damaged = fs.readFileSync(file);
    damaged[last.end - 3]! ^= 0x10;
    fs.writeFileSync(file, damaged);
    const { seen, stats } = replay(dir);
    expect(seen).toEqual(range(1, 19));
    expect(stats.damaged).toEqual([]);
    expect(stats.cut).toEqual([{ segment: segmentName(0), start: last.start, end: damaged.length, reason: 'corrupt' }]);
    expect(fs.readFileSync(file).equals(damaged)).toBe(true);
  });

  test('every new segment starts by recording where the previous one ends, also after a size roll-over and a restart', async () => {
    const dir = newDir();
    let log = openLog(dir, { segmentBytesMax: 4096 });
    for (let seq = 1; seq <= 100; seq++) await append(log, seq);
    await log.close();
    const before = replay(dir);
    log = CommitLog.open({ directory: dir, sync: 'always', syncIntervalMs: 5, segmentBytesMax: 4096, preallocBytes: 0, logger: silentLogger, previousSegmentBytes: before.stats.lastSegmentBytes }, before.stats.lastSegment! + 1);
    await append(log, 101);
    await log.close();
    const ids = listSegments(dir);
    expect(ids.length).toBeGreaterThan(3);
    for (const id of ids.slice(1)) {
      const head = decodeFrame(fs.readFileSync(path.join(dir, segmentName(id))), 0, 1 << 30, id);
      const previous = frameBounds(path.join(dir, segmentName(id - 1)), id - 1);
      expect(head.status === 'ok' && head.previousSegmentBytes, `segment ${id}`).toBe(previous.at(-1)!.end);
    }
    expect(replay(dir).seen).toEqual(range(1, 101));
  });

  test('a segment file cut short of the end its successor recorded: the missing bytes are reported as damaged, later segments replay', async () => {
    const dir = newDir();
    const log = openLog(dir);
    for (let seq = 1; seq <= 30; seq++) await append(log, seq);
    await log.rotate();
    for (let seq = 31; seq <= 40; seq++) await append(log, seq);
    await log.close();
    const file = path.join(dir, segmentName(0));
    const bounds = frameBounds(file, 0);
    fs.truncateSync(file, bounds[25]!.start + 5);
    const { seen, stats } = replay(dir);
    expect(seen).toEqual([...range(1, 24), ...range(31, 40)]);
    expect(stats.damaged.map((item) => [item.start, item.end])).toEqual([[bounds[25]!.start, bounds.at(-1)!.end]]);
  });

  test('damage that cannot be decided (a segment tail and its successor\'s start frame) stops the start; accept_damage copies the segment aside and goes on', async () => {
    const dir = newDir();
    const log = openLog(dir);
    for (let seq = 1; seq <= 30; seq++) await append(log, seq);
    await log.rotate();
    for (let seq = 31; seq <= 40; seq++) await append(log, seq);
    await log.close();
    const first = path.join(dir, segmentName(0));
    const second = path.join(dir, segmentName(1));
    const last = frameBounds(first, 0).at(-1)!;
    const firstData = fs.readFileSync(first);
    firstData[last.start + 20]! ^= 0x01;
    fs.writeFileSync(first, firstData);
    const secondData = fs.readFileSync(second);
    secondData[14]! ^= 0x01;
    fs.writeFileSync(second, secondData);
    let error: unknown;
    try {
      replay(dir);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toContain(first);
    expect((error as Error).message).toContain(`from byte ${last.start}`);
    expect((error as Error).message).toContain('--storage.commitlog.accept_damage yes');
    const { seen, stats } = replay(dir, { acceptDamage: true });
    expect(seen).toEqual([...range(1, 29), ...range(31, 40)]);
    expect(stats.damaged.map((item) => item.segment)).toEqual([segmentName(0), segmentName(1)]);
    expect(fs.readFileSync(path.join(dir, damagedSegmentsFolder, segmentName(0))).equals(firstData)).toBe(true);
    expect(fs.readFileSync(first).equals(firstData)).toBe(true);
  });
});

/**
 * A file-operations seam that holds every fdatasync until the test releases
 * it, and records which writes each one can cover: a sync makes durable only
 * what was written to its own file before it was called.
 */
class HeldSyncs implements LogFileOps {
  readonly writes: { fd: number }[] = [];
  readonly held: { fd: number; writesBefore: number; callback: (error: NodeJS.ErrnoException | null) => void }[] = [];
  readonly completed: { fd: number; writesBefore: number }[] = [];

  writev(fd: number, buffers: Buffer[], position: number): number {
    this.writes.push({ fd });
    return nodeLogFileOps.writev(fd, buffers, position);
  }

  write(fd: number, buffer: Buffer, offset: number, length: number, position: number): number {
    return nodeLogFileOps.write(fd, buffer, offset, length, position);
  }

  fdatasync(fd: number, callback: (error: NodeJS.ErrnoException | null) => void): void {
    this.held.push({ fd, writesBefore: this.writes.length, callback });
  }

  /** Runs the real fdatasync of the held call at `index`, then answers it (with `error` instead, if given). */
  release(index: number, error?: NodeJS.ErrnoException): void {
    const [sync] = this.held.splice(index, 1);
    if (error === undefined) {
      fs.fdatasyncSync(sync!.fd);
      this.completed.push({ fd: sync!.fd, writesBefore: sync!.writesBefore });
    }
    sync!.callback(error ?? null);
  }

  /** Whether write number `writeIndex` is covered by a completed sync of its own file, called after it. */
  isDurable(writeIndex: number): boolean {
    const { fd } = this.writes[writeIndex]!;
    return this.completed.some((sync) => sync.fd === fd && sync.writesBefore > writeIndex);
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('commit-log acknowledgements (fdatasync seam)', () => {
  test.each([1, 2, 3, 4, 5])('seed %i: no append is acknowledged before the fdatasync of its own segment returns, across segment switches and rotations', async (seed) => {
    const dir = newDir();
    const files = new HeldSyncs();
    const log = openLog(dir, { files, segmentBytesMax: 2048 });
    const random = new Prng(seed);
    const violations: string[] = [];
    const acked = new Set<number>();
    const pending: Promise<void>[] = [];
    let seq = 0;
    for (let round = 0; round < 150; round++) {
      const action = random.below(10);
      if (action < 5) {
        const mine = ++seq;
        // This frame goes out in the first write after now (a flush writes everything queued).
        const writeIndex = files.writes.length;
        pending.push(
          append(log, mine, random.below(200)).then(() => {
            acked.add(mine);
            if (!files.isDurable(writeIndex)) violations.push(`seq ${mine} acknowledged before a sync of its segment covered write ${writeIndex}`);
          }),
        );
      } else if (action < 9 && files.held.length > 0) {
        files.release(random.below(files.held.length));
      } else if (action === 9) {
        pending.push(log.rotate().then(() => undefined));
      }
      await tick();
    }
    for (let spins = 0; spins < 10_000 && (files.held.length > 0 || acked.size < seq); spins++) {
      if (files.held.length > 0) files.release(random.below(files.held.length));
      await tick();
    }
    await Promise.all(pending);
    expect(violations).toEqual([]);
    expect(acked.size).toBe(seq);
    expect(new Set(files.writes.map((write) => write.fd)).size).toBeGreaterThan(2);
    const closing = log.close();
    for (let spins = 0; spins < 1000 && files.held.length > 0; spins++) {
      files.release(0);
      await tick();
    }
    await closing;
  });

  test('a lazy frame is acknowledged once written, in frame order behind a batch still syncing, and a rotation makes it durable', async () => {
    const dir = newDir();
    const files = new HeldSyncs();
    const log = openLog(dir, { files });
    const order: string[] = [];
    const durable = append(log, 1).then(() => order.push('durable 1'));
    await tick();
    expect(files.held.length, 'the durable frame waits for its fdatasync').toBe(1);
    const lazyAfter = new Promise<void>((resolve, reject) => log.append([section(2)], (error) => (error ? reject(error) : resolve()), true)).then(() => order.push('lazy 2'));
    await tick();
    await tick();
    expect(order, 'not before the batch ahead of it').toEqual([]);
    expect(files.held.length, 'a lazy-only batch starts no fdatasync').toBe(1);
    files.release(0);
    await Promise.all([durable, lazyAfter]);
    expect(order).toEqual(['durable 1', 'lazy 2']);
    // Nothing in flight: a lazy frame is answered on its write alone.
    const writeIndex = files.writes.length;
    await new Promise<void>((resolve, reject) => log.append([section(3)], (error) => (error ? reject(error) : resolve()), true));
    expect(files.isDurable(writeIndex)).toBe(false);
    // A rotation (a checkpoint's first step) syncs the segment it retires: the lazy frames are durable then.
    const rotated = log.rotate();
    for (let spins = 0; spins < 100 && files.held.length === 0; spins++) await tick();
    while (files.held.length > 0) files.release(0);
    await rotated;
    expect(files.isDurable(writeIndex)).toBe(true);
    const closing = log.close();
    for (let spins = 0; spins < 1000 && files.held.length > 0; spins++) {
      files.release(0);
      await tick();
    }
    await closing;
    expect(replay(dir).seen).toEqual([1, 2, 3]);
  });

  test('an EIO from fdatasync fails every waiting append, and the log refuses appends after it', async () => {
    const dir = newDir();
    const files = new HeldSyncs();
    const log = openLog(dir, { files });
    const outcomes: string[] = [];
    const attempts = Array.from({ length: 6 }, (_, index) =>
      append(log, index + 1).then(
        () => outcomes.push(`${index + 1}:ok`),
        (error: NodeJS.ErrnoException) => outcomes.push(`${index + 1}:${error.code}`),
      ),
    );
    await tick();
    await tick();
    expect(files.held.length).toBeGreaterThan(0);
    const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    files.release(0, eio);
    await Promise.all(attempts);
    expect(outcomes.sort()).toEqual(['1:EIO', '2:EIO', '3:EIO', '4:EIO', '5:EIO', '6:EIO']);
    expect(log.failed).toBe(eio);
    await expect(append(log, 7)).rejects.toBe(eio);
    await log.close();
  });

  test('a write that meets a full disk fails its batch alone: the partial bytes are zeroed and the next batch is written at the same offset', async () => {
    const dir = newDir();
    let full = false;
    const files: LogFileOps = {
      ...nodeLogFileOps,
      writev(fd, buffers, position) {
        if (!full) return nodeLogFileOps.writev(fd, buffers, position);
        // Half of the batch reaches the file, then the disk is full.
        const bytes = Buffer.concat(buffers);
        return fs.writeSync(fd, bytes, 0, Math.floor(bytes.length / 2), position);
      },
      write(fd, buffer, offset, length, position) {
        if (full && buffer.some((byte) => byte !== 0)) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        return nodeLogFileOps.write(fd, buffer, offset, length, position);
      },
    };
    const log = openLog(dir, { files });
    for (let seq = 1; seq <= 5; seq++) await append(log, seq);
    const file = path.join(dir, segmentName(0));
    const endBefore = frameBounds(file, 0).at(-1)!.end;
    full = true;
    const refused = await append(log, 6, 3000).catch((error: NodeJS.ErrnoException) => error.code);
    expect(refused).toBe('ENOSPC');
    const afterFailure = fs.readFileSync(file);
    expect(afterFailure.subarray(endBefore).every((byte) => byte === 0)).toBe(true);
    expect(log.failed).toBeUndefined();
    full = false;
    await append(log, 6);
    await append(log, 7);
    await log.close();
    expect(frameBounds(file, 0).at(-2)!.start).toBe(endBefore);
    expect(replay(dir).seen).toEqual(range(1, 7));
  });
});
