/**
 * Shared by the listen*.test.ts suites: a real node on a temp data dir,
 * sessions, appends, and small WebSocket / SSE / long-poll clients with
 * bounded waits (every wait has a deadline and fails the test when it passes).
 */
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import WebSocket from 'ws';
import { testConfig, type ConfigKey, type ConfigValue } from '../../src/config.js';
import type { Clock } from '../../src/core/clock.js';
import { startNode, type IorioNode } from '../../src/node.js';
import { login } from './http-harness.js';

export interface ListenEvent {
  meta: { id: number; t: number; bucket: string; stream: string };
  data: unknown;
}

export interface TestNode {
  node: IorioNode;
  url: string;
  wsUrl: string;
  adminToken: string;
  stop(): Promise<void>;
}

export async function startTestNode(overrides: Partial<Record<ConfigKey, ConfigValue>> = {}, options: { clock?: Clock } = {}): Promise<TestNode> {
  const dataDir = await mkdtemp(join(tmpdir(), 'iorio-listen-'));
  const config = testConfig({
    'http.port': 0,
    'cluster.port': 0,
    'paths.data': dataDir,
    'auth.bcrypt.rounds': 4,
    'http.ratelimit.enabled': false,
    ...overrides,
  });
  const node = await startNode(config, { logger: pino({ level: process.env['IORIO_TEST_LOG'] ?? 'silent' }), ...options });
  const url = node.httpUrl;
  const adminToken = await login(url, 'admin', 'secret');
  return {
    node,
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    adminToken,
    async stop() {
      await node.stop();
      await node.auth.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export { login };

export async function createUser(test: TestNode, username: string, password: string): Promise<string> {
  const response = await fetch(`${test.url}/users`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-session': test.adminToken },
    body: JSON.stringify({ username, password }),
  });
  if (response.status !== 201) throw new Error(`create user ${username}: ${response.status} ${await response.text()}`);
  return login(test.url, username, password);
}

/** Appends `count` entries `{n: first..}` over HTTP as admin, one POST each; returns their seqnums. */
export async function postEntries(test: TestNode, bucket: string, stream: string, values: unknown[]): Promise<number[]> {
  const ids: number[] = [];
  for (const value of values) {
    const response = await fetch(`${test.url}/streams/${bucket}/${stream}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session': test.adminToken },
      body: JSON.stringify(value),
    });
    if (response.status !== 201) throw new Error(`append: ${response.status} ${await response.text()}`);
    ids.push(((await response.json()) as { meta: { id: number } }).meta.id);
  }
  return ids;
}

/** Appends through the store directly (fast setup of many entries), one batch per call. */
export async function storeEntries(test: TestNode, bucket: string, stream: string, values: unknown[]): Promise<void> {
  await test.node.store.append({ bucket, stream, payloads: values.map((value) => Buffer.from(JSON.stringify(value), 'utf8')) });
}

/** The node's listen gauges from /metrics: open connections per transport, and streams with listeners. */
export async function listenGauges(test: TestNode): Promise<{ websocket: number; sse: number; longPoll: number; streams: number }> {
  const response = await fetch(`${test.url}/metrics`, { headers: { 'x-session': test.adminToken } });
  if (response.status !== 200) throw new Error(`metrics: ${response.status}`);
  const text = await response.text();
  const gauge = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
  return {
    websocket: gauge(/^iorio_listen_connections\{transport="websocket"\} (\d+)$/m),
    sse: gauge(/^iorio_listen_connections\{transport="sse"\} (\d+)$/m),
    longPoll: gauge(/^iorio_listen_connections\{transport="long-poll"\} (\d+)$/m),
    streams: gauge(/^iorio_listen_streams (\d+)$/m),
  };
}

/** Polls the gauges until `condition` holds (bounded). */
export async function waitForGauges(
  test: TestNode,
  what: string,
  condition: (gauges: Awaited<ReturnType<typeof listenGauges>>) => boolean,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = await listenGauges(test);
  while (!condition(last)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; gauges ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    last = await listenGauges(test);
  }
}

export function range(first: number, last: number): number[] {
  return Array.from({ length: Math.max(0, last - first + 1) }, (_, index) => first + index);
}

/** Resolves when `condition()` holds; rejects after `timeoutMs` naming what was awaited. */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A WebSocket listen client that records every message it gets. */
export class ListenSocket {
  readonly messages: unknown[] = [];
  readonly events: ListenEvent[] = [];
  closeCode: number | undefined;
  closeReason: string | undefined;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString()) as unknown;
      this.messages.push(message);
      if (Array.isArray(message)) this.events.push(...(message as ListenEvent[]));
    });
    socket.on('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
    });
  }

  /** Opens /listen with the given query; rejects with the HTTP status when the upgrade is refused. */
  static open(wsUrl: string, query: string, headers: Record<string, string> = {}): Promise<ListenSocket> {
    const socket = new WebSocket(`${wsUrl}/listen${query}`, { headers });
    const client = new ListenSocket(socket);
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(client));
      socket.once('unexpected-response', (_request, response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => reject(new UpgradeRefused(response.statusCode ?? 0, body)));
      });
      socket.once('error', reject);
    });
  }

  send(command: Record<string, unknown>): void {
    this.socket.send(JSON.stringify(command));
  }

  /** Sends a command and resolves with the reply carrying its id. */
  async command(command: Record<string, unknown>): Promise<Record<string, unknown>> {
    const isReply = (message: unknown) =>
      typeof message === 'object' && message !== null && !Array.isArray(message) && 'ok' in message && (message as { id?: unknown }).id === command['id'];
    this.send(command);
    await waitFor(`reply to ${JSON.stringify(command)}`, () => this.messages.some(isReply));
    return this.messages.find(isReply) as Record<string, unknown>;
  }

  ids(bucket?: string, stream?: string): number[] {
    return this.events.filter((event) => (bucket === undefined || event.meta.bucket === bucket) && (stream === undefined || event.meta.stream === stream)).map((event) => event.meta.id);
  }

  async waitForEvents(count: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(`${count} events (have ${this.events.length})`, () => this.events.length >= count, timeoutMs);
  }

  async close(): Promise<void> {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.close();
    });
  }
}

export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade refused with ${status}: ${body}`);
  }
}

export interface LongPollResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A long-poll GET that can be abandoned (the client goes away). */
export function longPoll(url: string, query: string, headers: Record<string, string> = {}, agent?: http.Agent): { done: Promise<LongPollResult>; abort(): void } {
  let request: http.ClientRequest | undefined;
  const done = new Promise<LongPollResult>((resolve, reject) => {
    request = http.get(`${url}/listen${query}`, { headers, agent: agent ?? false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
      response.on('error', reject);
    });
    request.on('error', reject);
  });
  return { done, abort: () => request?.destroy() };
}

/** An SSE client: parses `data:` events, keeps comments apart. */
export class SseClient {
  readonly data: unknown[] = [];
  readonly comments: string[] = [];
  readonly namedEvents: { event: string; data: string }[] = [];
  /** The `id:` of every event that had one, in order. */
  readonly ids: string[] = [];
  status = 0;
  headers: http.IncomingHttpHeaders = {};
  ended = false;
  private buffer = '';
  private request: http.ClientRequest | undefined;

  static open(url: string, query: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const client = new SseClient();
    return new Promise((resolve, reject) => {
      client.request = http.get(`${url}/listen${query}`, { headers: { accept: 'text/event-stream', ...headers }, agent: false }, (response) => {
        client.status = response.statusCode ?? 0;
        client.headers = response.headers;
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => client.feed(chunk));
        response.on('end', () => (client.ended = true));
        response.on('error', () => (client.ended = true));
        resolve(client);
      });
      client.request.on('error', reject);
    });
  }

  get events(): ListenEvent[] {
    return this.data.filter(Array.isArray).flat() as ListenEvent[];
  }

  close(): void {
    this.request?.destroy();
  }

  private feed(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
        else if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trimStart();
        else if (line.startsWith('id:')) this.ids.push(line.slice(3).trim());
      }
      if (data === '') continue;
      if (event === 'message') this.data.push(JSON.parse(data));
      else this.namedEvents.push({ event, data });
    }
  }
}
