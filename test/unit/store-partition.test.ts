/**
 * The store's partition operations, which handoff is built on: a partition's
 * streams exported in bounded batches and imported elsewhere exactly as they
 * were (seqnums, timestamps, epochs, tombstones), a transfer resumed from
 * what the receiver holds (nothing written twice), and a partition dropped
 * once its new owner took over, durably (recovery drops it again).
 */
import fs from 'node:fs';
import { afterEach, describe, expect, test } from 'vitest';
import { partitionOf } from '../../src/core/hash.js';
import { json, openTestStore, tempDir, type OpenedStore } from '../helpers/store.js';

const dirs: string[] = [];
const opened: OpenedStore[] = [];
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close().catch(() => undefined);
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function open(dir?: string, overrides = {}): Promise<{ store: OpenedStore; dir: string }> {
  const folder = dir ?? tempDir('iorio-partition-');
  if (dir === undefined) dirs.push(folder);
  const store = await openTestStore(folder, { 'storage.chunk.size': '4KB', 'channel.max_items': 2, ...overrides });
  opened.push(store);
  return { store, dir: folder };
}

/** Streams of one partition (ring 64): names whose hash lands there. */
function streamsIn(partition: number, count: number): string[] {
  const names: string[] = [];
  for (let index = 0; names.length < count; index++) if (partitionOf('b', `s${index}`, 64) === partition) names.push(`s${index}`);
  return names;
}

/** Copies a whole partition from one store to another, batch by batch, resuming from what the target holds. */
async function transfer(source: OpenedStore, target: OpenedStore, partition: number, bytesMax = 2048): Promise<{ batches: number; bytes: number }> {
  const held = new Map(target.store.partitionStreams(partition).map((position) => [`${position.bucket}/${position.stream}`, position.last]));
  let batches = 0;
  let bytes = 0;
  for (const position of source.store.partitionStreams(partition)) {
    let after = held.get(`${position.bucket}/${position.stream}`) ?? 0;
    for (;;) {
      const batch = await source.store.exportRecords(position.bucket, position.stream, after, bytesMax);
      await target.store.importRecords({ bucket: position.bucket, stream: position.stream, records: batch.records, deletedAt: batch.deletedAt });
      batches++;
      bytes += batch.records.length;
      if (batch.lastSeq >= batch.last) break;
      after = batch.lastSeq;
    }
  }
  return { batches, bytes };
}

async function everything(store: OpenedStore, stream: string): Promise<[number, number, string][]> {
  const result = await store.store.read('b', stream, { from: 1, limit: 1000 });
  return result.entries.map((entry) => [entry.seq, entry.t, entry.payload.toString()]);
}

