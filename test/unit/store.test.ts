import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { IorioError } from '../../src/core/errors.js';
import { json, ManualClock, openTestStore, tempDir, type OpenedStore } from '../helpers/store.js';

const opened: OpenedStore[] = [];
const dirs: string[] = [];

async function open(overrides: Parameters<typeof openTestStore>[1] = {}, clock?: ManualClock, dir?: string): Promise<OpenedStore & { dir: string }> {
  const dataDir = dir ?? tempDir();
  if (!dir) dirs.push(dataDir);
  const result = await openTestStore(dataDir, overrides, clock);
  opened.push(result);
  return { ...result, dir: dataDir };
}

async function reopen(current: OpenedStore & { dir: string }, overrides: Parameters<typeof openTestStore>[1] = {}, clock?: ManualClock) {
  await current.close();
  opened.splice(opened.indexOf(current), 1);
  return open(overrides, clock, current.dir);
}

afterEach(async () => {
  for (const store of opened.splice(0)) await store.close().catch(() => undefined);
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const seqs = (entries: readonly { seq: number }[]) => entries.map((entry) => entry.seq);
const texts = (entries: readonly { payload: Buffer }[]) => entries.map((entry) => entry.payload.toString());

describe('appends and reads', () => {
  test('seqnums start at 1 and are gap-free; last N and N from S', async () => {
    const { store } = await open();
    const metas = [];
    for (let index = 0; index < 20; index++) metas.push(...(await store.append({ bucket: 'b', stream: 's', payloads: [json({ index })] })));
    expect(metas.map((meta) => meta.id)).toEqual(Array.from({ length: 20 }, (_, index) => index + 1));
    expect(seqs((await store.read('b', 's', { limit: 3 })).entries)).toEqual([18, 19, 20]);
    expect(texts((await store.read('b', 's', { limit: 2, from: 5 })).entries)).toEqual(['{"index":4}', '{"index":5}']);
    expect((await store.read('b', 's', { limit: 0 })).entries).toEqual([]);
    expect((await store.read('b', 's', { limit: 5, from: 21 })).entries).toEqual([]);
    expect(seqs((await store.read('b', 's', { limit: 5, from: 19 })).entries)).toEqual([19, 20]);
    expect(await store.read('b', 'unknown', { limit: 5 })).toEqual({ entries: [], first: 1, last: 0, truncated: false });
    expect(await store.lastSeq('b', 's')).toBe(20);
  });

  test('a batch gets contiguous seqnums, and concurrent appends never share one', async () => {
    const { store } = await open();
    const batch = await store.append({ bucket: 'b', stream: 's', payloads: [json(1), json(2), json(3)] });
    expect(batch.map((meta) => meta.id)).toEqual([1, 2, 3]);
    const results = await Promise.all(Array.from({ length: 200 }, (_, index) => store.append({ bucket: 'b', stream: 's', payloads: [json(index)] })));
    const ids = results.map((metas) => metas[0]!.id).sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: 200 }, (_, index) => index + 4));
  });

  test('reads older than the tail come from the chunks, across chunk boundaries', async () => {
    const { store } = await open({ 'channel.max_items': 5, 'storage.chunk.size': 4096 });
    for (let index = 1; index <= 300; index++) await store.append({ bucket: 'b', stream: 's', payloads: [json({ index, pad: 'x'.repeat(index % 50) })] });
    const before = store.stats().readsFromDisk;
    const result = await store.read('b', 's', { limit: 250, from: 7 });
    expect(seqs(result.entries)).toEqual(Array.from({ length: 250 }, (_, index) => index + 7));
    expect(JSON.parse(result.entries[0]!.payload.toString()).index).toBe(7);
    expect(store.stats().readsFromDisk).toBe(before + 1);
    const tailReads = store.stats().readsFromTail;
    expect(seqs((await store.read('b', 's', { limit: 5 })).entries)).toEqual([296, 297, 298, 299, 300]);
    expect(store.stats().readsFromTail).toBe(tailReads + 1);
    const chunkFiles = fs.readdirSync(path.dirname(findChunk(store)!));
    expect(chunkFiles.length).toBeGreaterThan(3);
  });

  test('reads are capped at the read limit', async () => {
    const { store } = await open();
    await store.append({ bucket: 'b', stream: 's', payloads: Array.from({ length: 1500 }, (_, index) => json(index)) });
    expect((await store.read('b', 's', { limit: 5000, from: 1 })).entries).toHaveLength(1000);
  });

  test('a conditional append checks the last seqnum and writes nothing on conflict', async () => {
    const { store } = await open();
    await store.append({ bucket: 'b', stream: 's', payloads: [json('first')], expectSeq: 0 });
    const conflict = await store.append({ bucket: 'b', stream: 's', payloads: [json('x')], expectSeq: 0 }).catch((error) => error);
    expect(conflict).toBeInstanceOf(IorioError);
    expect(conflict.code).toBe('conflict');
    expect(conflict.details).toEqual({ expected: 0, got: 1 });
    await store.append({ bucket: 'b', stream: 's', payloads: [json('second')], expectSeq: 1 });
    expect(texts((await store.read('b', 's', { limit: 10, from: 1 })).entries)).toEqual(['"first"', '"second"']);
  });

  test('an atomic append to a stream and its patch log writes both or neither', async () => {
    const { store } = await open();
    await store.append({ bucket: 'b', stream: 'doc', payloads: [json({ v: 1 })] });
    const metas = await store.appendAtomic([
      { bucket: 'b', stream: 'doc', payloads: [json({ v: 2 })], expectSeq: 1 },
      { bucket: 'b', stream: 'doc-$patch', payloads: [json([{ op: 'replace', path: '/v', value: 2 }])] },
    ]);
    expect(metas.map((list) => list[0]!.id)).toEqual([2, 1]);
    const conflict = await store
      .appendAtomic([
        { bucket: 'b', stream: 'doc', payloads: [json({ v: 3 })], expectSeq: 1 },
        { bucket: 'b', stream: 'doc-$patch', payloads: [json([])] },
      ])
      .catch((error) => error);
    expect(conflict.code).toBe('conflict');
    expect(await store.lastSeq('b', 'doc')).toBe(2);
    expect(await store.lastSeq('b', 'doc-$patch')).toBe(1);
  });

  test('an entry over the payload limit is refused', async () => {
    const { store } = await open();
    const error = await store.append({ bucket: 'b', stream: 's', payloads: [Buffer.alloc(17 * 1024 * 1024, 0x31)] }).catch((caught) => caught);
    expect(error.code).toBe('too-large');
    expect(await store.lastSeq('b', 's')).toBe(0);
  });

  test('listeners get each durable batch in seqnum order', async () => {
    const { store } = await open();
    const seen: number[] = [];
    const unsubscribe = store.subscribe('b', 's', (entries) => seen.push(...seqs(entries)));
    await Promise.all(Array.from({ length: 50 }, (_, index) => store.append({ bucket: 'b', stream: 's', payloads: [json(index), json(index)] })));
    expect(seen).toEqual(Array.from({ length: 100 }, (_, index) => index + 1));
    unsubscribe();
    await store.append({ bucket: 'b', stream: 's', payloads: [json('after')] });
    expect(seen).toHaveLength(100);
  });
});

