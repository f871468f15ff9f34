/**
 * Membership: gossip of the ring, the failure detector, and the claimant
 * (riak_core's gossip, node watcher and claimant, in one place because
 * they share the peers).
 *
 * - Gossip: a changed ring is pushed to every other member at once, and
 *   every second one random member gets ours; a receiver reconciles (the
 *   higher version wins) and pushes back when its own is newer, so rings
 *   converge even past lost messages.
 * - Failure detector: a heartbeat to every member every heartbeatMs; a
 *   member not heard from for suspectMs (or whose connection dropped) is
 *   unreachable. It says nothing about the ring: only an operator marks a
 *   node down (`iorio-admin down`).
 * - Claimant: the first valid member (core/ring.ts). It alone changes
 *   membership and ownership: staged changes, plan, commit (refused unless
 *   the plan is the one shown and every member agrees on the ring), joins,
 *   transfer completions. Any other node forwards these to it.
 */
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { IorioError } from '../core/errors.js';
import { checkStaged, commitPlan, plan, type Plan, type StagedChange } from '../core/plan.js';
import {
  addJoining,
  completeTransfer,
  decodeRing,
  encodeRing,
  markDown,
  memberOf,
  MemberStatus,
  removeMember,
  ringFrom,
  ringsEqual,
  type MemberInfo,
  type Ring,
} from '../core/ring.js';
import { MessageType } from '../core/wire.js';
import type { MetaStore } from '../store/meta.js';
import type { RingManager } from './ring-manager.js';
import { sameAddress } from './ring-manager.js';
import type { ClusterTransport } from './transport.js';

/** meta.ring key of the claimant's staged changes and their plan seed. */
const stagedKey = 'staged';

export interface MembershipOptions {
  readonly transport: ClusterTransport;
  readonly ring: RingManager;
  readonly meta: MetaStore;
  readonly clock: Clock;
  readonly logger: Logger;
  /** This node's record (addresses as configured now). */
  readonly self: MemberInfo;
  readonly heartbeatMs: number;
  readonly suspectMs: number;
  readonly gossipMs: number;
  /** Timeout of claimant and gossip requests. */
  readonly requestTimeoutMs: number;
  /** Whether this node may join another cluster (it holds no streams of its own). */
  readonly canJoin: () => string | undefined;
}

interface StagedState {
  changes: StagedChange[];
  seed: number;
}

export class Membership {
  private readonly logger: Logger;
  private readonly lastHeard = new Map<string, number>();
  private readonly down = new Set<string>();
  private timers: NodeJS.Timeout[] = [];
  private staged: StagedState;
  /** The plan the operator last saw (commit refuses anything else). */
  private shownPlan: Ring | undefined;
  private readonly unsubscribe: (() => void)[] = [];
  private closed = false;
  private selfInfo: MemberInfo;

  constructor(private readonly options: MembershipOptions) {
    this.logger = options.logger.child({ component: 'membership' });
    this.selfInfo = options.self;
    const stored = options.meta.ring.get(stagedKey) as StagedState | undefined;
    this.staged = stored ?? { changes: [], seed: randomInt(2 ** 31) };
  }

  get self(): string {
    return this.options.self.name;
  }

  private get ring(): Ring {
    return this.options.ring.current;
  }

  start(): void {
    const { transport } = this.options;
    const handlers: [number, (body: unknown, from: string) => unknown][] = [
      [MessageType.ringPull, () => encodeRing(this.ring)],
      [MessageType.joinRequest, (body) => this.onJoinRequest(body as { member: MemberInfo })],
      [MessageType.claimantJoin, (body) => this.asClaimant(() => this.claimJoin((body as { member: MemberInfo }).member))],
      [MessageType.claimantStage, (body) => this.asClaimant(() => this.claimStage((body as { change: StagedChange }).change))],
      [MessageType.claimantPlan, () => this.asClaimant(() => this.claimPlan())],
      [MessageType.claimantCommit, () => this.asClaimant(() => this.claimCommit())],
      [MessageType.claimantClear, () => this.asClaimant(() => this.claimClear())],
      [MessageType.claimantDown, (body) => this.asClaimant(() => this.claimDown((body as { node: string }).node))],
      [MessageType.claimantMemberUpdate, (body) => this.asClaimant(() => this.claimMemberUpdate((body as { member: MemberInfo }).member))],
      [MessageType.claimantTransferComplete, (body) => this.asClaimant(() => this.claimTransferComplete(body as { partition: number; target: string }))],
    ];
    for (const [type, handler] of handlers) this.unsubscribe.push(transport.handle(type, handler));
    this.unsubscribe.push(transport.on(MessageType.ringPush, (body, from) => void this.onRingPush(body, from)));
    this.unsubscribe.push(transport.on(MessageType.heartbeat, (_body, from) => this.heard(from)));
    this.unsubscribe.push(transport.onPeerUp((peer) => this.heard(peer)));
    this.unsubscribe.push(transport.onPeerDown((peer) => this.lastHeard.delete(peer)));
    this.unsubscribe.push(this.options.ring.onChange((ring, previous) => this.onRingChange(ring, previous)));
    this.every(this.options.heartbeatMs, () => this.heartbeat());
    this.every(this.options.gossipMs, () => this.gossipRandom());
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    for (const off of this.unsubscribe) off();
  }

