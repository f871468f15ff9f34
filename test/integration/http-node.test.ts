import { execFileSync } from 'node:child_process';
import https from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { append, call, createUser, readAll, startTestNode, type TestNode } from './http-harness.js';

let node: TestNode;
let alice: string;

beforeAll(async () => {
  node = await startTestNode();
  alice = await createUser(node, 'alice');
});
afterAll(async () => {
  await node?.stop();
});

describe('/ping, /stats, /metrics', () => {
  test('/ping needs no auth and names a partition and the node', async () => {
    const reply = await call(node, 'GET', '/ping?1732200000.12');
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ pong: expect.stringMatching(/^[0-9]+$/), node: 'iorio@127.0.0.1', version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    expect(Number(reply.body.pong)).toBeLessThan(node.node.config['ring.size']);
  });

  test('/stats reports store and http counters (who may see it: http-metrics.test.ts)', async () => {
    await append(node, 'st', 's', { x: 1 });
    const reply = await call(node, 'GET', '/stats', { token: node.adminToken });
    expect(reply.status).toBe(200);
    expect(reply.body.node).toBe('iorio@127.0.0.1');
    expect(reply.body.store.appends).toBeGreaterThanOrEqual(1);
    expect(reply.body.http.appends).toBeGreaterThanOrEqual(1);
    expect(reply.body.http.requests).toBeGreaterThan(1);
  });

  test('/metrics serves Prometheus text to a loopback client', async () => {
    const reply = await call(node, 'GET', '/metrics');
    expect(reply.status).toBe(200);
    expect(reply.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(reply.text).toMatch(/^# HELP iorio_/m);
    expect(reply.text).toMatch(/^iorio_http_requests_total [0-9]+$/m);
    expect(reply.text).toMatch(/^iorio_store_appends_total [0-9]+$/m);
    expect(reply.text).toMatch(/^iorio_http_request_duration_seconds_bucket\{/m);
  });

  test('an unknown route is 404 {type: not-found}', async () => {
    const reply = await call(node, 'GET', '/nowhere');
    expect(reply.status).toBe(404);
    expect(reply.body).toEqual({ type: 'not-found', reason: expect.any(String) });
    expect((await call(node, 'PUT', '/streams/a/b', { token: node.adminToken, json: 1 })).status).toBe(404);
  });
});

describe('/policies', () => {
  test('GET of none is {}; PUT, GET, DELETE on a bucket and a stream', async () => {
    expect((await call(node, 'GET', '/policies/pol', { token: node.adminToken })).body).toEqual({});
    const put = await call(node, 'PUT', '/policies/pol', { token: node.adminToken, json: { max_count: 100, max_bytes: 1_000_000, max_age_secs: 3600 } });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ ok: true });
    expect((await call(node, 'GET', '/policies/pol/', { token: node.adminToken })).body).toEqual({ max_count: 100, max_bytes: 1_000_000, max_age_secs: 3600 });
    await call(node, 'PUT', '/policies/pol/s', { token: node.adminToken, json: { max_count: 5 } });
    expect((await call(node, 'GET', '/policies/pol/s', { token: node.adminToken })).body).toEqual({ max_count: 5 });
    const deleted = await call(node, 'DELETE', '/policies/pol/s', { token: node.adminToken });
    expect(deleted.body).toEqual({ ok: true });
    expect((await call(node, 'GET', '/policies/pol/s', { token: node.adminToken })).body).toEqual({});
    expect((await call(node, 'GET', '/policies/pol', { token: node.adminToken })).body.max_count).toBe(100);
  });

  test('policies need grant; the owner of a bucket has it', async () => {
    expect((await call(node, 'PUT', '/policies/pol', { token: alice, json: { max_count: 1 } })).status).toBe(401);
    expect((await call(node, 'GET', '/policies/pol', { token: alice })).status).toBe(401);
    expect((await call(node, 'DELETE', '/policies/pol', { token: alice })).status).toBe(401);
    expect((await call(node, 'PUT', '/policies/_user_alice', { token: alice, json: { max_count: 10 } })).status).toBe(200);
    expect((await call(node, 'GET', '/policies/pol', { token: node.adminToken })).body.max_count).toBe(100);
  });
});

describe('configured features', () => {
  // Over the limit: IorioDB's answer, 400 rate-limited (iorio_http.erl:19, 35-44).
  test('rate limits are per user: 400 rate-limited beyond the limit', async () => {
    const limited = await startTestNode({ 'http.ratelimit.enabled': true, 'http.ratelimit.max': 5, 'http.ratelimit.window': 60_000 });
    try {
      const bob = await createUser(limited, 'bob');
      const statuses: number[] = [];
      let last;
      for (let index = 0; index < 8; index += 1) {
        last = await call(limited, 'POST', '/streams/_user_bob/s', { token: bob, json: { index } });
        statuses.push(last.status);
      }
      expect(statuses.filter((status) => status === 201)).toHaveLength(5);
      expect(statuses.slice(5)).toEqual([400, 400, 400]);
      expect(last!.body).toEqual({ type: 'rate-limited', reason: expect.any(String), retry_after_secs: expect.any(Number) });
      expect(await readAll(limited, '_user_bob', 's')).toHaveLength(5);
      // Another user has a budget of their own.
      expect((await call(limited, 'GET', '/sessions', { token: limited.adminToken })).status).toBe(200);
    } finally {
      await limited.stop();
    }
  });

  test('CORS headers only when enabled', async () => {
    const preflight = { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-session,content-type' };
    const off = await call(node, 'GET', '/ping', { headers: { Origin: 'https://app.example' } });
    expect(off.headers.get('access-control-allow-origin')).toBeNull();
    const corsNode = await startTestNode({ 'http.cors.enabled': true, 'http.cors.origins': 'https://app.example' });
    try {
      const reply = await call(corsNode, 'OPTIONS', '/streams/b/s', { headers: preflight });
      expect(reply.status).toBeLessThan(300);
      expect(reply.headers.get('access-control-allow-origin')).toBe('https://app.example');
      expect(reply.headers.get('access-control-allow-headers')).toContain('x-session');
      const denied = await call(corsNode, 'GET', '/streams/b/s', { headers: { Origin: 'https://app.example' }, token: 'bad' });
      expect(denied.status).toBe(401);
      expect(denied.headers.get('access-control-allow-origin')).toBe('https://app.example');
      expect(denied.headers.get('access-control-expose-headers')).toContain('x-iorio-first-seqnum');
      const other = await call(corsNode, 'GET', '/ping', { headers: { Origin: 'https://evil.example' } });
      expect(other.headers.get('access-control-allow-origin')).not.toBe('https://evil.example');
    } finally {
      await corsNode.stop();
    }
  });

  test('HTTPS beside HTTP when configured', async () => {
    const certDir = await mkdtemp(join(tmpdir(), 'iorio-cert-'));
    const cert = join(certDir, 'cert.pem');
    const key = join(certDir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], {
      stdio: 'ignore',
    });
    const secure = await startTestNode({ 'https.enabled': true, 'https.port': 0, 'https.cert': cert, 'https.key': key });
    try {
      expect(secure.node.httpsUrl).toMatch(/^https:\/\/127\.0\.0\.1:[0-9]+$/);
      const body = await new Promise<string>((resolve, reject) => {
        const request = https.get(`${secure.node.httpsUrl}/ping`, { rejectUnauthorized: false }, (response) => {
          let text = '';
          response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
          response.on('end', () => resolve(text));
        });
        request.setTimeout(10_000, () => request.destroy(new Error('no answer')));
        request.on('error', reject);
      });
      expect(JSON.parse(body)).toMatchObject({ node: 'iorio@127.0.0.1' });
      expect((await call(secure, 'GET', '/ping')).status).toBe(200);
    } finally {
      await secure.stop();
      await rm(certDir, { recursive: true, force: true });
    }
  });

  test('the node appends its metrics to $sys/metrics every metrics.interval', async () => {
    const metered = await startTestNode({ 'metrics.interval': 50 });
    try {
      let entries: { data: any }[] = [];
      const deadline = Date.now() + 10_000;
      while (entries.length < 2 && Date.now() < deadline) {
        entries = await readAll(metered, '$sys', 'metrics');
        if (entries.length < 2) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(entries.length).toBeGreaterThanOrEqual(2);
      expect(entries[0]!.data).toMatchObject({ node: 'iorio@127.0.0.1', http: expect.any(Object), store: expect.any(Object) });
      // A week of snapshots is kept by default, so $sys does not grow forever.
      expect(metered.node.store.getPolicy('$sys', 'metrics')).toEqual({ max_count: Math.ceil((7 * 24 * 3600 * 1000) / 50) });
    } finally {
      await metered.stop();
    }
  });

  test('metrics.enabled = no: no $sys/metrics stream and /metrics is 404', async () => {
    const quiet = await startTestNode({ 'metrics.enabled': false, 'metrics.interval': 20 });
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await readAll(quiet, '$sys', 'metrics')).toEqual([]);
      expect((await call(quiet, 'GET', '/metrics')).status).toBe(404);
    } finally {
      await quiet.stop();
    }
  });
});