describe('durability and restarts', () => {
  test('seqnums go on after a restart', async () => {
    let current = await open();
    await current.store.append({ bucket: 'b', stream: 's', payloads: [json(1), json(2)] });
    current = await reopen(current);
    expect((await current.store.append({ bucket: 'b', stream: 's', payloads: [json(3)] }))[0]!.id).toBe(3);
    expect(texts((await current.store.read('b', 's', { limit: 3, from: 1 })).entries)).toEqual(['1', '2', '3']);
  });

  test('group commit: 1,000 concurrent appends to 1,000 streams take a handful of fsyncs', async () => {
    const { store } = await open({ 'storage.sync': 'always' });
    const flushes = store.stats().logFlushes;
    await Promise.all(Array.from({ length: 1000 }, (_, index) => store.append({ bucket: 'b', stream: `s${index}`, payloads: [json(index)] })));
    const used = store.stats().logFlushes - flushes;
    expect(used).toBeGreaterThan(0);
    expect(used).toBeLessThanOrEqual(5);
  });

  test('checkpoints keep the commit log bounded', async () => {
    const { store, dir } = await open({ 'storage.checkpoint.log_size': '64KB', 'storage.checkpoint.interval': '24h' });
    let largest = 0;
    for (let round = 0; round < 60; round++) {
      await Promise.all(Array.from({ length: 20 }, (_, index) => store.append({ bucket: 'b', stream: `s${index}`, payloads: [json({ round, pad: 'y'.repeat(200) })] })));
      await new Promise((resolve) => setImmediate(resolve));
      largest = Math.max(largest, directoryBytes(path.join(dir, 'commitlog')));
    }
    await store.checkpoint();
    expect(store.stats().checkpoints).toBeGreaterThan(3);
    expect(largest).toBeLessThan(1024 * 1024);
    expect(directoryBytes(path.join(dir, 'commitlog'))).toBeLessThan(64 * 1024);
  });

  test('a checkpoint completes while appends never pause', async () => {
    const { store, dir } = await open({ 'storage.checkpoint.log_size': '1GB', 'storage.checkpoint.interval': '24h' });
    const segmentsBefore = fs.readdirSync(path.join(dir, 'commitlog'));
    let done = false;
    const checkpoint = store.checkpoint().then(() => (done = true));
    const flushesAtStart = store.stats().logFlushes;
    const outstanding: Promise<unknown>[] = [];
    let turn = 0;
    // Open loop: a new append arrives every turn of the event loop, so the log
    // is never idle. The checkpoint must not wait for an idle moment; it gets
    // 200 log flushes to finish.
    while (!done && store.stats().logFlushes - flushesAtStart < 200) {
      outstanding.push(store.append({ bucket: 'b', stream: `s${turn % 5}`, payloads: [json({ turn })] }));
      await new Promise((resolve) => setImmediate(resolve));
      turn++;
    }
    await Promise.all(outstanding);
    expect(done).toBe(true);
    await checkpoint;
    expect(fs.readdirSync(path.join(dir, 'commitlog')).some((name) => segmentsBefore.includes(name))).toBe(false);
  });

  test('deleting a stream removes its files; its seqnums never restart', async () => {
    let current = await open();
    await current.store.append({ bucket: 'b', stream: 's', payloads: [json(1), json(2)] });
    await current.store.append({ bucket: 'b', stream: 'other', payloads: [json(1)] });
    await current.store.checkpoint();
    const folder = path.dirname(walk(path.join(current.dir, 'vnodes')).find((file) => file.includes(`${path.sep}s${path.sep}`))!);
    expect(fs.readdirSync(folder)).toHaveLength(1);
    await current.store.deleteStream('b', 's');
    expect(fs.existsSync(folder)).toBe(false);
    expect((await current.store.listStreams('b')).names).toEqual(['other']);
    expect((await current.store.read('b', 's', { limit: 10, from: 1 })).entries).toEqual([]);
    current = await reopen(current);
    expect((await current.store.listStreams('b')).names).toEqual(['other']);
    expect((await current.store.append({ bucket: 'b', stream: 's', payloads: [json(3)] }))[0]!.id).toBe(3);
    expect((await current.store.listStreams('b')).names).toEqual(['other', 's']);
    current = await reopen(current);
    expect(seqs((await current.store.read('b', 's', { limit: 10, from: 1 })).entries)).toEqual([3]);
  });

  test('no bucket or stream name reaches outside its folder', async () => {
    const { store, dir } = await open();
    for (const [bucket, stream] of [
      ['..', '..'],
      ['../../escape', 'x'],
      ['b', '../../../../escape'],
      ['a/b', 'c\u0000d'],
      ['%2e%2e', '.'],
    ] as const) {
      await store.append({ bucket, stream, payloads: [json(1)] });
      expect(seqs((await store.read(bucket, stream, { limit: 1 })).entries)).toEqual([1]);
    }
    await store.checkpoint();
    const outside = fs.readdirSync(path.dirname(dir)).filter((name) => name.includes('escape'));
    expect(outside).toEqual([]);
    for (const file of walk(dir)) expect(path.relative(dir, file).startsWith('..')).toBe(false);
    expect(walk(path.join(dir, 'vnodes')).filter((file) => file.endsWith('.chunk'))).toHaveLength(5);
  });
});

