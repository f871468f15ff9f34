import { fc, test as propertyTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import { partitionsOwnedBy, preflist, primaryNodes, replicaPartitions } from '../../src/core/preflist.js';
import { ringFrom, type Ring } from '../../src/core/ring.js';
import { member } from '../helpers/cluster.js';

/**
 * core/preflist.ts: which nodes hold a partition's replicas. Tables for the
 * walk and the fallbacks; a property over random owner layouts (diverse or
 * not) that primaries and fallbacks never repeat a node.
 */

const names = Array.from({ length: 8 }, (_, index) => member(index).name);
const [a, b, c, d, e] = names as [string, string, string, string, string];

/** A ring whose owners are given as member indexes. */
function ringOf(owners: readonly number[], memberCount = Math.max(...owners) + 1): Ring {
  return ringFrom({
    cluster: 'c1',
    version: 1,
    size: owners.length,
    targetN: 3,
    members: Array.from({ length: memberCount }, (_, index) => ({ ...member(index), status: 'valid' as const })),
    owners: owners.map((index) => names[index]!),
    next: [],
  });
}

const striped = ringOf([0, 1, 2, 3, 0, 1, 2, 3]);

describe('preflist', () => {
  test('on a diverse ring: the owners of the partition and the next n-1', () => {
    expect(preflist(striped, 2, 3)).toEqual({
      primaries: [
        { partition: 2, node: c },
        { partition: 3, node: d },
        { partition: 4, node: a },
      ],
      fallbacks: [],
    });
  });

  test('across the wrap', () => {
    expect(primaryNodes(striped, 7, 3)).toEqual([d, a, b]);
  });

  test('a ring that is not diverse still gives n distinct nodes, walking further', () => {
    const crowded = ringOf([0, 0, 1, 1, 0, 2, 2, 1]);
    expect(preflist(crowded, 0, 3).primaries).toEqual([
      { partition: 0, node: a },
      { partition: 2, node: b },
      { partition: 5, node: c },
    ]);
  });

  test('with fewer members than n, every member once', () => {
    const two = ringOf([0, 1, 0, 1, 0, 1, 0, 1]);
    expect(primaryNodes(two, 3, 3)).toEqual([b, a]);
    expect(primaryNodes(ringOf([0, 0, 0, 0, 0, 0, 0, 0]), 5, 3)).toEqual([a]);
  });

  test('a down primary is replaced by the next up node further along, serving its partition', () => {
    const five = ringOf([0, 1, 2, 3, 4, 0, 1, 2]);
    const up = new Set([a, c, d, e]);
    expect(preflist(five, 0, 3, up)).toEqual({
      primaries: [
        { partition: 0, node: a },
        { partition: 2, node: c },
      ],
      fallbacks: [{ partition: 1, node: d }],
    });
  });

  test('fallbacks skip down nodes and stop when no up node is left', () => {
    const five = ringOf([0, 1, 2, 3, 4, 0, 1, 2]);
    expect(preflist(five, 0, 3, new Set([c, e]))).toEqual({
      primaries: [{ partition: 2, node: c }],
      fallbacks: [
        { partition: 0, node: e },
      ],
    });
  });

  test('partitionsOwnedBy and replicaPartitions', () => {
    expect(partitionsOwnedBy(striped, b)).toEqual([1, 5]);
    expect(replicaPartitions(striped, b, 1)).toEqual([1, 5]);
    expect(replicaPartitions(striped, b, 3)).toEqual([0, 1, 3, 4, 5, 7]);
  });

  test('refuses a partition outside the ring and n below 1', () => {
    expect(() => preflist(striped, 8, 3)).toThrow(/assertion/);
    expect(() => preflist(striped, 0, 0)).toThrow(/assertion/);
  });
});

const layouts = fc
  .record({ sizeLog: fc.integer({ min: 3, max: 6 }), memberCount: fc.integer({ min: 1, max: 8 }) })
  .chain(({ sizeLog, memberCount }) =>
    fc.record({
      owners: fc.array(fc.integer({ min: 0, max: memberCount - 1 }), { minLength: 2 ** sizeLog, maxLength: 2 ** sizeLog }),
      n: fc.integer({ min: 1, max: 5 }),
      partition: fc.nat({ max: 2 ** sizeLog - 1 }),
      upMask: fc.array(fc.boolean(), { minLength: memberCount, maxLength: memberCount }),
    }),
  );

describe('preflist properties', () => {
  propertyTest.prop([layouts], { numRuns: 300 })('primaries and fallbacks are distinct nodes, n of them while enough are up', ({ owners, n, partition, upMask }) => {
    const ring = ringOf(owners, upMask.length);
    const up = new Set(names.filter((_, index) => upMask[index]));
    const { primaries, fallbacks } = preflist(ring, partition, n, up);
    const used = [...primaries, ...fallbacks].map((entry) => entry.node);
    expect(new Set(used).size).toBe(used.length);
    for (const node of used) expect(up.has(node)).toBe(true);
    const owning = new Set(ring.owners);
    const upOwning = [...owning].filter((node) => up.has(node)).length;
    expect(primaries.length + fallbacks.length).toBe(Math.min(n, owning.size, upOwning));
    expect(primaryNodes(ring, partition, n)).toHaveLength(Math.min(n, owning.size));
  });
});
