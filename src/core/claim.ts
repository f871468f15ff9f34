/**
 * Partition claim: who owns each partition of the ring after a membership
 * change. Pure and deterministic: the same input and seed give the same
 * owners (plan computes with a seed, commit recomputes with it and compares).
 *
 * Q partitions (a power of two), M members, N = targetN. The result is:
 *
 * - balanced: every member owns floor(Q/M) or ceil(Q/M) partitions (with
 *   M > Q, some own none and none owns more than one);
 * - diverse whenever that is possible: no two partitions closer than N on
 *   the ring (across the wrap) have one owner, so every N consecutive
 *   partitions are on N distinct nodes. It is possible exactly when N == 1,
 *   or M >= Q, or M >= chi(Q, N) = N + ceil(r/q) where Q = q*N + r: chi is
 *   the chromatic number of the (N-1)-th power of a cycle of length Q
 *   (Prowse & Woodall), so no layout at all exists with fewer members; with
 *   chi or more members a balanced one does (stripedLayout builds it; the
 *   tests check every M in 1..64, every Q in 8..1024 and every N in
 *   1..targetNMax). So with M < N, or M == N and N not dividing Q, or e.g.
 *   3 members with N 3 on 64 partitions, `diverse` is false and `warning`
 *   says so in Riak's words ("not all replicas on distinct nodes").
 * - close to the minimal movement. The minimum is what the leavers own plus
 *   each member's excess over its share (movesMinimum): for a join, what the
 *   newcomers end up owning. The fast path moves only that: it frees the
 *   leavers' partitions and the excess (the partitions farthest from other
 *   freed ones, so that receivers can space theirs), then hands them to the
 *   members under their share by a maximum matching (a partition may go to a
 *   member with no partition closer than N; which members get the Q mod M
 *   extra partitions is left open), or greedily, the most constrained
 *   partition first, whichever needs fewer repairs; owner swaps then remove
 *   what violations remain, and swaps that send partitions back home polish
 *   the result. Only when that cannot reach a diverse layout is the striped
 *   layout used, aligned to the current owners (the rotation and member
 *   order that keep the most partitions in place).
 *
 *   With at most N members every preflist holds every member whatever the
 *   layout, so there claim only balances, with the minimal movement (except
 *   M == N with N dividing Q, where the diverse stripe is required and
 *   reached). A join that leaves 2N-1 or more members moves within a few
 *   partitions of the minimum; a leave can cost more when the layout is
 *   stripe-like (every partition of the leaver then has the same N-1
 *   neighbours on each side, which cannot take it; fills break ties by a
 *   seeded draw per partition so as not to build stripes), and with fewer
 *   than 2N-1 members a diverse layout is nearly a fixed stripe and reaching
 *   one can move up to about 4 x the minimum. test/unit/claim.test.ts states
 *   and checks the bounds.
 *
 * riak_core's claim v2 broke balance and spacing on bulk joins
 * (docs/claim-fixes.md) and moved 24 partitions going from 5 to 6 nodes on
 * 64; claim v4 (riak_core_claim_binring_alg) swaps owners of a repeated
 * small ring. This claim keeps v4's idea of swapping but starts from the
 * minimal movement instead of from a fresh layout.
 */
import { assert } from './errors.js';
import {
  claimAlignRotationsMax,
  claimPolishPassesMax,
  claimRepairAttemptsMax,
  claimRepairSwapsMax,
  ringSizeMax,
  ringSizeMin,
  stripedSearchStepsMax,
  targetNMax,
} from './limits.js';

/** Riak's words when some N consecutive partitions share a node. */
export const notDistinctWarning = 'not all replicas on distinct nodes';

export const ClaimPath = {
  /** The owners already were balanced and diverse (or as diverse as they can be): nothing moves. */
  unchanged: 'unchanged',
  /** Only what balance needs moved, with owner swaps to keep replicas distinct. */
  fast: 'fast',
  /** A freshly striped layout aligned to the current owners (the fast path could not get diverse). */
  striped: 'striped',
} as const;
export type ClaimPath = (typeof ClaimPath)[keyof typeof ClaimPath];

export interface ClaimInput {
  /** Partitions in the ring: a power of two in ringSizeMin..ringSizeMax. */
  readonly size: number;
  /** Owner of each partition now; names that are not in `members` give their partitions up. */
  readonly owners: readonly string[];
  /** Who owns partitions after the change, in a stable order (ties go to the earlier). */
  readonly members: readonly string[];
  /** Replicas that must be on distinct nodes: the spacing claim aims for. */
  readonly targetN: number;
  /** Breaks ties; the same seed gives the same owners. */
  readonly seed: number;
}

export interface ClaimResult {
  readonly owners: string[];
  /** Every targetN consecutive partitions, across the wrap, are on targetN distinct nodes. */
  readonly diverse: boolean;
  /** Partitions whose owner changed. */
  readonly moves: number;
  readonly path: ClaimPath;
  /** Set when not diverse: Riak's "not all replicas on distinct nodes" and why. */
  readonly warning?: string;
}

/** Computes who owns each partition after a change: balanced, diverse when possible, moving little. */
export function claim(input: ClaimInput): ClaimResult {
  checkInput(input);
  const context = buildContext(input);
  const quota = quotasOf(context.original, context.memberCount);
  if (isSettled(context, context.original, quota)) return result(context, context.original, ClaimPath.unchanged);
  const fast = fastPath(context, quota);
  if (!context.spacing || violationCount(context, fast) === 0) return result(context, fast, ClaimPath.fast);
  const striped = alignedStriped(context);
  return better(context, fast, striped) === fast ? result(context, fast, ClaimPath.fast) : result(context, striped, ClaimPath.striped);
}

