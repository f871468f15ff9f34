/**
 * The bench's load generator, run in its own process so it never shares the
 * measured server's event loop. It receives one task over IPC, runs it and
 * sends back the outcome.
 */
import http from 'node:http';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { LatencyHistogram } from './histogram.js';
import type { AutocannonOutcome, AutocannonTask, ChildMessage, FanoutOutcome, FanoutTask, LoadTask } from './tasks.js';

interface AutocannonResult {
  requests: { total: number; average: number };
  latency: { p50: number; p99: number };
  duration: number;
  non2xx: number;
  errors: number;
  timeouts: number;
}
/** autocannon's return value: a promise of the result that is also an emitter of each response. */
type AutocannonInstance = Promise<AutocannonResult> & {
  on(event: 'response', listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void): void;
};
type Autocannon = (options: Record<string, unknown>) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

async function runAutocannon(task: AutocannonTask): Promise<AutocannonOutcome> {
  let counter = 0;
  const { pathPrefix, pathCount } = task;
  const requests =
    pathPrefix !== undefined && pathCount !== undefined
      ? [
          {
            setupRequest: (request: { path: string }) => {
              request.path = `${pathPrefix}${counter % pathCount}`;
              counter += 1;
              return request;
            },
          },
        ]
      : undefined;
  const instance = autocannon({
    url: task.url,
    method: task.method,
    headers: task.headers,
    body: task.body,
    connections: task.connections,
    duration: task.durationSecs,
    requests,
  });
  // autocannon's own percentiles are whole milliseconds (a sub-millisecond p50 reads 0): keep every 2xx response time at 50 µs.
  const latencies = new LatencyHistogram();
  instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
    if (statusCode >= 200 && statusCode < 300) latencies.add(responseTimeMs);
  });
  const result = await instance;
  return {
    requests: result.requests.total,
    requestsPerSec: result.requests.total / result.duration,
    p50Ms: latencies.count === 0 ? result.latency.p50 : latencies.percentile(50),
    p99Ms: latencies.count === 0 ? result.latency.p99 : latencies.percentile(99),
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

/** Subscriber sockets opened at once while connecting. */
const connectBatchCount = 100;

async function openSubscribers(task: FanoutTask, onMessage: (data: Buffer) => void): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let start = 0; start < task.subscribers; start += connectBatchCount) {
    const batch = Array.from({ length: Math.min(connectBatchCount, task.subscribers - start) }, () => {
      const socket = new WebSocket(task.wsUrl);
      sockets.push(socket);
      socket.on('message', (data: WebSocket.RawData) => onMessage(Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)));
      return new Promise<void>((resolve, reject) => {
        socket.once('open', () => resolve());
        socket.once('error', reject);
      });
    });
    await Promise.all(batch);
  }
  return sockets;
}

const sentAtMarker = Buffer.from('"sentAt":');

/** Every `"sentAt":<ms>` in a message (an event array may carry several entries), read from the bytes. */
export function sentTimes(data: Buffer, each: (sentAt: number) => void): void {
  let at = data.indexOf(sentAtMarker);
  while (at !== -1) {
    let end = at + sentAtMarker.length;
    let value = 0;
    let scale = 0;
    for (; end < data.length; end += 1) {
      const byte = data[end] as number;
      if (byte === 0x2e) scale = 1;
      else if (byte >= 0x30 && byte <= 0x39) {
        value = value * 10 + (byte - 0x30);
        if (scale > 0) scale *= 10;
      } else break;
    }
    each(scale > 0 ? value / scale : value);
    at = data.indexOf(sentAtMarker, end);
  }
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

function waitUntil(wallMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, wallMs - wallNow())));
}

/** Posts `entriesPerSec` entries from `startAtMs` to `endMs`; counts those sent inside the window. */
async function postEntries(task: FanoutTask, postUrl: string, windowStart: number, windowEnd: number): Promise<{ posted: number; postErrors: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const padding = 'x'.repeat(Math.max(0, task.bodyBytes - '{"sentAt":1800000000000.123,"pad":""}'.length));
  let posted = 0;
  let postErrors = 0;
  let inFlight = 0;
  const post = (): void => {
    const sentAt = wallNow();
    if (sentAt >= windowStart && sentAt < windowEnd) posted += 1;
    const body = `{"sentAt":${sentAt.toFixed(3)},"pad":"${padding}"}`;
    inFlight += 1;
    const headers = { ...task.postHeaders, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    const request = http.request(postUrl, { method: 'POST', agent, headers }, (response) => {
      response.resume();
      response.on('end', () => (inFlight -= 1));
      if (response.statusCode !== 201) postErrors += 1;
    });
    request.on('error', () => {
      inFlight -= 1;
      postErrors += 1;
    });
    request.end(body);
  };
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = wallNow();
      if (now >= windowEnd) {
        clearInterval(timer);
        resolve();
        return;
      }
      const due = Math.floor(((now - task.startAtMs) * task.entriesPerSec) / 1000);
      for (; sent < due; sent += 1) post();
    }, 1);
  });
  for (let waited = 0; inFlight > 0 && waited < 100; waited += 1) await new Promise((resolve) => setTimeout(resolve, 50));
  agent.destroy();
  return { posted, postErrors };
}

async function runFanout(task: FanoutTask): Promise<FanoutOutcome> {
  const histogram = new LatencyHistogram();
  const windowStart = task.startAtMs + task.warmupSecs * 1000;
  const windowEnd = windowStart + task.durationSecs * 1000;
  let delivered = 0;
  const sockets = await openSubscribers(task, (data) =>
    sentTimes(data, (sentAt) => {
      if (sentAt < windowStart || sentAt >= windowEnd) return;
      delivered += 1;
      histogram.add(wallNow() - sentAt);
    }),
  );
  await waitUntil(task.startAtMs);
  const posting = task.postUrl === undefined ? { posted: 0, postErrors: 0 } : await postEntries(task, task.postUrl, windowStart, windowEnd);
  // Let the last deliveries of the window arrive.
  await waitUntil(windowEnd + 3000);
  for (const socket of sockets) socket.terminate();
  return { ...posting, delivered, histogram: histogram.toPairs(), maxMs: histogram.maxMs };
}

function run(task: LoadTask): Promise<AutocannonOutcome | FanoutOutcome> {
  return task.kind === 'autocannon' ? runAutocannon(task) : runFanout(task);
}

process.once('message', (task: LoadTask) => {
  run(task).then(
    (outcome) => process.send?.({ ok: true, outcome } satisfies ChildMessage, () => process.exit(0)),
    (error: unknown) => process.send?.({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) } satisfies ChildMessage, () => process.exit(1)),
  );
});
