import { statfsSync, type Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Clock } from '../core/clock.js';
import type { LogFileOps } from '../store/commit-log.js';
import type { Store } from '../store/types.js';
import { createConnectionCounters, type ConnectionBounds, type ConnectionCounters } from './connection-limits.js';

/**
 * The node's counters. The hot path only increments plain numbers; the
 * Prometheus registry reads them when scraped (collect callbacks), and
 * /stats and the `$sys/metrics` stream take snapshots of them.
 */
export interface HttpCounters {
  requests: number;
  responses: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  /** POST appends (single or batch) that were acknowledged. */
  appends: number;
  appendedEntries: number;
  /** Appends answered from the idempotency window instead of written again. */
  idempotentReplays: number;
  conflicts: number;
  patches: number;
  reads: number;
  readEntries: number;
  rateLimited: number;
  /** Client connections: open now, the bounds, and those refused or timed out (see connection-limits.ts). */
  connections: ConnectionCounters;
}

export function createHttpCounters(bounds: ConnectionBounds): HttpCounters {
  return {
    requests: 0,
    responses: { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 },
    appends: 0,
    appendedEntries: 0,
    idempotentReplays: 0,
    conflicts: 0,
    patches: 0,
    reads: 0,
    readEntries: 0,
    rateLimited: 0,
    connections: createConnectionCounters(bounds),
  };
}

export function countResponse(counters: HttpCounters, statusCode: number): void {
  const statusClass = `${Math.min(5, Math.max(1, Math.floor(statusCode / 100)))}xx` as keyof HttpCounters['responses'];
  counters.responses[statusClass] += 1;
}

export interface NodeStats {
  node: string;
  t: number;
  uptime_ms: number;
  http: HttpCounters;
  store: ReturnType<Store['stats']>;
  memory: { rss: number; heapUsed: number; heapTotal: number; external: number };
}

export function statsSnapshot(input: {
  node: string;
  now: number;
  startedMs: number;
  counters: HttpCounters;
  store: Store;
}): NodeStats {
  const memory = process.memoryUsage();
  return {
    node: input.node,
    t: input.now,
    uptime_ms: input.now - input.startedMs,
    http: { ...input.counters, responses: { ...input.counters.responses }, connections: { ...input.counters.connections } },
    store: { ...input.store.stats() },
    memory: { rss: memory.rss, heapUsed: memory.heapUsed, heapTotal: memory.heapTotal, external: memory.external },
  };
}

