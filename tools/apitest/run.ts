/**
 * apitest as a library: `runApitest(options)` logs in, runs every role at
 * once against one node (or any node of a cluster), verifies what it saw and
 * returns a report. main.ts is only flags and printing around it.
 */
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import { ApiError, IorioClient, isRecord, streamPath, type HttpReply } from '../common/client.js';
import { mapLimit } from '../common/stats.js';
import { Prng } from '../common/prng.js';
import { patchStreamOf, planStreams, type StreamRef } from './generator.js';
import type { ApitestOptions } from './options.js';
import { Listener, runInserter, runLister, runPatcher, runRequester } from './roles.js';
import { Check, Role, RunState, type CheckResult } from './state.js';
import { jsonEqual, listenSequenceProblem, patchDocumentProblems } from './verify.js';

export { defaultApitestOptions, parseApitestArgs, type ApitestOptions } from './options.js';

/** Streams one listener subscribes to at most (its long-poll URL stays short). */
export const listenStreamsPerListenerMax = 100;
/** Entries one read-back GET asks for (the server caps a read at 1000). */
export const readBackPageCount = 1000;
/** Requests in flight while reading baselines and verifying. */
export const verifyConcurrency = 16;

export interface RoleSummary {
  readonly role: Role;
  readonly workers: number;
  readonly count: number;
  readonly errors: number;
  readonly elapsedMs: number;
  readonly eventsPerSec: number;
  /** Request latency; for listeners, delivery latency (receipt minus the entry's `t`). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly details: Readonly<Record<string, number>>;
}

export interface ApitestReport {
  /** True when no request failed and every check passed. */
  readonly ok: boolean;
  readonly seed: number;
  readonly baseUrl: string;
  readonly durationMs: number;
  /** Why the run could not start (login or baseline reads failed). */
  readonly setupError?: string;
  readonly roles: readonly RoleSummary[];
  readonly checks: readonly CheckResult[];
  readonly errorCount: number;
  readonly errorSamples: readonly string[];
}

export function baseUrlOf(options: ApitestOptions): string {
  if (options.url !== undefined) return options.url.replace(/\/+$/, '');
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return `http://${host}:${options.port}`;
}

export async function runApitest(options: ApitestOptions): Promise<ApitestReport> {
  const startedMs = performance.now();
  const baseUrl = baseUrlOf(options);
  const workers = options.inserters + options.patchers + options.requesters + options.listers + options.listeners;
  const agentOptions = { keepAlive: true, maxSockets: workers + verifyConcurrency };
  const agent = baseUrl.startsWith('https:') ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  const client = new IorioClient({ baseUrl, agent });
  const insertStreams = planStreams(new Prng(options.seed, 'names'), options.buckets, options.streams);
  const patchStreams = options.patchers > 0 ? insertStreams.map(patchStreamOf) : [];
  const run = new RunState(options, client, insertStreams, patchStreams);
  options.log(`apitest: seed ${options.seed} (rerun with -s ${options.seed}), ${baseUrl}, ${insertStreams.length} streams`);
  try {
    const setupError = await setUp(run);
    if (setupError !== undefined) return buildReport(run, baseUrl, startedMs, setupError);
    await exercise(run);
    await verifyInserts(run);
    await verifyPatches(run);
    return buildReport(run, baseUrl, startedMs);
  } finally {
    agent.destroy();
  }
}

/** Logs in and reads each stream's last seqnum (and patch document) before anything is written. */
async function setUp(run: RunState): Promise<string | undefined> {
  const { options, client } = run;
  try {
    await client.login(options.username, options.password);
  } catch (error) {
    return `login as ${options.username} failed: ${error instanceof Error ? error.message : String(error)}`;
  }
  const problems = await mapLimit([...run.insertStreams, ...run.patchStreams], verifyConcurrency, async (ref) => {
    try {
      const [last] = await client.read(ref.bucket, ref.stream, 1);
      run.baselineLast.set(ref.key, last?.meta.id ?? 0);
      const numbers = isRecord(last?.data) ? last.data['numbers'] : undefined;
      run.baselineNumbers.set(ref.key, Array.isArray(numbers) ? numbers : []);
      return undefined;
    } catch (error) {
      return `reading the last entry of ${ref.key}: ${error instanceof Error ? error.message : String(error)}`;
    }
  });
  return problems.find((problem) => problem !== undefined);
}

/** Which streams each listener follows: the pool dealt round-robin, every listener at least one. */
export function assignListenerStreams(pool: readonly StreamRef[], listeners: number): StreamRef[][] {
  if (pool.length === 0) return [];
  return Array.from({ length: listeners }, (_, index) => {
    const mine = pool.filter((_, position) => position % listeners === index).slice(0, listenStreamsPerListenerMax);
    return mine.length > 0 ? mine : [pool[index % pool.length] as StreamRef];
  });
}

