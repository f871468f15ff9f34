import type { Logger } from 'pino';
import type { HttpDeps } from '../deps.js';
import type { ListenHub } from './hub.js';

export const ConnectionKind = { websocket: 'websocket', sse: 'sse', longPoll: 'long-poll' } as const;
export type ConnectionKind = (typeof ConnectionKind)[keyof typeof ConnectionKind];

/** One open listen connection, whatever its transport. */
export interface ListenConnection {
  readonly kind: ConnectionKind;
  /** Called every listenHeartbeatMs by the registry's one shared timer. */
  heartbeat(): void;
  /** The node is stopping: end the connection now. */
  shutdown(): void;
}

/** What every listen connection is built from. */
export interface ListenContext {
  readonly deps: HttpDeps;
  readonly logger: Logger;
  readonly hub: ListenHub;
  readonly connections: ConnectionRegistry;
}

/**
 * Every open listen connection of the node, and the one shared heartbeat
 * timer (SSE comments, WebSocket pings): no timer per connection, so 10,000
 * idle listeners cost no timers at all but the long-polls' own timeouts.
 */
export class ConnectionRegistry {
  private readonly open = new Set<ListenConnection>();
  private timer: NodeJS.Timeout | undefined;
  private closing = false;

  constructor(
    private readonly heartbeatMs: number,
    private readonly logger: Logger,
  ) {}

  /** False once the node is stopping: the caller must end its connection instead. */
  add(connection: ListenConnection): boolean {
    if (this.closing) return false;
    this.open.add(connection);
    this.logger.debug({ transport: connection.kind, open: this.open.size }, 'listen: connection opened');
    if (this.timer === undefined && connection.kind !== ConnectionKind.longPoll) {
      this.timer = setInterval(() => this.beat(), this.heartbeatMs);
      this.timer.unref();
    }
    return true;
  }

  remove(connection: ListenConnection): void {
    if (this.open.delete(connection)) this.logger.debug({ transport: connection.kind, open: this.open.size }, 'listen: connection closed');
    if (this.open.size === 0) this.stopTimer();
  }

  get isClosing(): boolean {
    return this.closing;
  }

  count(kind: ConnectionKind): number {
    let count = 0;
    for (const connection of this.open) if (connection.kind === kind) count += 1;
    return count;
  }

  /** Ends every connection (node shutdown); later add() calls are refused. */
  closeAll(): void {
    this.closing = true;
    for (const connection of [...this.open]) {
      try {
        connection.shutdown();
      } catch (error) {
        this.logger.warn({ err: error, kind: connection.kind }, 'listen: closing a connection failed');
      }
    }
    this.open.clear();
    this.stopTimer();
  }

  private beat(): void {
    for (const connection of this.open) connection.heartbeat();
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
