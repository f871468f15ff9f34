import { describe, expect, test } from 'vitest';
import { movesMinimum } from '../../src/core/claim.js';
import { checkStaged, commitPlan, plan, PlanRefusal, samePlan, type StagedChange } from '../../src/core/plan.js';
import {
  addJoining,
  completeTransfer,
  createRing,
  futureOwners,
  markDown,
  memberNames,
  memberOf,
  memberStatus,
  ringFrom,
  type Ring,
} from '../../src/core/ring.js';
import { devMember, member, ownedCounts, settle, settleByHandoff, windowsDistinct } from '../helpers/cluster.js';

/**
 * core/plan.ts: Riak's staged changes turned into the ring they commit to.
 * The named walkthroughs (IorioDB's devrel, 5 to 6 nodes, leave, replace,
 * force-remove, force-replace), every refusal with its reason, and
 * plan/commit agreeing for a seed.
 */

const dev = [0, 1, 2, 3, 4, 5, 6, 7].map(devMember);
const name = (index: number) => dev[index]!.name;

/** A settled ring of `count` dev members on `size` partitions, built through plan as an operator would. */
function cluster(count: number, size = 64, targetN = 3, seed = 1): Ring {
  let ring = createRing('c1', size, dev[1]!, targetN);
  if (count === 1) return ring;
  const joins: StagedChange[] = [];
  for (let index = 2; index <= count; index++) joins.push({ kind: 'join', member: dev[index] ?? member(index) });
  ring = settle(plan(ring, joins, seed).ring);
  return ring;
}

function refusalOf(run: () => unknown): { reason: unknown; message: string } {
  try {
    run();
  } catch (error) {
    const details = (error as { details?: { reason_code?: unknown } }).details;
    return { reason: details?.reason_code, message: (error as Error).message };
  }
  throw new Error('expected a refusal');
}

