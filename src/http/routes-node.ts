import type { FastifyInstance, FastifyRequest } from 'fastify';
import { IorioError } from '../core/errors.js';
import { partitionOf } from '../core/hash.js';
import { seqnumMax } from '../core/limits.js';
import type { EvictionPolicy } from '../store/types.js';
import { version } from '../version.js';
import { requirePermission } from './auth-hook.js';
import { objectBodyOf } from './body.js';
import type { RouteContext } from './context.js';
import { statsSnapshot } from './metrics.js';
import { resourceParams } from './params.js';

/** /buckets, /policies, /ping, /stats, /metrics. */
export function registerNodeRoutes(app: FastifyInstance, context: RouteContext): void {
  const { auth, store, config, clock } = context.deps;

  // IorioDB needs `list` (iorio_rest_list.erl:58-71, checked on no bucket in
  // particular): a caller who may list no bucket at all gets 401 no-perm.
  // The others get every bucket they may list (an admin may list them all).
  app.get('/buckets', async (request) => {
    if (!auth.canListSomewhere(request.username)) throw new IorioError('no-perm', `${request.username} may not list any bucket`);
    const listing = await store.listBuckets();
    return { status: listing.partial ? 'partial' : 'ok', data: listing.names.filter((bucket) => auth.can(request.username, 'list', bucket)) };
  });

  for (const path of ['/policies/:bucket', '/policies/:bucket/:stream']) {
    const onRequest = requirePermission(auth, 'grant', 'resource');
    // No policy of its own: `{}` (the bucket's or the config's applies).
    app.get(path, { onRequest }, async (request) => {
      const { bucket, stream } = resourceParams(request.params);
      return store.getPolicy(bucket, stream) ?? {};
    });
    app.put(path, { onRequest }, async (request) => {
      const { bucket, stream } = resourceParams(request.params);
      await store.setPolicy(bucket, stream, policyOf(objectBodyOf(request)));
      return { ok: true };
    });
    app.delete(path, { onRequest }, async (request) => {
      const { bucket, stream } = resourceParams(request.params);
      await store.deletePolicy(bucket, stream);
      return { ok: true };
    });
  }

  // No auth. The partition is the one a fresh key falls in, as IorioDB's
  // ping answers from whichever vnode it reached.
  app.get('/ping', { config: { skipAuth: true } }, async () => ({
    pong: String(partitionOf('$ping', String(clock.now()), config['ring.size'])),
    node: config.nodename,
    version,
  }));

  // One rule for both: a client on this machine (a scraper, an operator's
  // curl), or a caller with viewstats. Behind a reverse proxy on the same
  // machine every client is local: keep both paths out of the proxy.
  const checkStatsViewer = (request: FastifyRequest) => {
    if (!isLoopback(request)) auth.check(request.username, 'viewstats');
  };
  app.get('/stats', async (request) => {
    checkStatsViewer(request);
    return statsSnapshot({ node: config.nodename, now: clock.now(), startedMs: context.startedMs, counters: context.counters, store });
  });

  app.get('/metrics', async (request, reply) => {
    if (!config['metrics.enabled']) throw new IorioError('not-found', 'metrics are disabled (metrics.enabled = no)');
    checkStatsViewer(request);
    return reply.type(context.registry.contentType).send(await context.registry.metrics());
  });
}

const policyKeys = ['max_count', 'max_bytes', 'max_age_secs'] as const;

/** `{"max_count"?, "max_bytes"?, "max_age_secs"?}`: only these keys, non-negative integers. Pure. */
export function policyOf(body: Record<string, unknown>): EvictionPolicy {
  const policy: Record<string, number> = {};
  for (const [key, value] of Object.entries(body)) {
    if (!(policyKeys as readonly string[]).includes(key)) {
      throw new IorioError('invalid-body', `unknown policy field "${key}": the fields are ${policyKeys.join(', ')}`);
    }
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > seqnumMax) {
      throw new IorioError('invalid-body', `policy field "${key}" must be a non-negative integer`);
    }
    policy[key] = value;
  }
  return policy as EvictionPolicy;
}

function isLoopback(request: FastifyRequest): boolean {
  const address = request.socket.remoteAddress ?? '';
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