/** Whether some balanced layout puts every targetN consecutive partitions on distinct nodes. */
export function diversityPossible(size: number, memberCount: number, targetN: number): boolean {
  if (targetN <= 1 || memberCount >= size) return true;
  return memberCount >= chromaticNumber(size, targetN);
}

/** The fewest members that can own a ring of `size` partitions with every targetN consecutive ones distinct. */
export function chromaticNumber(size: number, targetN: number): number {
  if (targetN <= 1) return 1;
  if (size <= targetN) return size;
  const rounds = Math.floor(size / targetN);
  return targetN + Math.ceil((size % targetN) / rounds);
}

/** Pairs of partitions closer than targetN on the ring (across the wrap) that share an owner. */
export function violations(owners: readonly string[], targetN: number): number {
  const size = owners.length;
  const offsets = neighbourOffsets(size, targetN);
  let twice = 0;
  for (let partition = 0; partition < size; partition++) {
    for (const offset of offsets) if (owners[partition] === owners[(partition + offset) % size]) twice++;
  }
  return twice / 2;
}

/** Every targetN consecutive partitions, across the wrap, have distinct owners. */
export function isDiverse(owners: readonly string[], targetN: number): boolean {
  return violations(owners, targetN) === 0;
}

/** Fewest partitions any balanced claim must move: the leavers' partitions and the members' excess over their share. */
export function movesMinimum(owners: readonly string[], members: readonly string[]): number {
  const index = new Map(members.map((name, position) => [name, position]));
  const original = Int32Array.from(owners, (name) => index.get(name) ?? -1);
  const quota = quotasOf(original, members.length);
  const counts = countsOf(original, members.length);
  let kept = 0;
  for (let member = 0; member < members.length; member++) kept += Math.min(counts[member]!, quota[member]!);
  return owners.length - kept;
}

/**
 * The canonical balanced layout of `memberCount` members (as indexes) on a
 * ring of `size`: stripes 0, 1, ... M-1, 0, 1, ...; when the last stripe is
 * too short for the wrap (0 < Q mod M < N), rows of the stripe with holes
 * spread evenly (Riak's tail-violation fix, generalised), and for the few
 * small rings where neither works, a bounded backtracking search. Diverse
 * whenever diversityPossible() says it can be.
 */
export function stripedLayout(size: number, memberCount: number, targetN: number): Int32Array {
  const stripes = Int32Array.from({ length: size }, (_, partition) => partition % memberCount);
  const tail = size % memberCount;
  if (memberCount >= size || targetN <= 1 || tail === 0 || tail >= targetN) return stripes;
  if (!diversityPossible(size, memberCount, targetN)) return stripes;
  for (const arrangement of rowArrangements) {
    for (let offset = 0; offset < memberCount; offset++) {
      const rows = rowsWithHoles(size, memberCount, offset, arrangement);
      if (layoutViolations(rows, targetN) === 0) return rows;
    }
  }
  return searchLayout(size, memberCount, targetN) ?? stripes;
}

// ---------------------------------------------------------------------------
// Context: the input as member indexes.

interface Context {
  readonly size: number;
  readonly memberCount: number;
  readonly targetN: number;
  readonly members: readonly string[];
  /** Owner of each partition now, as a member index; -1 for a name that is not a member. */
  readonly original: Int32Array;
  /** Offsets (mod size, both directions, each once) of the partitions closer than targetN. */
  readonly offsets: readonly number[];
  /**
   * Spacing is worth moving partitions for: targetN > 1, fewer members than
   * partitions, and more than targetN members, or exactly targetN when that
   * can be diverse. With targetN members or fewer every preflist holds every
   * member whatever the layout (preflists take distinct nodes), so then only
   * balance and movement count.
   */
  readonly spacing: boolean;
  readonly feasible: boolean;
  /** Seeded tie-breakers, one per partition and one per member. */
  readonly partitionRank: Float64Array;
  readonly memberRank: Float64Array;
  readonly seed: number;
}

function checkInput(input: ClaimInput): void {
  const { size, owners, members, targetN, seed } = input;
  assert(Number.isInteger(size) && size >= ringSizeMin && size <= ringSizeMax && (size & (size - 1)) === 0, 'ring size is a power of two in range');
  assert(owners.length === size, 'one owner per partition');
  assert(members.length >= 1, 'at least one member claims');
  assert(new Set(members).size === members.length, 'members are distinct');
  assert(Number.isInteger(targetN) && targetN >= 1 && targetN <= targetNMax, 'targetN in range');
  assert(Number.isInteger(seed), 'seed is an integer');
}

function buildContext(input: ClaimInput): Context {
  const { size, owners, members, targetN, seed } = input;
  const index = new Map(members.map((name, position) => [name, position]));
  const random = mulberry32(seed);
  const partitionRank = Float64Array.from({ length: size }, () => random());
  const memberRank = Float64Array.from({ length: members.length }, () => random());
  const feasible = diversityPossible(size, members.length, targetN);
  return {
    size,
    memberCount: members.length,
    targetN,
    members,
    original: Int32Array.from(owners, (name) => index.get(name) ?? -1),
    offsets: neighbourOffsets(size, targetN),
    spacing: targetN > 1 && members.length < size && (members.length > targetN || (members.length === targetN && feasible)),
    feasible,
    partitionRank,
    memberRank,
    seed: seed >>> 0,
  };
}

