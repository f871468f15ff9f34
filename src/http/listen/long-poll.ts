import type { FastifyReply } from 'fastify';
import { listenPendingBytesMax, readLimitMax } from '../../core/limits.js';
import { ConnectionKind, type ListenConnection, type ListenContext } from './connections.js';
import { streamRef, type EncodedBatch, type TruncatedNotice } from './events.js';
import type { StreamSpec } from './params.js';
import { Subscription, type SubscriptionSink } from './subscription.js';

/** Header naming the oldest kept seqnum when a requested one was evicted. */
export const firstSeqnumHeader = 'x-iorio-first-seqnum';

/**
 * One long-poll listener: answers 200 with a JSON array as soon as anything
 * at or after the requested seqnums is available (at once when a replay has
 * entries), or 204 when the timeout passes first. The replay reads one page
 * per stream, sharing readLimitMax entries between the streams, so one answer
 * stays bounded; the client asks again from its last ids + 1. Its timeout is
 * its only timer; a client that goes away releases its subscriptions at once.
 */
export class LongPollListener implements ListenConnection, SubscriptionSink {
  readonly kind = ConnectionKind.longPoll;
  private readonly subscriptions: Subscription[] = [];
  private readonly events: string[] = [];
  private firstSeqnum: number | undefined;
  private failure: unknown;
  private started = false;
  private answerScheduled = false;
  private done = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly context: ListenContext,
    private readonly reply: FastifyReply,
    private readonly timeoutMs: number,
  ) {}

  /** Subscribes, replays, then waits; the reply is sent later (the handler returns `reply`). */
  async open(specs: readonly StreamSpec[]): Promise<void> {
    this.reply.raw.on('close', () => {
      if (!this.done) this.finish();
    });
    if (!this.context.connections.add(this)) {
      this.answer();
      return;
    }
    const pageLimit = Math.max(1, Math.floor(readLimitMax / Math.max(1, specs.length)));
    for (const spec of specs) {
      this.subscriptions.push(
        new Subscription(streamRef(spec.bucket, spec.stream), this.context.deps.store, this.context.hub, this, {
          from: spec.from,
          pageLimit,
          pagesMax: 1,
          pendingBytesMax: listenPendingBytesMax,
        }),
      );
    }
    await Promise.all(this.subscriptions.map((subscription) => subscription.start()));
    this.started = true;
    if (this.done) return;
    if (this.events.length > 0 || this.failure !== undefined) {
      this.answer();
      return;
    }
    this.timer = setTimeout(() => this.answer(), this.timeoutMs);
  }

  heartbeat(): void {}

  shutdown(): void {
    this.answer();
  }

  replay(_subscription: Subscription, batch: EncodedBatch, from: number): void {
    if (!this.done) this.events.push(batch.itemsFrom(from));
  }

  live(_subscription: Subscription, batch: EncodedBatch, from: number): void {
    if (this.done) return;
    this.events.push(batch.itemsFrom(from));
    // Batches of several streams made durable together go in one answer.
    if (this.started && !this.answerScheduled) {
      this.answerScheduled = true;
      queueMicrotask(() => this.answer());
    }
  }

  truncated(_subscription: Subscription, notice: TruncatedNotice): void {
    this.firstSeqnum ??= notice.first;
  }

  failed(subscription: Subscription, error: unknown): void {
    const { bucket, stream } = subscription.ref;
    this.context.logger.warn({ err: error, bucket, stream }, 'listen: long-poll replay failed');
    this.failure ??= error;
    if (this.started) this.answer();
  }

  private answer(): void {
    if (this.done) return;
    this.finish();
    if (this.firstSeqnum !== undefined) this.reply.header(firstSeqnumHeader, String(this.firstSeqnum));
    if (this.events.length > 0) {
      this.reply.code(200).type('application/json; charset=utf-8').send('[' + this.events.join(',') + ']');
    } else if (this.failure !== undefined) {
      this.reply.send(this.failure);
    } else {
      this.reply.code(204).send();
    }
  }

  private finish(): void {
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    for (const subscription of this.subscriptions) subscription.close();
    this.subscriptions.length = 0;
    this.context.connections.remove(this);
  }
}
