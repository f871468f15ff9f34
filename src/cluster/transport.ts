/**
 * The node-to-node transport: one authenticated TCP connection per peer
 * pair, carrying requests, responses and one-way messages in frames
 * (core/wire.ts).
 *
 * Connections. A peer is dialled on demand (the first request or message to
 * it) at the address `resolve(peer)` gives, from `host` as source address, so
 * a node can be cut off by its address. The handshake (cluster/handshake.ts)
 * proves on both sides that the other knows the cluster secret and tells
 * each its peer's name; nothing else moves before it ends. A peer that fails
 * it, claims our name, or connects from an address the resolver does not
 * give for its name is refused, and a warning names its address and claimed
 * name (once a minute per address, name and reason).
 *
 * One connection per pair. When both nodes dial each other at once, the
 * connection dialled by the node with the lower name wins: the acceptor with
 * the lower name refuses the other dial as a duplicate (the dialer then
 * waits for the inbound one), the acceptor with the higher name abandons its
 * own dial. Frames wait in a per-peer queue until a connection is up, so
 * whichever wins, nothing queued is lost and order is kept. A new connection
 * from a peer that already has one replaces it (the peer lost or restarted
 * it), except in the one case that can be the dial race itself (our own dial,
 * lower name, same incarnation of the peer).
 *
 * Failure. A lost connection rejects the requests in flight on it as
 * `unavailable` (retriable) and emits peer-down; it is dialled again on the
 * next use. A failed dial (refused, timed out after connectTimeoutMs, handshake
 * refused) rejects the queued requests, drops the queued one-way messages and
 * starts a backoff (clusterReconnectBackoffMsMin doubling to ...Max): during
 * it, requests to that peer fail at once and `send` returns false instead of
 * waiting for a timeout. TCP keepalive is on; what the OS detects as dead
 * surfaces as peer-down. Application heartbeats belong to the failure
 * detector above, which can `disconnect` a peer it has given up on.
 *
 * Bounds. Frames (clusterFrameBytesMax, handshake frames far less); bytes
 * queued per peer (`queueBytesMax`, counting the socket's unwritten bytes;
 * one frame may exceed it when nothing else is queued); requests awaiting a
 * response per peer (clusterRequestsPendingMax) and in handlers per
 * connection (clusterRequestsInflightMax); authenticating connections
 * (clusterHandshakesPendingMax) and their time (clusterHandshakeTimeoutMs).
 * A response that would overflow the queue is replaced by a small
 * `unavailable` error response.
 *
 * Delivery. One-way messages are at most once, in order per peer. Requests
 * time out (`requestTimeoutMs`, or per request); a timed-out request may
 * still have run on the peer.
 *
 * Cluster code should depend on the `ClusterTransport` interface, which the
 * simulator's in-memory network implements as well.
 */
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import net, { type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { ErrorCode, IorioError, StartupError, assert, errorCatalogue } from '../core/errors.js';
import {
  clusterCloseGraceMs,
  clusterFrameBytesMax,
  clusterHandshakesPendingMax,
  clusterHandshakeTimeoutMs,
  clusterReconnectBackoffMsMax,
  clusterReconnectBackoffMsMin,
  clusterRequestsInflightMax,
  clusterRequestsPendingMax,
  clusterWarningIntervalMs,
  clusterWarningKeysMax,
} from '../core/limits.js';
import { FrameKind, MessageType, WireProtocolError, encodeFrame, messageTypeName, wireProtocolVersion, type ErrorBody, type Frame } from '../core/wire.js';
import { Connection, plainAddress, type Direction } from './connection.js';
import {
  RefusalReason,
  handshakeProof,
  incarnationBytes,
  isNodeName,
  nonceBytes,
  parseChallenge,
  parseHello,
  parseProof,
  parseRefused,
  proofMatches,
  type ChallengeBody,
  type HelloBody,
  type RefusedBody,
  type Transcript,
} from './handshake.js';

/** Where a node listens for cluster connections (the ring carries it). */
export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

export interface TransportOptions {
  /** This node's name, `name@host`. */
  readonly self: string;
  /** Address to listen on, and the source address of outgoing connections. */
  readonly host: string;
  /** Port to listen on; 0 picks a free one (start() tells which). */
  readonly port: number;
  /** The cluster secret; it never crosses the wire. */
  readonly secret: string;
  /** When both sides have one, they must be equal. */
  readonly clusterId?: string;
  /** Where a node listens, or undefined if it is not known (not in the ring). */
  readonly resolve: (peer: string) => PeerAddress | undefined;
  /** Bound on a dial: TCP connect and handshake. */
  readonly connectTimeoutMs: number;
  /** Default timeout of a request. */
  readonly requestTimeoutMs: number;
  /** Bytes that may wait to be sent to one peer. */
  readonly queueBytesMax: number;
  /** TCP keepalive idle time before the OS probes a silent connection (default 5 s). */
  readonly keepAliveMs?: number;
  /** Time an inbound connection gets to authenticate (default clusterHandshakeTimeoutMs). */
  readonly handshakeTimeoutMs?: number;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Source of nonces and the incarnation (default: node:crypto). */
  readonly randomBytes?: (size: number) => Buffer;
}

/**
 * What the cluster code (ring manager, gossip, router, handoff, replication)
 * needs of a transport: the seam the simulator's in-memory network
 * implements too. `Transport` is the TCP one.
 */
export interface ClusterTransport {
  request<T = unknown>(peer: string, type: number, body: unknown, options?: RequestOptions): Promise<T>;
  send(peer: string, type: number, body: unknown): boolean;
  handle(type: number, handler: RequestHandler): () => void;
  on(type: number, handler: MessageHandler): () => void;
  onPeerUp(listener: (peer: string) => void): () => void;
  onPeerDown(listener: (peer: string, reason: string) => void): () => void;
  isConnected(peer: string): boolean;
  connect(peer: string): Promise<void>;
  waitWritable(peer: string): Promise<void>;
  disconnect(peer: string, reason?: string): void;
}

export interface RequestOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Answers a request: the value is the response body; a thrown IorioError becomes an error response with its code. */
export type RequestHandler = (body: unknown, from: string) => unknown;
/** Receives a one-way message. */
export type MessageHandler = (body: unknown, from: string) => void;

export type PeerState = 'up' | 'connecting' | 'awaiting-inbound' | 'backoff' | 'idle';

export interface PeerStats {
  readonly peer: string;
  readonly state: PeerState;
  readonly direction: Direction | undefined;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly queuedBytes: number;
  readonly pendingRequests: number;
  readonly lastError: string | undefined;
}

export interface TransportStats {
  /** Open sockets, authenticating ones included. */
  readonly connectionsOpen: number;
  readonly handshakesPending: number;
  readonly peers: PeerStats[];
  readonly framesSent: number;
  readonly framesReceived: number;
  readonly protocolErrors: number;
  readonly handshakesRefused: number;
  readonly oneWayDropped: number;
  readonly responsesReplaced: number;
}

interface QueuedFrame {
  readonly frame: Buffer;
  readonly request: PendingRequest | undefined;
  dropped: boolean;
}

interface PendingRequest {
  readonly id: number;
  readonly link: PeerLink;
  readonly type: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  timer: NodeJS.Timeout | undefined;
  connection: Connection | undefined;
  queued: QueuedFrame | undefined;
  detachSignal: (() => void) | undefined;
}

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** Everything the transport knows about one peer. */
class PeerLink {
  connection: Connection | undefined;
  dial: Connection | undefined;
  queue: QueuedFrame[] = [];
  queueBytes = 0;
  readonly pending = new Map<number, PendingRequest>();
  backoffMs = 0;
  retryAtMs = 0;
  lastError: string | undefined;
  awaitingInbound: NodeJS.Timeout | undefined;
  writableWaiters: Waiter[] = [];
  connectWaiters: Waiter[] = [];
  constructor(readonly name: string) {}
}

/** Logs a warning at most once per interval per key, counting the ones it held back. */
class WarningGate {
  private readonly seen = new Map<string, { atMs: number; suppressed: number }>();
  constructor(
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    const now = this.clock.monotonic();
    const entry = this.seen.get(key);
    if (entry && now - entry.atMs < clusterWarningIntervalMs) {
      entry.suppressed++;
      return;
    }
    if (!entry && this.seen.size >= clusterWarningKeysMax) this.seen.clear();
    this.logger.warn(entry && entry.suppressed > 0 ? { ...fields, suppressed: entry.suppressed } : fields, message);
    this.seen.set(key, { atMs: now, suppressed: 0 });
  }
}

const keepAliveMsDefault = 5_000;

function unavailable(message: string): IorioError {
  return new IorioError(ErrorCode.unavailable, message);
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** The cluster id both sides agree on (the handshake refuses two different ones). */
function agreedCluster(a: string, b: string): string {
  return a !== '' ? a : b;
}

function errorFromBody(body: unknown, peer: string): IorioError {
  const record = (typeof body === 'object' && body !== null ? body : {}) as Partial<ErrorBody>;
  const code = typeof record.code === 'string' && record.code in errorCatalogue ? (record.code as ErrorCode) : ErrorCode.internal;
  const message = typeof record.message === 'string' ? record.message : `${peer} answered with a malformed error`;
  const details = typeof record.details === 'object' && record.details !== null ? record.details : undefined;
  return new IorioError(code, message, details);
}

export class Transport implements ClusterTransport {
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly randomBytes: (size: number) => Buffer;
  private readonly incarnation: Buffer;
  private readonly clusterId: string;
  private readonly keepAliveMs: number;
  private readonly warnings: WarningGate;
  private readonly links = new Map<string, PeerLink>();
  private readonly connections = new Set<Connection>();
  private readonly requestHandlers = new Map<number, RequestHandler>();
  private readonly messageHandlers = new Map<number, MessageHandler>();
  private readonly upListeners = new Set<(peer: string) => void>();
  private readonly downListeners = new Set<(peer: string, reason: string) => void>();
  private server: Server | undefined;
  private nextRequestId = 1;
  private nextConnectionId = 1;
  private handshakesPending = 0;
  private closing: Promise<void> | undefined;
  private readonly counters = { framesSent: 0, framesReceived: 0, protocolErrors: 0, handshakesRefused: 0, oneWayDropped: 0, responsesReplaced: 0 };

  constructor(private readonly options: TransportOptions) {
    assert(isNodeName(options.self), 'the node name is name@host');
    assert(options.secret.length > 0, 'the cluster secret is set');
    assert(options.queueBytesMax > 0 && options.connectTimeoutMs > 0 && options.requestTimeoutMs > 0, 'transport bounds are positive');
    this.logger = options.logger.child({ component: 'transport' });
    this.clock = options.clock;
    this.randomBytes = options.randomBytes ?? cryptoRandomBytes;
    this.incarnation = this.randomBytes(incarnationBytes);
    this.clusterId = options.clusterId ?? '';
    this.keepAliveMs = options.keepAliveMs ?? keepAliveMsDefault;
    this.warnings = new WarningGate(this.logger, this.clock);
    this.handle(MessageType.ping, () => ({ node: options.self }));
  }

  /** Listens on host:port. */
  start(): Promise<{ port: number }> {
    assert(this.server === undefined, 'a transport starts once');
    const server = net.createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: this.keepAliveMs }, (socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => {
        reject(new StartupError(`cannot listen for cluster connections on ${this.options.host}:${this.options.port}: ${error.code ?? error.message}`));
      });
      server.listen({ host: this.options.host, port: this.options.port }, () => {
        server.on('error', (error) => this.logger.error({ err: error }, 'cluster listener error'));
        const port = (server.address() as net.AddressInfo).port;
        this.logger.info({ host: this.options.host, port, node: this.options.self }, 'cluster transport listening');
        resolve({ port });
      });
    });
  }

  /**
   * Sends a request and resolves with the peer handler's answer (unchecked:
   * validate it). Rejects with the peer's IorioError for an error response,
   * and `unavailable` (retriable) when the peer is unknown, unreachable,
   * backing off, over its bounds, times out, or the connection is lost.
   */
  request<T = unknown>(peer: string, type: number, body: unknown, options: RequestOptions = {}): Promise<T> {
    assert(peer !== this.options.self, 'a node does not send requests to itself');
    if (this.closing) return Promise.reject(unavailable(`${this.options.self} is shutting down`));
    const link = this.linkFor(peer);
    if (link === undefined) return Promise.reject(unavailable(`unknown peer ${peer}: no address for it`));
    const refusal = this.backoffRefusal(link);
    if (refusal) return Promise.reject(refusal);
    if (link.pending.size >= clusterRequestsPendingMax) return Promise.reject(unavailable(`${link.pending.size} requests to ${peer} await their response already`));
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    const id = this.allocateRequestId(link);
    let frame: Buffer;
    try {
      frame = encodeFrame(FrameKind.request, type, id, body);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!this.hasRoom(link, frame.length)) return Promise.reject(unavailable(`the queue to ${peer} is full`));
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    assert(Number.isFinite(timeoutMs) && timeoutMs > 0, 'a request timeout is a positive number of ms');
    return new Promise<T>((resolve, reject) => {
      const pending: PendingRequest = {
        id,
        link,
        type,
        resolve: resolve as (value: unknown) => void,
        reject,
        timer: undefined,
        connection: undefined,
        queued: undefined,
        detachSignal: undefined,
      };
      pending.timer = setTimeout(() => {
        this.failRequest(pending, unavailable(`${messageTypeName(type)} request to ${peer} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const signal = options.signal;
      if (signal) {
        const onAbort = (): void => this.failRequest(pending, signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        pending.detachSignal = () => signal.removeEventListener('abort', onAbort);
      }
      link.pending.set(id, pending);
      this.transmit(link, frame, pending);
    });
  }

  /**
   * Sends a one-way message (at most once, in order per peer). False when it
   * is not taken: the peer is unknown or backing off, or its queue is over
   * queueBytesMax (wait with waitWritable). A body too large for a frame
   * throws too-large.
   */
  send(peer: string, type: number, body: unknown): boolean {
    assert(peer !== this.options.self, 'a node does not send messages to itself');
    if (this.closing) return false;
    const link = this.linkFor(peer);
    if (link === undefined || this.backoffRefusal(link)) return false;
    if (this.queuedBytes(link) >= this.options.queueBytesMax) return false; // full: not even worth encoding
    const frame = encodeFrame(FrameKind.oneWay, type, 0, body);
    if (!this.hasRoom(link, frame.length)) return false;
    this.transmit(link, frame, undefined);
    return true;
  }

  /** Registers the handler of one request type; returns its removal. */
  handle(type: number, handler: RequestHandler): () => void {
    assert(!this.requestHandlers.has(type), `one handler for ${messageTypeName(type)} requests`);
    this.requestHandlers.set(type, handler);
    return () => {
      if (this.requestHandlers.get(type) === handler) this.requestHandlers.delete(type);
    };
  }

  /** Registers the handler of one one-way message type; returns its removal. */
  on(type: number, handler: MessageHandler): () => void {
    assert(!this.messageHandlers.has(type), `one handler for ${messageTypeName(type)} messages`);
    this.messageHandlers.set(type, handler);
    return () => {
      if (this.messageHandlers.get(type) === handler) this.messageHandlers.delete(type);
    };
  }

  /** Called when a connection to a peer is established (after the handshake). */
  onPeerUp(listener: (peer: string) => void): () => void {
    this.upListeners.add(listener);
    return () => this.upListeners.delete(listener);
  }

  /** Called when a peer's established connection is lost or replaced (not on close()). */
  onPeerDown(listener: (peer: string, reason: string) => void): () => void {
    this.downListeners.add(listener);
    return () => this.downListeners.delete(listener);
  }

  isConnected(peer: string): boolean {
    return this.links.get(peer)?.connection !== undefined;
  }

  /** Resolves once a connection to the peer is up (dialling it if needed); rejects as send/request would. */
  connect(peer: string): Promise<void> {
    assert(peer !== this.options.self, 'a node does not connect to itself');
    if (this.closing) return Promise.reject(unavailable(`${this.options.self} is shutting down`));
    const link = this.linkFor(peer);
    if (link === undefined) return Promise.reject(unavailable(`unknown peer ${peer}: no address for it`));
    if (link.connection) return Promise.resolve();
    const refusal = this.backoffRefusal(link);
    if (refusal) return Promise.reject(refusal);
    return new Promise((resolve, reject) => {
      link.connectWaiters.push({ resolve, reject });
      this.ensureDial(link);
    });
  }

  /**
   * Resolves when the peer's queue is down to half of queueBytesMax, so a
   * streaming sender (handoff, listen forwarding) can go on; rejects as
   * unavailable if the peer cannot be reached or its connection is lost.
   */
  waitWritable(peer: string): Promise<void> {
    if (this.closing) return Promise.reject(unavailable(`${this.options.self} is shutting down`));
    const link = this.linkFor(peer);
    if (link === undefined) return Promise.reject(unavailable(`unknown peer ${peer}: no address for it`));
    const refusal = this.backoffRefusal(link);
    if (refusal) return Promise.reject(refusal);
    if (this.isWritable(link)) return Promise.resolve();
    return new Promise((resolve, reject) => link.writableWaiters.push({ resolve, reject }));
  }

  /** Closes the peer's connection (the failure detector gave up on it); it is dialled again on next use. */
  disconnect(peer: string, reason = 'disconnected by this node'): void {
    this.links.get(peer)?.connection?.destroy(reason);
  }

  stats(): TransportStats {
    const now = this.clock.monotonic();
    const peers = [...this.links.values()].map((link): PeerStats => {
      const socket = link.connection?.socket;
      return {
        peer: link.name,
        state: this.peerState(link, now),
        direction: link.connection?.direction,
        localAddress: socket ? plainAddress(socket.localAddress) : undefined,
        localPort: socket?.localPort,
        remoteAddress: socket ? plainAddress(socket.remoteAddress) : undefined,
        remotePort: socket?.remotePort,
        queuedBytes: this.queuedBytes(link),
        pendingRequests: link.pending.size,
        lastError: link.lastError,
      };
    });
    return { connectionsOpen: this.connections.size, handshakesPending: this.handshakesPending, peers, ...this.counters };
  }

  /**
   * Stops accepting, rejects pending requests and waiters as unavailable,
   * drops queued messages, flushes and closes every connection (destroying
   * those still open after clusterCloseGraceMs). Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  // -------------------------------------------------------------------------
  // Sending

  /** The peer's link if it is connected, being reached, or resolvable; undefined for an unknown peer. */
  private linkFor(peer: string): PeerLink | undefined {
    const link = this.links.get(peer);
    if (link && (link.connection || link.dial || link.awaitingInbound)) return link;
    if (this.options.resolve(peer) === undefined) return undefined;
    return link ?? this.createLink(peer);
  }

  private createLink(peer: string): PeerLink {
    const link = new PeerLink(peer);
    this.links.set(peer, link);
    return link;
  }

  /** The error for a peer in backoff after a failed dial, or undefined. */
  private backoffRefusal(link: PeerLink): IorioError | undefined {
    if (link.connection || link.dial || link.awaitingInbound) return undefined;
    const waitMs = link.retryAtMs - this.clock.monotonic();
    if (waitMs <= 0) return undefined;
    return unavailable(`${link.name} is unreachable (${link.lastError ?? 'unknown error'}); next attempt in ${Math.ceil(waitMs)} ms`);
  }

  private queuedBytes(link: PeerLink): number {
    return link.queueBytes + (link.connection?.writableBytes ?? 0);
  }

  /** A frame fits if the queue is empty (one frame may exceed the bound) or stays within it. */
  private hasRoom(link: PeerLink, frameBytes: number): boolean {
    const queued = this.queuedBytes(link);
    return queued === 0 || queued + frameBytes <= this.options.queueBytesMax;
  }

  private transmit(link: PeerLink, frame: Buffer, request: PendingRequest | undefined): void {
    if (link.connection) {
      if (request) request.connection = link.connection;
      this.counters.framesSent++;
      link.connection.write(frame);
      return;
    }
    const entry: QueuedFrame = { frame, request, dropped: false };
    if (request) request.queued = entry;
    link.queue.push(entry);
    link.queueBytes += frame.length;
    this.ensureDial(link);
  }

  private allocateRequestId(link: PeerLink): number {
    for (;;) {
      const id = this.nextRequestId;
      this.nextRequestId = id === 0xffffffff ? 1 : id + 1;
      if (!link.pending.has(id)) return id;
    }
  }

  private finishRequest(pending: PendingRequest): boolean {
    if (pending.link.pending.get(pending.id) !== pending) return false;
    pending.link.pending.delete(pending.id);
    if (pending.timer) clearTimeout(pending.timer);
    pending.detachSignal?.();
    if (pending.queued && !pending.queued.dropped) {
      pending.queued.dropped = true;
      pending.link.queueBytes -= pending.queued.frame.length;
    }
    return true;
  }

  private failRequest(pending: PendingRequest, error: unknown): void {
    if (this.finishRequest(pending)) pending.reject(error);
  }

  // -------------------------------------------------------------------------
  // Dialling and accepting

  private ensureDial(link: PeerLink): void {
    if (this.closing || link.connection || link.dial || link.awaitingInbound) return;
    const address = this.options.resolve(link.name);
    if (address === undefined) {
      this.dialFailed(link, 'no address for it');
      return;
    }
    const host = this.options.host;
    const bindSource = net.isIP(host) !== 0 && host !== '0.0.0.0' && host !== '::';
    let socket: Socket;
    try {
      socket = net.connect({
        host: address.host,
        port: address.port,
        ...(bindSource ? { localAddress: host } : {}),
        noDelay: true,
        keepAlive: true,
        keepAliveInitialDelay: this.keepAliveMs,
      });
    } catch (error) {
      this.dialFailed(link, `bad address ${address.host}:${address.port}: ${(error as Error).message}`);
      return;
    }
    const connection = this.track(socket, 'outbound');
    connection.peer = link.name;
    link.dial = connection;
    connection.timer = setTimeout(() => {
      connection.failure ??= `no connection within ${this.options.connectTimeoutMs} ms`;
      connection.destroy(connection.failure);
    }, this.options.connectTimeoutMs);
    socket.once('connect', () => {
      connection.state = 'handshake';
      connection.ownNonce = this.randomBytes(nonceBytes);
      this.writeHandshake(connection, MessageType.hello, {
        protocol: wireProtocolVersion,
        node: this.options.self,
        target: link.name,
        cluster: this.clusterId,
        nonce: connection.ownNonce,
        incarnation: this.incarnation,
      });
    });
  }

  private accept(socket: Socket): void {
    if (this.closing || this.handshakesPending >= clusterHandshakesPendingMax) {
      if (!this.closing) this.warnings.warn('handshakes-full', { remoteAddress: plainAddress(socket.remoteAddress) }, 'too many cluster connections authenticating; one closed');
      socket.destroy();
      return;
    }
    const connection = this.track(socket, 'inbound');
    connection.countedAsHandshake = true;
    this.handshakesPending++;
    const timeoutMs = this.options.handshakeTimeoutMs ?? clusterHandshakeTimeoutMs;
    connection.timer = setTimeout(() => {
      this.warnings.warn(`handshake-timeout:${connection.remoteAddress}`, { remoteAddress: connection.remoteAddress, claimedNode: connection.peer }, 'cluster connection did not authenticate in time; closed');
      connection.destroy(`no handshake within ${timeoutMs} ms`);
    }, timeoutMs);
  }

  private track(socket: Socket, direction: Direction): Connection {
    const connection = new Connection(this.nextConnectionId++, socket, direction, {
      frame: (source, frame) => this.onFrame(source, frame),
      protocolError: (source, error) => this.onProtocolError(source, error),
      closed: (source, reason) => this.onClosed(source, reason),
    });
    this.connections.add(connection);
    return connection;
  }

  private writeHandshake(connection: Connection, type: number, body: unknown): void {
    connection.write(encodeFrame(FrameKind.handshake, type, 0, body));
  }

  private onFrame(connection: Connection, frame: Frame): void {
    this.counters.framesReceived++;
    if (connection.state === 'up') {
      this.onUpFrame(connection, frame);
      return;
    }
    if (frame.kind !== FrameKind.handshake) {
      this.protocolViolation(connection, `a ${messageTypeName(frame.type)} frame before the handshake ended`);
      return;
    }
    if (frame.type === MessageType.refused) {
      this.onRefused(connection, parseRefused(frame.body));
      return;
    }
    const expected = connection.step;
    if (expected === 'hello' && frame.type === MessageType.hello) this.onHello(connection, frame.body);
    else if (expected === 'challenge' && frame.type === MessageType.helloChallenge) this.onChallenge(connection, frame.body);
    else if (expected === 'proof' && frame.type === MessageType.helloProof) this.onProof(connection, frame.body);
    else if (expected === 'welcome' && frame.type === MessageType.welcome) this.established(connection);
    else this.protocolViolation(connection, `handshake message ${messageTypeName(frame.type)} where ${expected} was expected`);
  }

  /** Acceptor: the dialer says who it is. */
  private onHello(connection: Connection, body: unknown): void {
    const hello = parseHello(body);
    if (hello === undefined) {
      this.protocolViolation(connection, 'malformed hello');
      return;
    }
    connection.peer = hello.node;
    const refusal = this.checkHello(connection, hello);
    if (refusal) {
      this.refuse(connection, refusal);
      return;
    }
    connection.remoteIncarnation = hello.incarnation;
    connection.ownNonce = this.randomBytes(nonceBytes);
    connection.transcript = {
      protocol: wireProtocolVersion,
      dialer: hello.node,
      acceptor: this.options.self,
      cluster: agreedCluster(hello.cluster, this.clusterId),
      dialerNonce: hello.nonce,
      acceptorNonce: connection.ownNonce,
      dialerIncarnation: hello.incarnation,
      acceptorIncarnation: this.incarnation,
    };
    connection.step = 'proof';
    this.writeHandshake(connection, MessageType.helloChallenge, {
      protocol: wireProtocolVersion,
      node: this.options.self,
      cluster: this.clusterId,
      nonce: connection.ownNonce,
      incarnation: this.incarnation,
      proof: handshakeProof(this.options.secret, 'acceptor', connection.transcript),
    });
  }

  private checkHello(connection: Connection, hello: HelloBody): RefusedBody | undefined {
    if (this.closing) return { reason: RefusalReason.closing, message: `${this.options.self} is shutting down` };
    if (hello.protocol !== wireProtocolVersion) {
      return { reason: RefusalReason.version, message: `${this.options.self} speaks cluster protocol ${wireProtocolVersion}, not ${hello.protocol}` };
    }
    if (hello.cluster !== '' && this.clusterId !== '' && hello.cluster !== this.clusterId) {
      return { reason: RefusalReason.cluster, message: `${this.options.self} belongs to cluster ${this.clusterId}, not ${hello.cluster}` };
    }
    if (hello.node === this.options.self) return { reason: RefusalReason.name, message: `the dialer claims this node's own name ${hello.node}` };
    if (hello.target !== this.options.self) return { reason: RefusalReason.name, message: `this is ${this.options.self}, not ${hello.target}` };
    const address = this.options.resolve(hello.node);
    if (address && net.isIP(address.host) !== 0 && plainAddress(address.host) !== connection.remoteAddress) {
      return { reason: RefusalReason.name, message: `${hello.node} is at ${address.host}, but this connection comes from ${connection.remoteAddress}` };
    }
    return undefined;
  }

  /** Dialer: the acceptor says who it is and proves the secret. */
  private onChallenge(connection: Connection, body: unknown): void {
    const challenge = parseChallenge(body);
    if (challenge === undefined || connection.ownNonce === undefined) {
      this.protocolViolation(connection, 'malformed challenge');
      return;
    }
    const peer = connection.peer!;
    const refusal = this.checkChallenge(connection, challenge, peer);
    if (refusal) {
      this.refuse(connection, refusal);
      return;
    }
    connection.remoteIncarnation = challenge.incarnation;
    connection.step = 'welcome';
    this.writeHandshake(connection, MessageType.helloProof, { proof: handshakeProof(this.options.secret, 'dialer', connection.transcript!) });
  }

  private checkChallenge(connection: Connection, challenge: ChallengeBody, peer: string): RefusedBody | undefined {
    if (challenge.protocol !== wireProtocolVersion) {
      return { reason: RefusalReason.version, message: `${peer} speaks cluster protocol ${challenge.protocol}, not ${wireProtocolVersion}` };
    }
    if (challenge.cluster !== '' && this.clusterId !== '' && challenge.cluster !== this.clusterId) {
      return { reason: RefusalReason.cluster, message: `${peer} belongs to cluster ${challenge.cluster}, not ${this.clusterId}` };
    }
    if (challenge.node !== peer) return { reason: RefusalReason.name, message: `${peer} was dialled at ${connection.remoteAddress}, but ${challenge.node} answered` };
    connection.transcript = {
      protocol: wireProtocolVersion,
      dialer: this.options.self,
      acceptor: peer,
      cluster: agreedCluster(this.clusterId, challenge.cluster),
      dialerNonce: connection.ownNonce!,
      acceptorNonce: challenge.nonce,
      dialerIncarnation: this.incarnation,
      acceptorIncarnation: challenge.incarnation,
    };
    if (!proofMatches(this.options.secret, 'acceptor', connection.transcript, challenge.proof)) {
      return { reason: RefusalReason.authentication, message: `${peer} did not prove the cluster secret (is cluster.secret the same on both nodes?)` };
    }
    return undefined;
  }

  /** Acceptor: the dialer proves the secret; then the tie-break decides. */
  private onProof(connection: Connection, body: unknown): void {
    const proof = parseProof(body);
    if (proof === undefined) {
      this.protocolViolation(connection, 'malformed proof');
      return;
    }
    if (!proofMatches(this.options.secret, 'dialer', connection.transcript!, proof.proof)) {
      this.refuse(connection, { reason: RefusalReason.authentication, message: `${connection.peer} did not prove the cluster secret (is cluster.secret the same on both nodes?)` });
      return;
    }
    const link = this.links.get(connection.peer!) ?? this.createLink(connection.peer!);
    if (this.inboundLosesTieBreak(link, connection)) {
      this.refuse(connection, { reason: RefusalReason.duplicate, message: `${this.options.self} keeps its own connection to ${link.name}` });
      return;
    }
    this.writeHandshake(connection, MessageType.welcome, {});
    this.established(connection);
  }

  /**
   * Whether an authenticated inbound connection must give way to ours: the
   * connection dialled by the lower name wins a dial race. An established
   * connection is replaced (the peer lost or restarted it) unless it is our
   * own dial, we have the lower name and the peer has not restarted: then the
   * inbound one can be the other half of a race.
   */
  private inboundLosesTieBreak(link: PeerLink, inbound: Connection): boolean {
    const weAreLower = this.options.self < link.name;
    const existing = link.connection;
    if (existing) {
      const restarted = !existing.remoteIncarnation!.equals(inbound.remoteIncarnation!);
      return !restarted && existing.direction === 'outbound' && weAreLower;
    }
    if (link.dial) {
      if (weAreLower) return true;
      const dial = link.dial;
      link.dial = undefined;
      dial.abandoned = true;
      this.logger.debug({ peer: link.name, connection: dial.id }, 'own dial abandoned: the peer dialled too, and its connection wins');
      dial.destroy(`${link.name}'s own connection wins the dial race`);
    }
    return false;
  }

  /** Sends `refused`, logs why (not for a duplicate, which is routine), and closes. */
  private refuse(connection: Connection, refusal: RefusedBody): void {
    if (refusal.reason === RefusalReason.duplicate) {
      this.logger.debug({ peer: connection.peer, connection: connection.id }, 'duplicate connection refused');
      connection.abandoned = true;
    } else {
      this.counters.handshakesRefused++;
      connection.failure = refusal.message;
      this.warnings.warn(
        `refuse:${refusal.reason}:${connection.remoteAddress}:${connection.peer}`,
        { remoteAddress: connection.remoteAddress, claimedNode: connection.peer, direction: connection.direction, reason: refusal.reason, detail: refusal.message },
        'cluster connection refused',
      );
    }
    this.writeHandshake(connection, MessageType.refused, refusal);
    connection.end(`refused: ${refusal.message}`, clusterCloseGraceMs);
  }

  /** The other side refused the handshake. */
  private onRefused(connection: Connection, refused: RefusedBody | undefined): void {
    const message = refused?.message ?? 'no reason given';
    if (refused?.reason === RefusalReason.duplicate && connection.direction === 'outbound') {
      this.awaitInbound(connection);
      return;
    }
    this.counters.handshakesRefused++;
    connection.failure = `${connection.peer ?? connection.remoteAddress} refused the connection: ${message}`;
    this.warnings.warn(
      `refused-by:${refused?.reason}:${connection.remoteAddress}:${connection.peer}`,
      { remoteAddress: connection.remoteAddress, claimedNode: connection.peer, direction: connection.direction, reason: refused?.reason, detail: message },
      'cluster connection refused by the other node',
    );
    connection.destroy(connection.failure);
  }

  /** Our dial lost the race: the peer's own connection is coming; the queue waits for it. */
  private awaitInbound(connection: Connection): void {
    const link = this.links.get(connection.peer!);
    connection.abandoned = true;
    connection.destroy('the peer keeps its own connection');
    if (!link || link.dial !== connection) return;
    link.dial = undefined;
    if (link.connection) return;
    link.awaitingInbound = setTimeout(() => {
      link.awaitingInbound = undefined;
      this.dialFailed(link, `${link.name} refused our connection as a duplicate and its own did not arrive within ${this.options.connectTimeoutMs} ms`);
    }, this.options.connectTimeoutMs);
  }

  private established(connection: Connection): void {
    const peer = connection.peer!;
    const link = this.links.get(peer) ?? this.createLink(peer);
    if (connection.timer) clearTimeout(connection.timer);
    connection.timer = undefined;
    this.leaveHandshake(connection);
    connection.state = 'up';
    connection.step = 'done';
    connection.decoder.frameBytesMax = clusterFrameBytesMax;
    if (link.dial === connection) link.dial = undefined;
    const previous = link.connection;
    link.connection = connection;
    if (previous) {
      this.connectionLost(link, previous, 'replaced by a new connection from the peer');
      previous.destroy('replaced by a new connection');
    }
    if (link.awaitingInbound) clearTimeout(link.awaitingInbound);
    link.awaitingInbound = undefined;
    link.backoffMs = 0;
    link.retryAtMs = 0;
    link.lastError = undefined;
    this.flushQueue(link, connection);
    this.logger.info({ peer, direction: connection.direction, remoteAddress: connection.remoteAddress }, 'peer up');
    for (const waiter of link.connectWaiters.splice(0)) waiter.resolve();
    this.emit(this.upListeners, peer);
    connection.socket.on('drain', () => this.checkWritable(link));
    this.checkWritable(link);
  }

  private flushQueue(link: PeerLink, connection: Connection): void {
    const queue = link.queue;
    link.queue = [];
    link.queueBytes = 0;
    for (const entry of queue) {
      if (entry.dropped) continue;
      if (entry.request) {
        entry.request.connection = connection;
        entry.request.queued = undefined;
      }
      this.counters.framesSent++;
      connection.write(entry.frame);
    }
  }

  private leaveHandshake(connection: Connection): void {
    if (!connection.countedAsHandshake) return;
    connection.countedAsHandshake = false;
    this.handshakesPending--;
  }

  // -------------------------------------------------------------------------
  // Established connections

  private onUpFrame(connection: Connection, frame: Frame): void {
    const link = this.links.get(connection.peer!)!;
    switch (frame.kind) {
      case FrameKind.request:
        this.onRequest(link, connection, frame);
        return;
      case FrameKind.response:
      case FrameKind.error:
        this.onResponse(link, frame);
        return;
      case FrameKind.oneWay:
        this.onMessage(link, frame);
        return;
      case FrameKind.handshake:
        this.protocolViolation(connection, 'a handshake frame after the handshake');
        return;
    }
  }

  private onRequest(link: PeerLink, connection: Connection, frame: Frame): void {
    if (connection.inflight >= clusterRequestsInflightMax) {
      this.respondError(link, connection, frame, unavailable(`${link.name} has ${connection.inflight} requests in ${this.options.self}'s handlers already`));
      return;
    }
    const handler = this.requestHandlers.get(frame.type);
    if (handler === undefined) {
      this.warnings.warn(`no-handler:${frame.type}`, { peer: link.name, type: messageTypeName(frame.type) }, 'request of a type this node does not handle');
      this.respondError(link, connection, frame, new IorioError(ErrorCode.internal, `${this.options.self} has no handler for ${messageTypeName(frame.type)} requests`));
      return;
    }
    connection.inflight++;
    const finish = (error: unknown, value?: unknown): void => {
      connection.inflight--;
      if (connection.isClosing || this.closing) return;
      if (error === undefined) this.respond(link, connection, frame, value);
      else this.respondError(link, connection, frame, error);
    };
    let result: unknown;
    try {
      result = handler(frame.body, link.name);
    } catch (error) {
      finish(error ?? new Error('handler threw undefined'));
      return;
    }
    if (isPromiseLike(result)) result.then((value) => finish(undefined, value), (error: unknown) => finish(error ?? new Error('handler rejected with undefined')));
    else finish(undefined, result);
  }

  private respond(link: PeerLink, connection: Connection, request: Frame, value: unknown): void {
    let frame: Buffer;
    try {
      frame = encodeFrame(FrameKind.response, request.type, request.requestId, value);
    } catch (error) {
      this.respondError(link, connection, request, error);
      return;
    }
    const queued = connection.writableBytes;
    if (queued > 0 && queued + frame.length > this.options.queueBytesMax) {
      this.counters.responsesReplaced++;
      this.respondError(link, connection, request, unavailable(`${this.options.self}'s queue to ${link.name} is full; the response was dropped`));
      return;
    }
    this.counters.framesSent++;
    connection.write(frame);
  }

  private respondError(link: PeerLink, connection: Connection, request: Frame, error: unknown): void {
    let failure: IorioError;
    if (error instanceof IorioError) {
      failure = error;
    } else {
      this.logger.error({ err: error, peer: link.name, type: messageTypeName(request.type) }, 'request handler failed');
      failure = new IorioError(ErrorCode.internal, `internal error on ${this.options.self}`);
    }
    const body: ErrorBody = failure.details ? { code: failure.code, message: failure.message, details: { ...failure.details } } : { code: failure.code, message: failure.message };
    let frame: Buffer;
    try {
      frame = encodeFrame(FrameKind.error, request.type, request.requestId, body);
    } catch (error) {
      this.logger.error({ err: error, peer: link.name, type: messageTypeName(request.type) }, 'error response could not be encoded');
      frame = encodeFrame(FrameKind.error, request.type, request.requestId, { code: failure.code, message: failure.message.slice(0, 1024) });
    }
    this.counters.framesSent++;
    connection.write(frame);
  }

  private onResponse(link: PeerLink, frame: Frame): void {
    const pending = link.pending.get(frame.requestId);
    if (pending === undefined) return; // timed out, aborted or cancelled: the answer is not wanted any more
    if (!this.finishRequest(pending)) return;
    if (frame.kind === FrameKind.response) pending.resolve(frame.body);
    else pending.reject(errorFromBody(frame.body, link.name));
  }

  private onMessage(link: PeerLink, frame: Frame): void {
    const handler = this.messageHandlers.get(frame.type);
    if (handler === undefined) {
      this.warnings.warn(`no-listener:${frame.type}`, { peer: link.name, type: messageTypeName(frame.type) }, 'message of a type this node does not handle; dropped');
      return;
    }
    try {
      handler(frame.body, link.name);
    } catch (error) {
      this.logger.error({ err: error, peer: link.name, type: messageTypeName(frame.type) }, 'message handler failed');
    }
  }

  private onProtocolError(connection: Connection, error: WireProtocolError): void {
    this.counters.protocolErrors++;
    this.warnings.warn(
      `protocol:${connection.remoteAddress}:${connection.peer}`,
      { remoteAddress: connection.remoteAddress, claimedNode: connection.peer, detail: error.message },
      'cluster protocol error; connection closed',
    );
  }

  /** A well-formed frame that breaks the conversation: as a malformed one. */
  private protocolViolation(connection: Connection, message: string): void {
    this.onProtocolError(connection, new WireProtocolError(message));
    connection.failure ??= `protocol error: ${message}`;
    connection.destroy(connection.failure);
  }

  // -------------------------------------------------------------------------
  // Losing connections

  private onClosed(connection: Connection, reason: string): void {
    this.connections.delete(connection);
    this.leaveHandshake(connection);
    if (this.closing || connection.peer === undefined) return;
    const link = this.links.get(connection.peer);
    if (link === undefined) return;
    if (link.connection === connection) {
      link.connection = undefined;
      this.connectionLost(link, connection, reason);
    } else if (link.dial === connection) {
      link.dial = undefined;
      if (!connection.abandoned) this.dialFailed(link, connection.failure ?? reason);
    }
  }

  /** An established connection is gone: its requests fail, waiters give up, listeners hear of it. */
  private connectionLost(link: PeerLink, connection: Connection, reason: string): void {
    const error = unavailable(`connection to ${link.name} lost (${reason}) with the request in flight`);
    for (const pending of [...link.pending.values()]) if (pending.connection === connection) this.failRequest(pending, error);
    for (const waiter of link.writableWaiters.splice(0)) waiter.reject(unavailable(`connection to ${link.name} lost (${reason})`));
    this.logger.info({ peer: link.name, reason }, 'peer down');
    this.emit(this.downListeners, link.name, reason);
  }

  /** A dial did not give a connection: queued requests fail, queued messages are dropped, the backoff starts. */
  private dialFailed(link: PeerLink, reason: string): void {
    if (this.closing || link.connection) return;
    if (link.awaitingInbound) clearTimeout(link.awaitingInbound);
    link.awaitingInbound = undefined;
    link.backoffMs = Math.min(clusterReconnectBackoffMsMax, link.backoffMs === 0 ? clusterReconnectBackoffMsMin : link.backoffMs * 2);
    link.retryAtMs = this.clock.monotonic() + link.backoffMs;
    link.lastError = reason;
    const error = unavailable(`cannot reach ${link.name}: ${reason}`);
    const queue = link.queue;
    link.queue = [];
    link.queueBytes = 0;
    for (const entry of queue) {
      if (entry.dropped) continue;
      entry.dropped = true;
      if (entry.request) this.failRequest(entry.request, error);
      else this.counters.oneWayDropped++;
    }
    for (const waiter of [...link.writableWaiters.splice(0), ...link.connectWaiters.splice(0)]) waiter.reject(error);
    this.warnings.warn(`unreachable:${link.name}`, { peer: link.name, detail: reason, backoffMs: link.backoffMs }, 'cannot reach peer');
  }

  private checkWritable(link: PeerLink): void {
    if (link.writableWaiters.length === 0 || !this.isWritable(link)) return;
    for (const waiter of link.writableWaiters.splice(0)) waiter.resolve();
  }

  /** Down to half the bound, or connected with a socket that will not emit 'drain' (below its own mark). */
  private isWritable(link: PeerLink): boolean {
    if (this.queuedBytes(link) <= this.options.queueBytesMax / 2) return true;
    return link.connection !== undefined && link.queueBytes === 0 && !link.connection.socket.writableNeedDrain;
  }

  private peerState(link: PeerLink, now: number): PeerState {
    if (link.connection) return 'up';
    if (link.dial) return 'connecting';
    if (link.awaitingInbound) return 'awaiting-inbound';
    return now < link.retryAtMs ? 'backoff' : 'idle';
  }

  private emit<A extends unknown[]>(listeners: Set<(...args: A) => void>, ...args: A): void {
    for (const listener of [...listeners]) {
      try {
        listener(...args);
      } catch (error) {
        this.logger.error({ err: error }, 'peer listener failed');
      }
    }
  }

  private async shutDown(): Promise<void> {
    const error = unavailable(`${this.options.self} is shutting down`);
    const serverClosed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    for (const link of this.links.values()) {
      if (link.awaitingInbound) clearTimeout(link.awaitingInbound);
      link.awaitingInbound = undefined;
      for (const pending of [...link.pending.values()]) this.failRequest(pending, error);
      for (const waiter of [...link.writableWaiters.splice(0), ...link.connectWaiters.splice(0)]) waiter.reject(error);
      link.queue = [];
      link.queueBytes = 0;
    }
    const closed = [...this.connections].map(
      (connection) =>
        new Promise<void>((resolve) => {
          if (connection.state === 'closed') return resolve();
          connection.socket.once('close', () => resolve());
          if (connection.state === 'up') connection.end('transport closing', clusterCloseGraceMs);
          else connection.destroy('transport closing');
        }),
    );
    await Promise.all([serverClosed, ...closed]);
    this.logger.info({ node: this.options.self }, 'cluster transport closed');
  }
}
