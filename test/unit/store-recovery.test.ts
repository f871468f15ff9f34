import fs from 'node:fs';
import { decodeFrame, FrameOp } from '../../src/core/record.js';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { recordHeaderBytes } from '../../src/core/record.js';
import { mulberry32 } from '../helpers/clock.js';
import { json, openTestStore, tempDir } from '../helpers/store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function newDir(): string {
  const dir = tempDir();
  dirs.push(dir);
  return dir;
}

function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? walk(full) : [full];
  });
}

const chunksOf = (dir: string) => walk(path.join(dir, 'vnodes')).filter((file) => file.endsWith('.chunk')).sort();


describe('chunk recovery', () => {
  test('a chunk cut at any byte reopens with every complete record and nothing else', async () => {
    const dir = newDir();
    let opened = await openTestStore(dir);
    const payloads = Array.from({ length: 40 }, (_, index) => json({ index, pad: 'q'.repeat((index * 7) % 45) }));
    for (const payload of payloads) await opened.store.append({ bucket: 'b', stream: 's', payloads: [payload] });
    await opened.close();
    const [chunk] = chunksOf(dir);
    const original = fs.readFileSync(chunk!);
    const ends: number[] = [];
    let end = 0;
    for (const payload of payloads) ends.push((end += recordHeaderBytes + payload.length));
    expect(end).toBe(original.length);

    const random = mulberry32(20261121);
    const cuts = new Set<number>([0, original.length]);
    for (let cut = 0; cut < ends[2]!; cut++) cuts.add(cut);
    for (const boundary of ends) for (const delta of [-1, 0, 1]) cuts.add(Math.min(original.length, Math.max(0, boundary + delta)));
    while (cuts.size < 250) cuts.add(Math.floor(random() * original.length));
    // Cut short first, then longer: every file is a prefix of the same original.
    for (const cut of [...cuts].sort((a, b) => a - b)) {
      fs.writeFileSync(chunk!, original.subarray(0, cut));
      opened = await openTestStore(dir);
      const complete = ends.filter((recordEnd) => recordEnd <= cut).length;
      const result = await opened.store.read('b', 's', { limit: 1000, from: 1 });
      expect(result.entries.length, `cut at ${cut}`).toBe(complete);
      expect(result.entries.map((entry) => entry.payload.toString())).toEqual(payloads.slice(0, complete).map(String));
      const size = fs.existsSync(chunk!) ? fs.statSync(chunk!).size : 0;
      expect(size, `cut at ${cut} truncated to the last good record`).toBe(complete === 0 ? 0 : ends[complete - 1]);
      await opened.close();
    }
  }, 120_000);

  test('after an OS crash, a corrupt record in a chunk tail is cut there and the rest comes back from the log', async () => {
    const dir = newDir();
    const opened = await openTestStore(dir, { 'storage.checkpoint.interval': '24h', 'channel.max_items': 1 });
    const payload = (index: number) => json({ index: String(index).padStart(3, '0') });
    await opened.store.append({ bucket: 'b', stream: 's', payloads: [payload(1)] });
    await opened.store.checkpoint();
    for (let index = 2; index <= 20; index++) await opened.store.append({ bucket: 'b', stream: 's', payloads: [payload(index)] });
    await opened.store.read('b', 's', { limit: 1, from: 1 }); // flushes the chunk's write buffer
    const crashed = newDir();
    fs.cpSync(dir, crashed, { recursive: true });
    await opened.close();
    const [chunk] = chunksOf(crashed);
    const data = fs.readFileSync(chunk!);
    const recordBytes = recordHeaderBytes + payload(1).length;
    expect(data.length).toBe(20 * recordBytes);
    data[11 * recordBytes + recordHeaderBytes + 3]! ^= 0x20; // the 12th record's payload
    fs.writeFileSync(chunk!, data);
    // An OS crash: another boot, so the chunk data is checked, not trusted.
    const reopened = await openTestStore(crashed, {}, undefined, { bootId: 'another-boot' });
    const result = await reopened.store.read('b', 's', { limit: 100, from: 1 });
    expect(result.entries.map((entry) => entry.payload.toString())).toEqual(Array.from({ length: 20 }, (_, index) => payload(index + 1).toString()));
    expect((await reopened.store.append({ bucket: 'b', stream: 's', payloads: [json('next')] }))[0]!.id).toBe(21);
    await reopened.close();
  });

  test('a checkpointed entry lost from disk is not served and its seqnum is never handed out again', async () => {
    const dir = newDir();
    let opened = await openTestStore(dir);
    for (let index = 1; index <= 10; index++) await opened.store.append({ bucket: 'b', stream: 's', payloads: [json(index)] });
    await opened.close();
    const [chunk] = chunksOf(dir);
    fs.truncateSync(chunk!, fs.statSync(chunk!).size - 5);
    opened = await openTestStore(dir);
    expect((await opened.store.read('b', 's', { limit: 100, from: 1 })).entries.map((entry) => entry.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect((await opened.store.append({ bucket: 'b', stream: 's', payloads: [json(11)] }))[0]!.id).toBe(11);
    await opened.close();
    opened = await openTestStore(dir);
    expect((await opened.store.read('b', 's', { limit: 2, from: 11 })).entries.map((entry) => entry.seq)).toEqual([11]);
    expect((await opened.store.append({ bucket: 'b', stream: 's', payloads: [json(12)] }))[0]!.id).toBe(12);
    await opened.close();
  });

  test('a closed chunk cut to half: reads step over its lost entries to the next intact ones and say which are missing; reported once', async () => {
    const dir = newDir();
    const config = { 'storage.chunk.size': '4KB', 'channel.max_items': 1 } as const;
    let opened = await openTestStore(dir, config);
    for (let index = 1; index <= 400; index++) await opened.store.append({ bucket: 'b', stream: 's', payloads: [json({ index, pad: 'h'.repeat(40) })] });
    await opened.close();
    const chunks = chunksOf(dir).sort();
    const third = chunks[2]!;
    const firstSeq = Number(path.basename(third, '.chunk'));
    const lastSeq = Number(path.basename(chunks[3]!, '.chunk')) - 1;
    fs.truncateSync(third, Math.floor(fs.statSync(third).size / 2));
    opened = await openTestStore(dir, config);
    expect(await opened.store.closedChunksChecked).toBe(1);
    const [report] = opened.store.stats().damaged;
    expect(report).toMatchObject({ bucket: 'b', stream: 's', to: lastSeq });
    expect(report!.from).toBeGreaterThan(firstSeq);
    expect(report!.reason).toMatch(/^chunk file truncated/);
    const missing = { from: report!.from, to: lastSeq };
    const whole = await opened.store.read('b', 's', { limit: 1000, from: 1 });
    expect(whole.entries.map((entry) => entry.seq)).toEqual(Array.from({ length: 400 }, (_, index) => index + 1).filter((seq) => seq < missing.from || seq > missing.to));
    expect(whole.missing).toEqual([missing]);
    // From inside the lost range: the next intact entries, never an empty page.
    const inside = await opened.store.read('b', 's', { limit: 5, from: missing.from + 1 });
    expect(inside.entries.map((entry) => entry.seq)).toEqual([1, 2, 3, 4, 5].map((step) => lastSeq + step));
    expect(inside.missing).toEqual([{ from: missing.from + 1, to: lastSeq }]);
    expect(opened.store.stats().damagedRanges).toBe(1);
    expect((await opened.store.append({ bucket: 'b', stream: 's', payloads: [json('next')] }))[0]!.id).toBe(401);
    await opened.close();
  });

  test('a corrupt record in a closed chunk is stepped over on read and reported; the rest is served', async () => {
    const dir = newDir();
    let opened = await openTestStore(dir, { 'storage.chunk.size': '4KB', 'channel.max_items': 1 });
    for (let index = 1; index <= 200; index++) await opened.store.append({ bucket: 'b', stream: 's', payloads: [json({ index, pad: 'r'.repeat(40) })] });
    await opened.close();
    const [oldest] = chunksOf(dir);
    const data = fs.readFileSync(oldest!);
    data[recordHeaderBytes + 2]! ^= 0x01;
    fs.writeFileSync(oldest!, data);
    opened = await openTestStore(dir, { 'storage.chunk.size': '4KB', 'channel.max_items': 1 });
    const result = await opened.store.read('b', 's', { limit: 5, from: 1 });
    expect(result.entries.map((entry) => entry.seq)).toEqual([2, 3, 4, 5, 6]);
    expect(result.missing).toEqual([{ from: 1, to: 1 }]);
    expect(opened.store.stats().damaged).toEqual([{ bucket: 'b', stream: 's', from: 1, to: 1, reason: 'unreadable in its chunk file' }]);
    expect((await opened.store.read('b', 's', { limit: 5, from: 150 })).entries).toHaveLength(5);
    await opened.close();
  });
});

describe.each([
  ['a process crash (same boot: chunk data trusted up to its size)', 'test-boot'],
  ['an OS crash (another boot: chunk data checked)', 'another-boot'],
])('commit-log replay after %s', (_name, bootAfter) => {
  async function crashCopy(source: string): Promise<string> {
    const target = newDir();
    fs.cpSync(source, target, { recursive: true });
    return target;
  }

  async function writeWithoutCheckpoint(dir: string) {
    // A one-entry tail, so a read from seqnum 1 goes to the chunks and writes their buffers out.
    const opened = await openTestStore(dir, { 'storage.checkpoint.interval': '24h', 'storage.sync': 'always', 'channel.max_items': 1 }, undefined, {
      bootId: 'test-boot',
    });
    const acked: { stream: string; id: number; text: string }[] = [];
    await Promise.all(
      Array.from({ length: 30 }, async (_, stream) => {
        for (let index = 0; index < 20; index++) {
          const text = JSON.stringify({ stream, index });
          const [meta] = await opened.store.append({ bucket: 'b', stream: `s${stream}`, payloads: [Buffer.from(text)] });
          acked.push({ stream: `s${stream}`, id: meta!.id, text });
          // Half the streams have their first ten entries in the chunk files, the rest only in the log.
          if (index === 9 && stream % 2 === 0) await opened.store.read('b', `s${stream}`, { limit: 1, from: 1 });
        }
      }),
    );
    return { opened, acked };
  }

  async function expectAll(dir: string, acked: { stream: string; id: number; text: string }[]) {
    const opened = await openTestStore(dir, {}, undefined, { bootId: bootAfter });
    for (const stream of new Set(acked.map((entry) => entry.stream))) {
      const result = await opened.store.read('b', stream, { limit: 1000, from: 1 });
      const expected = acked.filter((entry) => entry.stream === stream).sort((a, b) => a.id - b.id);
      expect(result.entries.map((entry) => [entry.seq, entry.payload.toString()])).toEqual(expected.map((entry) => [entry.id, entry.text]));
      const [next] = await opened.store.append({ bucket: 'b', stream, payloads: [json('after')] });
      expect(next!.id).toBe(expected.length + 1);
    }
    await opened.close();
  }

  test('a crash before any checkpoint loses nothing acknowledged', async () => {
    const dir = newDir();
    const { opened, acked } = await writeWithoutCheckpoint(dir);
    const copy = await crashCopy(dir);
    await opened.close();
    await expectAll(copy, acked);
  });

  test('chunk data the OS never wrote is rebuilt from the commit log', async () => {
    const dir = newDir();
    const { opened, acked } = await writeWithoutCheckpoint(dir);
    const copy = await crashCopy(dir);
    await opened.close();
    for (const chunk of chunksOf(copy)) fs.rmSync(chunk);
    await expectAll(copy, acked);
  });

  test('a torn frame at the end of the log is dropped, the rest replayed', async () => {
    const dir = newDir();
    const { opened, acked } = await writeWithoutCheckpoint(dir);
    const copy = await crashCopy(dir);
    await opened.close();
    const segments = walk(path.join(copy, 'commitlog')).sort();
    const last = segments[segments.length - 1]!;
    fs.appendFileSync(last, Buffer.from([0x40, 0, 0, 0, 1, 2, 3, 4, 5, 6]));
    for (const chunk of chunksOf(copy)) fs.truncateSync(chunk, Math.floor(fs.statSync(chunk).size / 2));
    await expectAll(copy, acked);
  });

  test('a flipped bit in the middle of the commit log loses only entries of the damaged frame that no chunk file holds, and reports those', async () => {
    const dir = newDir();
    const { opened, acked } = await writeWithoutCheckpoint(dir);
    const crashed = await crashCopy(dir);
    await opened.close();
    const [segment] = walk(path.join(crashed, 'commitlog')).filter((file) => /\d{20}\.log$/.test(file)).sort();
    const segmentId = Number(path.basename(segment!, '.log'));
    const original = fs.readFileSync(segment!);
    // Frame boundaries, and the entries each frame holds.
    const frames: { start: number; end: number; entries: string[] }[] = [];
    for (let offset = 0; ; ) {
      const result = decodeFrame(original, offset, 1 << 30, segmentId);
      if (result.status !== 'ok') break;
      const entries = result.sections.flatMap((item) => (item.op === FrameOp.append ? [`${item.stream}:${item.records.readUInt32LE(8)}`] : []));
      frames.push({ start: offset, end: offset + result.bytes, entries });
      offset += result.bytes;
    }
    expect(frames.length).toBeGreaterThan(500);
    let salvaged = 0;
    let reported = 0;
    for (let sample = 1; sample <= 12; sample++) {
      const frame = frames[Math.floor((frames.length * sample) / 13)]!;
      const copy = await crashCopy(crashed);
      const damaged = Buffer.from(original);
      damaged[frame.start + 30 + (sample % 7)]! ^= 0x04;
      fs.writeFileSync(path.join(copy, 'commitlog', path.basename(segment!)), damaged);
      const reopened = await openTestStore(copy, {}, undefined, { bootId: bootAfter });
      const lost = new Set(reopened.store.stats().damaged.flatMap((report) => Array.from({ length: report.to - report.from + 1 }, (_, index) => `${report.stream}:${report.from + index}`)));
      for (const entry of lost) expect(frame.entries, `frame at byte ${frame.start}`).toContain(entry);
      // The first ten entries of even streams were written out to their chunk files before the crash: never lost.
      const heldByChunks = frame.entries.filter((entry) => Number(entry.split(':')[0]!.slice(1)) % 2 === 0 && Number(entry.split(':')[1]) <= 10);
      for (const entry of heldByChunks) expect(lost.has(entry), `${entry} is in a chunk file`).toBe(false);
      if (heldByChunks.length > 0) salvaged++;
      if (lost.size > 0) reported++;
      for (const stream of new Set(acked.map((entry) => entry.stream))) {
        const result = await reopened.store.read('b', stream, { limit: 1000, from: 1 });
        const expected = acked.filter((entry) => entry.stream === stream && !lost.has(`${stream}:${entry.id}`)).sort((a, b) => a.id - b.id);
        expect(result.entries.map((entry) => [entry.seq, entry.payload.toString()]), `frame at byte ${frame.start}`).toEqual(expected.map((entry) => [entry.id, entry.text]));
        if (expected.length < 20) expect(result.missing?.length).toBe(1);
        // Lost seqnums are never handed out again.
        const [next] = await reopened.store.append({ bucket: 'b', stream, payloads: [json('after')] });
        expect(next!.id).toBe(21);
      }
      await reopened.close();
    }
    // The samples cover both outcomes: entries found in chunk files, and entries lost and reported.
    expect(salvaged).toBeGreaterThan(0);
    expect(reported).toBeGreaterThan(0);
  });

  test('a chunk cut in the middle of a record is cut back to the last whole one, and the rest replayed', async () => {
    const dir = newDir();
    const { opened, acked } = await writeWithoutCheckpoint(dir);
    const copy = await crashCopy(dir);
    await opened.close();
    const chunks = chunksOf(copy);
    expect(chunks.length).toBe(15);
    for (const chunk of chunks) fs.truncateSync(chunk, fs.statSync(chunk).size - 7);
    await expectAll(copy, acked);
  });
});

describe('replay of a deleted and re-created stream', () => {
  test.each([
    ['same boot', 'test-boot'],
    ['another boot', 'another-boot'],
  ])('after a crash (%s), the entries written after the delete come back, the ones before stay deleted', async (_name, bootAfter) => {
    const dir = newDir();
    const opened = await openTestStore(dir, { 'storage.checkpoint.interval': '24h', 'channel.max_items': 1 }, undefined, { bootId: 'test-boot' });
    for (let index = 1; index <= 10; index++) await opened.store.append({ bucket: 'b', stream: 's', payloads: [json({ before: index })] });
    await opened.store.deleteStream('b', 's');
    for (let index = 11; index <= 20; index++) await opened.store.append({ bucket: 'b', stream: 's', payloads: [json({ after: index })] });
    await opened.store.read('b', 's', { limit: 1, from: 11 }); // the new chunk is on disk
    const crashed = newDir();
    fs.cpSync(dir, crashed, { recursive: true });
    await opened.close();
    const reopened = await openTestStore(crashed, {}, undefined, { bootId: bootAfter });
    const result = await reopened.store.read('b', 's', { limit: 100, from: 1 });
    expect(result.entries.map((entry) => entry.seq)).toEqual(Array.from({ length: 10 }, (_, index) => index + 11));
    expect(result.first).toBe(11);
    expect((await reopened.store.append({ bucket: 'b', stream: 's', payloads: [json('next')] }))[0]!.id).toBe(21);
    await reopened.close();
  });
});
