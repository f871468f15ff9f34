import { IorioError } from '../core/errors.js';
import { checkName } from '../core/names.js';
import { idempotencyKeyBytesMax, readLimitMax, seqnumMax } from '../core/limits.js';

/**
 * Query parameters and headers, parsed strictly: a value that is given must
 * be a plain decimal integer in range (400 invalid-param otherwise). Pure.
 */

const decimalPattern = /^[0-9]+$/;

/** One value of a query parameter or header; undefined when absent or empty; 400 when repeated. */
export function singleValue(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) throw new IorioError('invalid-param', `${name} is given more than once`);
  if (typeof value !== 'string') throw new IorioError('invalid-param', `${name} must be a string`);
  return value === '' ? undefined : value;
}

/** A non-negative integer no larger than `max`, or undefined when absent. */
export function integerParam(name: string, value: unknown, max: number): number | undefined {
  const text = singleValue(name, value);
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (!decimalPattern.test(trimmed)) throw new IorioError('invalid-param', `${name} must be a non-negative integer, got "${clip(text)}"`);
  const number = Number(trimmed);
  if (!Number.isSafeInteger(number) || number > max) {
    throw new IorioError('invalid-param', `${name} must be at most ${max}, got "${clip(text)}"`);
  }
  return number;
}

export interface ReadParams {
  readonly limit: number;
  readonly from?: number;
}

/**
 * `limit` (default 1, clamped to readLimitMax; 0 gives nothing) and `from`
 * (a seqnum; absent: the last `limit` entries).
 */
export function readParams(query: Record<string, unknown>): ReadParams {
  const limit = integerParam('limit', query['limit'], seqnumMax) ?? 1;
  const from = integerParam('from', query['from'], seqnumMax);
  return from === undefined ? { limit: Math.min(limit, readLimitMax) } : { limit: Math.min(limit, readLimitMax), from };
}

/**
 * A header that is sent must hold a value. Unlike a query parameter (clients
 * send `from=` for "none"), an empty `x-iorio-expect-seqnum` is a client
 * whose variable was unset: treating it as absent would turn a conditional
 * append into an unconditional one.
 */
function requiredHeaderValue(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const text = singleValue(name, value);
  if (text === undefined || text.trim() === '') throw new IorioError('invalid-param', `${name} is empty; leave the header out or give it a value`);
  return text;
}

export function expectSeqHeader(value: unknown): number | undefined {
  const text = requiredHeaderValue('x-iorio-expect-seqnum', value);
  return text === undefined ? undefined : integerParam('x-iorio-expect-seqnum', text, seqnumMax);
}

export function idempotencyKeyHeader(value: unknown): string | undefined {
  const key = requiredHeaderValue('idempotency-key', value);
  if (key === undefined) return undefined;
  if (Buffer.byteLength(key, 'utf8') > idempotencyKeyBytesMax) {
    throw new IorioError('invalid-param', `idempotency-key must be at most ${idempotencyKeyBytesMax} bytes`);
  }
  return key;
}

/** `download=<file>` made safe for a Content-Disposition header. */
export function downloadFilename(value: unknown): string | undefined {
  const requested = singleValue('download', value);
  if (requested === undefined) return undefined;
  const safe = requested
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^\.+/, '')
    .slice(0, 128);
  return safe === '' ? 'stream.json' : safe;
}

export interface StreamParams {
  readonly bucket: string;
  readonly stream: string;
}

export function bucketParam(params: unknown): string {
  return checkName('bucket', (params as Record<string, unknown>)['bucket']);
}

export function streamParams(params: unknown): StreamParams {
  return { bucket: bucketParam(params), stream: checkName('stream', (params as Record<string, unknown>)['stream']) };
}

/** Stream is optional (routes `/x/:bucket` and `/x/:bucket/:stream`). */
export function resourceParams(params: unknown): { bucket: string; stream: string | undefined } {
  const stream = (params as Record<string, unknown>)['stream'];
  return { bucket: bucketParam(params), stream: stream === undefined ? undefined : checkName('stream', stream) };
}

function clip(text: string): string {
  return text.length > 32 ? `${text.slice(0, 32)}...` : text;
}
