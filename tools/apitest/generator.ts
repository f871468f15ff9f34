/** What apitest writes: bucket and stream names and records, all drawn from the seeded PRNG. */
import type { Prng } from '../common/prng.js';

const words = [
  'amber', 'birch', 'cedar', 'delta', 'ember', 'fjord', 'grove', 'harbor', 'iris', 'jasper', 'kelp', 'lumen',
  'maple', 'nectar', 'onyx', 'pebble', 'quartz', 'raven', 'sierra', 'tundra', 'umber', 'violet', 'willow', 'yarrow',
  'zephyr', 'basalt', 'comet', 'dune', 'falcon', 'glacier', 'heron', 'indigo', 'juniper', 'lotus', 'meadow', 'nova',
] as const;

export interface StreamRef {
  readonly bucket: string;
  readonly stream: string;
  /** `bucket/stream`, the key of every per-stream map. */
  readonly key: string;
}

export function streamRef(bucket: string, stream: string): StreamRef {
  return { bucket, stream, key: `${bucket}/${stream}` };
}

/** The stream apitest's patchers patch for an insert stream (IorioDB's `<stream>patch`). */
export function patchStreamOf(ref: StreamRef): StreamRef {
  return streamRef(ref.bucket, `${ref.stream}patch`);
}

/** `buckets` buckets of `streams` streams each; names are valid Iorio names and distinct. */
export function planStreams(prng: Prng, buckets: number, streams: number): StreamRef[] {
  const refs: StreamRef[] = [];
  for (let b = 0; b < buckets; b += 1) {
    const bucket = `${prng.pick(words)}-${b}`;
    for (let s = 0; s < streams; s += 1) refs.push(streamRef(bucket, `${prng.pick(words)}-${s}`));
  }
  return refs;
}

export interface ApitestRecord {
  readonly bool: boolean | null;
  readonly user: string;
  readonly date: string;
  readonly lat: number;
  readonly lng: number;
  /** Who wrote it and its index, so a misplaced record is easy to trace. */
  readonly by: string;
  readonly n: number;
}

export function makeRecord(prng: Prng, by: string, n: number): ApitestRecord {
  const dateMs = Date.UTC(2000, 0, 1) + prng.int(30 * 365 * 24 * 3600) * 1000;
  return {
    bool: prng.pick([true, false, null]),
    user: `${prng.pick(words)}${prng.int(10_000)}`,
    date: new Date(dateMs).toISOString(),
    lat: Math.round((prng.next() * 180 - 90) * 1e6) / 1e6,
    lng: Math.round((prng.next() * 360 - 180) * 1e6) / 1e6,
    by,
    n,
  };
}
