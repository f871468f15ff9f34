import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { IorioError } from '../core/errors.js';
import { authenticate } from './auth-hook.js';
import { registerBodyParsers } from './body.js';
import type { RouteContext } from './context.js';
import {
  ConnectionLimiter,
  connectionBounds,
  connectionBoundsProblem,
  limitConnections,
  readOpenFilesLimit,
  type ConnectionBounds,
} from './connection-limits.js';
import type { HttpDeps } from './deps.js';
import { ActivityLog } from './activity.js';
import { createClientErrorHandler, frameworkErrorHandler, plainJsonContentType, registerErrorHandling } from './errors.js';
import { registerExtensions } from './extensions/index.js';
import { IdempotencyWindow } from './idempotency.js';
import { countResponse, createHttpCounters, registerDiskMetrics, registerLatencyMetrics, registerNodeMetrics, type HttpCounters } from './metrics.js';
import { registerAuthRoutes } from './routes-auth.js';
import { registerGroupRoutes } from './routes-groups.js';
import { registerNodeRoutes } from './routes-node.js';
import { registerAdminRoutes } from './routes-admin.js';
import { registerStreamRoutes } from './routes-streams.js';
import { registerListen } from './listen/index.js';

/** Longest URL parameter fastify routes (a name is at most 128 bytes, up to 3 characters each when percent-encoded). */
const urlParamCharsMax = 1024;

/** Members a metadata change could not reach yet (they catch up when back): `iorio3@127.0.0.1,...`. */
export const unreachedHeader = 'x-iorio-unreached';
const metadataPaths = /^\/(users|access|sessions|policies|groups)(\/|\?|$)/;

function changesMetadata(url: string): boolean {
  return metadataPaths.test(url);
}

/**
 * Headers a browser client sends and reads (CORS): IorioDB's own two
 * (iorio_app.erl:338), the `X-Socket-Transport` its browser client's XHR
 * polling sends (priv/assets/js/bala.js:195), Last-Event-ID (an
 * EventSource resuming), and Iorio's.
 */
const corsAllowedHeaders = ['x-session', 'content-type', 'x-socket-transport', 'authorization', 'last-event-id', 'x-iorio-expect-seqnum', 'idempotency-key'];
const corsExposedHeaders = ['location', 'x-iorio-first-seqnum', 'x-iorio-missing-seqnums', 'x-iorio-unreached', 'content-disposition', 'retry-after'];

declare module 'fastify' {
  interface FastifyInstance {
    /** The counters /stats and `$sys/metrics` report. */
    iorioCounters: HttpCounters;
    /** The node-wide connection bounds; another server feeding this app (HTTPS) joins them with limitConnections(). */
    iorioConnections: ConnectionLimiter;
    /** User activity the node appends to `<metrics.bucket>/activity` every metrics.interval. */
    iorioActivity: ActivityLog;
    /** Every route the app serves, as registered (HEAD ones included); the README's API reference is tested against it. */
    iorioRoutes: { method: string; url: string }[];
  }
}

/**
 * Builds the node's HTTP API (DESIGN §4) on fastify, not listening: the
 * caller (src/node.ts, tests) listens. One error handler, the auth hook,
 * body parsers, CORS and rate limits when configured, every route, and the
 * listen routes (src/http/listen/).
 */
export async function buildApp(given: HttpDeps): Promise<FastifyInstance> {
  const deps: HttpDeps = { ...given, metrics: given.metrics ?? new Registry() };
  const { config } = deps;
  const logger = deps.logger.child({ component: 'http' });
  const connectionsLogger = deps.logger.child({ component: 'http-connections' });
  const bounds = resolveConnectionBounds(config, connectionsLogger);
  const counters = createHttpCounters(bounds);
  const app = Fastify({
    // pino's own Logger type and fastify's view of it differ only in generics.
    loggerInstance: logger as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config['http.body.max'],
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: urlParamCharsMax },
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler: createClientErrorHandler(logger, counters.connections),
    // Requests arriving while the node stops get our own 503 (below).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    requestIdHeader: false,
  });

  const routes: { method: string; url: string }[] = [];
  app.decorate('iorioRoutes', routes);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });

  const registry = deps.metrics!;
  const activity = new ActivityLog();
  app.decorate('iorioCounters', counters);
  app.decorate('iorioActivity', activity);
  const connections = new ConnectionLimiter(bounds, config['http.idle_timeout'], counters.connections, deps.clock, connectionsLogger);
  limitConnections(app.server, connections);
  app.decorate('iorioConnections', connections);
  const context: RouteContext = {
    deps,
    counters,
    registry,
    requestDuration: registerNodeMetrics(registry, counters, deps.store, config.nodename),
    latency: deps.latency ?? registerLatencyMetrics(registry),
    idempotency: new IdempotencyWindow(deps.clock),
    activity,
    startedMs: deps.clock.now(),
  };

  registerDiskMetrics(registry, config['paths.data'], deps.clock);
  registerErrorHandling(app, logger);
  registerBodyParsers(app);
  app.addHook('onSend', plainJsonContentType);
  // CORS first, so that even a 401 carries the headers a browser needs to read it.
  if (config['http.cors.enabled']) await registerCors(app, config);
  registerLifecycleHooks(app, context);
  if (config['http.ratelimit.enabled']) await registerRateLimit(app, deps);

  registerAuthRoutes(app, context);
  registerGroupRoutes(app, context);
  registerStreamRoutes(app, context);
  registerNodeRoutes(app, context);
  registerAdminRoutes(app, context);
  await registerExtensions(app, context);
  await registerListen(app, deps);
  return app;
}

