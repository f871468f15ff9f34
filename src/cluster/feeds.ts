/**
 * Live entries of a stream wherever it is served (the Store's subscribe,
 * for a cluster). A feed delivers each durable entry of its stream once and
 * in seqnum order, from the node that serves the stream's partition: here
 * (a local store subscription), or another node (a remote subscription over
 * the cluster connection). When the stream moves (a handoff, a new ring, a
 * node lost and back) the feed reattaches where it is served now and asks
 * for everything after the last entry it delivered: no gap, no duplicate,
 * and the listeners above never reconnect.
 *
 * The serving side of remote subscriptions is here too: a node serving a
 * partition streams its entries to the nodes that subscribed, and ends
 * those subscriptions (`moved`) when it stops serving the partition.
 */
import type { Logger } from 'pino';
import { IorioError } from '../core/errors.js';
import { partitionOf } from '../core/hash.js';
import { readLimitMax } from '../core/limits.js';
import type { Ring } from '../core/ring.js';
import { MessageType } from '../core/wire.js';
import type { StreamStore } from '../store/stream-store.js';
import type { ReadOptions, ReadResult, StoredEntry, StreamListener } from '../store/types.js';
import type { PartitionRoutes } from './partition-routes.js';
import type { ClusterTransport } from './transport.js';

/** How soon a feed whose source went away tries again. */
const reattachDelayMs = 250;

export interface FeedsOptions {
  readonly local: StreamStore;
  readonly transport: ClusterTransport;
  readonly routes: PartitionRoutes;
  readonly ring: () => Ring;
  readonly self: string;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  /** A routed read (from whichever node serves the stream). */
  readonly read: (bucket: string, stream: string, options: ReadOptions) => Promise<ReadResult>;
}

interface EntriesMessage {
  readonly id: string;
  readonly entries: StoredEntry[];
}

type Source = { kind: 'local'; off: () => void } | { kind: 'remote'; node: string; id: string } | { kind: 'none' };

class Feed {
  /** Seqnum of the last entry delivered; undefined until the first one (a feed starts "from now"). */
  private lastDelivered: number | undefined;
  private source: Source = { kind: 'none' };
  /** Entries that arrived while a gap was being filled. */
  private held: StoredEntry[] = [];
  private filling = false;
  private retry: NodeJS.Timeout | undefined;
  closed = false;

  constructor(
    private readonly feeds: Feeds,
    readonly bucket: string,
    readonly stream: string,
    readonly partition: number,
    private readonly listener: StreamListener,
  ) {}

  get sourceNode(): string | undefined {
    return this.source.kind === 'remote' ? this.source.node : this.source.kind === 'local' ? this.feeds.self : undefined;
  }

  get remoteId(): string | undefined {
    return this.source.kind === 'remote' ? this.source.id : undefined;
  }

  /** Subscribes where the stream is served now, from after the last delivered entry. */
  attach(): void {
    if (this.closed) return;
    const node = this.feeds.routeOf(this.partition);
    if (node === this.feeds.self) {
      const off = this.feeds.local.subscribe(this.bucket, this.stream, (entries) => this.receive(entries));
      this.source = { kind: 'local', off };
      if (this.lastDelivered !== undefined) void this.fill();
      return;
    }
    const id = this.feeds.newId();
    this.source = { kind: 'remote', node, id };
    this.feeds.register(id, this);
    const from = this.lastDelivered === undefined ? null : this.lastDelivered + 1;
    this.feeds.transport
      .request<{ last: number }>(node, MessageType.listenSubscribe, { id, bucket: this.bucket, stream: this.stream, from }, { timeoutMs: this.feeds.requestTimeoutMs })
      .then((answer) => {
        if (this.remoteId !== id) return;
        if (this.lastDelivered === undefined) this.lastDelivered = answer.last;
        else void this.fill();
      })
      .catch(() => {
        if (this.remoteId === id) this.reattachSoon();
      });
  }