  // -------------------------------------------------------------------------
  // Failure detector

  /** Heard from within suspectMs (this node is always reachable to itself). */
  reachable(node: string): boolean {
    if (node === this.self) return true;
    const heard = this.lastHeard.get(node);
    return heard !== undefined && this.options.clock.monotonic() - heard <= this.options.suspectMs;
  }

  /** Members (other than this node) that cannot be reached now. */
  unreachableMembers(): string[] {
    return this.ring.members.map((member) => member.name).filter((name) => !this.reachable(name));
  }

  private heard(node: string): void {
    this.lastHeard.set(node, this.options.clock.monotonic());
  }

  private heartbeat(): void {
    for (const member of this.ring.members) {
      if (member.name === this.self) continue;
      this.options.transport.send(member.name, MessageType.heartbeat, null);
      const heard = this.lastHeard.get(member.name);
      // Silent too long while the socket looks fine: drop it, so the next dial finds out.
      if (heard !== undefined && this.options.clock.monotonic() - heard > this.options.suspectMs * 2 && this.options.transport.isConnected(member.name)) {
        this.options.transport.disconnect(member.name, 'no heartbeat');
      }
    }
  }

  // -------------------------------------------------------------------------
  // Gossip

  private onRingChange(ring: Ring, previous: Ring): void {
    if (ring.version <= previous.version && ringsEqual(ring, previous)) return;
    this.pushTo(ring.members.map((member) => member.name).filter((name) => name !== this.self));
    this.afterRingChange(ring);
  }

  private gossipRandom(): void {
    const others = this.ring.members.map((member) => member.name).filter((name) => name !== this.self && this.reachable(name));
    if (others.length > 0) this.pushTo([others[randomInt(others.length)]!]);
  }

  private pushTo(nodes: readonly string[]): void {
    const record = encodeRing(this.ring);
    for (const node of nodes) this.options.transport.send(node, MessageType.ringPush, record);
  }

  private async onRingPush(body: unknown, from: string): Promise<void> {
    let remote: Ring;
    try {
      remote = decodeRing(body);
    } catch (error) {
      this.logger.warn({ err: error, from }, 'a malformed ring was pushed to this node');
      return;
    }
    if (remote.cluster !== this.ring.cluster) return;
    const changed = await this.options.ring.accept(remote);
    // Ours is newer: tell the sender.
    if (!changed && this.ring.version > remote.version) this.pushTo([from]);
  }

  /** What the claimant does after every ring change: settles members that are done. */
  private afterRingChange(ring: Ring): void {
    if (ring.claimant !== this.self) return;
    const exiting = ring.members.filter((member) => member.status === MemberStatus.exiting);
    if (exiting.length === 0) return;
    // An exiting member handed everything off: it leaves the ring (riak_core removes it the same way).
    void this.options.ring
      .update((current) => exiting.reduce((next, member) => (memberOf(next, member.name)?.status === MemberStatus.exiting ? removeMember(next, member.name) : next), current))
      .catch((error: unknown) => this.logger.error({ err: error }, 'removing exiting members failed'));
  }

