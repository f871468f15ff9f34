import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { ConnectionKind, ConnectionRegistry, type ListenConnection } from '../../src/http/listen/connections.js';
import { ListenHub } from '../../src/http/listen/hub.js';
import type { EncodedBatch, TruncatedNotice } from '../../src/http/listen/events.js';
import { streamRef } from '../../src/http/listen/events.js';
import { Gate, Subscription, type SubscriptionSink } from '../../src/http/listen/subscription.js';
import type { AppendMeta, AppendRequest, ReadOptions, ReadResult, Store, StoredEntry, StreamListener } from '../../src/store/types.js';

/**
 * The replay/live handoff against a small in-memory store whose reads are
 * slow and whose notifications arrive on their own schedule, so that appends
 * land before, during and after every replay page. The real store is
 * exercised over HTTP in the other listen*.test.ts files.
 */
class MemoryStore implements Pick<Store, 'append' | 'read' | 'lastSeq' | 'subscribe'> {
  readonly entries: StoredEntry[] = [];
  first = 1;
  subscribeCalls = 0;
  private readonly listeners = new Set<StreamListener>();

  async append(request: AppendRequest): Promise<AppendMeta[]> {
    const batch = request.payloads.map((payload) => ({ seq: this.entries.length + 1, t: 1000 + this.entries.length, epoch: 1, payload }));
    this.entries.push(...batch);
    // Durable later, as a group commit makes it.
    await new Promise((resolve) => setImmediate(resolve));
    for (const listener of this.listeners) listener(batch);
    return batch.map((entry) => ({ id: entry.seq, t: entry.t }));
  }

  async read(_bucket: string, _stream: string, options: ReadOptions): Promise<ReadResult> {
    // Snapshot first, answer later: appends made meanwhile are not in this read.
    const last = this.entries.length;
    const requested = options.from ?? 1;
    const from = Math.max(requested, this.first);
    const entries = this.entries.slice(from - 1, from - 1 + options.limit);
    await new Promise((resolve) => setImmediate(resolve));
    return { entries, first: this.first, last, truncated: requested < this.first };
  }

  async lastSeq(): Promise<number> {
    return this.entries.length;
  }

  subscribe(_bucket: string, _stream: string, listener: StreamListener): () => void {
    this.subscribeCalls += 1;
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get listenerCount(): number {
    return this.listeners.size;
  }
}

class CollectingSink implements SubscriptionSink {
  readonly seqs: number[] = [];
  readonly notices: TruncatedNotice[] = [];
  readonly failures: unknown[] = [];

  replay(_subscription: Subscription, batch: EncodedBatch, from: number): Promise<void> {
    this.take(batch, from);
    return new Promise((resolve) => setImmediate(resolve));
  }

  live(_subscription: Subscription, batch: EncodedBatch, from: number): void {
    this.take(batch, from);
  }

  truncated(_subscription: Subscription, notice: TruncatedNotice): void {
    this.notices.push(notice);
  }

  failed(_subscription: Subscription, error: unknown): void {
    this.failures.push(error);
  }

  private take(batch: EncodedBatch, from: number): void {
    const events = JSON.parse(batch.arrayFrom(from)) as { meta: { id: number } }[];
    for (const event of events) this.seqs.push(event.meta.id);
  }
}

const logger = pino({ level: 'silent' });
const clock = { now: () => Date.now(), monotonic: () => performance.now() };
const payload = (n: number) => Buffer.from(JSON.stringify({ n }));

async function appendMany(store: MemoryStore, count: number): Promise<void> {
  for (let n = 0; n < count; n++) await store.append({ bucket: 'b', stream: 's', payloads: [payload(n)] });
}

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, index) => first + index);
}