/** Offsets of the partitions closer than targetN, each once even on tiny rings. */
function neighbourOffsets(size: number, targetN: number): number[] {
  const offsets = new Set<number>();
  for (let distance = 1; distance < targetN && distance < size; distance++) {
    offsets.add(distance % size);
    offsets.add((size - distance) % size);
  }
  offsets.delete(0);
  return [...offsets];
}

function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded pseudo-random number for a (partition, member) pair. */
function tieBreak(context: Context, partition: number, member: number): number {
  let hash = Math.imul(context.seed ^ Math.imul(partition + 1, 0x9e3779b1), 0x85ebca6b) ^ Math.imul(member + 1, 0xc2b2ae35);
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) >>> 0;
}

function countsOf(layout: Int32Array, memberCount: number): Int32Array {
  const counts = new Int32Array(memberCount);
  for (const member of layout) if (member >= 0) counts[member]!++;
  return counts;
}

/** Each member's share: floor(Q/M), plus one for the Q mod M members that own most now (earlier first on ties). */
function quotasOf(original: Int32Array, memberCount: number): Int32Array {
  const counts = countsOf(original, memberCount);
  const order = Array.from({ length: memberCount }, (_, member) => member).sort((a, b) => counts[b]! - counts[a]! || a - b);
  const base = Math.floor(original.length / memberCount);
  const extra = original.length % memberCount;
  const quota = new Int32Array(memberCount);
  order.forEach((member, rank) => (quota[member] = base + (rank < extra ? 1 : 0)));
  return quota;
}

// ---------------------------------------------------------------------------
// Measures.

/** Same-owner pairs touching `partition` (as `owner`), the partition itself excluded. */
function conflictsAt(context: Context, layout: Int32Array, partition: number, owner: number): number {
  if (owner < 0) return 0;
  let count = 0;
  for (const offset of context.offsets) if (layout[(partition + offset) % context.size] === owner) count++;
  return count;
}

function violationCount(context: Context, layout: Int32Array): number {
  let twice = 0;
  for (let partition = 0; partition < context.size; partition++) twice += conflictsAt(context, layout, partition, layout[partition]!);
  return twice / 2;
}

function layoutViolations(layout: Int32Array, targetN: number): number {
  const offsets = neighbourOffsets(layout.length, targetN);
  let twice = 0;
  for (let partition = 0; partition < layout.length; partition++) {
    for (const offset of offsets) if (layout[(partition + offset) % layout.length] === layout[partition]) twice++;
  }
  return twice / 2;
}

function movesOf(context: Context, layout: Int32Array): number {
  let moves = 0;
  for (let partition = 0; partition < context.size; partition++) if (layout[partition] !== context.original[partition]) moves++;
  return moves;
}

function isBalanced(context: Context, layout: Int32Array, quota: Int32Array): boolean {
  if (layout.some((member) => member < 0)) return false;
  const counts = countsOf(layout, context.memberCount);
  return counts.every((count, member) => count === quota[member]);
}

/**
 * Nothing to do: balanced, and diverse; or, when diversity is impossible, no
 * worse than the striped layout (so a claim's own result is settled: a
 * second claim moves nothing).
 */
function isSettled(context: Context, layout: Int32Array, quota: Int32Array): boolean {
  if (!isBalanced(context, layout, quota)) return false;
  if (!context.spacing) return true;
  const found = violationCount(context, layout);
  if (found === 0) return true;
  if (context.feasible) return false;
  return found <= layoutViolations(stripedLayout(context.size, context.memberCount, context.targetN), context.targetN);
}

/** The layout with fewer violations, then fewer moves; the first on a tie. */
function better(context: Context, first: Int32Array, second: Int32Array): Int32Array {
  const violationsFirst = violationCount(context, first);
  const violationsSecond = violationCount(context, second);
  if (violationsFirst !== violationsSecond) return violationsFirst < violationsSecond ? first : second;
  return movesOf(context, second) < movesOf(context, first) ? second : first;
}

function result(context: Context, layout: Int32Array, path: ClaimPath): ClaimResult {
  const owners = Array.from(layout, (member) => context.members[member]!);
  const found = context.targetN > 1 && context.memberCount < context.size ? violationCount(context, layout) : 0;
  const base = { owners, diverse: found === 0, moves: movesOf(context, layout), path };
  return found === 0 ? base : { ...base, warning: warningFor(context) };
}

function warningFor(context: Context): string {
  const { memberCount, size, targetN } = context;
  if (memberCount < targetN) return `${notDistinctWarning}: ${memberCount} member(s) cannot hold ${targetN} distinct replicas`;
  if (!context.feasible) {
    const needed = chromaticNumber(size, targetN);
    return `${notDistinctWarning}: ${memberCount} members cannot place every ${targetN} consecutive partitions of a ${size}-partition ring on distinct nodes (it takes ${needed})`;
  }
  return `${notDistinctWarning}: claim found no such layout for ${memberCount} members on ${size} partitions (target_n_val ${targetN})`;
}

// ---------------------------------------------------------------------------
// Fast path: move what balance needs, where replicas stay distinct.

function fastPath(context: Context, quota: Int32Array): Int32Array {
  const released = Int32Array.from(context.original);
  if (context.spacing) releaseConflicts(context, released);
  releaseExcess(context, released, quota);
  if (!context.spacing) return greedyFill(context, released, quota);
  const matched = matchedFill(context, released, quota);
  if (violationCount(context, matched) === 0) return polished(context, matched);
  const greedy = greedyFill(context, released, quota);
  if (violationCount(context, greedy) === 0) return polished(context, greedy);
  return better(context, repaired(context, matched), repaired(context, greedy));
}