describe('named walkthroughs', () => {
  test("IorioDB's devrel: 1 valid and 3 joining on 64 partitions become 4 valid with 16 each, after 48 transfers", () => {
    let ring = createRing('c1', 64, dev[1]!);
    for (const index of [2, 3, 4]) ring = addJoining(ring, dev[index]!);
    const planned = plan(ring, [], 42);
    expect(planned.summary.lines).toEqual([2, 3, 4].map((index) => ({ action: 'join', node: name(index) })));
    expect(planned.summary.transferCount).toBe(48);
    expect(planned.summary.transitions).toBe(1);
    expect(planned.summary.transfers).toEqual([2, 3, 4].map((index) => ({ source: name(1), target: name(index), count: 16 })));
    expect(planned.summary.ownership.map((row) => [row.node, row.statusBefore, row.statusAfter, row.before, row.after])).toEqual([
      [name(1), 'valid', 'valid', 64, 16],
      [name(2), 'joining', 'valid', 0, 16],
      [name(3), 'joining', 'valid', 0, 16],
      [name(4), 'joining', 'valid', 0, 16],
    ]);
    expect(planned.warnings).toEqual([]);
    expect(planned.summary.diverse).toBe(true);
    const pending = memberStatus(planned.ring);
    expect(pending.rows.map((row) => [row.node, row.ringPercent, row.pendingPercent])).toEqual([
      [name(1), 100, 25],
      [name(2), 0, 25],
      [name(3), 0, 25],
      [name(4), 0, 25],
    ]);
    const done = settleByHandoff(planned.ring);
    expect(memberStatus(done).rows.map((row) => [row.status, row.ringPercent, row.pendingPercent])).toEqual(Array(4).fill(['valid', 25, undefined]));
    expect(windowsDistinct(done.owners, 3)).toBe(true);
  });

  test('5 to 6 nodes on 64 partitions moves 10, the minimum (riak_core claim v2 moved 24)', () => {
    const five = cluster(5);
    const planned = plan(five, [{ kind: 'join', member: dev[6]! }], 7);
    expect(movesMinimum(five.owners, memberNames(planned.ring, ['valid']))).toBe(10);
    expect(planned.summary.transferCount).toBe(10);
    expect(planned.transfers.every((transfer) => transfer.target === name(6))).toBe(true);
    expect(planned.summary.diverse).toBe(true);
    expect([...ownedCounts(futureOwners(planned.ring)).values()].sort()).toEqual([10, 11, 11, 11, 11, 10].sort());
  });

  test('one node: a fresh ring plans nothing and is not diverse for n 3 (one node holds every replica)', () => {
    const ring = cluster(1);
    expect(plan(ring, [], 1).summary.lines).toEqual([]);
    expect(plan(ring, [], 1).summary.diverse).toBe(false);
  });

  test('two nodes: 32 each, and the plan warns that replicas cannot be on 3 distinct nodes', () => {
    const planned = plan(cluster(1), [{ kind: 'join', member: dev[2]! }], 3);
    expect(planned.summary.transferCount).toBe(32);
    expect(planned.warnings).toEqual([expect.stringMatching(/^not all replicas on distinct nodes/)]);
    expect(planned.summary.diverse).toBe(false);
  });

  test('leave 4 to 2: leavers hand everything off, then exit', () => {
    const four = cluster(4);
    const planned = plan(four, [{ kind: 'leave', node: name(3) }, { kind: 'leave', node: name(4) }], 5);
    expect(planned.summary.lines).toEqual([
      { action: 'leave', node: name(3) },
      { action: 'leave', node: name(4) },
    ]);
    expect(planned.summary.transferCount).toBe(32);
    expect(planned.ring.owners).toEqual(four.owners);
    expect(memberOf(planned.ring, name(3))?.status).toBe('leaving');
    expect(planned.summary.ownership.map((row) => row.after)).toEqual([32, 32, 0, 0]);
    let ring = planned.ring;
    for (const transfer of planned.transfers) ring = completeTransfer(ring, transfer.partition);
    expect(memberNames(ring, ['exiting'])).toEqual([name(3), name(4)]);
    expect(memberNames(ring, ['valid'])).toEqual([name(1), name(2)]);
  });

  test("replace: the new node takes the old one's partitions one for one, through transfers", () => {
    const four = cluster(4);
    const owned = four.owners.filter((owner) => owner === name(4)).length;
    const planned = plan(four, [{ kind: 'replace', node: name(4), by: dev[5]! }], 9);
    expect(planned.summary.lines).toEqual([{ action: 'replace', node: name(4), by: name(5) }]);
    expect(planned.summary.transfers).toEqual([{ source: name(4), target: name(5), count: owned }]);
    expect(futureOwners(planned.ring)).toEqual(four.owners.map((owner) => (owner === name(4) ? name(5) : owner)));
    expect(memberOf(planned.ring, name(4))?.status).toBe('leaving');
    expect(memberOf(planned.ring, name(5))?.status).toBe('valid');
    expect(planned.warnings).toEqual([]);
    expect(memberNames(settleByHandoff(planned.ring))).toEqual([1, 2, 3, 5].map(name));
  });

  test("replace by a node already in the ring as joining (Riak's cluster join, then cluster replace)", () => {
    const ring = addJoining(cluster(4), dev[5]!);
    const planned = plan(ring, [{ kind: 'replace', node: name(2), by: dev[5]! }], 3);
    expect(planned.summary.lines).toEqual([{ action: 'replace', node: name(2), by: name(5) }]);
    expect(memberOf(planned.ring, name(5))?.status).toBe('valid');
    expect(planned.transfers.every((transfer) => transfer.source === name(2) && transfer.target === name(5))).toBe(true);
  });

  test('a leave of a joining member makes it exiting at once', () => {
    const ring = addJoining(cluster(3), dev[5]!);
    const planned = plan(ring, [{ kind: 'leave', node: name(5) }], 3);
    expect(memberOf(planned.ring, name(5))?.status).toBe('exiting');
    expect(planned.transfers).toEqual([]);
  });

  test('force-remove: the node is gone at once, its partitions reassigned without transfers, and the plan says its replicas are lost', () => {
    const seven = cluster(7);
    const owned = seven.owners.filter((owner) => owner === name(5)).length;
    const planned = plan(seven, [{ kind: 'force-remove', node: name(5) }], 4);
    expect(memberOf(planned.ring, name(5))).toBeUndefined();
    expect(planned.ring.owners).not.toContain(name(5));
    expect(planned.summary.reassignedCount).toBe(owned);
    expect(planned.summary.transferCount).toBe(0);
    expect(planned.summary.lost).toEqual([name(5)]);
    expect(planned.warnings[0]).toBe(`All of '${name(5)}' replicas will be lost: what it held survives only where other replicas have it`);
    expect(planned.summary.diverse).toBe(true);
  });

  test('force-replace: the new node owns the old one’s partitions at once', () => {
    const four = cluster(4);
    const planned = plan(four, [{ kind: 'force-replace', node: name(4), by: dev[6]! }], 4);
    expect(planned.ring.owners).toEqual(four.owners.map((owner) => (owner === name(4) ? name(6) : owner)));
    expect(planned.transfers).toEqual([]);
    expect(planned.summary.reassigned).toEqual([{ source: name(4), target: name(6), count: 16 }]);
    expect(memberNames(planned.ring)).toEqual([1, 2, 3, 6].map(name));
    expect(planned.summary.lost).toEqual([name(4)]);
  });

  test('a leave of a node that owns nothing makes it exiting at once', () => {
    let ring = createRing('c1', 8, member(0));
    ring = settle(plan(ring, Array.from({ length: 9 }, (_, index) => ({ kind: 'join', member: member(index + 1) }) as const), 1).ring);
    const idle = memberNames(ring).find((node) => !ring.owners.includes(node))!;
    expect(idle).toBeDefined();
    const planned = plan(ring, [{ kind: 'leave', node: idle }], 1);
    expect(memberOf(planned.ring, idle)?.status).toBe('exiting');
    expect(planned.transfers).toEqual([]);
  });
});