/** Runs every role at once; listeners drain to the streams' final seqnums after the writers are done. */
async function exercise(run: RunState): Promise<void> {
  const { options } = run;
  const listeners = assignListenerStreams([...run.insertStreams, ...run.patchStreams], options.listeners).map(
    (streams, index) => new Listener(run, index, streams),
  );
  const progress = options.progressIntervalMs > 0 ? setInterval(() => options.log(progressLine(run)), options.progressIntervalMs) : undefined;
  progress?.unref();
  try {
    const listening = timed(run, Role.listeners, listeners.map((listener) => listener.loop()));
    const writing = Promise.all([
      timed(run, Role.inserters, times(options.inserters, (index) => runInserter(run, index))),
      timed(run, Role.patchers, times(options.patchers, (index) => runPatcher(run, index))),
    ]);
    const reading = Promise.all([
      timed(run, Role.requesters, times(options.requesters, (index) => runRequester(run, index))),
      timed(run, Role.listers, times(options.listers, (index) => runLister(run, index))),
    ]);
    await writing;
    run.writersDone = true;
    run.readersStopped = true;
    await reading;
    const targets = await finalSeqnums(run, listeners.flatMap((listener) => listener.record.streams));
    for (const listener of listeners) listener.drainTo(targets);
    const deadline = setTimeout(() => listeners.forEach((listener) => listener.stop()), options.drainTimeoutSecs * 1000);
    await listening;
    clearTimeout(deadline);
    verifyListeners(run, listeners, targets);
  } finally {
    if (progress !== undefined) clearInterval(progress);
    for (const listener of listeners) listener.stop();
  }
  options.log(progressLine(run));
}

function times(count: number, start: (index: number) => Promise<void>): Promise<void>[] {
  return Array.from({ length: count }, (_, index) => start(index));
}

async function timed(run: RunState, role: Role, workers: Promise<void>[]): Promise<void> {
  const stats = run.roles[role];
  stats.workers = workers.length;
  stats.startedMs = performance.now();
  await Promise.all(workers);
  stats.endedMs = performance.now();
}

function progressLine(run: RunState): string {
  const { roles, options } = run;
  const elapsedSecs = (performance.now() - (roles.inserters.startedMs || performance.now())) / 1000;
  const failures = [...run.checks.values()].reduce((sum, check) => sum + check.failures, 0);
  return (
    `apitest ${elapsedSecs.toFixed(1)}s  inserts ${roles.inserters.count}/${options.inserters * options.iterations}` +
    `  patches ${roles.patchers.count}/${options.patchers * options.iterations}  gets ${roles.requesters.count}` +
    `  lists ${roles.listers.count}  listened ${roles.listeners.count}  errors ${run.errorCount}  failed checks ${failures}`
  );
}

/** Each listened stream's last seqnum once the writers are done: what listeners must reach. */
async function finalSeqnums(run: RunState, streams: readonly StreamRef[]): Promise<Map<string, number>> {
  const unique = [...new Map(streams.map((ref) => [ref.key, ref])).values()];
  const lasts = await mapLimit(unique, verifyConcurrency, async (ref) => {
    try {
      const [last] = await run.client.read(ref.bucket, ref.stream, 1);
      return Math.max(last?.meta.id ?? 0, run.ackedLast.get(ref.key) ?? 0);
    } catch (error) {
      run.noteError(Role.listeners, `reading the final seqnum of ${ref.key}: ${error instanceof Error ? error.message : String(error)}`);
      return run.ackedLast.get(ref.key) ?? 0;
    }
  });
  return new Map(unique.map((ref, index) => [ref.key, lasts[index] as number]));
}

function verifyListeners(run: RunState, listeners: readonly Listener[], targets: Map<string, number>): void {
  for (const { record } of listeners) {
    const who = `listener ${record.index}`;
    for (const ref of record.streams) {
      const from = record.joinedAt.get(ref.key) as number;
      const target = targets.get(ref.key) ?? 0;
      run.checked(Check.listenersExactlyOnce, Math.max(0, target - from + 1));
      const problem = listenSequenceProblem(from, target, record.received.get(ref.key) ?? []);
      if (problem !== undefined) run.fail(Check.listenersExactlyOnce, `${who} ${ref.key} (joined at ${from}): ${problem}`);
    }
    for (const mismatch of record.dataMismatches) run.fail(Check.listenersExactlyOnce, `${who}: ${mismatch}`);
    for (const first of record.truncated) run.fail(Check.listenersExactlyOnce, `${who}: the server said entries were evicted (first kept ${first})`);
    for (const { key, id, data } of record.unverified) {
      const ack = run.acks.get(key)?.get(id);
      if (ack !== undefined && !jsonEqual(ack.data, data)) run.fail(Check.listenersExactlyOnce, `${who} ${key} seqnum ${id}: other data than acknowledged`);
    }
  }
}

