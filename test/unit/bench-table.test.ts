/** The bench harness's ratios and table, the latency histogram, and the scenario registry. */
import { describe, expect, it } from 'vitest';
import { formatBenchTable, formatRatio, scenarioNames, withRatios, type BenchRow } from '../../tools/bench/harness.js';
import { LatencyHistogram } from '../../tools/bench/load/histogram.js';
import { jsonOfBytes } from '../../tools/bench/scenarios/http.js';

const rows: BenchRow[] = [
  { variant: 'bare POST', group: 'append', baseline: true, opsPerSec: 20_000, unit: 'req/s', p50Ms: 1, p99Ms: 4 },
  { variant: 'iorio POST', group: 'append', opsPerSec: 16_000, unit: 'req/s', p50Ms: 2, p99Ms: 9.5, notes: 'target >= 0.8x' },
  { variant: 'bare GET', group: 'get', baseline: true, opsPerSec: 30_000, unit: 'req/s', p50Ms: 1, p99Ms: 3 },
  { variant: 'iorio GET', group: 'get', opsPerSec: 33_000, unit: 'req/s', p50Ms: 1, p99Ms: 3 },
  { variant: 'lonely', group: 'no-baseline', opsPerSec: 5, unit: 'entries/s', p50Ms: Number.NaN, p99Ms: 250 },
];

describe('bench table', () => {
  it('divides each row by the baseline of its own group', () => {
    const ratios = withRatios(rows).map((row) => row.ratio);
    expect(ratios[0]).toBe(1);
    expect(ratios[1]).toBeCloseTo(0.8);
    expect(ratios[2]).toBe(1);
    expect(ratios[3]).toBeCloseTo(1.1);
    expect(ratios[4]).toBeUndefined();
  });

  it('has no ratio when the baseline measured nothing', () => {
    const zero = withRatios([{ ...(rows[0] as BenchRow), opsPerSec: 0 }, rows[1] as BenchRow]);
    expect(zero[1]?.ratio).toBeUndefined();
  });

  it('prints aligned columns, rates with separators, ratios with two decimals', () => {
    const lines = formatBenchTable('http', rows).split('\n');
    expect(lines[0]).toMatch(/^scenario\s+variant\s+ops\/s\s+p50 ms\s+p99 ms\s+ratio\s+notes$/);
    expect(lines[1]).toMatch(/^http\s+bare POST\s+20,000 req\/s\s+1\.00\s+4\.00\s+baseline$/);
    expect(lines[2]).toMatch(/^http\s+iorio POST\s+16,000 req\/s\s+2\.00\s+9\.50\s+0\.80x\s+target >= 0\.8x$/);
    expect(lines[4]).toMatch(/1\.10x$/);
    expect(lines[5]).toMatch(/^http\s+lonely\s+5\.0 entries\/s\s+-\s+250\s+-$/);
    // Every ratio cell ends in the same column.
    const ratioEnd = lines[0]!.indexOf('ratio') + 'ratio'.length;
    for (const line of lines.slice(1, 5)) expect(line.slice(ratioEnd - 8, ratioEnd)).toMatch(/^\s*(baseline|\d+\.\d\dx)$/);
    expect(formatRatio(undefined, false)).toBe('-');
    expect(formatRatio(2, true)).toBe('baseline');
  });

  it('registers scenarios by file name', () => {
    expect(scenarioNames()).toContain('http');
  });
});

describe('bench helpers', () => {
  it('builds JSON bodies of an exact size', () => {
    for (const bytes of [60, 100, 200]) {
      const text = jsonOfBytes(bytes, 7);
      expect(Buffer.byteLength(text)).toBe(bytes);
      expect(JSON.parse(text)).toMatchObject({ n: 7 });
    }
  });

  it('histogram percentiles and merging', () => {
    const histogram = new LatencyHistogram(1, 1000);
    for (let ms = 0; ms < 100; ms += 1) histogram.add(ms + 0.5);
    expect(histogram.count).toBe(100);
    expect(histogram.percentile(50)).toBe(50);
    expect(histogram.percentile(99)).toBe(99);
    const other = new LatencyHistogram(1, 1000);
    other.addPairs(histogram.toPairs(), histogram.maxMs);
    other.add(5000);
    expect(other.count).toBe(101);
    expect(other.percentile(100)).toBe(5000);
    expect(new LatencyHistogram().percentile(50)).toBeNaN();
  });
});
