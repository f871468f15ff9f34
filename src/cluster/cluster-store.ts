/**
 * The router: the Store the HTTP layer sees on a node of a cluster. Any
 * node accepts any request; each stream operation runs on the node that
 * serves the stream's partition (cluster/partition-routes.ts), locally when
 * that is this node, else over the cluster connection. A node that is asked
 * for a partition it no longer serves forwards once more (a handoff in
 * flight), and after that answers 503 (retriable) rather than loop.
 *
 * Listing buckets and streams is a coverage query: every member is asked
 * for what it holds, and a member that does not answer makes the listing
 * `partial`. Eviction policies are cluster metadata (cluster/metadata.ts).
 */
import type { Logger } from 'pino';
import { IorioError } from '../core/errors.js';
import { partitionOf } from '../core/hash.js';
import type { Ring } from '../core/ring.js';
import { MessageType } from '../core/wire.js';
import type { StreamStore } from '../store/stream-store.js';
import type {
  AppendMeta,
  AppendRequest,
  EvictionPolicy,
  ExportedRecords,
  ImportBatch,
  Listing,
  ReadOptions,
  ReadResult,
  Store,
  StoreStats,
  StreamInfo,
  StreamListener,
  StreamPosition,
} from '../store/types.js';
import { Feeds } from './feeds.js';
import type { PartitionRoutes } from './partition-routes.js';
import type { ClusterTransport } from './transport.js';

/** A request may be forwarded this many times (owner, then a handoff's target) before it is refused. */
const hopsMax = 2;

/** Stream operations on a partition this node leads, through its replica group (request.n > 1). */
export interface ReplicatedOps {
  hosts(partition: number): boolean;
  append(partition: number, requests: readonly AppendRequest[]): Promise<AppendMeta[][]>;
  deleteStream(partition: number, bucket: string, stream: string): Promise<void>;
  /** Runs a read here if this node leads within its lease, with everything committed applied. */
  serve<T>(partition: number, read: () => Promise<T>): Promise<T>;
  /** Why replicated appends are refused here now (a partition log met a full disk), or undefined. */
  writeRefusal(): string | undefined;
}

export interface ClusterStoreOptions {
  readonly local: StreamStore;
  /** With request.n > 1. */
  readonly replicated?: ReplicatedOps;
  readonly transport: ClusterTransport;
  readonly routes: PartitionRoutes;
  readonly ring: () => Ring;
  readonly self: string;
  readonly requestTimeoutMs: number;
  readonly reachable: (node: string) => boolean;
  readonly logger: Logger;
  /** Called as a stream operation is forwarded to another node; the function it returns, once the answer (or error) is back (the node's forward latency metric). */
  readonly onForward?: (type: number) => () => void;
}

interface Hops {
  readonly hops: number;
}

export class ClusterStore implements Store {
  private readonly local: StreamStore;
  private readonly feeds: Feeds;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly logger: Logger;

  constructor(private readonly options: ClusterStoreOptions) {
    this.local = options.local;
    this.logger = options.logger.child({ component: 'router' });
    this.feeds = new Feeds({ ...options, read: (bucket, stream, read) => this.read(bucket, stream, read) });
    this.serveRemote();
  }

  private partition(bucket: string, stream: string): number {
    return partitionOf(bucket, stream, this.options.ring().size);
  }

  /** Runs `local` here if this node serves the partition, else sends `type` to the node that does. */
  private async routed<T>(partition: number, hops: number, type: number, body: object, local: () => Promise<T>, _write: boolean): Promise<T> {
    // A sealed partition (the last moment of a handoff) holds reads too: its next server is about to take over.
    await this.options.routes.whenOpen(partition);
    const route = this.options.routes.route(partition);
    if (route.node === this.options.self) {
      // With replica groups the stream store is only ever written (and read) through a replica: a node that routes a partition
      // to itself without one (its group is changing, or it has not opened it yet) refuses rather than act as a copy of its own.
      const replicated = this.options.replicated;
      if (replicated !== undefined && !replicated.hosts(partition)) throw new IorioError('unavailable', `partition ${partition}: this node holds no replica of it now (its group is changing); retry`);
      return this.options.routes.withLocal(partition, local);
    }
    if (hops >= hopsMax) throw new IorioError('unavailable', `partition ${partition} is moving between nodes; retry`);
    const forwarded = this.options.onForward?.(type);
    try {
      return await this.options.transport.request<T>(route.node, type, { ...body, hops: hops + 1 }, { timeoutMs: this.options.requestTimeoutMs });
    } catch (error) {
      throw unreachable(error, partition, route.node);
    } finally {
      forwarded?.();
    }
  }

