import { completeTransfer, futureRing, memberNames, removeMember, type MemberInfo, type Ring } from '../../src/core/ring.js';

/** devN as IorioDB's devrel names it: iorioN@127.0.0.1, cluster port 10009 + 10N, HTTP 8088 + 10N. */
export function devMember(index: number): MemberInfo {
  return { name: `iorio${index}@127.0.0.1`, cluster: { host: '127.0.0.1', port: 10009 + 10 * index }, http: { host: '127.0.0.1', port: 8088 + 10 * index } };
}

/** A member with a zero-padded name, so name order is index order. */
export function member(index: number): MemberInfo {
  return { name: `n${String(index).padStart(3, '0')}@host`, cluster: { host: 'host', port: 20000 + index }, http: { host: 'host', port: 30000 + index } };
}

/** Every pending transfer done at once (futureRing) and the members left exiting removed. */
export function settle(ring: Ring): Ring {
  let settled = futureRing(ring);
  for (const node of memberNames(settled, ['exiting'])) settled = removeMember(settled, node);
  return settled;
}

/** The same, one completeTransfer at a time as handoff would (in partition order): slower, for the walkthroughs. */
export function settleByHandoff(ring: Ring): Ring {
  let settled = ring;
  for (const transfer of ring.next) settled = completeTransfer(settled, transfer.partition, transfer.target);
  for (const node of memberNames(settled, ['exiting'])) settled = removeMember(settled, node);
  return settled;
}

/** Partitions owned per node. */
export function ownedCounts(owners: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const owner of owners) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  return counts;
}

/** The tests' own oracle, independent of core/claim.ts: every targetN consecutive partitions, across the wrap, have distinct owners. */
export function windowsDistinct(owners: readonly string[], targetN: number): boolean {
  const size = owners.length;
  for (let start = 0; start < size; start++) {
    const window = new Set<string>();
    for (let offset = 0; offset < Math.min(targetN, size); offset++) window.add(owners[(start + offset) % size]!);
    if (window.size !== Math.min(targetN, size)) return false;
  }
  return true;
}
