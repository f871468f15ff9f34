import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { encodeRecord, FrameOp, frameHeaderBytes, type FrameSection } from '../../src/core/record.js';
import { CommitLog, listSegments, replayCommitLog, segmentName, spareSegmentName, type SyncMode } from '../../src/store/commit-log.js';
import { silentLogger, tempDir } from '../helpers/store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function openLog(sync: SyncMode = 'always', preallocBytes = 8 * 1024 * 1024): { log: CommitLog; dir: string } {
  const dir = tempDir('iorio-log-');
  dirs.push(dir);
  const log = CommitLog.open({ directory: dir, sync, syncIntervalMs: 5, segmentBytesMax: 64 * 1024 * 1024, preallocBytes, logger: silentLogger }, 0);
  return { log, dir };
}

function section(stream: string, seq: number, bytes = 200): FrameSection {
  return { op: FrameOp.append, partition: 1, bucket: 'b', stream, records: encodeRecord(seq, 1000 + seq, 0, Buffer.from(JSON.stringify({ seq, pad: 'x'.repeat(bytes) }))) };
}

function append(log: CommitLog, sections: FrameSection[]): Promise<void> {
  return new Promise((resolve, reject) => log.append(sections, (error) => (error ? reject(error) : resolve())));
}

function replay(dir: string, from = 0) {
  const seen: string[] = [];
  const stats = replayCommitLog(dir, from, (sections) => seen.push(...sections.map((item) => `${item.stream}:${item.op === FrameOp.append ? item.records.readUInt32LE(8) : 'delete'}`)), silentLogger);
  return { seen, stats };
}

