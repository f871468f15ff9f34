/**
 * apitest's workers. Writers (inserters, patchers) do a fixed number of
 * operations; readers (requesters, listers) loop until the writers are done;
 * listeners long-poll with resume until they have every entry up to the
 * streams' final seqnums (or the drain deadline passes).
 */
import { performance } from 'node:perf_hooks';
import { ApiError, isRecord, streamPath, type HttpReply, type ListenEvent, type Subscription } from '../common/client.js';
import { sleep } from '../common/stats.js';
import { makeRecord, patchStreamOf, type StreamRef } from './generator.js';
import { jsonEqual, readRangeProblem } from './verify.js';
import { Check, Role, type RunState } from './state.js';
import type { RequestOptions } from '../common/client.js';

/** Attempts of one patch (404 -> create, 409 -> retry) before it counts as an error. */
export const patchAttemptsMax = 50;
/** Consecutive listen failures before a listener gives up. */
export const listenFailuresMax = 20;
/** Largest `limit` a requester asks for. */
export const requestLimitMax = 100;
/** Times one request is retried after 429 rate-limited before it counts as an error. */
export const rateLimitedRetriesMax = 20;
/** Longest pause between two requests of a requester / a lister (readers are paced, writers are not). */
export const requesterPauseMsMax = 20;
export const listerPauseMsMax = 50;

/**
 * One request, retried while the node answers 429: being rate limited is the
 * node doing its job, and a client is expected to back off (Retry-After).
 */
async function send(run: RunState, role: Role, method: string, path: string, options?: RequestOptions): Promise<HttpReply> {
  for (let attempt = 1; ; attempt += 1) {
    const reply = await run.client.request(method, path, options);
    if (reply.status !== 429 || attempt > rateLimitedRetriesMax) return reply;
    run.roles[role].bump('rateLimited');
    const retryAfterSecs = Number(reply.headers['retry-after']);
    await sleep(Number.isFinite(retryAfterSecs) && retryAfterSecs > 0 ? Math.min(retryAfterSecs * 1000, 5000) : 50 * attempt);
  }
}

function describeFailure(reply: HttpReply): string {
  const body = isRecord(reply.body) ? reply.body : undefined;
  const type = typeof body?.['type'] === 'string' ? body['type'] : '';
  const reason = typeof body?.['reason'] === 'string' ? body['reason'] : reply.text.slice(0, 120);
  return `${reply.status} ${type} ${reason}`.trim();
}

