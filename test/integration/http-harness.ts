/**
 * Shared by the http-*.test.ts suites: a real node (startNode, port 0) on a
 * fresh temp folder `<root>/data`, plain fetch helpers, and a walk of `<root>`
 * to prove nothing was written outside the data folder.
 */
import http from 'node:http';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import pino from 'pino';
import { testConfig, type ConfigKey, type ConfigValue } from '../../src/config.js';
import type { Clock } from '../../src/core/clock.js';
import { startNode, type IorioNode } from '../../src/node.js';

/** A known signing secret, so tests can forge expired or foreign tokens. */
export const testSecret = 'integration-test-secret-0123456789abcdef';

export interface TestNode {
  node: IorioNode;
  url: string;
  root: string;
  dataDir: string;
  adminToken: string;
  stop(): Promise<void>;
}

/** `options.clock`: the node's clock (a ManualClock freezes time: every token of a test is issued in the same second). */
export async function startTestNode(overrides: Partial<Record<ConfigKey, ConfigValue>> = {}, options: { clock?: Clock } = {}): Promise<TestNode> {
  const root = await mkdtemp(join(tmpdir(), 'iorio-http-'));
  const dataDir = join(root, 'data');
  const config = testConfig({
    'http.port': 0,
    'cluster.port': 0,
    'paths.data': dataDir,
    'auth.bcrypt.rounds': 4,
    'auth.secret': testSecret,
    'storage.sync': 'none',
    'http.ratelimit.enabled': false,
    ...overrides,
  });
  const node = await startNode(config, { logger: pino({ level: process.env['IORIO_TEST_LOG'] ?? 'silent' }), ...options });
  const url = node.httpUrl;
  let adminToken = '';
  try {
    adminToken = await login(url, 'admin', 'secret');
  } catch (error) {
    await node.stop();
    throw error;
  }
  return {
    node,
    url,
    root,
    dataDir,
    adminToken,
    async stop() {
      await node.stop();
      await node.auth.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body (undefined when it is not JSON). */
  body: any;
}

export interface RequestOptions {
  token?: string;
  headers?: Record<string, string>;
  /** A value to send as JSON, or a raw string / Buffer body. */
  json?: unknown;
  body?: string | Buffer;
  contentType?: string;
  /**
   * Send the path byte for byte (node:http) instead of through fetch, whose
   * URL parser resolves `..` and `%2e%2e` segments before sending.
   */
  raw?: boolean;
  /**
   * Connect from this loopback address (127.0.0.2, ...; through node:http),
   * so that the node sees another client address.
   */
  localAddress?: string;
}

export async function call(node: { url: string }, method: string, path: string, options: RequestOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.token !== undefined) headers['x-session'] = options.token;
  let body: string | Buffer | undefined;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers['content-type'] = options.contentType ?? 'application/json';
  } else if (options.body !== undefined) {
    body = options.body;
    if (options.contentType !== undefined) headers['content-type'] = options.contentType;
  }
  const { status, responseHeaders, text } = options.raw || options.localAddress !== undefined
    ? await rawRequest(node.url, method, path, headers, body, options.localAddress)
    : await fetchRequest(node.url, method, path, headers, body);

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status, headers: responseHeaders, text, body: parsed };
}

interface RawReply {
  status: number;
  responseHeaders: Headers;
  text: string;
}

async function fetchRequest(url: string, method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<RawReply> {
  const response = await fetch(`${url}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
  return { status: response.status, responseHeaders: response.headers, text: await response.text() };
}

function rawRequest(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string | Buffer,
  localAddress?: string,
): Promise<RawReply> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const request = http.request({ host: hostname, port, method, path, headers, localAddress }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const responseHeaders = new Headers();
        for (const [name, value] of Object.entries(response.headers)) {
          if (typeof value === 'string') responseHeaders.set(name, value);
        }
        resolve({ status: response.statusCode ?? 0, responseHeaders, text: Buffer.concat(chunks).toString('utf8') });
      });
      response.on('error', reject);
    });
    request.setTimeout(10_000, () => request.destroy(new Error(`${method} ${path}: no answer within 10 s`)));
    request.on('error', reject);
    request.end(body);
  });
}

export async function login(url: string, username: string, password: string): Promise<string> {
  const response = await fetch(`${url}/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (response.status !== 201) throw new Error(`login ${username}: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { token: string }).token;
}

/** Creates a user (as admin) and returns a session token for it. */
export async function createUser(node: TestNode, username: string, password = 'pw-' + username): Promise<string> {
  const created = await call(node, 'POST', '/users', { token: node.adminToken, json: { username, password } });
  if (created.status !== 201) throw new Error(`create user ${username}: ${created.status} ${created.text}`);
  return login(node.url, username, password);
}

export async function append(node: TestNode, bucket: string, stream: string, data: unknown, token = node.adminToken): Promise<number> {
  const reply = await call(node, 'POST', `/streams/${bucket}/${stream}`, { token, json: data });
  if (reply.status !== 201) throw new Error(`append ${bucket}/${stream}: ${reply.status} ${reply.text}`);
  return reply.body.meta.id as number;
}

export async function readAll(node: TestNode, bucket: string, stream: string): Promise<{ meta: { id: number; t: number }; data: unknown }[]> {
  const reply = await call(node, 'GET', `/streams/${bucket}/${stream}?from=1&limit=1000`, { token: node.adminToken });
  if (reply.status !== 200) throw new Error(`read ${bucket}/${stream}: ${reply.status} ${reply.text}`);
  return reply.body;
}

/** Every path under `root`, relative to it, sorted. */
export async function walk(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true });
  return entries.map((entry) => relative(root, join(root, entry))).sort();
}

/** Asserts a 4xx error reply of the documented shape. */
export function errorOf(reply: Reply): { status: number; type: string } {
  if (reply.body === undefined || typeof reply.body.type !== 'string' || typeof reply.body.reason !== 'string') {
    throw new Error(`not an error body (${reply.status}): ${reply.text}`);
  }
  return { status: reply.status, type: reply.body.type };
}