describe('pending transfers and down nodes', () => {
  const joining = () => plan(cluster(4), [{ kind: 'join', member: dev[5]! }], 3).ring;

  test('joins, leaves and replaces wait until transfers finish', () => {
    for (const change of [
      { kind: 'join', member: dev[6]! },
      { kind: 'leave', node: name(2) },
      { kind: 'replace', node: name(2), by: dev[6]! },
    ] as const) {
      expect(refusalOf(() => plan(joining(), [change], 1)).reason).toBe(PlanRefusal.transfersPending);
    }
  });

  test('force-remove of a node with transfers pending: those from it finish at once, those to it are dropped and replanned', () => {
    const ring = joining();
    const toNew = ring.next.length;
    const planned = plan(ring, [{ kind: 'force-remove', node: name(5) }], 2);
    expect(toNew).toBeGreaterThan(0);
    expect(planned.ring.next.every((transfer) => transfer.target !== name(5))).toBe(true);
    expect(memberOf(planned.ring, name(5))).toBeUndefined();
    const future = futureOwners(planned.ring);
    expect([...ownedCounts(future).values()]).toEqual([16, 16, 16, 16]);
  });

  test('force-replace with transfers pending renames the node in them', () => {
    const planned = plan(joining(), [{ kind: 'force-replace', node: name(5), by: dev[6]! }], 2);
    expect(planned.ring.next.length).toBeGreaterThan(0);
    expect(planned.ring.next.every((transfer) => transfer.target === name(6))).toBe(true);
  });

  test('a down node must be brought back, force-removed or force-replaced before data moves', () => {
    const ring = markDown(cluster(4), name(3));
    expect(refusalOf(() => plan(ring, [{ kind: 'join', member: dev[5]! }], 1))).toEqual({
      reason: PlanRefusal.memberDown,
      message: `'${name(3)}' is down: bring it back, or stage a force-remove or force-replace for it`,
    });
    expect(refusalOf(() => plan(ring, [{ kind: 'leave', node: name(3) }], 1)).reason).toBe(PlanRefusal.memberDown);
    expect(plan(ring, [{ kind: 'force-remove', node: name(3) }, { kind: 'join', member: dev[5]! }], 1).summary.diverse).toBe(true);
    expect(memberNames(plan(ring, [{ kind: 'force-replace', node: name(3), by: dev[6]! }], 1).ring)).toEqual([1, 2, 4, 6].map(name));
  });
});

