/**
 * Which replicas a node opens, and with which voters (src/cluster/replication/groups.ts).
 *
 * A group starts only as a group of one, on a cluster's first node; every
 * other replica starts as a learner with no voters of its own and becomes a
 * voter through the group's configuration ops. Opened with the ring's
 * preflist instead, the fresh replicas of nodes that joined could elect one
 * of themselves with an empty log beside the real group: a join under load
 * once lost acknowledged entries that way (issue 9).
 */
import pino from 'pino';
import { describe, expect, test } from 'vitest';
import { groupAfterTransfers, groupNow, ReplicationGroups } from '../../src/cluster/replication/groups.js';
import type { ReplicaHost } from '../../src/cluster/replication/host.js';
import { MemberStatus, type Ring } from '../../src/core/ring.js';

const address = { host: '127.0.0.1', port: 1 };

function ring(owners: string[], next: Ring['next'] = []): Ring {
  const names = [...new Set([...owners, ...next.map((transfer) => transfer.target)])].sort();
  return {
    cluster: 'c',
    version: 2,
    size: owners.length,
    targetN: 3,
    claimant: names[0]!,
    members: names.map((name) => ({ name, status: MemberStatus.valid, cluster: address, http: address })),
    owners,
    next,
  } as unknown as Ring;
}

/** The opens a node's groups make on one settle. */
function opens(self: string, current: Ring): Map<number, readonly string[]> {
  const opened = new Map<number, readonly string[]>();
  const host = {
    open: (partition: number, members: readonly string[]) => void opened.set(partition, [...members]),
    openStored: () => undefined,
    status: () => undefined,
    partitions: () => [],
  } as unknown as ReplicaHost;
  const groups = new ReplicationGroups({ self, n: 3, host, ring: () => current, complete: async () => undefined, leftGroup: async () => false, logger: pino({ level: 'silent' }), tickMs: 60_000 });
  groups.close();
  return opened;
}

describe('replication groups: what a node opens', () => {
  test('a cluster of one: every partition a group of one, its only voter the node', () => {
    const alone = ring(Array.from({ length: 8 }, () => 'n1@h'));
    const opened = opens('n1@h', alone);
    expect(opened.size).toBe(8);
    for (const members of opened.values()) expect(members).toEqual(['n1@h']);
  });

  test('a node in a group of several, now or after the pending transfers, opens a learner with no voters of its own', () => {
    const owners = ['n1@h', 'n2@h', 'n3@h', 'n4@h', 'n1@h', 'n2@h', 'n3@h', 'n4@h'];
    const four = ring(owners, [{ partition: 5, source: 'n2@h', target: 'n5@h' }] as unknown as Ring['next']);
    for (const self of ['n2@h', 'n5@h']) {
      const opened = opens(self, four);
      expect(opened.size, self).toBeGreaterThan(0);
      for (const [partition, members] of opened) {
        expect(groupNow(four, partition, 3).includes(self) || groupAfterTransfers(four, partition, 3).includes(self), `${self} opens ${partition}`).toBe(true);
        expect(members, `${self}, partition ${partition}`).toEqual([]);
      }
    }
  });
});
