import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import jsonpatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { IorioError } from '../core/errors.js';
import { payloadBytesMax } from '../core/limits.js';
import { checkName, patchStreamSuffix } from '../core/names.js';
import type { AppendMeta, StoredEntry } from '../store/types.js';
import { requirePermission } from './auth-hook.js';
import { bodyOf } from './body.js';
import type { RouteContext } from './context.js';
import { bucketParam, downloadFilename, expectSeqHeader, idempotencyKeyHeader, readParams, streamParams } from './params.js';

/**
 * /streams: append (single, NDJSON batch, conditional, idempotent), read,
 * delete, PATCH, and the list of a bucket's streams.
 */
export function registerStreamRoutes(app: FastifyInstance, context: RouteContext): void {
  const { auth } = context.deps;
  app.post('/streams/:bucket/:stream', { onRequest: requirePermission(auth, 'put', 'resource') }, (request, reply) =>
    appendHandler(context, request, reply),
  );
  app.get('/streams/:bucket/:stream', { onRequest: requirePermission(auth, 'get', 'resource') }, (request, reply) =>
    readHandler(context, request, reply),
  );
  app.delete('/streams/:bucket/:stream', { onRequest: requirePermission(auth, 'delete', 'resource') }, async (request) => {
    const { bucket, stream } = streamParams(request.params);
    await context.deps.store.deleteStream(bucket, stream);
    return { ok: true };
  });
  app.patch('/streams/:bucket/:stream', { onRequest: requirePermission(auth, 'put', 'resource') }, (request, reply) =>
    patchHandler(context, request, reply),
  );
  app.get('/streams/:bucket', { onRequest: requirePermission(auth, 'list', 'resource') }, async (request) => {
    const bucket = bucketParam(request.params);
    return { status: 'ok', data: await context.deps.store.listStreams(bucket) };
  });
}

type AppendAnswer = { single: AppendMeta } | { batch: AppendMeta[] };

async function appendHandler(context: RouteContext, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const { bucket, stream } = streamParams(request.params);
  const body = bodyOf(request, ['json', 'ndjson']);
  const expectSeq = expectSeqHeader(request.headers['x-iorio-expect-seqnum']);
  const idempotencyKey = idempotencyKeyHeader(request.headers['idempotency-key']);
  const payloads = body.kind === 'json' ? [body.text] : body.texts;
  const write = async (): Promise<AppendAnswer> => {
    const metas = await context.deps.store.append({ bucket, stream, payloads, ...(expectSeq === undefined ? {} : { expectSeq }) });
    return body.kind === 'json' ? { single: metas[0]! } : { batch: metas };
  };
  const outcome =
    idempotencyKey === undefined
      ? { result: await write(), replayed: false }
      : await context.idempotency.run([request.username, bucket, stream], idempotencyKey, write);
  const answer = outcome.result;
  if (outcome.replayed) {
    context.counters.idempotentReplays += 1;
  } else {
    context.counters.appends += 1;
    context.counters.appendedEntries += payloads.length;
  }
  const metas = 'single' in answer ? [answer.single] : answer.batch;
  const first = metas[0]!;
  const location = `/streams/${bucket}/${stream}?limit=${metas.length}&from=${first.id}`;
  const text = 'single' in answer ? `{"meta":${metaJson(answer.single)}}` : `{"meta":[${answer.batch.map(metaJson).join(',')}]}`;
  return reply.code(201).header('location', location).type('application/json; charset=utf-8').send(text);
}

function metaJson(meta: AppendMeta): string {
  return `{"id":${meta.id},"t":${meta.t}}`;
}

async function readHandler(context: RouteContext, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const { bucket, stream } = streamParams(request.params);
  const query = request.query as Record<string, unknown>;
  const { limit, from } = readParams(query);
  const filename = downloadFilename(query['download']);
  const result =
    limit === 0
      ? undefined
      : await context.deps.store.read(bucket, stream, from === undefined ? { limit } : { limit, from: Math.max(from, 1) });
  const entries = result?.entries ?? [];
  context.counters.reads += 1;
  context.counters.readEntries += entries.length;
  if (result?.truncated === true) reply.header('x-iorio-first-seqnum', String(result.first));
  if (filename !== undefined) reply.header('content-disposition', `attachment; filename="${filename}"`);
  return reply.type('application/json; charset=utf-8').send(entriesJson(entries));
}

