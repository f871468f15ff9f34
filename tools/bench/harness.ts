/**
 * The bench harness: scenarios are files tools/bench/scenarios/<name>.ts
 * exporting `run(context) -> rows`. Every row belongs to a group; the group's
 * baseline row (measured in the same run) is what its ratio is relative to.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { closestWord } from '../../src/cli/suggest.js';
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
  /** Anything else worth printing (errors, counts). */
  readonly notes?: string;
  /** What the row should reach; a miss is printed with a mark. */
  readonly target?: BenchTarget;
  /** The variant could not be measured: why (its numbers are NaN). */
  readonly failed?: string;
}

/** A goal for one row: at least a ratio to its baseline, at least a rate, or at most a p99. */
export type BenchTarget = { readonly ratioMin: number } | { readonly opsPerSecMin: number } | { readonly p99MsMax: number };

export interface BenchRowWithRatio extends BenchRow {
  /** opsPerSec over the group's baseline opsPerSec; undefined without one. */
  readonly ratio: number | undefined;
  /** Whether the row reached its target; undefined without one (or without a ratio to judge it by). */
  readonly targetMet: boolean | undefined;
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

/** An option a scenario accepts (`--name value`): checked before anything runs. */
export interface BenchOption {
  /** One line for --help, with the default. */
  readonly doc: string;
  /** Why a value is not acceptable, or undefined when it is. */
  check(raw: string): string | undefined;
}

export interface Scenario {
  /** The options the scenario reads from context.options; any other is refused before the run. */
  readonly options?: Readonly<Record<string, BenchOption>>;
  run(context: BenchContext): Promise<BenchRow[]>;
}

/** `--name N`: a positive number. */
export function positiveOption(doc: string): BenchOption {
  return { doc, check: (raw) => (Number.isFinite(Number(raw)) && Number(raw) > 0 ? undefined : `a positive number, got "${raw}"`) };
}

/** `--name a,b`: a comma-separated subset of `values`. */
export function listOption(doc: string, values: readonly string[]): BenchOption {
  return {
    doc,
    check: (raw) => {
      const unknown = raw.split(',').filter((value) => !values.includes(value));
      return unknown.length === 0 ? undefined : `a comma-separated list of ${values.join(', ')}; unknown: ${unknown.join(', ')}`;
    },
  };
}

/**
 * Checks `--key value` options against what the selected scenarios declare,
 * before any runs: an option no selected scenario reads, or a bad value, is
 * named at once rather than after minutes of measuring. Pure; returns the
 * problems (empty when all is well).
 */
export function optionProblems(options: Readonly<Record<string, string>>, scenarios: Readonly<Record<string, Scenario>>): string[] {
  const problems: string[] = [];
  for (const [name, raw] of Object.entries(options)) {
    const readers = Object.entries(scenarios).filter(([, scenario]) => scenario.options?.[name] !== undefined);
    if (readers.length === 0) {
      const known = [...new Set(Object.values(scenarios).flatMap((scenario) => Object.keys(scenario.options ?? {})))].sort();
      const guess = closestWord(name, known);
      problems.push(
        `--${name}: no selected scenario takes it${guess === undefined ? '' : `; did you mean --${guess}?`} (they take: ${known.map((option) => `--${option}`).join(', ') || 'none'})`,
      );
      continue;
    }
    for (const [scenarioName, scenario] of readers) {
      const problem = scenario.options![name]!.check(raw);
      if (problem !== undefined) problems.push(`--${name} (${scenarioName}): expected ${problem}`);
    }
  }
  return problems;
}

/**
 * Runs a scenario's groups one after the other; a group that throws becomes
 * one failed row (and is logged) and the others still run, so one broken
 * variant never loses the rest of the results.
 */
export async function runGroups(
  context: Pick<BenchContext, 'log'>,
  groups: readonly string[],
  runGroup: (group: string) => Promise<BenchRow[]>,
): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const group of groups) {
    try {
      rows.push(...(await runGroup(group)));
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      context.log(`${group} FAILED: ${reason}`);
      rows.push(failedRow(group, reason));
    }
  }
  return rows;
}

/** The row standing for a variant or group that could not be measured. */
export function failedRow(group: string, reason: string): BenchRow {
  return { variant: `${group} (failed)`, group, opsPerSec: Number.NaN, unit: '', p50Ms: Number.NaN, p99Ms: Number.NaN, failed: reason };
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
    return { ...row, ratio, targetMet: targetMet(row, ratio) };
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

/** Whether a row reached its target; undefined when it has none, or when its ratio is unknown. Pure. */
export function targetMet(row: BenchRow, ratio: number | undefined): boolean | undefined {
  const { target } = row;
  if (target === undefined) return undefined;
  if (row.failed !== undefined) return false;
  if ('ratioMin' in target) return ratio === undefined ? undefined : ratio >= target.ratioMin;
  if ('opsPerSecMin' in target) return row.opsPerSec >= target.opsPerSecMin;
  return row.p99Ms < target.p99MsMax;
}

/** `target >= 0.8x`, `target >= 150,000 entries/s`, `target p99 < 50 ms`. */
export function formatTarget(target: BenchTarget, unit: string): string {
  if ('ratioMin' in target) return `target >= ${target.ratioMin}x`;
  if ('opsPerSecMin' in target) return `target >= ${target.opsPerSecMin.toLocaleString('en-US')} ${unit}`;
  return `target p99 < ${target.p99MsMax} ms`;
}

/** The notes cell: a failure, the target (a miss marked `✗ MISSED`, a hit `✓`), then the row's own notes. */
export function notesCell(row: BenchRowWithRatio): string {
  if (row.failed !== undefined) return `✗ FAILED: ${row.failed}`;
  const target = row.target === undefined ? '' : `${row.targetMet === false ? '✗ MISSED ' : row.targetMet === true ? '✓ ' : ''}${formatTarget(row.target, row.unit)}`;
  return [target, row.notes ?? ''].filter(Boolean).join('; ');
}

export function formatRatio(ratio: number | undefined, isBaseline: boolean): string {
  if (isBaseline) return 'baseline';
  return ratio === undefined ? '-' : `${ratio.toFixed(2)}x`;
}

export function formatBenchTable(scenario: string, rows: readonly BenchRow[]): string {
  const table = withRatios(rows).map((row) => [
    scenario,
    row.variant,
    row.failed === undefined ? `${formatRate(row.opsPerSec)} ${row.unit}` : '-',
    formatMs(row.p50Ms),
    formatMs(row.p99Ms),
    formatRatio(row.ratio, row.baseline === true),
    notesCell(row),
  ]);
  return formatTable(['scenario', 'variant', 'ops/s', 'p50 ms', 'p99 ms', 'ratio', 'notes'], table, new Set([2, 3, 4, 5]));
}
