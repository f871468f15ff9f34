/**
 * A node's cluster side, composed: the transport, the ring manager,
 * membership (gossip, failure detector, claimant), the partition routes,
 * the router (a Store for the HTTP layer), the handoff manager and
 * receiver, and the admin operations behind /admin/cluster/*. Built by
 * src/node.ts; every node runs it, a single node being a cluster of one.
 */
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Clock } from '../core/clock.js';
import { IorioError } from '../core/errors.js';
import type { StagedChange } from '../core/plan.js';
import { memberOf, memberStatus, ownerOf, type MemberInfo, type Ring } from '../core/ring.js';
import type { MetaStore } from '../store/meta.js';
import type { StreamStore } from '../store/stream-store.js';
import type { AppendRequest } from '../store/types.js';
import type { MembersAnswer, PartitionRow, PartitionsAnswer, PlanAnswer, RingAnswer, RingReadyAnswer, TransferLimits, TransfersAnswer, VerifyAnswer } from './admin-api.js';
import { ClusterStore } from './cluster-store.js';
import { HandoffManager } from './handoff-manager.js';
import { HandoffReceiver } from './handoff-receiver.js';
import { Membership } from './membership.js';
import { Metadata } from './metadata.js';
import { hostOfNode, lookupNode, registerNode } from './node-registry.js';
import { PartitionRoutes } from './partition-routes.js';
import { RingManager } from './ring-manager.js';
import { Transport } from './transport.js';
import { MessageType } from '../core/wire.js';
import path from 'node:path';
import { PartitionLogs } from '../store/partition-log.js';
import { ReplicationGroups } from './replication/groups.js';
import { ReplicaHost } from './replication/host.js';
import { hostReplicas, ReplicaVerifier, singleCopyAnswer, type VerifyRequest } from './replication/verify.js';
import { majorityOf } from './replication/replica.js';

/** Bounds of the cluster's own traffic. */
const requestTimeoutMs = 10_000;
const connectTimeoutMs = 3_000;
const queueBytesMax = 64 * 1024 * 1024;
const heartbeatMs = 500;
const suspectMs = 3_000;
const gossipMs = 1_000;
const handoffTickMs = 1_000;
const antiEntropyMs = 5_000;

export interface ClusterOptions {
  readonly config: Config;
  readonly meta: MetaStore;
  readonly local: StreamStore;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Forwarded stream operations are timed through it (see ClusterStoreOptions.onForward). */
  readonly onForward?: (type: number) => () => void;
  /** Times each durable flush of the partition logs (the node's fsync histogram). */
  readonly timeFlush?: () => () => void;
}

/** The operations the admin API offers (src/http/routes-admin.ts). */
export interface ClusterAdmin {
  members(): MembersAnswer;
  ringStatus(): RingAnswer;
  ringReady(): Promise<RingReadyAnswer>;
  join(seed: string): Promise<{ node: string; seed: string }>;
  /** Resolves once every metadata change made so far reached every reachable member; the members it could not reach. */
  metadataSettled(): Promise<string[]>;
  stage(change: { kind: StagedChange['kind']; node?: string; by?: string }): Promise<unknown>;
  plan(): Promise<PlanAnswer>;
  commit(): Promise<{ version: number }>;
  clear(): Promise<unknown>;
  down(node: string): Promise<{ version: number }>;
  transfers(): Promise<TransfersAnswer>;
  /** Every replica group's leader, epoch, voters and lag, from every reachable member (request.n > 1). */
  partitions(): Promise<PartitionsAnswer>;
  /** Each stream's replicas compared (last seqnum, digest, unreadable ranges), and with `repair` filled from one another (iorio-admin verify). */
  verify(request: VerifyRequest): Promise<VerifyAnswer>;
  transferLimit(change: { concurrency?: number; rate?: number }): TransferLimits;
  cancelTransfer(partition: number): boolean;
  /** The HTTP address the node listens on, once it does. */
  setHttpAddress(address: { host: string; port: number }): Promise<void>;
}