  detach(): void {
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.retry = undefined;
    const source = this.source;
    this.source = { kind: 'none' };
    if (source.kind === 'local') source.off();
    if (source.kind === 'remote') {
      this.feeds.unregister(source.id);
      this.feeds.transport.send(source.node, MessageType.listenUnsubscribe, { id: source.id });
    }
  }

  reattachSoon(): void {
    if (this.closed || this.retry !== undefined) return;
    this.detach();
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.attach();
    }, reattachDelayMs);
    this.retry.unref();
  }

  close(): void {
    this.closed = true;
    this.detach();
  }

  /** Entries from the source: delivered once, in order; a gap is filled by a read first. */
  receive(entries: readonly StoredEntry[]): void {
    if (this.closed) return;
    if (this.filling) {
      this.held.push(...entries);
      return;
    }
    const fresh = this.lastDelivered === undefined ? [...entries] : entries.filter((entry) => entry.seq > this.lastDelivered!);
    if (fresh.length === 0) return;
    if (this.lastDelivered !== undefined && fresh[0]!.seq > this.lastDelivered + 1) {
      this.held.push(...fresh);
      void this.fill();
      return;
    }
    this.deliver(fresh);
  }

  private deliver(entries: StoredEntry[]): void {
    // Entries must run on from the last delivered one: anything else waits for a fill.
    let run = entries;
    if (this.lastDelivered !== undefined) {
      let count = 0;
      while (count < run.length && run[count]!.seq === this.lastDelivered + 1 + count) count++;
      if (count < run.length) {
        this.held.push(...run.slice(count));
        run = run.slice(0, count);
        void this.fill();
      }
    }
    if (run.length === 0) return;
    this.lastDelivered = run[run.length - 1]!.seq;
    try {
      this.listener(run);
    } catch (error) {
      this.feeds.logger.error({ err: error }, 'a stream listener threw');
    }
  }

  /** Reads what follows the last delivered entry until caught up, then delivers what was held. */
  private async fill(): Promise<void> {
    if (this.filling || this.closed || this.lastDelivered === undefined) return;
    this.filling = true;
    try {
      for (let round = 0; round < 10_000 && !this.closed; round++) {
        const result = await this.feeds.read(this.bucket, this.stream, { from: this.lastDelivered + 1, limit: readLimitMax });
        const entries = result.entries.filter((entry) => entry.seq > this.lastDelivered!);
        if (entries.length > 0) {
          this.lastDelivered = entries[entries.length - 1]!.seq;
          this.listener(entries);
        } else if (result.first > this.lastDelivered + 1) {
          // Evicted meanwhile: go on from the oldest kept entry.
          this.lastDelivered = result.first - 1;
          continue;
        }
        if (this.lastDelivered >= result.last || entries.length === 0) break;
      }
    } catch (error) {
      this.feeds.logger.debug({ err: error, bucket: this.bucket, stream: this.stream }, 'a feed could not catch up yet; it will retry');
      this.filling = false;
      this.reattachSoon();
      return;
    }
    this.filling = false;
    const held = this.held;
    this.held = [];
    if (held.length > 0) this.receive(held);
  }
}

/** A remote subscription this node serves. */
interface Served {
  readonly partition: number;
  readonly from: string;
  readonly id: string;
  readonly off: () => void;
}

export class Feeds {
  readonly logger: Logger;
  readonly local: StreamStore;
  readonly transport: ClusterTransport;
  readonly self: string;
  readonly requestTimeoutMs: number;
  readonly read: FeedsOptions['read'];
  private readonly feeds = new Set<Feed>();
  private readonly byId = new Map<string, Feed>();
  private readonly served = new Map<string, Served>();
  private readonly unsubscribe: (() => void)[] = [];
  private counter = 0;