/** Adds the node's metrics to its own registry (never prom-client's global one). */
export function registerNodeMetrics(registry: Registry, counters: HttpCounters, store: Store, node: string): Histogram<'method'> {
  const registers = [registry];
  new Gauge({ name: 'iorio_node_info', help: 'Always 1; labels describe the node.', labelNames: ['node'], registers }).set({ node }, 1);

  const counterOf = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  const gaugeOf = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });

  new Counter({
    name: 'iorio_http_responses_total',
    help: 'HTTP responses sent, by status class.',
    labelNames: ['status_class'],
    registers,
    collect() {
      this.reset();
      for (const [statusClass, count] of Object.entries(counters.responses)) this.inc({ status_class: statusClass }, count);
    },
  });
  counterOf('iorio_http_requests_total', 'HTTP requests received.', () => counters.requests);
  counterOf('iorio_http_appends_total', 'Acknowledged POST appends (single or batch).', () => counters.appends);
  counterOf('iorio_http_appended_entries_total', 'Entries written by POST appends.', () => counters.appendedEntries);
  counterOf('iorio_http_idempotent_replays_total', 'Appends answered from the idempotency window.', () => counters.idempotentReplays);
  counterOf('iorio_http_conflicts_total', 'Requests refused with 409: conditional appends and patches, reused idempotency keys.', () => counters.conflicts);
  counterOf('iorio_http_patches_total', 'Acknowledged PATCH requests.', () => counters.patches);
  counterOf('iorio_http_reads_total', 'GET stream requests answered.', () => counters.reads);
  counterOf('iorio_http_read_entries_total', 'Entries returned by GET stream requests.', () => counters.readEntries);
  counterOf('iorio_http_rate_limited_total', 'Requests refused with 429.', () => counters.rateLimited);

  registerConnectionMetrics(registers, counters.connections, gaugeOf, counterOf);

  counterOf('iorio_store_appends_total', 'Entries appended to the store.', () => store.stats().appends);
  counterOf('iorio_store_append_bytes_total', 'Payload bytes appended to the store.', () => store.stats().appendBytes);
  counterOf('iorio_store_reads_total', 'Store reads.', () => store.stats().reads);
  counterOf('iorio_store_reads_from_tail_total', 'Store reads served from the in-memory tail.', () => store.stats().readsFromTail);
  counterOf('iorio_store_reads_from_disk_total', 'Store reads that touched chunk files.', () => store.stats().readsFromDisk);
  counterOf('iorio_store_log_flushes_total', 'Commit-log flushes (fsyncs with sync=always).', () => store.stats().logFlushes);
  counterOf('iorio_store_checkpoints_total', 'Checkpoints taken.', () => store.stats().checkpoints);
  counterOf('iorio_store_evicted_chunks_total', 'Chunks deleted by eviction.', () => store.stats().evictedChunks);
  counterOf('iorio_store_evicted_bytes_total', 'Bytes deleted by eviction.', () => store.stats().evictedBytes);
  gaugeOf('iorio_store_open_streams', 'Streams with an open tail.', () => store.stats().openStreams);
  gaugeOf('iorio_store_open_files', 'Chunk files held open.', () => store.stats().openFiles);
  gaugeOf('iorio_process_resident_memory_bytes', 'Resident set size.', () => process.memoryUsage().rss);
  gaugeOf('iorio_process_heap_used_bytes', 'V8 heap in use.', () => process.memoryUsage().heapUsed);

  return new Histogram({
    name: 'iorio_http_request_duration_seconds',
    help: 'Time from request received to response sent.',
    labelNames: ['method'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
}

function registerConnectionMetrics(
  registers: Registry[],
  connections: ConnectionCounters,
  gaugeOf: (name: string, help: string, read: () => number) => Gauge,
  counterOf: (name: string, help: string, read: () => number) => Counter,
): void {
  gaugeOf('iorio_http_connections', 'Client connections open (HTTP and HTTPS, listeners included).', () => connections.open);
  gaugeOf('iorio_http_connections_max', 'Most client connections open at once (http.connections.max, or derived).', () => connections.max);
  gaugeOf('iorio_http_connections_per_client_max', 'Most connections from one client address.', () => connections.perClientMax);
  new Counter({
    name: 'iorio_http_connections_refused_total',
    help: 'Connections refused at accept, by the bound they met (total or per_client).',
    labelNames: ['bound'],
    registers,
    collect() {
      this.reset();
      this.inc({ bound: 'total' }, connections.refused);
      this.inc({ bound: 'per_client' }, connections.refusedPerClient);
    },
  });
  counterOf('iorio_http_connections_timed_out_total', 'Connections closed for not sending a whole request within http.idle_timeout.', () => connections.timedOut);
  counterOf('iorio_http_accept_errors_total', 'Errors accepting connections (EMFILE: out of file descriptors).', () => connections.acceptErrors);
}

/** Latency buckets in seconds, from a page-cache fdatasync (~100 us) to a stalled disk or peer. */
const latencyBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Where a node's time goes, as Prometheus histograms: appends and reads as
 * the HTTP layer waits for them (forwarding and group commit included),
 * each commit-log fdatasync, and each stream operation forwarded to
 * another node (by operation).
 */
export interface LatencyMetrics {
  readonly append: Histogram;
  readonly read: Histogram;
  readonly fsync: Histogram;
  readonly forward: Histogram<'operation'>;
}

/** Registers the latency histograms on a node's registry (once per registry). */
export function registerLatencyMetrics(registry: Registry): LatencyMetrics {
  const histogram = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    new Histogram<L>({ name, help, labelNames, buckets: latencyBuckets, registers: [registry] });
  return {
    append: histogram('iorio_append_duration_seconds', 'Time to make an append (single, batch or PATCH) durable, as the HTTP layer waits for it.'),
    read: histogram('iorio_read_duration_seconds', 'Time to read a range of a stream, as the HTTP layer waits for it.'),
    fsync: histogram('iorio_fsync_duration_seconds', 'Time of each commit-log fdatasync, and of each replication-log write until it is flushed.'),
    forward: histogram('iorio_forward_duration_seconds', 'Time of each stream operation forwarded to the node serving its partition, by operation.', ['operation']),
  };
}

/** The commit log's file operations with each fdatasync timed into `fsync`. */
export function timedLogFileOps(files: LogFileOps, fsync: Histogram): LogFileOps {
  return {
    writev: (fd, buffers, position) => files.writev(fd, buffers, position),
    write: (fd, buffer, offset, length, position) => files.write(fd, buffer, offset, length, position),
    fdatasync: (fd, callback) => {
      const done = fsync.startTimer();
      files.fdatasync(fd, (error) => {
        done();
        callback(error);
      });
    },
  };
}

/** How often the walk of the data folder (its bytes by part) may run: scrapes between reuse the last one. */
const diskWalkIntervalMs = 30_000;
/** Files and folders one walk visits at most (a walk is a scan: it must stay bounded). */
const diskWalkEntriesMax = 1_000_000;

/** Bytes under a folder, by walking it; stops after `entriesMax` entries (then `complete` is false). */
export async function folderBytes(folder: string, entriesMax: number = diskWalkEntriesMax): Promise<{ bytes: number; complete: boolean }> {
  let bytes = 0;
  let entries = 0;
  const pending = [folder];
  while (pending.length > 0) {
    const current = pending.pop()!;
    let children: Dirent[];
    try {
      children = await readdir(current, { withFileTypes: true });
    } catch {
      continue; // removed under the walk, or unreadable: not counted
    }
    for (const child of children) {
      entries += 1;
      if (entries > entriesMax) return { bytes, complete: false };
      const target = join(current, child.name);
      if (child.isDirectory()) pending.push(target);
      else if (child.isFile()) bytes += await stat(target).then((info) => info.size, () => 0);
    }
  }
  return { bytes, complete: true };
}

/**
 * Disk gauges of the data folder: the file system's size and free space
 * (statfs, at every scrape), and the bytes of the commit log, the stream
 * chunks (vnodes) and the metadata store (a walk, at most every 30 s).
 */
export function registerDiskMetrics(registry: Registry, dataDir: string, clock: Clock): void {
  const registers = [registry];
  const parts = ['commitlog', 'vnodes', 'meta'] as const;
  let walked: { atMs: number; bytes: Record<string, number> } | undefined;
  let walking: Promise<void> | undefined;
  const walk = async () => {
    const bytes: Record<string, number> = {};
    for (const part of parts) bytes[part] = (await folderBytes(join(dataDir, part))).bytes;
    walked = { atMs: clock.now(), bytes };
  };
  new Gauge({
    name: 'iorio_disk_data_bytes',
    help: 'Bytes of the data folder by part: commitlog, vnodes (stream chunks), meta (lmdb); refreshed at most every 30 s.',
    labelNames: ['part'],
    registers,
    async collect() {
      if (walked === undefined || clock.now() - walked.atMs >= diskWalkIntervalMs) {
        walking ??= walk().finally(() => {
          walking = undefined;
        });
        await walking;
      }
      for (const part of parts) this.set({ part }, walked?.bytes[part] ?? 0);
    },
  });
  const statfsOf = () => {
    try {
      return statfsSync(dataDir);
    } catch {
      return undefined;
    }
  };
  new Gauge({
    name: 'iorio_disk_size_bytes',
    help: 'Size of the file system holding the data folder.',
    registers,
    collect() {
      const info = statfsOf();
      if (info !== undefined) this.set(info.blocks * info.bsize);
    },
  });
  new Gauge({
    name: 'iorio_disk_free_bytes',
    help: 'Bytes of the file system holding the data folder that the node may still use.',
    registers,
    collect() {
      const info = statfsOf();
      if (info !== undefined) this.set(info.bavail * info.bsize);
    },
  });
}
