import { readFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { openAuth } from './auth/index.js';
import type { Auth } from './auth/types.js';
import type { Config } from './config.js';
import type { Clock } from './core/clock.js';
import { buildApp } from './http/app.js';
import { limitConnections } from './http/connection-limits.js';
import { createClientErrorHandler } from './http/errors.js';
import { registerLatencyMetrics, statsSnapshot, timedLogFileOps } from './http/metrics.js';
import { messageTypeName } from './core/wire.js';
import { nodeLogFileOps } from './store/commit-log.js';
import { createLogger } from './log.js';
import { StartupError } from './core/errors.js';
import { acquireDataLock, checkMetaFolder, holdsStreamData, prepareDataFolder, type DataLock } from './store/data-folder.js';
import { openMeta, type MetaStore } from './store/meta.js';
import { openStreamStore, type StreamStore } from './store/stream-store.js';
import { startCluster, type Cluster } from './cluster/index.js';
import type { Store } from './store/types.js';

/** Where a node appends its own metrics every `metrics.interval` (the defaults of metrics.bucket and metrics.stream). */
export const metricsBucket = '$sys';
export const metricsStream = 'metrics';
/** The stream of metrics.bucket the node appends its user activity to, beside its metrics (IorioDB's, iorio_stats.erl:302-304). */
export const activityStream = 'activity';

/** The real clock; tests and the simulator pass their own. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
};

export interface IorioNode {
  readonly config: Config;
  /** e.g. `http://127.0.0.1:34567` (the real port when http.port = 0); the HTTPS URL when http.enabled = no. */
  readonly httpUrl: string;
  /** Set when https.enabled. */
  readonly httpsUrl: string | undefined;
  /** This node's own stream store (the HTTP layer sees cluster.store, which routes). */
  readonly store: StreamStore;
  readonly cluster: Cluster;
  readonly auth: Auth;
  readonly app: FastifyInstance;
  /**
   * Graceful: stops accepting, lets in-flight requests finish, closes
   * listeners, then flushes and closes the store and the metadata store.
   * Idempotent.
   */
  stop(): Promise<void>;
}

export interface StartNodeOptions {
  logger?: Logger;
  clock?: Clock;
}

/** The composition root: builds every part of a node from its config, then listens. */
export async function startNode(config: Config, options: StartNodeOptions = {}): Promise<IorioNode> {
  const rootLogger = options.logger ?? createLogger(config);
  const logger = rootLogger.child({ component: 'node' });
  const clock = options.clock ?? systemClock;
  const dataDir = config['paths.data'];
  const parts: NodeParts = openDataFolder(config);
  const metrics = new Registry();
  const latency = registerLatencyMetrics(metrics);
  try {
    const logFiles = timedLogFileOps(nodeLogFileOps, latency.fsync);
    const store = await openStreamStore({ dataDir, meta: parts.meta, config, clock, logger: rootLogger, logFiles });
    parts.store = store;
    const onForward = (type: number) => latency.forward.startTimer({ operation: messageTypeName(type) });
    const cluster = await startClusterOrExplain({ config, meta: parts.meta, local: store, clock, logger: rootLogger, onForward, timeFlush: () => latency.fsync.startTimer() });
    parts.cluster = cluster;
    const auth = await openAuth({ meta: parts.meta, config, clock, logger: rootLogger });
    parts.auth = auth;
    const app = await buildApp({ config, logger: rootLogger, clock, store: cluster.store, auth, cluster: cluster.admin, metrics, latency });
    parts.app = app;
    if (config['http.enabled']) await listenOrExplain(app, config);
    else await app.ready();
    parts.https = config['https.enabled'] ? await listenHttps(app, config) : undefined;
    const httpAddress = config['http.enabled'] ? (app.server.address() as AddressInfo) : (parts.https!.server.address() as AddressInfo);
    const httpUrl = config['http.enabled'] ? urlOf('http', httpAddress) : parts.https!.url;
    await cluster.admin.setHttpAddress({ host: config['http.host'], port: httpAddress.port });
    parts.metricsTimer = startMetricsTimer({ config, clock, logger, store: cluster.store, app });
    logger.info({ httpUrl, httpsUrl: parts.https?.url, dataDir, nodename: config.nodename }, 'node started');
    let stopping: Promise<void> | undefined;
    return {
      config,
      httpUrl,
      httpsUrl: parts.https?.url,
      store,
      cluster,
      auth,
      app,
      stop() {
        stopping ??= stopParts(logger, parts);
        return stopping;
      },
    };
  } catch (error) {
    await stopParts(logger, parts).catch((closeError: unknown) => logger.error({ err: closeError }, 'cleanup after a failed start failed'));
    throw error;
  }
}

/**
 * Checks, locks and opens the data folder, in that order: nothing in it is
 * read before the lock is held, and lmdb maps no file that failed its check.
 */
function openDataFolder(config: Config): NodeParts {
  const dataDir = config['paths.data'];
  prepareDataFolder(dataDir);
  const lock = acquireDataLock(dataDir);
  try {
    checkMetaFolder(dataDir, config['storage.meta.recreate']);
    const metaDir = join(dataDir, 'meta');
    let meta: MetaStore;
    try {
      meta = openMeta(metaDir);
    } catch (error) {
      throw new StartupError(`cannot open the metadata store ${metaDir} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); check its owner and mode`);
    }
    if (!config['storage.meta.recreate'] && meta.users.getKeysCount() === 0 && holdsStreamData(dataDir)) {
      void meta.close();
      throw new StartupError(
        `${join(dataDir, 'vnodes')} holds stream data but the metadata store ${metaDir} is empty (users, grants, policies and the session secret would be reset); restore it from a backup, or start once with --storage.meta.recreate yes to rebuild it from defaults`,
      );
    }
    return { lock, meta };
  } catch (error) {
    lock.release();
    throw error;
  }
}

