/**
 * Which node serves each partition, as this node sees it: the ring's owner,
 * except around a handoff, when this node knows more than the ring yet
 * does (riak_core's forwarding vnode):
 *
 * - handed off: this node gave the partition to its new owner and must
 *   never acknowledge a write for it again; it forwards instead, until the
 *   ring says the new owner owns it (then its copy is dropped);
 * - taken over: this node received a partition whose old owner stopped
 *   serving it; it serves it even before the ring says so;
 * - sealed: the last catch-up of a handoff runs; writes to the partition
 *   wait (briefly) instead of being acknowledged here or lost.
 *
 * The handed-off and taken-over marks are durable (meta.ring) before they
 * take effect: a restart never brings back a second server of a partition.
 */
import type { Logger } from 'pino';
import { IorioError } from '../core/errors.js';
import { ownerOf, type Ring } from '../core/ring.js';
import type { MetaStore } from '../store/meta.js';

const handedOffKey = 'handedOff';
const takenOverKey = 'takenOver';

/** How long a write waits for a sealed partition before it is refused (retriable). */
export const sealWaitMsMax = 10_000;

export interface Route {
  /** The node that serves the partition now. */
  readonly node: string;
  /** Why, for error messages. */
  readonly reason: 'owner' | 'handed-off' | 'taken-over' | 'leader' | 'replica';
}

export type RouteListener = (partition: number) => void;

export class PartitionRoutes {
  private readonly handedOff: Map<number, string>;
  private readonly takenOver: Set<number>;
  private readonly sealed = new Map<number, { done: Promise<void>; release: () => void }>();
  /** Local operations running per partition (a seal waits for them). */
  private readonly running = new Map<number, number>();
  private readonly drained = new Map<number, (() => void)[]>();
  private readonly listeners = new Set<RouteListener>();

  constructor(
    private readonly meta: MetaStore,
    private readonly self: string,
    private readonly ring: () => Ring,
    private readonly logger: Logger,
  ) {
    this.handedOff = new Map(Object.entries((meta.ring.get(handedOffKey) as Record<string, string> | undefined) ?? {}).map(([partition, target]) => [Number(partition), target]));
    this.takenOver = new Set((meta.ring.get(takenOverKey) as number[] | undefined) ?? []);
  }

  /** With request.n > 1: partitions are served by their group's leader (cluster/replication). */
  private replicated: ((partition: number) => Route | undefined) | undefined;

  replicateWith(route: (partition: number) => Route | undefined): void {
    this.replicated = route;
  }

  route(partition: number): Route {
    const replicated = this.replicated?.(partition);
    if (replicated !== undefined) return replicated;
    const target = this.handedOff.get(partition);
    if (target !== undefined) return { node: target, reason: 'handed-off' };
    if (this.takenOver.has(partition)) return { node: this.self, reason: 'taken-over' };
    return { node: ownerOf(this.ring(), partition), reason: 'owner' };
  }

  servesHere(partition: number): boolean {
    return this.route(partition).node === this.self;
  }

  handedOffPartitions(): [number, string][] {
    return [...this.handedOff];
  }

  takenOverPartitions(): number[] {
    return [...this.takenOver];
  }

  onChange(listener: RouteListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves when a write to the partition may go on (not sealed); refused after sealWaitMsMax. */
  async whenOpen(partition: number): Promise<void> {
    const seal = this.sealed.get(partition);
    if (seal === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new IorioError('unavailable', `partition ${partition} is moving to another node; retry`)), sealWaitMsMax);
    });
    try {
      await Promise.race([seal.done, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs a local operation on a partition, counted so a seal can wait for it. */
  async withLocal<T>(partition: number, work: () => Promise<T>): Promise<T> {
    this.running.set(partition, (this.running.get(partition) ?? 0) + 1);
    try {
      return await work();
    } finally {
      const left = (this.running.get(partition) ?? 1) - 1;
      if (left > 0) this.running.set(partition, left);
      else {
        this.running.delete(partition);
        for (const waiter of this.drained.get(partition)?.splice(0) ?? []) waiter();
      }
    }
  }

  /** Holds new writes to the partition and resolves once the local ones running have finished. */
  async seal(partition: number): Promise<void> {
    if (!this.sealed.has(partition)) {
      let release!: () => void;
      const done = new Promise<void>((resolve) => (release = resolve));
      this.sealed.set(partition, { done, release });
    }
    if (!this.running.has(partition)) return;
    await new Promise<void>((resolve) => {
      const waiters = this.drained.get(partition) ?? [];
      waiters.push(resolve);
      this.drained.set(partition, waiters);
    });
  }

  unseal(partition: number): void {
    const seal = this.sealed.get(partition);
    this.sealed.delete(partition);
    seal?.release();
  }

  /** This node gave the partition to `target`: durable first, then in force. */
  async markHandedOff(partition: number, target: string): Promise<void> {
    this.handedOff.set(partition, target);
    await this.saveHandedOff();
    this.changed(partition);
  }

  async markTakenOver(partition: number): Promise<void> {
    if (this.takenOver.has(partition)) return;
    this.takenOver.add(partition);
    await this.meta.ring.put(takenOverKey, [...this.takenOver]);
    this.changed(partition);
  }

  /** The ring caught up with a handoff: the marks are no longer needed. */
  async settle(ring: Ring): Promise<number[]> {
    const settledOut = [...this.handedOff].filter(([partition, target]) => ownerOf(ring, partition) === target).map(([partition]) => partition);
    const settledIn = [...this.takenOver].filter((partition) => ownerOf(ring, partition) === this.self);
    for (const partition of settledOut) this.handedOff.delete(partition);
    for (const partition of settledIn) this.takenOver.delete(partition);
    if (settledOut.length > 0) await this.saveHandedOff();
    if (settledIn.length > 0) await this.meta.ring.put(takenOverKey, [...this.takenOver]);
    if (settledOut.length + settledIn.length > 0) this.logger.debug({ settledOut, settledIn }, 'handoff marks settled by the ring');
    return settledOut;
  }

  /** Every partition's route may have changed (a new ring). */
  ringChanged(): void {
    for (const listener of this.listeners) listener(-1);
  }

  private changed(partition: number): void {
    for (const listener of this.listeners) listener(partition);
  }

  private async saveHandedOff(): Promise<void> {
    await this.meta.ring.put(handedOffKey, Object.fromEntries([...this.handedOff].map(([partition, target]) => [String(partition), target])));
  }
}
