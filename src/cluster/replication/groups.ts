/**
 * Which replica groups a node runs, from the ring (request.n > 1).
 *
 * A partition's group is its preflist: the owners of the partition and of
 * the next ones until n distinct nodes (fewer with fewer members). Every
 * partition is a group, even of one node, so that a cluster that grows
 * changes groups rather than copying data behind the log's back:
 *
 * - a node in a partition's group now, or in the group it will have once
 *   the ring's pending transfers are done, runs its replica (a node only in
 *   the future group starts as a learner, with no voters of its own);
 * - the leader of a group whose voters differ from the future group
 *   changes it (host.reconfigure: learners catch up, joint, new group);
 * - a pending transfer this node is the source of is reported complete to
 *   the claimant once the group is the future one: ownership handoff *is*
 *   the change of the group (DESIGN §6), and the ring settles after it.
 *
 * - a node that holds a replica of a partition whose group, now and after
 *   the pending transfers, leaves it out, and whose leader reports a
 *   committed configuration without it, drops its copy (the replica, the
 *   partition's streams and its log): the new group holds everything.
 *   Until the leader confirms, the copy stays.
 */

import type { Logger } from 'pino';
import { preflist } from '../../core/preflist.js';
import { sameMembers } from '../../core/replication.js';
import type { Ring } from '../../core/ring.js';
import type { ReplicaHost } from './host.js';

export interface ReplicationGroupsOptions {
  readonly self: string;
  readonly n: number;
  readonly host: ReplicaHost;
  readonly ring: () => Ring;
  readonly complete: (partition: number, target: string) => Promise<unknown>;
  /** Whether the partition's leader reports a committed group without this node (its copy may go). */
  readonly leftGroup: (partition: number) => Promise<boolean>;
  /** Whether a member answers the failure detector (a leader hands over only to a live one). */
  readonly reachable?: (node: string) => boolean;
  readonly logger: Logger;
  readonly tickMs?: number;
}

export function groupNow(ring: Ring, partition: number, n: number): string[] {
  return preflist(ring, partition, n).primaries.map((entry) => entry.node);
}

/** The group once the ring's pending transfers are done. */
export function groupAfterTransfers(ring: Ring, partition: number, n: number): string[] {
  if (ring.next.length === 0) return groupNow(ring, partition, n);
  const owners = [...ring.owners];
  for (const transfer of ring.next) owners[transfer.partition] = transfer.target;
  return groupNow({ ...ring, owners }, partition, n);
}


/** Leader hand-overs a node starts per tick, at most, and how long before the same partition may be handed over again. */
const handOversPerTick = 2;
const handOverBackoffMs = 30_000;

export class ReplicationGroups {
  private readonly timer: NodeJS.Timeout;
  private readonly changing = new Set<number>();
  private readonly completing = new Set<number>();
  private readonly dropping = new Set<number>();
  /** When each partition's leadership was last handed over from here (no ping-pong). */
  private readonly handedOver = new Map<number, number>();
  private suspended = false;

  /**
   * Around a join: this node's groups of one are let go (the node joins
   * empty: no streams, so nothing of theirs is lost) and none is opened
   * until `resume`, once the ring is the cluster's. Without it a node that
   * led its own groups of one would go on leading them beside the
   * cluster's groups of the same partitions.
   */
  async suspendForJoin(): Promise<void> {
    this.suspended = true;
    for (const partition of this.options.host.partitions()) await this.options.host.drop(partition);
  }

  resume(): void {
    this.suspended = false;
    this.settle();
  }
  private readonly logger: Logger;

  constructor(private readonly options: ReplicationGroupsOptions) {
    this.logger = options.logger.child({ component: 'replication' });
    this.timer = setInterval(() => this.settle(), options.tickMs ?? 500);
    this.timer.unref();
    this.settle();
    // After the ring's groups are open (with their members): what is left on disk is a copy of a group this node left while down.
    options.host.openStored();
  }

  /** The nodes to ask about a partition when this node holds no replica of it: its group now. */
  members(partition: number): string[] {
    return groupNow(this.options.ring(), partition, this.options.n);
  }

