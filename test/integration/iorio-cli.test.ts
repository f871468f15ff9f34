/**
 * rel/bin/iorio as an operator meets it: versions, help and usage errors,
 * unknown IORIO_* variables, start-up failures on the terminal, and status
 * about the node of its own data folder only (a hung node included). Real
 * processes throughout; every node started here is stopped by its pid.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { version } from '../../src/version.js';

const repoRoot = resolve(import.meta.dirname, '../..');
const bin = join(repoRoot, 'rel/bin/iorio');
const main = join(repoRoot, 'dist/src/main.js');
/** Flags every node here runs with: its own folder, free ports, cheap hashing. */
const nodeFlags = (dataDir: string) => ['--paths.data', dataDir, '--http.port', '0', '--cluster.port', '0', '--auth.bcrypt.rounds', '4', '--storage.sync', 'none'];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let root = '';
const startedPids = new Set<number>();

beforeAll(async () => {
  expect(existsSync(main), `${main} is missing: run npm run build`).toBe(true);
  root = await mkdtemp(join(tmpdir(), 'iorio-cli-'));
});

afterAll(async () => {
  for (const pid of startedPids) {
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (root !== '') await rm(root, { recursive: true, force: true });
});

/** Runs `iorio ...args` with the test's clean environment plus `env`. */
function iorio(args: readonly string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolveRun) => {
    execFile(bin, args, { cwd: root, timeout: 60_000, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : -1;
      resolveRun({ code, stdout, stderr });
    });
  });
}

/** `iorio start` in `dataDir`; remembers the pid so the node is never left behind. */
async function startIn(dataDir: string, ...extra: string[]): Promise<{ pid: number; url: string }> {
  const started = await iorio(['start', ...nodeFlags(dataDir), ...extra]);
  expect(started, JSON.stringify(started)).toMatchObject({ code: 0, stderr: '' });
  const pid = Number(readFileSync(join(dataDir, 'iorio.pid'), 'utf8'));
  startedPids.add(pid);
  return { pid, url: readFileSync(join(dataDir, 'iorio.url'), 'utf8').trim() };
}

async function stopIn(dataDir: string, pid: number): Promise<void> {
  expect((await iorio(['stop', '--paths.data', dataDir])).code).toBe(0);
  startedPids.delete(pid);
}

describe('version and help', () => {
  test('--version and version print the version, exit 0', async () => {
    const expected = { code: 0, stdout: `iorio ${version} (node ${process.versions.node})\n`, stderr: '' };
    expect(await iorio(['--version'])).toEqual(expected);
    expect(await iorio(['version'])).toEqual(expected);
    expect(version).toBe(JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version);
  });

  test('an unknown command: did-you-mean and a two-line usage on stderr, exit 2', async () => {
    const result = await iorio(['stauts']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe('iorio: unknown command "stauts"; did you mean status?');
    expect(lines).toHaveLength(3);
    expect((await iorio([])).code).toBe(2);
    expect((await iorio(['status', 'now'])).code).toBe(2);
  });

  test('help lists the commands; help <command> and <command> --help explain one', async () => {
    const help = await iorio(['help']);
    expect(help.code).toBe(0);
    for (const command of ['console', 'start', 'stop', 'ping', 'status', 'version']) expect(help.stdout).toContain(`  ${command} `);
    const status = await iorio(['status', '--help']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^usage: iorio status /);
    expect(status.stdout).toContain('3 not running');
    expect(await iorio(['help', 'status'])).toEqual(status);
    expect((await iorio(['help', 'sattus'])).stderr).toMatch(/did you mean status\?/);
  });
});

describe('environment', () => {
  test('an unknown IORIO_* variable is warned about and the command runs; IORIO_USER / IORIO_PASSWORD are not warned about', async () => {
    const result = await iorio(['stop', '--paths.data', join(root, 'never-started')], { IORIO_FOO: '1', IORIO_USER: 'x', IORIO_PASSWORD: 'y' });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`iorio: warning: ignoring the environment variable IORIO_FOO: not a configuration key\niorio: not running (no node holds the lock of ${join(root, 'never-started')})\n`);
  });
});

