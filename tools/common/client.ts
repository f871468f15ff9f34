/**
 * A small Iorio HTTP client for the tools (apitest, ioriocli, bench):
 * node:http with a keep-alive agent, JSON in and out, the session token in
 * `x-session`. `request()` never throws on an HTTP status, only on a network
 * error or a timeout; the typed helpers throw `ApiError` on an unexpected
 * status so callers can print `{type, reason}`.
 */
import http from 'node:http';
import https from 'node:https';

export interface ClientOptions {
  /** e.g. `http://127.0.0.1:8080` (no trailing slash needed). */
  readonly baseUrl: string;
  readonly token?: string;
  /** Shared agent; the client creates (and owns) one when absent. */
  readonly agent?: http.Agent;
  /** Default per-request timeout. */
  readonly timeoutMs?: number;
}

export interface RequestOptions {
  readonly body?: string | Buffer;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

export interface HttpReply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
  /** The parsed JSON body, or undefined when the body is empty or not JSON. */
  readonly body: unknown;
}

export interface EntryMeta {
  readonly id: number;
  readonly t: number;
}

export interface Entry {
  readonly meta: EntryMeta;
  readonly data: unknown;
}

export interface ListenEvent {
  readonly meta: { readonly id: number; readonly t: number; readonly bucket: string; readonly stream: string };
  readonly data: unknown;
}

export interface Subscription {
  readonly bucket: string;
  readonly stream: string;
  /** First seqnum wanted; absent: from "now". */
  readonly from?: number;
}

/** An unexpected HTTP status (or a body of the wrong shape), with the server's `{type, reason}` when it sent one. */
export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly reason: string;
  readonly body: unknown;

  constructor(status: number, body: unknown, fallbackReason?: string) {
    const record = isRecord(body) ? body : {};
    const type = typeof record['type'] === 'string' ? record['type'] : `http-${status}`;
    const reason = typeof record['reason'] === 'string' ? record['reason'] : (fallbackReason ?? `unexpected status ${status}`);
    super(`${status} ${type}: ${reason}`);
    this.name = 'ApiError';
    this.status = status;
    this.type = type;
    this.reason = reason;
    this.body = body;
  }

  toJSON(): Record<string, unknown> {
    return isRecord(this.body) ? { status: this.status, ...this.body } : { status: this.status, type: this.type, reason: this.reason };
  }
}

export const defaultTimeoutMs = 30_000;

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function streamPath(bucket: string, stream?: string): string {
  const base = `/streams/${encodeURIComponent(bucket)}`;
  return stream === undefined ? base : `${base}/${encodeURIComponent(stream)}`;
}

/** `s=bucket:stream[:from]` query values of a listen request. */
export function subscriptionQuery(subscriptions: readonly Subscription[]): string {
  return subscriptions
    .map(({ bucket, stream, from }) => 's=' + encodeURIComponent(from === undefined ? `${bucket}:${stream}` : `${bucket}:${stream}:${from}`))
    .join('&');
}

export class IorioClient {
  readonly baseUrl: URL;
  token: string | undefined;
  private readonly agent: http.Agent;
  private readonly ownsAgent: boolean;
  private readonly timeoutMs: number;

