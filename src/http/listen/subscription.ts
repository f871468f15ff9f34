import { assert } from '../../core/errors.js';
import type { Store, StoredEntry } from '../../store/types.js';
import { EncodedBatch, batchBytes, truncatedNotice, type StreamRef, type TruncatedNotice } from './events.js';
import type { ListenHub, TopicListener } from './hub.js';

/** Where a subscription's events go: one per connection (WebSocket, SSE, long-poll). */
export interface SubscriptionSink {
  /** A replayed page, events with seq >= from; the returned promise holds the next page back (back-pressure). */
  replay(subscription: Subscription, batch: EncodedBatch, from: number): Promise<void> | void;
  /** A live batch, events with seq >= from. */
  live(subscription: Subscription, batch: EncodedBatch, from: number): void;
  /** The requested seqnum was evicted; the replay starts at notice.first. */
  truncated(subscription: Subscription, notice: TruncatedNotice): void;
  /** The replay failed (store error); the subscription is closed. */
  failed(subscription: Subscription, error: unknown): void;
}

export interface SubscriptionOptions {
  /** First seqnum wanted; undefined: from "now" (the stream's last seqnum + 1 at subscribe time). */
  readonly from: number | undefined;
  /** Entries per replay read. */
  readonly pageLimit: number;
  /** Stop after this many replay pages; if not caught up by then the subscription ends 'incomplete'. */
  readonly pagesMax?: number;
  /** Serialises replay pages across a connection's subscriptions, bounding the memory one connection holds. */
  readonly gate?: Gate;
  /** Live bytes buffered while replaying; past it the buffer is dropped and re-read from the store. */
  readonly pendingBytesMax: number;
}

export type StartOutcome = 'live' | 'incomplete' | 'closed';

const Phase = { idle: 'idle', replaying: 'replaying', live: 'live', closed: 'closed' } as const;
type Phase = (typeof Phase)[keyof typeof Phase];

/**
 * One listener's subscription to one stream: replay from a seqnum, then live,
 * with no gap and no duplicate between the two. It attaches to the stream's
 * fan-out FIRST and buffers live batches while it replays, so an entry made
 * durable during the replay is either in a page read after it was durable or
 * in the buffer; buffered entries the replay already delivered are dropped by
 * seqnum. The buffer is bounded: when it overflows it is dropped, and the
 * replay keeps reading until a whole read ran without an overflow.
 */
export class Subscription implements TopicListener {
  private phase: Phase = Phase.idle;
  private nextSeq = 1;
  private pending: EncodedBatch[] = [];
  private pendingBytes = 0;
  private overflows = 0;
  private detach: (() => void) | undefined;

  constructor(
    readonly ref: StreamRef,
    private readonly store: Store,
    private readonly hub: ListenHub,
    private readonly sink: SubscriptionSink,
    private readonly options: SubscriptionOptions,
  ) {}

  /** The next seqnum this subscription will deliver. */
  get next(): number {
    return this.nextSeq;
  }

  get isClosed(): boolean {
    return this.phase === Phase.closed;
  }

  async start(): Promise<StartOutcome> {
    if (this.phase === Phase.closed) return 'closed';
    assert(this.phase === Phase.idle, 'a listen subscription is started once');
    this.phase = Phase.replaying;
    try {
      // Attach before reading anything: see the class comment.
      this.detach = this.hub.attach(this.ref, this);
      this.nextSeq = this.options.from ?? (await this.store.lastSeq(this.ref.bucket, this.ref.stream)) + 1;
      if (this.isClosed) return 'closed';
      const caughtUp = await this.replay();
      if (this.isClosed) return 'closed';
      if (!caughtUp) {
        this.close();
        return 'incomplete';
      }
      this.goLive();
      return 'live';
    } catch (error) {
      if (this.isClosed) return 'closed';
      this.close();
      this.sink.failed(this, error);
      return 'closed';
    }
  }

  close(): void {
    if (this.phase === Phase.closed) return;
    this.phase = Phase.closed;
    this.pending = [];
    this.pendingBytes = 0;
    this.detach?.();
    this.detach = undefined;
  }

  onBatch(batch: EncodedBatch): void {
    if (this.phase === Phase.live) {
      if (batch.lastSeq < this.nextSeq) return;
      const from = this.nextSeq;
      this.nextSeq = batch.lastSeq + 1;
      this.sink.live(this, batch, from);
      return;
    }
    if (this.phase !== Phase.replaying) return;
    this.pending.push(batch);
    this.pendingBytes += batchBytes(batch.entries);
    if (this.pendingBytes > this.options.pendingBytesMax) {
      this.pending = [];
      this.pendingBytes = 0;
      this.overflows += 1;
    }
  }

  /** Reads pages until caught up; true when caught up with no buffer overflow during the last read. */
  private async replay(): Promise<boolean> {
    const pagesMax = this.options.pagesMax ?? Number.POSITIVE_INFINITY;
    for (let page = 0; page < pagesMax; page++) {
      const release = this.options.gate === undefined ? undefined : await this.options.gate.acquire();
      try {
        if (this.isClosed) return false;
        const caughtUp = await this.replayPage();
        if (caughtUp === undefined) return false;
        if (caughtUp) return true;
      } finally {
        release?.();
      }
    }
    return false;
  }

  /** One read; true when it reached the stream's end with no overflow meanwhile, undefined when closed. */
  private async replayPage(): Promise<boolean | undefined> {
    const overflowsBefore = this.overflows;
    const requested = this.nextSeq;
    const result = await this.store.read(this.ref.bucket, this.ref.stream, { from: requested, limit: this.options.pageLimit });
    if (this.isClosed) return undefined;
    if (result.truncated && result.first > requested) {
      this.sink.truncated(this, truncatedNotice(this.ref, requested, result.first));
      this.nextSeq = result.first;
    }
    // Entries lost inside the page (a damaged file) are announced where they fall, like evicted ones.
    let entries = result.entries;
    for (const range of result.missing ?? []) {
      if (range.to < this.nextSeq) continue;
      const before = entries.filter((entry) => entry.seq < range.from);
      if (!(await this.deliverReplay(before))) return undefined;
      entries = entries.slice(before.length);
      this.sink.truncated(this, truncatedNotice(this.ref, Math.max(range.from, this.nextSeq), range.to + 1));
      this.nextSeq = Math.max(this.nextSeq, range.to + 1);
    }
    if (!(await this.deliverReplay(entries))) return undefined;
    // An empty page also ends the replay, so a store that answers oddly cannot spin this loop.
    const reachedEnd = this.nextSeq > result.last || result.entries.length === 0;
    return reachedEnd && this.overflows === overflowsBefore;
  }

  /** Hands replayed entries at or after nextSeq to the sink; false when the subscription closed meanwhile. */
  private async deliverReplay(entries: readonly StoredEntry[]): Promise<boolean> {
    if (entries.length === 0) return true;
    const batch = new EncodedBatch(this.ref, entries);
    const from = this.nextSeq;
    if (batch.lastSeq < from) return true;
    this.nextSeq = batch.lastSeq + 1;
    await this.sink.replay(this, batch, from);
    return !this.isClosed;
  }

  private goLive(): void {
    this.phase = Phase.live;
    const pending = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    for (const batch of pending) this.onBatch(batch);
  }
}

/** A FIFO mutex: one holder at a time, waiters served in arrival order. */
export class Gate {
  private busy = false;
  private readonly waiters: (() => void)[] = [];

  async acquire(): Promise<() => void> {
    if (this.busy) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.busy = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next === undefined) this.busy = false;
      else next();
    };
  }
}