function metaIdOf(reply: HttpReply): number | undefined {
  const meta = isRecord(reply.body) ? reply.body['meta'] : undefined;
  return isRecord(meta) && Number.isSafeInteger(meta['id']) ? (meta['id'] as number) : undefined;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export async function runInserter(run: RunState, index: number): Promise<void> {
  const stats = run.roles.inserters;
  const prng = run.derive(`inserter-${index}`);
  const streams = run.insertStreams;
  for (let n = 0; n < run.options.iterations; n += 1) {
    const ref = streams[(index + n) % streams.length] as StreamRef;
    const record = makeRecord(prng, `i${index}`, n);
    const started = performance.now();
    stats.count += 1;
    try {
      const reply = await send(run, Role.inserters, 'POST', streamPath(ref.bucket, ref.stream), { body: JSON.stringify(record) });
      const id = metaIdOf(reply);
      if (reply.status !== 201 || id === undefined) {
        run.noteError(Role.inserters, `POST ${ref.key}: ${describeFailure(reply)}`);
        continue;
      }
      stats.latencies.add(performance.now() - started);
      run.acknowledge(ref, id, record);
    } catch (error) {
      run.noteError(Role.inserters, `POST ${ref.key}: ${errorText(error)}`);
    }
  }
}

export async function runPatcher(run: RunState, index: number): Promise<void> {
  const stats = run.roles.patchers;
  const streams = run.insertStreams;
  for (let n = 0; n < run.options.iterations; n += 1) {
    const ref = patchStreamOf(streams[(index + n) % streams.length] as StreamRef);
    const token = `q${index}-${n}`;
    const started = performance.now();
    stats.count += 1;
    const outcome = await patchOnce(run, ref, token);
    if (outcome === 'applied') {
      stats.latencies.add(performance.now() - started);
      continue;
    }
    let uncertain = run.patchUncertain.get(ref.key);
    if (uncertain === undefined) run.patchUncertain.set(ref.key, (uncertain = new Set()));
    uncertain.add(token);
    run.noteError(Role.patchers, `PATCH ${ref.key} (${token}): ${outcome}`);
  }
}

/** Adds `token` to the document's numbers: 'applied', or why not. */
async function patchOnce(run: RunState, ref: StreamRef, token: string): Promise<string> {
  const stats = run.roles.patchers;
  const body = JSON.stringify([{ op: 'add', path: '/numbers/-', value: token }]);
  for (let attempt = 0; attempt < patchAttemptsMax; attempt += 1) {
    let reply: HttpReply;
    try {
      reply = await send(run, Role.patchers, 'PATCH', streamPath(ref.bucket, ref.stream), { body, contentType: 'application/json-patch+json' });
    } catch (error) {
      return errorText(error);
    }
    const id = metaIdOf(reply);
    if (reply.status === 200 && id !== undefined) {
      run.noteAcked(ref, id);
      const tokens = run.patchAcks.get(ref.key);
      if (tokens === undefined) run.patchAcks.set(ref.key, [token]);
      else tokens.push(token);
      return 'applied';
    }
    if (reply.status === 409) {
      stats.bump('conflictsRetried');
      await sleep(attempt);
      continue;
    }
    // An empty stream: 400 not-found (IorioDB's answer, DESIGN §4); 404 from older Iorio nodes.
    const isEmpty = reply.status === 404 || (reply.status === 400 && (reply.body as { type?: unknown } | undefined)?.type === 'not-found');
    if (!isEmpty) return describeFailure(reply);
    const created = await createPatchDocument(run, ref);
    if (created !== undefined) return created;
  }
  return `still conflicting after ${patchAttemptsMax} attempts`;
}

/**
 * Creates the document a patch stream starts from. Conditional on the stream
 * being empty, so two patchers racing to create it cannot reset each other's
 * patches; the loser's 409 is fine. Returns a failure, or undefined.
 */
async function createPatchDocument(run: RunState, ref: StreamRef): Promise<string | undefined> {
  try {
    const reply = await send(run, Role.patchers, 'POST', streamPath(ref.bucket, ref.stream), {
      body: JSON.stringify({ data: 'patch', numbers: [] }),
      headers: { 'x-iorio-expect-seqnum': '0' },
    });
    const id = metaIdOf(reply);
    if (reply.status === 201 && id !== undefined) {
      run.roles.patchers.bump('documentsCreated');
      run.noteAcked(ref, id);
      return undefined;
    }
    if (reply.status === 409) return undefined;
    return `creating the document: ${describeFailure(reply)}`;
  } catch (error) {
    return `creating the document: ${errorText(error)}`;
  }
}

function knownLast(run: RunState, key: string): number {
  return Math.max(run.ackedLast.get(key) ?? 0, run.baselineLast.get(key) ?? 0);
}

export async function runRequester(run: RunState, index: number): Promise<void> {
  const stats = run.roles.requesters;
  const prng = run.derive(`requester-${index}`);
  const pool = [...run.insertStreams, ...run.patchStreams];
  while (!run.readersStopped) {
    await sleep(prng.int(requesterPauseMsMax + 1));
    const ref = prng.pick(pool);
    const limit = prng.int(requestLimitMax + 1);
    const ackedLast = knownLast(run, ref.key);
    const from = ackedLast > 0 && prng.int(3) === 0 ? prng.between(1, ackedLast) : undefined;
    const query = from === undefined ? `limit=${limit}` : `limit=${limit}&from=${from}`;
    const started = performance.now();
    stats.count += 1;
    try {
      const reply = await send(run, Role.requesters, 'GET', `${streamPath(ref.bucket, ref.stream)}?${query}`);
      if (reply.status !== 200 || !Array.isArray(reply.body)) {
        run.noteError(Role.requesters, `GET ${ref.key}?${query}: ${describeFailure(reply)}`);
        continue;
      }
      stats.latencies.add(performance.now() - started);
      stats.bump('entries', reply.body.length);
      checkRead(run, ref, reply.body as unknown[], limit, from, ackedLast);
    } catch (error) {
      run.noteError(Role.requesters, `GET ${ref.key}?${query}: ${errorText(error)}`);
    }
  }
}

function checkRead(run: RunState, ref: StreamRef, entries: readonly unknown[], limit: number, from: number | undefined, ackedLast: number): void {
  run.checked(Check.readsConsistent);
  const ids = entries.map((entry) => (isRecord(entry) && isRecord(entry['meta']) ? entry['meta']['id'] : undefined));
  if (!ids.every((id): id is number => Number.isSafeInteger(id))) {
    run.fail(Check.readsConsistent, `${ref.key}: an entry without meta.id`);
    return;
  }
  const problem = readRangeProblem(ids, limit, from, ackedLast);
  if (problem !== undefined) run.fail(Check.readsConsistent, `${ref.key}: ${problem}`);
  const acked = run.acks.get(ref.key);
  if (acked === undefined) return;
  for (const entry of entries as { meta: { id: number }; data: unknown }[]) {
    const ack = acked.get(entry.meta.id);
    if (ack !== undefined && !jsonEqual(ack.data, entry.data)) {
      run.fail(Check.readsConsistent, `${ref.key}: GET returned other data at seqnum ${entry.meta.id} than was acknowledged`);
    }
  }
}

export async function runLister(run: RunState, index: number): Promise<void> {
  const stats = run.roles.listers;
  const prng = run.derive(`lister-${index}`);
  const buckets = run.buckets;
  while (!run.readersStopped) {
    await sleep(prng.int(listerPauseMsMax + 1));
    const listBuckets = prng.int(4) === 0;
    const bucket = prng.pick(buckets);
    const path = listBuckets ? '/buckets' : streamPath(bucket);
    const written = run.writtenSnapshot();
    const started = performance.now();
    stats.count += 1;
    try {
      const reply = await send(run, Role.listers, 'GET', path);
      const data = isRecord(reply.body) ? reply.body['data'] : undefined;
      if (reply.status !== 200 || !Array.isArray(data)) {
        run.noteError(Role.listers, `GET ${path}: ${describeFailure(reply)}`);
        continue;
      }
      stats.latencies.add(performance.now() - started);
      if (isRecord(reply.body) && reply.body['status'] === 'partial') {
        stats.bump('partial');
        continue;
      }
      const names = new Set(data);
      const expected = listBuckets
        ? [...written.buckets]
        : [...written.streams].filter((key) => key.startsWith(`${bucket}/`)).map((key) => key.slice(bucket.length + 1));
      run.checked(Check.listsComplete);
      const missing = expected.filter((name) => !names.has(name));
      if (missing.length > 0) run.fail(Check.listsComplete, `GET ${path} lacks ${missing.slice(0, 5).join(', ')}`);
    } catch (error) {
      run.noteError(Role.listers, `GET ${path}: ${errorText(error)}`);
    }
  }
}

/** What one listener received per stream, for the checks at the end. */
export interface ListenerRecord {
  readonly index: number;
  readonly streams: readonly StreamRef[];
  /** First seqnum wanted per stream key (the stream's last before the run, plus one). */
  readonly joinedAt: Map<string, number>;
  readonly received: Map<string, number[]>;
  /** Entries whose data differed from the acknowledged insert. */
  readonly dataMismatches: string[];
  /** Streams the server said were truncated (x-iorio-first-seqnum). */
  readonly truncated: string[];
  /** Events that arrived before their insert's acknowledgement: checked at the end. */
  readonly unverified: { key: string; id: number; data: unknown }[];
}

export class Listener {
  readonly record: ListenerRecord;
  private readonly next = new Map<string, number>();
  private targets: Map<string, number> | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly run: RunState,
    index: number,
    streams: readonly StreamRef[],
  ) {
    const joinedAt = new Map(streams.map((ref) => [ref.key, (run.baselineLast.get(ref.key) ?? 0) + 1]));
    this.record = { index, streams, joinedAt, received: new Map(streams.map((ref) => [ref.key, []])), dataMismatches: [], truncated: [], unverified: [] };
    for (const [key, from] of joinedAt) this.next.set(key, from);
  }

  /** The final seqnum per stream: the listener stops once it has them all. */
  drainTo(targets: Map<string, number>): void {
    this.targets = targets;
    if (this.caughtUp()) this.abort.abort();
  }

  stop(): void {
    this.abort.abort();
  }

  private caughtUp(): boolean {
    const targets = this.targets;
    if (targets === undefined) return false;
    return this.record.streams.every((ref) => (this.next.get(ref.key) as number) > (targets.get(ref.key) ?? 0));
  }

  async loop(): Promise<void> {
    const stats = this.run.roles.listeners;
    let failures = 0;
    while (!this.abort.signal.aborted && !this.caughtUp()) {
      const subscriptions: Subscription[] = this.record.streams.map((ref) => ({ bucket: ref.bucket, stream: ref.stream, from: this.next.get(ref.key) }));
      try {
        const { events, reply } = await this.run.client.listen(subscriptions, this.run.options.listenTimeoutSecs, this.abort.signal);
        stats.count += events.length;
        if (reply.headers['x-iorio-first-seqnum'] !== undefined) this.record.truncated.push(String(reply.headers['x-iorio-first-seqnum']));
        this.take(events);
        failures = 0;
      } catch (error) {
        if (this.abort.signal.aborted) break;
        if (error instanceof ApiError && error.status === 429) {
          stats.bump('rateLimited');
          await sleep(100, this.abort.signal);
          continue;
        }
        failures += 1;
        this.run.noteError(Role.listeners, `listener ${this.record.index}: ${errorText(error)}`);
        if (failures >= listenFailuresMax) break;
        await sleep(100 * failures, this.abort.signal);
      }
    }
  }

  private take(events: readonly ListenEvent[]): void {
    const now = Date.now();
    for (const event of events) {
      const meta = isRecord(event) && isRecord(event.meta) ? event.meta : undefined;
      if (meta === undefined || !Number.isSafeInteger(meta.id)) {
        this.record.dataMismatches.push(`an event without meta.id: ${JSON.stringify(event).slice(0, 120)}`);
        continue;
      }
      const key = `${meta.bucket}/${meta.stream}`;
      const received = this.record.received.get(key);
      if (received === undefined) {
        this.record.dataMismatches.push(`an event of ${key}, which it did not subscribe to`);
        continue;
      }
      received.push(meta.id);
      this.run.roles.listeners.latencies.add(now - meta.t);
      this.next.set(key, Math.max(this.next.get(key) as number, meta.id + 1));
      const ack = this.run.acks.get(key)?.get(meta.id);
      if (ack === undefined && this.run.insertKeys.has(key)) this.record.unverified.push({ key, id: meta.id, data: event.data });
      else if (ack !== undefined && !jsonEqual(ack.data, event.data)) this.record.dataMismatches.push(`${key} seqnum ${meta.id}: other data than acknowledged`);
    }
  }
}
