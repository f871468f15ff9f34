import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { Clock } from '../core/clock.js';
import type { Store } from '../store/types.js';
import type { Auth } from '../auth/types.js';
import type { ClusterAdmin } from '../cluster/index.js';
import type { LatencyMetrics } from './metrics.js';

/**
 * What the HTTP layer is built from. The composition root (src/node.ts)
 * fills it; buildApp() and registerListen() only read it.
 */
export interface HttpDeps {
  config: Config;
  logger: Logger;
  clock: Clock;
  store: Store;
  auth: Auth;
  /** The cluster's admin operations (/admin/cluster/*); absent in tests that build the app alone. */
  cluster?: ClusterAdmin;
  /**
   * The node's own Prometheus registry (never prom-client's global default
   * one, so several nodes can share a process). buildApp() creates one when
   * absent; other HTTP parts may register their metrics on it.
   */
  metrics?: Registry;
  /** The latency histograms, registered on `metrics` (the node times fsyncs and forwards with them too); buildApp registers them when absent. */
  latency?: LatencyMetrics;
}