describe('start-up failures: one line naming what to change, exit 1', () => {
  test('iorio start on a port in use names the address and http.port', async () => {
    const first = join(root, 'busy-first');
    const { pid, url } = await startIn(first);
    const port = new URL(url).port;
    const second = await iorio(['start', ...nodeFlags(join(root, 'busy-second')).slice(0, 2), '--http.port', port, '--cluster.port', '0']);
    expect(second.code).toBe(1);
    expect(second.stdout).toBe('');
    expect(second.stderr).toMatch(new RegExp(`^iorio: the HTTP address 127\\.0\\.0\\.1:${port} is in use; stop what listens there or choose another port with http\\.port\\n$`));
    await stopIn(first, pid);
  });

  test('iorio start and console with a data folder that cannot be created name the folder and paths.data', async () => {
    const file = join(root, 'a-file');
    await writeFile(file, 'not a folder\n');
    const dataDir = join(file, 'data');
    const expected = new RegExp(`^iorio: cannot create the data folder ${dataDir} \\(ENOTDIR\\); .* paths\\.data\\n$`);
    const started = await iorio(['start', '--paths.data', dataDir]);
    expect(started.code).toBe(1);
    expect(started.stderr).toMatch(expected);
    const consoled = await iorio(['console', '--paths.data', dataDir, '--log.level', 'silent']);
    expect(consoled.code).toBe(1);
    expect(consoled.stderr).toMatch(expected);
  });

  test('the start log line carries the version', async () => {
    const dataDir = join(root, 'logged');
    const { pid } = await startIn(dataDir);
    await stopIn(dataDir, pid);
    const log = readFileSync(join(dataDir, 'log', 'iorio.log'), 'utf8');
    expect(log).toContain(`"version":"${version}"`);
    expect(log).toContain(`"msg":"starting iorio ${version}"`);
  });
});

describe('status and ping: the node of this data folder only', () => {
  test('another node answering the configured address is not this folder\'s node: not running, exit 3', async () => {
    const other = join(root, 'other');
    const { pid, url } = await startIn(other);
    const port = new URL(url).port;
    const mine = join(root, 'mine');
    const conf = join(root, 'mine.conf');
    await writeFile(conf, `paths.data = ${mine}\nhttp.port = ${port}\n`);
    const status = await iorio(['status', '-c', conf]);
    expect(status.code).toBe(3);
    expect(status.stdout).toMatch(/status: +not running\n$/);
    const ping = await iorio(['ping', '-c', conf]);
    expect(ping.code).toBe(1);
    expect(ping.stderr).toBe(`Node 'iorio@127.0.0.1' not responding to pings (no node runs on the data folder ${mine})\n`);
    // Naming the address explicitly asks whoever answers there.
    expect(await iorio(['ping', '-c', conf, '--http.port', port])).toMatchObject({ code: 0, stdout: 'pong\n' });
    const running = await iorio(['status', '--paths.data', other]);
    expect(running.code).toBe(0);
    expect(running.stdout).toContain(`version: ${version}`);
    expect(running.stdout).toMatch(/status: +running\n$/);
    await stopIn(other, pid);
  });

  test('a hung node (SIGSTOP) is not responding: status exit 1, ping exit 1; after SIGCONT it runs again', async () => {
    const dataDir = join(root, 'hung');
    const { pid } = await startIn(dataDir);
    process.kill(pid, 'SIGSTOP');
    try {
      const status = await iorio(['status', '--paths.data', dataDir]);
      expect(status.code).toBe(1);
      expect(status.stdout).toContain(`pid:     ${pid}`);
      expect(status.stdout).toMatch(/status: +not responding \(pid \d+ holds the data folder: hung, stopped or still starting\)\n$/);
      const ping = await iorio(['ping', '--paths.data', dataDir]);
      expect(ping.code).toBe(1);
      expect(ping.stderr).toMatch(/^Node 'iorio@127\.0\.0\.1' not responding to pings \(no answer from http:\/\/127\.0\.0\.1:\d+\/ping within 5 s\)\n$/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect((await iorio(['status', '--paths.data', dataDir])).code).toBe(0);
    await stopIn(dataDir, pid);
  });
});

describe('console', () => {
  test('a bad config file value stops it with one line naming the key, exit 1', async () => {
    const conf = join(root, 'bad.conf');
    await writeFile(conf, 'storage.sync = sometimes\n');
    const result = await iorio(['console', '-c', conf]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`iorio: bad value for storage.sync (from ${conf}:1): expected one of always, batch, none, got "sometimes"\n`);
  });

  test('runs with an unknown IORIO_* variable in its environment, warning once on stderr', async () => {
    const dataDir = join(root, 'console-env');
    const child = spawn(bin, ['console', ...nodeFlags(dataDir), '--log.level', 'warn'], { cwd: root, env: { ...process.env, IORIO_FOO: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
    try {
      await expect.poll(() => existsSync(join(dataDir, 'iorio.url')), { timeout: 30_000 }).toBe(true);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stderr.split('\n')[0]).toBe('iorio: warning: ignoring the environment variable IORIO_FOO: not a configuration key');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
