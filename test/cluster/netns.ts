/**
 * The real-process fault harness (DESIGN.md §9, "Real-process faults"):
 * node processes on 127.0.0.2, .3, .4 ... inside a network namespace the
 * test creates and owns, links between them cut with iptables on that
 * namespace's `lo` (DROP for silent loss, REJECT for resets, `-m statistic`
 * for random loss), plus SIGKILL and SIGSTOP/SIGCONT by pid.
 *
 * The namespace. `unshare --net` starts netns-relay.ts, which holds the
 * namespace for as long as it lives; every node is started inside it with
 * `nsenter`, and every iptables command runs inside it the same way. Both
 * enter through a file descriptor this process opened on the namespace
 * once, checked then to be another namespace than ours, so no rule can land
 * in the host's namespace even if the relay died and its pid were reused.
 * The namespace, and its rules, vanish when its last process exits:
 * `close()` kills the nodes by pid and ends the relay; if this process dies
 * instead, the relay sees its stdin end and kills the nodes it was told of.
 *
 * The test's HTTP requests. The test process stays in the host namespace.
 * Its requests go to the relay's Unix socket (a file, so reachable across
 * namespaces) with a first line naming the node's address; the relay
 * connects inside the namespace and pipes the bytes. The HTTP is real
 * (node:http over that socket), no process is spawned per request, and the
 * requests come from 127.0.0.1, which no fault rule names: the test can
 * always reach every node, as an operator on the same host could.
 *
 * What it needs: root, `unshare` and `nsenter` (util-linux), `ip` (iproute2)
 * and iptables. Which iptables works is found out, not assumed: Debian's
 * `iptables` is the nf_tables one and some kernels lack nf_tables, others
 * the legacy x_tables, so `iptables`, `iptables-nft` and `iptables-legacy`
 * are each tried in a throwaway namespace with the very rules used here
 * (namespaceSupport) and the first that takes them all is the one used.
 *
 * The fallback. Where no namespace can be made (not root, no `unshare`,
 * `ip` or a working `iptables`), the harness says so (`description`, used
 * in the test names, and a warning) and runs the nodes in the host
 * namespace, on the same addresses, with their cluster connections passing
 * through the in-repo fault proxy (fault-proxy.ts), which can cut links
 * both ways and one way, dropping or resetting. `faults: 'proxy'` forces it.
 *
 * Every wait has a deadline and every loop a bound.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { partitionOf } from '../../src/core/hash.js';
import { waitFor } from './cluster-harness.js';
import { FaultProxy, faultProxyDescription, LinkAction, type LinkFaults } from './fault-proxy.js';

export { LinkAction, type LinkFaults } from './fault-proxy.js';
export { waitFor } from './cluster-harness.js';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const mainScript = path.join(repoRoot, 'dist/src/main.js');
const relayScript = path.join(import.meta.dirname, 'netns-relay.ts');
const dialHookScript = path.join(import.meta.dirname, 'fault-proxy-dial.ts');
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** The nodes' own bound on a request to another node (src/cluster/index.ts requestTimeoutMs). */
export const clusterRequestTimeoutMs = 10_000;
/** How long the harness waits for any HTTP answer: the cluster's request timeout, a dial (3 s) and slack for a busy machine. */
export const answerTimeoutMs = 20_000;
const commandTimeoutMs = 10_000;
const startTimeoutMs = 30_000;
const stopTimeoutMs = 10_000;
const logLinesMax = 5_000;
/** Fixed ports are safe inside the test's own namespace (nothing else listens there); devrel's numbers. */
const namespaceHttpPort = 8098;
const namespaceClusterPort = 10019;

// ---------------------------------------------------------------------------
// Can this machine make a namespace?

export type NamespaceSupport =
  | { readonly ok: true; readonly iptables: string; readonly version: string }
  | { readonly ok: false; readonly reason: string };

/** The iptables commands tried, in order: the system's choice first, then each backend by name. */
const iptablesCandidates = ['iptables', 'iptables-nft', 'iptables-legacy'] as const;

let support: NamespaceSupport | undefined;

