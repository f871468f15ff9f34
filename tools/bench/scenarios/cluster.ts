/**
 * `npm run bench -- cluster`: the cluster's costs, on node processes on
 * 127.0.0.1, each beside a baseline measured in the same run.
 *
 *   handoff      node 1 holds <mb> MB (1 KB entries in <streams> streams); node
 *                2 joins and half the partitions move. MB/s and entries/s of
 *                the handoff, beside the same bytes piped over a loopback TCP
 *                connection between two processes (the ceiling). Anchor: Riak
 *                moved 8.6 MB/s per transfer (OpenRiak/riak_kv#23); target
 *                >= 86 MB/s.
 *   forwarding   appends and reads of 100-byte entries sent to the node that
 *                does not own the stream (forwarded over the cluster
 *                connection) beside the same sent to the owner.
 *
 *   replication  appends of 100-byte entries (sync = always, 64 connections)
 *                to one node with request.n = 1 (baseline) and to the leader
 *                of a stream on three nodes with request.n = 3, W = 2 (target
 *                ratio >= 0.54, Kafka's 3x synchronous / no-replication ratio
 *                in LinkedIn's 2014 benchmark); then <kills> times kill -9 of
 *                the stream's leader and the time until an append through
 *                another node is acknowledged (p50 / max; target < 2 s).
 *
 *   catchup      three nodes, request.n = 3: one follower of a stream's
 *                partition is stopped, <catchup-mb> MB of 64 KB entries are
 *                appended through the leader, the follower is started again,
 *                and the time until it has applied everything is measured
 *                (it is behind the leader's compaction point, so it takes the
 *                leader's state, then the log), beside the rate at which the
 *                leader took the same bytes in the same run.
 *
 * Options (--key value): groups (handoff,forwarding,replication,catchup),
 * mb (1024), streams (256), concurrency (handoff.concurrency, 2),
 * connections (64), kills (20), catchup-mb (1024).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { partitionOf } from '../../../src/core/hash.js';
import { listOption, positiveOption, runGroups, type BenchContext, type BenchOption, type BenchRow } from '../harness.js';
import { runLoad } from '../load/spawn.js';
import type { AutocannonOutcome } from '../load/tasks.js';
import { jsonOfBytes } from './http.js';

const mainScript = fileURLToPath(new URL('../../../src/main.js', import.meta.url));

interface BenchNode {
  readonly name: string;
  readonly child: ChildProcess;
  readonly url: string;
}

function option(context: BenchContext, name: string, fallback: number): number {
  const raw = context.options[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got "${raw}"`);
  return value;
}

/** Data folders by node name: a node started again (after kill -9) gets its own back. */
const dataDirs = new Map<string, string>();