export interface Cluster {
  readonly store: ClusterStore;
  readonly ring: RingManager;
  readonly admin: ClusterAdmin;
  readonly transport: Transport;
  close(): Promise<void>;
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const { config, meta, local, clock } = options;
  const logger = options.logger.child({ component: 'cluster' });
  const name = config.nodename;
  let ringManager: RingManager | undefined;
  const transport = new Transport({
    self: name,
    host: config['cluster.host'],
    port: config['cluster.port'],
    secret: config['cluster.secret'],
    resolve: (peer) => memberAddress(ringManager?.current, peer, config['cluster.port']),
    connectTimeoutMs,
    requestTimeoutMs,
    queueBytesMax,
    logger: options.logger,
    clock,
  });
  const { port } = await transport.start();
  // The HTTP address is known once HTTP listens (setHttpAddress).
  let self: MemberInfo = { name, cluster: { host: config['cluster.host'], port }, http: { host: config['http.host'], port: config['http.port'] } };
  try {
    ringManager = await RingManager.open({ meta, self, size: config['ring.size'], targetN: 3, logger: options.logger });
  } catch (error) {
    await transport.close();
    throw error;
  }
  const ring = ringManager;
  const routes = new PartitionRoutes(meta, name, () => ring.current, logger);
  const membership = new Membership({
    transport,
    ring,
    meta,
    clock,
    logger: options.logger,
    self,
    heartbeatMs,
    suspectMs,
    gossipMs,
    requestTimeoutMs,
    canJoin: () => joinRefusal(local),
  });
  // request.n > 1: every partition is a replica group (DESIGN 7b); handoff becomes a change of the group.
  const n = config['request.n'];
  let onLeaderChange: (partition: number) => void = () => undefined;
  const replication =
    n > 1
      ? (() => {
          const logs = new PartitionLogs(path.join(config['paths.data'], 'replication'), options.timeFlush);
          const host = new ReplicaHost({ self: name, w: config['request.w'] === 0 ? majorityOf(n) : config['request.w'], transport, store: local, logs, clock, logger: options.logger, onLeaderChange: (partition) => onLeaderChange(partition) });
          return { logs, host };
        })()
      : undefined;
  const store = new ClusterStore({
    local,
    transport,
    routes,
    ring: () => ring.current,
    self: name,
    requestTimeoutMs,
    reachable: (node) => membership.reachable(node),
    logger: options.logger,
    ...(options.onForward === undefined ? {} : { onForward: options.onForward }),
    ...(replication === undefined
      ? {}
      : {
          replicated: {
            hosts: (partition: number) => replication.host.holds(partition),
            append: (partition: number, requests: readonly AppendRequest[]) => replication.host.append(partition, requests),
            deleteStream: (partition: number, bucket: string, stream: string) => replication.host.deleteStream(partition, bucket, stream),
            serve: <T>(partition: number, read: () => Promise<T>) => replication.host.serve(partition, read),
            writeRefusal: () => replication.host.writeRefusal(),
          },
        }),
  });
  onLeaderChange = (partition) => store.routesChanged(partition);
  const receiver = new HandoffReceiver(transport, local, routes, () => ring.current, name, logger);
  const handoff = new HandoffManager({
    transport,
    local,
    routes,
    ring: () => ring.current,
    self: name,
    clock,
    logger: options.logger,
    requestTimeoutMs,
    concurrency: config['handoff.concurrency'],
    rateBytesPerSec: config['handoff.rate'],
    complete: (partition, target) => membership.transferComplete(partition, target),
    tickMs: handoffTickMs,
  });
  /** Whether the partition's leader (asked among its group now) reports a committed group that leaves this node out. */
  const leaderLeftMeOut = async (partition: number): Promise<boolean> => {
    for (const member of groups?.members(partition) ?? []) {
      if (member === name) continue;
      let rows: PartitionRow[];
      try {
        rows = await transport.request<PartitionRow[]>(member, MessageType.replicationStatus, null, { timeoutMs: 3_000 });
      } catch {
        continue;
      }
      const row = rows.find((candidate) => candidate.partition === partition && candidate.role === 'leader' && candidate.leader === candidate.node);
      if (row !== undefined) return row.configCommitted === true && row.old === null && !row.voters.includes(name);
    }
    return false;
  };
  const groups =
    replication === undefined
      ? undefined
      : new ReplicationGroups({
          self: name,
          n,
          host: replication.host,
          ring: () => ring.current,
          complete: (partition, target) => membership.transferComplete(partition, target),
          leftGroup: (partition) => leaderLeftMeOut(partition),
          reachable: (node) => membership.reachable(node),
          logger: options.logger,
        });
  if (replication !== undefined && groups !== undefined) {
    const { host } = replication;
    // The partition's leader serves it; a replica that knows none answers 503; a node outside the group asks a member.
    routes.replicateWith((partition) => {
      const leader = host.leaderOf(partition);
      if (leader !== undefined) return { node: leader, reason: 'leader' };
      // A voter that knows no leader answers 503 (an election); a learner or a copy of a group this node left asks the group.
      if (host.holds(partition) && host.votesIn(partition)) return { node: name, reason: 'replica' };
      const members = groups.members(partition);
      return { node: members.find((member) => member !== name && membership.reachable(member)) ?? members[0] ?? name, reason: 'replica' };
    });
  }
  const verifier = replication === undefined || groups === undefined ? undefined : new ReplicaVerifier({ self: name, n, ringSize: () => ring.current.size, transport, store: local, replicas: hostReplicas(replication.host, groups), logger: options.logger });
  const metadata = new Metadata({ meta, transport, ring: () => ring.current, self: name, clock, logger: options.logger, requestTimeoutMs, antiEntropyMs });
  routes.onChange((partition) => store.routesChanged(partition));
  const offRing = ring.onChange((current) => {
    store.routesChanged(-1);
    if (groups !== undefined) groups.settle();
    else void handoff.ringChanged(current).catch((error: unknown) => logger.error({ err: error }, 'handoff: reacting to a new ring failed'));
  });
  transport.handle(MessageType.handoffStatus, () => handoff.rows());
  const partitionRows = (): PartitionRow[] => {
    if (replication === undefined) return [];
    const { host } = replication;
    return host.partitions().flatMap((partition) => {
      const status = host.status(partition);
      if (status === undefined) return [];
      return [
        {
          partition,
          node: name,
          role: status.role,
          epoch: status.epoch,
          leader: status.leader ?? null,
          voters: status.config.voters,
          old: status.config.old ?? null,
          configCommitted: status.configCommitted,
          lastOp: status.lastOp,
          commit: status.commit,
          applied: status.applied,
          recovering: status.recovering,
          followers: status.followers.map((follower) => ({ ...follower, lag: Math.max(0, status.lastOp - follower.match) })),
        },
      ];
    });
  };
  transport.handle(MessageType.replicationStatus, () => partitionRows());
  metadata.start();
  membership.start();
  // With replica groups, partitions move by changes of the group, never by copies behind the log.
  if (groups === undefined) {
    handoff.start();
    void handoff.ringChanged(ring.current).catch((error: unknown) => logger.error({ err: error }, 'handoff: settling at start failed'));
  }
  let unregister = registerNode(self);

