/**
 * The ring manager: the only owner of this node's ring (riak_core's
 * ring_manager). It loads the ring from lmdb at start (a new node makes a
 * ring of its own, one member owning every partition), persists every
 * change before it is seen, and tells listeners. Nothing else swaps the
 * ring: the claimant's decisions and gossip both come through here.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { IorioError } from '../core/errors.js';
import { createRing, decodeRing, encodeRing, memberOf, reconcile, ringFrom, ringsEqual, type MemberInfo, type Ring } from '../core/ring.js';
import type { MetaStore } from '../store/meta.js';

/** meta.ring key of the current ring. */
const ringKey = 'ring';

export type RingListener = (ring: Ring, previous: Ring) => void;

export interface RingManagerOptions {
  readonly meta: MetaStore;
  readonly self: MemberInfo;
  readonly size: number;
  readonly targetN: number;
  readonly logger: Logger;
}

export class RingManager {
  private ring: Ring;
  private readonly listeners = new Set<RingListener>();
  private readonly logger: Logger;
  /** Changes are applied one at a time, in order. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly options: RingManagerOptions,
    ring: Ring,
  ) {
    this.ring = ring;
    this.logger = options.logger.child({ component: 'ring' });
  }

  static async open(options: RingManagerOptions): Promise<RingManager> {
    const stored = options.meta.ring.get(ringKey);
    let ring: Ring;
    if (stored === undefined) {
      ring = createRing(randomUUID(), options.size, options.self, options.targetN);
      await options.meta.ring.put(ringKey, encodeRing(ring));
    } else {
      ring = decodeRing(stored);
      if (ring.size !== options.size) {
        options.logger.warn({ ringSize: ring.size, configured: options.size }, 'ring.size differs from the ring this node holds; the ring wins (it is fixed when the cluster is created)');
      }
    }
    const manager = new RingManager(options, ring);
    await manager.refreshSelf();
    return manager;
  }

  get current(): Ring {
    return this.ring;
  }

  get self(): string {
    return this.options.self.name;
  }

  onChange(listener: RingListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Applies a change to the ring (the claimant's decisions, this node's own
   * address); persisted before anyone sees it. Changes queue in order.
   */
  update(change: (ring: Ring) => Ring): Promise<Ring> {
    return this.enqueue(async () => {
      const next = change(this.ring);
      if (next === this.ring || ringsEqual(next, this.ring)) return this.ring;
      await this.swap(next);
      return next;
    });
  }

  /** A ring heard from another member: the newer one wins (reconcile). True when it changed ours. */
  accept(remote: Ring): Promise<boolean> {
    return this.enqueue(async () => {
      if (remote.cluster !== this.ring.cluster) return false;
      const winner = reconcile(this.ring, remote);
      if (winner === this.ring || ringsEqual(winner, this.ring)) return false;
      await this.swap(winner);
      return true;
    });
  }

  /** Joining a cluster: its ring replaces this node's own one-member ring. */
  adopt(remote: Ring): Promise<void> {
    return this.enqueue(async () => {
      if (memberOf(remote, this.self) === undefined) throw new IorioError('conflict', `the ring of cluster '${remote.cluster}' does not name ${this.self}`);
      await this.swap(remote);
    });
  }

  /** The member record of this node as the configuration says it is now (addresses change between starts). */
  private async refreshSelf(): Promise<void> {
    const member = memberOf(this.ring, this.self);
    const self = this.options.self;
    if (member === undefined) {
      this.logger.warn({ node: this.self }, 'this node is not a member of the ring it holds (removed from its cluster)');
      return;
    }
    if (sameAddress(member.cluster, self.cluster) && sameAddress(member.http, self.http)) return;
    // Only a ring of our own is ours to write; in a cluster the claimant records the change (cluster/membership.ts).
    if (this.ring.members.length === 1) {
      await this.update((ring) => ringFrom({ ...ring, version: ring.version + 1, members: [{ ...member, cluster: self.cluster, http: self.http }] }));
    }
  }

  private async swap(next: Ring): Promise<void> {
    await this.options.meta.ring.put(ringKey, encodeRing(next));
    const previous = this.ring;
    this.ring = next;
    this.logger.info({ version: next.version, members: next.members.length, pending: next.next.length }, 'ring changed');
    for (const listener of this.listeners) {
      try {
        listener(next, previous);
      } catch (error) {
        this.logger.error({ err: error }, 'ring listener threw');
      }
    }
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    const result = this.queue.then(task, task);
    this.queue = result.catch(() => undefined);
    return result;
  }
}

export function sameAddress(a: { host: string; port: number }, b: { host: string; port: number }): boolean {
  return a.host === b.host && a.port === b.port;
}
