/**
 * Real node processes forming a cluster on 127.0.0.1: `dist/src/main.js
 * console` each with its own data folder, HTTP and cluster ports picked by
 * the OS, and node names unique to the test run (nodes find each other by
 * name through the per-host registry, as devrel's do). Every wait has a
 * deadline.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const mainScript = path.join(repoRoot, 'dist/src/main.js');

export interface ClusterNode {
  readonly index: number;
  readonly name: string;
  readonly dataDir: string;
  child: ChildProcess;
  url: string;
  readonly log: string[];
  exited: Promise<number | null>;
}

export class TestCluster {
  readonly root: string;
  readonly prefix: string;
  readonly nodes: ClusterNode[] = [];
  private token = new Map<string, string>();

  constructor(
    private readonly extraFlags: Record<string, string> = {},
    readonly host = '127.0.0.1',
  ) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'iorio-cluster-'));
    this.prefix = `t${randomBytes(3).toString('hex')}`;
  }

  nameOf(index: number): string {
    return `${this.prefix}n${index}@${this.host}`;
  }

  /** Starts node `index` (again, on its data folder, when it ran before) and waits until it serves. */
  async start(index: number, flags: Record<string, string> = {}): Promise<ClusterNode> {
    const name = this.nameOf(index);
    const dataDir = path.join(this.root, `n${index}`);
    const all = {
      nodename: name,
      'paths.data': dataDir,
      'http.host': this.host,
      'http.port': '0',
      'cluster.host': this.host,
      'cluster.port': '0',
      'auth.bcrypt.rounds': '4',
      'http.ratelimit.enabled': 'no',
      'metrics.enabled': 'no',
      'storage.sync': 'none',
      'log.level': 'info',
      ...this.extraFlags,
      ...flags,
    };
    const args = [mainScript, 'console', ...Object.entries(all).flatMap(([key, value]) => [`--${key}`, value])];
    const child = spawn(process.execPath, args, { cwd: this.root, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let node = this.nodes.find((entry) => entry.index === index);
    if (node === undefined) {
      node = { index, name, dataDir, child, url: '', log: [], exited };
      this.nodes.push(node);
    }
    node.child = child;
    node.exited = exited;
    node.log.length = 0;
    const log = node.log;
    let pending = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      const lines = (pending + chunk.toString('utf8')).split('\n');
      pending = lines.pop() ?? '';
      log.push(...lines);
    });
    child.stderr!.on('data', (chunk: Buffer) => log.push(chunk.toString('utf8')));
    node.url = await waitFor(`${name} to start`, 30_000, () => {
      if (child.exitCode !== null) throw new Error(`${name} exited: ${log.slice(-5).join('\n')}`);
      const line = log.find((entry) => entry.includes('"msg":"node started"'));
      return line === undefined ? undefined : (/"httpUrl":"([^"]+)"/.exec(line)?.[1] ?? undefined);
    });
    for (const key of [...this.token.keys()]) if (key.startsWith(`${name}/`)) this.token.delete(key);
    return node;
  }

  node(index: number): ClusterNode {
    const node = this.nodes.find((entry) => entry.index === index);
    if (node === undefined) throw new Error(`no node ${index}`);
    return node;
  }

  async login(index: number, username = 'admin', password = 'secret'): Promise<string> {
    const node = this.node(index);
    const cached = this.token.get(`${node.name}/${username}`);
    if (cached !== undefined) return cached;
    const response = await fetch(`${node.url}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
    if (response.status !== 201) throw new Error(`login ${username} on ${node.name}: ${response.status} ${await response.text()}`);
    const token = ((await response.json()) as { token: string }).token;
    this.token.set(`${node.name}/${username}`, token);
    return token;
  }

  /** The cluster admin API of node `index`, with the cluster secret. */
  async admin(index: number, method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> {
    const response = await fetch(`${this.node(index).url}/admin/cluster/${route}`, {
      method,
      headers: { 'x-iorio-cluster-secret': this.extraFlags['cluster.secret'] ?? 'iorio', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
  }

  async call(index: number, method: string, route: string, options: { token?: string; body?: unknown; contentType?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: any; headers: Headers }> {
    const token = options.token ?? (await this.login(index));
    const response = await fetch(`${this.node(index).url}${route}`, {
      method,
      headers: { 'x-session': token, ...(options.body === undefined ? {} : { 'content-type': options.contentType ?? 'application/json' }), ...options.headers },
      ...(options.body === undefined ? {} : { body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) }),
    });
    const text = await response.text();
    return { status: response.status, body: text === '' ? undefined : safeJson(text), headers: response.headers };
  }

  /** Joins nodes to node 1, plans and commits, and waits until every transfer finished and every member agrees. */
  async joinAll(indexes: readonly number[], timeoutMs = 120_000): Promise<void> {
    for (const index of indexes) {
      const joined = await this.admin(index, 'POST', 'join', { node: this.nameOf(1) });
      if (joined.status !== 200) throw new Error(`join ${index}: ${JSON.stringify(joined.body)}`);
    }
    await this.commitPlan();
    await this.settle(timeoutMs);
  }

  async commitPlan(): Promise<void> {
    await waitFor('every member to see the joins', 10_000, async () => ((await this.admin(1, 'GET', 'ringready')).body.ready ? true : undefined));
    const plan = await this.admin(1, 'GET', 'plan');
    if (plan.status !== 200) throw new Error(`plan: ${JSON.stringify(plan.body)}`);
    const commit = await this.admin(1, 'POST', 'commit');
    if (commit.status !== 200) throw new Error(`commit: ${JSON.stringify(commit.body)}`);
  }

  /** Waits until no transfer is pending and every member agrees on the ring. */
  async settle(timeoutMs = 120_000, from = 1): Promise<void> {
    await waitFor('transfers to finish and the ring to settle', timeoutMs, async () => {
      const ring = await this.admin(from, 'GET', 'ring');
      if (ring.status !== 200 || ring.body.pending.length > 0) return undefined;
      const ready = await this.admin(from, 'GET', 'ringready');
      return ready.body.ready ? true : undefined;
    });
  }

  kill(index: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const node = this.node(index);
    node.child.kill(signal);
    return node.exited;
  }

  async stopAll(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        if (node.child.exitCode !== null || node.child.signalCode !== null) return;
        node.child.kill('SIGTERM');
        const timer = setTimeout(() => node.child.kill('SIGKILL'), 10_000);
        await node.exited;
        clearTimeout(timer);
      }),
    );
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

export async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined | Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError === undefined ? '' : ` (last error: ${(lastError as Error).message})`}`);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