  /**
   * This node's addresses as they are now (they change between starts, and
   * HTTP's port is known once it listens): the claimant records them in the
   * ring when they differ (retried for a while if it cannot be reached).
   */
  async announce(self: MemberInfo): Promise<void> {
    this.selfInfo = self;
    for (let attempt = 0; attempt < 30 && !this.closed; attempt++) {
      const member = memberOf(this.ring, this.self);
      if (member === undefined) return;
      if (sameAddress(member.cluster, self.cluster) && sameAddress(member.http, self.http)) return;
      try {
        await this.toClaimant(MessageType.claimantMemberUpdate, { member: self });
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 1000).unref());
      }
    }
  }

  // -------------------------------------------------------------------------
  // Operator commands (from the admin API of any node)

  /** `cluster join <seed>`: asks the seed's cluster to take this node in, and adopts its ring. */
  /** Why this node cannot join `seed`'s cluster now (throws), checked before anything changes. */
  checkJoin(seed: string): void {
    if (seed === this.self) throw new IorioError('invalid-param', 'a node cannot join itself');
    if (this.ring.members.length > 1) throw new IorioError('conflict', `${this.self} is already a member of a cluster: leave it first`, { reason_code: 'not_single_node' });
    const refusal = this.options.canJoin();
    if (refusal !== undefined) throw new IorioError('conflict', refusal, { reason_code: 'not_empty' });
  }

  async join(seed: string): Promise<{ node: string; seed: string }> {
    this.checkJoin(seed);
    const answer = await this.options.transport.request<{ ring: unknown }>(seed, MessageType.joinRequest, { member: this.selfInfo }, { timeoutMs: this.options.requestTimeoutMs });
    await this.options.ring.adopt(decodeRing(answer.ring));
    this.pushTo(this.ring.members.map((member) => member.name).filter((name) => name !== this.self));
    return { node: this.self, seed };
  }

  stage(change: StagedChange): Promise<unknown> {
    return this.toClaimant(MessageType.claimantStage, { change });
  }

  planChanges(): Promise<{ summary: Plan['summary']; transfers: Plan['transfers']; warnings: Plan['warnings'] }> {
    return this.toClaimant(MessageType.claimantPlan, null);
  }

  commit(): Promise<{ version: number }> {
    return this.toClaimant(MessageType.claimantCommit, null);
  }

  clear(): Promise<unknown> {
    return this.toClaimant(MessageType.claimantClear, null);
  }

  markDown(node: string): Promise<{ version: number }> {
    return this.toClaimant(MessageType.claimantDown, { node });
  }

  transferComplete(partition: number, target: string): Promise<unknown> {
    return this.toClaimant(MessageType.claimantTransferComplete, { partition, target });
  }

  /** Whether every member holds the same ring (Riak's ringready), asking each. */
  async ringReady(): Promise<{ ready: boolean; nodes: string[]; disagreeing: { node: string; reason: string }[] }> {
    const ring = this.ring;
    const nodes = ring.members.map((member) => member.name);
    const disagreeing: { node: string; reason: string }[] = [];
    await Promise.all(
      nodes
        .filter((node) => node !== this.self)
        .map(async (node) => {
          try {
            const theirs = decodeRing(await this.options.transport.request(node, MessageType.ringPull, null, { timeoutMs: this.options.requestTimeoutMs }));
            if (!ringsEqual(theirs, ring)) disagreeing.push({ node, reason: `holds ring version ${theirs.version}, this node ${ring.version}` });
          } catch (error) {
            disagreeing.push({ node, reason: `not reachable (${(error as Error).message})` });
          }
        }),
    );
    return { ready: disagreeing.length === 0, nodes, disagreeing: disagreeing.sort((a, b) => (a.node < b.node ? -1 : 1)) };
  }

  private async toClaimant<T>(type: number, body: unknown): Promise<T> {
    const claimant = this.ring.claimant;
    if (claimant === this.self) return this.runLocally<T>(type, body);
    try {
      return await this.options.transport.request<T>(claimant, type, body, { timeoutMs: this.options.requestTimeoutMs });
    } catch (error) {
      if (error instanceof IorioError && error.code === 'unavailable') {
        throw new IorioError('unavailable', `the claimant ${claimant} cannot be reached (${error.message}); retry, or mark it down if it is gone for good`);
      }
      throw error;
    }
  }

  /** The claimant's own requests run here, without a connection to itself. */
  private runLocally<T>(type: number, body: unknown): Promise<T> {
    const run = (): unknown => {
      switch (type) {
        case MessageType.claimantStage:
          return this.claimStage((body as { change: StagedChange }).change);
        case MessageType.claimantPlan:
          return this.claimPlan();
        case MessageType.claimantCommit:
          return this.claimCommit();
        case MessageType.claimantClear:
          return this.claimClear();
        case MessageType.claimantDown:
          return this.claimDown((body as { node: string }).node);
        case MessageType.claimantMemberUpdate:
          return this.claimMemberUpdate((body as { member: MemberInfo }).member);
        case MessageType.claimantTransferComplete:
          return this.claimTransferComplete(body as { partition: number; target: string });
        default:
          throw new IorioError('internal-error', `no local claimant handler for message ${type}`);
      }
    };
    return Promise.resolve().then(run) as Promise<T>;
  }

  // -------------------------------------------------------------------------
  // The claimant

  private asClaimant<T>(work: () => T): T {
    if (this.ring.claimant !== this.self) {
      throw new IorioError('unavailable', `${this.self} is not the claimant (${this.ring.claimant} is): retry`, { reason_code: 'not_claimant' });
    }
    return work();
  }

  /** A node asks the seed to join: the seed forwards it to the claimant. */
  private async onJoinRequest(body: { member: MemberInfo }): Promise<unknown> {
    if (this.ring.claimant === this.self) return this.claimJoin(body.member);
    return this.options.transport.request(this.ring.claimant, MessageType.claimantJoin, body, { timeoutMs: this.options.requestTimeoutMs });
  }

  private async claimJoin(member: MemberInfo): Promise<{ ring: unknown }> {
    const existing = memberOf(this.ring, member.name);
    if (existing !== undefined && existing.status !== MemberStatus.joining) {
      throw new IorioError('conflict', `'${member.name}' is already a member of this cluster`, { reason_code: 'already_member' });
    }
    // In the ring as joining, the join is staged (the plan takes joining members as joins, as Riak's does).
    if (existing === undefined) await this.options.ring.update((ring) => addJoining(ring, member));
    return { ring: encodeRing(this.ring) };
  }

  private async claimStage(change: StagedChange): Promise<{ staged: string; node: string }> {
    const without = this.staged.changes.filter((staged) => !(staged.kind === 'join' && change.kind === 'join' && staged.member.name === change.member.name));
    const changes = [...without, change];
    checkStaged(this.ring, changes);
    await this.saveStaged({ changes, seed: this.staged.seed });
    return { staged: change.kind, node: change.kind === 'join' ? change.member.name : change.node };
  }

  private claimPlan(): { summary: Plan['summary']; transfers: Plan['transfers']; warnings: Plan['warnings'] } {
    const planned = plan(this.ring, this.staged.changes, this.staged.seed);
    this.shownPlan = planned.ring;
    return { summary: planned.summary, transfers: planned.transfers, warnings: planned.warnings };
  }

  private async claimCommit(): Promise<{ version: number }> {
    if (this.shownPlan === undefined) {
      throw new IorioError('conflict', "There is no plan to commit: verify it with 'iorio-admin cluster plan' first", { reason_code: 'nothing_planned' });
    }
    const ready = await this.ringReady();
    if (!ready.ready) {
      const why = ready.disagreeing.map((entry) => `${entry.node} ${entry.reason}`).join('; ');
      throw new IorioError('conflict', `Unable to commit cluster changes: the ring is not ready (${why}); try again once every member agrees`, { reason_code: 'ring_not_ready' });
    }
    const committed = commitPlan(this.ring, this.staged.changes, this.staged.seed, this.shownPlan);
    const ring = await this.options.ring.update(() => committed);
    this.shownPlan = undefined;
    await this.saveStaged({ changes: [], seed: randomInt(2 ** 31) });
    this.logger.info({ version: ring.version, transfers: ring.next.length }, 'cluster changes committed');
    return { version: ring.version };
  }

  private async claimClear(): Promise<{ cleared: number }> {
    // Joining members leave the ring again, as Riak's clear does.
    const joiners = this.ring.members.filter((member) => member.status === MemberStatus.joining).map((member) => member.name);
    const cleared = this.staged.changes.length + joiners.length;
    await this.options.ring.update((ring) => joiners.reduce((next, node) => (memberOf(next, node)?.status === MemberStatus.joining ? removeMember(next, node) : next), ring));
    await this.saveStaged({ changes: [], seed: randomInt(2 ** 31) });
    this.shownPlan = undefined;
    return { cleared };
  }

  private async claimDown(node: string): Promise<{ version: number }> {
    if (node === this.self) throw new IorioError('invalid-param', 'the claimant cannot mark itself down');
    if (this.reachable(node)) throw new IorioError('conflict', `'${node}' is reachable: only an unreachable node can be marked down`, { reason_code: 'is_up' });
    const ring = await this.options.ring.update((current) => markDown(current, node));
    return { version: ring.version };
  }

  private async claimMemberUpdate(member: MemberInfo): Promise<{ version: number }> {
    const ring = await this.options.ring.update((current) => {
      const existing = memberOf(current, member.name);
      if (existing === undefined) return current;
      if (sameAddress(existing.cluster, member.cluster) && sameAddress(existing.http, member.http)) return current;
      const members = current.members.map((entry) => (entry.name === member.name ? { ...entry, cluster: member.cluster, http: member.http } : entry));
      return ringFrom({ ...current, version: current.version + 1, members });
    });
    return { version: ring.version };
  }

  private async claimTransferComplete(body: { partition: number; target: string }): Promise<{ version: number }> {
    const ring = await this.options.ring.update((current) => {
      const pending = current.next.find((transfer) => transfer.partition === body.partition);
      // Already completed (a retried notice): nothing to do.
      if (pending === undefined && current.owners[body.partition] === body.target) return current;
      return completeTransfer(current, body.partition, body.target);
    });
    return { version: ring.version };
  }

  private async saveStaged(state: StagedState): Promise<void> {
    this.staged = state;
    await this.options.meta.ring.put(stagedKey, state);
  }

  private every(ms: number, task: () => void): void {
    const timer = setInterval(task, ms);
    timer.unref();
    this.timers.push(timer);
  }
}