function polished(context: Context, layout: Int32Array): Int32Array {
  polish(context, layout);
  return layout;
}

/** Removes what violations swaps can, then moves partitions back home where it can. */
function repaired(context: Context, layout: Int32Array): Int32Array {
  repair(context, layout);
  return polished(context, layout);
}

/** Frees every partition a member cannot keep without two of its partitions closer than targetN. */
function releaseConflicts(context: Context, layout: Int32Array): void {
  const { size, targetN } = context;
  for (const positions of positionsByMember(layout, context.memberCount)) {
    if (positions.length < 2) continue;
    const start = afterLargestGap(positions, size);
    const kept = [positions[start]!];
    for (let step = 1; step < positions.length; step++) {
      const partition = positions[(start + step) % positions.length]!;
      if ((partition - kept[kept.length - 1]! + size) % size >= targetN) kept.push(partition);
      else layout[partition] = -1;
    }
    while (kept.length > 1 && (kept[0]! - kept[kept.length - 1]! + size) % size < targetN) layout[kept.pop()!] = -1;
  }
}

function positionsByMember(layout: Int32Array, memberCount: number): number[][] {
  const positions: number[][] = Array.from({ length: memberCount }, () => []);
  layout.forEach((member, partition) => {
    if (member >= 0) positions[member]!.push(partition);
  });
  return positions;
}

/** Index in sorted `positions` of the one after the largest cyclic gap (where a greedy walk loses least). */
function afterLargestGap(positions: readonly number[], size: number): number {
  let start = 0;
  let largest = -1;
  for (let index = 0; index < positions.length; index++) {
    const next = positions[(index + 1) % positions.length]!;
    const gap = (next - positions[index]! + size) % size || size;
    if (gap > largest) {
      largest = gap;
      start = (index + 1) % positions.length;
    }
  }
  return start;
}

/** Frees each member's excess over its share, always the partition farthest from any free one (spread, so receivers can space theirs). */
function releaseExcess(context: Context, layout: Int32Array, quota: Int32Array): void {
  const counts = countsOf(layout, context.memberCount);
  const excess = Int32Array.from(counts, (count, member) => Math.max(0, count - quota[member]!));
  let remaining = excess.reduce((sum, value) => sum + value, 0);
  if (remaining === 0) return;
  const distance = distancesToFree(layout);
  while (remaining > 0) {
    let best = -1;
    for (let partition = 0; partition < context.size; partition++) {
      const member = layout[partition]!;
      if (member < 0 || excess[member] === 0) continue;
      if (best < 0 || distance[partition]! > distance[best]! || (distance[partition] === distance[best] && context.partitionRank[partition]! > context.partitionRank[best]!)) best = partition;
    }
    excess[layout[best]!]!--;
    layout[best] = -1;
    remaining--;
    spreadDistance(distance, best);
  }
}

/** Cyclic distance of each partition to the nearest free one (size when none is free). */
function distancesToFree(layout: Int32Array): Int32Array {
  const size = layout.length;
  const distance = new Int32Array(size).fill(size);
  for (let partition = 0; partition < size; partition++) if (layout[partition]! < 0) spreadDistance(distance, partition);
  return distance;
}

function spreadDistance(distance: Int32Array, free: number): void {
  const size = distance.length;
  distance[free] = 0;
  for (const direction of [1, -1]) {
    for (let step = 1; step < size; step++) {
      const partition = (free + direction * step + size) % size;
      if (distance[partition]! <= step) break;
      distance[partition] = step;
    }
  }
}

function freePartitions(layout: Int32Array): number[] {
  const free: number[] = [];
  layout.forEach((member, partition) => {
    if (member < 0) free.push(partition);
  });
  return free;
}

/** Gives the free partitions to the members under their share, the most constrained partition first. */
function greedyFill(context: Context, released: Int32Array, quota: Int32Array): Int32Array {
  const layout = Int32Array.from(released);
  const counts = countsOf(layout, context.memberCount);
  const deficit = Int32Array.from(quota, (share, member) => share - counts[member]!);
  const free = freePartitions(layout);
  const filler = new Filler(context, layout, deficit, free);
  for (let left = free.length; left > 0; left--) filler.fillOne();
  return layout;
}

/**
 * Gives the free partitions out by maximum matching: a partition may go to
 * a member none of whose kept partitions is closer than targetN, each member
 * takes its share (which members get the Q mod M extra ones is left open),
 * and free partitions closer than targetN to each other (a group) take
 * distinct members. When free partitions are at least targetN apart (one
 * member leaving) that is exact: a layout moving nothing more exists if and
 * only if the matching is perfect. What the matching leaves over goes to the
 * greedy fill.
 */