/**
 * Makes a throwaway namespace, brings `lo` up in it and tries each iptables
 * command with the rules the harness uses (DROP, REJECT with tcp-reset,
 * statistic); the first that works is the one used. Run once per process.
 */
export function namespaceSupport(): NamespaceSupport {
  support ??= probeNamespace();
  return support;
}

function probeNamespace(): NamespaceSupport {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces are Linux's; this is ${process.platform}` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'not root: unshare --net needs CAP_SYS_ADMIN' };
  const rules = [
    '-j DROP',
    '-p tcp ! --tcp-flags RST RST -j REJECT --reject-with tcp-reset',
    '-m statistic --mode random --probability 0.5 -j DROP',
  ];
  const probes = iptablesCandidates.map((command) => {
    const adds = rules.map((rule) => `${command} -w 5 -A INPUT -s 127.0.0.254/32 -d 127.0.0.253/32 ${rule}`).join(' && ');
    return (
      `if ! command -v ${command} >/dev/null 2>&1; then echo "${command}: not found";` +
      ` elif out=$( { ${adds} && ${command} -w 5 -F INPUT; } 2>&1 ); then echo "works ${command} $(${command} -V)"; exit 0;` +
      ` else echo "${command}: $(echo "$out" | head -n 1)"; fi`
    );
  });
  const script = ['ip link set lo up || { echo "ip link set lo up failed"; exit 3; }', ...probes, 'exit 4'].join('\n');
  const result = spawnSync('unshare', ['--net', '--', 'sh', '-c', script], { encoding: 'utf8', timeout: commandTimeoutMs });
  if (result.error !== undefined) return { ok: false, reason: `unshare: ${result.error.message}` };
  const output = `${result.stdout}${result.stderr}`.trim();
  const works = /^works (\S+) (.*)$/m.exec(result.stdout);
  if (result.status !== 0 || works === null) return { ok: false, reason: `no namespace with working iptables (exit ${result.status}): ${output.split('\n').slice(-4).join('; ')}` };
  return { ok: true, iptables: works[1]!, version: works[2]!.trim() };
}

// ---------------------------------------------------------------------------
// The namespace

/** Runs a command to its end, killed by pid past its deadline. */
function run(command: string, args: readonly string[], options: SpawnOptions = {}): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: options.stdio ?? ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const timer = setTimeout(() => signalPid(child.pid, 'SIGKILL'), commandTimeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, output: output.trim() });
    });
  });
}

export class NetworkNamespace implements LinkFaults {
  readonly description: string;

  private constructor(
    private readonly relay: ChildProcess,
    private readonly relayExited: Promise<void>,
    private readonly socketPath: string,
    /** An open descriptor on the namespace: what nsenter enters (as its fd 3). */
    private namespaceFd: number | undefined,
    private readonly iptables: string,
    version: string,
  ) {
    this.description = `network namespace, ${iptables} (${version})`;
  }

  /** Makes the namespace (held by the relay, its socket in `folder`) and brings its `lo` up. */
  static async create(folder: string, iptables: string, version: string): Promise<NetworkNamespace> {
    const socketPath = path.join(folder, 'relay.sock');
    const relay = spawn('unshare', ['--net', '--', process.execPath, '--import', tsxLoader, relayScript, socketPath], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
    const relayExited = new Promise<void>((resolve) => relay.once('exit', () => resolve()));
    let output = '';
    relay.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    relay.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    let namespaceFd: number | undefined;
    try {
      const reported = await waitFor('the namespace relay to listen', startTimeoutMs, () => {
        if (relay.exitCode !== null || relay.signalCode !== null) throw new Error(`the namespace relay exited: ${output}`);
        return /^ready (net:\[\d+\])$/m.exec(output)?.[1];
      });
      namespaceFd = fs.openSync(`/proc/${relay.pid}/ns/net`, 'r');
      const opened = fs.readlinkSync(`/proc/self/fd/${namespaceFd}`);
      const ours = fs.readlinkSync('/proc/self/ns/net');
      if (opened !== reported || opened === ours) throw new Error(`the namespace opened (${opened}) is not the relay's (${reported}), or is this process's own (${ours})`);
      const namespace = new NetworkNamespace(relay, relayExited, socketPath, namespaceFd, iptables, version);
      await namespace.inside(['ip', 'link', 'set', 'lo', 'up']);
      return namespace;
    } catch (error) {
      if (namespaceFd !== undefined) fs.closeSync(namespaceFd);
      relay.stdin!.end();
      if (relay.exitCode === null) signalPid(relay.pid, 'SIGKILL');
      throw error;
    }
  }

  /** Spawns a process inside the namespace (nsenter execs it: its pid is the process's own). */
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
    const child = spawn('nsenter', ['--net=/proc/self/fd/3', '--', command, ...args], { ...options, stdio: ['ignore', 'pipe', 'pipe', this.fd()] });
    // The relay kills it if this process dies first.
    if (child.pid !== undefined) this.relay.stdin!.write(`pid ${child.pid}\n`);
    return child;
  }

