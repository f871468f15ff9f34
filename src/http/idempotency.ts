import { LRUCache } from 'lru-cache';
import type { Clock } from '../core/clock.js';
import { idempotencyKeysMax, idempotencyWindowMs } from '../core/limits.js';

/**
 * Retried appends carrying the same `idempotency-key` (per user, bucket and
 * stream) within `idempotencyWindowMs` get the first write's answer instead
 * of writing again. The pending promise is remembered, not only the result,
 * so a retry that races the first attempt waits for it rather than writing
 * twice. A failed attempt is forgotten so that it can be retried. Bounded:
 * at most `idempotencyKeysMax` keys, least recently used dropped first.
 */
export class IdempotencyWindow<T extends object> {
  private readonly cache: LRUCache<string, Promise<T>>;

  constructor(clock: Clock) {
    this.cache = new LRUCache<string, Promise<T>>({
      max: idempotencyKeysMax,
      ttl: idempotencyWindowMs,
      ttlAutopurge: false,
      perf: { now: () => clock.monotonic() },
    });
  }

  /** Runs `write` once per key within the window; `replayed` tells whether the answer came from an earlier attempt. */
  async run(scope: readonly string[], key: string, write: () => Promise<T>): Promise<{ result: T; replayed: boolean }> {
    const cacheKey = JSON.stringify([...scope, key]);
    const earlier = this.cache.get(cacheKey);
    if (earlier !== undefined) return { result: await earlier, replayed: true };
    const attempt = write();
    this.cache.set(cacheKey, attempt);
    try {
      return { result: await attempt, replayed: false };
    } catch (error) {
      if (this.cache.get(cacheKey) === attempt) this.cache.delete(cacheKey);
      throw error;
    }
  }
}