async function startNode(context: BenchContext, name: string, flags: Record<string, string>): Promise<BenchNode> {
  const dataDir = dataDirs.get(name) ?? (await context.tempDir(name.replace(/[^a-z0-9]/g, '')));
  dataDirs.set(name, dataDir);
  const all = { nodename: name, 'paths.data': path.join(dataDir, 'data'), 'http.port': '0', 'cluster.port': '0', 'auth.bcrypt.rounds': '4', 'http.ratelimit.enabled': 'no', 'metrics.enabled': 'no', ...flags };
  const child = spawn(process.execPath, [mainScript, 'console', ...Object.entries(all).flatMap(([key, value]) => [`--${key}`, value])], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start`)), 30_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /"httpUrl":"([^"]+)"/.exec(out);
      if (match !== null) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
      if (out.length > 1_000_000) out = out.slice(-10_000);
    });
    child.once('exit', (code) => reject(new Error(`${name} exited (${code})`)));
  });
  return { name, child, url };
}

async function stopNode(node: BenchNode): Promise<void> {
  if (node.child.exitCode !== null) return;
  const exited = new Promise((resolve) => node.child.once('exit', resolve));
  node.child.kill('SIGTERM');
  await exited;
}

async function call(url: string, method: string, route: string, options: { token?: string; body?: string; contentType?: string; secret?: boolean } = {}): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers['x-session'] = options.token;
  if (options.secret) headers['x-iorio-cluster-secret'] = 'iorio';
  if (options.body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  const response = await fetch(`${url}${route}`, { method, headers, ...(options.body === undefined ? {} : { body: options.body }) });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
}

async function login(url: string): Promise<string> {
  return (await call(url, 'POST', '/sessions', { body: JSON.stringify({ username: 'admin', password: 'secret' }) })).body.token;
}

async function waitSettled(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ring = await call(url, 'GET', '/admin/cluster/ring', { secret: true });
    if (ring.status === 200 && ring.body.pending.length === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the handoff did not finish in time');
}

/** The same number of bytes through a loopback TCP connection to a child process: the ceiling for a handoff. */
async function loopbackBaseline(bytes: number): Promise<number> {
  const sink = spawn(process.execPath, ['-e', "require('net').createServer((s) => { s.on('data', () => {}); s.on('end', () => s.end('done')); }).listen(0, '127.0.0.1', function () { console.log(this.address().port); })"], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => sink.stdout!.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
  const chunk = randomBytes(1024 * 1024);
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let sent = 0;
    const pump = () => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!socket.write(chunk)) return;
      }
      socket.end();
    };
    socket.on('drain', pump);
    socket.on('connect', pump);
    socket.on('data', () => resolve());
    socket.on('error', reject);
  });
  const seconds = (performance.now() - started) / 1000;
  sink.kill();
  return bytes / seconds;
}

async function handoffRows(context: BenchContext): Promise<BenchRow[]> {
  const megabytes = option(context, 'mb', 1024);
  const streams = option(context, 'streams', 256);
  const concurrency = option(context, 'concurrency', 2);
  const suffix = randomBytes(3).toString('hex');
  const first = await startNode(context, `bench${suffix}a@127.0.0.1`, { 'storage.sync': 'none', 'handoff.concurrency': String(concurrency) });
  const second = await startNode(context, `bench${suffix}b@127.0.0.1`, { 'storage.sync': 'none', 'handoff.concurrency': String(concurrency) });
  try {
    const token = await login(first.url);
    const perRequest = 1000;
    const line = jsonOfBytes(1000);
    const body = Array.from({ length: perRequest }, () => line).join('\n');
    const requests = Math.ceil((megabytes * 1024 * 1024) / (perRequest * 1000));
    context.log(`handoff: loading ${megabytes} MB into node 1 (${requests} batches of ${perRequest} entries)`);
    for (let index = 0; index < requests; index++) {
      const answer = await call(first.url, 'POST', `/streams/handoff/s${index % streams}`, { token, body, contentType: 'application/x-ndjson' });
      if (answer.status !== 201) throw new Error(`load: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    const entries = requests * perRequest;
    context.log('handoff: node 2 joins, plan, commit');
    const joined = await call(second.url, 'POST', '/admin/cluster/join', { secret: true, body: JSON.stringify({ node: first.name }) });
    if (joined.status !== 200) throw new Error(`join: ${JSON.stringify(joined.body)}`);
    await call(first.url, 'GET', '/admin/cluster/plan', { secret: true });
    const started = performance.now();
    const committed = await call(first.url, 'POST', '/admin/cluster/commit', { secret: true });
    if (committed.status !== 200) throw new Error(`commit: ${JSON.stringify(committed.body)}`);
    await waitSettled(first.url, 3_600_000);
    const seconds = (performance.now() - started) / 1000;
    const received = (await call(second.url, 'GET', '/admin/cluster/transfers', { secret: true })).body.received as { bytes: number };
    const movedEntries = Math.round(entries * (received.bytes / (entries * (1000 + 28))));
    context.log(`handoff: ${received.bytes} bytes in ${seconds.toFixed(1)} s; baseline: the same bytes over loopback TCP`);
    const baseline = await loopbackBaseline(received.bytes);
    const mb = (bytesPerSec: number) => bytesPerSec / (1024 * 1024);
    return [
      { variant: 'loopback TCP, same bytes', group: 'handoff MB/s', baseline: true, opsPerSec: mb(baseline), unit: 'MB/s', p50Ms: Number.NaN, p99Ms: Number.NaN },
      { variant: `handoff, ${concurrency} transfers at once`, group: 'handoff MB/s', opsPerSec: mb(received.bytes / seconds), unit: 'MB/s', p50Ms: Number.NaN, p99Ms: Number.NaN, notes: `${(received.bytes / 1048576).toFixed(0)} MB in ${seconds.toFixed(1)} s; Riak moved 8.6 MB/s`, target: { opsPerSecMin: 86 } },
      { variant: 'handoff entries', group: 'handoff entries/s', opsPerSec: movedEntries / seconds, unit: 'entries/s', p50Ms: Number.NaN, p99Ms: Number.NaN, notes: '1 KB entries' },
    ];
  } finally {
    await Promise.all([stopNode(first), stopNode(second)]);
  }
}