describe('partition handoff through the store', () => {
  test('a partition exported in bounded batches and imported elsewhere holds the same seqnums, timestamps and bodies', async () => {
    const { store: source } = await open();
    const { store: target } = await open();
    const names = streamsIn(7, 5);
    for (const [index, name] of names.entries()) {
      for (let entry = 0; entry < 40 + index * 10; entry++) await source.store.append({ bucket: 'b', stream: name, payloads: [json({ name, entry, pad: 'x'.repeat(30) })] });
    }
    // Another partition's stream is not part of it.
    await source.store.append({ bucket: 'b', stream: streamsIn(8, 1)[0]!, payloads: [json('elsewhere')] });
    const { batches } = await transfer(source, target, 7);
    expect(batches).toBeGreaterThan(names.length);
    for (const name of names) expect(await everything(target, name)).toEqual(await everything(source, name));
    expect(target.store.partitionStreams(8)).toEqual([]);
    // The imported streams go on from their last seqnum.
    expect((await target.store.append({ bucket: 'b', stream: names[0]!, payloads: [json('next')] }))[0]!.id).toBe(41);
  });

  test('a transfer resumed after the target restarted sends only what the target does not hold, and writes nothing twice', async () => {
    const { store: source } = await open();
    const { store: first, dir } = await open();
    const [name] = streamsIn(3, 1);
    for (let entry = 0; entry < 200; entry++) await source.store.append({ bucket: 'b', stream: name!, payloads: [json({ entry })] });
    const batch = await source.store.exportRecords('b', name!, 0, 1500);
    await first.store.importRecords({ bucket: 'b', stream: name!, records: batch.records, deletedAt: 0 });
    // The same batch again (a retry after a lost acknowledgement) changes nothing.
    await first.store.importRecords({ bucket: 'b', stream: name!, records: batch.records, deletedAt: 0 });
    await first.close();
    opened.splice(opened.indexOf(first), 1);
    const { store: target } = await open(dir);
    expect(target.store.partitionStreams(3)).toEqual([{ bucket: 'b', stream: name, last: batch.lastSeq, deletedAt: 0 }]);
    const { bytes } = await transfer(source, target, 3);
    const whole = (await source.store.exportRecords('b', name!, 0, 1 << 30)).records.length;
    expect(bytes).toBe(whole - batch.records.length);
    expect(await everything(target, name!)).toEqual(await everything(source, name!));
  });

  test.each([['same boot', 'b1'], ['another boot', 'b2']])('imported batches survive a crash of the receiver before any checkpoint (%s)', async (_name, bootAfter) => {
    const { store: source } = await open();
    const dir = tempDir('iorio-partition-');
    dirs.push(dir);
    const target = await openTestStore(dir, { 'storage.sync': 'none', 'storage.checkpoint.interval': '24h' }, undefined, { bootId: 'b1' });
    opened.push(target);
    const [name] = streamsIn(11, 1);
    for (let entry = 0; entry < 30; entry++) await source.store.append({ bucket: 'b', stream: name!, payloads: [json({ entry })] });
    await transfer(source, target, 11, 400);
    const crashed = tempDir('iorio-partition-crash-');
    dirs.push(crashed);
    fs.cpSync(dir, crashed, { recursive: true });
    const reopened = await openTestStore(crashed, { 'storage.sync': 'none' }, undefined, { bootId: bootAfter });
    opened.push(reopened);
    expect(await everything(reopened, name!)).toEqual(await everything(source, name!));
  });

  test('tombstones move too: a deleted stream, and one whose head was evicted, keep their seqnums on the new owner', async () => {
    const { store: source } = await open();
    const { store: target } = await open();
    const [deleted, evicted, recreated] = streamsIn(5, 3);
    for (let entry = 0; entry < 30; entry++) await source.store.append({ bucket: 'b', stream: deleted!, payloads: [json(entry)] });
    await source.store.deleteStream('b', deleted!);
    await source.store.setPolicy('b', evicted, { max_count: 20 });
    for (let entry = 0; entry < 300; entry++) await source.store.append({ bucket: 'b', stream: evicted!, payloads: [json({ entry, pad: 'e'.repeat(40) })] });
    await source.store.runEviction();
    for (let entry = 0; entry < 10; entry++) await source.store.append({ bucket: 'b', stream: recreated!, payloads: [json(entry)] });
    await source.store.deleteStream('b', recreated!);
    for (let entry = 0; entry < 5; entry++) await source.store.append({ bucket: 'b', stream: recreated!, payloads: [json({ again: entry })] });
    const sourceFirst = (await source.store.read('b', evicted!, { from: 1, limit: 1 })).first;
    expect(sourceFirst).toBeGreaterThan(1);
    await transfer(source, target, 5);
    expect((await target.store.append({ bucket: 'b', stream: deleted!, payloads: [json('new')] }))[0]!.id).toBe(31);
    const evictedRead = await target.store.read('b', evicted!, { from: 1, limit: 1000 });
    expect(evictedRead.first).toBe(sourceFirst);
    expect(evictedRead.entries.map((entry) => entry.seq)).toEqual(Array.from({ length: 300 - sourceFirst + 1 }, (_, index) => sourceFirst + index));
    expect(evictedRead.missing).toBeUndefined();
    expect(target.store.stats().damaged).toEqual([]);
    expect((await everything(target, recreated!)).map(([seq]) => seq)).toEqual([11, 12, 13, 14, 15]);
  });

  test('a dropped partition is gone from memory, lmdb and disk, stays gone after a crash replays the log, and other partitions are untouched', async () => {
    const { store, dir } = await open(undefined, { 'storage.checkpoint.interval': '24h' });
    const [gone] = streamsIn(9, 1);
    const [stays] = streamsIn(10, 1);
    for (let entry = 0; entry < 50; entry++) {
      await store.store.append({ bucket: 'b', stream: gone!, payloads: [json(entry)] });
      await store.store.append({ bucket: 'b', stream: stays!, payloads: [json(entry)] });
    }
    await store.store.checkpoint();
    await store.store.append({ bucket: 'b', stream: gone!, payloads: [json('after the checkpoint')] });
    expect(await store.store.dropPartition(9)).toBe(1);
    expect(store.store.partitionStreams(9)).toEqual([]);
    expect(fs.existsSync(`${dir}/vnodes/9`)).toBe(false);
    expect((await store.store.read('b', gone!, { limit: 10 })).entries).toEqual([]);
    // A crash: the log still holds appends to the dropped partition before the drop.
    const crashed = tempDir('iorio-partition-crash-');
    dirs.push(crashed);
    fs.cpSync(dir, crashed, { recursive: true });
    const { store: reopened } = await open(crashed);
    expect(reopened.store.partitionStreams(9), JSON.stringify(reopened.store.partitionStreams(9))).toEqual([]);
    expect((await reopened.store.read('b', gone!, { limit: 10 })).entries).toEqual([]);
    expect((await reopened.store.read('b', stays!, { from: 1, limit: 100 })).entries).toHaveLength(50);
  });
});
