import { describe, expect, test } from 'vitest';
import {
  bucketChunksToEvict,
  chunkCapacity,
  chunksToEvict,
  type BucketChunk,
  type ChunkSummary,
  type RetentionPolicy,
} from '../../src/core/retention.js';
import { mulberry32 } from '../helpers/clock.js';

/**
 * core/retention.ts decides which whole chunks go; the store only carries the
 * decision out. Table tests pin the boundaries; property loops over many
 * seeded random chunk layouts check the guarantees a user relies on:
 *
 * - what remains never drops below a limit because of that limit
 *   (max_count entries, max_bytes bytes, nothing newer than max_age_secs);
 * - eviction is maximal (Kafka's semantics: a chunk goes when what remains
 *   still satisfies the limit), and with several limits a chunk goes when ANY
 *   of them allows it (byCount || byBytes || byAge);
 * - the active (last) chunk never goes.
 *
 * A failing seed reproduces: the message names it.
 */

const NOW = 1_700_000_000_000;
const SECOND = 1000;
const SEEDS = 1000;

// ---------------------------------------------------------------------------
// Layouts

/** A chunk for a table row: how many entries, how many bytes, how old its newest entry is (seconds before NOW; undefined = not known). */
interface ChunkSpec {
  entries: number;
  bytes: number;
  ageSecs: number | undefined;
}

function c(entries: number, bytes: number, ageSecs?: number): ChunkSpec {
  return { entries, bytes, ageSecs };
}

interface Layout {
  chunks: ChunkSummary[];
  /** The stream's last seqnum (durableLast). */
  lastSeq: number;
}

/** Chunks oldest first with contiguous seqnums from `firstSeq`; the last one is the active chunk. */
function build(specs: readonly ChunkSpec[], firstSeq = 1): Layout {
  const chunks: ChunkSummary[] = [];
  let seq = firstSeq;
  for (const spec of specs) {
    chunks.push({ firstSeq: seq, bytes: spec.bytes, lastMs: spec.ageSecs === undefined ? undefined : NOW - spec.ageSecs * SECOND });
    seq += spec.entries;
  }
  return { chunks, lastSeq: seq - 1 };
}

/** Entries left when the oldest `evicted` chunks are gone, as the store counts them. */
function entriesLeft(layout: Layout, evicted: number): number {
  const first = layout.chunks[evicted];
  return first === undefined ? 0 : layout.lastSeq - first.firstSeq + 1;
}

function bytesLeft(layout: Layout, evicted: number): number {
  return layout.chunks.slice(evicted).reduce((sum, chunk) => sum + chunk.bytes, 0);
}

function olderThan(chunk: ChunkSummary, maxAgeSecs: number, nowMs: number): boolean {
  return chunk.lastMs !== undefined && chunk.lastMs < nowMs - maxAgeSecs * SECOND;
}

function evictions(layout: Layout, policy: RetentionPolicy, nowMs = NOW): number {
  const frozen = Object.freeze(layout.chunks.map((chunk) => Object.freeze({ ...chunk })));
  return chunksToEvict(frozen, layout.lastSeq, policy, nowMs);
}

