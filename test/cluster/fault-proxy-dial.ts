/**
 * Loaded into a node process with `--import` when the fault tests run
 * without a network namespace: it sends the node's outgoing cluster
 * connections through the test's fault proxy (fault-proxy.ts).
 *
 * A node advertises the address it listens on, and nothing in its config
 * can make peers dial another one, so the proxy cannot simply sit at a
 * node's address. Instead, the one kind of connection a node dials with a
 * source address (cluster connections bind to `cluster.host`, see
 * src/cluster/transport.ts) is dialled to the proxy, from the same source
 * address, and its first line names the real target, `host port`; the
 * proxy connects to the target from the source's address, so the target
 * sees the peer it expects. Everything else is left alone.
 *
 * The proxy is named by FAULT_PROXY_ADDRESS (`host:port`), not an IORIO_*
 * variable: those are the node's own config, and it warns about unknown ones.
 */
import net from 'node:net';

const address = process.env['FAULT_PROXY_ADDRESS'];
if (address !== undefined) {
  const [proxyHost = '', proxyPortText = ''] = address.split(':');
  const proxyPort = Number(proxyPortText);
  const original = net.connect;
  const redirected = function connect(this: unknown, ...args: unknown[]): net.Socket {
    const options = args[0];
    if (typeof options === 'object' && options !== null && 'localAddress' in options && 'port' in options) {
      const { host, port, localAddress, ...rest } = options as net.TcpNetConnectOpts;
      const socket = original({ ...rest, host: proxyHost, port: proxyPort, localAddress });
      // Written before the caller holds the socket: the line goes out ahead of anything the caller writes.
      socket.write(`${host ?? 'localhost'} ${port}\n`);
      return socket;
    }
    return (original as (...all: unknown[]) => net.Socket).apply(this, args);
  };
  net.connect = redirected as typeof net.connect;
  net.createConnection = redirected as typeof net.createConnection;
}
