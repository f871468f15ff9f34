/**
 * Connection bounds and the idle timeout, on real node processes: idle TCP
 * sockets from one client cannot take the file descriptors the node needs,
 * a socket that never sends a whole request is closed, a listener that
 * waits is not, and a node short of descriptors answers 503, never 500, and
 * never exits.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { limitConnections } from '../../src/http/connection-limits.js';
import { createClientErrorHandler } from '../../src/http/errors.js';
import { startTestNode, type TestNode } from './http-harness.js';
import { attempt, loginAs, RawSocket, request, sleep, startNodeProcess, waitFor, type Answer, type NodeProcess } from './node-process.js';

/** Three clients, by source address (Linux routes all of 127.0.0.0/8 to lo). */
const flooder = '127.0.0.1';
const client = '127.0.0.2';
const other = '127.0.0.3';

async function openIdle(node: NodeProcess, count: number, localAddress: string): Promise<RawSocket[]> {
  const sockets = Array.from({ length: count }, () => new RawSocket(node, localAddress));
  await Promise.all(sockets.map((socket) => socket.connected));
  return sockets;
}

/** Waits until exactly `refused` of the sockets were closed by the node, and checks the rest stay open a moment longer. */
async function expectRefused(sockets: RawSocket[], refused: number): Promise<void> {
  await waitFor(`${refused} refusals`, () => sockets.filter((socket) => socket.closed).length >= refused, 10_000);
  await sleep(200);
  expect(sockets.filter((socket) => socket.closed)).toHaveLength(refused);
}

function closeAll(sockets: RawSocket[]): void {
  for (const socket of sockets) socket.close();
}

async function stats(node: NodeProcess, token: string): Promise<any> {
  const answer = await request(node, 'GET', '/stats', { localAddress: client, token });
  expect(answer.status).toBe(200);
  return answer.body.http.connections;
}

function isRefusal(outcome: Answer | { error: string }): boolean {
  if ('error' in outcome) return ['ECONNRESET', 'EPIPE', 'socket hang up'].includes(outcome.error);
  return outcome.status === 503 && outcome.body?.type === 'unavailable';
}

