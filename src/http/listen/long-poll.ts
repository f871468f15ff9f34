import type { FastifyReply } from 'fastify';
import { IorioError } from '../../core/errors.js';
import { listenPendingBytesMax, readLimitMax } from '../../core/limits.js';
import { ConnectionKind, type ListenConnection, type ListenContext } from './connections.js';
import { streamRef, type EncodedBatch, type TruncatedNotice } from './events.js';
import type { StreamSpec } from './params.js';
import type { ListenSession } from './session.js';
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
 *
 * Every delivery re-checks the session: a token that expired meanwhile gets
 * 401 unauthorized instead of the entries, a stream whose `get` grant was
 * revoked is dropped and, when nothing else is to be answered, the request
 * gets 403 no-perm.
 */
export class LongPollListener implements ListenConnection, SubscriptionSink {
  readonly kind = ConnectionKind.longPoll;
  private readonly subscriptions: Subscription[] = [];
  private events: string[] = [];
  private firstSeqnum: number | undefined;
  private failure: unknown;
  private started = false;
  private answerScheduled = false;
  private done = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly context: ListenContext,
    private readonly reply: FastifyReply,
    private readonly session: ListenSession,
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

  replay(subscription: Subscription, batch: EncodedBatch, from: number): void {
    if (!this.done && this.mayDeliver(subscription)) this.events.push(batch.itemsFrom(from));
  }

  live(subscription: Subscription, batch: EncodedBatch, from: number): void {
    if (this.done || !this.mayDeliver(subscription)) return;
    this.events.push(batch.itemsFrom(from));
    this.answerSoon();
  }

  truncated(subscription: Subscription, notice: TruncatedNotice): void {
    if (!this.done && this.mayDeliver(subscription)) this.firstSeqnum ??= notice.first;
  }

  failed(subscription: Subscription, error: unknown): void {
    const { bucket, stream } = subscription.ref;
    this.context.logger.warn({ err: error, bucket, stream }, 'listen: long-poll replay failed');
    this.failure ??= error;
    if (this.started) this.answer();
  }

  /**
   * The session still holds and may still get the subscription's stream.
   * Else: an ended session answers 401 (nothing gathered is sent); a revoked
   * stream is dropped, and answers 403 unless other streams gave entries.
   */
  private mayDeliver(subscription: Subscription): boolean {
    const endedBecause = this.session.endedBecause();
    if (endedBecause !== undefined) {
      this.events = [];
      this.firstSeqnum = undefined;
      this.failure = new IorioError('unauthorized', endedBecause);
      this.answerSoon();
      return false;
    }
    if (this.session.mayGet(subscription.ref)) return true;
    subscription.close();
    const index = this.subscriptions.indexOf(subscription);
    if (index >= 0) this.subscriptions.splice(index, 1);
    this.failure ??= new IorioError('no-perm', this.session.revokedReason(subscription.ref));
    this.answerSoon();
    return false;
  }

  /** Answers once the current delivery is over (batches made durable together go in one answer); before start, open() answers. */
  private answerSoon(): void {
    if (!this.started || this.answerScheduled) return;
    this.answerScheduled = true;
    queueMicrotask(() => this.answer());
  }

  private answer(): void {
    if (this.done) return;
    this.finish();
    if (this.firstSeqnum !== undefined) this.reply.header(firstSeqnumHeader, String(this.firstSeqnum));
    if (this.events.length > 0) {
      this.reply.code(200).type('application/json').send('[' + this.events.join(',') + ']');
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
