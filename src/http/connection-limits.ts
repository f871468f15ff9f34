import { readFileSync } from 'node:fs';
import { Server as HttpServer } from 'node:http';
import { Server as HttpsServer } from 'node:https';
import type { Server as NetServer, Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import {
  connectionWarningIntervalMs,
  connectionsReservedFiles,
  idleCheckIntervalMsMax,
  openFilesAssumed,
  openFilesUnlimited,
  requestReceiveMsMax,
} from '../core/limits.js';

/**
 * Bounds on client connections, so that no client, and no number of them,
 * can take the file descriptors the node needs (19,900 idle sockets from
 * one address used to make appends fail with EMFILE):
 *
 * - at most `total` connections open at once, and `perClient` from one
 *   client (an IPv4 address, or an IPv6 /64: one host can have a whole /64);
 *   past either a new connection is answered `503 unavailable` (plain HTTP
 *   only: a TLS client cannot read it) and closed at once;
 * - a connection must send a whole request header within the idle timeout
 *   of opening or of its last answer, and a whole request (body included)
 *   within requestReceiveMsMax. Node's own server timers do this (its
 *   headersTimeout runs from accept, so it covers a socket that never sends
 *   a byte); a request that arrived is never timed out, so WebSocket, SSE
 *   and long-poll listeners live as long as they like, and count against
 *   the bounds like any connection.
 *
 * Counts are in /stats (`http.connections`) and /metrics; refusals are
 * logged at most once per connectionWarningIntervalMs.
 */

export interface ConnectionBounds {
  readonly total: number;
  readonly perClient: number;
}

/** What /stats and /metrics report (a part of HttpCounters). */
export interface ConnectionCounters {
  /** Open now (HTTP and HTTPS, listeners included). */
  open: number;
  max: number;
  perClientMax: number;
  /** Refused because `max` were open. */
  refused: number;
  /** Refused because `perClientMax` were open from the same client. */
  refusedPerClient: number;
  /** Closed by http.idle_timeout before they sent a whole request. */
  timedOut: number;
  /** Errors accepting a connection (EMFILE: out of file descriptors). */
  acceptErrors: number;
}

export function createConnectionCounters(bounds: ConnectionBounds): ConnectionCounters {
  return { open: 0, max: bounds.total, perClientMax: bounds.perClient, refused: 0, refusedPerClient: 0, timedOut: 0, acceptErrors: 0 };
}

export const Admission = { admitted: 'admitted', total: 'total', perClient: 'per-client' } as const;
export type Admission = (typeof Admission)[keyof typeof Admission];

/** Whether one more connection may open, given those open in all and from its client. Pure. */
export function admission(open: number, openFromClient: number, bounds: ConnectionBounds): Admission {
  if (open >= bounds.total) return Admission.total;
  if (openFromClient >= bounds.perClient) return Admission.perClient;
  return Admission.admitted;
}

/**
 * The bounds from the config: a 0 total is derived from the open-file limit
 * (see core/limits.ts connectionsReservedFiles), a 0 per-client bound is
 * half the total. Pure.
 */
export function connectionBounds(input: {
  readonly configuredTotal: number;
  readonly configuredPerClient: number;
  readonly openFilesLimit: number;
  readonly storageFilesMax: number;
}): ConnectionBounds {
  const { configuredTotal, configuredPerClient, openFilesLimit, storageFilesMax } = input;
  const derived = Math.max(Math.floor(openFilesLimit / 4), openFilesLimit - storageFilesMax - connectionsReservedFiles);
  const total = configuredTotal > 0 ? configuredTotal : Math.max(1, derived);
  const perClient = configuredPerClient > 0 ? configuredPerClient : Math.max(1, Math.floor(total / 2));
  return { total, perClient };
}

/**
 * Why the bounds may still let the node run out of file descriptors (the
 * connections and storage.files.max together leave less than
 * connectionsReservedFiles of the open-file limit), or undefined. Pure.
 */
export function connectionBoundsProblem(bounds: ConnectionBounds, openFilesLimit: number, storageFilesMax: number): string | undefined {
  const spare = openFilesLimit - bounds.total - storageFilesMax;
  if (spare >= connectionsReservedFiles) return undefined;
  return (
    `the open-file limit ${openFilesLimit} leaves ${spare} descriptors beside ${bounds.total} connections (http.connections.max) ` +
    `and ${storageFilesMax} chunk files (storage.files.max); ${connectionsReservedFiles} are wanted: raise ulimit -n or lower those`
  );
}

/** The soft `Max open files` of /proc/self/limits; undefined when the text holds none. Pure. */
export function openFilesSoftLimitOf(procLimits: string): number | undefined {
  const match = /^Max open files\s+(\S+)/m.exec(procLimits);
  if (match === null) return undefined;
  if (match[1] === 'unlimited') return openFilesUnlimited;
  const limit = Number(match[1]);
  return Number.isSafeInteger(limit) && limit > 0 ? limit : undefined;
}

/**
 * This process's open-file limit (node raises the soft limit to the hard
 * one at start, so this is the one in force); openFilesAssumed where
 * /proc/self/limits cannot be read.
 */
export function readOpenFilesLimit(): number {
  try {
    return openFilesSoftLimitOf(readFileSync('/proc/self/limits', 'utf8')) ?? openFilesAssumed;
  } catch {
    return openFilesAssumed;
  }
}

/**
 * The client a connection is counted against: its IPv4 address, or the /64
 * of its IPv6 address (IPv4-mapped IPv6 addresses are IPv4). Pure.
 */
export function clientKeyOf(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  if (!address.includes(':')) return address;
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice('::ffff:'.length);
  const groups = ipv6Groups(address);
  return groups === undefined ? address : `${groups.slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address, in lower-case hex without leading zeros. */
function ipv6Groups(address: string): string[] | undefined {
  const [withoutZone = ''] = address.split('%');
  const halves = withoutZone.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (part: string | undefined): string[] =>
    part === undefined || part === '' ? [] : part.split(':').flatMap((group) => (group.includes('.') ? ['0', '0'] : [group]));
  const head = groupsOf(halves[0]);
  const tail = groupsOf(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return undefined;
  return [...head, ...Array<string>(missing).fill('0'), ...tail].map((group) => parseInt(group, 16).toString(16));
}

/** How often node checks connections against the idle timeout: a tenth of it, at most idleCheckIntervalMsMax. Pure. */
export function idleCheckIntervalMs(idleTimeoutMs: number): number {
  return Math.max(1, Math.min(idleCheckIntervalMsMax, Math.floor(idleTimeoutMs / 10)));
}

/** The answer a refused plain-HTTP connection gets before it is closed. */
function refusalResponse(reason: string): Buffer {
  const body = JSON.stringify({ type: 'unavailable', reason });
  return Buffer.from(
    'HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n' +
      `content-length: ${Buffer.byteLength(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** Rate-limits one kind of warning: the first at once, then at most one per interval, with the count since the last. */
class WarningGate {
  private lastMs: number | undefined;
  private suppressed = 0;

  constructor(private readonly clock: Clock) {}

  /** The number of events this warning stands for (itself and those suppressed since the last), or 0 to stay quiet. */
  pass(): number {
    const now = this.clock.monotonic();
    if (this.lastMs !== undefined && now - this.lastMs < connectionWarningIntervalMs) {
      this.suppressed += 1;
      return 0;
    }
    this.lastMs = now;
    const events = this.suppressed + 1;
    this.suppressed = 0;
    return events;
  }
}

/**
 * Counts the connections of every server it watches (HTTP and HTTPS share
 * one node-wide bound) and refuses those past the bounds.
 */
export class ConnectionLimiter {
  private readonly openByClient = new Map<string, number>();
  private readonly refusalWarnings: WarningGate;
  private readonly acceptWarnings: WarningGate;
  private readonly responses: Readonly<Record<Exclude<Admission, 'admitted'>, Buffer>>;

  constructor(
    readonly bounds: ConnectionBounds,
    readonly idleTimeoutMs: number,
    readonly counters: ConnectionCounters,
    clock: Clock,
    private readonly logger: Logger,
  ) {
    this.refusalWarnings = new WarningGate(clock);
    this.acceptWarnings = new WarningGate(clock);
    this.responses = {
      total: refusalResponse(`the node has ${bounds.total} connections open, its most (http.connections.max): retry later`),
      'per-client': refusalResponse(
        `this client has ${bounds.perClient} connections open, the most one client may (http.connections.per_client.max): close some or retry later`,
      ),
    };
  }

  /** Bounds the connections of a server (HTTP or HTTPS); refused plain-HTTP connections get a 503 first. */
  watch(server: NetServer): void {
    const answersRefusals = !(server instanceof TlsServer);
    server.on('connection', (socket: Socket) => this.onConnection(socket, answersRefusals));
    // After listen, nothing else listens for a server's errors: one (EMFILE
    // from accept, when libuv's own fallback fails) would end the process.
    server.on('error', (error: NodeJS.ErrnoException) => this.onServerError(error));
  }

  /** Connections open now from one client (by clientKeyOf). */
  openFrom(client: string): number {
    return this.openByClient.get(client) ?? 0;
  }

  private onConnection(socket: Socket, answersRefusals: boolean): void {
    const client = clientKeyOf(socket.remoteAddress);
    const openFromClient = this.openByClient.get(client) ?? 0;
    const verdict = admission(this.counters.open, openFromClient, this.bounds);
    if (verdict !== Admission.admitted) {
      this.refuse(socket, client, verdict, answersRefusals);
      return;
    }
    this.counters.open += 1;
    this.openByClient.set(client, openFromClient + 1);
    socket.once('close', () => this.release(client));
  }

  private release(client: string): void {
    this.counters.open -= 1;
    const remaining = (this.openByClient.get(client) ?? 1) - 1;
    if (remaining === 0) this.openByClient.delete(client);
    else this.openByClient.set(client, remaining);
  }

  private refuse(socket: Socket, client: string, verdict: Exclude<Admission, 'admitted'>, answers: boolean): void {
    if (verdict === Admission.total) this.counters.refused += 1;
    else this.counters.refusedPerClient += 1;
    // The answer goes out in one write to a fresh socket, straight into the
    // kernel's buffer, before the close; a client that had already sent its
    // request may see a reset instead. Either way it is told to retry.
    if (answers && socket.writable) socket.write(this.responses[verdict]);
    socket.destroy();
    const refusals = this.refusalWarnings.pass();
    if (refusals > 0) {
      const { open, refused, refusedPerClient } = this.counters;
      this.logger.warn(
        { bound: verdict, client, refusals, open, max: this.bounds.total, perClientMax: this.bounds.perClient, refused, refusedPerClient },
        'connections refused: past the connection bound',
      );
    }
  }

  private onServerError(error: NodeJS.ErrnoException): void {
    this.counters.acceptErrors += 1;
    const errors = this.acceptWarnings.pass();
    if (errors > 0) this.logger.warn({ err: error, errors, open: this.counters.open }, 'accepting a connection failed');
  }
}

/**
 * Applies the connection bounds and the idle timeout to a server. Call it
 * before the server listens (node reads its connection-checking interval
 * at listen): buildApp() does it for the fastify server; a second server
 * feeding the same app (HTTPS) must get it too, with the app's limiter
 * (`app.iorioConnections`).
 */
export function limitConnections(server: NetServer, limiter: ConnectionLimiter): void {
  limiter.watch(server);
  if (server instanceof HttpServer || server instanceof HttpsServer) applyIdleTimeout(server, limiter.idleTimeoutMs);
}

function applyIdleTimeout(server: HttpServer | HttpsServer, idleTimeoutMs: number): void {
  // headersTimeout runs from accept, and from the start of each later
  // request; keepAliveTimeout covers the wait between requests.
  server.headersTimeout = idleTimeoutMs;
  server.keepAliveTimeout = idleTimeoutMs;
  server.requestTimeout = Math.max(requestReceiveMsMax, idleTimeoutMs);
  (server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = idleCheckIntervalMs(idleTimeoutMs);
}
