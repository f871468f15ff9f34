/**
 * /admin/cluster/*: what iorio-admin's cluster commands call (the answers'
 * shapes are in src/cluster/admin-api.ts). Allowed to an admin session
 * (`adminusers`) or to whoever holds the cluster secret
 * (`x-iorio-cluster-secret`), as riak-admin is to whoever holds the cookie.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { StagedChange } from '../core/plan.js';
import { IorioError } from '../core/errors.js';
import { checkName } from '../core/names.js';
import { parseSize } from '../config.js';
import { objectBodyOf } from './body.js';
import type { RouteContext } from './context.js';

const secretHeader = 'x-iorio-cluster-secret';

export function registerAdminRoutes(app: FastifyInstance, context: RouteContext): void {
  const cluster = context.deps.cluster;
  if (cluster === undefined) return;
  const { auth, config } = context.deps;
  const secret = Buffer.from(config['cluster.secret'], 'utf8');
  const onRequest = (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void) => {
    try {
      const offered = request.headers[secretHeader];
      if (typeof offered === 'string' && offered.length > 0) {
        const given = Buffer.from(offered, 'utf8');
        if (given.length !== secret.length || !timingSafeEqual(given, secret)) throw new IorioError('unauthorized', 'wrong cluster secret');
      } else {
        auth.check(request.username, 'adminusers');
      }
      done();
    } catch (error) {
      done(error as Error);
    }
  };
  const base = '/admin/cluster';
  const body = (request: FastifyRequest): Record<string, unknown> => (request.body === undefined ? {} : objectBodyOf(request));
  const nodeField = (fields: Record<string, unknown>, name: string, required: boolean): string | undefined => {
    const value = fields[name];
    if (value === undefined && !required) return undefined;
    if (typeof value !== 'string' || !/^[A-Za-z0-9_.-]+@[A-Za-z0-9_.:-]+$/.test(value)) {
      throw new IorioError('invalid-body', `${name} must be a node name, name@host`);
    }
    return value;
  };
  const staged = (kind: StagedChange['kind'], byNeeded: boolean, nodeRequired: boolean) => async (request: FastifyRequest) => {
    const fields = body(request);
    const node = nodeField(fields, 'node', nodeRequired);
    const by = byNeeded ? nodeField(fields, 'by', true) : undefined;
    await cluster.stage({ kind, ...(node === undefined ? {} : { node }), ...(by === undefined ? {} : { by }) });
    return { ok: true, staged: kind, node: node ?? config.nodename, ...(by === undefined ? {} : { by }) };
  };

  // verify: GET reports; POST repairs when asked to (`?repair=true` or `{"repair": true}`).
  const verifyScope = (fields: Record<string, unknown>): { bucket?: string; stream?: string } => {
    const given = (name: string) => (fields[name] === undefined || fields[name] === '' ? undefined : fields[name]);
    const bucket = given('bucket');
    const stream = given('stream');
    if (stream !== undefined && bucket === undefined) throw new IorioError('invalid-param', 'a stream is verified within its bucket: give bucket too');
    return { ...(bucket === undefined ? {} : { bucket: checkName('bucket', bucket) }), ...(stream === undefined ? {} : { stream: checkName('stream', stream) }) };
  };
  const repairOf = (value: unknown): boolean => {
    if (value === undefined || value === false || value === 'false') return false;
    if (value === true || value === 'true') return true;
    throw new IorioError('invalid-param', 'repair must be true or false');
  };
  app.get(`${base}/verify`, { onRequest }, async (request) => {
    const query = request.query as Record<string, unknown>;
    if (repairOf(query['repair'])) throw new IorioError('invalid-param', 'a repair is a POST to /admin/cluster/verify');
    return cluster.verify({ ...verifyScope(query), repair: false });
  });
  app.post(`${base}/verify`, { onRequest }, async (request) => {
    const fields = { ...(request.query as Record<string, unknown>), ...body(request) };
    return cluster.verify({ ...verifyScope(fields), repair: repairOf(fields['repair']) });
  });
  app.get(`${base}/members`, { onRequest }, async () => cluster.members());
  app.get(`${base}/ring`, { onRequest }, async () => cluster.ringStatus());
  app.get(`${base}/ringready`, { onRequest }, async () => cluster.ringReady());
  app.post(`${base}/join`, { onRequest }, async (request) => {
    const seed = nodeField(body(request), 'node', true)!;
    const joined = await cluster.join(seed);
    return { ok: true, staged: 'join', ...joined };
  });
  app.post(`${base}/leave`, { onRequest }, staged('leave', false, false));
  app.post(`${base}/force-remove`, { onRequest }, staged('force-remove', false, true));
  app.post(`${base}/replace`, { onRequest }, staged('replace', true, true));
  app.post(`${base}/force-replace`, { onRequest }, staged('force-replace', true, true));
  app.get(`${base}/plan`, { onRequest }, async () => cluster.plan());
  app.post(`${base}/commit`, { onRequest }, async () => ({ ok: true, ...(await cluster.commit()) }));
  app.post(`${base}/clear`, { onRequest }, async () => ({ ok: true, ...((await cluster.clear()) as object) }));
  app.post(`${base}/down`, { onRequest }, async (request) => ({ ok: true, ...(await cluster.down(nodeField(body(request), 'node', true)!)) }));
  app.get(`${base}/transfers`, { onRequest }, async () => cluster.transfers());
  app.get(`${base}/partitions`, { onRequest }, async () => cluster.partitions());
  app.post(`${base}/transfer-limit`, { onRequest }, async (request) => {
    const fields = body(request);
    const concurrency = fields['concurrency'];
    const rate = fields['rate'];
    if (concurrency !== undefined && typeof concurrency !== 'number') throw new IorioError('invalid-body', 'concurrency must be a number');
    let rateBytes: number | undefined;
    if (typeof rate === 'number') rateBytes = rate;
    else if (typeof rate === 'string') {
      rateBytes = parseSize(rate);
      if (rateBytes === undefined) throw new IorioError('invalid-body', 'rate must be a size such as 10MB (per second), or 0');
    } else if (rate !== undefined) throw new IorioError('invalid-body', 'rate must be a size such as 10MB (per second), or 0');
    return cluster.transferLimit({ ...(concurrency === undefined ? {} : { concurrency }), ...(rateBytes === undefined ? {} : { rate: rateBytes }) });
  });
  app.delete(`${base}/transfers/:partition`, { onRequest }, async (request) => {
    const partition = Number((request.params as Record<string, string>)['partition']);
    if (!Number.isInteger(partition) || partition < 0) throw new IorioError('invalid-param', 'partition must be a partition number');
    if (!cluster.cancelTransfer(partition)) throw new IorioError('not-found', `no transfer of partition ${partition} runs on this node`);
    return { ok: true, partition };
  });
}