async function forwardingRows(context: BenchContext): Promise<BenchRow[]> {
  const connections = option(context, 'connections', 64);
  const suffix = randomBytes(3).toString('hex');
  const first = await startNode(context, `bench${suffix}c@127.0.0.1`, { 'storage.sync': 'always' });
  const second = await startNode(context, `bench${suffix}d@127.0.0.1`, { 'storage.sync': 'always' });
  try {
    const joined = await call(second.url, 'POST', '/admin/cluster/join', { secret: true, body: JSON.stringify({ node: first.name }) });
    if (joined.status !== 200) throw new Error(`join: ${JSON.stringify(joined.body)}`);
    await call(first.url, 'GET', '/admin/cluster/plan', { secret: true });
    await call(first.url, 'POST', '/admin/cluster/commit', { secret: true });
    await waitSettled(first.url, 120_000);
    const ring = (await call(first.url, 'GET', '/admin/cluster/ring', { secret: true })).body as { size: number };
    // A stream node 1 owns: find one whose partition is not among node 2's (ask node 2 where a read lands is not exposed; use the owners list).
    const owners = await ownersOf(first.url, ring.size);
    let stream = '';
    for (let index = 0; stream === ''; index++) if (owners[partitionOf('fwd', `s${index}`, ring.size)] === first.name) stream = `s${index}`;
    const token = await login(first.url);
    const tokenSecond = await login(second.url);
    const body = jsonOfBytes(100);
    const json = { 'content-type': 'application/json' };
    const common = { connections, durationSecs: context.seconds };
    context.log('forwarding: POST to the owner');
    const postOwner = await runLoad({ kind: 'autocannon', method: 'POST', url: `${first.url}/streams/fwd/${stream}`, headers: { ...json, 'x-session': token }, body, ...common });
    context.log('forwarding: POST to the other node');
    const postOther = await runLoad({ kind: 'autocannon', method: 'POST', url: `${second.url}/streams/fwd/${stream}`, headers: { ...json, 'x-session': tokenSecond }, body, ...common });
    context.log('forwarding: GET from the owner');
    const getOwner = await runLoad({ kind: 'autocannon', method: 'GET', url: `${first.url}/streams/fwd/${stream}?limit=10`, headers: { 'x-session': token }, ...common });
    context.log('forwarding: GET from the other node');
    const getOther = await runLoad({ kind: 'autocannon', method: 'GET', url: `${second.url}/streams/fwd/${stream}?limit=10`, headers: { 'x-session': tokenSecond }, ...common });
    const notes = (outcome: { non2xx: number; errors: number }) => [outcome.non2xx > 0 ? `non2xx=${outcome.non2xx}` : '', outcome.errors > 0 ? `errors=${outcome.errors}` : ''].filter(Boolean).join(' ');
    return [
      { variant: 'POST to the owner', group: 'forwarded POST', baseline: true, opsPerSec: postOwner.requestsPerSec, unit: 'req/s', p50Ms: postOwner.p50Ms, p99Ms: postOwner.p99Ms, notes: notes(postOwner) },
      { variant: 'POST via the other node', group: 'forwarded POST', opsPerSec: postOther.requestsPerSec, unit: 'req/s', p50Ms: postOther.p50Ms, p99Ms: postOther.p99Ms, notes: notes(postOther) },
      { variant: 'GET ?limit=10 from the owner', group: 'forwarded GET', baseline: true, opsPerSec: getOwner.requestsPerSec, unit: 'req/s', p50Ms: getOwner.p50Ms, p99Ms: getOwner.p99Ms, notes: notes(getOwner) },
      { variant: 'GET ?limit=10 via the other node', group: 'forwarded GET', opsPerSec: getOther.requestsPerSec, unit: 'req/s', p50Ms: getOther.p50Ms, p99Ms: getOther.p99Ms, notes: notes(getOther) },
    ];
  } finally {
    await Promise.all([stopNode(first), stopNode(second)]);
  }
}