function randomInt(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

interface RandomLayoutOptions {
  /** Closed chunks may have an unknown time and times may go backwards (clock steps). */
  messy?: boolean;
}

/**
 * 1 to 9 chunks of 1 to 20 entries and up to 200 bytes an entry, seqnums from
 * a random base, newest-entry times rising (or messy), ages spread over 0 to
 * 1000 s. Sometimes an empty active chunk follows (just rolled: no bytes, no
 * time, firstSeq = lastSeq + 1).
 */
function randomLayout(random: () => number, options: RandomLayoutOptions = {}): Layout {
  const count = randomInt(random, 1, 9);
  const base = randomInt(random, 1, 1000);
  let age = randomInt(random, 0, 1000);
  const specs: ChunkSpec[] = [];
  for (let index = 0; index < count; index++) {
    const entries = randomInt(random, 1, 20);
    let bytes = 0;
    for (let entry = 0; entry < entries; entry++) bytes += randomInt(random, 1, 200);
    let ageSecs: number | undefined = age;
    if (options.messy) {
      if (random() < 0.15) ageSecs = undefined;
      else ageSecs = randomInt(random, 0, 1000);
    }
    specs.push(c(entries, bytes, ageSecs));
    age = Math.max(0, age - randomInt(random, 0, 300));
  }
  const layout = build(specs, base);
  // Just rolled: the active chunk is empty and named for the next seqnum.
  if (random() < 0.2) layout.chunks.push({ firstSeq: layout.lastSeq + 1, bytes: 0, lastMs: undefined });
  return layout;
}

/** Each limit set with probability one half, over ranges that make each of them bite and not bite. */
function randomPolicy(random: () => number): RetentionPolicy {
  const policy: { max_count?: number; max_bytes?: number; max_age_secs?: number } = {};
  if (random() < 0.5) policy.max_count = randomInt(random, 1, 200);
  if (random() < 0.5) policy.max_bytes = randomInt(random, 1, 20_000);
  if (random() < 0.5) policy.max_age_secs = randomInt(random, 1, 1100);
  return policy;
}

/** Rows for test.each('%s', ...) with their titles written out in full (vitest cuts `$field` strings at 40 characters). */
function titled<Row>(title: (row: Row) => string, rows: readonly Row[]): [string, Row][] {
  return rows.map((row) => [title(row), row]);
}

function forEachSeed(body: (random: () => number, seed: number) => void): void {
  for (let seed = 1; seed <= SEEDS; seed++) body(mulberry32(seed), seed);
}

// ---------------------------------------------------------------------------
// chunksToEvict: tables

// Three closed chunks of 10 entries and 100 bytes whose newest entries are 300,
// 200 and 100 s old, then the active chunk: 5 entries, 50 bytes, 0 s old.
// 35 entries (seqnums 1..35), 350 bytes in all.
const FOUR = [c(10, 100, 300), c(10, 100, 200), c(10, 100, 100), c(5, 50, 0)];

describe('chunksToEvict: tables', () => {
  test.each(
    titled((row) => `max_count ${row.max_count} over 10+10+10+5 entries evicts ${row.evict}: ${row.why}`, [
      { why: 'evicting a chunk that leaves exactly max_count entries is allowed', max_count: 25, evict: 1 },
      { why: 'one entry more than what would remain keeps the chunk', max_count: 26, evict: 0 },
      { why: 'keeps the fewest chunks that still hold max_count', max_count: 15, evict: 2 },
      { why: 'max_count equal to the active chunk evicts every closed chunk', max_count: 5, evict: 3 },
      { why: 'max_count 1 still keeps the active chunk', max_count: 1, evict: 3 },
      { why: 'a stream holding fewer than max_count loses nothing', max_count: 36, evict: 0 },
      { why: 'a stream holding exactly max_count loses nothing', max_count: 35, evict: 0 },
    ]),
  )('%s', (_title, { max_count, evict }) => {
    expect(evictions(build(FOUR), { max_count })).toBe(evict);
  });

  test.each(
    titled((row) => `max_bytes ${row.max_bytes} over 100+100+100+50 bytes evicts ${row.evict}: ${row.why}`, [
      { why: 'evicting a chunk that leaves exactly max_bytes is allowed', max_bytes: 250, evict: 1 },
      { why: 'one byte more than what would remain keeps the chunk', max_bytes: 251, evict: 0 },
      { why: 'keeps the fewest chunks that still hold max_bytes', max_bytes: 150, evict: 2 },
      { why: 'max_bytes equal to the active chunk evicts every closed chunk', max_bytes: 50, evict: 3 },
      { why: 'max_bytes 1 still keeps the active chunk', max_bytes: 1, evict: 3 },
      { why: 'a stream holding fewer than max_bytes loses nothing', max_bytes: 351, evict: 0 },
      { why: 'a stream holding exactly max_bytes loses nothing', max_bytes: 350, evict: 0 },
    ]),
  )('%s', (_title, { max_bytes, evict }) => {
    expect(evictions(build(FOUR), { max_bytes })).toBe(evict);
  });

  test.each(
    titled((row) => `max_age_secs ${row.max_age_secs} over chunks 300/200/100/0 s old evicts ${row.evict}: ${row.why}`, [
      { why: 'chunks whose newest entry is older than max_age go', max_age_secs: 150, evict: 2 },
      { why: 'a chunk whose newest entry is exactly max_age old stays', max_age_secs: 200, evict: 1 },
      { why: 'a chunk whose newest entry is one second younger than max_age stays', max_age_secs: 201, evict: 1 },
      { why: 'nothing is older than max_age', max_age_secs: 300, evict: 0 },
      { why: 'everything closed is older than max_age; the active chunk stays', max_age_secs: 1, evict: 3 },
    ]),
  )('%s', (_title, { max_age_secs, evict }) => {
    expect(evictions(build(FOUR), { max_age_secs })).toBe(evict);
  });

  test('the age cutoff is measured from the injected nowMs, not the wall clock', () => {
    const layout = build(FOUR);
    expect(evictions(layout, { max_age_secs: 150 }, NOW)).toBe(2);
    expect(evictions(layout, { max_age_secs: 150 }, NOW - 100 * SECOND)).toBe(1);
    expect(evictions(layout, { max_age_secs: 150 }, NOW + 1000 * SECOND)).toBe(3);
  });

  test('the active chunk is never evicted, even when it too is older than max_age and over every limit', () => {
    const old = build([c(10, 100, 900), c(10, 100, 800), c(10, 100, 700)]);
    expect(evictions(old, { max_age_secs: 1 })).toBe(2);
    expect(evictions(old, { max_count: 1, max_bytes: 1, max_age_secs: 1 })).toBe(2);
    expect(evictions(build([c(10, 100, 900)]), { max_count: 1, max_bytes: 1, max_age_secs: 1 })).toBe(0);
    expect(chunksToEvict([], 0, { max_count: 1, max_bytes: 1, max_age_secs: 1 }, NOW)).toBe(0);
  });

  test.each(
    titled((row) => `no policy evicts nothing: ${row.why}`, [
      { why: 'an empty policy', policy: {} },
      { why: 'all limits 0 (0 means no limit)', policy: { max_count: 0, max_bytes: 0, max_age_secs: 0 } },
      { why: 'negative limits', policy: { max_count: -1, max_bytes: -1, max_age_secs: -1 } },
    ]),
  )('%s', (_title, { policy }) => {
    const old = build([c(10, 100, 900), c(10, 100, 800), c(10, 100, 700)]);
    expect(evictions(old, policy)).toBe(0);
  });

  test.each(
    titled((row) => `unknown lastMs never evicts by age: ${row.why}`, [
      { why: 'the oldest chunk time unknown: nothing goes by age, not even the older-known ones behind it', chunks: [c(10, 100), c(10, 100, 500), c(5, 50, 0)], evict: 0 },
      { why: 'the second chunk time unknown: eviction by age stops there', chunks: [c(10, 100, 500), c(10, 100), c(10, 100, 500), c(5, 50, 0)], evict: 1 },
      { why: 'every closed chunk time unknown', chunks: [c(10, 100), c(10, 100), c(5, 50)], evict: 0 },
    ]),
  )('%s', (_title, { chunks, evict }) => {
    expect(evictions(build(chunks), { max_age_secs: 1 })).toBe(evict);
  });

  test('unknown lastMs does not stop eviction by count or bytes', () => {
    const layout = build([c(10, 100), c(10, 100), c(5, 50)]);
    expect(evictions(layout, { max_count: 5 })).toBe(2);
    expect(evictions(layout, { max_bytes: 50 })).toBe(2);
    expect(evictions(layout, { max_count: 5, max_age_secs: 1 })).toBe(2);
  });

  test.each(
    titled((row) => `with several limits a chunk goes when ANY allows it (byCount || byBytes || byAge), so the limit that evicts most wins: ${row.why}`, [
      { why: 'bytes allow three, count allows none', policy: { max_count: 100, max_bytes: 50 }, evict: 3 },
      { why: 'count allows two, age allows one', policy: { max_count: 15, max_age_secs: 250 }, evict: 2 },
      { why: 'age allows two, bytes allow one', policy: { max_bytes: 250, max_age_secs: 150 }, evict: 2 },
      { why: 'count allows one, bytes two, age three', policy: { max_count: 25, max_bytes: 150, max_age_secs: 50 }, evict: 3 },
      { why: 'none allows any', policy: { max_count: 26, max_bytes: 251, max_age_secs: 300 }, evict: 0 },
    ]),
  )('%s', (_title, { policy, evict }) => {
    expect(evictions(build(FOUR), policy)).toBe(evict);
  });

  test('seqnums need not start at 1: counts come from seqnums (lastSeq - firstSeq + 1)', () => {
    const layout = build(FOUR, 1001);
    expect(layout.lastSeq).toBe(1035);
    expect(evictions(layout, { max_count: 25 })).toBe(1);
    expect(evictions(layout, { max_count: 26 })).toBe(0);
  });

  test('a just-rolled empty active chunk counts no entries and no bytes', () => {
    // Closed chunks hold seqnums 1..30; the active one is named 31 and is empty.
    const layout: Layout = {
      chunks: [
        { firstSeq: 1, bytes: 100, lastMs: NOW },
        { firstSeq: 11, bytes: 100, lastMs: NOW },
        { firstSeq: 21, bytes: 100, lastMs: NOW },
        { firstSeq: 31, bytes: 0, lastMs: undefined },
      ],
      lastSeq: 30,
    };
    expect(evictions(layout, { max_count: 10 })).toBe(2);
    expect(evictions(layout, { max_count: 11 })).toBe(1);
    expect(evictions(layout, { max_bytes: 100 })).toBe(2);
    expect(evictions(layout, { max_bytes: 101 })).toBe(1);
  });
});

// ---------------------------------------------------------------------------
// chunksToEvict: properties over random layouts

describe(`chunksToEvict: properties over ${SEEDS} random chunk layouts`, () => {
  test('the active (last) chunk is never evicted: 0 <= evicted <= chunks - 1, whatever the policy', () => {
    forEachSeed((random, seed) => {
      const layout = randomLayout(random, { messy: random() < 0.5 });
      const policy = randomPolicy(random);
      const evicted = evictions(layout, policy, NOW + randomInt(random, 0, 2000) * SECOND);
      expect(evicted, `seed ${seed}`).toBeGreaterThanOrEqual(0);
      expect(evicted, `seed ${seed}`).toBeLessThanOrEqual(Math.max(0, layout.chunks.length - 1));
      // When every closed chunk is ancient, everything but the active chunk goes, never more.
      const known = randomLayout(random);
      expect(evictions(known, { max_count: 1, max_bytes: 1, max_age_secs: 1 }, NOW + 10_000 * SECOND), `seed ${seed}`).toBe(known.chunks.length - 1);
    });
  });

  test('max_count alone: what remains holds at least max_count entries, and evicting one more chunk would leave fewer (maximal)', () => {
    forEachSeed((random, seed) => {
      const layout = randomLayout(random);
      const max_count = randomInt(random, 1, 200);
      const evicted = evictions(layout, { max_count });
      const why = `seed ${seed}, max_count ${max_count}, evicted ${evicted}`;
      if (evicted > 0) expect(entriesLeft(layout, evicted), why).toBeGreaterThanOrEqual(max_count);
      if (evicted < layout.chunks.length - 1) expect(entriesLeft(layout, evicted + 1), why).toBeLessThan(max_count);
    });
  });

  test('max_bytes alone: what remains holds at least max_bytes bytes, and evicting one more chunk would leave fewer (maximal)', () => {
    forEachSeed((random, seed) => {
      const layout = randomLayout(random);
      const max_bytes = randomInt(random, 1, 20_000);
      const evicted = evictions(layout, { max_bytes });
      const why = `seed ${seed}, max_bytes ${max_bytes}, evicted ${evicted}`;
      if (evicted > 0) expect(bytesLeft(layout, evicted), why).toBeGreaterThanOrEqual(max_bytes);
      if (evicted < layout.chunks.length - 1) expect(bytesLeft(layout, evicted + 1), why).toBeLessThan(max_bytes);
    });
  });

  test('max_age_secs alone: a chunk is evicted only if its newest entry is older than max_age_secs, and the first kept closed chunk is not (maximal)', () => {
    forEachSeed((random, seed) => {
      const layout = randomLayout(random, { messy: random() < 0.5 });
      const max_age_secs = randomInt(random, 1, 1100);
      const evicted = evictions(layout, { max_age_secs });
      const why = `seed ${seed}, max_age_secs ${max_age_secs}, evicted ${evicted}`;
      for (let index = 0; index < evicted; index++) expect(olderThan(layout.chunks[index]!, max_age_secs, NOW), `${why}, chunk ${index}`).toBe(true);
      if (evicted < layout.chunks.length - 1) expect(olderThan(layout.chunks[evicted]!, max_age_secs, NOW), why).toBe(false);
    });
  });

  test('max_age_secs alone never evicts an entry younger than max_age_secs nor a chunk whose time is unknown, wherever nowMs is', () => {
    forEachSeed((random, seed) => {
      const layout = randomLayout(random, { messy: random() < 0.5 });
      const max_age_secs = randomInt(random, 1, 1100);
      const nowMs = NOW + randomInt(random, -500, 1500) * SECOND;
      const evicted = evictions(layout, { max_age_secs }, nowMs);
      for (let index = 0; index < evicted; index++) {
        const lastMs = layout.chunks[index]!.lastMs;
        expect(lastMs, `seed ${seed}, chunk ${index}`).toBeDefined();
        expect(nowMs - lastMs!, `seed ${seed}, chunk ${index}`).toBeGreaterThan(max_age_secs * SECOND);
      }
    });
  });

  test('with several limits, each evicted chunk is allowed by at least one of them (byCount || byBytes || byAge) and the first kept closed chunk by none', () => {
    forEachSeed((random, seed) => {
      const layout = randomLayout(random, { messy: random() < 0.5 });
      const policy = randomPolicy(random);
      const evicted = evictions(layout, policy);
      const allowed = (index: number): boolean =>
        (policy.max_count !== undefined && entriesLeft(layout, index + 1) >= policy.max_count) ||
        (policy.max_bytes !== undefined && bytesLeft(layout, index + 1) >= policy.max_bytes) ||
        (policy.max_age_secs !== undefined && olderThan(layout.chunks[index]!, policy.max_age_secs, NOW));
      const why = `seed ${seed}, policy ${JSON.stringify(policy)}, evicted ${evicted}`;
      for (let index = 0; index < evicted; index++) expect(allowed(index), `${why}, chunk ${index}`).toBe(true);
      if (evicted < layout.chunks.length - 1) expect(allowed(evicted), why).toBe(false);
    });
  });

  test('with several limits and rising chunk times, as many chunks go as the limit that evicts most would evict on its own', () => {
    forEachSeed((random, seed) => {
      const layout = randomLayout(random);
      const policy = randomPolicy(random);
      const single = [
        policy.max_count === undefined ? 0 : evictions(layout, { max_count: policy.max_count }),
        policy.max_bytes === undefined ? 0 : evictions(layout, { max_bytes: policy.max_bytes }),
        policy.max_age_secs === undefined ? 0 : evictions(layout, { max_age_secs: policy.max_age_secs }),
      ];
      expect(evictions(layout, policy), `seed ${seed}, policy ${JSON.stringify(policy)}`).toBe(Math.max(...single));
    });
  });

  test('no policy evicts nothing: an empty policy or limits of 0 keep every chunk', () => {
    forEachSeed((random, seed) => {
      const layout = randomLayout(random, { messy: true });
      expect(evictions(layout, {}, NOW + 10_000 * SECOND), `seed ${seed}`).toBe(0);
      expect(evictions(layout, { max_count: 0, max_bytes: 0, max_age_secs: 0 }, NOW + 10_000 * SECOND), `seed ${seed}`).toBe(0);
    });
  });

  test('unknown lastMs never evicts by age: with only max_age_secs, eviction stops at the first chunk whose time is unknown', () => {
    forEachSeed((random, seed) => {
      const layout = randomLayout(random);
      const unknown = randomInt(random, 0, layout.chunks.length - 1);
      layout.chunks[unknown] = { ...layout.chunks[unknown]!, lastMs: undefined };
      // Everything is ancient: only the unknown time can hold eviction back.
      const evicted = evictions(layout, { max_age_secs: 1 }, NOW + 10_000 * SECOND);
      expect(evicted, `seed ${seed}, unknown chunk ${unknown}`).toBe(Math.min(unknown, layout.chunks.length - 1));
    });
  });
});

// ---------------------------------------------------------------------------
// chunkCapacity

describe('chunkCapacity', () => {
  const MiB = 1024 * 1024;

  test.each(
    titled((row) => `no policy: chunks roll at the configured ${row.chunkBytes} bytes and ${row.chunkAgeMs} ms, unbounded in count`, [
      { chunkBytes: MiB, chunkAgeMs: 0 },
      { chunkBytes: 64 * 1024, chunkAgeMs: 60_000 },
    ]),
  )('%s', (_title, { chunkBytes, chunkAgeMs }) => {
    expect(chunkCapacity(chunkBytes, chunkAgeMs, undefined)).toEqual({ bytes: chunkBytes, count: Infinity, ageMs: chunkAgeMs });
    expect(chunkCapacity(chunkBytes, chunkAgeMs, {})).toEqual({ bytes: chunkBytes, count: Infinity, ageMs: chunkAgeMs });
    expect(chunkCapacity(chunkBytes, chunkAgeMs, { max_count: 0, max_bytes: 0, max_age_secs: 0 })).toEqual({ bytes: chunkBytes, count: Infinity, ageMs: chunkAgeMs });
  });

  test.each(
    titled((row) => `max_bytes ${row.max_bytes} rolls the active chunk at ${row.bytes} bytes: ${row.why}`, [
      { why: 'a quarter of the policy', max_bytes: 1_000_000, bytes: 250_000 },
      { why: 'a quarter, rounded up', max_bytes: 16_385, bytes: 4097 },
      { why: 'a quarter that is exactly the floor', max_bytes: 16_384, bytes: 4096 },
      { why: 'never under 4096 bytes, however small the policy', max_bytes: 100, bytes: 4096 },
      { why: 'the configured chunk size when that is smaller than a quarter', max_bytes: 10 * MiB, bytes: MiB },
    ]),
  )('%s', (_title, { max_bytes, bytes }) => {
    expect(chunkCapacity(MiB, 0, { max_bytes }).bytes).toBe(bytes);
  });

  test.each(
    titled((row) => `max_count ${row.max_count} rolls the active chunk every ${row.count} entries (a quarter, rounded up, at least 1)`, [
      { max_count: 1, count: 1 },
      { max_count: 4, count: 1 },
      { max_count: 5, count: 2 },
      { max_count: 100, count: 25 },
      { max_count: 101, count: 26 },
    ]),
  )('%s', (_title, { max_count, count }) => {
    expect(chunkCapacity(MiB, 0, { max_count }).count).toBe(count);
  });

  test.each(
    titled((row) => `max_age_secs ${row.max_age_secs} with chunk age ${row.chunkAgeMs} ms rolls after ${row.ageMs} ms: ${row.why}`, [
      { why: 'a quarter of max_age when chunks have no age limit', max_age_secs: 60, chunkAgeMs: 0, ageMs: 15_000 },
      { why: 'the configured chunk age when that is shorter', max_age_secs: 60, chunkAgeMs: 5_000, ageMs: 5_000 },
      { why: 'a quarter of max_age when that is shorter than the configured age', max_age_secs: 60, chunkAgeMs: 3_600_000, ageMs: 15_000 },
      { why: 'never under one second', max_age_secs: 1, chunkAgeMs: 0, ageMs: 1000 },
    ]),
  )('%s', (_title, { max_age_secs, chunkAgeMs, ageMs }) => {
    expect(chunkCapacity(MiB, chunkAgeMs, { max_age_secs }).ageMs).toBe(ageMs);
  });

  test('a policy tightens only the capacities of the limits it sets', () => {
    expect(chunkCapacity(MiB, 30_000, { max_count: 100 })).toEqual({ bytes: MiB, count: 25, ageMs: 30_000 });
    expect(chunkCapacity(MiB, 30_000, { max_bytes: 100_000 })).toEqual({ bytes: 25_000, count: Infinity, ageMs: 30_000 });
    expect(chunkCapacity(MiB, 30_000, { max_age_secs: 60 })).toEqual({ bytes: MiB, count: Infinity, ageMs: 15_000 });
  });

  test(`over ${SEEDS} random policies: bytes between 4096 and max(4096, ceil(max_bytes / 4)), count ceil(max_count / 4), age between 1 s and max(1 s, max_age / 4)`, () => {
    forEachSeed((random, seed) => {
      const chunkBytes = randomInt(random, 4096, 4 * MiB);
      const chunkAgeMs = random() < 0.3 ? 0 : randomInt(random, 1, 600_000);
      const policy = { max_count: randomInt(random, 1, 100_000), max_bytes: randomInt(random, 1, 100 * MiB), max_age_secs: randomInt(random, 1, 86_400) };
      const capacity = chunkCapacity(chunkBytes, chunkAgeMs, policy);
      const why = `seed ${seed}, ${JSON.stringify({ chunkBytes, chunkAgeMs, policy })}`;
      expect(capacity.bytes, why).toBeGreaterThanOrEqual(4096);
      expect(capacity.bytes, why).toBeLessThanOrEqual(Math.max(4096, Math.ceil(policy.max_bytes / 4)));
      expect(capacity.bytes, why).toBeLessThanOrEqual(chunkBytes);
      expect(capacity.count, why).toBe(Math.ceil(policy.max_count / 4));
      expect(capacity.ageMs, why).toBeGreaterThanOrEqual(1000);
      expect(capacity.ageMs, why).toBeLessThanOrEqual(Math.max(1000, (policy.max_age_secs * 1000) / 4));
      if (chunkAgeMs > 0) expect(capacity.ageMs, why).toBeLessThanOrEqual(Math.max(1000, chunkAgeMs));
    });
  });
});

// ---------------------------------------------------------------------------
// chunkCapacity and chunksToEvict together: what a stream holds

/** What a simulated stream looks like right after an eviction pass. */
interface Pass {
  /** What the stream holds, oldest chunk first; the last one is active. */
  held: Layout;
  /** The chunks this pass deleted. */
  evicted: ChunkSummary[];
  /** Time of the first entry of each held chunk. */
  firstMs: number[];
  written: { entries: number; bytes: number };
  nowMs: number;
}

/**
 * A stream written entry by entry (20 to 400 bytes, 0 to 400 ms apart),
 * rolling its active chunk as the store does (shouldRoll: over the capacity in
 * bytes, at the capacity in entries, or its first entry ageMs old) and
 * enforcing retention at every roll, as the store does (rollChunk queues
 * enforceRetention). Calls `check` after each eviction pass.
 */
function simulate(random: () => number, policy: RetentionPolicy, check: (pass: Pass) => void): void {
  const capacity = chunkCapacity(1024 * 1024, 0, policy);
  const chunks: { firstSeq: number; bytes: number; lastMs: number | undefined; count: number; firstMs: number }[] = [];
  const summary = (chunk: (typeof chunks)[number]): ChunkSummary => ({ firstSeq: chunk.firstSeq, bytes: chunk.bytes, lastMs: chunk.lastMs });
  let nowMs = NOW;
  let seq = 0;
  let writtenBytes = 0;
  const entries = randomInt(random, 200, 1500);
  for (let entry = 0; entry < entries; entry++) {
    nowMs += randomInt(random, 0, 400);
    const bytes = randomInt(random, 20, 400);
    const active = chunks[chunks.length - 1];
    const roll =
      active !== undefined &&
      (active.bytes + bytes > capacity.bytes || active.count >= capacity.count || (capacity.ageMs > 0 && nowMs - active.firstMs >= capacity.ageMs));
    if (roll) {
      chunks.push({ firstSeq: seq + 1, bytes: 0, lastMs: undefined, count: 0, firstMs: nowMs });
      const evicted = chunks.splice(0, chunksToEvict(chunks.map(summary), seq, policy, nowMs));
      check({
        held: { chunks: chunks.map(summary), lastSeq: seq },
        evicted: evicted.map(summary),
        firstMs: chunks.map((chunk) => chunk.firstMs),
        written: { entries: seq, bytes: writtenBytes },
        nowMs,
      });
    }
    if (chunks.length === 0) chunks.push({ firstSeq: seq + 1, bytes: 0, lastMs: undefined, count: 0, firstMs: nowMs });
    const current = chunks[chunks.length - 1]!;
    seq++;
    writtenBytes += bytes;
    current.bytes += bytes;
    current.count++;
    current.lastMs = nowMs;
  }
}

const SIMULATIONS = 200;

describe(`what a stream holds right after each eviction pass, rolling early (chunkCapacity) and evicting at each roll, over ${SIMULATIONS} simulated streams`, () => {
  function forEachSimulation(body: (random: () => number, seed: number) => void): void {
    for (let seed = 1; seed <= SIMULATIONS; seed++) body(mulberry32(seed), seed);
  }

  test('max_bytes: between max_bytes and max_bytes + the rollover size (<= 1.25 x max_bytes once max_bytes >= 16 KiB)', () => {
    forEachSimulation((random, seed) => {
      const max_bytes = randomInt(random, 16_384, 200_000);
      const capacity = chunkCapacity(1024 * 1024, 0, { max_bytes });
      simulate(random, { max_bytes }, ({ held, written }) => {
        const bytes = bytesLeft(held, 0);
        const why = `seed ${seed}, max_bytes ${max_bytes}, held ${bytes}`;
        expect(bytes, why).toBeGreaterThanOrEqual(Math.min(max_bytes, written.bytes));
        expect(bytes, why).toBeLessThan(max_bytes + capacity.bytes);
        expect(bytes, why).toBeLessThanOrEqual(max_bytes * 1.25 + 1);
      });
    });
  });

  test('max_count: between max_count and max_count + ceil(max_count / 4) - 1 entries', () => {
    forEachSimulation((random, seed) => {
      const max_count = randomInt(random, 1, 400);
      const perChunk = Math.ceil(max_count / 4);
      simulate(random, { max_count }, ({ held, written }) => {
        const entries = entriesLeft(held, 0);
        const why = `seed ${seed}, max_count ${max_count}, held ${entries}`;
        expect(entries, why).toBeGreaterThanOrEqual(Math.min(max_count, written.entries));
        expect(entries, why).toBeLessThanOrEqual(max_count + perChunk - 1);
      });
    });
  });

  test('max_age_secs: never evicts an entry younger than max_age, and holds nothing older than max_age + the rollover age (<= 1.25 x max_age once max_age >= 4 s)', () => {
    forEachSimulation((random, seed) => {
      const max_age_secs = randomInt(random, 4, 120);
      const capacity = chunkCapacity(1024 * 1024, 0, { max_age_secs });
      simulate(random, { max_age_secs }, ({ evicted, firstMs, nowMs }) => {
        const why = `seed ${seed}, max_age_secs ${max_age_secs}`;
        for (const chunk of evicted) expect(nowMs - chunk.lastMs!, why).toBeGreaterThan(max_age_secs * SECOND);
        const oldestAgeMs = nowMs - firstMs[0]!;
        expect(oldestAgeMs, why).toBeLessThan(max_age_secs * SECOND + capacity.ageMs);
        expect(oldestAgeMs, why).toBeLessThanOrEqual(max_age_secs * SECOND * 1.25);
      });
    });
  });
});

// ---------------------------------------------------------------------------
// bucketChunksToEvict

function b(stream: string, firstSeq: number, bytes: number, ageSecs: number): BucketChunk {
  return { stream, firstSeq, bytes, lastMs: NOW - ageSecs * SECOND };
}

function names(chunks: readonly BucketChunk[]): string[] {
  return chunks.map((chunk) => `${chunk.stream}@${chunk.firstSeq}`);
}

describe('bucketChunksToEvict', () => {
  // Closed chunks of three streams, 100 bytes each; active chunks hold 50 bytes: 650 in all.
  const closed = [b('a', 1, 100, 500), b('a', 11, 100, 100), b('b', 1, 100, 400), b('b', 21, 100, 50), b('c', 7, 100, 300), b('c', 30, 100, 200)];

  test.each(
    titled((row) => `cap ${row.cap} over 600 closed + 50 active bytes: ${row.why}`, [
      { why: 'under the cap nothing goes', cap: 1000, evicted: [] },
      { why: 'exactly at the cap nothing goes', cap: 650, evicted: [] },
      { why: 'one byte over: only the chunk with the oldest newest entry goes', cap: 649, evicted: ['a@1'] },
      { why: 'stops as soon as the bucket fits', cap: 450, evicted: ['a@1', 'b@1'] },
      { why: 'oldest by newest-entry time first, across streams', cap: 250, evicted: ['a@1', 'b@1', 'c@7', 'c@30'] },
      { why: 'everything closed when only the active chunks fit', cap: 50, evicted: ['a@1', 'b@1', 'c@7', 'c@30', 'a@11', 'b@21'] },
      { why: 'everything closed, never more, when even the active chunks are over the cap', cap: 10, evicted: ['a@1', 'b@1', 'c@7', 'c@30', 'a@11', 'b@21'] },
    ]),
  )('%s', (_title, { cap, evicted }) => {
    const input = Object.freeze([...closed].reverse());
    expect(names(bucketChunksToEvict(input, 50, cap))).toEqual(evicted);
  });

  test('ties in newest-entry time are broken by firstSeq, lower first', () => {
    const tied = [b('x', 40, 100, 100), b('y', 3, 100, 100), b('z', 17, 100, 100)];
    expect(names(bucketChunksToEvict(tied, 0, 150))).toEqual(['y@3', 'z@17']);
    expect(names(bucketChunksToEvict([...tied].reverse(), 0, 150))).toEqual(['y@3', 'z@17']);
  });

  test('the order is by newest-entry time, not by firstSeq or input order', () => {
    const chunks = [b('a', 1, 100, 10), b('b', 900, 100, 1000)];
    expect(names(bucketChunksToEvict(chunks, 0, 100))).toEqual(['b@900']);
  });

  test('a bucket with no closed chunks evicts nothing, whatever the active chunks hold', () => {
    expect(bucketChunksToEvict([], 10_000, 100)).toEqual([]);
  });

  test(`over ${SEEDS} random buckets: evicts the oldest (by newest entry, then firstSeq) first, only while over the cap, and stops as soon as it fits`, () => {
    forEachSeed((random, seed) => {
      const streams = ['s0', 's1', 's2', 's3'];
      const count = randomInt(random, 0, 12);
      const chunks: BucketChunk[] = [];
      for (let index = 0; index < count; index++) {
        chunks.push(b(streams[randomInt(random, 0, 3)]!, randomInt(random, 1, 50), randomInt(random, 1, 500), randomInt(random, 0, 20)));
      }
      const activeBytes = randomInt(random, 0, 1000);
      const total = activeBytes + chunks.reduce((sum, chunk) => sum + chunk.bytes, 0);
      const cap = randomInt(random, 0, total + 200);
      const before = JSON.stringify(chunks);
      const evicted = bucketChunksToEvict(chunks, activeBytes, cap);
      const why = `seed ${seed}, cap ${cap}, total ${total}`;
      expect(JSON.stringify(chunks), `${why}: the input is left alone`).toBe(before);
      if (total <= cap) expect(evicted, why).toEqual([]);
      // Oldest first: every evicted chunk is at least as old as every kept one, ties by firstSeq.
      const kept = chunks.filter((chunk) => !evicted.includes(chunk));
      for (let index = 1; index < evicted.length; index++) {
        const [earlier, later] = [evicted[index - 1]!, evicted[index]!];
        expect(earlier.lastMs < later.lastMs || (earlier.lastMs === later.lastMs && earlier.firstSeq <= later.firstSeq), `${why}: eviction order`).toBe(true);
      }
      const last = evicted[evicted.length - 1];
      if (last !== undefined) {
        for (const chunk of kept) {
          expect(last.lastMs < chunk.lastMs || (last.lastMs === chunk.lastMs && last.firstSeq <= chunk.firstSeq), `${why}: a kept chunk is older than an evicted one`).toBe(true);
        }
      }
      // Fits afterwards, unless every closed chunk is gone.
      const after = total - evicted.reduce((sum, chunk) => sum + chunk.bytes, 0);
      if (kept.length > 0) expect(after, why).toBeLessThanOrEqual(cap);
      // Minimal: without its last eviction the bucket would still be over the cap.
      if (last !== undefined) expect(after + last.bytes, why).toBeGreaterThan(cap);
    });
  });
});
