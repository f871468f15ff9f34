import { runSeed, type RunOptions } from '../../tools/sim/run.js';

/** Runs seeds first .. first+count-1; returns one line per failing seed, with its replay command. */
export function failingSeeds(first: number, count: number, options: RunOptions): string[] {
  const failures: string[] = [];
  for (let seed = first; seed < first + count; seed++) {
    const run = runSeed(seed, options);
    if (run.failures.length > 0) failures.push(`seed ${seed}: ${run.failures[0]}\n  replay: ${run.replay}`);
  }
  return failures;
}

/** The first seed, of at most `count`, on which the checker fails (a planted bug must be caught). */
export function firstCaught(count: number, options: RunOptions): { seed: number; failure: string } | undefined {
  for (let seed = 1; seed <= count; seed++) {
    const run = runSeed(seed, options);
    if (run.failures.length > 0) return { seed, failure: run.failures[0]! };
  }
  return undefined;
}
