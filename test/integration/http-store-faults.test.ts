/**
 * The HTTP layer over a store that fails on demand: a node composed as
 * src/node.ts composes it (store, auth, buildApp), with the store behind a
 * wrapper that records every write and can refuse some. PATCH is one atomic
 * store call, store failures are 503 and never cached by the idempotency
 * window, raw EMFILE errors are 503, and the window expires on the
 * injected clock.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { openAuth } from '../../src/auth/index.js';
import { testConfig } from '../../src/config.js';
import type { Clock } from '../../src/core/clock.js';
import { IorioError } from '../../src/core/errors.js';
import { idempotencyWindowMs } from '../../src/core/limits.js';
import { buildApp } from '../../src/http/app.js';
import { openMeta, type MetaStore } from '../../src/store/meta.js';
import { openStreamStore } from '../../src/store/stream-store.js';
import type { AppendRequest, Store } from '../../src/store/types.js';
import { ManualClock, systemClock } from '../helpers/clock.js';
import { call, login, type Reply } from './http-harness.js';

/** What the wrapper does to writes: every call is recorded; `fail` may refuse one with an error. */
interface WriteFaults {
  /** One entry per store call: the streams it wrote to. */
  calls: string[][];
  fail: ((streams: readonly string[]) => Error | undefined) | undefined;
  /** When set, reads throw it. */
  readFailure: Error | undefined;
}

