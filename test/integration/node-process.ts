/**
 * A whole node as its own process (`node dist/src/main.js console`), for
 * faults that belong to a process: its file descriptors, its connections,
 * its exit. Clients here can pick their source address on 127.0.0.0/8, so
 * one test can be several clients. Every wait has a deadline.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repoRoot = resolve(import.meta.dirname, '../..');
export const mainScript = join(repoRoot, 'dist/src/main.js');

export interface NodeProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /** Log lines (JSON) the node wrote to stdout so far. */
  readonly logLines: string[];
  /** Set once the process exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** SIGTERM, wait for the exit (SIGKILL after 10 s), remove the data folder. */
  stop(): Promise<void>;
}

export interface NodeProcessOptions {
  /** `--key value` flags over the test defaults. */
  readonly flags?: Record<string, string>;
  /** Run under `prlimit --nofile=N:N`: the node's open-file limit. */
  readonly openFilesLimit?: number;
}

export async function startNodeProcess(options: NodeProcessOptions = {}): Promise<NodeProcess> {
  if (!existsSync(mainScript)) throw new Error(`${mainScript} is missing: run npm run build`);
  const root = await mkdtemp(join(tmpdir(), 'iorio-process-'));
  const dataDir = join(root, 'data');
  const flags: Record<string, string> = {
    'paths.data': dataDir,
    'http.port': '0',
    'cluster.port': '0',
    'auth.bcrypt.rounds': '4',
    'storage.sync': 'none',
    'http.ratelimit.enabled': 'no',
    'metrics.enabled': 'yes',
    'log.level': 'warn',
    ...options.flags,
  };
  const args = [mainScript, 'console', ...Object.entries(flags).flatMap(([key, value]) => [`--${key}`, value])];
  const child =
    options.openFilesLimit === undefined
      ? spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('prlimit', [`--nofile=${options.openFilesLimit}:${options.openFilesLimit}`, '--', process.execPath, ...args], {
          cwd: root,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
  const logLines: string[] = [];
  let pending = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString('utf8')).split('\n');
    pending = lines.pop() ?? '';
    logLines.push(...lines);
  });
  child.stderr!.on('data', (chunk: Buffer) => logLines.push(chunk.toString('utf8')));
  const node: NodeProcess = {
    child,
    url: '',
    host: '',
    port: 0,
    dataDir,
    logLines,
    exit: undefined,
    async stop() {
      if (node.exit === undefined) {
        const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killer);
      }
      await rm(root, { recursive: true, force: true });
    },
  };
  child.once('exit', (code, signal) => {
    node.exit = { code, signal };
  });
  const urlFile = join(dataDir, 'iorio.url');
  try {
    await waitFor('the node to start', () => {
      if (node.exit !== undefined) throw new Error(`the node exited during start: ${JSON.stringify(node.exit)}\n${logLines.join('\n')}`);
      return existsSync(urlFile) && readFileSync(urlFile, 'utf8').endsWith('\n');
    }, 30_000);
  } catch (error) {
    await node.stop();
    throw error;
  }
  const url = readFileSync(urlFile, 'utf8').trim();
  const { hostname, port } = new URL(url);
  return Object.assign(node, { url, host: hostname, port: Number(port) });
}

export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

export interface Answer {
  status: number;
  text: string;
  body: any;
  headers: http.IncomingHttpHeaders;
}

export interface ClientOptions {
  /** Source address on 127.0.0.0/8: who the node thinks the client is. */
  localAddress?: string;
  token?: string;
  json?: unknown;
  body?: string;
  contentType?: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** One request on a fresh connection (no keep-alive pool); rejects on a network error (a reset, a refused connection). */
export function request(node: Pick<NodeProcess, 'host' | 'port'>, method: string, path: string, options: ClientOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.token !== undefined) headers['x-session'] = options.token;
  let body: string | undefined = options.body;
  if (options.json !== undefined) body = JSON.stringify(options.json);
  if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  return new Promise((resolveAnswer, reject) => {
    const outgoing = http.request(
      { host: node.host, port: node.port, method, path, headers, agent: false, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolveAnswer({ status: response.statusCode ?? 0, text, body: parsed, headers: response.headers });
        });
      },
    );
    outgoing.setTimeout(options.timeoutMs ?? 10_000, () => outgoing.destroy(new Error(`${method} ${path}: no answer in time`)));
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

/** A request that may also fail at the network level: its status, or the error code. */
export async function attempt(node: Pick<NodeProcess, 'host' | 'port'>, method: string, path: string, options: ClientOptions = {}): Promise<Answer | { error: string }> {
  try {
    return await request(node, method, path, options);
  } catch (error) {
    return { error: (error as NodeJS.ErrnoException).code ?? (error as Error).message };
  }
}

export async function loginAs(node: Pick<NodeProcess, 'host' | 'port'>, localAddress: string, username = 'admin', password = 'secret'): Promise<string> {
  const answer = await request(node, 'POST', '/sessions', { localAddress, json: { username, password } });
  if (answer.status !== 201) throw new Error(`login: ${answer.status} ${answer.text}`);
  return answer.body.token as string;
}

/** A raw TCP connection that records what it receives and when the node closes it. */
export class RawSocket {
  readonly received: Buffer[] = [];
  closedAtMs: number | undefined;
  readonly openedAtMs = Date.now();
  private readonly socket: net.Socket;
  readonly connected: Promise<void>;

  constructor(node: Pick<NodeProcess, 'host' | 'port'>, localAddress?: string) {
    this.socket = net.connect({ host: node.host, port: node.port, ...(localAddress === undefined ? {} : { localAddress }) });
    this.socket.on('data', (chunk: Buffer) => this.received.push(chunk));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closedAtMs = Date.now();
    });
    this.connected = new Promise((resolveConnect) => {
      this.socket.once('connect', () => resolveConnect());
      this.socket.once('close', () => resolveConnect());
    });
  }

  get closed(): boolean {
    return this.closedAtMs !== undefined;
  }

  get text(): string {
    return Buffer.concat(this.received).toString('utf8');
  }

  write(text: string): void {
    this.socket.write(text);
  }

  close(): void {
    this.socket.destroy();
  }
}