describe('connection bounds: a node process with http.connections.max = 200, per_client.max = 150', () => {
  let node: NodeProcess;
  let token: string;

  beforeAll(async () => {
    node = await startNodeProcess({
      flags: { 'http.connections.max': '200', 'http.connections.per_client.max': '150', 'http.idle_timeout': '60s' },
    });
    token = await loginAs(node, client);
  }, 60_000);
  afterAll(async () => {
    await node?.stop();
  });

  test('400 idle sockets from one address: 150 are held, 250 answered 503 and closed; other clients append and log in', async () => {
    const idle = await openIdle(node, 400, flooder);
    try {
      await expectRefused(idle, 250);
      for (const socket of idle.filter((each) => each.closed)) {
        expect(socket.text).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
        expect(JSON.parse(socket.text.split('\r\n\r\n')[1]!)).toEqual({ type: 'unavailable', reason: expect.stringContaining('per_client') });
      }
      expect((await stats(node, token)).open).toBe(151); // the 150 idle ones and this request

      // Another client is served: a login and appends, each on a fresh connection.
      const fresh = await loginAs(node, client);
      const appended = await request(node, 'POST', '/streams/bounds/s', { localAddress: client, token: fresh, json: { n: 1 } });
      expect(appended.status).toBe(201);

      // The flooding address is refused (a 503, or a reset when its request was already on the wire), and nothing is written.
      const refused = await attempt(node, 'POST', '/streams/bounds/s', { localAddress: flooder, token, json: { n: 'refused' } });
      expect(isRefusal(refused), JSON.stringify(refused)).toBe(true);
      const counted = await stats(node, token);
      expect(counted).toMatchObject({ max: 200, perClientMax: 150, refused: 0 });
      expect(counted.refusedPerClient).toBeGreaterThanOrEqual(251);
    } finally {
      closeAll(idle);
    }
    // As soon as its idle sockets close, the address is served again.
    await waitFor('the flooding address to be served again', async () => (await attempt(node, 'GET', '/ping', { localAddress: flooder }) as Answer).status === 200, 5_000);
    const read = await request(node, 'GET', '/streams/bounds/s?limit=10', { localAddress: flooder, token });
    expect(read.body.map((entry: { data: unknown }) => entry.data)).toEqual([{ n: 1 }]);
  });

  test('past the total bound every address is refused until connections close', async () => {
    const first = await openIdle(node, 150, flooder);
    // The node accepts in its own time, not in the order the client connected: let it count these first.
    await waitFor('the node to count them', async () => (await stats(node, token)).open === 151, 5_000);
    const second = await openIdle(node, 100, other);
    try {
      await expectRefused(first, 0);
      await expectRefused(second, 50);
      for (const socket of second.filter((each) => each.closed)) expect(socket.text).toContain('http.connections.max');
      const outcome = await attempt(node, 'POST', '/streams/bounds/total', { localAddress: client, token, json: { n: 'refused' } });
      expect(isRefusal(outcome), JSON.stringify(outcome)).toBe(true);
    } finally {
      closeAll(second);
    }
    try {
      await waitFor('a client to be served again', async () => (await attempt(node, 'GET', '/ping', { localAddress: client }) as Answer).status === 200, 5_000);
      expect((await request(node, 'POST', '/streams/bounds/total', { localAddress: client, token, json: { n: 2 } })).status).toBe(201);
      const counted = await stats(node, token);
      expect(counted.refused).toBeGreaterThanOrEqual(51);
      expect(counted.open).toBe(151);
    } finally {
      closeAll(first);
    }
    const read = await request(node, 'GET', '/streams/bounds/total?limit=10', { localAddress: client, token });
    expect(read.body.map((entry: { data: unknown }) => entry.data)).toEqual([{ n: 2 }]);
  });

  test('/metrics shows the counts; refusals are logged at most once per 10 s, not once each', async () => {
    const started = Date.now();
    const idle = await openIdle(node, 300, flooder);
    try {
      await expectRefused(idle, 150);
    } finally {
      closeAll(idle);
    }
    const metrics = await request(node, 'GET', '/metrics', { localAddress: client });
    expect(metrics.text).toMatch(/^iorio_http_connections \d+$/m);
    expect(metrics.text).toMatch(/^iorio_http_connections_max 200$/m);
    expect(metrics.text).toMatch(/^iorio_http_connections_per_client_max 150$/m);
    const perClient = Number(/^iorio_http_connections_refused_total\{bound="per_client"\} (\d+)$/m.exec(metrics.text)?.[1]);
    expect(perClient).toBeGreaterThanOrEqual(400);
    const warnings = node.logLines.filter((line) => line.includes('connections refused'));
    // Every test of this file ran within this node's life; allow one warning per started 10 s of it, plus the first.
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings.length).toBeLessThanOrEqual(2 + Math.ceil((Date.now() - started) / 10_000));
    expect(node.exit).toBeUndefined();
  });
});