function matchedFill(context: Context, released: Int32Array, quota: Int32Array): Int32Array {
  const layout = Int32Array.from(released);
  const free = freePartitions(layout);
  const counts = countsOf(layout, context.memberCount);
  const base = Math.floor(context.size / context.memberCount);
  const network = new FlowNetwork();
  const source = network.addNode();
  const sink = network.addNode();
  const extras = network.addNode();
  const memberNode = Int32Array.from({ length: context.memberCount }, () => network.addNode());
  const extraEdge = new Int32Array(context.memberCount).fill(-1);
  let extraCount = 0;
  for (let member = 0; member < context.memberCount; member++) {
    if (counts[member]! > base) continue;
    network.addEdge(memberNode[member]!, sink, base - counts[member]!);
    extraEdge[member] = network.addEdge(memberNode[member]!, extras, 1);
    extraCount += quota[member]! - base;
  }
  network.addEdge(extras, sink, extraCount);
  const order = membersByRank(context);
  const assignments: { partition: number; edges: number[]; members: number[] }[] = [];
  for (const group of groupsOf(context, free)) {
    const groupNode = new Map<number, number>();
    for (const partition of group) {
      const slot = network.addNode();
      network.addEdge(source, slot, 1);
      const assignment = { partition, edges: [] as number[], members: [] as number[] };
      for (const member of order) {
        if (counts[member]! > base || conflictsAt(context, layout, partition, member) > 0) continue;
        let via = memberNode[member]!;
        if (group.length > 1) {
          if (!groupNode.has(member)) {
            const node = network.addNode();
            network.addEdge(node, memberNode[member]!, 1);
            groupNode.set(member, node);
          }
          via = groupNode.get(member)!;
        }
        assignment.edges.push(network.addEdge(slot, via, 1));
        assignment.members.push(member);
      }
      assignments.push(assignment);
    }
  }
  network.maxFlow(source, sink);
  for (const { partition, edges, members } of assignments) {
    const used = edges.findIndex((edge) => network.flowOn(edge) > 0);
    if (used >= 0) layout[partition] = members[used]!;
  }
  const realised = Int32Array.from(quota);
  let extrasLeft = extraCount;
  for (let member = 0; member < context.memberCount; member++) {
    if (extraEdge[member]! < 0) continue;
    const takesExtra = network.flowOn(extraEdge[member]!) > 0;
    realised[member] = base + (takesExtra ? 1 : 0);
    if (takesExtra) extrasLeft--;
  }
  // Extras the matching did not use go to members as the quotas had them, then in rank order.
  for (const member of [...order].sort((a, b) => quota[b]! - quota[a]!)) {
    if (extrasLeft === 0) break;
    if (extraEdge[member]! >= 0 && realised[member] === base) {
      realised[member] = base + 1;
      extrasLeft--;
    }
  }
  return greedyFill(context, layout, realised);
}

/** Members by their seeded rank, so seeds vary which of equally good matchings is found. */
function membersByRank(context: Context): number[] {
  return Array.from({ length: context.memberCount }, (_, member) => member).sort((a, b) => context.memberRank[b]! - context.memberRank[a]! || a - b);
}

/** Free partitions in runs where each is closer than targetN to the run's first; a run starts after a gap of targetN or more where there is one. */
function groupsOf(context: Context, free: readonly number[]): number[][] {
  if (free.length === 0) return [];
  const { size, targetN } = context;
  let start = 0;
  for (let index = 0; index < free.length; index++) {
    const previous = free[(index + free.length - 1) % free.length]!;
    if ((free[index]! - previous + size) % size >= targetN || free.length === 1) {
      start = index;
      break;
    }
  }
  const groups: number[][] = [];
  let group: number[] = [];
  for (let step = 0; step < free.length; step++) {
    const partition = free[(start + step) % free.length]!;
    if (group.length > 0 && (partition - group[0]! + size) % size >= targetN) {
      groups.push(group);
      group = [];
    }
    group.push(partition);
  }
  groups.push(group);
  return groups;
}

/** A flow network for the matching (Dinic's algorithm; every path here is short). */
class FlowNetwork {
  private readonly head: number[] = [];
  private readonly target: number[] = [];
  private readonly capacity: number[] = [];
  private readonly nextEdge: number[] = [];
  private level: Int32Array = new Int32Array(0);
  private cursor: Int32Array = new Int32Array(0);

  addNode(): number {
    this.head.push(-1);
    return this.head.length - 1;
  }

  /** Adds an edge and its residual twin; returns the edge's index. */
  addEdge(from: number, to: number, capacity: number): number {
    const edge = this.target.length;
    this.target.push(to, from);
    this.capacity.push(capacity, 0);
    this.nextEdge.push(this.head[from]!, this.head[to]!);
    this.head[from] = edge;
    this.head[to] = edge + 1;
    return edge;
  }

  flowOn(edge: number): number {
    return this.capacity[edge ^ 1]!;
  }

  maxFlow(source: number, sink: number): number {
    let total = 0;
    while (this.buildLevels(source, sink)) {
      this.cursor = Int32Array.from(this.head);
      for (let pushed = this.push(source, sink, Infinity); pushed > 0; pushed = this.push(source, sink, Infinity)) total += pushed;
    }
    return total;
  }

  private buildLevels(source: number, sink: number): boolean {
    this.level = new Int32Array(this.head.length).fill(-1);
    this.level[source] = 0;
    const queue = [source];
    for (let index = 0; index < queue.length; index++) {
      const node = queue[index]!;
      for (let edge = this.head[node]!; edge >= 0; edge = this.nextEdge[edge]!) {
        const to = this.target[edge]!;
        if (this.capacity[edge]! > 0 && this.level[to]! < 0) {
          this.level[to] = this.level[node]! + 1;
          queue.push(to);
        }
      }
    }
    return this.level[sink]! >= 0;
  }

  private push(node: number, sink: number, limit: number): number {
    if (node === sink) return limit;
    for (; this.cursor[node]! >= 0; this.cursor[node] = this.nextEdge[this.cursor[node]!]!) {
      const edge = this.cursor[node]!;
      const to = this.target[edge]!;
      if (this.capacity[edge]! <= 0 || this.level[to] !== this.level[node]! + 1) continue;
      const pushed = this.push(to, sink, Math.min(limit, this.capacity[edge]!));
      if (pushed > 0) {
        this.capacity[edge]! -= pushed;
        this.capacity[edge ^ 1]! += pushed;
        return pushed;
      }
    }
    return 0;
  }
}

