/**
 * apitest must report a failed check against a node that loses or reorders
 * one entry. The fake node here speaks the same HTTP API (DESIGN §4) and is
 * correct except for its one deliberate fault, which the control run shows.
 * (The clean run against a real node is apitest-node.test.ts.)
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';
import { defaultApitestOptions, runApitest, type ApitestOptions, type ApitestReport } from '../../tools/apitest/run.js';

type Fault = 'none' | 'lose-insert' | 'swap-listen' | 'drop-listen';

interface FakeEntry {
  readonly id: number;
  readonly t: number;
  readonly data: unknown;
}

/** A one-process, in-memory imitation of an Iorio node's stream API, with one deliberate fault. */
async function startFakeNode(fault: Fault): Promise<{ url: string; app: FastifyInstance; faultsInjected: () => number }> {
  const app = Fastify();
  const streams = new Map<string, { last: number; entries: FakeEntry[] }>();
  const waiters = new Set<() => void>();
  let posts = 0;
  let injected = 0;

  app.addContentTypeParser('application/json-patch+json', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  const streamOf = (bucket: string, stream: string) => {
    const key = `${bucket}/${stream}`;
    let state = streams.get(key);
    if (state === undefined) streams.set(key, (state = { last: 0, entries: [] }));
    return state;
  };
  const append = (bucket: string, stream: string, data: unknown, lose: boolean): FakeEntry => {
    const state = streamOf(bucket, stream);
    state.last += 1;
    const entry = { id: state.last, t: Date.now(), data };
    if (!lose) state.entries.push(entry);
    for (const wake of waiters) wake();
    return entry;
  };
  const authorized = (headers: Record<string, unknown>) => headers['x-session'] === 'fake-token';

  app.post('/sessions', async (request, reply) => {
    const body = request.body as { username?: string; password?: string };
    if (body.username !== 'admin' || body.password !== 'secret') return reply.code(401).send({ type: 'unauthorized', reason: 'bad credentials' });
    return reply.code(201).send({ ok: true, token: 'fake-token', username: 'admin' });
  });
  app.addHook('onRequest', async (request, reply) => {
    if (request.url !== '/sessions' && !authorized(request.headers)) await reply.code(401).send({ type: 'unauthorized', reason: 'no token' });
  });
  app.post<{ Params: { bucket: string; stream: string } }>('/streams/:bucket/:stream', async (request, reply) => {
    const { bucket, stream } = request.params;
    const expect = request.headers['x-iorio-expect-seqnum'];
    if (expect !== undefined && Number(expect) !== streamOf(bucket, stream).last) {
      return reply.code(409).send({ type: 'conflict', reason: 'seqnum', expected: Number(expect), got: streamOf(bucket, stream).last });
    }
    posts += 1;
    const lose = fault === 'lose-insert' && posts === 7;
    if (lose) injected += 1;
    const entry = append(bucket, stream, request.body, lose);
    return reply.code(201).send({ meta: { id: entry.id, t: entry.t } });
  });
  app.patch<{ Params: { bucket: string; stream: string } }>('/streams/:bucket/:stream', async (request, reply) => {
    const { bucket, stream } = request.params;
    const last = streamOf(bucket, stream).entries.at(-1);
    if (last === undefined) return reply.code(404).send({ type: 'not-found', reason: 'empty stream' });
    const document = structuredClone(last.data) as { numbers: unknown[] };
    for (const operation of request.body as { op: string; path: string; value: unknown }[]) {
      if (operation.op !== 'add' || operation.path !== '/numbers/-') return reply.code(400).send({ type: 'invalid-body', reason: 'unsupported' });
      document.numbers.push(operation.value);
    }
    const entry = append(bucket, stream, document, false);
    return reply.code(200).send({ meta: { id: entry.id, t: entry.t } });
  });
  app.get<{ Params: { bucket: string; stream: string }; Querystring: { limit?: string; from?: string } }>(
    '/streams/:bucket/:stream',
    async (request) => {
      const entries = streams.get(`${request.params.bucket}/${request.params.stream}`)?.entries ?? [];
      const limit = Number(request.query.limit ?? 1);
      const chosen = request.query.from === undefined ? entries.slice(Math.max(0, entries.length - limit)) : entries.filter((entry) => entry.id >= Number(request.query.from)).slice(0, limit);
      return chosen.map((entry) => ({ meta: { id: entry.id, t: entry.t }, data: entry.data }));
    },
  );
  app.get('/buckets', async () => ({ status: 'ok', data: [...new Set([...streams.keys()].map((key) => key.split('/')[0]))] }));
  app.get<{ Params: { bucket: string } }>('/streams/:bucket', async (request) => ({
    status: 'ok',
    data: [...streams.keys()].filter((key) => key.startsWith(`${request.params.bucket}/`)).map((key) => key.split('/')[1]),
  }));
  app.get<{ Querystring: { s: string | string[]; timeout?: string } }>('/listen', async (request, reply) => {
    const subscriptions = [request.query.s].flat().map((value) => {
      const [bucket, stream, from] = value.split(':');
      return { bucket: bucket as string, stream: stream as string, from: Number(from ?? Number.MAX_SAFE_INTEGER) };
    });
    const collect = () =>
      subscriptions.flatMap(({ bucket, stream, from }) =>
        (streams.get(`${bucket}/${stream}`)?.entries ?? [])
          .filter((entry) => entry.id >= from)
          .map((entry) => ({ meta: { id: entry.id, t: entry.t, bucket, stream }, data: entry.data })),
      );
    const deadline = Date.now() + Number(request.query.timeout ?? 30) * 1000;
    let events = collect();
    while (events.length === 0 && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, deadline - Date.now());
        waiters.add(wake);
      });
      events = collect();
    }
    if (events.length === 0) return reply.code(204).send();
    // Let a burst gather, so a reply usually carries several entries of a stream.
    await new Promise((resolve) => setTimeout(resolve, 20));
    events = collect();
    const burst = events.findIndex((event, index) => index > 0 && event.meta.stream === events[index - 1]?.meta.stream && event.meta.bucket === events[index - 1]?.meta.bucket);
    if (burst > 0 && injected === 0 && fault === 'swap-listen') {
      injected += 1;
      [events[burst - 1], events[burst]] = [events[burst], events[burst - 1]] as typeof events;
    }
    if (burst > 0 && injected === 0 && fault === 'drop-listen') {
      injected += 1;
      events.splice(burst - 1, 1);
    }
    return reply.code(200).send(events);
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { url, app, faultsInjected: () => injected };
}