/** Reads every acknowledged insert back, page by page, and compares it at its seqnum. */
async function verifyInserts(run: RunState): Promise<void> {
  const streams = run.insertStreams.filter((ref) => run.acks.has(ref.key));
  await mapLimit(streams, verifyConcurrency, async (ref) => {
    const acks = run.acks.get(ref.key) as Map<number, { id: number; data: unknown }>;
    const ids = [...acks.keys()].sort((a, b) => a - b);
    const found = await readRange(run, ref, ids[0] as number, ids[ids.length - 1] as number);
    run.checked(Check.insertsReadBack, ids.length);
    for (const id of ids) {
      if (!found.has(id)) run.fail(Check.insertsReadBack, `${ref.key}: acknowledged seqnum ${id} is not there`);
      else if (!jsonEqual(found.get(id), acks.get(id)?.data)) run.fail(Check.insertsReadBack, `${ref.key}: seqnum ${id} holds other data than acknowledged`);
    }
  });
}

async function readRange(run: RunState, ref: StreamRef, first: number, last: number): Promise<Map<number, unknown>> {
  const found = new Map<number, unknown>();
  let from = first;
  for (let page = 0; from <= last && page <= Math.ceil((last - first + 1) / readBackPageCount) + 1; page += 1) {
    const path = `${streamPath(ref.bucket, ref.stream)}?from=${from}&limit=${readBackPageCount}`;
    try {
      const reply = await readPage(run, path);
      const firstKept = reply.headers['x-iorio-first-seqnum'];
      if (firstKept !== undefined) run.fail(Check.insertsReadBack, `${ref.key}: entries from ${from} were evicted (first kept ${String(firstKept)})`);
      const entries = Array.isArray(reply.body) ? (reply.body as { meta?: { id?: unknown }; data?: unknown }[]) : [];
      let highest = from - 1;
      for (const entry of entries) {
        const id = entry.meta?.id;
        if (typeof id !== 'number') continue;
        found.set(id, entry.data);
        highest = Math.max(highest, id);
      }
      if (highest < from) break;
      from = highest + 1;
    } catch (error) {
      run.noteError(Role.requesters, `read-back GET ${path}: ${error instanceof Error ? error.message : String(error)}`);
      break;
    }
  }
  return found;
}

/** Read-back waits out a retriable 503 (a partition between leaders: a client retries), a bounded number of times; it is still noted as an error. */
const readBackRetries = 100;
const readBackRetryMs = 100;

async function readPage(run: RunState, path: string): Promise<HttpReply> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await run.client.expect([200], 'GET', path);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 503 || attempt >= readBackRetries) throw error;
      run.noteError(Role.requesters, `read-back GET ${path}: ${error.message} (retried)`);
      await new Promise((resolve) => setTimeout(resolve, readBackRetryMs));
    }
  }
}

/** Each patch stream's final document holds every acknowledged patch exactly once. */
async function verifyPatches(run: RunState): Promise<void> {
  const streams = run.patchStreams.filter((ref) => run.patchAcks.has(ref.key) || run.patchUncertain.has(ref.key));
  await mapLimit(streams, verifyConcurrency, async (ref) => {
    const acknowledged = run.patchAcks.get(ref.key) ?? [];
    run.checked(Check.patchesAppliedOnce, acknowledged.length);
    try {
      const [last] = await run.client.read(ref.bucket, ref.stream, 1);
      const numbers = isRecord(last?.data) ? last.data['numbers'] : undefined;
      const problems = patchDocumentProblems(run.baselineNumbers.get(ref.key) ?? [], numbers, acknowledged, run.patchUncertain.get(ref.key) ?? new Set());
      for (const problem of problems) run.fail(Check.patchesAppliedOnce, `${ref.key}: ${problem}`);
    } catch (error) {
      run.noteError(Role.patchers, `reading the final document of ${ref.key}: ${error instanceof Error ? error.message : String(error)}`);
    }
  });
}

function buildReport(run: RunState, baseUrl: string, startedMs: number, setupError?: string): ApitestReport {
  const roles = Object.values(run.roles).map((stats): RoleSummary => {
    const elapsedMs = Math.max(0, stats.endedMs - stats.startedMs);
    const latency = stats.latencies.summary();
    return {
      role: stats.role,
      workers: stats.workers,
      count: stats.count,
      errors: stats.errors,
      elapsedMs,
      eventsPerSec: elapsedMs > 0 ? (stats.count * 1000) / elapsedMs : 0,
      p50Ms: latency.p50Ms,
      p99Ms: latency.p99Ms,
      details: { ...stats.details },
    };
  });
  const checks = [...run.checks.values()].map((check) => ({ ...check, samples: [...check.samples] }));
  const ok = setupError === undefined && run.errorCount === 0 && checks.every((check) => check.failures === 0);
  return {
    ok,
    seed: run.options.seed,
    baseUrl,
    durationMs: performance.now() - startedMs,
    ...(setupError === undefined ? {} : { setupError }),
    roles,
    checks,
    errorCount: run.errorCount,
    errorSamples: [...run.errorSamples],
  };
}
