import { execFile, spawn } from 'node:child_process';
import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, describe, expect, test } from 'vitest';
import { testConfig } from '../../src/config.js';
import { startNode } from '../../src/node.js';
import { call, login, readAll, startTestNode } from './http-harness.js';

const run = promisify(execFile);
const repoRoot = resolve(import.meta.dirname, '../..');

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('graceful stop', () => {
  test('an append in flight when stop() is called finishes, and is on disk after a restart', async () => {
    const testNode = await startTestNode({ 'storage.sync': 'always' });
    const { node, url, dataDir } = testNode;
    const token = testNode.adminToken;
    const body = JSON.stringify({ inflight: true, padding: 'x'.repeat(1000) });
    const { hostname, port } = new URL(url);
    const requestsBefore = node.app.iorioCounters.requests;
    let answer: { status: number; text: string } | undefined;
    const request = http.request({
      host: hostname,
      port,
      method: 'POST',
      path: '/streams/life/s',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-session': token },
    });
    const answered = new Promise<void>((resolve, reject) => {
      request.on('response', (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
        response.on('end', () => {
          answer = { status: response.statusCode ?? 0, text };
          resolve();
        });
      });
      request.on('error', reject);
    });
    request.write(body.slice(0, 10));
    // The server has the request (its onRequest hook ran) but not its body.
    await waitFor('the request to reach the server', () => node.app.iorioCounters.requests > requestsBefore);
    const stopped = node.stop();
    let stopDone = false;
    void stopped.then(() => (stopDone = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(stopDone).toBe(false);
    request.end(body.slice(10));
    await answered;
    await stopped;
    expect(answer!.status).toBe(201);
    expect(JSON.parse(answer!.text).meta.id).toBe(1);

    const config = testConfig({ 'http.port': 0, 'cluster.port': 0, 'paths.data': dataDir, 'auth.bcrypt.rounds': 4 });
    const again = await startNode(config, { logger: pino({ level: 'silent' }) });
    try {
      const adminToken = await login(again.httpUrl, 'admin', 'secret');
      const entries = await readAll({ url: again.httpUrl, adminToken } as never, 'life', 's');
      expect(entries.map((entry) => entry.data)).toEqual([{ inflight: true, padding: 'x'.repeat(1000) }]);
    } finally {
      await again.stop();
      await rm(testNode.root, { recursive: true, force: true });
    }
  });

  test('stop() twice is fine; requests after stop are refused', async () => {
    const testNode = await startTestNode();
    await testNode.node.stop();
    await testNode.node.stop();
    await expect(call(testNode, 'GET', '/ping')).rejects.toThrow();
    await rm(testNode.root, { recursive: true, force: true });
  });
});

describe('rel/bin/iorio', () => {
  const main = join(repoRoot, 'dist/src/main.js');
  let root = '';
  let dataDir = '';
  let bin = '';

  afterAll(async () => {
    // Never leave a node behind, whatever failed.
    const pidFile = join(dataDir, 'iorio.pid');
    if (dataDir !== '' && existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8'));
      if (Number.isSafeInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (root !== '') await rm(root, { recursive: true, force: true });
  });

  async function iorio(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(bin, args, { cwd: root, timeout: 60_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  }

  test('start, ping, status, stop through a symlink from another folder', async () => {
    expect(existsSync(main), `${main} is missing: run npm run build`).toBe(true);
    root = await mkdtemp(join(tmpdir(), 'iorio-cli-'));
    dataDir = join(root, 'data');
    await mkdir(join(root, 'bin'));
    bin = join(root, 'bin', 'iorio');
    await symlink(join(repoRoot, 'rel/bin/iorio'), bin);
    const flags = ['--paths.data', dataDir, '--http.port', '0', '--cluster.port', '0', '--auth.bcrypt.rounds', '4', '--storage.sync', 'none'];

    const started = await iorio('start', ...flags);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    expect(started.stdout).toMatch(/started \(pid [0-9]+\)/);
    expect(existsSync(join(dataDir, 'log', 'iorio.log'))).toBe(true);

    const again = await iorio('start', ...flags);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already running/);

    const pinged = await iorio('ping', '--paths.data', dataDir);
    expect(pinged).toMatchObject({ code: 0, stdout: 'pong\n' });
    const status = await iorio('status', '--paths.data', dataDir);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/status: +running/);

    const stopped = await iorio('stop', '--paths.data', dataDir);
    expect(stopped.code).toBe(0);
    expect(existsSync(join(dataDir, 'iorio.pid'))).toBe(false);
    expect((await iorio('ping', '--paths.data', dataDir)).code).toBe(1);
    expect((await iorio('status', '--paths.data', dataDir)).code).toBe(3);
    expect((await iorio('stop', '--paths.data', dataDir)).code).toBe(1);
  });

  test('console stops cleanly on SIGTERM with exit code 0', async () => {
    const consoleData = join(root, 'console-data');
    const child = spawn(bin, ['console', '--paths.data', consoleData, '--http.port', '0', '--cluster.port', '0', '--auth.bcrypt.rounds', '4'], {
      cwd: root,
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor('the console node to record its pid', () => existsSync(join(consoleData, 'iorio.url')), 30_000);
      const url = readFileSync(join(consoleData, 'iorio.url'), 'utf8').trim();
      expect((await call({ url }, 'GET', '/ping')).status).toBe(200);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(existsSync(join(consoleData, 'iorio.pid'))).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  test('a bad flag stops the start with a message naming the key', async () => {
    const bad = await iorio('console', '--paths.data', join(root, 'bad'), '--http.port', 'eighty');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('http.port');
    const unknown = await iorio('ping', '--no.such.key', '1');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no.such.key');
  });
});
