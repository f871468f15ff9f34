/** One seed of the simulator, checked; and the command that replays it. */

import { plantedBugs } from './bugs.js';
import { scenarios, scenarioTiming } from './scenarios.js';
import { check } from './checker.js';
import { defaultSimOptions, type Mode, Simulation } from './sim.js';

export interface SeedRun {
  readonly seed: number;
  readonly mode: Mode;
  readonly replicas: number;
  readonly bug: string | undefined;
  readonly failures: readonly string[];
  readonly events: number;
  readonly appends: { ok: number; unknown: number; failed: number };
  readonly reads: number;
  readonly epochs: number;
  readonly replay: string;
  /** Virtual ms from each kill of a serving leader until writes resume elsewhere. */
  readonly failovers: readonly number[];
  readonly log: readonly string[];
  /** Each live replica's committed log at the end, as op:epoch:value. */
  readonly finalLogs: Record<string, string[]>;
}

export interface RunOptions {
  readonly mode?: Mode;
  readonly replicas?: number;
  /** Voters of the group at the start (the rest are spares for changes of the group). */
  readonly voters?: number;
  readonly bug?: string;
  readonly faultMs?: number;
  /** A scripted scenario by name (scenarios.ts) instead of random faults. */
  readonly scenario?: string;
  readonly trace?: boolean;
}

export function replayCommand(seed: number, options: RunOptions): string {
  return `npm run sim -- --seed ${seed} --mode ${options.mode ?? 'safety'} --replicas ${options.replicas ?? 3}${options.voters === undefined ? '' : ` --voters ${options.voters}`}${options.bug === undefined ? '' : ` --bug ${options.bug}`}${options.faultMs === undefined ? '' : ` --fault-ms ${options.faultMs}`}${options.scenario === undefined ? '' : ` --scenario ${options.scenario}`}`;
}

export function runSeed(seed: number, options: RunOptions = {}): SeedRun {
  const replicaClass = options.bug === undefined ? undefined : plantedBugs[options.bug];
  if (options.bug !== undefined && replicaClass === undefined) throw new Error(`unknown bug ${options.bug}; known: ${Object.keys(plantedBugs).join(', ')}`);
  const script = options.scenario === undefined ? undefined : scenarios[options.scenario];
  if (options.scenario !== undefined && script === undefined) throw new Error(`unknown scenario ${options.scenario}; known: ${Object.keys(scenarios).join(', ')}`);
  const sim = new Simulation({
    ...defaultSimOptions,
    seed,
    ...(options.mode === undefined ? {} : { mode: options.mode }),
    ...(options.replicas === undefined ? {} : { replicas: options.replicas }),
    ...(options.voters === undefined ? {} : { voters: options.voters }),
    ...(options.faultMs === undefined ? {} : { faultMs: options.faultMs }),
    ...(replicaClass === undefined ? {} : { replicaClass }),
    ...(script === undefined ? {} : { script }),
    ...(options.scenario !== undefined && scenarioTiming[options.scenario] !== undefined ? { timing: scenarioTiming[options.scenario]! } : {}),
    ...(options.trace === undefined ? {} : { trace: options.trace }),
  });
  let failures: string[];
  try {
    const result = sim.run();
    failures = check(sim, result);
  } catch (error) {
    failures = [`the simulation threw: ${(error as Error).stack ?? error}`];
  }
  const count = (outcome: string): number => sim.ops.filter((op) => op.outcome === outcome).length;
  return {
    seed,
    mode: sim.options.mode,
    replicas: sim.options.replicas,
    bug: options.bug,
    failures,
    events: sim.events,
    appends: { ok: count('ok'), unknown: count('unknown'), failed: count('failed') },
    reads: sim.reads.length,
    epochs: sim.leaders.size,
    replay: replayCommand(seed, options),
    failovers: sim.failovers,
    log: sim.log,
    finalLogs: Object.fromEntries(sim.committedLogs().map(({ id, entries }) => [id, entries.map((entry) => `${entry.op}:${entry.epoch}:${entry.payload.value}`)])),
  };
}