describe('listen replay to live handoff', () => {
  it('delivers every entry once and in order while a writer keeps appending', async () => {
    const store = new MemoryStore();
    await appendMany(store, 50);
    const hub = new ListenHub(store as unknown as Store, clock, logger, 0);
    const sink = new CollectingSink();
    const subscription = new Subscription(streamRef('b', 's'), store as unknown as Store, hub, sink, {
      from: 3,
      pageLimit: 7,
      gate: new Gate(),
      pendingBytesMax: 1 << 20,
    });
    const writer = appendMany(store, 200);
    expect(await subscription.start()).toBe('live');
    await writer;
    await new Promise((resolve) => setImmediate(resolve));
    expect(sink.seqs).toEqual(range(3, 250));
    subscription.close();
    expect(store.listenerCount).toBe(0);
  });

  it('drops an overflowing live buffer and re-reads it from the store', async () => {
    const store = new MemoryStore();
    await appendMany(store, 20);
    const hub = new ListenHub(store as unknown as Store, clock, logger, 0);
    const sink = new CollectingSink();
    // A buffer too small for even one batch: every batch during the replay overflows it.
    const subscription = new Subscription(streamRef('b', 's'), store as unknown as Store, hub, sink, { from: 1, pageLimit: 5, pendingBytesMax: 10 });
    const writer = appendMany(store, 100);
    expect(await subscription.start()).toBe('live');
    await writer;
    await new Promise((resolve) => setImmediate(resolve));
    expect(sink.seqs).toEqual(range(1, 120));
  });

  it('starts from "now" when no from is given', async () => {
    const store = new MemoryStore();
    await appendMany(store, 10);
    const hub = new ListenHub(store as unknown as Store, clock, logger, 0);
    const sink = new CollectingSink();
    const subscription = new Subscription(streamRef('b', 's'), store as unknown as Store, hub, sink, { from: undefined, pageLimit: 5, pendingBytesMax: 1 << 20 });
    expect(await subscription.start()).toBe('live');
    await appendMany(store, 3);
    expect(sink.seqs).toEqual([11, 12, 13]);
  });

  it('tells the listener when the requested seqnum was evicted, then replays from the oldest kept', async () => {
    const store = new MemoryStore();
    await appendMany(store, 30);
    store.first = 21;
    const hub = new ListenHub(store as unknown as Store, clock, logger, 0);
    const sink = new CollectingSink();
    const subscription = new Subscription(streamRef('b', 's'), store as unknown as Store, hub, sink, { from: 5, pageLimit: 4, pendingBytesMax: 1 << 20 });
    expect(await subscription.start()).toBe('live');
    expect(sink.notices).toEqual([{ type: 'truncated', bucket: 'b', stream: 's', requested: 5, first: 21 }]);
    expect(sink.seqs).toEqual(range(21, 30));
  });

  it('ends incomplete after pagesMax pages when not caught up', async () => {
    const store = new MemoryStore();
    await appendMany(store, 30);
    const hub = new ListenHub(store as unknown as Store, clock, logger, 0);
    const sink = new CollectingSink();
    const subscription = new Subscription(streamRef('b', 's'), store as unknown as Store, hub, sink, { from: 1, pageLimit: 10, pagesMax: 1, pendingBytesMax: 1 << 20 });
    expect(await subscription.start()).toBe('incomplete');
    expect(sink.seqs).toEqual(range(1, 10));
    expect(store.listenerCount).toBe(0);
  });

  it('shares one store subscription between every listener of a stream', async () => {
    const store = new MemoryStore();
    const hub = new ListenHub(store as unknown as Store, clock, logger, 0);
    const sinks = Array.from({ length: 100 }, () => new CollectingSink());
    const subscriptions = sinks.map(
      (sink) => new Subscription(streamRef('b', 's'), store as unknown as Store, hub, sink, { from: undefined, pageLimit: 5, pendingBytesMax: 1 << 20 }),
    );
    await Promise.all(subscriptions.map((subscription) => subscription.start()));
    expect(store.subscribeCalls).toBe(1);
    await appendMany(store, 2);
    for (const sink of sinks) expect(sink.seqs).toEqual([1, 2]);
    for (const subscription of subscriptions) subscription.close();
    expect(hub.topicCount).toBe(0);
    expect(store.listenerCount).toBe(0);
  });

  it('reports a failing read and detaches', async () => {
    const store = new MemoryStore();
    store.read = async () => {
      throw new Error('disk on fire');
    };
    const hub = new ListenHub(store as unknown as Store, clock, logger, 0);
    const sink = new CollectingSink();
    const subscription = new Subscription(streamRef('b', 's'), store as unknown as Store, hub, sink, { from: 1, pageLimit: 5, pendingBytesMax: 1 << 20 });
    expect(await subscription.start()).toBe('closed');
    expect(sink.failures).toHaveLength(1);
    expect(store.listenerCount).toBe(0);
  });
});

describe('listen connection registry', () => {
  class FakeConnection implements ListenConnection {
    beats = 0;
    shutdowns = 0;
    constructor(readonly kind: ConnectionKind) {}
    heartbeat(): void {
      this.beats += 1;
    }
    shutdown(): void {
      this.shutdowns += 1;
    }
  }

  it('beats every open connection from one shared timer, and ends them all on shutdown', async () => {
    const registry = new ConnectionRegistry(5, logger);
    const socket = new FakeConnection(ConnectionKind.websocket);
    const sse = new FakeConnection(ConnectionKind.sse);
    const poll = new FakeConnection(ConnectionKind.longPoll);
    for (const connection of [socket, sse, poll]) expect(registry.add(connection)).toBe(true);
    expect(registry.count(ConnectionKind.sse)).toBe(1);
    const deadline = Date.now() + 10_000;
    while (sse.beats < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(socket.beats).toBeGreaterThanOrEqual(2);
    expect(sse.beats).toBeGreaterThanOrEqual(2);
    registry.closeAll();
    expect([socket.shutdowns, sse.shutdowns, poll.shutdowns]).toEqual([1, 1, 1]);
    expect(registry.count(ConnectionKind.websocket)).toBe(0);
    // A connection arriving while the node stops is refused.
    expect(registry.add(new FakeConnection(ConnectionKind.websocket))).toBe(false);
  });
});

describe('listen coalescing of a hot stream', () => {
  it('sends the first entry after a quiet spell at once, and later ones together at the end of the window', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      let nowMs = 0;
      const manualClock = { now: () => nowMs, monotonic: () => nowMs };
      const store = new MemoryStore();
      const hub = new ListenHub(store as unknown as Store, manualClock, logger, 20);
      const batches: number[][] = [];
      const detach = hub.attach(streamRef('b', 's'), {
        onBatch: (batch: EncodedBatch) => batches.push((JSON.parse(batch.arrayFrom(0)) as { meta: { id: number } }[]).map((event) => event.meta.id)),
      });
      const publish = (count: number) => appendMany(store, count);
      await publish(1);
      expect(batches).toEqual([[1]]);
      nowMs = 5;
      await publish(3);
      expect(batches).toEqual([[1]]); // within the window: held
      nowMs = 20;
      await vi.advanceTimersByTimeAsync(15);
      expect(batches).toEqual([[1], [2, 3, 4]]);
      nowMs = 100;
      await publish(1);
      expect(batches).toEqual([[1], [2, 3, 4], [5]]);
      detach();
      hub.close();
    } finally {
      vi.useRealTimers();
    }
  });
});
