/**
 * One TCP connection between two nodes: the socket, its frame decoder, the
 * handshake's per-connection material, and batched writes. It knows nothing
 * of peers, requests or tie-breaks; the transport decides those.
 */
import type { Socket } from 'node:net';
import { clusterHandshakeFrameBytesMax } from '../core/limits.js';
import { FrameDecoder, WireProtocolError, type Frame } from '../core/wire.js';
import type { Transcript } from './handshake.js';

export type Direction = 'outbound' | 'inbound';

/**
 * connecting: outbound, TCP not yet connected. handshake: authenticating.
 * up: the peer's connection. closed: the socket closed.
 */
export type ConnectionState = 'connecting' | 'handshake' | 'up' | 'closed';

/** The handshake message a connection expects next. */
export type HandshakeStep = 'hello' | 'challenge' | 'proof' | 'welcome' | 'done';

export interface ConnectionEvents {
  frame(connection: Connection, frame: Frame): void;
  protocolError(connection: Connection, error: WireProtocolError): void;
  closed(connection: Connection, reason: string): void;
}

/** `::ffff:127.0.0.2` -> `127.0.0.2`. */
export function plainAddress(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

export class Connection {
  readonly decoder = new FrameDecoder(clusterHandshakeFrameBytesMax);
  state: ConnectionState;
  step: HandshakeStep;
  /** Outbound: the node dialled. Inbound: the name its hello claims (trusted only once up). */
  peer: string | undefined;
  /** The remote transport's incarnation (from its hello or challenge). */
  remoteIncarnation: Buffer | undefined;
  ownNonce: Buffer | undefined;
  transcript: Transcript | undefined;
  /** Connect, handshake or close-grace timer. */
  timer: NodeJS.Timeout | undefined;
  /** Requests from the peer in this connection's handlers. */
  inflight = 0;
  /** Closed on purpose (a tie-break lost, a duplicate refused): its closing is no failure. */
  abandoned = false;
  /** Why this side gave up on it, for the caller's error. */
  failure: string | undefined;
  /** Still counted among the inbound connections that are authenticating. */
  countedAsHandshake = false;
  bytesReceived = 0;
  bytesSent = 0;
  private closing = false;
  private reason: string | undefined;
  private corked = false;

  constructor(
    readonly id: number,
    readonly socket: Socket,
    readonly direction: Direction,
    private readonly events: ConnectionEvents,
  ) {
    this.state = direction === 'outbound' ? 'connecting' : 'handshake';
    this.step = direction === 'outbound' ? 'challenge' : 'hello';
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.noteReason('closed by the peer'));
    socket.on('error', (error: Error) => this.noteReason(error.message));
    socket.on('close', () => {
      this.state = 'closed';
      this.closing = true;
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.events.closed(this, this.reason ?? 'closed');
    });
  }

  get isClosing(): boolean {
    return this.closing;
  }

  /** Bytes written but not yet handed to the kernel. */
  get writableBytes(): number {
    return this.socket.writableLength;
  }

  get remoteAddress(): string {
    return plainAddress(this.socket.remoteAddress);
  }

  /** Writes one frame; the frames of one tick go out in one writev. */
  write(frame: Buffer): void {
    if (this.closing) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.bytesSent += frame.length;
    this.socket.write(frame);
  }

  /** Flushes what was written, sends FIN, and destroys the socket if it is not closed within `graceMs`. */
  end(reason: string, graceMs: number): void {
    if (this.closing) return;
    this.noteReason(reason);
    this.closing = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.socket.destroy(), graceMs);
    this.timer.unref();
    this.socket.end();
  }

  /** Closes at once; what is not yet written is lost. */
  destroy(reason: string): void {
    this.noteReason(reason);
    this.closing = true;
    this.socket.destroy();
  }

  private noteReason(reason: string): void {
    this.reason ??= reason;
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    this.bytesReceived += chunk.length;
    try {
      this.decoder.push(chunk, (frame) => {
        if (!this.closing) this.events.frame(this, frame);
      });
    } catch (error) {
      if (!(error instanceof WireProtocolError)) throw error;
      this.events.protocolError(this, error);
      this.destroy(`protocol error: ${error.message}`);
    }
  }
}
