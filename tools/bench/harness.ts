/**
 * The bench harness: scenarios are files tools/bench/scenarios/<name>.ts
 * exporting `run(context) -> rows`. Every row belongs to a group; the group's
 * baseline row (measured in the same run) is what its ratio is relative to.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatTable } from '../common/table.js';

export interface BenchRow {
  /** What was measured, e.g. `iorio POST append`. */
  readonly variant: string;
  /** Rows of one group are compared with that group's baseline. */
  readonly group: string;
  readonly baseline?: boolean;
  readonly opsPerSec: number;
  /** What one op is: `req/s`, `entries/s`, `deliveries/s`. */
  readonly unit: string;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Anything else worth printing (errors, counts, targets). */
  readonly notes?: string;
}

export interface BenchRowWithRatio extends BenchRow {
  /** opsPerSec over the group's baseline opsPerSec; undefined without one. */
  readonly ratio: number | undefined;
}

export interface BenchContext {
  /** How long each variant runs. */
  readonly seconds: number;
  /** `--key value` flags the harness does not know, for the scenario. */
  readonly options: Readonly<Record<string, string>>;
  readonly log: (line: string) => void;
  /** A fresh directory, removed when the scenario ends. */
  tempDir(label: string): Promise<string>;
}

export interface Scenario {
  run(context: BenchContext): Promise<BenchRow[]>;
}

export const scenarioNamePattern = /^[a-z0-9][a-z0-9-]*$/;

/** Scenario names: the .ts/.js files of the scenarios folder next to this module. */
export function scenarioNames(scenariosDir: string = fileURLToPath(new URL('./scenarios/', import.meta.url))): string[] {
  const names = readdirSync(scenariosDir)
    .filter((file) => /\.(ts|js)$/.test(file) && !file.endsWith('.d.ts'))
    .map((file) => file.replace(/\.(ts|js)$/, ''))
    .filter((name) => scenarioNamePattern.test(name));
  return [...new Set(names)].sort();
}

export function withRatios(rows: readonly BenchRow[]): BenchRowWithRatio[] {
  const baselines = new Map<string, BenchRow>();
  for (const row of rows) if (row.baseline === true && !baselines.has(row.group)) baselines.set(row.group, row);
  return rows.map((row) => {
    const baseline = baselines.get(row.group);
    const ratio = baseline === undefined || !(baseline.opsPerSec > 0) ? undefined : row.opsPerSec / baseline.opsPerSec;
    return { ...row, ratio };
  });
}

function formatRate(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1);
}

function formatMs(value: number): string {
  if (!Number.isFinite(value)) return '-';
  return value >= 100 ? value.toFixed(0) : value.toFixed(2);
}

export function formatRatio(ratio: number | undefined, isBaseline: boolean): string {
  if (isBaseline) return 'baseline';
  return ratio === undefined ? '-' : `${ratio.toFixed(2)}x`;
}

export function formatBenchTable(scenario: string, rows: readonly BenchRow[]): string {
  const table = withRatios(rows).map((row) => [
    scenario,
    row.variant,
    `${formatRate(row.opsPerSec)} ${row.unit}`,
    formatMs(row.p50Ms),
    formatMs(row.p99Ms),
    formatRatio(row.ratio, row.baseline === true),
    row.notes ?? '',
  ]);
  return formatTable(['scenario', 'variant', 'ops/s', 'p50 ms', 'p99 ms', 'ratio', 'notes'], table, new Set([2, 3, 4, 5]));
}