  /** A TCP connection to `host:port` inside the namespace, through the relay. */
  connect(host: string, port: number): net.Socket {
    const socket = net.connect(this.socketPath);
    socket.write(`${host} ${port}\n`);
    return socket;
  }

  async block(source: string, target: string, action: LinkAction): Promise<void> {
    // A REJECT rule leaves RSTs alone: with both directions rejected, the reset
    // answering one packet would otherwise be swallowed by the other rule.
    const verdict = action === LinkAction.reject ? ['-p', 'tcp', '!', '--tcp-flags', 'RST', 'RST', '-j', 'REJECT', '--reject-with', 'tcp-reset'] : ['-j', 'DROP'];
    await this.rule(['-A', 'INPUT', '-s', `${source}/32`, '-d', `${target}/32`, ...verdict]);
  }

  async loss(source: string, target: string, probability: number): Promise<void> {
    if (!(probability > 0 && probability < 1)) throw new Error(`a loss probability is in (0, 1), not ${probability}`);
    await this.rule(['-A', 'INPUT', '-s', `${source}/32`, '-d', `${target}/32`, '-m', 'statistic', '--mode', 'random', '--probability', String(probability), '-j', 'DROP']);
  }

  async heal(): Promise<void> {
    await this.rule(['-F', 'INPUT']);
  }

  /** The rules now in force, as `iptables -S INPUT` prints them. */
  async rules(): Promise<string[]> {
    const listed = await this.inside([this.iptables, '-w', '5', '-S', 'INPUT']);
    return listed.split('\n').filter((line) => line.startsWith('-A '));
  }

  /** Ends the relay, which kills any node still inside; the namespace and its rules go with the last of them. */
  async close(): Promise<void> {
    this.relay.stdin!.end();
    const timer = setTimeout(() => {
      if (this.relay.exitCode === null) signalPid(this.relay.pid, 'SIGKILL');
    }, stopTimeoutMs);
    await this.relayExited;
    clearTimeout(timer);
    if (this.namespaceFd !== undefined) fs.closeSync(this.namespaceFd);
    this.namespaceFd = undefined;
  }

  private async rule(args: readonly string[]): Promise<void> {
    await this.inside([this.iptables, '-w', '5', ...args]);
  }

  /** Runs a command inside the namespace; its output, or an error naming it. */
  private async inside(command: readonly string[]): Promise<string> {
    const result = await run('nsenter', ['--net=/proc/self/fd/3', '--', ...command], { stdio: ['ignore', 'pipe', 'pipe', this.fd()] });
    if (result.status !== 0) throw new Error(`${command.join(' ')} (in the test namespace) failed with ${result.status}: ${result.output}`);
    return result.output;
  }

  private fd(): number {
    if (this.namespaceFd === undefined) throw new Error('the test namespace is closed');
    return this.namespaceFd;
  }
}

// ---------------------------------------------------------------------------
// The cluster

export type FaultMode = 'netns' | 'proxy';

