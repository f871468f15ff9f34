/**
 * Preference lists: which nodes hold the replicas of a partition's data
 * (riak_core_apl, pure).
 *
 * The primaries of partition P are found by walking P, P+1, ... (mod size)
 * and taking each owner not taken yet, until n distinct nodes or a full
 * wrap: so a ring whose claim could not space replicas still gives n
 * distinct nodes, and a cluster of fewer than n members gives all of them
 * (quorums count nodes, never vnodes). Each entry names the partition where
 * the walk met the node (Riak's vnode index); every entry holds a replica of
 * P's data.
 *
 * Primaries that are not up are replaced by fallbacks, as riak_core_apl's
 * find_fallbacks does: for each down primary in order, the next node further
 * along the walk that is up and not used yet, serving the down primary's
 * partition until it is back.
 */
import { assert } from './errors.js';
import type { Ring } from './ring.js';

export interface PreflistEntry {
  /** For a primary: where the walk met its node. For a fallback: the partition of the primary it stands in for. */
  readonly partition: number;
  readonly node: string;
}

export interface Preflist {
  /** Up primaries, in walk order. */
  readonly primaries: readonly PreflistEntry[];
  /** One per down primary while up nodes remain, in the order of the primaries they stand in for. */
  readonly fallbacks: readonly PreflistEntry[];
}

/** The replicas of partition `partition`'s data: n distinct primaries (fewer with fewer members), down ones replaced by fallbacks. */
export function preflist(ring: Ring, partition: number, n: number, up?: ReadonlySet<string>): Preflist {
  checkPartition(ring, partition);
  assert(Number.isInteger(n) && n >= 1, 'n is a positive integer');
  const walk = distinctWalk(ring, partition);
  const candidates = walk.slice(0, n);
  const rest = walk.slice(n);
  const isUp = (node: string) => up === undefined || up.has(node);
  const primaries = candidates.filter((entry) => isUp(entry.node));
  const fallbacks: PreflistEntry[] = [];
  let cursor = 0;
  for (const down of candidates.filter((entry) => !isUp(entry.node))) {
    while (cursor < rest.length && !isUp(rest[cursor]!.node)) cursor++;
    if (cursor >= rest.length) break;
    fallbacks.push({ partition: down.partition, node: rest[cursor]!.node });
    cursor++;
  }
  return { primaries, fallbacks };
}

/** The n distinct nodes holding partition's replicas when every node is up, in walk order. */
export function primaryNodes(ring: Ring, partition: number, n: number): string[] {
  checkPartition(ring, partition);
  return distinctWalk(ring, partition, n).map((entry) => entry.node);
}

/** Partitions a node owns now (it serves them as first primary, the only one for n = 1). */
export function partitionsOwnedBy(ring: Ring, node: string): number[] {
  const owned: number[] = [];
  ring.owners.forEach((owner, partition) => {
    if (owner === node) owned.push(partition);
  });
  return owned;
}

/**
 * Partitions whose data the node holds a primary replica of with n
 * replicas: those whose primaries include it. For n = 1 these are the
 * partitions it owns. Use futureRing(ring) for where it will be once
 * transfers finish.
 */
export function replicaPartitions(ring: Ring, node: string, n: number): number[] {
  assert(Number.isInteger(n) && n >= 1, 'n is a positive integer');
  const partitions: number[] = [];
  for (let partition = 0; partition < ring.size; partition++) {
    if (primaryNodes(ring, partition, n).includes(node)) partitions.push(partition);
  }
  return partitions;
}

/** Each node once (at most `limit`), in the order a walk from `partition` meets it, with where it met it. */
function distinctWalk(ring: Ring, partition: number, limit = ring.size): PreflistEntry[] {
  const seen = new Set<string>();
  const entries: PreflistEntry[] = [];
  for (let step = 0; step < ring.size && entries.length < limit; step++) {
    const at = (partition + step) % ring.size;
    const node = ring.owners[at]!;
    if (seen.has(node)) continue;
    seen.add(node);
    entries.push({ partition: at, node });
  }
  return entries;
}

function checkPartition(ring: Ring, partition: number): void {
  assert(Number.isInteger(partition) && partition >= 0 && partition < ring.size, 'partition is in the ring');
}