/** The node serving a stream now (its partition's leader with request.n > 1), from stream info. */
async function servingNode(url: string, token: string, bucket: string, stream: string): Promise<string> {
  for (let attempt = 0; attempt < 400; attempt++) {
    const info = await call(url, 'GET', `/streams/${bucket}/${stream}/info`, { token });
    if (info.status === 200) return info.body.node as string;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`no node serves ${bucket}/${stream}`);
}

async function appendUntilAcknowledged(url: string, token: string, route: string, body: string, deadlineMs: number): Promise<void> {
  while (performance.now() < deadlineMs) {
    try {
      const answer = await call(url, 'POST', route, { token, body });
      if (answer.status === 201) return;
    } catch {
      // The node may be the one just killed: try again.
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no append acknowledged through ${url} in time`);
}

async function replicationRows(context: BenchContext): Promise<BenchRow[]> {
  const connections = option(context, 'connections', 64);
  const kills = option(context, 'kills', 20);
  const suffix = randomBytes(3).toString('hex');
  const body = jsonOfBytes(100);
  const json = { 'content-type': 'application/json' };
  const common = { connections, durationSecs: context.seconds };
  const notes = (outcome: { non2xx: number; errors: number }) => [outcome.non2xx > 0 ? `non2xx=${outcome.non2xx}` : '', outcome.errors > 0 ? `errors=${outcome.errors}` : ''].filter(Boolean).join(' ');

  // Baseline: one node, one copy.
  const single = await startNode(context, `bench${suffix}s@127.0.0.1`, { 'storage.sync': 'always', 'request.n': '1' });
  let baseline;
  let singleSpread: AutocannonOutcome[] = [];
  try {
    const token = await login(single.url);
    context.log('replication: POST to one node, request.n = 1');
    baseline = await runLoad({ kind: 'autocannon', method: 'POST', url: `${single.url}/streams/rep/s`, headers: { ...json, 'x-session': token }, body, ...common });
    context.log('replication: three streams to one node, request.n = 1');
    singleSpread = await Promise.all(
      spreadNames.slice(0, 3).map((stream) => runLoad({ kind: 'autocannon', method: 'POST', url: `${single.url}/streams/rep/${stream}`, headers: { ...json, 'x-session': token }, body, connections: Math.max(1, Math.floor(connections / 3)), durationSecs: context.seconds })),
    );
  } finally {
    await stopNode(single);
  }

  // The default a single node runs with: request.n = 3 and one member, so every partition is a group of one.
  const alone = await startNode(context, `bench${suffix}a@127.0.0.1`, { 'storage.sync': 'always', 'request.n': '3' });
  let groupOfOne;
  try {
    const token = await login(alone.url);
    await appendUntilAcknowledged(alone.url, token, '/streams/rep/s', body, performance.now() + 30_000);
    context.log('replication: POST to one node, request.n = 3 (a group of one)');
    groupOfOne = await runLoad({ kind: 'autocannon', method: 'POST', url: `${alone.url}/streams/rep/s`, headers: { ...json, 'x-session': token }, body, ...common });
  } finally {
    await stopNode(alone);
  }

  const flags = { 'storage.sync': 'always', 'request.n': '3' };
  const names = ['r1', 'r2', 'r3'].map((tag) => `bench${suffix}${tag}@127.0.0.1`);
  const nodes: BenchNode[] = [];
  for (const name of names) nodes.push(await startNode(context, name, flags));
  try {
    const tokens = await formCluster(nodes);
    // Stream info knows a stream once it holds an entry.
    await appendUntilAcknowledged(nodes[0]!.url, tokens[0]!, '/streams/rep/s', body, performance.now() + 30_000);
    const leaderName = await servingNode(nodes[0]!.url, tokens[0]!, 'rep', 's');
    const leaderIndex = nodes.findIndex((node) => node.name === leaderName);
    context.log('replication: POST to the leader, 3 nodes, request.n = 3, W = 2');
    const replicated = await runLoad({ kind: 'autocannon', method: 'POST', url: `${nodes[leaderIndex]!.url}/streams/rep/s`, headers: { ...json, 'x-session': tokens[leaderIndex]! }, body, ...common });

    // Failover: kill -9 of the stream's leader, then appends through another node until one is acknowledged.
    const failovers: number[] = [];
    for (let round = 0; round < kills; round++) {
      const asked = (round + 1) % 3;
      const current = await servingNode(nodes[asked]!.url, tokens[asked]!, 'rep', 's').catch(() => '');
      const index = nodes.findIndex((node) => node.name === current);
      if (index < 0) throw new Error('the leader could not be found');
      const other = (index + 1) % 3;
      await appendUntilAcknowledged(nodes[other]!.url, tokens[other]!, '/streams/rep/s', body, performance.now() + 30_000);
      const exited = new Promise((resolve) => nodes[index]!.child.once('exit', resolve));
      const killedAt = performance.now();
      nodes[index]!.child.kill('SIGKILL');
      await appendUntilAcknowledged(nodes[other]!.url, tokens[other]!, '/streams/rep/s', body, killedAt + 30_000);
      failovers.push(performance.now() - killedAt);
      context.log(`replication: failover ${round + 1}/${kills}: ${(failovers[failovers.length - 1]! / 1000).toFixed(2)} s`);
      await exited;
      nodes[index] = await startNode(context, nodes[index]!.name, flags);
      tokens[index] = await login(nodes[index]!.url);
    }
    // Three streams whose leaders are the three nodes (leaders balanced), each driven at its leader as a Kafka client
    // drives each partition's leader; beside the same three streams on the single node, measured first.
    const spread = await spreadStreams(nodes, tokens, body);
    context.log(`replication: three streams, each POSTed to its own leader (${spread.map((entry) => entry.stream).join(', ')})`);
    const spreadLoad = await Promise.all(
      spread.map((entry) => runLoad({ kind: 'autocannon', method: 'POST', url: `${nodes[entry.leader]!.url}/streams/rep/${entry.stream}`, headers: { ...json, 'x-session': tokens[entry.leader]! }, body, connections: Math.max(1, Math.floor(connections / 3)), durationSecs: context.seconds })),
    );
    const sorted = [...failovers].sort((a, b) => a - b);
    const p50 = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const max = sorted[sorted.length - 1] ?? 0;
    return [
      { variant: '1 node, request.n = 1 (baseline)', group: 'replicated POST', baseline: true, opsPerSec: baseline.requestsPerSec, unit: 'req/s', p50Ms: baseline.p50Ms, p99Ms: baseline.p99Ms, notes: notes(baseline) },
      { variant: '1 node, request.n = 3 (a group of one)', group: 'replicated POST', opsPerSec: groupOfOne.requestsPerSec, unit: 'req/s', p50Ms: groupOfOne.p50Ms, p99Ms: groupOfOne.p99Ms, notes: notes(groupOfOne) },
      { variant: '3 nodes, request.n = 3, W = 2, to the leader', group: 'replicated POST', opsPerSec: replicated.requestsPerSec, unit: 'req/s', p50Ms: replicated.p50Ms, p99Ms: replicated.p99Ms, target: { ratioMin: 0.54 }, notes: notes(replicated) },
      { variant: '1 node, request.n = 1, three streams (baseline)', group: 'replicated POST, three streams', baseline: true, opsPerSec: sum(singleSpread.map((load) => load.requestsPerSec)), unit: 'req/s', p50Ms: Math.max(...singleSpread.map((load) => load.p50Ms)), p99Ms: Math.max(...singleSpread.map((load) => load.p99Ms)), notes: notes(mergedOutcome(singleSpread)) },
      { variant: '3 nodes, request.n = 3, W = 2, three streams, each to its leader', group: 'replicated POST, three streams', opsPerSec: sum(spreadLoad.map((load) => load.requestsPerSec)), unit: 'req/s', p50Ms: Math.max(...spreadLoad.map((load) => load.p50Ms)), p99Ms: Math.max(...spreadLoad.map((load) => load.p99Ms)), target: { ratioMin: 0.54 }, notes: notes(mergedOutcome(spreadLoad)) },
      { variant: `failover after kill -9 of the leader (${failovers.length} kills)`, group: 'failover', opsPerSec: failovers.length, unit: 'kills', p50Ms: p50, p99Ms: max, target: { p99MsMax: 2000 }, notes: `p50 ${(p50 / 1000).toFixed(2)} s, max ${(max / 1000).toFixed(2)} s (p99 column: max); target < 2 s` },
    ];
  } finally {
    await Promise.all(nodes.map((node) => stopNode(node)));
  }
}

/** Candidate stream names for the three-stream rows: the same names on the single node and on the three. */
const spreadNames = Array.from({ length: 64 }, (_, index) => `spread${index}`);

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

function mergedOutcome(loads: readonly { non2xx: number; errors: number }[]): { non2xx: number; errors: number } {
  return { non2xx: sum(loads.map((load) => load.non2xx)), errors: sum(loads.map((load) => load.errors)) };
}

/** Once leaders are balanced: three of spreadNames whose partitions are led by three different nodes (index into nodes). */
async function spreadStreams(nodes: readonly BenchNode[], tokens: readonly string[], body: string): Promise<{ stream: string; leader: number }[]> {
  const deadline = performance.now() + 90_000;
  while (performance.now() < deadline) {
    const chosen = new Map<number, string>();
    for (const stream of spreadNames) {
      await appendUntilAcknowledged(nodes[0]!.url, tokens[0]!, `/streams/rep/${stream}`, body, performance.now() + 30_000);
      const serving = await servingNode(nodes[0]!.url, tokens[0]!, 'rep', stream);
      const index = nodes.findIndex((node) => node.name === serving);
      if (index >= 0 && !chosen.has(index)) chosen.set(index, stream);
      if (chosen.size === 3) return [...chosen].map(([index, stream]) => ({ stream, leader: index }));
    }
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
  throw new Error('leaders did not spread over the three nodes in time');
}

/** Owner of every partition, from the nodes' own answers (a read on a node reports nothing of ownership, so ask the ring). */
async function ownersOf(url: string, size: number): Promise<string[]> {
  const answer = await call(url, 'GET', '/admin/cluster/ring', { secret: true });
  const owners = answer.body.owners as string[] | undefined;
  if (owners === undefined || owners.length !== size) throw new Error('the ring answer lists no owners');
  return owners;
}

/** Nodes 2.. join node 1, the plan is committed and the ring settles; each node's session token. */
async function formCluster(nodes: readonly BenchNode[]): Promise<string[]> {
  for (const node of nodes.slice(1)) {
    const joined = await call(node.url, 'POST', '/admin/cluster/join', { secret: true, body: JSON.stringify({ node: nodes[0]!.name }) });
    if (joined.status !== 200) throw new Error(`join: ${JSON.stringify(joined.body)}`);
  }
  await call(nodes[0]!.url, 'GET', '/admin/cluster/plan', { secret: true });
  await call(nodes[0]!.url, 'POST', '/admin/cluster/commit', { secret: true });
  await waitSettled(nodes[0]!.url, 120_000);
  return Promise.all(nodes.map((node) => login(node.url)));
}

/** A replica far behind catches up: stopped, <catchup-mb> MB appended without it, started, timed until it applied everything. */
async function catchupRows(context: BenchContext): Promise<BenchRow[]> {
  const megabytes = option(context, 'catchup-mb', 1024);
  const entryBytes = 64 * 1024;
  const entries = Math.ceil((megabytes * 1024 * 1024) / entryBytes);
  const suffix = randomBytes(3).toString('hex');
  const flags = { 'storage.sync': 'always', 'request.n': '3' };
  const names = ['c1', 'c2', 'c3'].map((tag) => `bench${suffix}${tag}@127.0.0.1`);
  const nodes: BenchNode[] = [];
  for (const name of names) nodes.push(await startNode(context, name, flags));
  try {
    const tokens = await formCluster(nodes);
    const small = jsonOfBytes(100);
    await appendUntilAcknowledged(nodes[0]!.url, tokens[0]!, '/streams/catch/up', small, performance.now() + 60_000);
    const partition = partitionOf('catch', 'up', 64);
    // Balancing may move the stream's leadership first: wait until it stays put for a second.
    let leaderName = await servingNode(nodes[0]!.url, tokens[0]!, 'catch', 'up');
    for (let round = 0; round < 60; round++) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const now = await servingNode(nodes[0]!.url, tokens[0]!, 'catch', 'up');
      if (now === leaderName) break;
      leaderName = now;
    }
    const leader = nodes.findIndex((node) => node.name === leaderName);
    const behind = (leader + 1) % 3;
    context.log(`catchup: ${nodes[behind]!.name} stopped; ${megabytes} MB of 64 KB entries go to ${leaderName}`);
    await stopNode(nodes[behind]!);
    const body = jsonOfBytes(entryBytes);
    let next = 0;
    const writeStart = performance.now();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < entries) {
          next++;
          await appendUntilAcknowledged(nodes[leader]!.url, tokens[leader]!, '/streams/catch/up', body, performance.now() + 60_000);
        }
      }),
    );
    const writeSecs = (performance.now() - writeStart) / 1000;
    const target = (await call(nodes[leader]!.url, 'GET', '/admin/cluster/partitions', { secret: true })).body.rows.find((row: { partition: number; node: string }) => row.partition === partition && row.node === leaderName).commit as number;
    context.log(`catchup: written in ${writeSecs.toFixed(1)} s; ${nodes[behind]!.name} starts again and must apply op ${target}`);
    const restartAt = performance.now();
    nodes[behind] = await startNode(context, nodes[behind]!.name, flags);
    for (;;) {
      const answer = await call(nodes[behind]!.url, 'GET', '/admin/cluster/partitions', { secret: true }).catch(() => undefined);
      const row = answer?.body?.rows?.find((candidate: { partition: number; node: string }) => candidate.partition === partition && candidate.node === nodes[behind]!.name);
      if (row !== undefined && row.applied >= target) break;
      if (performance.now() - restartAt > 1_800_000) throw new Error('the replica did not catch up within 30 minutes');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const catchSecs = (performance.now() - restartAt) / 1000;
    const mb = (entries * entryBytes) / (1024 * 1024);
    context.log(`catchup: caught up in ${catchSecs.toFixed(1)} s`);
    return [
      { variant: `leader takes ${mb.toFixed(0)} MB (64 KB appends, W = 2, baseline)`, group: 'catch-up', baseline: true, opsPerSec: mb / writeSecs, unit: 'MB/s', p50Ms: 0, p99Ms: 0, notes: `${writeSecs.toFixed(1)} s` },
      { variant: `a replica ${mb.toFixed(0)} MB behind catches up (restart to applied)`, group: 'catch-up', opsPerSec: mb / catchSecs, unit: 'MB/s', p50Ms: 0, p99Ms: 0, notes: `${catchSecs.toFixed(1)} s` },
    ];
  } finally {
    await Promise.all(nodes.map((node) => stopNode(node)));
  }
}

/** What `npm run bench -- cluster` accepts, checked before anything runs. */
export const options: Readonly<Record<string, BenchOption>> = {
  groups: listOption('which groups run (forwarding,handoff,replication,catchup)', ['forwarding', 'handoff', 'replication', 'catchup']),
  'catchup-mb': positiveOption('megabytes a stopped replica falls behind in the catchup group (1024)'),
  mb: positiveOption('megabytes written before the handoff (1024)'),
  streams: positiveOption('streams they are spread over (256)'),
  concurrency: positiveOption('handoff.concurrency of the nodes (2)'),
  connections: positiveOption('autocannon connections for the forwarding and replication rows (64)'),
  kills: positiveOption('kill -9s of the leader the replication group times (20)'),
};

export async function run(context: BenchContext): Promise<BenchRow[]> {
  const groups = (context.options['groups'] ?? 'forwarding,handoff,replication').split(',');
  return runGroups(context, groups, (group) =>
    group === 'forwarding' ? forwardingRows(context) : group === 'replication' ? replicationRows(context) : group === 'catchup' ? catchupRows(context) : handoffRows(context),
  );
}
