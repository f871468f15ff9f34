/** Latency samples and their percentiles, for the tools' summaries. */

/** Nearest-rank percentile of already sorted values; NaN when there are none. */
export function percentileOfSorted(sorted: ArrayLike<number>, percent: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((percent / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

export interface LatencySummary {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Collects durations in ms; keeps at most `samplesMax` (every later one replaces a random kept one). */
export class Latencies {
  private samples: Float64Array;
  private length = 0;
  private seen = 0;

  constructor(private readonly samplesMax = 1_000_000) {
    this.samples = new Float64Array(Math.min(1024, samplesMax));
  }

  add(ms: number): void {
    this.seen += 1;
    if (this.length < this.samplesMax) {
      if (this.length === this.samples.length) {
        const grown = new Float64Array(Math.min(this.samplesMax, this.samples.length * 2));
        grown.set(this.samples);
        this.samples = grown;
      }
      this.samples[this.length] = ms;
      this.length += 1;
      return;
    }
    // Reservoir sampling keeps the percentiles unbiased past the cap.
    const slot = Math.floor(Math.random() * this.seen);
    if (slot < this.samplesMax) this.samples[slot] = ms;
  }

  get count(): number {
    return this.seen;
  }

  summary(): LatencySummary {
    const sorted = this.samples.slice(0, this.length).sort();
    return {
      count: this.seen,
      p50Ms: percentileOfSorted(sorted, 50),
      p99Ms: percentileOfSorted(sorted, 99),
      maxMs: this.length === 0 ? Number.NaN : (sorted[sorted.length - 1] as number),
    };
  }
}

/** Runs `work` over `items` with at most `limit` at a time, results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let nextIndex = 0;
  const worker = async (): Promise<void> => {
    while (nextIndex < items.length) {
      const index = nextIndex;
      nextIndex += 1;
      results[index] = await work(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