  /** This node's rows beside every other member's answer to `type` (a list of rows each), and the members that did not answer. */
  const askEveryMember = async <T>(type: number, own: readonly T[]): Promise<{ rows: T[]; unreachable: string[] }> => {
    const rows = [...own];
    const unreachable: string[] = [];
    await Promise.all(
      ring.current.members
        .filter((member) => member.name !== name)
        .map(async (member) => {
          try {
            rows.push(...(await transport.request<T[]>(member.name, type, null, { timeoutMs: 3_000 })));
          } catch {
            unreachable.push(member.name);
          }
        }),
    );
    return { rows, unreachable: unreachable.sort() };
  };

  const admin: ClusterAdmin = {
    members: () => membersAnswer(ring.current, name, (node) => membership.reachable(node)),
    ringStatus: () => ringAnswer(ring.current, name, membership.unreachableMembers()),
    ringReady: () => membership.ringReady(),
    join: async (seed) => {
      membership.checkJoin(seed);
      await metadata.lowerForJoin();
      await groups?.suspendForJoin();
      try {
        const joined = await membership.join(seed);
        await metadata.syncNow(seed);
        return joined;
      } finally {
        groups?.resume();
      }
    },
    metadataSettled: () => metadata.settled(),
    stage: (change) => membership.stage(stagedChange(ring.current, name, change, config['cluster.port'])),
    plan: () => membership.planChanges(),
    commit: () => membership.commit(),
    clear: () => membership.clear(),
    down: (node) => membership.markDown(node),
    transfers: async () => {
      const { rows, unreachable } = await askEveryMember<TransfersAnswer['transfers'][number]>(MessageType.handoffStatus, handoff.rows());
      return { transfers: rows.sort((a, b) => a.partition - b.partition), limits: handoff.transferLimits, unreachable, received: { ...receiver.stats } };
    },
    partitions: async () => {
      const { rows, unreachable } = await askEveryMember<PartitionRow>(MessageType.replicationStatus, partitionRows());
      return { n, rows: rows.sort((a, b) => a.partition - b.partition || (a.node < b.node ? -1 : 1)), unreachable };
    },
    verify: (request) => (verifier === undefined ? Promise.resolve(singleCopyAnswer(request)) : verifier.verify(request)),
    transferLimit: (change) => handoff.setLimits(change),
    cancelTransfer: (partition) => handoff.cancel(partition),
    setHttpAddress: async (address) => {
      self = { ...self, http: address };
      unregister();
      unregister = registerNode(self);
      const announced = membership.announce(self);
      // The claimant records it at once; another node's claimant may be away: that goes on in the background.
      if (ring.current.claimant === name) await announced;
      else void announced;
    },
  };

