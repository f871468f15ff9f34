import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { IorioError, errorCatalogue, isIorioError, type ErrorCode } from '../core/errors.js';
import { nameBytesMax } from '../core/limits.js';
import type { ConnectionCounters } from './connection-limits.js';

/**
 * The one place where errors become responses: `{type, reason, ...details}`
 * with the status of the error catalogue. IorioErrors carry their own code;
 * fastify's own errors (body parsing, limits, bad URLs) are translated;
 * anything else is a bug: 500 internal-error, logged with its stack.
 */

/** fastify error codes a client can cause, and what Iorio calls them. */
const fastifyErrorCodes: Readonly<Record<string, ErrorCode>> = {
  // IorioDB answers a body of another content type with 415 (cowboy_rest's content_types_accepted).
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported-media-type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'too-large',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid-body',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid-body',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid-body',
  FST_ERR_BAD_URL: 'invalid-param',
  FST_ERR_INVALID_URL: 'invalid-param',
  // Every route parameter is a bucket, stream or user name.
  FST_ERR_MAX_PARAM_LENGTH: 'invalid-name',
};

const reasons: Readonly<Partial<Record<string, string>>> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE:
    'unsupported content type: send application/json (application/x-ndjson for a batch, application/json-patch+json for PATCH)',
  FST_ERR_BAD_URL: 'the URL is malformed',
  FST_ERR_INVALID_URL: 'the URL is malformed',
  FST_ERR_MAX_PARAM_LENGTH: `a name in the URL is too long: a name must be at most ${nameBytesMax} bytes`,
};

/** Which catalogue code a 4xx status with no code of ours maps to. */
const codeOfStatus: Readonly<Record<number, ErrorCode>> = {
  400: 'invalid-param',
  401: 'unauthorized',
  403: 'no-perm',
  415: 'unsupported-media-type',
  404: 'not-found',
  409: 'conflict',
  413: 'too-large',
  429: 'rate-limited',
  503: 'unavailable',
};

/**
 * System errors that mean the node is short of a resource for now, not that
 * the request or the code is wrong: the client should retry (503).
 */
const exhaustionErrnoCodes: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE']);

/** The IorioError a thrown value stands for; undefined for a bug. Pure. */
export function toIorioError(error: unknown): IorioError | undefined {
  if (isIorioError(error)) return error;
  const fastifyError = error as Partial<FastifyError> | null;
  if (fastifyError === null || typeof fastifyError !== 'object') return undefined;
  if (typeof fastifyError.code === 'string' && exhaustionErrnoCodes.has(fastifyError.code)) {
    return new IorioError('unavailable', 'the node is out of file descriptors: retry later');
  }
  const code = fastifyError.code === undefined ? undefined : fastifyErrorCodes[fastifyError.code];
  if (code !== undefined) {
    return new IorioError(code, reasons[fastifyError.code ?? ''] ?? lowerFirst(fastifyError.message ?? errorCatalogue[code].message));
  }
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new IorioError(codeOfStatus[status] ?? 'invalid-param', lowerFirst(fastifyError.message ?? 'bad request'));
  }
  return undefined;
}

/** IorioDB's JSON content type, byte for byte (iorio_http.erl:23): its clients compare it. */
export const jsonContentType = 'application/json';

export function sendError(reply: FastifyReply, error: IorioError): FastifyReply {
  // A refusal that knows when to come back says so in the standard header too (clients and proxies read it).
  const retryAfterSecs = error.details?.['retry_after_secs'];
  if (typeof retryAfterSecs === 'number') reply.header('retry-after', String(retryAfterSecs));
  // IorioDB's 401s name the scheme (cowboy_rest's {false, <<"jwt">>}, e.g. iorio_rest_stream.erl:302).
  if (error.status === 401) reply.header('www-authenticate', 'jwt');
  return reply.code(error.status).type(jsonContentType).send(error.toBody());
}

/**
 * An onSend hook: fastify labels the JSON it serialises `application/json;
 * charset=utf-8`; IorioDB's clients compare the type with `application/json`.
 */
export function plainJsonContentType(_request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: null, payload: unknown) => void): void {
  const type = reply.getHeader('content-type');
  if (typeof type === 'string' && type.startsWith('application/json;')) reply.header('content-type', jsonContentType);
  done(null, payload);
}

export function registerErrorHandling(app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const known = toIorioError(error);
    if (known !== undefined) {
      // Retriable refusals (a full disk, a node stopping) are reported once where they start, not per request.
      if (known.status >= 500) {
        const fields = { type: known.code, reason: known.message, method: request.method, url: request.routeOptions.url };
        if (known.retriable) logger.debug(fields, 'request refused');
        else logger.warn({ ...fields, err: error }, 'request failed');
      }
      return sendError(reply, known);
    }
    logger.error({ err: error, method: request.method, url: request.routeOptions.url }, 'internal error');
    return sendError(reply, new IorioError('internal-error'));
  });
  app.setNotFoundHandler((request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0] ?? '';
    return sendError(reply, new IorioError('not-found', `no route for ${request.method} ${clip(path)}`));
  });
}

/**
 * fastify's `clientErrorHandler`: a request node's HTTP parser refused
 * (headers over the size limit, malformed HTTP, a request that did not
 * arrive in time) gets a `{type, reason}` body too, then the connection is
 * closed, as node itself does. `connections` counts those closed by the
 * idle timeout (http.idle_timeout).
 */
export function createClientErrorHandler(
  logger: Logger,
  connections?: Pick<ConnectionCounters, 'timedOut'>,
): (error: NodeJS.ErrnoException, socket: Duplex) => void {
  return (error, socket) => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      if (connections !== undefined) connections.timedOut += 1;
      // A connection that never sent a byte made no request to answer (a
      // browser's preconnect, or a socket held open to use up the node's):
      // it is closed without one.
      if ((socket as Duplex & { bytesRead?: number }).bytesRead === 0) {
        socket.destroy();
        return;
      }
    }
    const refusal = clientErrorOf(error.code);
    logger.debug({ err: error, type: refusal.code }, 'malformed request refused');
    if (socket.writable) {
      const body = JSON.stringify(refusal.toBody());
      socket.write(
        `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? ''}\r\n` +
          `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy(error);
  };
}

/** The IorioError for a request node's HTTP parser refused, by node's error code. Pure. */
export function clientErrorOf(code: string | undefined): IorioError {
  if (code === 'HPE_HEADER_OVERFLOW') return new IorioError('too-large', 'the request headers are too large');
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return new IorioError('invalid-body', 'the request did not arrive in time');
  return new IorioError('invalid-param', 'the request is not valid HTTP');
}

/** fastify's `frameworkErrors` option: errors raised before routing (malformed URLs). */
export function frameworkErrorHandler(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  sendError(reply, toIorioError(error) ?? new IorioError('invalid-param', 'the request is malformed'));
}

function lowerFirst(text: string): string {
  return text.length === 0 ? text : text[0]!.toLowerCase() + text.slice(1);
}

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}
