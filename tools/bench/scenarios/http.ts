/**
 * `npm run bench -- http`: Iorio's HTTP API beside bare fastify routes
 * (bare-server.ts) measured in the same run, load from a child process.
 *
 *   POST append    100-byte JSON, 64 connections, storage.sync = always (1 stream, and 64 streams)
 *   GET last 10    a stream of 100-byte entries vs a bare GET returning the same body
 *   NDJSON batch   <batch> entries per request, entries/s
 *   WS fan-out     one stream, <subscribers> WebSocket subscribers, <rate> entries/s, delivery latency
 *
 * Options (--key value): groups (append,get,batch,fanout), connections (64), batch (1000), batch-connections (16),
 * subscribers (1000), rate (1000), warmup (2 seconds), fanout-processes (2: subscriber
 * processes; the first also posts; latency is wall clock, post start to receipt).
 */
import { pino } from 'pino';
import { testConfig } from '../../../src/config.js';
import { startNode, type IorioNode } from '../../../src/node.js';
import { IorioClient } from '../../common/client.js';
import { startBareServer, type BareServer } from '../bare-server.js';
import { listOption, positiveOption, runGroups, type BenchContext, type BenchOption, type BenchRow } from '../harness.js';
import { LatencyHistogram } from '../load/histogram.js';
import { runLoad } from '../load/spawn.js';
import type { AutocannonOutcome, FanoutTask } from '../load/tasks.js';

const entryBytes = 100;

/** A JSON object of exactly `bytes` bytes. */
export function jsonOfBytes(bytes: number, seed = 0): string {
  const head = `{"user":"bench","n":${seed},"text":"`;
  const tail = '"}';
  return head + 'x'.repeat(Math.max(0, bytes - head.length - tail.length)) + tail;
}