/** State of one fill: which free partitions remain and how many members each could take without a conflict. */
class Filler {
  private readonly open: Set<number>;
  private readonly eligible: Int32Array;
  private readonly receivers: Set<number>;

  constructor(
    private readonly context: Context,
    private readonly layout: Int32Array,
    private readonly deficit: Int32Array,
    free: readonly number[],
  ) {
    this.open = new Set(free);
    this.receivers = new Set();
    deficit.forEach((value, member) => {
      if (value > 0) this.receivers.add(member);
    });
    this.eligible = new Int32Array(context.size);
    for (const partition of free) this.eligible[partition] = this.countEligible(partition);
  }

  fillOne(): void {
    const partition = this.mostConstrained();
    const member = this.chooseReceiver(partition);
    this.layout[partition] = member;
    this.open.delete(partition);
    this.deficit[member]!--;
    for (const offset of this.context.offsets) {
      const neighbour = (partition + offset) % this.context.size;
      if (this.open.has(neighbour)) this.eligible[neighbour] = this.countEligible(neighbour);
    }
    if (this.deficit[member] === 0) this.retire(member);
  }

  private retire(member: number): void {
    this.receivers.delete(member);
    for (const partition of this.open) if (!this.isNear(partition, member)) this.eligible[partition]!--;
  }

  private isNear(partition: number, member: number): boolean {
    if (!this.context.spacing) return false;
    return conflictsAt(this.context, this.layout, partition, member) > 0;
  }

  private countEligible(partition: number): number {
    let count = 0;
    for (const member of this.receivers) if (!this.isNear(partition, member)) count++;
    return count;
  }

  private mostConstrained(): number {
    let best = -1;
    for (const partition of this.open) {
      if (best < 0 || this.eligible[partition]! < this.eligible[best]! || (this.eligible[partition] === this.eligible[best] && this.context.partitionRank[partition]! > this.context.partitionRank[best]!)) best = partition;
    }
    return best;
  }

  /** The receiver free of conflicts here with the most still to take; failing that, the one with fewest conflicts. */
  private chooseReceiver(partition: number): number {
    let best = -1;
    let bestConflicts = 0;
    for (const member of this.receivers) {
      const conflicts = this.context.spacing ? conflictsAt(this.context, this.layout, partition, member) : 0;
      if (best < 0 || conflicts < bestConflicts || (conflicts === bestConflicts && this.prefer(partition, member, best))) {
        best = member;
        bestConflicts = conflicts;
      }
    }
    assert(best >= 0, 'a free partition always has a receiver (shares add up to the ring size)');
    return best;
  }

  /**
   * More still to take first; among equals a seeded draw per partition, so
   * that fills do not settle into stripes (in a stripe every partition of a
   * member has the same neighbours, which makes its later leave costly).
   */
  private prefer(partition: number, member: number, other: number): boolean {
    const difference = this.deficit[member]! - this.deficit[other]!;
    return difference > 0 || (difference === 0 && tieBreak(this.context, partition, member) > tieBreak(this.context, partition, other));
  }

}

// ---------------------------------------------------------------------------
// Repair and polish: owner swaps, which keep every member's count.

/** Same-owner pairs touching a or b, each pair once. */
function conflictsAround(context: Context, layout: Int32Array, a: number, b: number): number {
  const shared = layout[a] === layout[b] && context.offsets.includes((b - a + context.size) % context.size) ? 1 : 0;
  return conflictsAt(context, layout, a, layout[a]!) + conflictsAt(context, layout, b, layout[b]!) - shared;
}

function swap(layout: Int32Array, a: number, b: number): void {
  const owner = layout[a]!;
  layout[a] = layout[b]!;
  layout[b] = owner;
}

/** Change in (violations, moves) if a and b swapped owners. */
function swapDelta(context: Context, layout: Int32Array, a: number, b: number): { violations: number; moves: number } {
  const { original } = context;
  const violationsBefore = conflictsAround(context, layout, a, b);
  const movesBefore = (layout[a] !== original[a] ? 1 : 0) + (layout[b] !== original[b] ? 1 : 0);
  swap(layout, a, b);
  const violationsAfter = conflictsAround(context, layout, a, b);
  const movesAfter = (layout[a] !== original[a] ? 1 : 0) + (layout[b] !== original[b] ? 1 : 0);
  swap(layout, a, b);
  return { violations: violationsAfter - violationsBefore, moves: movesAfter - movesBefore };
}

/** Swaps owners to remove violations, each swap the one that removes most and moves least; stops when stuck. */
function repair(context: Context, layout: Int32Array): void {
  let swaps = 0;
  let attempts = 0;
  const stuck = new Uint8Array(context.size);
  while (swaps < claimRepairSwapsMax && attempts < claimRepairAttemptsMax) {
    const partition = firstViolating(context, layout, stuck);
    if (partition < 0) return;
    attempts++;
    const partner = bestRepairSwap(context, layout, partition);
    if (partner < 0) {
      stuck[partition] = 1;
      continue;
    }
    swap(layout, partition, partner);
    swaps++;
    stuck.fill(0);
  }
}

/** A partition in violation not yet found stuck, preferring one that moves anyway (moving it again costs nothing). */
function firstViolating(context: Context, layout: Int32Array, stuck: Uint8Array): number {
  let fallback = -1;
  for (let partition = 0; partition < context.size; partition++) {
    if (stuck[partition] || conflictsAt(context, layout, partition, layout[partition]!) === 0) continue;
    if (layout[partition] !== context.original[partition]) return partition;
    if (fallback < 0) fallback = partition;
  }
  return fallback;
}

