import { fc, test as propertyTest } from '@fast-check/vitest';
import { afterAll, describe, expect, test } from 'vitest';
import {
  chromaticNumber,
  claim,
  diversityPossible,
  movesMinimum,
  notDistinctWarning,
  stripedLayout,
  violations,
} from '../../src/core/claim.js';
import { commitPlan, plan, samePlan, type StagedChange } from '../../src/core/plan.js';
import { createRing, futureOwners, memberNames, ringFrom, ringsEqual, type Ring } from '../../src/core/ring.js';
import { mulberry32 } from '../helpers/clock.js';
import { member, ownedCounts, settle, windowsDistinct } from '../helpers/cluster.js';

/**
 * core/claim.ts through core/plan.ts, the code `cluster plan` runs.
 *
 * The guarantee: Q in 8..1024 (powers of two), M in 1..64, N = targetN in
 * 1..8:
 * - balance: every member owns floor(Q/M) or ceil(Q/M) partitions;
 * - diversity: every N consecutive partitions (across the wrap) are on N
 *   distinct nodes whenever some layout can do it, that is when N == 1, or
 *   M >= Q, or M >= chi(Q, N) = N + ceil(r/q) for Q = q*N + r (Prowse &
 *   Woodall). The striped fallback reaches it for every (M, Q, N) in the
 *   range (checked exhaustively below), and claim takes the fallback whenever
 *   its fast path does not get there; otherwise `diverse` is false with
 *   Riak's warning.
 * - movement, for one node joining or leaving a diverse layout of Q >= 64
 *   with M after the change (N > 1):
 *     M >= 2N+1:        join <= minimum + 4, leave <= 1.25 x minimum + 4
 *     M in 2N-1 .. 2N:  <= 1.5 x minimum + 8
 *     N < M < 2N-1 and M == N: not bounded here (a diverse layout with so
 *     few members is close to a fixed stripe, and reaching one moves up to
 *     about 4 x the minimum; the worst ratios seen are printed).
 *   with N == 1 exactly the minimum, which is what a join's newcomers or a
 *   leave's leavers own (movesMinimum).
 */

const sizes = [8, 16, 32, 64, 128, 256, 512, 1024] as const;

/** Worst moves/minimum ratios seen by the properties, by kind of change, printed at the end for the record. */
const worst = new Map<string, { ratio: number; example: string }>();
function record(kind: string, moves: number, minimum: number, example: string): void {
  const ratio = minimum === 0 ? (moves === 0 ? 1 : Infinity) : moves / minimum;
  const seen = worst.get(kind);
  if (seen === undefined || ratio > seen.ratio) worst.set(kind, { ratio, example });
}
afterAll(() => {
  const lines = [...worst.entries()].sort().map(([kind, { ratio, example }]) => `  ${kind.padEnd(44)} ${ratio.toFixed(2)}  ${example}`);
  if (lines.length > 0) console.log(`claim: worst moves / minimum seen\n${lines.join('\n')}`);
});

function expectBalanced(owners: readonly string[], members: readonly string[]): void {
  const counts = ownedCounts(owners);
  const low = Math.floor(owners.length / members.length);
  for (const node of members) expect([low, Math.ceil(owners.length / members.length)]).toContain(counts.get(node) ?? 0);
  for (const owner of counts.keys()) expect(members).toContain(owner);
}

describe('striped layout (the fallback)', () => {
  test('balanced for every M in 1..64, Q in 8..1024, N in 1..8; diverse exactly when diversityPossible says so', () => {
    for (let targetN = 1; targetN <= 8; targetN++) {
      for (const size of sizes) {
        for (let memberCount = 1; memberCount <= 64; memberCount++) {
          const layout = stripedLayout(size, memberCount, targetN);
          const owners = Array.from(layout, (index) => `m${index}`);
          const case_ = `M ${memberCount}, Q ${size}, N ${targetN}`;
          const counts = new Array<number>(memberCount).fill(0);
          for (const index of layout) counts[index]!++;
          expect(counts.every((count) => count === Math.floor(size / memberCount) || count === Math.ceil(size / memberCount)), case_).toBe(true);
          expect(windowsDistinct(owners, targetN), case_).toBe(diversityPossible(size, memberCount, targetN));
          expect(violations(owners, targetN) === 0, case_).toBe(windowsDistinct(owners, targetN));
        }
      }
    }
  });

  test.each([
    [64, 3, 3, false, 'Q is not a multiple of N'],
    [64, 4, 3, true, 'chi(64, 3) = 4'],
    [64, 4, 4, true, 'M == N and N divides Q'],
    [64, 2, 3, false, 'M < N'],
    [16, 5, 5, false, 'chi(16, 5) = 6'],
    [16, 6, 5, true, ''],
    [8, 7, 5, false, 'chi(8, 5) = 8: every partition on its own node'],
    [8, 9, 5, true, 'M > Q'],
    [1024, 1, 1, true, 'N == 1'],
  ])('diversityPossible(Q %i, M %i, N %i) is %s (%s)', (size, memberCount, targetN, possible) => {
    expect(diversityPossible(size, memberCount, targetN)).toBe(possible);
    expect(memberCount >= chromaticNumber(size, targetN) || memberCount >= size || targetN === 1).toBe(possible);
  });
});

