/**
 * `npm run bench -- listen-idle [--count 5000]`: a node with <count> idle
 * WebSocket and <count> idle long-poll listeners on one stream (held by a
 * child process), beside a bare fastify route holding the same number of
 * idle WebSocket connections. Reports the server's memory with every
 * listener waiting, and how long one entry takes to reach all of them.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { testConfig } from '../../../src/config.js';
import { startNode } from '../../../src/node.js';
import { IorioClient } from '../../common/client.js';
import { positiveOption, type BenchContext, type BenchOption, type BenchRow } from '../harness.js';

interface Ready {
  readonly kind: 'ready';
  readonly wsOpen: number;
}
interface Done {
  readonly kind: 'done';
  readonly wsDelivered: number;
  readonly pollDelivered: number;
  readonly ms: number;
}

function startChild(): ChildProcess {
  const isTypeScript = import.meta.url.endsWith('.ts');
  const file = fileURLToPath(new URL(isTypeScript ? '../listen-idle/child.ts' : '../listen-idle/child.js', import.meta.url));
  return fork(file, [], { execArgv: isTypeScript ? ['--import', 'tsx'] : [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

function next<T>(child: ChildProcess, kind: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listen-idle child: no ${kind} within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message: { kind: string; error?: string }) => {
      if (message.kind === 'failed') reject(new Error(message.error));
      if (message.kind !== kind) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(message as T);
    };
    child.on('message', onMessage);
  });
}

/** What `npm run bench -- listen-idle` accepts, checked before anything runs. */
export const options: Readonly<Record<string, BenchOption>> = {
  count: positiveOption('idle WebSocket listeners, and as many idle long-polls (5000)'),
};

export async function run(context: BenchContext): Promise<BenchRow[]> {
  const count = Number(context.options['count'] ?? '5000');
  const dataDir = await context.tempDir('listen-idle');
  // Every listener comes from one address (the child): only the node-wide connection bound applies.
  const config = testConfig({
    'http.port': 0,
    'cluster.port': 0,
    'paths.data': dataDir,
    'http.ratelimit.enabled': false,
    'metrics.enabled': false,
    'http.connections.per_client.max': 1_000_000,
  });
  const node = await startNode(config, { logger: pino({ level: 'warn' }) });
  const child = startChild();
  const client = new IorioClient({ baseUrl: node.httpUrl });
  try {
    const token = await client.login('admin', 'secret');
    const rssBefore = process.memoryUsage().rss;
    context.log(`listen-idle: opening ${count} WebSocket + ${count} long-poll listeners`);
    child.send({ kind: 'task', task: { baseUrl: node.httpUrl, token, count } });
    const ready = await next<Ready>(child, 'ready', 180_000);
    const rssWaiting = process.memoryUsage().rss;
    child.send({ kind: 'go' });
    await client.append('bench', 'idle', { ping: 1 });
    const done = await next<Done>(child, 'done', 60_000);
    const listeners = ready.wsOpen + count;
    const delivered = done.wsDelivered + done.pollDelivered;
    return [
      {
        variant: `iorio: ${ready.wsOpen} WebSocket + ${count} long-poll idle listeners, then one append`,
        group: 'idle listeners',
        opsPerSec: delivered / (done.ms / 1000),
        unit: 'deliveries/s',
        p50Ms: Number.NaN,
        p99Ms: done.ms,
        notes: `delivered ${delivered}/${listeners} in ${done.ms.toFixed(0)} ms; server RSS ${(rssBefore / 2 ** 20).toFixed(0)} MB -> ${(rssWaiting / 2 ** 20).toFixed(0)} MB (${((rssWaiting - rssBefore) / listeners / 1024).toFixed(1)} KB per listener; the bench process holds the node)`,
      },
    ];
  } finally {
    client.close();
    child.kill('SIGKILL');
    await node.stop();
  }
}
