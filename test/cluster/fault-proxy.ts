/**
 * The fault tests' fallback where no network namespace can be made (not
 * root, no `unshare`, no working iptables): a TCP proxy in the test process
 * that every cluster connection between nodes passes through (the nodes
 * dial it through fault-proxy-dial.ts), whose links can be cut.
 *
 * A link is directed, source host to target host. A blocked link:
 * - `drop`: bytes from source to target stop where they are and wait (the
 *   sender's socket backs up, as TCP retransmitting into a black hole does);
 *   a close from the source waits too. A new connection with either direction
 *   dropped gets no answer (a lost SYN or SYN-ACK). On heal everything that
 *   waited goes on, as TCP would deliver its retransmissions.
 * - `reject`: connections on the link are reset at once, new ones too.
 * Random loss is not offered: losing bytes inside a TCP stream is not what
 * losing packets does (TCP resends them); only iptables can do that.
 */
import net, { type Server, type Socket } from 'node:net';

export const LinkAction = { drop: 'drop', reject: 'reject' } as const;
export type LinkAction = (typeof LinkAction)[keyof typeof LinkAction];

/** What both the namespace (iptables) and the proxy can do to the links between node addresses. */
export interface LinkFaults {
  /** Says how faults are made, for test names and output. */
  readonly description: string;
  /** From now on, traffic from `source` to `target` (node hosts) is dropped or reset. */
  block(source: string, target: string, action: LinkAction): Promise<void>;
  /** Drops each packet from `source` to `target` with this probability. */
  loss(source: string, target: string, probability: number): Promise<void>;
  /** Removes every fault. */
  heal(): Promise<void>;
  close(): Promise<void>;
}

const headerBytesMax = 256;
const headerTimeoutMs = 5_000;
const connectTimeoutMs = 5_000;
/** Bytes one direction of one connection holds while its link is dropped; past it the connection is reset (its peer would have given up long before). */
const heldBytesMax = 64 * 1024 * 1024;
const connectionsMax = 1_000;

/** One direction of one proxied connection. */
class Flow {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private closedWhileHeld = false;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly blocked: () => LinkAction | undefined,
    private readonly reset: () => void,
  ) {
    from.on('data', (chunk: Buffer) => this.carry(chunk));
    // A FIN or RST waits behind a dropped link like the bytes before it.
    from.once('close', () => {
      if (this.blocked() !== undefined || this.held.length > 0) this.closedWhileHeld = true;
      else to.end();
    });
    to.on('drain', () => {
      if (this.blocked() === undefined) from.resume();
    });
  }

  private carry(chunk: Buffer): void {
    if (this.blocked() !== undefined || this.held.length > 0) {
      // The sender backs up, as it would retransmitting into a black hole.
      this.from.pause();
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      if (this.heldBytes > heldBytesMax) this.reset();
      return;
    }
    if (!this.to.write(chunk)) this.from.pause();
  }

  /** After a heal: what waited goes on. */
  release(): void {
    if (this.blocked() !== undefined) return;
    for (const chunk of this.held) this.to.write(chunk);
    this.held = [];
    this.heldBytes = 0;
    if (this.closedWhileHeld) this.to.end();
    else this.from.resume();
  }
}

interface Proxied {
  readonly source: string;
  readonly target: string;
  readonly client: Socket;
  upstream?: Socket;
  /** Bytes the client sent before its link let the connection through. */
  early: Buffer[];
  flows: Flow[];
}

export const faultProxyDescription = 'in-repo fault proxy between the nodes (no network namespace)';

export class FaultProxy implements LinkFaults {
  readonly description = faultProxyDescription;
  private server: Server | undefined;
  private readonly links = new Map<string, LinkAction>();
  private readonly connections = new Set<Proxied>();

