/**
 * ioriocli against a real node: one-shot commands (JSON out, exit status),
 * a script piped to stdin, a live tail stopped with Ctrl-C (SIGINT), and the
 * REPL's line parsing and completion in-process.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig } from '../../src/config.js';
import { startNode, type IorioNode } from '../../src/node.js';
import { version } from '../../src/version.js';
import { IorioClient } from '../../tools/common/client.js';
import { makeCompleter, parseLine } from '../../tools/ioriocli/repl.js';

const cliPath = resolve(import.meta.dirname, '../../tools/ioriocli/main.ts');
const processTimeoutMs = 30_000;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function spawnCli(url: string, args: readonly string[], env: Record<string, string> = {}): ChildProcessWithoutNullStreams {
  return spawnRaw(['--url', url, ...args], env);
}

/** ioriocli with exactly these arguments (no --url), in `cwd`. */
function spawnRaw(args: readonly string[], env: Record<string, string> = {}, cwd?: string): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--import', 'tsx', cliPath, ...args], {
    env: { ...process.env, IORIO_USER: '', IORIO_PASSWORD: '', ...env },
    stdio: 'pipe',
    ...(cwd === undefined ? {} : { cwd }),
  });
}

/** A running ioriocli: its output so far, waits on it, and its end. */
class CliRun {
  stdout = '';
  stderr = '';
  private readonly closed: Promise<number | null>;
  private readonly waiters = new Set<() => void>();

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (chunk: Buffer) => {
      this.stdout += chunk.toString();
      for (const wake of this.waiters) wake();
    });
    child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.closed = new Promise((resolvePromise) => child.on('close', resolvePromise));
  }

  /** Resolves once `text` is anywhere in stdout so far. */
  waitFor(text: string): Promise<void> {
    return new Promise((resolvePromise, reject) => {
      const check = (): void => {
        if (!this.stdout.includes(text)) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolvePromise();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no ${text} on stdout within ${processTimeoutMs} ms: ${this.stdout}`));
      }, processTimeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Closes stdin (after writing `stdin`) and collects everything until the process exits. */
  async finish(stdin?: string): Promise<CliResult> {
    this.child.stdin.end(stdin);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), processTimeoutMs);
    const code = await this.closed;
    clearTimeout(timer);
    return { code, stdout: this.stdout, stderr: this.stderr };
  }
}

function finish(child: ChildProcessWithoutNullStreams, stdin?: string): Promise<CliResult> {
  return new CliRun(child).finish(stdin);
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolvePromise) => server.listen(0, '127.0.0.1', resolvePromise));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolvePromise) => server.close(() => resolvePromise()));
  return port;
}

describe('ioriocli', () => {
  let dataDir: string;
  let node: IorioNode;
  let url: string;
  const admin = ['--user', 'admin', '--password', 'secret'];

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'iorio-cli-'));
    node = await startNode(testConfig({ 'http.port': 0, 'cluster.port': 0, 'paths.data': dataDir, 'log.level': 'warn', 'auth.bcrypt.rounds': 4 }));
    url = node.httpUrl;
  });

  afterAll(async () => {
    await node?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('put and get as one-shot commands print JSON', async () => {
    const put = await finish(spawnCli(url, [...admin, 'put', 'cli', 'one', '{"a": 1}']));
    expect(put.stderr).toBe('');
    expect(put.code).toBe(0);
    expect(JSON.parse(put.stdout)).toMatchObject({ meta: { id: 1 } });
    const get = await finish(spawnCli(url, [...admin, 'get', 'cli', 'one']));
    expect(get.code).toBe(0);
    const entries = JSON.parse(get.stdout) as { meta: { id: number }; data: unknown }[];
    expect(entries.map((entry) => [entry.meta.id, entry.data])).toEqual([[1, { a: 1 }]]);
  });

  it('takes credentials from IORIO_USER / IORIO_PASSWORD and JSON split by the shell', async () => {
    const put = await finish(spawnCli(url, ['put', 'cli', 'env', '{"b":', '[1,', '2]}'], { IORIO_USER: 'admin', IORIO_PASSWORD: 'secret' }));
    expect(put.code).toBe(0);
    const client = new IorioClient({ baseUrl: url });
    await client.login('admin', 'secret');
    const [entry] = await client.read('cli', 'env', 1).finally(() => client.close());
    expect(entry?.data).toEqual({ b: [1, 2] });
  });

  it('exits 1 with the JSON error when the node refuses, 2 on bad usage', async () => {
    const anonymous = await finish(spawnCli(url, ['get', 'cli', 'one']));
    expect(anonymous.code).toBe(1);
    expect(JSON.parse(anonymous.stderr)).toMatchObject({ status: 401, type: 'no-perm' });
    const badLogin = await finish(spawnCli(url, ['--user', 'admin', '--password', 'wrong', 'buckets']));
    expect(badLogin.code).toBe(1);
    expect(JSON.parse(badLogin.stderr)).toMatchObject({ status: 401, type: 'unauthorized' });
    const badJson = await finish(spawnCli(url, [...admin, 'put', 'cli', 'one', '{nope']));
    expect(badJson.code).toBe(1);
    expect(badJson.stderr).toMatch(/not valid JSON/);
    const missing = await finish(spawnCli(url, [...admin, 'put', 'cli']));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/usage: put <bucket> <stream> <json>/);
    const unknown = await finish(spawnCli(url, ['frobnicate']));
    expect(unknown.code).toBe(2);
  });

  it('--version and version print the version; an unknown command gets a did-you-mean (exit 2)', async () => {
    const expected = `ioriocli ${version} (node ${process.versions.node})\n`;
    expect(await finish(spawnRaw(['--version']))).toEqual({ code: 0, stdout: expected, stderr: '' });
    expect(await finish(spawnCli(url, ['version']))).toEqual({ code: 0, stdout: expected, stderr: '' });
    expect(await finish(spawnCli(url, ['stremas', 'x']))).toEqual({ code: 2, stdout: '', stderr: 'ioriocli: unknown command "stremas"; did you mean streams? (try help)\n' });
    const badFlag = await finish(spawnRaw(['--nope']));
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr.trimEnd().split('\n')).toHaveLength(3);
  });

  it('policy set, get and del change the policy the node keeps; a bad setting is a usage error', async () => {
    const set = await finish(spawnCli(url, [...admin, 'policy', 'set', 'clipol/s', 'max_count=5', 'max_bytes=1MB', 'max_age=1h']));
    expect(set).toMatchObject({ code: 0, stderr: '' });
    const client = new IorioClient({ baseUrl: url });
    await client.login('admin', 'secret');
    try {
      expect((await client.expect([200], 'GET', '/policies/clipol/s')).body).toEqual({ max_count: 5, max_bytes: 1_048_576, max_age_secs: 3600 });
      const get = await finish(spawnCli(url, [...admin, 'policy', 'get', 'clipol/s']));
      expect(JSON.parse(get.stdout)).toEqual({ max_count: 5, max_bytes: 1_048_576, max_age_secs: 3600 });
      expect((await finish(spawnCli(url, [...admin, 'policy', 'del', 'clipol/s']))).code).toBe(0);
      expect((await client.expect([200], 'GET', '/policies/clipol/s')).body).toEqual({});
    } finally {
      client.close();
    }
    const bad = await finish(spawnCli(url, [...admin, 'policy', 'set', 'clipol', 'max_bytes=lots']));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^ioriocli: max_bytes must be a size/);
  });

  it("info prints a stream's seqnums, entries, bytes, chunks and policy; --json the node's answer; 404 and usage errors", async () => {
    for (const n of [1, 2, 3]) expect((await finish(spawnCli(url, [...admin, 'put', 'cliinfo', 's', `{"n": ${n}}`]))).code).toBe(0);
    expect((await finish(spawnCli(url, [...admin, 'policy', 'set', 'cliinfo', 'max_count=100']))).code).toBe(0);
    const shown = await finish(spawnCli(url, [...admin, 'info', 'cliinfo', 's']));
    expect(shown).toMatchObject({ code: 0, stderr: '' });
    const lines = shown.stdout.trimEnd().split('\n');
    expect(lines).toContain('seqnums:          1 to 3');
    expect(lines).toContain('entries:          3');
    expect(lines).toContain('chunks:           1');
    expect(lines).toContain("policy:           max_count=100 (its bucket's)");

    const json = await finish(spawnCli(url, [...admin, 'info', 'cliinfo', 's', '--json']));
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ bucket: 'cliinfo', stream: 's', first: 1, last: 3, entries: 3, chunks: 1, policy: { max_count: 100 }, policy_source: 'bucket' });

    const missing = await finish(spawnCli(url, [...admin, 'info', 'cliinfo', 'never']));
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stderr)).toMatchObject({ status: 404, type: 'not-found' });
    const anonymous = await finish(spawnCli(url, ['info', 'cliinfo', 's']));
    expect(anonymous.code).toBe(1);
    expect(JSON.parse(anonymous.stderr)).toMatchObject({ status: 401, type: 'no-perm' });
    expect((await finish(spawnCli(url, [...admin, 'info', 'cliinfo']))).code).toBe(2);
    expect((await finish(spawnCli(url, [...admin, 'info', 'cliinfo', 's', '--yaml']))).code).toBe(2);
    const misspelt = await finish(spawnCli(url, [...admin, 'inf', 'cliinfo', 's']));
    expect(misspelt.code).toBe(2);
    expect(misspelt.stderr).toContain('did you mean info?');
    const help = await finish(spawnCli(url, ['help', 'info']));
    expect(help.stdout).toContain('info <bucket> <stream> [--json]');
  });

  it('grant without a bucket is global (viewstats), access without one lists the global grants', async () => {
    expect((await finish(spawnCli(url, [...admin, 'useradd', 'dan', 'dan-pw']))).code).toBe(0);
    const granted = await finish(spawnCli(url, [...admin, 'grant', 'viewstats', 'to', 'dan']));
    expect(granted).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(granted.stdout)).toEqual({ ok: true });
    const listed = await finish(spawnCli(url, [...admin, 'access']));
    expect(JSON.parse(listed.stdout).users).toContainEqual({ name: 'dan', grants: ['viewstats'] });
    expect((await finish(spawnCli(url, [...admin, 'revoke', 'viewstats', 'from', 'dan']))).code).toBe(0);
    expect(JSON.parse((await finish(spawnCli(url, [...admin, 'access']))).stdout).users).not.toContainEqual(expect.objectContaining({ name: 'dan' }));
    const onBucket = await finish(spawnCli(url, [...admin, 'grant', 'viewstats', 'on', 'somebucket', 'to', 'dan']));
    expect(onBucket.code).toBe(1);
    expect(JSON.parse(onBucket.stderr)).toMatchObject({ status: 400, type: 'invalid-field' });
    expect((await finish(spawnCli(url, [...admin, 'grant', 'viewstats', 'on', 'dan']))).code).toBe(2);
  });

  it('finds the node as iorio and iorio-admin do: the running node\'s iorio.url, unless -P or --url names another address', async () => {
    await writeFile(join(dataDir, 'iorio.url'), `${url}\n`);
    const env = { IORIO_PATHS_DATA: dataDir };
    const found = await finish(spawnRaw(['ping'], env));
    expect(found.code).toBe(0);
    expect(JSON.parse(found.stdout)).toMatchObject({ node: 'iorio@127.0.0.1' });
    const dead = String(await closedPort());
    const explicit = await finish(spawnRaw(['-P', dead, 'ping'], env));
    expect(explicit.code).toBe(1);
    expect(explicit.stderr).toContain(dead);
  });

  it('runs a script from stdin and exits 0 when every command succeeded', async () => {
    const script = [
      'login admin secret',
      'put scripted s1 {"x": "a b", "n": [1, 2]}',
      "put scripted s1 '{\"x\": 2}'",
      'get scripted s1 5',
      'streams scripted',
      'useradd carol pw-carol-1',
      'grant get on scripted to carol',
      'grant list on scripted/s1 to group:g-authenticated',
      'access scripted',
      'users',
      'exit',
      'buckets',
    ].join('\n');
    const result = await finish(spawnCli(url, []), script + '\n');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('"x": "a b"');
    expect(result.stdout).toContain('"username": "carol"');
    expect(result.stdout).toMatch(/"data": \[\s*"s1"\s*\]/);
    // `exit` stops the script: the buckets listing after it never ran.
    expect(result.stdout).not.toContain('"cli"');
    const client = new IorioClient({ baseUrl: url });
    try {
      await client.login('carol', 'pw-carol-1');
      expect((await client.read('scripted', 's1', 10)).map((entry) => entry.data)).toEqual([{ x: 'a b', n: [1, 2] }, { x: 2 }]);
    } finally {
      client.close();
    }
  });

  it('a script with a failing command goes on and exits 1', async () => {
    const result = await finish(spawnCli(url, admin), 'get cli one\nbogus\nget nobucket nostream\nrevoke get on cli to bob\nping\n');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/unknown command "bogus"/);
    expect(result.stderr).toMatch(/usage: revoke <permission> \[on <bucket>\[\/<stream>\]\] from/);
    expect(result.stdout).toContain('"pong"');
  });

  it('tail follows a stream live until Ctrl-C, then the script goes on', async () => {
    const client = new IorioClient({ baseUrl: url });
    await client.login('admin', 'secret');
    try {
      await client.append('live', 'feed', { n: 1 });
      const cli = new CliRun(spawnCli(url, admin));
      cli.child.stdin.write('tail live feed 1\n');
      await cli.waitFor('"n":1');
      await client.append('live', 'feed', { n: 2 });
      await cli.waitFor('"n":2');
      cli.child.kill('SIGINT');
      const result = await cli.finish('get live feed 1\n');
      expect(result.code).toBe(0);
      const lines = result.stdout.split('\n').filter((line) => line.startsWith('{"meta"'));
      expect(lines.map((line) => (JSON.parse(line) as { meta: { id: number } }).meta.id)).toEqual([1, 2]);
      // The get after the interrupted tail ran: the last entry, pretty-printed.
      expect(result.stdout).toMatch(/"n": 2/);
    } finally {
      client.close();
    }
  });

  it('one-shot tail stops after <count> entries', async () => {
    const result = await finish(spawnCli(url, [...admin, 'tail', 'cli', 'one', '1', '1']));
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout.trim())).toMatchObject({ meta: { id: 1, bucket: 'cli', stream: 'one' }, data: { a: 1 } });
  });

  it('parses REPL lines: quotes, and JSON as the rest of the line', () => {
    expect(parseLine('  get  "my bucket" s 10 ')?.args).toEqual(['my bucket', 's', '10']);
    expect(parseLine('put b s {"a": 1, "b": "x y"}')?.args).toEqual(['b', 's', '{"a": 1, "b": "x y"}']);
    expect(parseLine('')).toBeUndefined();
    expect(() => parseLine('nope')).toThrow(/unknown command/);
    expect(() => parseLine('get "b s')).toThrow(/unclosed/);
  });

  it('completes commands, then bucket and stream names from the node', async () => {
    const client = new IorioClient({ baseUrl: url });
    await client.login('admin', 'secret');
    await client.append('completion', 'alpha', 1);
    await client.append('completion', 'beta', 2);
    const complete = makeCompleter({ client, username: 'admin', writeLine: () => {} });
    const ask = (line: string) => new Promise<[string[], string]>((done) => complete(line, (_error, result) => done(result)));
    try {
      expect(await ask('bu')).toEqual([['buckets '], 'bu']);
      expect((await ask('t'))[0]).toContain('tail ');
      expect(await ask('get compl')).toEqual([['completion '], 'compl']);
      expect(await ask('tail completion ')).toEqual([['alpha ', 'beta '], '']);
      expect(await ask('tail completion b')).toEqual([['beta '], 'b']);
      expect((await ask('inf'))[0]).toContain('info ');
      expect(await ask('info completion a')).toEqual([['alpha '], 'a']);
    } finally {
      client.close();
    }
  });
});
