import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Gauge } from 'prom-client';
import type { WebSocket } from 'ws';
import { IorioError, assert } from '../../core/errors.js';
import { listenCommandBytesMax, listenHeartbeatMs } from '../../core/limits.js';
import { tokenOf } from '../credentials.js';
import type { HttpDeps } from '../deps.js';
import { ConnectionKind, ConnectionRegistry, type ListenContext } from './connections.js';
import { ListenHub } from './hub.js';
import { LongPollListener } from './long-poll.js';
import { parseStreamSpecs, parseTimeoutMs, resumeAfterLastEventId, type StreamSpec } from './params.js';
import { ListenSession } from './session.js';
import { SseListener } from './sse.js';
import { WebSocketListener } from './websocket.js';

/** A listen request, authenticated and authorised before any upgrade or hijack. */
interface ListenRequest {
  readonly session: ListenSession;
  readonly specs: readonly StreamSpec[];
  readonly timeoutMs: number;
  /** Streams named in `s` the user may not get (skipped, as IorioDB does). */
  readonly skipped: number;
}

type ListenQuery = Record<string, string | string[] | undefined>;

/**
 * GET /listen: WebSocket (upgrade), Server-Sent Events (`Accept:
 * text/event-stream`) or long-poll (otherwise), over one shared fan-out per
 * stream. Registers @fastify/websocket (best before other routes, so the
 * plugin also closes upgrades aimed at them).
 */
export async function registerListen(app: FastifyInstance, deps: HttpDeps): Promise<void> {
  const logger = deps.logger.child({ component: 'listen' });
  const hub = new ListenHub(deps.store, deps.clock, logger);
  const connections = new ConnectionRegistry(listenHeartbeatMs, logger);
  const context: ListenContext = { deps, logger, hub, connections };
  const prepared = new WeakMap<FastifyRequest, ListenRequest>();

  // Added before the plugin's own preClose so clients get a reason (1001, SSE end, long-poll answer) first.
  app.addHook('preClose', async () => {
    connections.closeAll();
    hub.close();
  });
  // An upgrade refused before @fastify/websocket's own onRequest hook ran (an earlier hook threw: 401, 429)
  // is not closed by the plugin, and nothing else ends an upgrade socket: it would stay open half-closed
  // and hold the server's close forever.
  app.addHook('onResponse', (request: FastifyRequest, _reply: FastifyReply, done: () => void) => {
    if (isUpgrade(request) && !request.raw.socket.destroyed) request.raw.socket.destroy();
    done();
  });
  await app.register(websocket, {
    options: { maxPayload: listenCommandBytesMax },
    errorHandler: (error: Error, socket: WebSocket) => {
      // Resets and protocol errors (they carry a code) are routine for listeners; anything else is a bug.
      const isRoutine = typeof (error as NodeJS.ErrnoException).code === 'string';
      if (isRoutine) logger.debug({ err: error }, 'listen: websocket error');
      else logger.error({ err: error }, 'listen: websocket handler failed');
      socket.terminate();
    },
  });
  if (deps.metrics !== undefined) registerListenMetrics(deps, connections, hub);

  app.route({
    method: 'GET',
    url: '/listen',
    exposeHeadRoute: false,
    preHandler: async (request: FastifyRequest) => {
      const listen = prepareListen(deps, request);
      prepared.set(request, listen);
      logger.debug(
        {
          username: listen.session.username,
          transport: request.ws ? ConnectionKind.websocket : acceptsEventStream(request.headers.accept) ? ConnectionKind.sse : ConnectionKind.longPoll,
          streams: listen.specs.map((spec) => `${spec.bucket}:${spec.stream}:${spec.from ?? 'now'}`),
          skipped: listen.skipped,
          ...(request.ws ? {} : { timeoutMs: listen.timeoutMs }),
        },
        'listen: request',
      );
    },
    handler: async (request: FastifyRequest, reply: FastifyReply) => {
      const listen = preparedOf(prepared, request);
      if (acceptsEventStream(request.headers.accept)) {
        new SseListener(context, reply, listen.session).open(listen.specs);
        return reply;
      }
      await new LongPollListener(context, reply, listen.session, listen.timeoutMs).open(listen.specs);
      return reply;
    },
    wsHandler: (socket: WebSocket, request: FastifyRequest) => {
      const listen = preparedOf(prepared, request);
      new WebSocketListener(context, socket, listen.session).open(listen.specs);
    },
  });
}

/**
 * Authenticates (401) and parses (400) before the response starts. A
 * stream the user may not get is skipped and the others listened to, as
 * IorioDB does (iorio_listen_handler.erl:124-134, 146-168); no token is
 * the anonymous user (:236-251).
 */
function prepareListen(deps: HttpDeps, request: FastifyRequest): ListenRequest {
  const query = (request.query ?? {}) as ListenQuery;
  const token = tokenOf(request.headers, query);
  const username = token === undefined ? deps.auth.anonymousUsername : deps.auth.verifyToken(token);
  const specs = resumeAfterLastEventId(parseStreamSpecs(query['s']), request.headers['last-event-id']);
  const timeoutMs = parseTimeoutMs(query['timeout'], deps.config['listen.timeout']);
  if (specs.length === 0 && !request.ws) {
    throw new IorioError('invalid-param', 'name at least one stream to listen to: s=bucket:stream or s=bucket:stream:from');
  }
  const allowed = specs.filter((spec) => deps.auth.can(username, 'get', spec.bucket, spec.stream));
  return { session: new ListenSession(deps.auth, deps.clock, username, token), specs: allowed, timeoutMs, skipped: specs.length - allowed.length };
}

function preparedOf(prepared: WeakMap<FastifyRequest, ListenRequest>, request: FastifyRequest): ListenRequest {
  const listen = prepared.get(request);
  assert(listen !== undefined, 'a listen request is prepared by its preHandler');
  return listen;
}

function isUpgrade(request: FastifyRequest): boolean {
  const upgrade = request.headers.upgrade;
  return typeof upgrade === 'string' && upgrade.toLowerCase() === 'websocket';
}

function acceptsEventStream(accept: string | undefined): boolean {
  return accept !== undefined && accept.toLowerCase().includes('text/event-stream');
}

function registerListenMetrics(deps: HttpDeps, connections: ConnectionRegistry, hub: ListenHub): void {
  const registry = deps.metrics!;
  if (registry.getSingleMetric('iorio_listen_connections') === undefined) {
    new Gauge({
      name: 'iorio_listen_connections',
      help: 'Open listen connections by transport',
      labelNames: ['transport'],
      registers: [registry],
      collect() {
        for (const kind of Object.values(ConnectionKind)) this.set({ transport: kind }, connections.count(kind));
      },
    });
  }
  if (registry.getSingleMetric('iorio_listen_streams') === undefined) {
    new Gauge({
      name: 'iorio_listen_streams',
      help: 'Streams with at least one listener (one store subscription each)',
      registers: [registry],
      collect() {
        this.set(hub.topicCount);
      },
    });
  }
}