function bestRepairSwap(context: Context, layout: Int32Array, partition: number): number {
  const owner = layout[partition]!;
  const near = membersAround(context, layout, partition);
  let best = -1;
  let bestViolations = 0;
  let bestMoves = 0;
  for (let other = 0; other < context.size; other++) {
    const otherOwner = layout[other]!;
    if (otherOwner === owner) continue;
    const violations = isNeighbour(context, partition, other)
      ? swapDelta(context, layout, partition, other).violations
      : near[otherOwner]! - near[owner]! + swapGainAt(context, layout, other, owner, otherOwner);
    if (violations >= 0) continue;
    const moves = movesDelta(context, layout, partition, other);
    const isBetter =
      best < 0 ||
      violations < bestViolations ||
      (violations === bestViolations && (moves < bestMoves || (moves === bestMoves && context.partitionRank[other]! > context.partitionRank[best]!)));
    if (isBetter) {
      best = other;
      bestViolations = violations;
      bestMoves = moves;
    }
  }
  return best;
}

/** How many partitions near `partition` each member owns. */
function membersAround(context: Context, layout: Int32Array, partition: number): Int32Array {
  const near = new Int32Array(context.memberCount);
  for (const offset of context.offsets) {
    const member = layout[(partition + offset) % context.size]!;
    if (member >= 0) near[member]!++;
  }
  return near;
}

function isNeighbour(context: Context, a: number, b: number): boolean {
  const distance = Math.abs(a - b);
  return Math.min(distance, context.size - distance) < context.targetN;
}

/** Change in conflicts at `partition` (owned by `leaving`) if `arriving` took it instead; for partitions not near the other end of the swap. */
function swapGainAt(context: Context, layout: Int32Array, partition: number, arriving: number, leaving: number): number {
  let change = 0;
  for (const offset of context.offsets) {
    const member = layout[(partition + offset) % context.size];
    if (member === arriving) change++;
    else if (member === leaving) change--;
  }
  return change;
}

function movesDelta(context: Context, layout: Int32Array, a: number, b: number): number {
  const { original } = context;
  const before = (layout[a] !== original[a] ? 1 : 0) + (layout[b] !== original[b] ? 1 : 0);
  const after = (layout[b] !== original[a] ? 1 : 0) + (layout[a] !== original[b] ? 1 : 0);
  return after - before;
}

/** Swaps partitions back toward their current owners where that adds no violation. */
function polish(context: Context, layout: Int32Array): void {
  for (let pass = 0; pass < claimPolishPassesMax; pass++) {
    let improved = false;
    for (let partition = 0; partition < context.size; partition++) {
      const home = context.original[partition]!;
      if (home < 0 || layout[partition] === home) continue;
      const partner = bestPolishSwap(context, layout, partition, home);
      if (partner >= 0) {
        swap(layout, partition, partner);
        improved = true;
      }
    }
    if (!improved) return;
  }
}

function bestPolishSwap(context: Context, layout: Int32Array, partition: number, home: number): number {
  const owner = layout[partition]!;
  const near = membersAround(context, layout, partition);
  let best = -1;
  let bestMoves = 0;
  for (let other = 0; other < context.size; other++) {
    if (layout[other] !== home) continue;
    const moves = movesDelta(context, layout, partition, other);
    if (moves >= 0 || (best >= 0 && moves >= bestMoves)) continue;
    const violations = isNeighbour(context, partition, other)
      ? swapDelta(context, layout, partition, other).violations
      : near[home]! - near[owner]! + swapGainAt(context, layout, other, owner, home);
    if (violations > 0) continue;
    best = other;
    bestMoves = moves;
  }
  return best;
}

// ---------------------------------------------------------------------------
// Fallback: the striped layout, aligned to the current owners.

/** The striped layout under the rotation and member order that keep the most partitions where they are. */
function alignedStriped(context: Context): Int32Array {
  const { size, memberCount } = context;
  const colours = stripedLayout(size, memberCount, context.targetN);
  const candidates = rotationsByBound(context, colours).slice(0, claimAlignRotationsMax);
  let best: Int32Array | undefined;
  let bestKept = -1;
  for (const rotation of candidates) {
    const mapping = matchColours(context, overlap(context, colours, rotation));
    const layout = Int32Array.from({ length: size }, (_, partition) => mapping[colours[(partition + rotation) % size]!]!);
    const kept = size - movesOf(context, layout);
    if (kept > bestKept) {
      best = layout;
      bestKept = kept;
    }
  }
  assert(best !== undefined, 'at least one rotation is tried');
  polish(context, best);
  return best;
}

/** overlap[colour * M + member]: partitions the member owns now that the colour gets under this rotation. */
function overlap(context: Context, colours: Int32Array, rotation: number): Int32Array {
  const { size, memberCount, original } = context;
  const counts = new Int32Array(memberCount * memberCount);
  for (let partition = 0; partition < size; partition++) {
    const member = original[partition]!;
    if (member >= 0) counts[colours[(partition + rotation) % size]! * memberCount + member]!++;
  }
  return counts;
}

/** Rotations, best first by an upper bound on what they can keep (each colour's best member). */
function rotationsByBound(context: Context, colours: Int32Array): number[] {
  const { size, memberCount } = context;
  const bound = new Float64Array(size);
  for (let rotation = 0; rotation < size; rotation++) {
    const counts = overlap(context, colours, rotation);
    let total = 0;
    for (let colour = 0; colour < memberCount; colour++) {
      let most = 0;
      for (let member = 0; member < memberCount; member++) most = Math.max(most, counts[colour * memberCount + member]!);
      total += most;
    }
    bound[rotation] = total;
  }
  return Array.from({ length: size }, (_, rotation) => rotation).sort((a, b) => bound[b]! - bound[a]! || a - b);
}