describe('claim: named cases', () => {
  const names = (count: number, from = 0) => Array.from({ length: count }, (_, index) => member(from + index).name);
  const single = (size: number) => new Array<string>(size).fill(member(0).name);

  test('one member owns everything and is diverse only for N 1', () => {
    expect(claim({ size: 64, owners: single(64), members: names(1), targetN: 3, seed: 1 })).toMatchObject({ moves: 0, diverse: false, path: 'unchanged' });
    expect(claim({ size: 64, owners: single(64), members: names(1), targetN: 1, seed: 1 }).diverse).toBe(true);
  });

  test("two members with N 3: 32 each, and Riak's warning", () => {
    const result = claim({ size: 64, owners: single(64), members: names(2), targetN: 3, seed: 1 });
    expectBalanced(result.owners, names(2));
    expect(result.moves).toBe(32);
    expect(result.diverse).toBe(false);
    expect(result.warning).toMatch(new RegExp(`^${notDistinctWarning}`));
  });

  test('3 members, N 3, 64 partitions cannot be diverse: balanced, minimal movement, and the warning says why', () => {
    const result = claim({ size: 64, owners: single(64), members: names(3), targetN: 3, seed: 1 });
    expectBalanced(result.owners, names(3));
    expect(result.moves).toBe(movesMinimum(single(64), names(3)));
    expect(result.warning).toBe(`${notDistinctWarning}: 3 members cannot place every 3 consecutive partitions of a 64-partition ring on distinct nodes (it takes 4)`);
  });

  test('5 to 6 members on 64 partitions moves 10, the minimum', () => {
    const five = claim({ size: 64, owners: single(64), members: names(5), targetN: 3, seed: 1 });
    const six = claim({ size: 64, owners: five.owners, members: names(6), targetN: 3, seed: 2 });
    expect(six.moves).toBe(10);
    expect(movesMinimum(five.owners, names(6))).toBe(10);
    expect(six.diverse).toBe(true);
    expect(windowsDistinct(six.owners, 3)).toBe(true);
    expectBalanced(six.owners, names(6));
  });

  test('M == N where N divides Q is diverse (only a stripe is)', () => {
    const result = claim({ size: 64, owners: single(64), members: names(4), targetN: 4, seed: 3 });
    expect(result.diverse).toBe(true);
    expect(windowsDistinct(result.owners, 4)).toBe(true);
    expectBalanced(result.owners, names(4));
  });

  test('more members than partitions: each owns at most one', () => {
    const result = claim({ size: 8, owners: single(8), members: names(64), targetN: 5, seed: 3 });
    expect(new Set(result.owners).size).toBe(8);
    expect(result.diverse).toBe(true);
    expect(windowsDistinct(result.owners, 5)).toBe(true);
  });

  test('violations counts pairs closer than targetN sharing an owner, across the wrap', () => {
    expect(violations(['a', 'b', 'a', 'c', 'd', 'e', 'f', 'g'], 3)).toBe(1);
    expect(violations(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'a'], 3)).toBe(1);
    expect(violations(['a', 'b', 'c', 'd', 'e', 'f', 'a', 'h'], 3)).toBe(1);
    expect(violations(new Array<string>(8).fill('a'), 3)).toBe(16);
    expect(violations(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'], 8)).toBe(0);
  });

  test('a claim is deterministic for a seed, and its result is settled: claiming again moves nothing', () => {
    const input = { size: 256, owners: single(256), members: names(13), targetN: 4, seed: 77 };
    const first = claim(input);
    expect(claim(input)).toEqual(first);
    expect(claim({ ...input, owners: first.owners, seed: 5 })).toMatchObject({ moves: 0, path: 'unchanged' });
  });
});

// ---------------------------------------------------------------------------
// Properties, through plan.

const sizeArbitrary = fc.oneof(
  { arbitrary: fc.constantFrom(8, 16, 32), weight: 3 },
  { arbitrary: fc.constantFrom(64, 128), weight: 4 },
  { arbitrary: fc.constant(256), weight: 2 },
  { arbitrary: fc.constantFrom(512, 1024), weight: 1 },
);

const stepArbitrary = fc.record({
  joins: fc.oneof({ arbitrary: fc.constant(0), weight: 2 }, { arbitrary: fc.integer({ min: 1, max: 3 }), weight: 2 }, { arbitrary: fc.integer({ min: 4, max: 40 }), weight: 1 }),
  leaves: fc.oneof({ arbitrary: fc.constant(0), weight: 2 }, { arbitrary: fc.integer({ min: 1, max: 3 }), weight: 2 }, { arbitrary: fc.integer({ min: 4, max: 40 }), weight: 1 }),
  pick: fc.nat(),
  seed: fc.integer(),
});

/** Staged changes for a step: up to `joins` new members (64 at most in all) and `leaves` random leavers (one member stays). */
function stagedFor(ring: Ring, step: { joins: number; leaves: number; pick: number }, nextIndex: { value: number }): StagedChange[] {
  const present = memberNames(ring);
  const random = mulberry32(step.pick);
  const leavers = [...present].sort(() => random() - 0.5).slice(0, Math.min(step.leaves, present.length - 1));
  const joins = Math.min(step.joins, 64 - present.length);
  const staged: StagedChange[] = leavers.map((node) => ({ kind: 'leave', node }));
  for (let index = 0; index < joins; index++) staged.push({ kind: 'join', member: member(nextIndex.value++) });
  return staged;
}

/** Plans a step and checks what every plan owes: balance, diversity when possible, its warning, determinism, settledness. */
function checkStep(ring: Ring, staged: readonly StagedChange[], seed: number): Ring {
  const planned = plan(ring, staged, seed);
  const valid = memberNames(planned.ring, ['valid']);
  const future = futureOwners(planned.ring);
  const { size, targetN } = ring;
  const where = `Q ${size}, N ${targetN}, M ${memberNames(ring).length} -> ${valid.length}, seed ${seed}`;
  expectBalanced(future, valid);
  if (diversityPossible(size, valid.length, targetN)) expect(windowsDistinct(future, targetN), where).toBe(true);
  expect(planned.summary.diverse, where).toBe(windowsDistinct(future, targetN));
  if (!planned.summary.diverse) expect(planned.warnings.some((warning) => warning.startsWith(notDistinctWarning)), where).toBe(true);
  if (size <= 128) {
    expect(plan(ring, staged, seed), where).toEqual(planned);
    expect(samePlan(commitPlan(ring, staged, seed, planned.ring), planned.ring)).toBe(true);
  }
  const settled = settle(planned.ring);
  expect(settled.owners).toEqual(future);
  expect(claim({ size, owners: settled.owners, members: valid, targetN, seed: seed + 1 }).moves, `${where}: a second claim moves nothing`).toBe(0);
  return settled;
}

describe('claim through plan: properties', () => {
  propertyTest.prop(
    [
      fc.record({
        size: sizeArbitrary,
        targetN: fc.oneof({ arbitrary: fc.integer({ min: 1, max: 5 }), weight: 4 }, { arbitrary: fc.integer({ min: 6, max: 8 }), weight: 1 }),
        steps: fc.array(stepArbitrary, { minLength: 1, maxLength: 4 }),
      }),
    ],
    { numRuns: 120 },
  )('any history of bulk joins and leaves: balanced, diverse when possible, deterministic, settled', ({ size, targetN, steps }) => {
    const nextIndex = { value: 1 };
    let ring = createRing('c1', size, member(0), targetN);
    for (const step of steps) {
      const staged = stagedFor(ring, step, nextIndex);
      if (staged.length === 0) continue;
      const before = futureOwners(ring);
      const wasDiverse = windowsDistinct(before, targetN);
      ring = checkStep(ring, staged, step.seed);
      if (staged.length > 1 && wasDiverse && size >= 64) {
        const minimum = movesMinimum(before, memberNames(ring, ['valid']));
        const moves = before.filter((owner, partition) => owner !== ring.owners[partition]).length;
        const finalCount = memberNames(ring).length;
        const band = targetN === 1 ? 'N 1' : finalCount >= 2 * targetN - 1 ? 'M >= 2N-1' : 'M < 2N-1';
        record(`bulk change from diverse, Q >= 64, ${band}`, moves, minimum, `Q ${size} N ${targetN} ${staged.length} changes -> M ${memberNames(ring).length}: ${moves}/${minimum}`);
      }
    }
  });

  const singleChange = fc.record({
    size: fc.oneof({ arbitrary: fc.constantFrom(64, 128), weight: 4 }, { arbitrary: fc.constant(256), weight: 2 }, { arbitrary: fc.constantFrom(512, 1024), weight: 1 }),
    targetN: fc.integer({ min: 1, max: 5 }),
    memberCount: fc.integer({ min: 2, max: 63 }),
    warmUp: fc.option(stepArbitrary, { nil: undefined }),
    join: fc.boolean(),
    pick: fc.nat(),
    seed: fc.integer(),
  });

  propertyTest.prop([singleChange], { numRuns: 100 })('one node joining or leaving a diverse layout moves close to the minimum', ({ size, targetN, memberCount, warmUp, join, pick, seed }) => {
    const nextIndex = { value: memberCount };
    const start = claim({ size, owners: new Array<string>(size).fill(member(0).name), members: Array.from({ length: memberCount }, (_, index) => member(index).name), targetN, seed });
    let ring = ringFrom({ cluster: 'c1', version: 2, size, targetN, members: Array.from({ length: memberCount }, (_, index) => ({ ...member(index), status: 'valid' as const })), owners: start.owners, next: [] });
    if (warmUp !== undefined) {
      const staged = stagedFor(ring, warmUp, nextIndex);
      if (staged.length > 0) ring = settle(plan(ring, staged, warmUp.seed).ring);
    }
    const present = memberNames(ring);
    if ((join && present.length >= 64) || (!join && present.length < 2)) return;
    const before = ring.owners;
    if (targetN > 1 && !windowsDistinct(before, targetN)) return;
    const staged: StagedChange[] = join ? [{ kind: 'join', member: member(nextIndex.value++) }] : [{ kind: 'leave', node: present[pick % present.length]! }];
    const after = checkStep(ring, staged, seed + 1);
    const valid = memberNames(after, ['valid']);
    const minimum = movesMinimum(before, valid);
    const moves = before.filter((owner, partition) => owner !== after.owners[partition]).length;
    const finalCount = valid.length;
    const where = `${join ? 'join' : 'leave'} Q ${size} N ${targetN} M ${present.length} -> ${finalCount}: ${moves} moves, minimum ${minimum}`;
    const kind = join ? 'join' : 'leave';
    if (targetN === 1) {
      expect(moves, where).toBe(minimum);
    } else if (finalCount >= 2 * targetN + 1) {
      record(`${kind} of one, M >= 2N+1`, moves, minimum, where);
      expect(moves, where).toBeLessThanOrEqual(join ? minimum + 4 : Math.ceil(1.25 * minimum) + 4);
    } else if (finalCount >= 2 * targetN - 1) {
      record(`${kind} of one, M in 2N-1..2N`, moves, minimum, where);
      expect(moves, where).toBeLessThanOrEqual(Math.ceil(1.5 * minimum) + 8);
    } else {
      record(`${kind} of one, M <= 2N-2 (not bounded)`, moves, minimum, where);
    }
  });
});

describe('plan is stable', () => {
  test('plan(ring, staged, seed) gives the same ring however often it is computed, and commit agrees', () => {
    let ring = createRing('c1', 128, member(0), 3);
    ring = settle(plan(ring, Array.from({ length: 6 }, (_, index) => ({ kind: 'join', member: member(index + 1) }) as const), 1).ring);
    const staged: StagedChange[] = [{ kind: 'leave', node: member(2).name }, { kind: 'join', member: member(9) }];
    const first = plan(ring, staged, 12345);
    for (let again = 0; again < 3; again++) expect(ringsEqual(plan(ring, staged, 12345).ring, first.ring)).toBe(true);
    expect(samePlan(commitPlan(ring, staged, 12345, first.ring), first.ring)).toBe(true);
  });
});
