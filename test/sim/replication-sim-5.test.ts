/**
 * Five replicas on the simulator; the scripted histories of published
 * failures; and planted bugs, each of which the checker must catch (a
 * checker that passes them checks nothing).
 */

import { describe, expect, test } from 'vitest';
import { plantedBugs } from '../../tools/sim/bugs.js';
import { runSeed } from '../../tools/sim/run.js';
import { failingSeeds, firstCaught } from './sim-helpers.js';

describe('five replicas, random faults', () => {
  for (const mode of ['safety', 'liveness'] as const) {
    test(`${mode}: seeds 1..50`, () => {
      expect(failingSeeds(1, 50, { mode, replicas: 5 })).toEqual([]);
    });
  }
});

describe('changes of the group under faults: three voters among five replicas, one voter swapped for a spare at a time', () => {
  for (const mode of ['safety', 'liveness'] as const) {
    test(`${mode}: seeds 1..40`, () => {
      expect(failingSeeds(1, 40, { mode, replicas: 5, voters: 3 })).toEqual([]);
    });
  }
});

describe('scripted histories', () => {
  test('a change of the group cut short (the leader reaches only the newcomer, then dies): nothing committed without both majorities', () => {
    expect(failingSeeds(1, 20, { scenario: 'swap-cut-short', replicas: 5, voters: 3 })).toEqual([]);
  });

  test("Raft's Figure 8 (5 replicas): an old-epoch entry committed by a later leader is never overwritten", () => {
    expect(failingSeeds(1, 20, { scenario: 'figure-8', replicas: 5 })).toEqual([]);
  });

  test("KIP-279's fast double failover (3 replicas): nothing acknowledged lost, uncommitted entries dropped, the logs end the same", () => {
    expect(failingSeeds(1, 20, { scenario: 'double-failover', replicas: 3 })).toEqual([]);
    for (let seed = 1; seed <= 20; seed++) {
      const run = runSeed(seed, { scenario: 'double-failover', replicas: 3 });
      const logs = Object.values(run.finalLogs);
      expect(logs, `seed ${seed}`).toHaveLength(3);
      const longest = logs.reduce((a, b) => (a.length >= b.length ? a : b));
      // Every replica's committed log is a prefix of the longest; the acknowledged A0..A5 are all there.
      for (const log of logs) expect(longest.slice(0, log.length), `seed ${seed}`).toEqual(log);
      for (let index = 0; index < 6; index++) expect(longest.some((entry) => entry.endsWith(`:A${index}`)), `seed ${seed} A${index}`).toBe(true);
    }
  });

  test('a follower cut off part-way through catching up never out-ranks the complete log of the epoch before', () => {
    expect(failingSeeds(1, 20, { scenario: 'short-catch-up', replicas: 3 })).toEqual([]);
  });

  test('twenty kills of the serving leader, clients writing throughout: nothing acknowledged lost, every kill followed by a new serving leader', () => {
    expect(failingSeeds(1, 5, { scenario: 'leader-kills', replicas: 3 })).toEqual([]);
    const run = runSeed(1, { scenario: 'leader-kills', replicas: 3 });
    expect(run.failovers).toHaveLength(20);
  });

  test('a leader transfer whose old leader hears nothing after it: the target leads and writes, the old leader serves nothing', () => {
    expect(failingSeeds(1, 20, { scenario: 'transfer-cut-off', replicas: 3 })).toEqual([]);
    const run = runSeed(1, { scenario: 'transfer-cut-off', replicas: 3 });
    expect(run.reads).toBe(0);
    expect(run.appends.ok, "before and after the transfer").toBe(2);
  });

  test('KurrentDB #3472 / SIGSTOP: a deposed leader, awake and cut off, neither reads nor acknowledges', () => {
    expect(failingSeeds(1, 20, { scenario: 'deposed-leader', replicas: 3 })).toEqual([]);
    const run = runSeed(1, { scenario: 'deposed-leader', replicas: 3 });
    expect(run.reads).toBe(0);
  });
});

describe('the checker catches planted bugs', () => {
  const cases: { bug: string; how: Parameters<typeof firstCaught>[1]; within: number }[] = [
    { bug: 'ack-before-quorum', how: { mode: 'safety', replicas: 3 }, within: 40 },
    { bug: 'serve-uncommitted-tail', how: { mode: 'safety', replicas: 3 }, within: 40 },
    { bug: 'vote-for-any-log', how: { mode: 'safety', replicas: 3 }, within: 40 },
    { bug: 'elect-by-entry-epoch', how: { scenario: 'figure-8', replicas: 5 }, within: 20 },
    { bug: 'no-lease', how: { scenario: 'deposed-leader', replicas: 3 }, within: 5 },
    { bug: 'normal-with-short-log', how: { scenario: 'short-catch-up', replicas: 3 }, within: 5 },
    { bug: 'no-joint-consensus', how: { scenario: 'swap-cut-short', replicas: 5, voters: 3 }, within: 10 },
    { bug: 'serve-during-transfer', how: { scenario: 'transfer-cut-off', replicas: 3 }, within: 5 },
  ];
  test('every planted bug has a case', () => {
    expect(cases.map((entry) => entry.bug).sort()).toEqual(Object.keys(plantedBugs).sort());
  });
  for (const { bug, how, within } of cases) {
    test(`${bug} fails a seed within ${within}`, () => {
      const caught = firstCaught(within, { ...how, bug });
      expect(caught, `${bug} was not caught`).toBeDefined();
    });
  }
});
