import { isUtf8 } from 'node:buffer';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { IorioError } from '../core/errors.js';
import { batchCountMax, jsonDepthMax, payloadBytesMax } from '../core/limits.js';
import { jsonTextTooDeep } from './json-depth.js';

/**
 * Request bodies. Iorio keeps every entry as JSON text, so a body is parsed
 * once to validate it and its bytes are kept: the append path stores them
 * as they came (trimmed) instead of re-serialising the parsed value.
 *
 * | content type                 | body                  |
 * |------------------------------|-----------------------|
 * | application/json             | JsonBody, kind 'json' |
 * | application/json-patch+json  | JsonBody, kind 'json-patch' |
 * | application/x-ndjson         | NdjsonBody: one JSON value per non-empty line |
 *
 * Anything else is refused before a handler runs (415, as IorioDB), so
 * nothing can be written from a body that is not JSON. So is JSON nested
 * deeper than jsonDepthMax, checked on the bytes before JSON.parse: every
 * later step (PATCH, listeners, clients) may then recurse safely.
 */
interface JsonTextBody<K extends string> {
  readonly kind: K;
  readonly value: unknown;
  /** The JSON text to store: one line, valid UTF-8, no surrounding whitespace. */
  readonly text: Buffer;
}
export type JsonBody = JsonTextBody<'json'> | JsonTextBody<'json-patch'>;

export interface NdjsonBody {
  readonly kind: 'ndjson';
  /** One JSON text per non-empty line, in order. */
  readonly texts: Buffer[];
}

export type RequestBody = JsonBody | NdjsonBody;

const jsonTypes = ['application/json', 'application/json-patch+json'] as const;
const ndjsonType = 'application/x-ndjson';

