import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import { listenCoalesceMs } from '../../core/limits.js';
import type { Store, StoredEntry } from '../../store/types.js';
import { EncodedBatch, type StreamRef } from './events.js';

/** What a topic delivers each durable batch to. */
export interface TopicListener {
  onBatch(batch: EncodedBatch): void;
}

/**
 * One stream's fan-out: a single store subscription shared by all its
 * listeners, with live entries coalesced (`listenCoalesceMs`) so a hot stream
 * costs each listener a bounded number of messages.
 */
class Topic {
  readonly listeners = new Set<TopicListener>();
  private readonly unsubscribeStore: () => void;
  private pending: StoredEntry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastSentMs = -Infinity;

  constructor(
    readonly ref: StreamRef,
    store: Store,
    private readonly clock: Clock,
    private readonly coalesceMs: number,
    private readonly logger: Logger,
  ) {
    this.unsubscribeStore = store.subscribe(ref.bucket, ref.stream, (entries) => this.receive(entries));
  }

  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = [];
    this.listeners.clear();
    this.unsubscribeStore();
  }

  private receive(entries: readonly StoredEntry[]): void {
    if (entries.length === 0) return;
    for (const entry of entries) this.pending.push(entry);
    if (this.timer !== undefined) return;
    const waitMs = this.lastSentMs + this.coalesceMs - this.clock.monotonic();
    if (waitMs <= 0) {
      this.flush();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, waitMs);
  }

  private flush(): void {
    const entries = this.pending;
    this.pending = [];
    this.lastSentMs = this.clock.monotonic();
    if (entries.length > 0) this.publish(entries);
  }

  private publish(entries: readonly StoredEntry[]): void {
    const batch = new EncodedBatch(this.ref, entries);
    // A listener may detach itself (or another) while we iterate: Set iteration tolerates that.
    for (const listener of this.listeners) {
      try {
        listener.onBatch(batch);
      } catch (error) {
        // A listener's bug must not starve the others of the batch.
        this.logger.error({ err: error, bucket: this.ref.bucket, stream: this.ref.stream }, 'listen: listener failed');
      }
    }
  }
}

/**
 * The node's listen fan-out: one store subscription per stream that has at
 * least one listener, whatever the number of listeners (10,000 WebSocket and
 * long-poll listeners of one stream cost one subscription and one encoding
 * per batch).
 */
export class ListenHub {
  private readonly topics = new Map<string, Topic>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly coalesceMs: number = listenCoalesceMs,
  ) {}

  /** Starts delivering the stream's durable batches to `listener`; returns the detach function. */
  attach(ref: StreamRef, listener: TopicListener): () => void {
    let topic = this.topics.get(ref.key);
    if (topic === undefined) {
      topic = new Topic(ref, this.store, this.clock, this.coalesceMs, this.logger);
      this.topics.set(ref.key, topic);
    }
    topic.listeners.add(listener);
    const attached = topic;
    return () => {
      if (!attached.listeners.delete(listener)) return;
      if (attached.listeners.size === 0 && this.topics.get(ref.key) === attached) {
        this.topics.delete(ref.key);
        attached.close();
      }
    };
  }

  /** Streams with at least one listener. */
  get topicCount(): number {
    return this.topics.size;
  }

  get listenerCount(): number {
    let count = 0;
    for (const topic of this.topics.values()) count += topic.listeners.size;
    return count;
  }

  /** Drops every store subscription (node shutdown, after the connections were told). */
  close(): void {
    for (const topic of this.topics.values()) topic.close();
    this.topics.clear();
  }
}