describe('idle timeout: a node process with http.idle_timeout = 1s', () => {
  const idleMs = 1_000;
  /** node checks every idle/10; allow for a loaded machine. */
  const slackMs = 2_000;
  let node: NodeProcess;
  let token: string;

  beforeAll(async () => {
    node = await startNodeProcess({ flags: { 'http.idle_timeout': '1s', 'http.connections.per_client.max': '100' } });
    token = await loginAs(node, client);
  }, 60_000);
  afterAll(async () => {
    await node?.stop();
  });

  test('a socket that sends nothing is closed after the idle timeout, with no answer', async () => {
    const [socket] = await openIdle(node, 1, flooder);
    await waitFor('the node to close the socket', () => socket!.closed, idleMs + slackMs);
    expect(socket!.closedAtMs! - socket!.openedAtMs).toBeGreaterThanOrEqual(idleMs - 50);
    expect(socket!.text).toBe('');
  });

  test('a socket that sends half a request header is closed after the idle timeout', async () => {
    const [socket] = await openIdle(node, 1, flooder);
    socket!.write('POST /streams/idle/half HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n');
    await waitFor('the node to close the socket', () => socket!.closed, idleMs + slackMs);
    expect(socket!.closedAtMs! - socket!.openedAtMs).toBeGreaterThanOrEqual(idleMs - 50);
    expect((await request(node, 'GET', '/streams/idle/half', { localAddress: client, token })).body).toEqual([]);
  });

  test('a socket that sends a header and then stalls within a trickle is still closed after the idle timeout', async () => {
    const [socket] = await openIdle(node, 1, flooder);
    // A byte every 200 ms: a socket inactivity timer would never fire.
    const trickle = setInterval(() => socket!.write('X'), 200);
    try {
      socket!.write('GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ');
      await waitFor('the node to close the socket', () => socket!.closed, idleMs + slackMs);
    } finally {
      clearInterval(trickle);
    }
  });

  test('a keep-alive connection idle after its answer is closed', async () => {
    const [socket] = await openIdle(node, 1, flooder);
    socket!.write('GET /ping HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor('the answer', () => socket!.text.includes('"pong"'), 5_000);
    const answeredMs = Date.now();
    await waitFor('the node to close the socket', () => socket!.closed, idleMs + slackMs + 1_000);
    expect(socket!.closedAtMs! - answeredMs).toBeGreaterThanOrEqual(idleMs - 50);
  });

  test('a long-poll listener waiting longer than the idle timeout is not cut, and gets its entry', async () => {
    const started = Date.now();
    const poll = request(node, 'GET', `/listen?s=idle:poll&timeout=10`, { localAddress: flooder, token, timeoutMs: 20_000 });
    await sleep(3 * idleMs);
    expect((await request(node, 'POST', '/streams/idle/poll', { localAddress: client, token, json: { late: true } })).status).toBe(201);
    const answer = await poll;
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual([{ meta: { id: 1, t: expect.any(Number), bucket: 'idle', stream: 'poll' }, data: { late: true } }]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3 * idleMs);
  });

  test('a long-poll that times out by itself answers 204 after its own timeout, not the idle one', async () => {
    const started = Date.now();
    const answer = await request(node, 'GET', `/listen?s=idle:quiet&timeout=3`, { localAddress: flooder, token, timeoutMs: 20_000 });
    expect(answer.status).toBe(204);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_900);
  });

  test('WebSocket and SSE listeners idle longer than the timeout stay open and get the next entry', async () => {
    const socket = new WebSocket(`ws://${node.host}:${node.port}/listen?jwt=${token}&s=idle:live`, { localAddress: flooder });
    const events: unknown[] = [];
    let wsClosed = false;
    socket.on('message', (data) => events.push(JSON.parse(data.toString())));
    socket.on('close', () => (wsClosed = true));
    await new Promise<void>((resolveOpen, reject) => {
      socket.once('open', () => resolveOpen());
      socket.once('error', reject);
    });
    const [sse] = await openIdle(node, 1, flooder);
    sse!.write(`GET /listen?s=idle:live&jwt=${token} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
    try {
      await sleep(3 * idleMs);
      expect(wsClosed).toBe(false);
      expect(sse!.closed).toBe(false);
      expect((await request(node, 'POST', '/streams/idle/live', { localAddress: client, token, json: { n: 1 } })).status).toBe(201);
      await waitFor('the WebSocket event', () => events.length === 1, 5_000);
      await waitFor('the SSE event', () => sse!.text.includes('"data":{"n":1}'), 5_000);
      expect(events[0]).toEqual([{ meta: { id: 1, t: expect.any(Number), bucket: 'idle', stream: 'live' }, data: { n: 1 } }]);
    } finally {
      socket.close();
      sse!.close();
    }
  });

  test('idle sockets filling a client’s bound hold it only until they time out', async () => {
    // On a loaded machine the first of 100 sockets may time out (1 s) before the last is open: such a round proves
    // nothing and is made again (bounded), so no timing decides the outcome.
    for (let round = 0; round < 5; round++) {
      const idle = await openIdle(node, 100, flooder);
      try {
        const counted = (await stats(node, token)).open >= 101;
        const outcome = await attempt(node, 'GET', '/ping', { localAddress: flooder });
        if (!counted || idle.some((socket) => socket.closed)) continue;
        expect(isRefusal(outcome)).toBe(true);
        await waitFor('the idle sockets to time out', () => idle.every((socket) => socket.closed), idleMs + slackMs);
        expect((await request(node, 'GET', '/ping', { localAddress: flooder })).status).toBe(200);
        expect((await stats(node, token)).timedOut).toBeGreaterThanOrEqual(100);
        return;
      } finally {
        closeAll(idle);
        await waitFor('the round\'s sockets to close', () => idle.every((socket) => socket.closed), idleMs + slackMs);
      }
    }
    throw new Error('in five rounds, 100 idle sockets were never all open together');
  });
});

describe('a node process with a low open-file limit (prlimit --nofile=512:512) under a connection flood', () => {
  const openFilesLimit = 512;

  /** Appends to fresh streams (each one new chunk files) from another client; each outcome as a status or a network error. */
  async function appendOutcomes(node: NodeProcess, token: string, prefix: string, streams: number): Promise<string[]> {
    const outcomes: string[] = [];
    for (let index = 0; index < streams; index += 1) {
      const outcome = await attempt(node, 'POST', `/streams/fd/${prefix}${index}`, { localAddress: client, token, json: { index } });
      outcomes.push('error' in outcome ? `network:${outcome.error}` : String(outcome.status));
    }
    return outcomes;
  }

  function internalErrors(node: NodeProcess): string[] {
    return node.logLines.filter((line) => line.includes('"msg":"internal error"'));
  }

  test('with the bound derived from the limit, 1,200 idle sockets from one address leave other clients served, and no descriptor runs out', async () => {
    const node = await startNodeProcess({ openFilesLimit, flags: { 'storage.files.max': '64' } });
    try {
      const token = await loginAs(node, client);
      const flood = await openIdle(node, 1_200, flooder);
      try {
        // max(512 / 4, 512 - 64 - 1024) = 128 in all, half of it per client.
        await expectRefused(flood, 1_200 - 64);
        expect(await appendOutcomes(node, token, 'derived', 40)).toEqual(Array(40).fill('201'));
        const counted = await stats(node, token);
        expect(counted).toMatchObject({ max: 128, perClientMax: 64, acceptErrors: 0 });
      } finally {
        closeAll(flood);
      }
      expect(internalErrors(node)).toEqual([]);
      expect(node.exit).toBeUndefined();
    } finally {
      await node.stop();
    }
  }, 60_000);

  test('with a bound set above the limit, accepts run out of descriptors: the node never exits, appends get 201 or 503 (or a reset), never 500, and it serves again once the flood ends', async () => {
    const unbounded = { 'http.connections.max': '100000', 'http.connections.per_client.max': '100000', 'storage.files.max': '64' };
    const node = await startNodeProcess({ openFilesLimit, flags: unbounded });
    try {
      const token = await loginAs(node, client);
      // Grow the flood until the node resets connections it cannot accept (EMFILE), then give a few descriptors
      // back, so that requests get in at times and the store may or may not open its files.
      const flood: RawSocket[] = [];
      while (flood.length < 2 * openFilesLimit && !flood.some((socket) => socket.closed)) {
        flood.push(...(await openIdle(node, 10, flood.length % 20 === 0 ? flooder : other)));
        await sleep(10);
      }
      expect(flood.some((socket) => socket.closed)).toBe(true);
      const during: string[] = [];
      try {
        during.push(...(await appendOutcomes(node, token, 'full', 10)));
        for (const socket of flood.filter((each) => !each.closed).slice(0, 5)) socket.close();
        await sleep(50);
        during.push(...(await appendOutcomes(node, token, 'tight', 30)));
      } finally {
        closeAll(flood);
      }
      const allowed = new Set(['201', '503', 'network:ECONNRESET', 'network:EPIPE']);
      expect(during.filter((outcome) => !allowed.has(outcome))).toEqual([]);
      await waitFor('the node to serve again', async () => ((await attempt(node, 'GET', '/ping', { localAddress: client })) as Answer).status === 200, 10_000);
      expect(await appendOutcomes(node, token, 'after', 20)).toEqual(Array(20).fill('201'));
      expect(internalErrors(node)).toEqual([]);
      expect(node.exit).toBeUndefined();
    } finally {
      await node.stop();
    }
  }, 60_000);
});

describe('HTTPS beside HTTP shares the bound (limitConnections on the second server, as src/node.ts must call it)', () => {
  const idleMs = 2_000;
  let node: TestNode;
  let secure: https.Server;
  let securePort = 0;
  let certDir = '';

  beforeAll(async () => {
    certDir = await mkdtemp(join(tmpdir(), 'iorio-cert-'));
    const certFile = join(certDir, 'cert.pem');
    const keyFile = join(certDir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    node = await startTestNode({ 'http.connections.max': 20, 'http.connections.per_client.max': 20, 'http.idle_timeout': idleMs });
    const app = node.node.app;
    secure = https.createServer(
      { cert: readFileSync(certFile), key: readFileSync(keyFile), handshakeTimeout: node.node.config['http.idle_timeout'] },
      (request, response) => app.routing(request, response),
    );
    secure.on('clientError', createClientErrorHandler(app.log as unknown as Logger, app.iorioCounters.connections));
    limitConnections(secure, app.iorioConnections);
    await new Promise<void>((resolveListen) => secure.listen(0, '127.0.0.1', () => resolveListen()));
    securePort = (secure.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolveClose) => {
      secure?.close(() => resolveClose());
      secure?.closeAllConnections();
    });
    await node?.stop();
    await rm(certDir, { recursive: true, force: true });
  });

  function securePing(): Promise<number | string> {
    return new Promise((resolvePing) => {
      const outgoing = https.get({ host: '127.0.0.1', port: securePort, path: '/ping', rejectUnauthorized: false, agent: false }, (response) => {
        response.resume();
        response.on('end', () => resolvePing(response.statusCode ?? 0));
      });
      outgoing.on('error', (error: NodeJS.ErrnoException) => resolvePing(error.code ?? error.message));
    });
  }

  test('HTTP and HTTPS connections count against one bound; a refused TLS connection is closed', async () => {
    const { hostname, port } = new URL(node.url);
    const counters = node.node.app.iorioCounters.connections;
    // The harness's own keep-alive connection counts too: let it time out first.
    await waitFor('no connection to be open', () => counters.open === 0, 3 * idleMs);
    const plain = await openIdle({ host: hostname, port: Number(port) } as NodeProcess, 15, '127.0.0.1');
    // The node accepts in its own time, not in the order the client connected: let it count these first.
    await waitFor('the node to count the plain connections', () => counters.open === 15, 5_000);
    const tls = await openIdle({ host: '127.0.0.1', port: securePort } as NodeProcess, 10, '127.0.0.1');
    try {
      await expectRefused(plain, 0);
      await expectRefused(tls, 5);
      // A TLS client cannot read a plain 503: refused TLS connections are closed without one.
      for (const socket of tls.filter((each) => each.closed)) expect(socket.text).toBe('');
      expect(counters.open).toBe(20);
      expect(await securePing()).not.toBe(200);
    } finally {
      closeAll(plain);
    }
    try {
      await waitFor('HTTPS to be served again', async () => (await securePing()) === 200, 5_000);
    } finally {
      closeAll(tls);
    }
  });

  test('a TLS connection that never sends a byte is closed after the idle timeout', async () => {
    const [socket] = await openIdle({ host: '127.0.0.1', port: securePort } as NodeProcess, 1, '127.0.0.1');
    await waitFor('the node to close the socket', () => socket!.closed, idleMs + 3_000);
    expect(socket!.closedAtMs! - socket!.openedAtMs).toBeGreaterThanOrEqual(idleMs - 100);
  });
});
