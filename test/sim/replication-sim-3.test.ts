/**
 * The replication core on the simulator, three replicas, hundreds of seeds
 * (DESIGN §9). A failing seed prints the command that replays it:
 * `npm run sim -- --seed S --mode M --replicas 3 --verbose`.
 */

import { describe, expect, test } from 'vitest';
import { failingSeeds } from './sim-helpers.js';

describe('three replicas, random faults', () => {
  for (const mode of ['safety', 'liveness'] as const) {
    for (const first of [1, 51, 101]) {
      test(`${mode}: seeds ${first}..${first + 49}`, () => {
        expect(failingSeeds(first, 50, { mode, replicas: 3 })).toEqual([]);
      });
    }
  }
});