function smallRun(url: string, seed: number): ApitestOptions {
  return {
    ...defaultApitestOptions(),
    url,
    seed,
    iterations: 50,
    buckets: 2,
    streams: 3,
    inserters: 2,
    patchers: 2,
    requesters: 1,
    listers: 1,
    listeners: 2,
    listenTimeoutSecs: 1,
    drainTimeoutSecs: 10,
    progressIntervalMs: 0,
    log: () => {},
  };
}

function failuresOf(report: ApitestReport, check: string): number {
  return report.checks.find((result) => result.name === check)?.failures ?? -1;
}

describe('apitest against a fake node', () => {
  it('passes when the fake keeps everything (control)', async () => {
    const fake = await startFakeNode('none');
    try {
      const report = await runApitest(smallRun(fake.url, 11));
      expect(report.errorSamples).toEqual([]);
      expect(report.checks.filter((check) => check.failures > 0)).toEqual([]);
      expect(report.ok).toBe(true);
      const inserters = report.roles.find((role) => role.role === 'inserters');
      expect(inserters?.count).toBe(100);
      expect(report.checks.find((check) => check.name === 'listeners-exactly-once')?.checked).toBeGreaterThan(100);
      expect(report.checks.find((check) => check.name === 'patches-applied-once')?.checked).toBe(100);
    } finally {
      await fake.app.close();
    }
  });

  it('fails when an acknowledged insert is lost', async () => {
    const fake = await startFakeNode('lose-insert');
    try {
      const report = await runApitest(smallRun(fake.url, 12));
      expect(fake.faultsInjected()).toBe(1);
      expect(report.ok).toBe(false);
      expect(failuresOf(report, 'inserts-read-back')).toBeGreaterThanOrEqual(1);
    } finally {
      await fake.app.close();
    }
  });

  it('fails when a listener gets two entries swapped', async () => {
    const fake = await startFakeNode('swap-listen');
    try {
      const report = await runApitest(smallRun(fake.url, 13));
      expect(fake.faultsInjected()).toBe(1);
      expect(report.ok).toBe(false);
      expect(failuresOf(report, 'listeners-exactly-once')).toBeGreaterThanOrEqual(1);
      expect(failuresOf(report, 'inserts-read-back')).toBe(0);
    } finally {
      await fake.app.close();
    }
  });

  it('fails when a listener is skipped past an entry', async () => {
    const fake = await startFakeNode('drop-listen');
    try {
      const report = await runApitest(smallRun(fake.url, 14));
      expect(fake.faultsInjected()).toBe(1);
      expect(report.ok).toBe(false);
      expect(failuresOf(report, 'listeners-exactly-once')).toBeGreaterThanOrEqual(1);
    } finally {
      await fake.app.close();
    }
  });

  it('fails (setup) on bad credentials', async () => {
    const fake = await startFakeNode('none');
    try {
      const report = await runApitest({ ...smallRun(fake.url, 15), password: 'wrong' });
      expect(report.ok).toBe(false);
      expect(report.setupError).toMatch(/login as admin failed/);
    } finally {
      await fake.app.close();
    }
  });
});