export interface FaultClusterOptions {
  /** `auto` (the default): a namespace where one can be made, else the proxy; `proxy` forces the proxy. */
  readonly faults?: 'auto' | FaultMode;
  /** Config flags for every node. */
  readonly flags?: Readonly<Record<string, string>>;
}

export interface FaultNode {
  readonly index: number;
  readonly name: string;
  readonly host: string;
  readonly dataDir: string;
  child: ChildProcess;
  exited: Promise<void>;
  httpPort: number;
  clusterPort: number;
  readonly log: string[];
}

export interface Answer {
  readonly status: number;
  readonly body: any;
  /** Time from sending to the whole answer. */
  readonly elapsedMs: number;
}

/** How a run of FaultCluster with these options makes its faults, decided before it starts: test names say it. */
export function faultPlan(faults: FaultClusterOptions['faults'] = 'auto'): { mode: FaultMode; description: string } {
  if (faults === 'proxy') return { mode: 'proxy', description: `${faultProxyDescription}, forced` };
  const found = namespaceSupport();
  if (found.ok) return { mode: 'netns', description: `network namespace, ${found.iptables} (${found.version})` };
  if (faults === 'netns') throw new Error(`a network namespace was asked for but cannot be made: ${found.reason}`);
  return { mode: 'proxy', description: `${faultProxyDescription}: ${found.reason}` };
}

export class FaultCluster {
  readonly mode: FaultMode;
  readonly description: string;
  readonly root: string;
  readonly prefix: string;
  private readonly nodes = new Map<number, FaultNode>();
  private namespace: NetworkNamespace | undefined;
  private proxy: FaultProxy | undefined;
  private proxyAddress = '';
  private token: string | undefined;