describe('eviction', () => {
  test('by count: keeps at least the last N entries; seqnums keep counting', async () => {
    const clock = new ManualClock();
    let current = await open({ 'eviction.interval': '24h' }, clock);
    await current.store.setPolicy('b', 's', { max_count: 20 });
    for (let index = 1; index <= 200; index++) await current.store.append({ bucket: 'b', stream: 's', payloads: [json(index)] });
    await current.store.runEviction();
    const result = await current.store.read('b', 's', { limit: 1000, from: 1 });
    expect(result.truncated).toBe(true);
    expect(result.entries.length).toBeGreaterThanOrEqual(20);
    expect(result.entries.length).toBeLessThanOrEqual(25);
    expect(result.first).toBe(result.entries[0]!.seq);
    expect(result.entries[result.entries.length - 1]!.seq).toBe(200);
    expect(current.store.stats().evictedChunks).toBeGreaterThan(0);
    expect(current.store.stats().evictedBytes).toBeGreaterThan(0);
    current = await reopen(current, { 'eviction.interval': '24h' }, clock);
    expect((await current.store.append({ bucket: 'b', stream: 's', payloads: [json(201)] }))[0]!.id).toBe(201);
    const after = await current.store.read('b', 's', { limit: 1000, from: 1 });
    expect(after.first).toBeGreaterThan(1);
    expect(seqs(after.entries)).toEqual(Array.from({ length: 201 - after.first + 1 }, (_, index) => after.first + index));
  });

  test('by bytes: keeps at least max_bytes of the newest data, deletes the rest', async () => {
    const { store } = await open({ 'eviction.interval': '24h' });
    await store.setPolicy('b', '', { max_bytes: 16 * 1024 });
    for (let index = 1; index <= 400; index++) await store.append({ bucket: 'b', stream: 'inherits', payloads: [json({ index, pad: 'z'.repeat(200) })] });
    const result = await store.read('b', 'inherits', { limit: 1000, from: 1 });
    const keptBytes = result.entries.reduce((sum, entry) => sum + entry.payload.length + 28, 0);
    expect(keptBytes).toBeGreaterThanOrEqual(16 * 1024);
    expect(keptBytes).toBeLessThan(16 * 1024 * 2);
    expect(result.entries[result.entries.length - 1]!.seq).toBe(400);
  });

  test('by age (injected clock): chunks whose newest entry is too old go, on the timer pass', async () => {
    const clock = new ManualClock();
    const { store } = await open({ 'eviction.interval': '24h' }, clock);
    await store.setPolicy('b', 's', { max_age_secs: 60 });
    for (let index = 1; index <= 100; index++) {
      await store.append({ bucket: 'b', stream: 's', payloads: [json(index)] });
      clock.advance(1000);
    }
    await store.runEviction();
    const kept = await store.read('b', 's', { limit: 1000, from: 1 });
    const oldestAllowed = clock.now() - 60_000;
    expect(kept.first).toBeGreaterThan(1);
    // Every chunk kept holds an entry newer than the limit; nothing newer was deleted.
    expect(kept.entries[0]!.t).toBeGreaterThanOrEqual(oldestAllowed - 60_000 / 4 - 1000);
    expect(kept.entries.filter((entry) => entry.t >= oldestAllowed)).toHaveLength(kept.entries.filter((entry) => entry.t >= oldestAllowed).length);
    expect(kept.entries.length).toBeGreaterThanOrEqual(60);
    clock.advance(10 * 60_000);
    await store.runEviction();
    const later = await store.read('b', 's', { limit: 1000, from: 1 });
    expect(later.entries.length).toBeLessThan(kept.entries.length);
    expect(later.entries[later.entries.length - 1]!.seq).toBe(100);
    expect((await store.append({ bucket: 'b', stream: 's', payloads: [json('new')] }))[0]!.id).toBe(101);
  });

  test('seqnums never restart even when every closed chunk was evicted', async () => {
    const clock = new ManualClock();
    let current = await open({ 'eviction.interval': '24h' }, clock);
    await current.store.setPolicy('b', 's', { max_count: 1 });
    for (let index = 1; index <= 50; index++) await current.store.append({ bucket: 'b', stream: 's', payloads: [json(index)] });
    current = await reopen(current, { 'eviction.interval': '24h' }, clock);
    const result = await current.store.read('b', 's', { limit: 100, from: 1 });
    expect(seqs(result.entries)).toEqual([50]);
    expect(result.first).toBe(50);
    expect((await current.store.append({ bucket: 'b', stream: 's', payloads: [json(51)] }))[0]!.id).toBe(51);
  });

  test('a bucket size cap deletes the bucket\'s oldest chunks first', async () => {
    const clock = new ManualClock();
    const { store } = await open({ 'eviction.interval': '24h', 'eviction.bucket.size.max': '64KB', 'storage.chunk.size': '8KB' }, clock);
    for (let index = 1; index <= 300; index++) {
      for (const stream of ['a', 'b']) await store.append({ bucket: 'capped', stream, payloads: [json({ index, pad: 'p'.repeat(200) })] });
      clock.advance(10);
    }
    await store.append({ bucket: 'free', stream: 'x', payloads: [json(1)] });
    await store.runEviction();
    let total = 0;
    for (const stream of ['a', 'b']) {
      const result = await store.read('capped', stream, { limit: 1000, from: 1 });
      expect(result.truncated).toBe(true);
      expect(result.entries[result.entries.length - 1]!.seq).toBe(300);
      total += result.entries.reduce((sum, entry) => sum + entry.payload.length + 28, 0);
    }
    expect(total).toBeLessThanOrEqual(64 * 1024);
    expect((await store.read('free', 'x', { limit: 10, from: 1 })).entries).toHaveLength(1);
  });
});

