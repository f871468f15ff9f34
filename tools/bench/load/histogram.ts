/** A fixed-resolution latency histogram: cheap enough for a million samples a second. */
export class LatencyHistogram {
  private readonly buckets: Uint32Array;
  private total = 0;
  private max = 0;

  /** `resolutionMs` wide buckets up to `rangeMs`; longer samples land in the last one. */
  constructor(
    private readonly resolutionMs = 0.05,
    rangeMs = 30_000,
  ) {
    this.buckets = new Uint32Array(Math.ceil(rangeMs / resolutionMs) + 1);
  }

  add(ms: number): void {
    const index = Math.min(this.buckets.length - 1, Math.max(0, Math.floor(ms / this.resolutionMs)));
    this.buckets[index] = (this.buckets[index] as number) + 1;
    this.total += 1;
    if (ms > this.max) this.max = ms;
  }

  /** Non-empty buckets as [index, count], for sending to another process. */
  toPairs(): [number, number][] {
    const pairs: [number, number][] = [];
    this.buckets.forEach((count, index) => {
      if (count > 0) pairs.push([index, count]);
    });
    return pairs;
  }

  addPairs(pairs: readonly (readonly [number, number])[], maxMs: number): void {
    for (const [index, count] of pairs) {
      this.buckets[index] = (this.buckets[index] as number) + count;
      this.total += count;
    }
    if (maxMs > this.max) this.max = maxMs;
  }

  get count(): number {
    return this.total;
  }

  get maxMs(): number {
    return this.total === 0 ? Number.NaN : this.max;
  }

  /** The upper edge of the bucket holding the nearest-rank percentile. */
  percentile(percent: number): number {
    if (this.total === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil((percent / 100) * this.total));
    let seen = 0;
    for (let index = 0; index < this.buckets.length; index += 1) {
      seen += this.buckets[index] as number;
      // The last bucket also holds everything beyond the range: its edge means nothing, the max does.
      if (seen >= rank) return index === this.buckets.length - 1 ? this.max : Math.min((index + 1) * this.resolutionMs, this.max);
    }
    return this.max;
  }
}