  constructor(private readonly options: FeedsOptions) {
    this.logger = options.logger.child({ component: 'feeds' });
    this.local = options.local;
    this.transport = options.transport;
    this.self = options.self;
    this.requestTimeoutMs = options.requestTimeoutMs;
    this.read = options.read;
    const { transport } = options;
    this.unsubscribe.push(
      transport.handle(MessageType.listenSubscribe, (body, from) => this.serve(body as { id: string; bucket: string; stream: string }, from)),
      transport.on(MessageType.listenUnsubscribe, (body, from) => this.stopServing(`${from}\u0000${(body as { id: string }).id}`)),
      transport.on(MessageType.listenEntries, (body) => {
        const message = body as EntriesMessage;
        this.byId.get(message.id)?.receive(message.entries);
      }),
      transport.on(MessageType.listenEnd, (body) => this.byId.get((body as { id: string }).id)?.reattachSoon()),
      transport.onPeerDown((peer) => this.peerDown(peer)),
    );
  }

  routeOf(partition: number): string {
    return this.options.routes.route(partition).node;
  }

  newId(): string {
    return `${this.self}#${++this.counter}`;
  }

  register(id: string, feed: Feed): void {
    this.byId.set(id, feed);
  }

  unregister(id: string): void {
    this.byId.delete(id);
  }

  subscribe(bucket: string, stream: string, listener: StreamListener): () => void {
    const feed = new Feed(this, bucket, stream, partitionOf(bucket, stream, this.options.ring().size), listener);
    this.feeds.add(feed);
    feed.attach();
    return () => {
      feed.close();
      this.feeds.delete(feed);
    };
  }

  /** Routes may have changed (one partition, or -1 for all): feeds reattach where their stream is served now; served subscriptions of partitions no longer served here end. */
  reroute(partition: number): void {
    for (const feed of this.feeds) {
      if (partition !== -1 && feed.partition !== partition) continue;
      const node = this.routeOf(feed.partition);
      if (node !== feed.sourceNode) {
        feed.detach();
        feed.attach();
      }
    }
    for (const [key, served] of this.served) {
      if ((partition === -1 || served.partition === partition) && !this.options.routes.servesHere(served.partition)) {
        this.transport.send(served.from, MessageType.listenEnd, { id: served.id, reason: 'moved' });
        this.stopServing(key);
      }
    }
  }

  /** Another node subscribes to a stream this node serves: its entries from `from` (if given), then live. */
  private serve(body: { id: string; bucket: string; stream: string }, from: string): { last: number } {
    const partition = partitionOf(body.bucket, body.stream, this.options.ring().size);
    if (!this.options.routes.servesHere(partition)) {
      throw new IorioError('unavailable', `partition ${partition} is not served by ${this.self}`, { reason_code: 'moved' });
    }
    const key = `${from}\u0000${body.id}`;
    this.stopServing(key);
    const send = (entries: readonly StoredEntry[]) => {
      if (entries.length === 0) return;
      if (!this.transport.send(from, MessageType.listenEntries, { id: body.id, entries })) {
        // The subscriber does not keep up: end it; it comes back from its last entry.
        this.stopServing(key);
        this.transport.send(from, MessageType.listenEnd, { id: body.id, reason: 'overflow' });
      }
    };
    const off = this.local.subscribe(body.bucket, body.stream, send);
    this.served.set(key, { partition, from, id: body.id, off });
    // Live from here on; what the subscriber missed before it reads itself (Feed.fill).
    return { last: this.local.lastSeqNow(body.bucket, body.stream) };
  }

  private stopServing(key: string): void {
    const served = this.served.get(key);
    if (served === undefined) return;
    this.served.delete(key);
    served.off();
  }

  private peerDown(peer: string): void {
    for (const [key, served] of this.served) if (served.from === peer) this.stopServing(key);
    for (const feed of this.feeds) if (feed.sourceNode === peer) feed.reattachSoon();
  }

  close(): void {
    for (const off of this.unsubscribe) off();
    for (const feed of this.feeds) feed.close();
    this.feeds.clear();
    for (const key of [...this.served.keys()]) this.stopServing(key);
  }
}