  /** Listens on 127.0.0.1; the address to give the nodes (FAULT_PROXY_ADDRESS). */
  async start(): Promise<string> {
    const server = net.createServer((client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address() as net.AddressInfo;
    return `127.0.0.1:${address.port}`;
  }

  async block(source: string, target: string, action: LinkAction): Promise<void> {
    this.links.set(linkKey(source, target), action);
    if (action !== LinkAction.reject) return;
    for (const proxied of this.connections) {
      if ((proxied.source === source && proxied.target === target) || (proxied.source === target && proxied.target === source)) resetBoth(proxied);
    }
  }

  async loss(): Promise<void> {
    throw new Error('random loss needs iptables in a network namespace; the fault proxy cannot lose packets (TCP would resend them)');
  }

  async heal(): Promise<void> {
    this.links.clear();
    for (const proxied of this.connections) {
      if (proxied.upstream === undefined) this.connectUpstream(proxied);
      else for (const flow of proxied.flows) flow.release();
    }
  }

  async close(): Promise<void> {
    for (const proxied of this.connections) resetBoth(proxied);
    this.connections.clear();
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private linkAction(source: string, target: string): LinkAction | undefined {
    return this.links.get(linkKey(source, target));
  }

  private accept(client: Socket): void {
    client.on('error', () => client.destroy());
    if (this.connections.size >= connectionsMax) {
      client.destroy();
      return;
    }
    let header = Buffer.alloc(0);
    const timer = setTimeout(() => client.destroy(), headerTimeoutMs);
    const onData = (chunk: Buffer): void => {
      header = Buffer.concat([header, chunk]);
      const end = header.indexOf(0x0a);
      if (end < 0) {
        if (header.length > headerBytesMax) client.destroy();
        return;
      }
      clearTimeout(timer);
      client.off('data', onData);
      client.pause();
      const [target = '', portText = ''] = header.subarray(0, end).toString('utf8').trim().split(' ');
      const source = plain(client.remoteAddress);
      const port = Number(portText);
      if (source === undefined || !net.isIPv4(target) || !Number.isInteger(port) || port <= 0 || port > 65_535) {
        client.destroy();
        return;
      }
      const proxied: Proxied = { source, target: `${target}:${port}`, client, early: [header.subarray(end + 1)], flows: [] };
      this.connections.add(proxied);
      client.once('close', () => this.connections.delete(proxied));
      this.admit(proxied);
    };
    client.on('data', onData);
  }

  /** A new connection: reset, held (a lost SYN), or connected. */
  private admit(proxied: Proxied): void {
    const target = hostOf(proxied.target);
    const forward = this.linkAction(proxied.source, target);
    const backward = this.linkAction(target, proxied.source);
    if (forward === LinkAction.reject || backward === LinkAction.reject) {
      resetBoth(proxied);
      return;
    }
    if (forward === LinkAction.drop || backward === LinkAction.drop) {
      // Held until heal; whatever the client sends meanwhile waits with it.
      let heldBytes = 0;
      proxied.client.on('data', (chunk: Buffer) => {
        proxied.early.push(chunk);
        heldBytes += chunk.length;
        if (heldBytes > heldBytesMax) resetBoth(proxied);
      });
      proxied.client.resume();
      return;
    }
    this.connectUpstream(proxied);
  }

  private connectUpstream(proxied: Proxied): void {
    if (proxied.upstream !== undefined || proxied.client.destroyed) return;
    proxied.client.removeAllListeners('data');
    proxied.client.pause();
    const target = hostOf(proxied.target);
    const upstream = net.connect({ host: target, port: Number(proxied.target.split(':')[1]), localAddress: proxied.source });
    proxied.upstream = upstream;
    const timer = setTimeout(() => upstream.destroy(), connectTimeoutMs);
    // Once connected, each Flow passes a close on (or holds it behind a dropped link).
    upstream.on('error', () => upstream.destroy());
    upstream.once('close', () => {
      clearTimeout(timer);
      if (proxied.flows.length === 0) proxied.client.destroy();
    });
    upstream.once('connect', () => {
      clearTimeout(timer);
      for (const chunk of proxied.early) if (chunk.length > 0) upstream.write(chunk);
      proxied.early = [];
      const reset = (): void => resetBoth(proxied);
      proxied.flows = [
        new Flow(proxied.client, upstream, () => this.linkAction(proxied.source, target), reset),
        new Flow(upstream, proxied.client, () => this.linkAction(target, proxied.source), reset),
      ];
      proxied.client.resume();
    });
  }
}

function linkKey(source: string, target: string): string {
  return `${source}>${target}`;
}

function hostOf(address: string): string {
  return address.slice(0, address.lastIndexOf(':'));
}

function plain(address: string | undefined): string | undefined {
  return address?.startsWith('::ffff:') ? address.slice(7) : address;
}

function resetBoth(proxied: Proxied): void {
  proxied.client.resetAndDestroy();
  proxied.upstream?.resetAndDestroy();
}
