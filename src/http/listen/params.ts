import { IorioError } from '../../core/errors.js';
import { listenStreamsMax, listenTimeoutMsMax, seqnumMax } from '../../core/limits.js';
import { nameProblem } from '../../core/names.js';

/** One `s=bucket:stream[:from]` of a listen request. */
export interface StreamSpec {
  readonly bucket: string;
  readonly stream: string;
  /** First seqnum wanted; undefined: from "now". */
  readonly from: number | undefined;
}

/**
 * Why a `from` seqnum is not valid, or undefined. Accepts a JSON number or a
 * decimal string; 0 is allowed and means the same as 1 (every entry with
 * seqnum >= 0), as GET's from=0 does.
 */
export function seqnumProblem(value: unknown): string | undefined {
  const number = typeof value === 'string' && /^[0-9]{1,16}$/.test(value) ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number)) return 'a seqnum must be an integer';
  if (number < 0 || number > seqnumMax) return `a seqnum must be between 0 and ${seqnumMax}`;
  return undefined;
}

/** A `from` that passed seqnumProblem(), as the first seqnum to deliver. */
export function toSeqnum(value: unknown): number {
  return Math.max(1, typeof value === 'string' ? Number(value) : (value as number));
}

/** Parses one `bucket:stream[:from]`; throws invalid-param / invalid-name. */
export function parseStreamSpec(text: string): StreamSpec {
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3) {
    throw new IorioError('invalid-param', `s must be bucket:stream or bucket:stream:from, got ${JSON.stringify(text.slice(0, 300))}`);
  }
  const [bucket, stream, from] = parts as [string, string, string | undefined];
  const bucketProblem = nameProblem(bucket);
  if (bucketProblem !== undefined) throw new IorioError('invalid-name', `invalid bucket name in s: ${bucketProblem}`);
  const streamProblem = nameProblem(stream);
  if (streamProblem !== undefined) throw new IorioError('invalid-name', `invalid stream name in s: ${streamProblem}`);
  if (from === undefined) return { bucket, stream, from: undefined };
  const fromProblem = seqnumProblem(from);
  if (fromProblem !== undefined) throw new IorioError('invalid-param', `invalid from in s=${bucket}:${stream}:...: ${fromProblem}`);
  return { bucket, stream, from: toSeqnum(from) };
}

/** Parses every `s` query value (fastify gives a string, or an array when the key repeats). */
export function parseStreamSpecs(raw: unknown): StreamSpec[] {
  if (raw === undefined) return [];
  const texts = Array.isArray(raw) ? raw : [raw];
  if (texts.length > listenStreamsMax) {
    throw new IorioError('invalid-param', `at most ${listenStreamsMax} streams per listen request, got ${texts.length}`);
  }
  const specs: StreamSpec[] = [];
  const seen = new Set<string>();
  for (const text of texts) {
    if (typeof text !== 'string') throw new IorioError('invalid-param', 's must be bucket:stream or bucket:stream:from');
    const spec = parseStreamSpec(text);
    const key = spec.bucket + ':' + spec.stream;
    if (seen.has(key)) throw new IorioError('invalid-param', `stream ${key} is listed twice in s`);
    seen.add(key);
    specs.push(spec);
  }
  return specs;
}

/**
 * The streams named in `s` with their `from` moved past a Last-Event-ID
 * (an EventSource resuming, see SseListener): a bare seqnum N resumes a
 * one-stream listen at N + 1; `bucket:stream:N,...` resumes each stream it
 * names at N + 1. An id that does not parse is ignored (the listen starts
 * as `s` says). Pure.
 */
export function resumeAfterLastEventId(specs: readonly StreamSpec[], lastEventId: unknown): StreamSpec[] {
  if (typeof lastEventId !== 'string' || lastEventId === '') return [...specs];
  if (/^[0-9]{1,16}$/.test(lastEventId)) {
    const seq = Number(lastEventId);
    return specs.length === 1 && seq <= seqnumMax ? [{ ...specs[0]!, from: seq + 1 }] : [...specs];
  }
  const positions = new Map<string, number>();
  for (const part of lastEventId.split(',')) {
    const match = /^([^:]+):([^:]+):([0-9]{1,16})$/.exec(part);
    if (match === null) return [...specs];
    positions.set(match[1] + ':' + match[2], Number(match[3]));
  }
  return specs.map((spec) => {
    const seq = positions.get(spec.bucket + ':' + spec.stream);
    return seq === undefined || seq > seqnumMax ? spec : { ...spec, from: seq + 1 };
  });
}

/**
 * The long-poll timeout: `timeout=<secs>` (fractions allowed) or the
 * configured default. Above listenTimeoutMsMax it is 400 invalid-param
 * naming the bound, never silently shortened: a client that asked for more
 * would take an early 204 for an idle stream. Pure.
 */
export function parseTimeoutMs(raw: unknown, defaultMs: number): number {
  if (raw === undefined) return Math.min(defaultMs, listenTimeoutMsMax);
  const text = Array.isArray(raw) ? raw[raw.length - 1] : raw;
  if (typeof text !== 'string' || !/^[0-9]{1,9}(\.[0-9]{1,6})?$/.test(text)) {
    throw new IorioError('invalid-param', 'timeout must be a number of seconds, e.g. timeout=30');
  }
  const timeoutMs = Math.round(Number(text) * 1000);
  if (timeoutMs > listenTimeoutMsMax) {
    throw new IorioError('invalid-param', `timeout is at most ${listenTimeoutMsMax / 1000} seconds, got ${text}`, { max: listenTimeoutMsMax / 1000 });
  }
  return timeoutMs;
}