/**
 * `[{"meta":{"id","t"},"data":<payload>},..]` built by concatenation from the
 * stored JSON texts: the hot path never parses or re-serialises an entry.
 * A string, not a Buffer: node writes a string body together with the
 * headers in one write, measured 11% faster than a Buffer body here.
 */
export function entriesJson(entries: readonly StoredEntry[]): string {
  let out = '[';
  for (let index = 0; index < entries.length; index += 1) {
    const entry = entries[index]!;
    out += (index === 0 ? '{"meta":{"id":' : ',{"meta":{"id":') + entry.seq + ',"t":' + entry.t + '},"data":' + entry.payload.toString('utf8') + '}';
  }
  return out + ']';
}

async function patchHandler(context: RouteContext, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const { bucket, stream } = streamParams(request.params);
  if (stream.endsWith(patchStreamSuffix)) {
    throw new IorioError('invalid-name', `a patch log (a stream ending in ${patchStreamSuffix}) cannot be patched`);
  }
  const patchStream = checkName('stream', stream + patchStreamSuffix);
  const body = bodyOf(request, ['json-patch', 'json']);
  const operations = patchOperations(body.value);
  const expectSeq = expectSeqHeader(request.headers['x-iorio-expect-seqnum']);
  const { store } = context.deps;
  const last = (await store.read(bucket, stream, { limit: 1 })).entries[0];
  if (last === undefined) throw new IorioError('not-found', `stream ${bucket}/${stream} is empty: there is nothing to patch`);
  if (expectSeq !== undefined && expectSeq !== last.seq) {
    throw new IorioError('conflict', `the last seqnum is ${last.seq}, not ${expectSeq}`, { expected: expectSeq, got: last.seq });
  }
  const patched = Buffer.from(applyOperations(JSON.parse(last.payload.toString('utf8')), operations), 'utf8');
  if (patched.length > payloadBytesMax) throw new IorioError('too-large', `the patched entry would exceed ${payloadBytesMax} bytes`);
  const [metas] = await store.appendAtomic([
    { bucket, stream, payloads: [patched], expectSeq: last.seq },
    { bucket, stream: patchStream, payloads: [body.text] },
  ]);
  context.counters.patches += 1;
  return reply.code(200).type('application/json; charset=utf-8').send(`{"meta":${metaJson(metas![0]!)}}`);
}

/** The body as RFC 6902 operations; 400 when it is not a valid patch. */
function patchOperations(value: unknown): Operation[] {
  if (!Array.isArray(value)) throw new IorioError('invalid-body', 'a JSON Patch is an array of operations');
  if (value.some((operation) => operation === null || typeof operation !== 'object' || Array.isArray(operation))) {
    throw new IorioError('invalid-body', 'every JSON Patch operation is an object');
  }
  const operations = value as Operation[];
  if (operations.some((operation) => (operation.op as string) === '_get')) {
    throw new IorioError('invalid-body', 'unknown JSON Patch operation _get');
  }
  const problem = jsonpatch.validate(operations);
  if (problem !== undefined) throw new IorioError('invalid-body', `invalid JSON Patch: ${describePatchError(problem)}`);
  return operations;
}

/** Applies the patch to a fresh copy of the document; its JSON text, or 400 when it does not apply. */
function applyOperations(document: unknown, operations: Operation[]): string {
  let result: unknown;
  try {
    result = jsonpatch.applyPatch(document, operations, true, true, true).newDocument;
  } catch (error) {
    throw new IorioError('invalid-body', `the patch does not apply to the last entry: ${describePatchError(error)}`);
  }
  const text = JSON.stringify(result);
  if (text === undefined) throw new IorioError('invalid-body', 'the patch leaves no JSON value');
  return text;
}

/** fast-json-patch's messages embed the whole document; keep only its name and operation index. */
function describePatchError(error: unknown): string {
  if (error instanceof jsonpatch.JsonPatchError) {
    const index = error.index === undefined ? '' : ` (operation ${error.index})`;
    return `${error.name}${index}`;
  }
  return error instanceof Error ? error.message.split('\n')[0]! : String(error);
}