/** The cluster side; its port in use is one line naming it. */
async function startClusterOrExplain(options: Parameters<typeof startCluster>[0]): Promise<Cluster> {
  try {
    return await startCluster(options);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const where = `${options.config['cluster.host']}:${options.config['cluster.port']}`;
    if (code === 'EADDRINUSE') throw new StartupError(`the cluster address ${where} is in use; stop what listens there or choose another port with cluster.port`);
    if (code === 'EADDRNOTAVAIL') throw new StartupError(`${options.config['cluster.host']} is not an address of this machine; fix cluster.host`);
    throw error;
  }
}

/** Listens on http.host:http.port; a port in use or not ours to take is one line naming it. */
async function listenOrExplain(app: FastifyInstance, config: Config): Promise<void> {
  try {
    await app.listen({ host: config['http.host'], port: config['http.port'] });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const where = `${config['http.host']}:${config['http.port']}`;
    if (code === 'EADDRINUSE') throw new StartupError(`the HTTP address ${where} is in use; stop what listens there or choose another port with http.port`);
    if (code === 'EACCES') throw new StartupError(`not allowed to listen on ${where}; choose a port above 1023 with http.port`);
    if (code === 'EADDRNOTAVAIL') throw new StartupError(`${config['http.host']} is not an address of this machine; fix http.host`);
    throw error;
  }
}

interface NodeParts {
  lock: DataLock;
  meta: MetaStore;
  store?: Store;
  cluster?: Cluster;
  auth?: Auth;
  app?: FastifyInstance;
  https?: { server: HttpsServer; url: string } | undefined;
  metricsTimer?: { stop(): Promise<void> };
}

/**
 * Stops what was started, in reverse order: the metrics timer; the HTTP and
 * HTTPS listeners together (fastify stops accepting, closes idle keep-alive
 * connections and waits for in-flight requests); then the store (flush,
 * checkpoint, close) and the metadata store.
 */
async function stopParts(logger: Logger, parts: NodeParts): Promise<void> {
  logger.info('node stopping');
  await parts.metricsTimer?.stop();
  await Promise.all([parts.app?.close(), parts.https === undefined ? undefined : closeServer(parts.https.server)]);
  await parts.auth?.close();
  await parts.cluster?.close();
  await parts.store?.close();
  await parts.meta.close();
  parts.lock.release();
  logger.info('node stopped');
}

function urlOf(scheme: 'http' | 'https', address: AddressInfo): string {
  const host = address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address;
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}

/** HTTPS beside HTTP: a second listener feeding the same fastify app (requests and WebSocket upgrades). */
async function listenHttps(app: FastifyInstance, config: Config): Promise<{ server: HttpsServer; url: string }> {
  const [cert, key] = await Promise.all([readFile(config['https.cert']), readFile(config['https.key'])]);
  // handshakeTimeout: a TLS socket that never sends a byte is closed like an idle plain one.
  const server = createHttpsServer({ cert, key, handshakeTimeout: config['http.idle_timeout'] }, (request, response) => app.routing(request, response));
  limitConnections(server, app.iorioConnections);
  server.on('upgrade', (request, socket, head) => app.server.emit('upgrade', request, socket, head));
  server.on('clientError', createClientErrorHandler(app.log as unknown as Logger, app.iorioCounters.connections));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config['https.port'], config['http.host'], () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, url: urlOf('https', server.address() as AddressInfo) };
}

function closeServer(server: HttpsServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/**
 * Appends a snapshot of the node's counters to `<metrics.bucket>/<metrics.stream>`
 * and its user activity since the last one to `<metrics.bucket>/activity`
 * every `metrics.interval`, as IorioDB does (iorio_stats.erl:284-304); one at a time.
 */
function startMetricsTimer(input: {
  config: Config;
  clock: Clock;
  logger: Logger;
  store: Store;
  app: FastifyInstance;
}): { stop(): Promise<void> } {
  const { config, clock, logger, store, app } = input;
  if (!config['metrics.enabled']) return { stop: async () => undefined };
  const startedMs = clock.now();
  const bucket = config['metrics.bucket'];
  // Keep a week of snapshots unless an operator chose otherwise (the bucket grows forever otherwise).
  const perWeek = Math.ceil((7 * 24 * 3600 * 1000) / config['metrics.interval']);
  for (const stream of [config['metrics.stream'], activityStream]) {
    if (store.getPolicy(bucket, stream) !== undefined || store.getPolicy(bucket) !== undefined) continue;
    void store.setPolicy(bucket, stream, { max_count: perWeek }).catch((error: unknown) => logger.warn({ err: error, bucket, stream }, 'setting the metrics policy failed'));
  }
  let pending: Promise<void> | undefined;
  const appendSnapshot = async () => {
    const snapshot = statsSnapshot({ node: config.nodename, now: clock.now(), startedMs, counters: app.iorioCounters, store });
    const activity = { node: config.nodename, ...app.iorioActivity.take() };
    await store.append({ bucket, stream: config['metrics.stream'], payloads: [Buffer.from(JSON.stringify(snapshot), 'utf8')] });
    await store.append({ bucket, stream: activityStream, payloads: [Buffer.from(JSON.stringify(activity), 'utf8')] });
  };
  const timer = setInterval(() => {
    if (pending !== undefined) return;
    pending = appendSnapshot()
      .catch((error: unknown) => logger.warn({ err: error }, 'appending node metrics failed'))
      .finally(() => {
        pending = undefined;
      });
  }, config['metrics.interval']);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await pending;
    },
  };
}

