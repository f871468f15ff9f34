import type { Histogram, Registry } from 'prom-client';
import type { ActivityLog } from './activity.js';
import type { AppendMeta } from '../store/types.js';
import type { HttpDeps } from './deps.js';
import type { IdempotencyWindow } from './idempotency.js';
import type { HttpCounters, LatencyMetrics } from './metrics.js';

/** What the route modules of one app share: its dependencies and its own state. */
export interface RouteContext {
  readonly deps: HttpDeps;
  readonly counters: HttpCounters;
  readonly registry: Registry;
  readonly requestDuration: Histogram<'method'>;
  readonly latency: LatencyMetrics;
  readonly idempotency: IdempotencyWindow<{ single: AppendMeta } | { batch: AppendMeta[] }>;
  /** User activity since the last `$sys/activity` entry. */
  readonly activity: ActivityLog;
  /** Wall-clock ms when the app was built (uptime in /stats). */
  readonly startedMs: number;
}
