import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { mulberry32 } from '../helpers/clock.js';
import { openTestStore, tempDir, type OpenedStore } from '../helpers/store.js';

/**
 * Model-based: random appends, deletes, checkpoints, reads and crashes (a
 * copy of the data folder taken while the store runs, as a crash leaves it)
 * against a plain in-memory model of what was acknowledged. After an "OS
 * crash" (another boot) chunk data written since the last checkpoint may be
 * lost; the commit log (sync = always) must bring every acknowledged entry
 * back. A failing seed reproduces.
 */
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function newDir(): string {
  const dir = tempDir('iorio-model-');
  dirs.push(dir);
  return dir;
}

function chunkFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (folder: string) => {
    if (!fs.existsSync(folder)) return;
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      const full = path.join(folder, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.chunk')) out.push(full);
    }
  };
  walk(path.join(dir, 'vnodes'));
  return out;
}

interface ModelStream {
  entries: Map<number, string>;
  last: number;
}

const streams = ['a', 'b', 'c', 'd', 'e', 'f'];
const overrides = { 'storage.sync': 'always', 'storage.checkpoint.interval': '24h', 'storage.chunk.size': '4KB', 'channel.max_items': 3 } as const;

async function runSeed(seed: number): Promise<void> {
  const random = mulberry32(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const model = new Map<string, ModelStream>(streams.map((name) => [name, { entries: new Map(), last: 0 }]));
  let dir = newDir();
  let opened: OpenedStore = await openTestStore(dir, overrides, undefined, { bootId: 'boot-0' });
  let boot = 0;
  /** Chunk sizes right after the last checkpoint: what an OS crash cannot take away. */
  let durableSizes = new Map<string, number>();

  const check = async (store: OpenedStore, name: string) => {
    const stream = model.get(name)!;
    const expected = [...stream.entries.entries()].sort((x, y) => x[0] - y[0]);
    const result = await store.store.read('m', name, { limit: 1000, from: 1 });
    expect(result.entries.map((entry) => [entry.seq, entry.payload.toString()]), `seed ${seed} stream ${name}`).toEqual(expected);
    expect(result.last, `seed ${seed} stream ${name} last`).toBe(stream.last);
  };

  for (let step = 0; step < 400; step++) {
    const roll = random();
    const name = pick(streams);
    const stream = model.get(name)!;
    if (roll < 0.6) {
      const count = 1 + Math.floor(random() * 3);
      const texts = Array.from({ length: count }, (_, index) => JSON.stringify({ step, index, pad: 'p'.repeat(Math.floor(random() * 300)) }));
      const metas = await opened.store.append({ bucket: 'm', stream: name, payloads: texts.map((text) => Buffer.from(text)) });
      metas.forEach((meta, index) => {
        expect(meta.id, `seed ${seed} step ${step}`).toBe(stream.last + 1);
        stream.last = meta.id;
        stream.entries.set(meta.id, texts[index]!);
      });
    } else if (roll < 0.66) {
      await opened.store.deleteStream('m', name);
      stream.entries.clear();
    } else if (roll < 0.74) {
      await opened.store.checkpoint();
      durableSizes = new Map(chunkFiles(dir).map((file) => [path.relative(dir, file), fs.statSync(file).size]));
    } else if (roll < 0.9) {
      await check(opened, name);
    } else {
      // Crash: the folder as it is now; the old store keeps running until closed, untouched.
      const crashed = newDir();
      fs.cpSync(dir, crashed, { recursive: true });
      const osCrash = random() < 0.5;
      if (osCrash) {
        // Chunk data written since the last checkpoint may not have reached the disk.
        for (const file of chunkFiles(crashed)) {
          const kept = durableSizes.get(path.relative(crashed, file)) ?? 0;
          const size = fs.statSync(file).size;
          if (size > kept && random() < 0.7) fs.truncateSync(file, kept + Math.floor(random() * (size - kept)));
        }
        boot++;
      }
      await opened.close();
      dir = crashed;
      opened = await openTestStore(dir, overrides, undefined, { bootId: `boot-${boot}` });
      for (const each of streams) await check(opened, each);
      // Recovery checkpoints what it replayed (in the background); from then on that is durable.
      await opened.store.checkpoint();
      durableSizes = new Map(chunkFiles(dir).map((file) => [path.relative(dir, file), fs.statSync(file).size]));
    }
  }
  for (const each of streams) await check(opened, each);
  await opened.close();
}

describe('stream store against a model', () => {
  test.each([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])('seed %i: every acknowledged entry, at its seqnum, through deletes, checkpoints and crashes', async (seed) => {
    await runSeed(seed);
  }, 60_000);
});
