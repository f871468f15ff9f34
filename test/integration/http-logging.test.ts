/**
 * What a node logs about requests: the access log (log.access, off by
 * default; never a token), and the debug lines of the append and listen
 * paths, read from a real node's log.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { testConfig, type ConfigKey, type ConfigValue } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startNode, type IorioNode } from '../../src/node.js';
import { call, login } from './http-harness.js';

interface LoggedNode {
  node: IorioNode;
  url: string;
  token: string;
  lines: Record<string, any>[];
  stop(): Promise<void>;
}

async function startLoggedNode(overrides: Partial<Record<ConfigKey, ConfigValue>>): Promise<LoggedNode> {
  const root = await mkdtemp(join(tmpdir(), 'iorio-log-'));
  const lines: Record<string, any>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line));
      done();
    },
  });
  const config = testConfig({ 'http.port': 0, 'cluster.port': 0, 'paths.data': join(root, 'data'), 'auth.bcrypt.rounds': 4, 'storage.sync': 'none', ...overrides });
  const node = await startNode(config, { logger: createLogger(config, stream) });
  const token = await login(node.httpUrl, 'admin', 'secret');
  return {
    node,
    url: node.httpUrl,
    token,
    lines,
    async stop() {
      await node.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** The first line matching, waiting for it (an access line is written once the response has gone out). */
async function lineOf(logged: LoggedNode, matches: (line: Record<string, any>) => boolean): Promise<Record<string, any> | undefined> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const line = logged.lines.find(matches);
    if (line !== undefined || Date.now() > deadline) return line;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('access log', () => {
  let logged: LoggedNode;
  beforeAll(async () => {
    logged = await startLoggedNode({ 'log.access': true, 'log.level': 'info' });
  });
  afterAll(async () => {
    await logged?.stop();
  });

  test('one info line per request: method, path, status, ms, user, client address', async () => {
    await call(logged, 'GET', '/ping?probe=1');
    await call(logged, 'GET', '/streams/acc/s', { token: logged.token });
    await call(logged, 'GET', '/users');
    const access = (path: string) => lineOf(logged, (line) => line.component === 'access' && line.path === path);
    expect(await access('/ping?probe=1')).toMatchObject({ level: 30, msg: 'request', method: 'GET', status: 200, ms: expect.any(Number), ip: '127.0.0.1' });
    expect(await access('/streams/acc/s')).toMatchObject({ status: 200, user: 'admin' });
    expect(await access('/users')).toMatchObject({ status: 401, user: 'anonymous' });
  });

  test('a token in the query never reaches the log', async () => {
    const reply = await call(logged, 'GET', `/listen?jwt=${logged.token}&s=acc:s:1&timeout=0.1`);
    expect(reply.status).toBe(204);
    const line = await lineOf(logged, (entry) => entry.component === 'access' && typeof entry.path === 'string' && entry.path.startsWith('/listen'));
    expect(line?.path).toBe('/listen?jwt=<hidden>&s=acc:s:1&timeout=0.1');
    expect(JSON.stringify(logged.lines)).not.toContain(logged.token);
  });

  test('at info, no debug lines of the append path', async () => {
    expect((await call(logged, 'POST', '/streams/acc/s', { token: logged.token, json: { n: 1 } })).status).toBe(201);
    expect(logged.lines.some((line) => line.msg === 'append')).toBe(false);
  });
});

describe('debug lines, access log off (the default)', () => {
  let logged: LoggedNode;
  beforeAll(async () => {
    logged = await startLoggedNode({ 'log.level': 'debug' });
  });
  afterAll(async () => {
    await logged?.stop();
  });

  test('no access lines', async () => {
    await call(logged, 'GET', '/ping');
    expect(logged.lines.some((line) => line.component === 'access')).toBe(false);
  });

  test('an append logs its stream and seqnums; a batch its range', async () => {
    await call(logged, 'POST', '/streams/dbg/s', { token: logged.token, json: { n: 1 } });
    await call(logged, 'POST', '/streams/dbg/s', { token: logged.token, body: '{"n":2}\n{"n":3}\n', contentType: 'application/x-ndjson' });
    const appends = logged.lines.filter((line) => line.msg === 'append');
    expect(appends).toEqual([
      expect.objectContaining({ level: 20, component: 'http', bucket: 'dbg', stream: 's', entries: 1, first: 1, last: 1, replayed: false }),
      expect.objectContaining({ level: 20, component: 'http', bucket: 'dbg', stream: 's', entries: 2, first: 2, last: 3, replayed: false }),
    ]);
  });

  test('a listen logs who listens to what, the streams skipped, and its connection', async () => {
    const reply = await call(logged, 'GET', `/listen?s=dbg:s:2&s=hidden:x&timeout=5`, { token: logged.token });
    expect(reply.status).toBe(200);
    const request = logged.lines.find((line) => line.msg === 'listen: request');
    expect(request).toMatchObject({ component: 'listen', username: 'admin', transport: 'long-poll', streams: ['dbg:s:2', 'hidden:x:now'], skipped: 0, timeoutMs: 5000 });
    expect(logged.lines.some((line) => line.msg === 'listen: connection opened' && line.transport === 'long-poll')).toBe(true);
  });
});