describe('refusals', () => {
  const four = cluster(4);
  const cases: [string, StagedChange[], PlanRefusal, RegExp][] = [
    ['a join of a member', [{ kind: 'join', member: dev[2]! }], PlanRefusal.alreadyMember, /is already a member of the cluster/],
    ['a leave of a stranger', [{ kind: 'leave', node: 'x@y' }], PlanRefusal.notMember, /'x@y' is not a member of the cluster/],
    ['two changes for one node', [{ kind: 'leave', node: name(2) }, { kind: 'force-remove', node: name(2) }], PlanRefusal.alreadyStaged, /already has a staged change/],
    ['a force-remove of the claimant', [{ kind: 'force-remove', node: name(1) }], PlanRefusal.isClaimant, /is the claimant .* cannot forcefully remove itself/],
    ['a force-replace of the claimant', [{ kind: 'force-replace', node: name(1), by: dev[5]! }], PlanRefusal.isClaimant, /cannot forcefully replace itself/],
    ['a replacement that is a member', [{ kind: 'replace', node: name(2), by: dev[3]! }], PlanRefusal.invalidReplacement, /only newly joining nodes can be used for replacement/],
    ['one replacement for two nodes', [{ kind: 'replace', node: name(2), by: dev[5]! }, { kind: 'replace', node: name(3), by: dev[5]! }], PlanRefusal.alreadyReplacement, /is already staged to replace another node/],
    ['a replacement that also joins', [{ kind: 'replace', node: name(2), by: dev[5]! }, { kind: 'join', member: dev[5]! }], PlanRefusal.invalidReplacement, /not a valid replacement/],
    ['every member leaving', [2, 3, 4].map((index) => ({ kind: 'leave', node: name(index) }) as const).concat([{ kind: 'leave', node: name(1) }]), PlanRefusal.noValidMember, /no valid member/],
  ];
  test.each(cases)('refuses %s', (_, staged, reason, message) => {
    const refused = refusalOf(() => plan(four, staged, 1));
    expect(refused.reason).toBe(reason);
    expect(refused.message).toMatch(message);
  });

  test('a leave of the only member, and a second leave of a leaving member', () => {
    expect(refusalOf(() => plan(cluster(1), [{ kind: 'leave', node: name(1) }], 1)).reason).toBe(PlanRefusal.onlyMember);
    const leaving = plan(four, [{ kind: 'leave', node: name(4) }], 1).ring;
    expect(refusalOf(() => checkStaged(leaving, [{ kind: 'leave', node: name(4) }]))).toEqual({
      reason: PlanRefusal.alreadyLeaving,
      message: `'${name(4)}' is already in the process of leaving the cluster`,
    });
  });

  test('a malformed node name is an invalid parameter', () => {
    expect(() => plan(four, [{ kind: 'join', member: { ...dev[5]!, name: 'iorio5' } }], 1)).toThrow(/name@host/);
  });

  test('a ring never grows past 64 members', () => {
    let ring = createRing('c1', 64, member(0));
    ring = settle(plan(ring, Array.from({ length: 63 }, (_, index) => ({ kind: 'join', member: member(index + 1) }) as const), 1).ring);
    expect(refusalOf(() => plan(ring, [{ kind: 'join', member: member(64) }], 1)).reason).toBe(PlanRefusal.tooManyMembers);
  });
});

describe('plan and commit', () => {
  test('the same ring, changes and seed give the same plan; commit installs it', () => {
    const three = cluster(3);
    const staged: StagedChange[] = [{ kind: 'join', member: dev[5]! }, { kind: 'leave', node: name(2) }];
    const first = plan(three, staged, 99);
    expect(plan(three, staged, 99)).toEqual(first);
    expect(plan(three, [...staged].reverse(), 99)).toEqual(first);
    const committed = commitPlan(three, staged, 99, first.ring);
    expect(samePlan(committed, first.ring)).toBe(true);
    expect(committed.version).toBe(three.version + 1);
  });

  test('commit refuses when the plan changed since it was shown', () => {
    const four = cluster(4);
    const staged: StagedChange[] = [{ kind: 'join', member: dev[5]! }];
    const shown = plan(four, staged, 1).ring;
    const moved = ringFrom({ ...four, version: four.version + 1, owners: [...four.owners].reverse() });
    expect(refusalOf(() => commitPlan(moved, staged, 1, shown))).toEqual({
      reason: PlanRefusal.planChanged,
      message: "The plan has changed. Verify with 'iorio-admin cluster plan' before committing",
    });
    expect(refusalOf(() => commitPlan(four, [], 1, shown)).reason).toBe(PlanRefusal.nothingPlanned);
  });

  test('the claimant moves when the claimant leaves', () => {
    const planned = plan(cluster(3), [{ kind: 'leave', node: name(1) }], 1);
    expect(planned.ring.claimant).toBe(name(2));
  });
});