/** The connection bounds in force, from the config and the process's open-file limit; logged once. */
function resolveConnectionBounds(config: HttpDeps['config'], logger: Logger): ConnectionBounds {
  const openFilesLimit = readOpenFilesLimit();
  const storageFilesMax = config['storage.files.max'];
  const bounds = connectionBounds({
    configuredTotal: config['http.connections.max'],
    configuredPerClient: config['http.connections.per_client.max'],
    openFilesLimit,
    storageFilesMax,
  });
  const fields = { connectionsMax: bounds.total, perClientMax: bounds.perClient, idleTimeoutMs: config['http.idle_timeout'], openFilesLimit };
  const problem = connectionBoundsProblem(bounds, openFilesLimit, storageFilesMax);
  if (problem === undefined) logger.info(fields, 'connection bounds');
  else logger.warn(fields, `connection bounds: ${problem}`);
  return bounds;
}

function registerLifecycleHooks(app: FastifyInstance, context: RouteContext): void {
  const { auth } = context.deps;
  let isStopping = false;
  app.addHook('preClose', async () => {
    isStopping = true;
  });
  app.decorateRequest('username', '');
  app.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void) => {
    context.counters.requests += 1;
    if (isStopping) {
      done(new IorioError('unavailable', 'the node is stopping'));
      return;
    }
    try {
      authenticate(auth, request);
      done();
    } catch (error) {
      done(error as Error);
    }
  });
  // A keep-alive connection whose request was in flight when the node began
  // to stop is closed after its answer, so that close() need not wait for the client.
  const cluster = context.deps.cluster;
  app.addHook('onSend', (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: null, payload: unknown) => void) => {
    if (isStopping) reply.header('connection', 'close');
    // A change to users, grants, sessions or policies is in force on every reachable node before it is acknowledged.
    if (cluster === undefined || request.method === 'GET' || !changesMetadata(request.url)) {
      done(null, payload);
      return;
    }
    void cluster.metadataSettled().then(
      (unreached) => {
        if (unreached.length > 0) reply.header(unreachedHeader, unreached.join(','));
        done(null, payload);
      },
      () => done(null, payload),
    );
  });
  const accessLogger = context.deps.config['log.access'] ? context.deps.logger.child({ component: 'access' }) : undefined;
  app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const status = reply.statusCode;
    accessLogger?.info(accessLogFields(request, status, reply.elapsedTime), 'request');
    countResponse(context.counters, status);
    if (status === 409) context.counters.conflicts += 1;
    else if (status === 429) context.counters.rateLimited += 1;
    context.requestDuration.observe({ method: request.method }, reply.elapsedTime / 1000);
    done();
  });
}

/** One access-log line's fields; a token in the query (`jwt=`) never reaches a log. Pure but for reading the request. */
export function accessLogFields(request: FastifyRequest, status: number, elapsedMs: number): Record<string, unknown> {
  return {
    method: request.method,
    path: withoutToken(request.url),
    status,
    ms: Math.round(elapsedMs * 100) / 100,
    user: request.username === '' ? undefined : request.username,
    ip: request.ip,
    reqId: request.id,
  };
}

/** The URL with the value of every `jwt` query parameter replaced by `<hidden>`. Pure. */
export function withoutToken(url: string): string {
  return url.replace(/([?&]jwt=)[^&#]*/g, '$1<hidden>');
}

/**
 * IorioDB's CORS (iorio_cors.erl, iorio_app.erl:332-343): the allowed
 * origins, its headers plus `http.cors.headers`, `http.cors.maxage`; every
 * OPTIONS preflight is answered (204) before authentication.
 */
async function registerCors(app: FastifyInstance, config: HttpDeps['config']): Promise<void> {
  const origins = config['http.cors.origins'];
  const extraHeaders = config['http.cors.headers']
    .split(',')
    .map((header) => header.trim().toLowerCase())
    .filter((header) => header !== '');
  await app.register(cors, {
    origin: origins === '*' ? '*' : origins.split(',').map((origin) => origin.trim()),
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    allowedHeaders: [...new Set([...corsAllowedHeaders, ...extraHeaders])],
    exposedHeaders: corsExposedHeaders,
    maxAge: Math.floor(config['http.cors.maxage'] / 1000),
    // A preflight of a path with no route of its own (a listen URL, /x/...) is answered too.
    preflight: true,
    strictPreflight: false,
  });
}

/**
 * Per user: the authenticated username is the key; anonymous requests are
 * keyed by client address, so one anonymous client cannot starve the others.
 */
async function registerRateLimit(app: FastifyInstance, deps: HttpDeps): Promise<void> {
  const { config, auth } = deps;
  await app.register(rateLimit, {
    global: true,
    max: config['http.ratelimit.max'],
    timeWindow: config['http.ratelimit.window'],
    cache: 10_000,
    keyGenerator: (request: FastifyRequest) =>
      request.username === '' || request.username === auth.anonymousUsername ? `ip:${request.ip}` : `user:${request.username}`,
    // IorioDB's answer over the limit: 400 {"type":"rate-limited"} (iorio_http.erl:19, 35-44: refused from malformed_request).
    errorResponseBuilder: (_request, context) => {
      app.iorioCounters.rateLimited += 1;
      return new IorioError(
        'rate-limited',
        `more than ${context.max} requests in ${config['http.ratelimit.window']} ms: retry in ${context.after}`,
        { retry_after_secs: Math.max(1, Math.ceil(context.ttl / 1000)) },
        400,
      );
    },
  });
}