function option(context: BenchContext, name: string, fallback: number): number {
  const raw = context.options[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got "${raw}"`);
  return value;
}

function notesOf(outcome: AutocannonOutcome, extra = ''): string {
  const problems = [outcome.non2xx > 0 ? `non2xx=${outcome.non2xx}` : '', outcome.errors > 0 ? `errors=${outcome.errors}` : ''].filter(Boolean);
  return [extra, ...problems].filter(Boolean).join(' ');
}

interface Targets {
  readonly node: IorioNode;
  readonly bare: BareServer;
  readonly token: string;
}

async function appendRows(context: BenchContext, { node, bare, token }: Targets): Promise<BenchRow[]> {
  const connections = option(context, 'connections', 64);
  const common = { method: 'POST' as const, body: jsonOfBytes(entryBytes), connections, durationSecs: context.seconds };
  const json = { 'content-type': 'application/json' };
  const auth = { ...json, 'x-session': token };
  context.log(`POST append: bare route, ${connections} connections`);
  const bareOutcome = await runLoad({ kind: 'autocannon', url: `${bare.url}/bare/streams/bench/append`, headers: json, ...common });
  context.log('POST append: iorio, one stream');
  const oneStream = await runLoad({ kind: 'autocannon', url: `${node.httpUrl}/streams/bench/append`, headers: auth, ...common });
  // Varying the path makes autocannon build every request anew (slower on the
  // client side), so the many-streams variant has a baseline sent the same way.
  context.log(`POST append: bare route, ${connections} paths`);
  const bareMany = await runLoad({ kind: 'autocannon', url: `${bare.url}/bare/streams/bench/append-0`, headers: json, pathPrefix: '/bare/streams/bench/append-', pathCount: connections, ...common });
  context.log(`POST append: iorio, ${connections} streams`);
  const manyStreams = await runLoad({ kind: 'autocannon', url: `${node.httpUrl}/streams/bench/append-0`, headers: auth, pathPrefix: '/streams/bench/append-', pathCount: connections, ...common });
  const row = (variant: string, outcome: AutocannonOutcome, baseline = false, group = 'POST append'): BenchRow => ({
    variant,
    group,
    baseline,
    opsPerSec: outcome.requestsPerSec,
    unit: 'req/s',
    p50Ms: outcome.p50Ms,
    p99Ms: outcome.p99Ms,
    notes: notesOf(outcome),
    ...(baseline ? {} : { target: { ratioMin: 0.8 } }),
  });
  return [
    row('bare POST', bareOutcome, true),
    row('iorio POST, 1 stream', oneStream),
    row(`bare POST, ${connections} paths`, bareMany, true, 'POST append, many streams'),
    row(`iorio POST, ${connections} streams`, manyStreams, false, 'POST append, many streams'),
  ];
}

async function readRows(context: BenchContext, { node, bare, token }: Targets): Promise<BenchRow[]> {
  const connections = option(context, 'connections', 64);
  const client = new IorioClient({ baseUrl: node.httpUrl, token });
  try {
    for (let n = 0; n < 20; n += 1) await client.append('bench', 'read', JSON.parse(jsonOfBytes(entryBytes, n)));
    // The bare route answers with the very entries Iorio returns: the same body, byte for byte.
    bare.setReadBody(await client.read('bench', 'read', 10));
  } finally {
    client.close();
  }
  const common = { method: 'GET' as const, connections, durationSecs: context.seconds };
  context.log('GET last 10: bare route');
  const bareOutcome = await runLoad({ kind: 'autocannon', url: `${bare.url}/bare/streams/bench/read?limit=10`, headers: {}, ...common });
  context.log('GET last 10: iorio');
  const iorio = await runLoad({ kind: 'autocannon', url: `${node.httpUrl}/streams/bench/read?limit=10`, headers: { 'x-session': token }, ...common });
  const row = (variant: string, outcome: AutocannonOutcome, baseline = false): BenchRow => ({
    variant,
    group: 'GET last 10',
    baseline,
    opsPerSec: outcome.requestsPerSec,
    unit: 'req/s',
    p50Ms: outcome.p50Ms,
    p99Ms: outcome.p99Ms,
    notes: notesOf(outcome),
    ...(baseline ? {} : { target: { ratioMin: 0.9 } }),
  });
  return [row('bare GET', bareOutcome, true), row('iorio GET ?limit=10', iorio)];
}

async function batchRows(context: BenchContext, { node, bare, token }: Targets): Promise<BenchRow[]> {
  const batch = option(context, 'batch', 1000);
  const connections = option(context, 'batch-connections', 16);
  const body = Array.from({ length: batch }, (_, n) => jsonOfBytes(entryBytes, n)).join('\n') + '\n';
  const ndjson = { 'content-type': 'application/x-ndjson' };
  const common = { method: 'POST' as const, body, connections, durationSecs: context.seconds };
  context.log(`NDJSON batch: bare route, ${batch} entries per request, ${connections} connections`);
  const bareOutcome = await runLoad({ kind: 'autocannon', url: `${bare.url}/bare/streams/bench/batch`, headers: ndjson, ...common });
  context.log('NDJSON batch: iorio');
  const iorio = await runLoad({ kind: 'autocannon', url: `${node.httpUrl}/streams/bench/batch`, headers: { ...ndjson, 'x-session': token }, ...common });
  const row = (variant: string, outcome: AutocannonOutcome, baseline = false): BenchRow => ({
    variant,
    group: 'NDJSON batch',
    baseline,
    opsPerSec: outcome.requestsPerSec * batch,
    unit: 'entries/s',
    p50Ms: outcome.p50Ms,
    p99Ms: outcome.p99Ms,
    notes: notesOf(outcome, `${batch}/request`),
    ...(baseline ? {} : { target: { opsPerSecMin: 150_000 } }),
  });
  return [row('bare NDJSON', bareOutcome, true), row('iorio NDJSON batch', iorio)];
}

/** Time given to every subscriber process to connect before posting starts. */
function connectBudgetMs(subscribers: number): number {
  return 2000 + subscribers * 5;
}

async function fanoutRows(context: BenchContext, { node, bare, token }: Targets): Promise<BenchRow[]> {
  const subscribers = option(context, 'subscribers', 1000);
  const entriesPerSec = option(context, 'rate', 1000);
  const warmupSecs = option(context, 'warmup', 2);
  const processes = Math.min(subscribers, option(context, 'fanout-processes', 2));
  const rows: BenchRow[] = [];
  const variants = [
    { variant: 'bare ws broadcast', baseline: true, wsUrl: `${bare.url.replace('http', 'ws')}/bare/listen`, postUrl: `${bare.url}/bare/fanout`, postHeaders: {} as Record<string, string> },
    {
      variant: 'iorio ws listen',
      baseline: false,
      wsUrl: `${node.httpUrl.replace('http', 'ws')}/listen?jwt=${encodeURIComponent(token)}&s=bench:fanout`,
      postUrl: `${node.httpUrl}/streams/bench/fanout`,
      postHeaders: { 'x-session': token },
    },
  ];
  for (const { variant, baseline, wsUrl, postUrl, postHeaders } of variants) {
    context.log(`WS fan-out: ${variant}, ${subscribers} subscribers over ${processes} processes, ${entriesPerSec} entries/s`);
    const startAtMs = Date.now() + connectBudgetMs(subscribers);
    const outcomes = await Promise.all(
      Array.from({ length: processes }, (_, index) => {
        const share = Math.floor(subscribers / processes) + (index < subscribers % processes ? 1 : 0);
        const task: FanoutTask = {
          kind: 'fanout',
          wsUrl,
          ...(index === 0 ? { postUrl } : {}),
          postHeaders,
          subscribers: share,
          entriesPerSec,
          startAtMs,
          warmupSecs,
          durationSecs: context.seconds,
          bodyBytes: entryBytes,
        };
        return runLoad(task);
      }),
    );
    const histogram = new LatencyHistogram();
    for (const outcome of outcomes) histogram.addPairs(outcome.histogram, outcome.maxMs);
    const posted = outcomes.reduce((sum, outcome) => sum + outcome.posted, 0);
    const postErrors = outcomes.reduce((sum, outcome) => sum + outcome.postErrors, 0);
    const undelivered = posted * subscribers - histogram.count;
    rows.push({
      variant,
      group: 'WS fan-out',
      baseline,
      opsPerSec: histogram.count / context.seconds,
      unit: 'deliveries/s',
      p50Ms: histogram.percentile(50),
      p99Ms: histogram.percentile(99),
      notes: [
        `posted=${posted}`,
        undelivered !== 0 ? `undelivered=${undelivered}` : '',
        postErrors > 0 ? `postErrors=${postErrors}` : '',
        `max=${histogram.maxMs.toFixed(0)}ms`,
      ]
        .filter(Boolean)
        .join(' '),
      ...(baseline ? {} : { target: { p99MsMax: 50 } }),
    });
  }
  return rows;
}

const groupRunners = { append: appendRows, get: readRows, batch: batchRows, fanout: fanoutRows } as const;

/** What `npm run bench -- http` accepts, checked before anything runs. */
export const options: Readonly<Record<string, BenchOption>> = {
  groups: listOption('which groups run (append,get,batch,fanout)', Object.keys(groupRunners)),
  connections: positiveOption('autocannon connections for POST and GET (64)'),
  batch: positiveOption('entries per NDJSON batch request (1000)'),
  'batch-connections': positiveOption('connections for the NDJSON batch (16)'),
  subscribers: positiveOption('WebSocket subscribers in the fan-out (1000)'),
  rate: positiveOption('entries/s posted in the fan-out (1000)'),
  warmup: positiveOption('seconds of fan-out before measuring (2)'),
  'fanout-processes': positiveOption('processes holding the subscribers (2)'),
};

export async function run(context: BenchContext): Promise<BenchRow[]> {
  const dataDir = await context.tempDir('node');
  const config = testConfig({
    'http.port': 0,
    'cluster.port': 0,
    'paths.data': dataDir,
    'storage.sync': 'always',
    'http.ratelimit.enabled': false,
    'metrics.enabled': false,
    'log.level': 'warn',
  });
  const node = await startNode(config, { logger: pino({ level: 'warn' }) });
  let bare: BareServer | undefined;
  try {
    bare = await startBareServer();
    const client = new IorioClient({ baseUrl: node.httpUrl });
    const token = await client.login(config['auth.admin.username'], config['auth.admin.password']).finally(() => client.close());
    const targets = { node, bare, token };
    const groups = (context.options['groups'] ?? Object.keys(groupRunners).join(',')).split(',');
    return await runGroups(context, groups, (group) => groupRunners[group as keyof typeof groupRunners](context, targets));
  } finally {
    await bare?.close();
    await node.stop();
  }
}
