import type { FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';
import { listenBufferedBytesMax, listenCloseGraceMs, listenPendingBytesMax, listenReplayHighWaterBytes, readLimitMax } from '../../core/limits.js';
import { ConnectionKind, type ListenConnection, type ListenContext } from './connections.js';
import { streamRef, type EncodedBatch, type TruncatedNotice } from './events.js';
import type { StreamSpec } from './params.js';
import { revokedNotice, type ListenSession } from './session.js';
import { Gate, Subscription, type SubscriptionSink } from './subscription.js';

const heartbeatComment = ': ping\n\n';

/**
 * One Server-Sent Events listener (`Accept: text/event-stream`): each event
 * array is one `data: [...]` event, a truncation notice one `data: {...}`
 * event, and a `: ping` comment every listenHeartbeatMs keeps proxies from
 * closing an idle stream. A consumer too slow to keep its buffer under
 * listenBufferedBytesMax gets `event: close` with the reason, then the
 * connection ends; it resumes with s=bucket:stream:<last id + 1>.
 *
 * The session is re-checked on every delivery and every heartbeat: a stream
 * whose `get` grant was revoked is dropped with one
 * `data: {"type":"unsubscribed","bucket","stream","reason"}` event (and the
 * connection ends with `event: close` when no stream is left), and a token
 * that expired ends the connection with `event: close`, reason 'session expired'.
 *
 * Each event array carries an `id:` line, so a browser's EventSource
 * resumes where it stopped (it sends the last one back as Last-Event-ID,
 * which listen honours, see lastEventPositions): on a connection opened
 * for one stream the id is the last seqnum of the event; on one opened for
 * several it is `bucket:stream:seq,...`, the last seqnum of every stream
 * delivered so far.
 */
export class SseListener implements ListenConnection, SubscriptionSink {
  readonly kind = ConnectionKind.sse;
  private readonly subscriptions: Subscription[] = [];
  private readonly replayGate = new Gate();
  private readonly drainWaiters = new Set<() => void>();
  private readonly raw: ServerResponse;
  private closed = false;
  /** Opened for exactly one stream: the event id is a bare seqnum. */
  private singleStream = false;
  /** The last seqnum delivered per stream key (for multi-stream event ids). */
  private readonly lastDelivered = new Map<string, number>();

  constructor(
    private readonly context: ListenContext,
    private readonly reply: FastifyReply,
    private readonly session: ListenSession,
  ) {
    this.raw = reply.raw;
  }

  open(specs: readonly StreamSpec[]): void {
    this.reply.hijack();
    // Headers set by hooks (CORS, rate limits) would be lost with the hijack: carry them over.
    const carried: Record<string, string | number | readonly string[]> = {};
    for (const [name, value] of Object.entries(this.reply.getHeaders())) if (value !== undefined) carried[name] = value;
    this.raw.writeHead(200, {
      ...carried,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    this.raw.flushHeaders();
    this.raw.on('close', () => this.cleanup());
    this.raw.on('drain', () => this.releaseDrainWaiters());
    if (!this.context.connections.add(this)) {
      this.endWith('server shutting down');
      return;
    }
    this.singleStream = specs.length === 1;
    for (const spec of specs) {
      const subscription = new Subscription(streamRef(spec.bucket, spec.stream), this.context.deps.store, this.context.hub, this, {
        from: spec.from,
        pageLimit: readLimitMax,
        gate: this.replayGate,
        pendingBytesMax: listenPendingBytesMax,
      });
      this.subscriptions.push(subscription);
      void subscription.start();
    }
  }

  heartbeat(): void {
    if (this.closed || !this.checkSession()) return;
    for (const subscription of [...this.subscriptions]) this.checkGrant(subscription);
    if (this.closed || this.raw.writableLength > listenReplayHighWaterBytes) return;
    this.raw.write(heartbeatComment);
  }

  shutdown(): void {
    this.endWith('server shutting down');
  }

  replay(subscription: Subscription, batch: EncodedBatch, from: number): Promise<void> | void {
    if (!this.checkBuffered() || !this.mayDeliver(subscription)) return;
    if (batch.countFrom(from) === 0) return;
    const written = this.raw.write(this.idLine(batch) + 'data: ' + batch.arrayFrom(from) + '\n\n');
    if (written || this.raw.writableLength <= listenReplayHighWaterBytes) return;
    return new Promise<void>((resolve) => this.drainWaiters.add(resolve));
  }

  live(subscription: Subscription, batch: EncodedBatch, from: number): void {
    if (!this.checkBuffered() || !this.mayDeliver(subscription)) return;
    if (batch.countFrom(from) === 0) return;
    this.raw.write(this.idLine(batch));
    this.raw.write(batch.sseBytesFrom(from));
  }

  /** The `id:` line of an event carrying this batch (its entries with seq >= from, the batch's last one included). */
  private idLine(batch: EncodedBatch): string {
    if (this.singleStream) return 'id: ' + batch.lastSeq + '\n';
    this.lastDelivered.set(batch.ref.key, batch.lastSeq);
    return 'id: ' + [...this.lastDelivered].map(([key, seq]) => key + ':' + seq).join(',') + '\n';
  }

  truncated(subscription: Subscription, notice: TruncatedNotice): void {
    if (this.closed || !this.mayDeliver(subscription)) return;
    this.raw.write('data: ' + JSON.stringify(notice) + '\n\n');
  }

  failed(subscription: Subscription, error: unknown): void {
    const { bucket, stream } = subscription.ref;
    this.context.logger.warn({ err: error, bucket, stream }, 'listen: sse replay failed');
    this.endWith(`replay of ${bucket}/${stream} failed`);
  }

  /** The session still holds and may still get the subscription's stream (else the connection or the stream is dropped). */
  private mayDeliver(subscription: Subscription): boolean {
    return this.checkSession() && this.checkGrant(subscription);
  }

  /** False (and the connection ended) once the session ended: expired token, deleted user. */
  private checkSession(): boolean {
    const endedBecause = this.session.endedBecause();
    if (endedBecause === undefined) return true;
    this.context.logger.debug({ username: this.session.username, reason: endedBecause }, 'listen: closing sse, session ended');
    this.endWith(endedBecause);
    return false;
  }

  /** False (and the stream dropped, the client told) when its `get` grant was revoked; the connection ends with its last stream. */
  private checkGrant(subscription: Subscription): boolean {
    if (this.session.mayGet(subscription.ref)) return true;
    subscription.close();
    const index = this.subscriptions.indexOf(subscription);
    if (index < 0) return false;
    this.subscriptions.splice(index, 1);
    const reason = this.session.revokedReason(subscription.ref);
    this.raw.write('data: ' + JSON.stringify(revokedNotice(subscription.ref, reason)) + '\n\n');
    if (this.subscriptions.length === 0) this.endWith(reason);
    return false;
  }

  private checkBuffered(): boolean {
    if (this.closed) return false;
    if (this.raw.writableLength <= listenBufferedBytesMax) return true;
    this.context.logger.info({ username: this.session.username, bufferedBytes: this.raw.writableLength }, 'listen: closing slow sse consumer');
    this.endWith('slow consumer');
    return false;
  }

  /** Tells the client why, ends the stream, and destroys the socket if the client does not take it in time. */
  private endWith(reason: string): void {
    if (this.closed) return;
    this.cleanup();
    this.raw.end('event: close\ndata: ' + JSON.stringify({ type: 'closed', reason }) + '\n\n');
    const raw = this.raw;
    const timer = setTimeout(() => raw.destroy(), listenCloseGraceMs);
    timer.unref();
    raw.once('finish', () => clearTimeout(timer));
  }

  private releaseDrainWaiters(): void {
    for (const resolve of this.drainWaiters) resolve();
    this.drainWaiters.clear();
  }

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    for (const subscription of this.subscriptions) subscription.close();
    this.subscriptions.length = 0;
    this.releaseDrainWaiters();
    this.context.connections.remove(this);
  }
}
