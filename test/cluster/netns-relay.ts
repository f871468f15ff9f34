/**
 * The holder of a fault test's network namespace, and the test's way in.
 *
 * Run as `unshare --net -- node --import tsx netns-relay.ts <socket path>`:
 * this process is the namespace's first member, so the namespace lives as
 * long as it (or a node started inside) does, and goes away with its
 * iptables rules when the last of them exits; nothing is left to remove.
 *
 * The test process stays in the host namespace and cannot open a TCP
 * connection into this one. A Unix socket is a file, and files are shared:
 * this process listens on `<socket path>`, reads one line `host port` from
 * each connection, connects to that address inside the namespace and then
 * pipes bytes both ways. The test's HTTP client therefore talks real HTTP to
 * the nodes, from 127.0.0.1, an address no fault rule names.
 *
 * Stdin carries `pid N` lines: the node processes started in the namespace.
 * When stdin ends (the test closed it, or the test process died), those of
 * them still in this namespace are killed by pid, then this process exits.
 */
import fs from 'node:fs';
import net from 'node:net';

const headerBytesMax = 256;
const headerTimeoutMs = 5_000;
const connectTimeoutMs = 5_000;
const pidsMax = 1_000;

const socketPath = process.argv[2];
if (socketPath === undefined) {
  process.stderr.write('usage: netns-relay.ts <socket path>\n');
  process.exit(2);
}
const ownNamespace = fs.readlinkSync('/proc/self/ns/net');
const pids = new Set<number>();

const server = net.createServer((client) => {
  let header = Buffer.alloc(0);
  const timer = setTimeout(() => client.destroy(), headerTimeoutMs);
  client.on('error', () => client.destroy());
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
    const [host = '', portText = ''] = header.subarray(0, end).toString('utf8').trim().split(' ');
    const port = Number(portText);
    // Only this namespace's loopback: the relay is a door to the nodes, not a general proxy.
    if (!host.startsWith('127.') || net.isIPv4(host) === false || !Number.isInteger(port) || port <= 0 || port > 65_535) {
      client.destroy();
      return;
    }
    connect(client, host, port, header.subarray(end + 1));
  };
  client.on('data', onData);
});

function connect(client: net.Socket, host: string, port: number, early: Buffer): void {
  const upstream = net.connect({ host, port });
  const timer = setTimeout(() => upstream.destroy(new Error('connect timed out')), connectTimeoutMs);
  const end = (): void => {
    clearTimeout(timer);
    client.destroy();
    upstream.destroy();
  };
  upstream.on('error', end);
  client.on('error', end);
  upstream.on('close', end);
  client.on('close', end);
  upstream.once('connect', () => {
    clearTimeout(timer);
    if (early.length > 0) upstream.write(early);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  });
}

/** Kills the nodes started here that are still in this namespace (a reused pid elsewhere is left alone). */
function shutdown(): void {
  for (const pid of pids) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/ns/net`) === ownNamespace) process.kill(pid, 'SIGKILL');
    } catch {
      // exited already
    }
  }
  server.close();
  fs.rmSync(socketPath!, { force: true });
  process.exit(0);
}

let pending = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  const lines = (pending + chunk).split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines) {
    const match = /^pid (\d+)$/.exec(line.trim());
    if (match !== null && pids.size < pidsMax) pids.add(Number(match[1]));
  }
});
process.stdin.on('end', shutdown);
process.stdin.on('close', shutdown);
process.on('SIGTERM', shutdown);

fs.rmSync(socketPath, { force: true });
server.listen(socketPath, () => process.stdout.write(`ready ${ownNamespace}\n`));