describe('commit log', () => {
  test('acknowledges frames in the order they were appended, whatever the batching', async () => {
    const { log } = openLog();
    const order: number[] = [];
    const pending: Promise<void>[] = [];
    for (let seq = 1; seq <= 500; seq++) {
      pending.push(append(log, [section('s', seq)]).then(() => void order.push(seq)));
      if (seq % 37 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(pending);
    expect(order).toEqual(Array.from({ length: 500 }, (_, index) => index + 1));
    expect(log.flushes).toBeLessThan(500);
    await log.close();
  });

  test('busy segments are preallocated, and replay stops cleanly at the zeros after the last frame', async () => {
    const { log, dir } = openLog();
    // Enough to fill the first (plain) segment and move into preallocated ones.
    for (let round = 0; round < 40; round++) {
      await Promise.all(Array.from({ length: 50 }, (_, index) => append(log, [section('s', round * 50 + index + 1, 1000)])));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await log.close();
    const segments = listSegments(dir);
    expect(segments.length).toBeGreaterThan(1);
    const sizes = segments.map((id) => fs.statSync(path.join(dir, segmentName(id))).size);
    // A preallocated segment keeps its full size, zeros after its last frame.
    expect(sizes.slice(1).every((size) => size >= 1024 * 1024)).toBe(true);
    const { seen, stats } = replay(dir);
    expect(seen).toHaveLength(2000);
    expect(seen[1999]).toBe('s:2000');
    expect(stats.damaged).toEqual([]);
    expect(stats.cut).toEqual([]);
  });

  test('a torn frame before the zeros of the newest segment is cut (ignored) and reported, the file left as it is', async () => {
    const { log, dir } = openLog();
    for (let round = 0; round < 30; round++) await Promise.all(Array.from({ length: 50 }, (_, index) => append(log, [section('s', round * 50 + index + 1, 1000)])));
    await log.close();
    const last = listSegments(dir).at(-1)!;
    const file = path.join(dir, segmentName(last));
    const before = replay(dir).seen.length;
    // Find the end of the frames (the first zero header) and write half a frame there.
    const data = fs.readFileSync(file);
    let end = 0;
    while (end + frameHeaderBytes <= data.length && data.readUInt32LE(end) !== 0) end += frameHeaderBytes + data.readUInt32LE(end);
    const torn = Buffer.alloc(40, 0x5a);
    torn.writeUInt32LE(500, 0);
    fs.writeFileSync(file, Buffer.concat([data.subarray(0, end), torn, data.subarray(end + torn.length)]));
    const damagedBytes = fs.readFileSync(file);
    const { seen, stats } = replay(dir);
    expect(seen).toHaveLength(before);
    expect(stats.damaged).toEqual([]);
    expect(stats.cut).toHaveLength(1);
    expect(stats.cut[0]!.start).toBe(end);
    expect(fs.readFileSync(file).equals(damagedBytes)).toBe(true);
  });

  test('rotate starts a new segment and resolves once everything before it is durable', async () => {
    const { log, dir } = openLog();
    await append(log, [section('s', 1)]);
    const acknowledged: number[] = [];
    const before = append(log, [section('s', 2)]).then(() => void acknowledged.push(2));
    await new Promise((resolve) => setImmediate(resolve)); // frame 2 is written, its sync in flight
    const queued = append(log, [section('s', 3)]); // still queued: it goes to the new segment
    const segment = await log.rotate();
    expect(acknowledged).toEqual([2]);
    await Promise.all([before, queued]);
    await append(log, [section('s', 4)]);
    expect(log.deleteBefore(segment)).toBeGreaterThan(0);
    await log.close();
    expect(replay(dir).seen).toEqual(['s:3', 's:4']);
  });

  test('a spare left by an earlier run is used as the next segment', async () => {
    const { log, dir } = openLog();
    for (let round = 0; round < 30; round++) await Promise.all(Array.from({ length: 50 }, (_, index) => append(log, [section('s', round * 50 + index + 1, 1000)])));
    await log.close();
    expect(fs.existsSync(path.join(dir, spareSegmentName))).toBe(true);
    const next = (listSegments(dir).at(-1) ?? 0) + 1;
    const reopened = CommitLog.open({ directory: dir, sync: 'always', syncIntervalMs: 5, segmentBytesMax: 64 * 1024 * 1024, preallocBytes: 8 * 1024 * 1024, logger: silentLogger }, next);
    expect(fs.existsSync(path.join(dir, spareSegmentName))).toBe(false);
    expect(fs.statSync(path.join(dir, segmentName(next))).size).toBeGreaterThanOrEqual(1024 * 1024);
    await append(reopened, [section('t', 1)]);
    await reopened.close();
    expect(replay(dir, next).seen).toEqual(['t:1']);
  });

  test('a checkpointed segment is recycled as the spare; its old frames are never replayed', async () => {
    const { log, dir } = openLog();
    for (let round = 0; round < 30; round++) await Promise.all(Array.from({ length: 50 }, (_, index) => append(log, [section('old', round * 50 + index + 1, 1000)])));
    // Use up the zero-filled spare, so the next one can only come from recycling.
    await log.spareSettled();
    const first = await log.rotate();
    const second = await log.rotate();
    expect(second).toBeGreaterThan(first);
    log.deleteBefore(second);
    expect(fs.existsSync(path.join(dir, spareSegmentName))).toBe(true);
    const third = await log.rotate(); // the recycled segment, full of old frames, becomes segment `third`
    await append(log, [section('new', 1)]);
    await log.close();
    expect(fs.statSync(path.join(dir, segmentName(third))).size).toBeGreaterThanOrEqual(1024 * 1024);
    const { seen, stats } = replay(dir, third);
    expect(seen).toEqual(['new:1']);
    expect(stats.damaged).toEqual([]);
    expect(stats.cut).toEqual([]);
  });

  test('without preallocation segments grow as written', async () => {
    const { log, dir } = openLog('none', 0);
    await append(log, [section('s', 1)]);
    await log.close();
    const [only] = listSegments(dir);
    expect(fs.statSync(path.join(dir, segmentName(only!))).size).toBeLessThan(1024);
    expect(fs.existsSync(path.join(dir, spareSegmentName))).toBe(false);
  });
});