  constructor(options: ClientOptions) {
    this.baseUrl = new URL(options.baseUrl);
    this.token = options.token;
    const isHttps = this.baseUrl.protocol === 'https:';
    this.ownsAgent = options.agent === undefined;
    this.agent = options.agent ?? (isHttps ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true }));
    this.timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  }

  /** Closes the client's own keep-alive sockets (not a shared agent's). */
  close(): void {
    if (this.ownsAgent) this.agent.destroy();
  }

  request(method: string, path: string, options: RequestOptions = {}): Promise<HttpReply> {
    const url = new URL(path, this.baseUrl);
    const headers: Record<string, string | number> = { accept: 'application/json', ...options.headers };
    if (this.token !== undefined) headers['x-session'] = this.token;
    if (options.body !== undefined) {
      headers['content-type'] = options.contentType ?? 'application/json';
      headers['content-length'] = Buffer.byteLength(options.body);
    }
    const transport = url.protocol === 'https:' ? https : http;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    return new Promise<HttpReply>((resolve, reject) => {
      const request = transport.request(url, { method, headers, agent: this.agent, signal: options.signal }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: response.statusCode ?? 0, headers: response.headers, text, body: parseJson(text) });
        });
      });
      request.setTimeout(timeoutMs, () => request.destroy(new Error(`${method} ${url.pathname} timed out after ${timeoutMs} ms`)));
      request.on('error', reject);
      request.end(options.body);
    });
  }

  /** Sends a request and throws ApiError unless the status is one of `expected`. */
  async expect(expected: readonly number[], method: string, path: string, options?: RequestOptions): Promise<HttpReply> {
    const reply = await this.request(method, path, options);
    if (!expected.includes(reply.status)) throw new ApiError(reply.status, reply.body, reply.text.slice(0, 200) || undefined);
    return reply;
  }

  /** POST /sessions; keeps and returns the token. */
  async login(username: string, password: string): Promise<string> {
    const reply = await this.expect([200, 201], 'POST', '/sessions', { body: JSON.stringify({ username, password }) });
    const token = isRecord(reply.body) ? reply.body['token'] : undefined;
    if (typeof token !== 'string') throw new ApiError(reply.status, reply.body, 'the session reply has no token');
    this.token = token;
    return token;
  }

  async append(bucket: string, stream: string, data: unknown, headers?: Record<string, string>): Promise<EntryMeta> {
    const reply = await this.expect([201], 'POST', streamPath(bucket, stream), { body: JSON.stringify(data), headers });
    return metaOf(reply);
  }

  async patch(bucket: string, stream: string, operations: unknown): Promise<EntryMeta> {
    const reply = await this.expect([200], 'PATCH', streamPath(bucket, stream), {
      body: JSON.stringify(operations),
      contentType: 'application/json-patch+json',
    });
    return metaOf(reply);
  }

  async read(bucket: string, stream: string, limit: number, from?: number): Promise<Entry[]> {
    const query = from === undefined ? `limit=${limit}` : `limit=${limit}&from=${from}`;
    const reply = await this.expect([200], 'GET', `${streamPath(bucket, stream)}?${query}`);
    if (!Array.isArray(reply.body)) throw new ApiError(reply.status, reply.body, 'a read reply must be an array');
    return reply.body as Entry[];
  }

  async deleteStream(bucket: string, stream: string): Promise<unknown> {
    // 204 without a body (IorioDB's answer, DESIGN §4); 200 from older Iorio nodes.
    return (await this.expect([200, 204], 'DELETE', streamPath(bucket, stream))).body;
  }

  async listBuckets(): Promise<string[]> {
    return listData(await this.expect([200], 'GET', '/buckets'));
  }

  async listStreams(bucket: string): Promise<string[]> {
    return listData(await this.expect([200], 'GET', streamPath(bucket)));
  }

  /** One long-poll: the events (200) or [] (204 after the timeout). */
  async listen(subscriptions: readonly Subscription[], timeoutSecs: number, signal?: AbortSignal): Promise<{ events: ListenEvent[]; reply: HttpReply }> {
    const path = `/listen?${subscriptionQuery(subscriptions)}&timeout=${timeoutSecs}`;
    const reply = await this.expect([200, 204], 'GET', path, { signal, timeoutMs: timeoutSecs * 1000 + defaultTimeoutMs });
    if (reply.status === 204) return { events: [], reply };
    if (!Array.isArray(reply.body)) throw new ApiError(reply.status, reply.body, 'a listen reply must be an array');
    return { events: reply.body as ListenEvent[], reply };
  }
}

function parseJson(text: string): unknown {
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function metaOf(reply: HttpReply): EntryMeta {
  const meta = isRecord(reply.body) ? reply.body['meta'] : undefined;
  if (!isRecord(meta) || typeof meta['id'] !== 'number' || typeof meta['t'] !== 'number') {
    throw new ApiError(reply.status, reply.body, 'the reply has no meta {id, t}');
  }
  return { id: meta['id'], t: meta['t'] };
}

function listData(reply: HttpReply): string[] {
  const data = isRecord(reply.body) ? reply.body['data'] : undefined;
  if (!Array.isArray(data)) throw new ApiError(reply.status, reply.body, 'a list reply must be {status, data: [names]}');
  return data as string[];
}