  constructor(private readonly options: FaultClusterOptions = {}) {
    const plan = faultPlan(options.faults);
    this.mode = plan.mode;
    this.description = plan.description;
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'iorio-faults-'));
    this.prefix = `f${randomBytes(3).toString('hex')}`;
  }

  /** Makes the namespace or starts the proxy. */
  async open(): Promise<void> {
    if (this.mode === 'netns') {
      const found = namespaceSupport();
      if (!found.ok) throw new Error(found.reason);
      this.namespace = await NetworkNamespace.create(this.root, found.iptables, found.version);
    } else {
      if (this.options.faults !== 'proxy') process.emitWarning(`fault tests: ${this.description}`);
      this.proxy = new FaultProxy();
      this.proxyAddress = await this.proxy.start();
    }
  }

  private get faults(): LinkFaults {
    const faults = this.namespace ?? this.proxy;
    if (faults === undefined) throw new Error('open() the fault cluster first');
    return faults;
  }

  hostOf(index: number): string {
    if (!Number.isInteger(index) || index < 1 || index > 250) throw new Error(`node index ${index} is out of 1..250`);
    return `127.0.0.${index + 1}`;
  }

  nameOf(index: number): string {
    return `${this.prefix}n${index}@${this.hostOf(index)}`;
  }

  /** Made its namespace or started its proxy, and not closed yet. */
  get opened(): boolean {
    return this.namespace !== undefined || this.proxy !== undefined;
  }

  /** Node `index` was started and has not exited (it may be paused). */
  running(index: number): boolean {
    const child = this.nodes.get(index)?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  node(index: number): FaultNode {
    const node = this.nodes.get(index);
    if (node === undefined) throw new Error(`no node ${index}`);
    return node;
  }

  /** Starts node `index`, or starts it again on its data folder and the same addresses, and waits until it serves. */
  async start(index: number, flags: Readonly<Record<string, string>> = {}): Promise<FaultNode> {
    const known = this.nodes.get(index);
    const host = this.hostOf(index);
    const name = this.nameOf(index);
    const dataDir = path.join(this.root, `n${index}`);
    const inNamespace = this.mode === 'netns';
    const all = {
      nodename: name,
      'paths.data': dataDir,
      'http.host': host,
      'http.port': String(known?.httpPort ?? (inNamespace ? namespaceHttpPort : 0)),
      'cluster.host': host,
      'cluster.port': String(known?.clusterPort ?? (inNamespace ? namespaceClusterPort : 0)),
      'auth.bcrypt.rounds': '4',
      'http.ratelimit.enabled': 'no',
      'metrics.enabled': 'no',
      'log.level': 'info',
      ...this.options.flags,
      ...flags,
    };
    const nodeArgs = [mainScript, 'console', ...Object.entries(all).flatMap(([key, value]) => [`--${key}`, value])];
    const child = inNamespace
      ? this.namespace!.spawn(process.execPath, nodeArgs, { cwd: this.root })
      : spawn(process.execPath, ['--import', tsxLoader, '--import', pathToFileURL(dialHookScript).href, ...nodeArgs], {
          cwd: this.root,
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, FAULT_PROXY_ADDRESS: this.proxyAddress },
        });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const log = known?.log ?? [];
    log.length = 0;
    const node: FaultNode = known ?? { index, name, host, dataDir, child, exited, httpPort: 0, clusterPort: 0, log };
    node.child = child;
    node.exited = exited;
    this.nodes.set(index, node);
    collectLines(child, log);
    const url = await waitFor(`${name} to start`, startTimeoutMs, () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited: ${log.slice(-5).join('\n')}`);
      const line = log.find((entry) => entry.includes('"msg":"node started"'));
      return line === undefined ? undefined : /"httpUrl":"([^"]+)"/.exec(line)?.[1];
    });
    node.httpPort = Number(new URL(url).port);
    node.clusterPort = registeredClusterPort(name);
    return node;
  }

  /** Sends `signal` to node `index` by its pid; SIGKILL and SIGTERM resolve when it has exited. */
  async signal(index: number, signal: NodeJS.Signals): Promise<void> {
    const node = this.node(index);
    if (node.child.pid === undefined || !this.running(index)) throw new Error(`node ${index} is not running`);
    process.kill(node.child.pid, signal);
    if (signal === 'SIGKILL' || signal === 'SIGTERM') await waitFor(`node ${index} to exit`, stopTimeoutMs, async () => (this.running(index) ? undefined : true));
  }

  kill(index: number): Promise<void> {
    return this.signal(index, 'SIGKILL');
  }

  pause(index: number): Promise<void> {
    return this.signal(index, 'SIGSTOP');
  }

  resume(index: number): Promise<void> {
    return this.signal(index, 'SIGCONT');
  }

  // -------------------------------------------------------------------------
  // Faults on links (node indexes)

  /** Cuts the link between a and b both ways. */
  async cut(a: number, b: number, action: LinkAction = LinkAction.drop): Promise<void> {
    await this.faults.block(this.hostOf(a), this.hostOf(b), action);
    await this.faults.block(this.hostOf(b), this.hostOf(a), action);
  }

  /** Cuts only what `source` sends to `target`; what `target` sends to `source` still arrives. */
  async cutOneWay(source: number, target: number, action: LinkAction = LinkAction.drop): Promise<void> {
    await this.faults.block(this.hostOf(source), this.hostOf(target), action);
  }

  /** Cuts node `index` off from every other node, both ways. */
  async isolate(index: number, action: LinkAction = LinkAction.drop): Promise<void> {
    for (const other of this.nodes.keys()) if (other !== index) await this.cut(index, other, action);
  }

  /**
   * Splits the cluster in two: every link between a node of `side` and a
   * started node outside it is cut, both ways; links within each side stay.
   */
  async split(side: readonly number[], action: LinkAction = LinkAction.drop): Promise<void> {
    for (const index of side) this.node(index);
    const others = [...this.nodes.keys()].filter((index) => !side.includes(index));
    for (const index of side) for (const other of others) await this.cut(index, other, action);
  }

  /** Loses each packet between a and b, both ways, with this probability (namespace only). */
  async loss(a: number, b: number, probability: number): Promise<void> {
    await this.faults.loss(this.hostOf(a), this.hostOf(b), probability);
    await this.faults.loss(this.hostOf(b), this.hostOf(a), probability);
  }

  heal(): Promise<void> {
    return this.faults.heal();
  }

  // -------------------------------------------------------------------------
  // HTTP

  /** One HTTP request to node `index` (from the test, never through a cut link); rejects if no answer comes within `timeoutMs`. */
  async http(index: number, method: string, route: string, options: { headers?: Record<string, string>; body?: unknown; timeoutMs?: number } = {}): Promise<Answer> {
    const node = this.node(index);
    const payload = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    const headers: Record<string, string> = { connection: 'close', ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }), ...options.headers };
    const timeoutMs = options.timeoutMs ?? answerTimeoutMs;
    const started = Date.now();
    const namespace = this.namespace;
    return new Promise<Answer>((resolve, reject) => {
      const request = http.request({
        host: node.host,
        port: node.httpPort,
        method,
        path: route,
        headers,
        createConnection: () => (namespace === undefined ? net.connect({ host: node.host, port: node.httpPort }) : namespace.connect(node.host, node.httpPort)),
      });
      const timer = setTimeout(() => request.destroy(new Error(`${method} ${route} on node ${index}: no answer within ${timeoutMs} ms`)), timeoutMs);
      request.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      request.once('response', (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.once('error', (error) => {
          clearTimeout(timer);
          reject(error);
        });
        response.once('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: response.statusCode ?? 0, body: text === '' ? undefined : parseJson(text), elapsedMs: Date.now() - started });
        });
      });
      request.end(payload);
    });
  }

  /**
   * A GET whose answer is read as it arrives (a Server-Sent Events listen):
   * resolves with the response once its head is in, within `timeoutMs`; the
   * caller reads the body and calls `close()` (or sees it end when the node does).
   */
  stream(index: number, route: string, headers: Record<string, string>, timeoutMs = answerTimeoutMs): Promise<{ response: http.IncomingMessage; close: () => void }> {
    const node = this.node(index);
    const namespace = this.namespace;
    return new Promise((resolve, reject) => {
      const request = http.request({
        host: node.host,
        port: node.httpPort,
        method: 'GET',
        path: route,
        headers,
        createConnection: () => (namespace === undefined ? net.connect({ host: node.host, port: node.httpPort }) : namespace.connect(node.host, node.httpPort)),
      });
      const timer = setTimeout(() => request.destroy(new Error(`GET ${route} on node ${index}: no answer head within ${timeoutMs} ms`)), timeoutMs);
      // Kept after the head: a connection lost later errors here too (the response sees it as well).
      request.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      request.once('response', (response) => {
        clearTimeout(timer);
        resolve({ response, close: () => request.destroy() });
      });
      request.end();
    });
  }

  /** An admin session token (sessions are cluster-wide: one login serves every node). */
  async login(index = 1): Promise<string> {
    if (this.token !== undefined) return this.token;
    const answer = await this.http(index, 'POST', '/sessions', { body: { username: 'admin', password: 'secret' } });
    if (answer.status !== 201) throw new Error(`login on node ${index}: ${answer.status} ${JSON.stringify(answer.body)}`);
    this.token = answer.body.token as string;
    return this.token;
  }

  /** An API call as admin; no answer within `timeoutMs` (default answerTimeoutMs) rejects. */
  async call(index: number, method: string, route: string, body?: unknown, timeoutMs?: number): Promise<Answer> {
    const token = this.token ?? (await this.login(index));
    return this.http(index, method, route, { headers: { 'x-session': token }, body, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
  }

  /** The cluster admin API of node `index`, with the cluster secret. */
  admin(index: number, method: string, route: string, body?: unknown): Promise<Answer> {
    return this.http(index, method, `/admin/cluster/${route}`, { headers: { 'x-iorio-cluster-secret': this.options.flags?.['cluster.secret'] ?? 'iorio' }, body });
  }

  /**
   * With request.n > 1, waits until node `index`, not joined yet, leads each
   * of its own one-node replica groups. Joined before that, a node can leave
   * the ring unsettled for good (transfers pending, a partition led at epoch
   * 1 by a joiner with a group of its own making), so replicated clusters
   * wait for this before joinAll.
   */
  async ownGroupsLed(index: number, timeoutMs = 30_000): Promise<void> {
    const name = this.nameOf(index);
    await waitFor(`${name} to lead its own replica groups`, timeoutMs, async () => {
      const answer = await this.admin(index, 'GET', 'partitions');
      const rows = answer.status === 200 ? (answer.body.rows as { node: string; role: string }[]) : [];
      return rows.length > 0 && rows.every((row) => row.node === name && row.role === 'leader') ? true : undefined;
    }, 200);
  }

  /** Joins nodes to node 1, plans, commits, and waits until no transfer is pending and every member agrees. */
  async joinAll(indexes: readonly number[], timeoutMs = 60_000): Promise<void> {
    for (const index of indexes) {
      const joined = await this.admin(index, 'POST', 'join', { node: this.nameOf(1) });
      if (joined.status !== 200) throw new Error(`join ${index}: ${JSON.stringify(joined.body)}`);
    }
    await waitFor('every member to see the joins', 10_000, async () => ((await this.admin(1, 'GET', 'ringready')).body?.ready === true ? true : undefined));
    const plan = await this.admin(1, 'GET', 'plan');
    if (plan.status !== 200) throw new Error(`plan: ${JSON.stringify(plan.body)}`);
    const commit = await this.admin(1, 'POST', 'commit');
    if (commit.status !== 200) throw new Error(`commit: ${JSON.stringify(commit.body)}`);
    await waitFor('transfers to finish and the ring to settle', timeoutMs, async () => {
      const ring = await this.admin(1, 'GET', 'ring');
      if (ring.status !== 200 || ring.body.pending.length > 0) return undefined;
      return (await this.admin(1, 'GET', 'ringready')).body?.ready === true ? true : undefined;
    });
  }

  /** Node index owning each partition, as node `from` sees the ring. */
  async owners(from = 1): Promise<{ size: number; ownerOf: (bucket: string, stream: string) => number }> {
    const ring = await this.admin(from, 'GET', 'ring');
    if (ring.status !== 200) throw new Error(`ring: ${ring.status} ${JSON.stringify(ring.body)}`);
    const owners = (ring.body.owners as string[]).map((name) => [...this.nodes.values()].find((node) => node.name === name)?.index ?? 0);
    return { size: ring.body.size as number, ownerOf: (bucket, stream) => owners[partitionOf(bucket, stream, ring.body.size as number)]! };
  }

  /** Stops every node (SIGCONT first, for a paused one; SIGKILL past a deadline), ends the namespace or proxy, removes the data. */
  async close(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((node) => stopNode(node)));
    await this.namespace?.close();
    await this.proxy?.close();
    this.namespace = undefined;
    this.proxy = undefined;
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  /** The last lines a node logged, for a failure message. */
  logTail(index: number, lines = 20): string {
    return this.node(index).log.slice(-lines).join('\n');
  }
}

async function stopNode(node: FaultNode): Promise<void> {
  const child = node.child;
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  signalPid(child.pid, 'SIGCONT');
  signalPid(child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) signalPid(child.pid, 'SIGKILL');
  }, stopTimeoutMs);
  await node.exited;
  clearTimeout(timer);
}

/** Signals one process by its pid; one that has exited already is not an error. */
function signalPid(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

function collectLines(child: ChildProcess, log: string[]): void {
  let pending = '';
  const keep = (lines: string[]): void => {
    log.push(...lines);
    if (log.length > logLinesMax) log.splice(0, log.length - logLinesMax);
  };
  child.stdout!.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString('utf8')).split('\n');
    pending = lines.pop() ?? '';
    keep(lines);
  });
  child.stderr!.on('data', (chunk: Buffer) => keep([chunk.toString('utf8')]));
}

/** The cluster port a running node recorded in the per-host registry (src/cluster/node-registry.ts). */
function registeredClusterPort(name: string): number {
  const file = path.join(os.tmpdir(), 'iorio-nodes', `${encodeURIComponent(name)}.json`);
  const entry = JSON.parse(fs.readFileSync(file, 'utf8')) as { cluster: { port: number } };
  return entry.cluster.port;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
