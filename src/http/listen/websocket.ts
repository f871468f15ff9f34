import type { RawData, WebSocket } from 'ws';
import { isIorioError } from '../../core/errors.js';
import {
  jsonDepthMax,
  listenBufferedBytesMax,
  listenCloseGraceMs,
  listenPendingBytesMax,
  listenReplayHighWaterBytes,
  listenStreamsMax,
  readLimitMax,
} from '../../core/limits.js';
import { nameProblem } from '../../core/names.js';
import { jsonTextTooDeep } from '../json-depth.js';
import { ConnectionKind, type ListenConnection, type ListenContext } from './connections.js';
import { streamKey, streamRef, type EncodedBatch, type TruncatedNotice } from './events.js';
import { seqnumProblem, toSeqnum, type StreamSpec } from './params.js';
import { revokedNotice, sessionEndedCloseCode, type ListenSession } from './session.js';
import { Gate, Subscription, type SubscriptionSink } from './subscription.js';

/** WebSocket close codes used by listen (RFC 6455 §7.4.1). */
export const CloseCode = { goingAway: 1001, internalError: 1011, tryAgainLater: 1013, sessionEnded: sessionEndedCloseCode } as const;

const ReplyType = { subscribe: 'subscribe', unsubscribe: 'unsubscribe', ping: 'ping' } as const;
type ReplyType = (typeof ReplyType)[keyof typeof ReplyType];

/** A command's `id`, echoed in its reply (any JSON value; 0 when absent, as IorioDB: iorio_listen_handler.erl:29). */
type CommandId = unknown;

/**
 * One WebSocket listener. Streams named in `s` are subscribed at open; the
 * client then sends commands:
 *   {"cmd":"subscribe","bucket","stream","from"?,"id"}  {"cmd":"unsubscribe","bucket","stream","id"}  {"cmd":"ping","id"}
 * and gets `{"ok":true,"id","type"}` or `{"ok":false,"id","reason"}` back,
 * always before the events of the subscription it acknowledges. The
 * refusals are IorioDB's (iorio_listen_handler.erl:34, 109-122, 178-224):
 * `unknown command`, `missing bucket and stream`, `missing bucket`,
 * `missing stream`, `already subscribed`, `not subscribed`; plus Iorio's
 * `no-perm` for a stream the user may not get. Events come
 * as JSON arrays, truncation notices as one JSON object.
 *
 * The session is re-checked on every delivery and every heartbeat: a stream
 * whose `get` grant was revoked is dropped with one
 * `{"type":"unsubscribed","bucket","stream","reason"}` message, and a
 * connection whose token expired (or whose user was deleted) is closed with
 * code 4401 and the reason ('session expired').
 */
export class WebSocketListener implements ListenConnection, SubscriptionSink {
  readonly kind = ConnectionKind.websocket;
  private readonly subscriptions = new Map<string, Subscription>();
  /** One replay page at a time per connection bounds what a connection can hold. */
  private readonly replayGate = new Gate();
  private readonly writeWaiters = new Set<() => void>();
  private missedPongs = 0;
  private closed = false;

  constructor(
    private readonly context: ListenContext,
    private readonly socket: WebSocket,
    private readonly session: ListenSession,
  ) {}

  /** Wires the socket's events (synchronously, so no early command is lost) and subscribes the `s` streams. */
  open(initial: readonly StreamSpec[]): void {
    this.socket.on('message', (data: RawData) => this.onMessage(data));
    this.socket.on('pong', () => {
      this.missedPongs = 0;
    });
    this.socket.on('close', () => this.cleanup());
    if (!this.context.connections.add(this)) {
      this.end(CloseCode.goingAway, 'server shutting down');
      return;
    }
    for (const spec of initial) this.subscribe(spec);
  }

  heartbeat(): void {
    if (this.closed) return;
    if (this.missedPongs >= 2) {
      this.context.logger.debug({ username: this.session.username }, 'listen: websocket missed two pongs, dropping it');
      this.socket.terminate();
      return;
    }
    if (!this.checkSession()) return;
    for (const subscription of [...this.subscriptions.values()]) this.checkGrant(subscription);
    this.missedPongs += 1;
    this.socket.ping();
  }

  shutdown(): void {
    this.end(CloseCode.goingAway, 'server shutting down');
  }

