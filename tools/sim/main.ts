/**
 * npm run sim -- [--seeds N] [--seed S] [--first F] [--mode safety|liveness|both]
 *                [--replicas 3|5] [--bug NAME] [--fault-ms MS] [--verbose]
 *
 * Runs the replication simulator over seeds F .. F+N-1 (or the one seed S)
 * and prints one line per failing seed with the command that replays it.
 * Exit status 1 when a seed fails. With --bug (a planted bug) failures are
 * the point: exit 0 when at least one seed caught it, 1 when none did.
 */

import { plantedBugs } from './bugs.js';
import { runSeed, type SeedRun } from './run.js';
import { scenarios } from './scenarios.js';
import type { Mode } from './sim.js';

function parse(argv: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const name = arg.slice(2);
    if (name === 'verbose' || name === 'help' || name === 'trace') flags.set(name, 'yes');
    else {
      const value = argv[++index];
      if (value === undefined) throw new Error(`--${name} needs a value`);
      flags.set(name, value);
    }
  }
  return flags;
}

const usage = `npm run sim -- [--seeds N] [--seed S] [--first F] [--mode safety|liveness|both] [--replicas 3|5] [--bug NAME] [--scenario S] [--fault-ms MS] [--verbose]
  --seeds N     how many seeds (default 100), from --first (default 1)
  --seed S      one seed only (prints its event log with --verbose)
  --mode        safety (faults throughout), liveness (faults, then healing and progress required), both (default)
  --replicas    replicas (default 3)
  --voters V    the group's voters at the start (default: all); the other replicas are spares that
                changes of the group (one voter swapped for a spare, under faults) bring in
  --bug NAME    run with a planted bug: ${Object.keys(plantedBugs).join(', ')}
  --scenario S  a scripted history instead of random faults: ${Object.keys(scenarios).join(', ')}
  --fault-ms    virtual ms of faults per seed (default 12000)
  --trace       with --seed and --verbose: every disk write in the event log too`;

function main(): void {
  let flags: Map<string, string>;
  try {
    flags = parse(process.argv.slice(2));
  } catch (error) {
    console.error(`sim: ${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
  if (flags.has('help')) {
    console.log(usage);
    return;
  }
  const number = (name: string, fallback: number): number => {
    const raw = flags.get(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value < 0) {
      console.error(`sim: --${name} must be a whole number, got ${raw}`);
      process.exit(2);
    }
    return value;
  };
  const modeFlag = flags.get('mode') ?? 'both';
  if (!['safety', 'liveness', 'both'].includes(modeFlag)) {
    console.error(`sim: --mode must be safety, liveness or both, got ${modeFlag}`);
    process.exit(2);
  }
  const modes: Mode[] = modeFlag === 'both' ? ['safety', 'liveness'] : [modeFlag as Mode];
  const bug = flags.get('bug');
  if (bug !== undefined && plantedBugs[bug] === undefined) {
    console.error(`sim: unknown --bug ${bug}; known: ${Object.keys(plantedBugs).join(', ')}`);
    process.exit(2);
  }
  const scenario = flags.get('scenario');
  if (scenario !== undefined && scenarios[scenario] === undefined) {
    console.error(`sim: unknown --scenario ${scenario}; known: ${Object.keys(scenarios).join(', ')}`);
    process.exit(2);
  }
  const replicas = number('replicas', scenario === 'figure-8' ? 5 : 3);
  const voters = flags.has('voters') ? number('voters', replicas) : undefined;
  const faultMs = flags.has('fault-ms') ? number('fault-ms', 12_000) : undefined;
  const seeds = flags.has('seed') ? [number('seed', 1)] : Array.from({ length: number('seeds', 100) }, (_, index) => number('first', 1) + index);
  const verbose = flags.has('verbose');
  const started = Date.now();
  let failed = 0;
  let runs = 0;
  const totals = { events: 0, ok: 0, unknown: 0, reads: 0 };
  const failovers: number[] = [];
  for (const seed of seeds) {
    for (const mode of modes) {
      const run: SeedRun = runSeed(seed, { mode, replicas, ...(voters === undefined ? {} : { voters }), ...(bug === undefined ? {} : { bug }), ...(faultMs === undefined ? {} : { faultMs }), trace: flags.has('trace'), ...(scenario === undefined ? {} : { scenario }) });
      runs++;
      totals.events += run.events;
      totals.ok += run.appends.ok;
      totals.unknown += run.appends.unknown;
      totals.reads += run.reads;
      failovers.push(...run.failovers);
      if (verbose && seeds.length === 1) for (const line of run.log) console.log(`  ${line}`);
      if (run.failures.length > 0) {
        failed++;
        console.log(`FAIL seed ${seed} (${mode}): ${run.failures[0]}${run.failures.length > 1 ? ` (+${run.failures.length - 1} more)` : ''}\n  replay: ${run.replay}${verbose ? ` --verbose` : ''}`);
        if (verbose) for (const failure of run.failures.slice(1, 10)) console.log(`  also: ${failure}`);
      } else if (verbose) {
        console.log(`ok seed ${seed} (${mode}): ${run.events} events, ${run.appends.ok} appends acknowledged, ${run.appends.unknown} unknown, ${run.reads} reads, ${run.epochs} epochs`);
      }
    }
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(
    `sim: ${runs - failed}/${runs} runs passed${bug === undefined ? '' : ` with planted bug ${bug} (${failed} caught it)`}; ` +
      `${totals.events} events, ${totals.ok} appends acknowledged, ${totals.unknown} of unknown outcome, ${totals.reads} reads, in ${seconds.toFixed(1)} s`,
  );
  if (failovers.length > 0) {
    const sorted = [...failovers].sort((a, b) => a - b);
    const at = (q: number): string => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(0);
    console.log(`sim: failover after killing a serving leader (virtual time, until another replica leads and serves): p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${sorted[sorted.length - 1]!.toFixed(0)} ms over ${sorted.length} kills`);
  }
  process.exit(bug === undefined ? (failed > 0 ? 1 : 0) : failed > 0 ? 0 : 1);
}

main();
