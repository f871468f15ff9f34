/**
 * Eviction decisions, pure. Iorio never rewrites a chunk: it deletes whole
 * oldest chunks, and never the stream's active (last) chunk, so the newest
 * entries always stay. The semantics are Kafka's retention ones: each limit
 * is a cap, and a chunk goes as soon as any one of them lets it go, never
 * further than that limit allows:
 *
 * - max_count: a chunk goes if at least `max_count` entries remain after it.
 * - max_bytes: a chunk goes if at least `max_bytes` bytes remain after it.
 * - max_age_secs: a chunk goes once its newest entry is older than that (a
 *   chunk whose time is unknown never goes by age).
 *
 * To make small policies bite, the active chunk rolls over early when a policy
 * is set (see chunkCapacity), so a stream holds between the policy's amount
 * and about 1.25 times it.
 */

export interface RetentionPolicy {
  readonly max_count?: number;
  readonly max_bytes?: number;
  readonly max_age_secs?: number;
}

export interface ChunkSummary {
  readonly firstSeq: number;
  readonly bytes: number;
  /** Timestamp of the chunk's newest entry (undefined when not known yet). */
  readonly lastMs: number | undefined;
}

/** How many of the oldest chunks to delete. `chunks` is ordered oldest first; the last one is active. */
export function chunksToEvict(chunks: readonly ChunkSummary[], lastSeq: number, policy: RetentionPolicy, nowMs: number): number {
  let evict = 0;
  let remainingBytes = chunks.reduce((sum, chunk) => sum + chunk.bytes, 0);
  while (evict < chunks.length - 1) {
    const chunk = chunks[evict]!;
    const next = chunks[evict + 1]!;
    const remainingCountAfter = lastSeq - next.firstSeq + 1;
    const byCount = positive(policy.max_count) && remainingCountAfter >= policy.max_count!;
    const byBytes = positive(policy.max_bytes) && remainingBytes - chunk.bytes >= policy.max_bytes!;
    const byAge = positive(policy.max_age_secs) && chunk.lastMs !== undefined && chunk.lastMs < nowMs - policy.max_age_secs! * 1000;
    if (!(byCount || byBytes || byAge)) break;
    remainingBytes -= chunk.bytes;
    evict++;
  }
  return evict;
}

function positive(value: number | undefined): boolean {
  return value !== undefined && value > 0;
}

export interface ChunkCapacity {
  readonly bytes: number;
  /** Entries per chunk; Infinity when unbounded. */
  readonly count: number;
  readonly ageMs: number;
}

/** When the active chunk rolls over, given the configured chunk limits and the stream's policy. */
export function chunkCapacity(chunkBytes: number, chunkAgeMs: number, policy: RetentionPolicy | undefined): ChunkCapacity {
  const bytes = positive(policy?.max_bytes) ? Math.max(4096, Math.min(chunkBytes, Math.ceil(policy!.max_bytes! / 4))) : chunkBytes;
  const count = positive(policy?.max_count) ? Math.max(1, Math.ceil(policy!.max_count! / 4)) : Infinity;
  const ageMs = positive(policy?.max_age_secs) ? Math.max(1000, Math.min(chunkAgeMs || Infinity, (policy!.max_age_secs! * 1000) / 4)) : chunkAgeMs;
  return { bytes, count, ageMs };
}

export interface BucketChunk {
  readonly stream: string;
  readonly firstSeq: number;
  readonly bytes: number;
  readonly lastMs: number;
}

/** A bucket over its size cap loses its oldest closed chunks (by newest entry time) until it fits. */
export function bucketChunksToEvict(closedChunks: readonly BucketChunk[], activeBytes: number, capBytes: number): BucketChunk[] {
  let total = activeBytes + closedChunks.reduce((sum, chunk) => sum + chunk.bytes, 0);
  const byAge = [...closedChunks].sort((a, b) => a.lastMs - b.lastMs || a.firstSeq - b.firstSeq);
  const evicted: BucketChunk[] = [];
  for (const chunk of byAge) {
    if (total <= capBytes) break;
    evicted.push(chunk);
    total -= chunk.bytes;
  }
  return evicted;
}