/** Greedy matching of colours to members by overlap, largest first; the rest in order. */
function matchColours(context: Context, counts: Int32Array): Int32Array {
  const { memberCount } = context;
  const entries: number[] = [];
  counts.forEach((count, entry) => {
    if (count > 0) entries.push(entry);
  });
  entries.sort((a, b) => counts[b]! - counts[a]! || a - b);
  const mapping = new Int32Array(memberCount).fill(-1);
  const taken = new Uint8Array(memberCount);
  for (const entry of entries) {
    const colour = Math.floor(entry / memberCount);
    const member = entry % memberCount;
    if (mapping[colour] !== -1 || taken[member]) continue;
    mapping[colour] = member;
    taken[member] = 1;
  }
  let next = 0;
  for (let colour = 0; colour < memberCount; colour++) {
    if (mapping[colour] !== -1) continue;
    while (taken[next]) next++;
    mapping[colour] = next;
    taken[next] = 1;
  }
  return mapping;
}

// ---------------------------------------------------------------------------
// Striped layout construction.

const RowArrangement = { asBuilt: 0, reversed: 1, interleaved: 2 } as const;
type RowArrangement = (typeof RowArrangement)[keyof typeof RowArrangement];
const rowArrangements: readonly RowArrangement[] = [RowArrangement.asBuilt, RowArrangement.reversed, RowArrangement.interleaved];

/**
 * ceil(Q/M) rows of the stripe 0..M-1, together M*ceil(Q/M) - Q members
 * short: row j leaves out the next h_j members of the cycle starting at
 * `offset`, the h_j as even as can be. Every member is left out at most
 * once, so the counts stay balanced.
 */
function rowsWithHoles(size: number, memberCount: number, offset: number, arrangement: RowArrangement): Int32Array {
  const rowCount = Math.ceil(size / memberCount);
  const holes = rowCount * memberCount - size;
  const holesPerRow = Array.from({ length: rowCount }, (_, row) => Math.floor(holes / rowCount) + (row < holes % rowCount ? 1 : 0));
  const layout = new Int32Array(size);
  let cursor = offset;
  let partition = 0;
  for (const row of arrangeRows(rowCount, arrangement)) {
    const left = new Set<number>();
    for (let hole = 0; hole < holesPerRow[row]!; hole++) left.add((cursor + hole) % memberCount);
    cursor += holesPerRow[row]!;
    for (let member = 0; member < memberCount; member++) if (!left.has(member)) layout[partition++] = member;
  }
  return layout;
}

function arrangeRows(rowCount: number, arrangement: RowArrangement): number[] {
  const rows = Array.from({ length: rowCount }, (_, row) => row);
  if (arrangement === RowArrangement.reversed) return rows.reverse();
  if (arrangement === RowArrangement.asBuilt) return rows;
  const interleaved: number[] = [];
  for (let low = 0, high = rowCount - 1; low <= high; low++, high--) {
    interleaved.push(low);
    if (low !== high) interleaved.push(high);
  }
  return interleaved;
}

/**
 * Depth-first search for a balanced diverse layout, most remaining first,
 * least recently used next; members not used yet are interchangeable, so
 * only one of them is tried per step. Bounded by stripedSearchStepsMax.
 */
function searchLayout(size: number, memberCount: number, targetN: number): Int32Array | undefined {
  const base = Math.floor(size / memberCount);
  const remaining = Int32Array.from({ length: memberCount }, (_, member) => base + (member < size % memberCount ? 1 : 0));
  const first = new Int32Array(memberCount).fill(-1);
  const last = new Int32Array(memberCount).fill(-1);
  const layout = new Int32Array(size).fill(-1);
  let steps = 0;

  const fits = (partition: number, member: number): boolean => {
    if (last[member]! >= 0 && partition - last[member]! < targetN) return false;
    if (first[member]! >= 0 && first[member]! + size - partition < targetN) return false;
    // Whatever is left of the member must still fit before it meets its first partition again.
    const end = Math.min(size - 1, (first[member]! >= 0 ? first[member]! : partition) + size - targetN);
    return (remaining[member]! - 1) * targetN + partition <= end;
  };

  const place = (partition: number): boolean => {
    if (partition === size) return true;
    if (++steps > stripedSearchStepsMax) return false;
    const candidates: number[] = [];
    let freshTried = new Set<number>();
    for (let member = 0; member < memberCount; member++) if (remaining[member]! > 0 && fits(partition, member)) candidates.push(member);
    candidates.sort((a, b) => remaining[b]! - remaining[a]! || last[a]! - last[b]! || a - b);
    for (const member of candidates) {
      if (first[member]! < 0) {
        if (freshTried.has(remaining[member]!)) continue;
        freshTried = new Set([...freshTried, remaining[member]!]);
      }
      const previous = { first: first[member]!, last: last[member]! };
      if (first[member]! < 0) first[member] = partition;
      last[member] = partition;
      remaining[member]!--;
      layout[partition] = member;
      if (place(partition + 1)) return true;
      remaining[member]!++;
      first[member] = previous.first;
      last[member] = previous.last;
      layout[partition] = -1;
      if (steps > stripedSearchStepsMax) return false;
    }
    return false;
  };

  return place(0) ? layout : undefined;
}