  /** Opens replicas, drives group changes, reports transfers done; on every ring change and every tick. */
  settle(): void {
    if (this.suspended) return;
    const ring = this.options.ring();
    const { self, n, host } = this.options;
    for (let partition = 0; partition < ring.size; partition++) {
      const now = groupNow(ring, partition, n);
      const after = groupAfterTransfers(ring, partition, n);
      // A group starts only as a group of one (a cluster's first node): every other replica starts as a learner, with no
      // voters of its own, and becomes a voter only through the group's configuration ops. Opened with the ring's preflist
      // instead, fresh replicas of nodes that joined could elect one of themselves with an empty log beside the real group
      // (the preflist of a partition changes as its neighbours' transfers complete).
      if (now.includes(self) || after.includes(self)) host.open(partition, now.length === 1 && now[0] === self ? now : []);
      const status = host.status(partition);
      if (status === undefined) continue;
      if (status.role === 'leader' && status.config.old === undefined && !sameMembers(status.config.voters, after) && !this.changing.has(partition)) {
        this.changing.add(partition);
        this.logger.info({ partition, from: status.config.voters, to: after }, 'replication: changing a partition group');
        host
          .reconfigure(partition, after)
          .catch((error: unknown) => this.logger.warn({ err: error, partition }, 'replication: a group change did not finish; it will be tried again'))
          .finally(() => this.changing.delete(partition));
      }
      for (const transfer of ring.next) {
        if (transfer.partition !== partition || transfer.source !== self || this.completing.has(partition)) continue;
        if (status.config.old !== undefined || !status.configCommitted || !sameMembers(status.config.voters, after)) continue;
        this.completing.add(partition);
        void this.options
          .complete(partition, transfer.target)
          .catch((error: unknown) => this.logger.warn({ err: error, partition }, 'replication: reporting a transfer done failed; it will be tried again'))
          .finally(() => this.completing.delete(partition));
      }
    }
    this.dropLeft(ring);
    this.balance(ring);
  }

  /**
   * Leadership balancing: a partition's preferred leader is the first of
   * its preflist that is a voter and answers (the partition's owner when
   * it is up), so leaders spread as ownership does instead of staying on
   * the node a cluster grew from, and come back to a node after a failover.
   * A leader of a settled group hands over to the preferred one once it
   * holds everything committed; a few partitions a tick, and not the same
   * partition again within a while.
   */
  private balance(ring: Ring): void {
    const { self, n, host } = this.options;
    const reachable = this.options.reachable ?? (() => true);
    const now = Date.now();
    let started = 0;
    for (const partition of host.partitions()) {
      if (started >= handOversPerTick) return;
      if (this.changing.has(partition) || (this.handedOver.get(partition) ?? -Infinity) + handOverBackoffMs > now) continue;
      const status = host.status(partition);
      if (status === undefined || status.role !== 'leader' || status.config.old !== undefined || !status.configCommitted) continue;
      const preferred = groupNow(ring, partition, n).find((node) => status.config.voters.includes(node) && (node === self || reachable(node)));
      if (preferred === undefined || preferred === self) continue;
      const follower = status.followers.find((entry) => entry.replica === preferred);
      if (follower === undefined || follower.match < status.commit) continue;
      if (!host.transferLeadership(partition, preferred)) continue;
      started++;
      this.handedOver.set(partition, now);
      this.logger.info({ partition, to: preferred }, 'replication: handing a partition\'s leadership to its preferred leader');
    }
  }

  /** Drops the copies of partitions whose groups no longer have this node, once their leaders confirm it. */
  private dropLeft(ring: Ring): void {
    const { self, n, host } = this.options;
    for (const partition of host.partitions()) {
      if (this.dropping.has(partition) || ring.next.some((transfer) => transfer.partition === partition)) continue;
      if (groupNow(ring, partition, n).includes(self) || groupAfterTransfers(ring, partition, n).includes(self)) continue;
      if (host.status(partition)?.role === 'leader') continue;
      this.dropping.add(partition);
      void this.options
        .leftGroup(partition)
        .then((left) => (left ? host.drop(partition) : 0))
        .catch((error: unknown) => this.logger.warn({ err: error, partition }, 'replication: dropping the copy of a partition this node left failed; it will be tried again'))
        .finally(() => this.dropping.delete(partition));
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
