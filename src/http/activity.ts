import { activityKeysMax } from '../core/limits.js';

/**
 * Per-node user activity between two metrics intervals, as IorioDB's
 * iorio_activity.erl keeps it: a count per (type, key), where a key is a
 * list of strings (for `session_check`: username, host, client address,
 * iorio_rest_session.erl:76-80). The node appends `take()` to
 * `<metrics.bucket>/activity` beside its metrics and starts over
 * (iorio_stats.erl:284-304). Bounded by activityKeysMax: past it, new keys
 * are counted in `dropped` only.
 */
export class ActivityLog {
  private readonly counts = new Map<string, { type: string; key: string[]; count: number }>();
  private dropped = 0;

  note(type: string, key: readonly string[]): void {
    const id = JSON.stringify([type, key]);
    const known = this.counts.get(id);
    if (known !== undefined) {
      known.count += 1;
      return;
    }
    if (this.counts.size >= activityKeysMax) {
      this.dropped += 1;
      return;
    }
    this.counts.set(id, { type, key: [...key], count: 1 });
  }

  /**
   * IorioDB's activity entry, `{"<type>":[{"key":[..],"count":n},..]}`
   * (iorio_activity.erl:62-65), plus `"dropped": n` when keys were dropped;
   * then starts over.
   */
  take(): Record<string, unknown> {
    const snapshot: Record<string, unknown> = {};
    for (const { type, key, count } of this.counts.values()) {
      const items = (snapshot[type] as { key: string[]; count: number }[] | undefined) ?? [];
      items.push({ key, count });
      snapshot[type] = items;
    }
    if (this.dropped > 0) snapshot['dropped'] = this.dropped;
    this.counts.clear();
    this.dropped = 0;
    return snapshot;
  }
}