  return {
    store,
    ring,
    admin,
    transport,
    async close() {
      unregister();
      offRing();
      groups?.close();
      verifier?.close();
      membership.close();
      metadata.close();
      await handoff.close();
      receiver.close();
      await store.close();
      if (replication !== undefined) {
        await replication.host.close();
        await replication.logs.close();
      }
      await transport.close();
    },
  };
}

/** Where a peer listens: the ring, else this host's registry, else its name's host on our cluster.port. */
function memberAddress(ring: Ring | undefined, peer: string, defaultPort: number): { host: string; port: number } | undefined {
  const member = ring === undefined ? undefined : memberOf(ring, peer);
  if (member !== undefined) return member.cluster;
  const registered = lookupNode(peer);
  if (registered !== undefined) return registered.cluster;
  if (!peer.includes('@')) return undefined;
  return { host: hostOfNode(peer), port: defaultPort };
}

/** A node joins another cluster only empty: its own streams would be orphaned. */
function joinRefusal(local: StreamStore): string | undefined {
  const buckets = local.localBucketsNow().filter((bucket) => bucket !== '$sys');
  if (buckets.length === 0) return undefined;
  return `this node holds streams (buckets ${buckets.slice(0, 5).join(', ')}${buckets.length > 5 ? ', ...' : ''}): a node joins a cluster empty; move its data first`;
}

function stagedChange(ring: Ring, self: string, change: { kind: StagedChange['kind']; node?: string; by?: string }, defaultPort: number): StagedChange {
  const node = change.node ?? self;
  const info = (name: string | undefined): MemberInfo => {
    if (name === undefined) throw new IorioError('invalid-param', `${change.kind} needs the replacing node`);
    const member = memberOf(ring, name);
    if (member !== undefined) return { name, cluster: member.cluster, http: member.http };
    const registered = lookupNode(name);
    if (registered !== undefined) return { name, ...registered };
    return { name, cluster: { host: hostOfNode(name), port: defaultPort }, http: { host: hostOfNode(name), port: 0 } };
  };
  switch (change.kind) {
    case 'join':
      return { kind: 'join', member: info(node) };
    case 'leave':
      return { kind: 'leave', node };
    case 'force-remove':
      return { kind: 'force-remove', node };
    case 'replace':
      return { kind: 'replace', node, by: info(change.by) };
    case 'force-replace':
      return { kind: 'force-replace', node, by: info(change.by) };
  }
}

function membersAnswer(ring: Ring, self: string, reachable: (node: string) => boolean): MembersAnswer {
  const table = memberStatus(ring);
  return {
    node: self,
    cluster: ring.cluster,
    version: ring.version,
    claimant: ring.claimant,
    rows: table.rows.map((row) => ({ node: row.node, status: row.status, ringPercent: row.ringPercent, pendingPercent: row.pendingPercent ?? null, reachable: reachable(row.node) })),
    valid: table.valid,
    leaving: table.leaving,
    exiting: table.exiting,
    joining: table.joining,
    down: table.down,
  };
}

function ringAnswer(ring: Ring, self: string, unreachable: string[]): RingAnswer {
  const counts = new Map<string, number>();
  for (let partition = 0; partition < ring.size; partition++) counts.set(ownerOf(ring, partition), (counts.get(ownerOf(ring, partition)) ?? 0) + 1);
  return {
    node: self,
    cluster: ring.cluster,
    version: ring.version,
    size: ring.size,
    claimant: ring.claimant,
    ringReady: unreachable.length === 0,
    unreachable,
    ownership: ring.members.map((member) => ({ node: member.name, partitions: counts.get(member.name) ?? 0 })),
    owners: [...ring.owners],
    pending: ring.next.map((transfer) => ({ ...transfer })),
  };
}
