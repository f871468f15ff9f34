import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../core/clock.js';
import { IorioError } from '../core/errors.js';
import { idempotencyKeysMax, idempotencyWindowMs } from '../core/limits.js';
import { compactJsonText } from './body.js';

/** What one key was first used for, and that first attempt. */
interface Remembered<T> {
  readonly digest: string;
  readonly attempt: Promise<T>;
}

/**
 * Retried appends carrying the same `idempotency-key` (per user, bucket and
 * stream) within `idempotencyWindowMs` get the first write's answer instead
 * of writing again. The pending promise is remembered, not only the result,
 * so a retry that races the first attempt waits for it rather than writing
 * twice. A failed attempt is forgotten so that it can be retried. A key is
 * remembered with a digest of its request: the same key with another body
 * is a client bug (two writes under one key), answered 409 conflict rather
 * than with the first write's meta, which would silently drop the second.
 * Bounded: at most `idempotencyKeysMax` keys, least recently used dropped first.
 */
export class IdempotencyWindow<T extends object> {
  private readonly cache: LRUCache<string, Remembered<T>>;

  constructor(clock: Clock) {
    this.cache = new LRUCache<string, Remembered<T>>({
      max: idempotencyKeysMax,
      ttl: idempotencyWindowMs,
      ttlAutopurge: false,
      // lru-cache otherwise caches `now` for 1 ms with a timer per lookup; the injected clock is cheap to ask.
      ttlResolution: 0,
      perf: { now: () => clock.monotonic() },
    });
  }

  /**
   * Runs `write` once per key within the window; `replayed` tells whether
   * the answer came from an earlier attempt. `digest` identifies the
   * request (requestDigest): a key seen with another digest is 409 conflict.
   */
  async run(scope: readonly string[], key: string, digest: string, write: () => Promise<T>): Promise<{ result: T; replayed: boolean }> {
    const cacheKey = JSON.stringify([...scope, key]);
    const earlier = this.cache.get(cacheKey);
    if (earlier !== undefined) {
      if (earlier.digest !== digest) {
        throw new IorioError('conflict', `idempotency key ${JSON.stringify(key)} was used with a different body`, { key });
      }
      return { result: await earlier.attempt, replayed: true };
    }
    const remembered: Remembered<T> = { digest, attempt: write() };
    this.cache.set(cacheKey, remembered);
    try {
      return { result: await remembered.attempt, replayed: false };
    } catch (error) {
      if (this.cache.get(cacheKey) === remembered) this.cache.delete(cacheKey);
      throw error;
    }
  }
}

/**
 * SHA-256 over what makes two appends the same request: the body's kind,
 * the condition (`x-iorio-expect-seqnum`) and the JSON texts without the
 * whitespace between tokens (a retry that re-serialises the same value with
 * other spacing is still the same request). Bucket, stream and user are in
 * the key's scope. Pure.
 */
export function requestDigest(kind: string, expectSeq: number | undefined, texts: readonly Buffer[]): string {
  const hash = createHash('sha256');
  hash.update(`${kind}\n${expectSeq ?? ''}\n${texts.length}\n`);
  // A compact JSON text is one line, so the texts cannot run into each other.
  for (const text of texts) hash.update(compactJsonText(text)).update('\n');
  return hash.digest('base64');
}