  replay(subscription: Subscription, batch: EncodedBatch, from: number): Promise<void> | void {
    if (!this.checkBuffered() || !this.mayDeliver(subscription)) return;
    const text = batch.arrayFrom(from);
    if (this.socket.bufferedAmount + text.length <= listenReplayHighWaterBytes) {
      this.socket.send(text);
      return;
    }
    // Wait until this page is written out before reading the next one.
    return new Promise<void>((resolve) => {
      this.writeWaiters.add(resolve);
      this.socket.send(text, () => {
        this.writeWaiters.delete(resolve);
        resolve();
      });
    });
  }

  live(subscription: Subscription, batch: EncodedBatch, from: number): void {
    if (!this.checkBuffered() || !this.mayDeliver(subscription)) return;
    this.socket.send(batch.arrayBytesFrom(from), { binary: false });
  }

  truncated(subscription: Subscription, notice: TruncatedNotice): void {
    if (this.closed || !this.mayDeliver(subscription)) return;
    this.socket.send(JSON.stringify(notice));
  }

  failed(subscription: Subscription, error: unknown): void {
    const { bucket, stream } = subscription.ref;
    this.context.logger.warn({ err: error, bucket, stream }, 'listen: websocket replay failed');
    const retriable = isIorioError(error) ? error.retriable : false;
    this.end(retriable ? CloseCode.tryAgainLater : CloseCode.internalError, `replay of ${bucket}/${stream} failed`.slice(0, 120));
  }

  private onMessage(data: RawData): void {
    if (this.closed) return;
    const bytes = rawBytes(data);
    // Replies echo the command's id: a deeply nested one would overflow JSON.stringify.
    if (jsonTextTooDeep(bytes, jsonDepthMax)) {
      this.reply({ ok: false, id: 0, reason: `a command must not be nested deeper than ${jsonDepthMax} levels` });
      return;
    }
    let command: unknown;
    try {
      command = JSON.parse(bytes.toString('utf8'));
    } catch {
      this.reply({ ok: false, id: 0, reason: 'bad JSON' });
      return;
    }
    if (typeof command !== 'object' || command === null || Array.isArray(command)) {
      this.reply({ ok: false, id: 0, reason: 'a command must be a JSON object' });
      return;
    }
    const fields = command as Record<string, unknown>;
    const id = fields['id'] ?? 0;
    switch (fields['cmd']) {
      case 'ping':
        return this.acknowledge(id, ReplyType.ping);
      case 'subscribe':
        return this.onSubscribe(id, fields);
      case 'unsubscribe':
        return this.onUnsubscribe(id, fields);
      default:
        return this.reply({ ok: false, id, reason: 'unknown command' });
    }
  }

  private onSubscribe(id: CommandId, fields: Record<string, unknown>): void {
    if (!this.checkSession()) return;
    const problem = this.streamProblem(fields);
    if (problem !== undefined) return this.reply({ ok: false, id, reason: problem });
    const bucket = fields['bucket'] as string;
    const stream = fields['stream'] as string;
    const rawFrom = fields['from'];
    if (rawFrom !== undefined && rawFrom !== null) {
      const fromProblem = seqnumProblem(rawFrom);
      if (fromProblem !== undefined) return this.reply({ ok: false, id, reason: `invalid from: ${fromProblem}` });
    }
    if (!this.context.deps.auth.can(this.session.username, 'get', bucket, stream)) {
      return this.reply({ ok: false, id, reason: 'no-perm' });
    }
    if (this.subscriptions.has(streamKey(bucket, stream))) return this.reply({ ok: false, id, reason: 'already subscribed' });
    if (this.subscriptions.size >= listenStreamsMax) {
      return this.reply({ ok: false, id, reason: `at most ${listenStreamsMax} streams per connection` });
    }
    this.acknowledge(id, ReplyType.subscribe);
    this.subscribe({ bucket, stream, from: rawFrom === undefined || rawFrom === null ? undefined : toSeqnum(rawFrom) });
  }

