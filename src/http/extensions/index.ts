import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { IorioError, StartupError, isIorioError } from '../../core/errors.js';
import { checkName } from '../../core/names.js';
import type { RouteContext } from '../context.js';
import { jsonContentType } from '../errors.js';
import { echo } from './echo.js';
import type { ExtensionAnswer, ExtensionFactory, ExtensionHandler, ExtensionRequest, ExtensionStreams } from './types.js';

export type { ExtensionAnswer, ExtensionFactory, ExtensionHandler, ExtensionRequest } from './types.js';

/** Extensions every node has, by name (IorioDB ships ioriox_echo). */
export const builtInExtensions: Readonly<Record<string, ExtensionFactory>> = { echo };

const routeMethods = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
const methodsWithBody: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH']);

/**
 * Builds every extension (built-ins, and those of `extension.module.<name>`)
 * with its `extension.config.<name>` JSON, then serves them at
 * `/x/<name>/...` (iorio_app.erl:169-171, iorio_rest_custom.erl). A config
 * file or module that cannot be loaded stops the start, naming it.
 */
export async function registerExtensions(app: FastifyInstance, context: RouteContext): Promise<void> {
  const handlers = await buildExtensions(context);
  const handle = (request: FastifyRequest, reply: FastifyReply) => serveExtension(context, handlers, request, reply);
  for (const url of ['/x/:handler', '/x/:handler/*']) {
    app.route({ method: [...routeMethods], url, handler: handle, errorHandler: extensionErrorHandler, exposeHeadRoute: false });
  }
}

async function buildExtensions(context: RouteContext): Promise<Map<string, ExtensionHandler>> {
  const { config, logger } = context.deps;
  const configs = config['extension.config'];
  const modules = config['extension.module'];
  const names = new Set([...Object.keys(builtInExtensions), ...Object.keys(modules)]);
  const handlers = new Map<string, ExtensionHandler>();
  for (const name of names) {
    const factory = modules[name] === undefined ? builtInExtensions[name]! : await loadModule(name, modules[name]!);
    const extensionConfig = configs[name] === undefined ? undefined : await loadConfigFile(name, configs[name]!);
    const extensionLogger = logger.child({ component: 'extension', extension: name });
    handlers.set(name, await factory({ config: extensionConfig, logger: extensionLogger }));
    extensionLogger.info({ module: modules[name] ?? 'built-in', config: configs[name] }, 'extension ready');
  }
  for (const name of Object.keys(configs)) {
    if (!names.has(name)) logger.warn({ extension: name }, `extension.config.${name} is set but there is no extension ${name}`);
  }
  return handlers;
}

async function loadModule(name: string, path: string): Promise<ExtensionFactory> {
  let loaded: { default?: unknown };
  try {
    loaded = (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (error) {
    throw new StartupError(`cannot load extension.module.${name} = ${path}: ${(error as Error).message}`);
  }
  if (typeof loaded.default !== 'function') {
    throw new StartupError(`extension.module.${name} = ${path} has no default export function (an ExtensionFactory)`);
  }
  return loaded.default as ExtensionFactory;
}

async function loadConfigFile(name: string, path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch (error) {
    throw new StartupError(`cannot load extension.config.${name} = ${path}: ${(error as Error).message}`);
  }
}

async function serveExtension(context: RouteContext, handlers: ReadonlyMap<string, ExtensionHandler>, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const params = request.params as Record<string, string | undefined>;
  const name = params['handler'] ?? '';
  const handler = handlers.get(name);
  // IorioDB: an unknown handler knows no methods, so cowboy_rest answers 501 (iorio_rest_custom.erl:69-81).
  if (handler === undefined) throw new IorioError('not-found', `no extension ${name.slice(0, 128)}`, undefined, 501);
  if (!handler.methods.includes(request.method)) {
    reply.header('allow', handler.methods.join(', '));
    throw new IorioError('invalid-param', `extension ${name} does not take ${request.method}`, undefined, 405);
  }
  const body = (request.body as { value?: unknown } | undefined)?.value;
  // IorioDB decodes the body of every request that sends one (iorio_rest_custom.erl:106-114).
  if (methodsWithBody.has(request.method) && body === undefined) throw invalidJson();
  const extensionRequest: ExtensionRequest = {
    method: request.method,
    path: (params['*'] ?? '').split('/').filter((segment) => segment !== ''),
    query: lastValues(request.query),
    body,
    headers: request.headers,
    username: request.username,
    streams: callerStreams(context, request.username),
  };
  if (handler.isAuthorized !== undefined && !handler.isAuthorized(extensionRequest)) {
    throw new IorioError('no-perm', `${request.username} may not call extension ${name}`);
  }
  return sendAnswer(reply, await handler.handle(extensionRequest));
}

function sendAnswer(reply: FastifyReply, answer: ExtensionAnswer): FastifyReply {
  if ('error' in answer) return reply.code(400).type(jsonContentType).send(JSON.stringify({ type: 'error', reason: answer.error }));
  if ('raw' in answer) return reply.code(200).type(answer.contentType).send(answer.raw);
  return reply.code(200).type(jsonContentType).send(JSON.stringify(answer.json ?? null));
}

/** IorioDB's answer to a body that is not JSON: 400 `{"type":"error","reason":"invalid-json"}` (iorio_rest_custom.erl:114, 150-153). */
function invalidJson(): IorioError {
  return new IorioError('invalid-body', 'invalid-json', undefined);
}

function extensionErrorHandler(error: unknown, _request: FastifyRequest, reply: FastifyReply): FastifyReply | void {
  if (isIorioError(error) && error.code === 'invalid-body') {
    return reply.code(400).type(jsonContentType).send(JSON.stringify({ type: 'error', reason: 'invalid-json' }));
  }
  throw error;
}

function lastValues(query: unknown): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    const last = Array.isArray(value) ? value[value.length - 1] : value;
    values[key] = String(last ?? '');
  }
  return values;
}

/** The node's streams as the caller: every call checked against its grants. */
function callerStreams(context: RouteContext, username: string): ExtensionStreams {
  const { auth, store } = context.deps;
  return {
    async append(bucket, stream, value) {
      auth.check(username, 'put', checkName('bucket', bucket), checkName('stream', stream));
      const text = JSON.stringify(value);
      if (text === undefined) throw new IorioError('invalid-body', 'an entry is a JSON value');
      const [meta] = await store.append({ bucket, stream, payloads: [Buffer.from(text, 'utf8')] });
      return { id: meta!.id, t: meta!.t };
    },
    async read(bucket, stream, options) {
      auth.check(username, 'get', checkName('bucket', bucket), checkName('stream', stream));
      const result = await store.read(bucket, stream, options.from === undefined ? { limit: options.limit } : { limit: options.limit, from: options.from });
      return result.entries.map((entry) => ({ meta: { id: entry.seq, t: entry.t }, data: JSON.parse(entry.payload.toString('utf8')) as unknown }));
    },
  };
}