  /** The replica group of the partition when this node runs one (request.n > 1). */
  private group(partition: number): ReplicatedOps | undefined {
    const replicated = this.options.replicated;
    return replicated !== undefined && replicated.hosts(partition) ? replicated : undefined;
  }

  /** A read here: through the group's leader check when the partition is replicated. */
  private served<T>(partition: number, read: () => Promise<T>): () => Promise<T> {
    return () => {
      const group = this.group(partition);
      return group === undefined ? read() : group.serve(partition, read);
    };
  }

  append(request: AppendRequest, hops = 0): Promise<AppendMeta[]> {
    const partition = this.partition(request.bucket, request.stream);
    return this.routed(partition, hops, MessageType.streamAppend, { request }, () => {
      const group = this.group(partition);
      return group === undefined ? this.local.append(request) : group.append(partition, [request]).then((metas) => metas[0]!);
    }, true);
  }

  appendAtomic(requests: readonly AppendRequest[], hops = 0): Promise<AppendMeta[][]> {
    const first = requests[0]!;
    const partition = this.partition(first.bucket, first.stream);
    return this.routed(partition, hops, MessageType.streamAppendAtomic, { requests }, () => {
      const group = this.group(partition);
      return group === undefined ? this.local.appendAtomic(requests) : group.append(partition, requests);
    }, true);
  }

  read(bucket: string, stream: string, options: ReadOptions, hops = 0): Promise<ReadResult> {
    const partition = this.partition(bucket, stream);
    return this.routed(partition, hops, MessageType.streamRead, { bucket, stream, options }, this.served(partition, () => this.local.read(bucket, stream, options)), false);
  }

  lastSeq(bucket: string, stream: string, hops = 0): Promise<number> {
    const partition = this.partition(bucket, stream);
    return this.routed(partition, hops, MessageType.streamLastSeq, { bucket, stream }, this.served(partition, () => this.local.lastSeq(bucket, stream)), false);
  }

  streamInfo(bucket: string, stream: string, hops = 0): Promise<StreamInfo | null> {
    const partition = this.partition(bucket, stream);
    return this.routed(
      partition,
      hops,
      MessageType.streamInfo,
      { bucket, stream },
      this.served(partition, async () => {
        const info = await this.local.streamInfo(bucket, stream);
        return info === null ? null : { ...info, node: this.options.self };
      }),
      false,
    );
  }

  deleteStream(bucket: string, stream: string, hops = 0): Promise<void> {
    const partition = this.partition(bucket, stream);
    return this.routed(partition, hops, MessageType.streamDelete, { bucket, stream }, () => {
      const group = this.group(partition);
      return group === undefined ? this.local.deleteStream(bucket, stream) : group.deleteStream(partition, bucket, stream);
    }, true);
  }

  subscribe(bucket: string, stream: string, listener: StreamListener): () => void {
    return this.feeds.subscribe(bucket, stream, listener);
  }