describe('bounded resources', () => {
  test('20,000 streams written and read back with the fd cap at 256', async () => {
    const { store } = await open({ 'storage.files.max': 256, 'storage.streams.open.max': 2000, 'storage.sync': 'none' });
    const streams = 20_000;
    for (let start = 0; start < streams; start += 1000) {
      await Promise.all(
        Array.from({ length: 1000 }, (_, offset) => {
          const index = start + offset;
          return store.append({ bucket: `b${index % 10}`, stream: `s${index}`, payloads: [json({ index }), json({ index, second: true })] });
        }),
      );
      expect(store.stats().openFiles).toBeLessThanOrEqual(256);
    }
    await store.checkpoint();
    expect(store.stats().openFiles).toBeLessThanOrEqual(256);
    for (let index = 0; index < streams; index += 7) {
      const result = await store.read(`b${index % 10}`, `s${index}`, { limit: 5, from: 1 });
      expect(texts(result.entries)).toEqual([JSON.stringify({ index }), JSON.stringify({ index, second: true })]);
    }
    expect(store.stats().openFiles).toBeLessThanOrEqual(256);
    expect(store.stats().openStreams).toBeLessThanOrEqual(2000);
    expect((await store.listStreams('b3')).names.length).toBe(2000);
  }, 120_000);
});

function findChunk(store: unknown): string | undefined {
  const dir = (store as { settings: { dataDir: string } }).settings.dataDir;
  return walk(path.join(dir, 'vnodes')).find((file) => file.endsWith('.chunk'));
}

function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(full));
    else out.push(full);
  }
  return out;
}

function directoryBytes(dir: string): number {
  return walk(dir).reduce((sum, file) => sum + fs.statSync(file).size, 0);
}