  private onUnsubscribe(id: CommandId, fields: Record<string, unknown>): void {
    const problem = this.streamProblem(fields);
    if (problem !== undefined) return this.reply({ ok: false, id, reason: problem });
    const key = streamKey(fields['bucket'] as string, fields['stream'] as string);
    const subscription = this.subscriptions.get(key);
    if (subscription === undefined) return this.reply({ ok: false, id, reason: 'not subscribed' });
    subscription.close();
    this.subscriptions.delete(key);
    this.context.logger.debug({ username: this.session.username, bucket: fields['bucket'], stream: fields['stream'] }, 'listen: websocket unsubscribed');
    this.acknowledge(id, ReplyType.unsubscribe);
  }

  private streamProblem(fields: Record<string, unknown>): string | undefined {
    const missingBucket = fields['bucket'] === undefined || fields['bucket'] === null;
    const missingStream = fields['stream'] === undefined || fields['stream'] === null;
    if (missingBucket && missingStream) return 'missing bucket and stream';
    if (missingBucket) return 'missing bucket';
    if (missingStream) return 'missing stream';
    const bucketProblem = nameProblem(fields['bucket']);
    if (bucketProblem !== undefined) return `invalid bucket name: ${bucketProblem}`;
    const streamProblem = nameProblem(fields['stream']);
    if (streamProblem !== undefined) return `invalid stream name: ${streamProblem}`;
    return undefined;
  }

  /** Subscribes (a stream named twice in `s` restarts from the later `from`). */
  private subscribe(spec: StreamSpec): void {
    this.context.logger.debug({ username: this.session.username, bucket: spec.bucket, stream: spec.stream, from: spec.from ?? 'now' }, 'listen: websocket subscribed');
    const ref = streamRef(spec.bucket, spec.stream);
    this.subscriptions.get(ref.key)?.close();
    const subscription = new Subscription(ref, this.context.deps.store, this.context.hub, this, {
      from: spec.from,
      pageLimit: readLimitMax,
      gate: this.replayGate,
      pendingBytesMax: listenPendingBytesMax,
    });
    this.subscriptions.set(ref.key, subscription);
    void subscription.start();
  }

  private acknowledge(id: CommandId, type: ReplyType): void {
    this.reply({ ok: true, id, type });
  }

  private reply(body: Record<string, unknown>): void {
    if (this.closed) return;
    this.socket.send(JSON.stringify(body));
  }

  /** The session still holds and may still get the subscription's stream (else the connection or the stream is dropped). */
  private mayDeliver(subscription: Subscription): boolean {
    return this.checkSession() && this.checkGrant(subscription);
  }

  /** False (and the connection closed with 4401) once the session ended: expired token, deleted user. */
  private checkSession(): boolean {
    const endedBecause = this.session.endedBecause();
    if (endedBecause === undefined) return true;
    this.context.logger.debug({ username: this.session.username, reason: endedBecause }, 'listen: closing websocket, session ended');
    this.end(CloseCode.sessionEnded, endedBecause.slice(0, 120));
    return false;
  }

  /** False (and the stream dropped, the client told) when its `get` grant was revoked. */
  private checkGrant(subscription: Subscription): boolean {
    if (this.session.mayGet(subscription.ref)) return true;
    subscription.close();
    if (this.subscriptions.get(subscription.ref.key) === subscription) {
      this.subscriptions.delete(subscription.ref.key);
      this.socket.send(JSON.stringify(revokedNotice(subscription.ref, this.session.revokedReason(subscription.ref))));
    }
    return false;
  }

  /** False (and the connection closed) when the client lets too much pile up: it resumes from its last id + 1. */
  private checkBuffered(): boolean {
    if (this.closed) return false;
    if (this.socket.bufferedAmount <= listenBufferedBytesMax) return true;
    this.context.logger.info({ username: this.session.username, bufferedBytes: this.socket.bufferedAmount }, 'listen: closing slow websocket consumer');
    this.end(CloseCode.tryAgainLater, 'slow consumer');
    return false;
  }

  /** Starts the closing handshake; a client that does not answer it in time is dropped. */
  private end(code: number, reason: string): void {
    if (this.closed) return;
    this.cleanup();
    this.socket.close(code, reason);
    const socket = this.socket;
    const timer = setTimeout(() => socket.terminate(), listenCloseGraceMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    for (const subscription of this.subscriptions.values()) subscription.close();
    this.subscriptions.clear();
    for (const resolve of this.writeWaiters) resolve();
    this.writeWaiters.clear();
    this.context.connections.remove(this);
  }
}

function rawBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