export function registerBodyParsers(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  for (const type of jsonTypes) {
    const kind = type === 'application/json' ? 'json' : 'json-patch';
    app.addContentTypeParser(type, { parseAs: 'buffer' }, (_request: FastifyRequest, raw: Buffer, done) => {
      try {
        done(null, parseJsonBody(kind, raw));
      } catch (error) {
        done(error as Error, undefined);
      }
    });
  }
  app.addContentTypeParser(ndjsonType, { parseAs: 'buffer' }, (_request: FastifyRequest, raw: Buffer, done) => {
    try {
      done(null, parseNdjsonBody(raw));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
}

/**
 * Parses and validates one JSON body; throws 400 invalid-body. An empty body
 * is no body (a DELETE sent with a JSON content type); routes that need one
 * say so. Pure.
 */
export function parseJsonBody(kind: JsonBody['kind'], raw: Buffer): JsonBody | undefined {
  const parsed = parseJsonText(raw);
  if (parsed === undefined) return undefined;
  if ('tooDeep' in parsed) throw new IorioError('invalid-body', `the body is nested deeper than ${jsonDepthMax} levels`);
  if ('problem' in parsed) throw new IorioError('invalid-body', `the body is not valid JSON: ${parsed.problem}`);
  checkPayloadSize(parsed.text);
  return { kind, value: parsed.value, text: parsed.text } as JsonBody;
}

/** Parses an NDJSON batch: all lines valid or nothing (400 naming the first bad line). Pure. */
export function parseNdjsonBody(raw: Buffer): NdjsonBody | undefined {
  const texts: Buffer[] = [];
  let start = 0;
  let lineNumber = 0;
  while (start < raw.length) {
    const newline = raw.indexOf(0x0a, start);
    const end = newline === -1 ? raw.length : newline;
    lineNumber += 1;
    const parsed = parseJsonText(raw.subarray(start, end));
    start = end + 1;
    if (parsed === undefined) continue;
    if ('tooDeep' in parsed) {
      throw new IorioError('invalid-body', `line ${lineNumber} is nested deeper than ${jsonDepthMax} levels`, { line: lineNumber });
    }
    if ('problem' in parsed) {
      throw new IorioError('invalid-body', `line ${lineNumber} is not valid JSON: ${parsed.problem}`, { line: lineNumber });
    }
    checkPayloadSize(parsed.text);
    if (texts.length === batchCountMax) {
      throw new IorioError('too-large', `a batch holds at most ${batchCountMax} entries`);
    }
    texts.push(parsed.text);
  }
  return texts.length === 0 ? undefined : { kind: 'ndjson', texts };
}

type ParsedText = { value: unknown; text: Buffer } | { problem: string } | { tooDeep: true };

/** undefined for a blank text; the stored form of a JSON text, or why it is not one. */
function parseJsonText(raw: Buffer): ParsedText | undefined {
  const trimmed = trimWhitespace(raw);
  if (trimmed.length === 0) return undefined;
  if (jsonTextTooDeep(trimmed, jsonDepthMax)) return { tooDeep: true };
  if (!isUtf8(trimmed)) return { problem: 'it is not valid UTF-8' };
  let value: unknown;
  try {
    value = JSON.parse(trimmed.toString('utf8'));
  } catch (error) {
    return { problem: (error as Error).message };
  }
  // A pretty-printed body would break line-based consumers (SSE data lines,
  // NDJSON exports): keep it on one line, without re-serialising the value
  // (JSON.stringify would round 12345678901234567890 and turn 22.0 into 22).
  const isOneLine = trimmed.indexOf(0x0a) === -1 && trimmed.indexOf(0x0d) === -1;
  return { value, text: isOneLine ? trimmed : compactJsonText(trimmed) };
}

/**
 * The JSON text without the whitespace between its tokens; strings, numbers
 * and literals are copied byte for byte. Only for text that parsed: a raw
 * line break cannot occur inside a JSON string, so the result is one line. Pure.
 */
export function compactJsonText(text: Buffer): Buffer {
  const out = Buffer.allocUnsafe(text.length);
  let length = 0;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const byte = text[index]!;
    if (inString) {
      out[length++] = byte;
      if (byte === 0x5c) out[length++] = text[++index]!; // a backslash escapes the next byte
      else if (byte === 0x22) inString = false;
    } else if (!isJsonWhitespace(byte)) {
      out[length++] = byte;
      if (byte === 0x22) inString = true;
    }
  }
  return out.subarray(0, length);
}

function isJsonWhitespace(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}

function trimWhitespace(raw: Buffer): Buffer {
  let start = 0;
  let end = raw.length;
  while (start < end && isJsonWhitespace(raw[start])) start += 1;
  while (end > start && isJsonWhitespace(raw[end - 1])) end -= 1;
  return start === 0 && end === raw.length ? raw : raw.subarray(start, end);
}

function checkPayloadSize(text: Buffer): void {
  if (text.length > payloadBytesMax) {
    throw new IorioError('too-large', `an entry holds at most ${payloadBytesMax} bytes`);
  }
}

/** The body of a request, checked to be of one of the accepted kinds. */
export function bodyOf<K extends RequestBody['kind']>(
  request: FastifyRequest,
  kinds: readonly K[],
): Extract<RequestBody, { kind: K }> {
  const body = request.body as RequestBody | undefined;
  if (body === undefined || body === null) {
    throw new IorioError('invalid-body', 'the body is empty; a JSON body is required (content-type: application/json)');
  }
  if (!(kinds as readonly string[]).includes(body.kind)) {
    // As IorioDB's content_types_accepted: another type is 415 (e.g. iorio_rest_stream.erl:122-128).
    throw new IorioError('unsupported-media-type', `this route does not take a ${body.kind} body`);
  }
  return body as Extract<RequestBody, { kind: K }>;
}

/** A JSON object body (sessions, users, access, policies); throws 400 otherwise. */
export function objectBodyOf(request: FastifyRequest): Record<string, unknown> {
  const { value } = bodyOf(request, ['json']);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new IorioError('invalid-body', 'the body must be a JSON object');
  }
  return value as Record<string, unknown>;
}