function faultyStore(inner: Store, faults: WriteFaults): Store {
  const check = (requests: readonly AppendRequest[]): Error | undefined => {
    const streams = requests.map((request) => `${request.bucket}/${request.stream}`);
    faults.calls.push(streams);
    return faults.fail?.(streams);
  };
  return new Proxy(inner, {
    get(target, property) {
      if (property === 'append') {
        return (request: AppendRequest) => {
          const error = check([request]);
          return error === undefined ? target.append(request) : Promise.reject(error);
        };
      }
      if (property === 'appendAtomic') {
        return (requests: readonly AppendRequest[]) => {
          const error = check(requests);
          return error === undefined ? target.appendAtomic(requests) : Promise.reject(error);
        };
      }
      if (property === 'read' && faults.readFailure !== undefined) {
        const failure = faults.readFailure;
        return () => Promise.reject(failure);
      }
      const value: unknown = Reflect.get(target, property);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

interface FaultyNode {
  url: string;
  adminToken: string;
  app: FastifyInstance;
  faults: WriteFaults;
  stop(): Promise<void>;
}

async function startFaultyNode(clock: Clock = systemClock): Promise<FaultyNode> {
  const root = await mkdtemp(join(tmpdir(), 'iorio-faulty-'));
  const dataDir = join(root, 'data');
  const config = testConfig({ 'http.port': 0, 'cluster.port': 0, 'paths.data': dataDir, 'auth.bcrypt.rounds': 4, 'storage.sync': 'none', 'http.ratelimit.enabled': false });
  const logger = pino({ level: process.env['IORIO_TEST_LOG'] ?? 'silent' });
  const meta: MetaStore = openMeta(join(dataDir, 'meta'));
  const store = await openStreamStore({ dataDir, meta, config, clock, logger });
  const auth = await openAuth({ meta, config, clock, logger });
  const faults: WriteFaults = { calls: [], fail: undefined, readFailure: undefined };
  const app = await buildApp({ config, logger, clock, store: faultyStore(store, faults), auth, metrics: new Registry() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return {
    url,
    adminToken: await login(url, 'admin', 'secret'),
    app,
    faults,
    async stop() {
      await app.close();
      await store.close();
      await meta.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

let node: FaultyNode;

beforeAll(async () => {
  node = await startFaultyNode();
});
afterAll(async () => {
  await node?.stop();
});
afterEach(() => {
  node.faults.fail = undefined;
  node.faults.readFailure = undefined;
});

function post(path: string, data: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return call(node, 'POST', path, { token: node.adminToken, json: data, headers });
}

function patch(path: string, operations: unknown): Promise<Reply> {
  return call(node, 'PATCH', path, { token: node.adminToken, json: operations, contentType: 'application/json-patch+json' });
}

async function dataOf(path: string): Promise<unknown[]> {
  const reply = await call(node, 'GET', `${path}?from=1&limit=1000`, { token: node.adminToken });
  expect(reply.status).toBe(200);
  return reply.body.map((entry: { data: unknown }) => entry.data);
}

/** An error as node's fs gives it when the process is out of file descriptors. */
function emfile(): NodeJS.ErrnoException {
  return Object.assign(new Error("EMFILE: too many open files, open '/data/vnodes/0/x/00000000000000000001.chunk'"), {
    code: 'EMFILE',
    errno: -24,
    syscall: 'open',
  });
}

describe('PATCH is one atomic store call', () => {
  test('the new value and the patch log go in a single appendAtomic call', async () => {
    expect((await post('/streams/atomic/one', { v: 1 })).status).toBe(201);
    node.faults.calls.length = 0;
    expect((await patch('/streams/atomic/one', [{ op: 'replace', path: '/v', value: 2 }])).status).toBe(200);
    expect(node.faults.calls).toEqual([['atomic/one', 'atomic/one-$patch']]);
  });

  test('a fault on the patch log leaves both streams unchanged and answers 503, not 500', async () => {
    expect((await post('/streams/atomic/doc', { v: 1 })).status).toBe(201);
    node.faults.fail = (streams) => (streams.some((stream) => stream.endsWith('-$patch')) ? new IorioError('unavailable', 'injected: the patch log cannot be written') : undefined);
    const reply = await patch('/streams/atomic/doc', [{ op: 'replace', path: '/v', value: 2 }]);
    expect(reply.status).toBe(503);
    expect(reply.body.type).toBe('unavailable');
    expect(await dataOf('/streams/atomic/doc')).toEqual([{ v: 1 }]);
    expect(await dataOf('/streams/atomic/doc-$patch')).toEqual([]);

    node.faults.fail = undefined;
    expect((await patch('/streams/atomic/doc', [{ op: 'replace', path: '/v', value: 2 }])).status).toBe(200);
    expect(await dataOf('/streams/atomic/doc')).toEqual([{ v: 1 }, { v: 2 }]);
    expect(await dataOf('/streams/atomic/doc-$patch')).toEqual([[{ op: 'replace', path: '/v', value: 2 }]]);
  });
  test('a fault on the patched stream leaves the patch log unchanged too', async () => {
    expect((await post('/streams/atomic/other', { v: 1 })).status).toBe(201);
    node.faults.fail = (streams) => (streams.includes('atomic/other') ? new IorioError('unavailable', 'injected: the stream cannot be written') : undefined);
    const reply = await patch('/streams/atomic/other', [{ op: 'replace', path: '/v', value: 2 }]);
    expect({ status: reply.status, type: reply.body.type }).toEqual({ status: 503, type: 'unavailable' });
    expect(await dataOf('/streams/atomic/other')).toEqual([{ v: 1 }]);
    expect(await dataOf('/streams/atomic/other-$patch')).toEqual([]);
  });
});

describe('store failures', () => {
  test('a raw EMFILE from the store is 503 unavailable, never 500, and the node goes on', async () => {
    node.faults.fail = () => emfile();
    const appended = await post('/streams/fd/s', { n: 1 });
    expect({ status: appended.status, type: appended.body.type }).toEqual({ status: 503, type: 'unavailable' });
    node.faults.fail = undefined;
    node.faults.readFailure = emfile();
    const read = await call(node, 'GET', '/streams/fd/s', { token: node.adminToken });
    expect({ status: read.status, type: read.body.type }).toEqual({ status: 503, type: 'unavailable' });
    node.faults.readFailure = undefined;
    expect((await post('/streams/fd/s', { n: 2 })).status).toBe(201);
    expect(await dataOf('/streams/fd/s')).toEqual([{ n: 2 }]);
  });

  test('an append that failed in the store is not remembered: a retry with the same idempotency key writes', async () => {
    node.faults.fail = () => new IorioError('unavailable', 'injected: the disk is busy');
    const headers = { 'idempotency-key': 'store-failure' };
    expect((await post('/streams/retry/s', { n: 1 }, headers)).status).toBe(503);
    node.faults.fail = undefined;
    const retried = await post('/streams/retry/s', { n: 1 }, headers);
    expect(retried.status).toBe(201);
    expect(retried.body.meta.id).toBe(1);
    expect(await dataOf('/streams/retry/s')).toEqual([{ n: 1 }]);
    // Now it is remembered: one more retry writes nothing.
    expect((await post('/streams/retry/s', { n: 1 }, headers)).body).toEqual(retried.body);
    expect(await dataOf('/streams/retry/s')).toEqual([{ n: 1 }]);
  });

  test('an error accepting a connection (EMFILE) does not end the process; it is counted', async () => {
    const before = node.app.iorioCounters.connections.acceptErrors;
    for (let index = 0; index < 5; index += 1) {
      expect(() => node.app.server.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' }))).not.toThrow();
    }
    expect(node.app.iorioCounters.connections.acceptErrors).toBe(before + 5);
    expect((await call(node, 'GET', '/ping')).status).toBe(200);
  });
});

describe('the idempotency window, on the injected clock', () => {
  let clocked: FaultyNode;
  const clock = new ManualClock();

  beforeAll(async () => {
    clocked = await startFaultyNode(clock);
  });
  afterAll(async () => {
    await clocked?.stop();
  });

  test('within idempotencyWindowMs a key is answered from the window; after it, the same key writes again', async () => {
    const send = () => call(clocked, 'POST', '/streams/window/s', { token: clocked.adminToken, json: { n: 1 }, headers: { 'idempotency-key': 'k' } });
    const first = await send();
    expect(first.body.meta.id).toBe(1);
    clock.advance(idempotencyWindowMs - 1);
    expect((await send()).body.meta.id).toBe(1);
    clock.advance(2);
    const later = await send();
    expect(later.status).toBe(201);
    expect(later.body.meta.id).toBe(2);
  });
});