  /** Serves the stream operations other nodes send here (each routed again: this node may have handed the partition off). */
  private serveRemote(): void {
    const { transport } = this.options;
    const handlers: [number, (body: never) => Promise<unknown>][] = [
      [MessageType.streamAppend, (body: { request: AppendRequest } & Hops) => this.append(body.request, body.hops)],
      [MessageType.streamAppendAtomic, (body: { requests: AppendRequest[] } & Hops) => this.appendAtomic(body.requests, body.hops)],
      [MessageType.streamRead, (body: { bucket: string; stream: string; options: ReadOptions } & Hops) => this.read(body.bucket, body.stream, body.options, body.hops)],
      [MessageType.streamLastSeq, (body: { bucket: string; stream: string } & Hops) => this.lastSeq(body.bucket, body.stream, body.hops)],
      [MessageType.streamInfo, (body: { bucket: string; stream: string } & Hops) => this.streamInfo(body.bucket, body.stream, body.hops)],
      [MessageType.streamDelete, async (body: { bucket: string; stream: string } & Hops) => {
        await this.deleteStream(body.bucket, body.stream, body.hops);
        return null;
      }],
      [MessageType.coverageListBuckets, async () => (await this.local.listBuckets()).names],
      [MessageType.coverageListStreams, async (body: { bucket: string }) => (await this.local.listStreams(body.bucket)).names],
    ];
    for (const [type, handler] of handlers) this.unsubscribe.push(transport.handle(type, handler as (body: unknown) => Promise<unknown>));
  }

  // -------------------------------------------------------------------------
  // Coverage

  listBuckets(): Promise<Listing> {
    return this.cover(MessageType.coverageListBuckets, {}, () => this.local.listBuckets());
  }

  listStreams(bucket: string): Promise<Listing> {
    return this.cover(MessageType.coverageListStreams, { bucket }, () => this.local.listStreams(bucket));
  }

  /** Asks every member for what it holds; the union, `partial` when one did not answer. */
  private async cover(type: number, body: object, local: () => Promise<Listing>): Promise<Listing> {
    const members = this.options.ring().members.map((member) => member.name);
    const names = new Set<string>();
    const missing: string[] = [];
    await Promise.all(
      members.map(async (node) => {
        try {
          const found = node === this.options.self ? (await local()).names : await this.options.transport.request<string[]>(node, type, body, { timeoutMs: this.options.requestTimeoutMs });
          for (const name of found) names.add(name);
        } catch {
          missing.push(node);
        }
      }),
    );
    return { names: [...names].sort(), partial: missing.length > 0, ...(missing.length > 0 ? { missing: missing.sort() } : {}) };
  }

  // -------------------------------------------------------------------------
  // Policies: cluster metadata

  getPolicy(bucket: string, stream?: string): EvictionPolicy | undefined {
    return this.local.getPolicy(bucket, stream);
  }

  /** A policy is cluster metadata: written here, replicated by cluster/metadata.ts (the HTTP layer waits for it). */
  setPolicy(bucket: string, stream: string | undefined, policy: EvictionPolicy): Promise<void> {
    return this.local.setPolicy(bucket, stream, policy);
  }

  deletePolicy(bucket: string, stream: string | undefined): Promise<void> {
    return this.local.deletePolicy(bucket, stream);
  }

  // -------------------------------------------------------------------------
  // The rest is this node's own

  stats(): StoreStats {
    const stats = this.local.stats();
    const refused = stats.writesRefused ?? this.options.replicated?.writeRefusal() ?? null;
    return refused === stats.writesRefused ? stats : { ...stats, writesRefused: refused };
  }

  partitionStreams(partition: number): StreamPosition[] {
    return this.local.partitionStreams(partition);
  }

  exportRecords(bucket: string, stream: string, afterSeq: number, bytesMax: number): Promise<ExportedRecords> {
    return this.local.exportRecords(bucket, stream, afterSeq, bytesMax);
  }

  importRecords(batch: ImportBatch): Promise<void> {
    return this.local.importRecords(batch);
  }

  dropPartition(partition: number): Promise<number> {
    return this.local.dropPartition(partition);
  }

  /** Feeds follow their streams when routes change (a ring change, a handoff mark). */
  routesChanged(partition: number): void {
    this.feeds.reroute(partition);
  }

  /** Stops serving remote operations and feeds; the local store is closed by the node. */
  async close(): Promise<void> {
    for (const off of this.unsubscribe) off();
    this.feeds.close();
  }
}

function unreachable(error: unknown, partition: number, node: string): unknown {
  if (error instanceof IorioError && error.code === 'unavailable' && !error.message.includes(node)) {
    return new IorioError('unavailable', `partition ${partition} is served by ${node}, which cannot be reached now (${error.message}); retry`, { node });
  }
  return error;
}
