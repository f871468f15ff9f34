import { IorioError } from './errors.js';
import { nameBytesMax } from './limits.js';

const namePattern = /^[A-Za-z0-9_.$-]+$/;

/** Why a name is not valid, or undefined when it is. */
export function nameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'a name must be a string';
  if (name.length === 0) return 'a name must not be empty';
  if (Buffer.byteLength(name, 'utf8') > nameBytesMax) return `a name must be at most ${nameBytesMax} bytes`;
  if (name === '.' || name === '..') return 'a name must not be . or ..';
  if (!namePattern.test(name)) return 'a name may only hold A-Z a-z 0-9 _ . $ -';
  return undefined;
}

export function isValidName(name: unknown): name is string {
  return nameProblem(name) === undefined;
}

export function checkName(kind: 'bucket' | 'stream' | 'user' | 'group', name: unknown): string {
  const problem = nameProblem(name);
  if (problem !== undefined) throw new IorioError('invalid-name', `invalid ${kind} name: ${problem}`);
  return name as string;
}

/** The suffix of a stream that logs the JSON patches applied to `<stream>`. */
export const patchStreamSuffix = '-$patch';

/** `<x>-$patch` hashes as `<x>` so a stream and its patch log share a partition. */
export function hashStreamName(stream: string): string {
  return stream.endsWith(patchStreamSuffix) ? stream.slice(0, -patchStreamSuffix.length) : stream;
}

/**
 * Encodes a validated name as one safe path segment: every byte outside
 * [A-Za-z0-9_-] becomes %XX, so `.`, `..`, `/` and NUL can never reach the
 * file system, whatever the validator lets through.
 */
export function encodePathSegment(name: string): string {
  const bytes = Buffer.from(name, 'utf8');
  let out = '';
  for (const byte of bytes) {
    const isSafe =
      (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || byte === 0x5f || byte === 0x2d;
    out += isSafe ? String.fromCharCode(byte) : '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}
