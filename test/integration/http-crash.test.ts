import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';

/**
 * The whole node, killed with SIGKILL while clients append over HTTP with
 * storage.sync = always: after a restart, every append that got its 201 is
 * there at the seqnum it was given, and seqnums are gap-free.
 */
const repoRoot = path.resolve(import.meta.dirname, '../..');
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iorio-http-crash-'));
const children = new Set<ChildProcess>();

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function startNodeProcess(): Promise<{ child: ChildProcess; url: string }> {
  const urlFile = path.join(dataDir, 'iorio.url');
  fs.rmSync(urlFile, { force: true });
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(repoRoot, 'src/main.ts'), 'console', '--paths.data', dataDir, '--http.port', '0', '--cluster.port', '0', '--auth.bcrypt.rounds', '4', '--log.level', 'warn', '--storage.sync', 'always', '--http.ratelimit.enabled', 'no'],
    { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  children.add(child);
  child.on('exit', () => children.delete(child));
  const deadline = Date.now() + 30_000;
  while (!fs.existsSync(urlFile)) {
    if (Date.now() > deadline) throw new Error('the node did not start');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, url: fs.readFileSync(urlFile, 'utf8').trim() };
}

async function login(url: string): Promise<string> {
  const response = await fetch(`${url}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'secret' }) });
  return ((await response.json()) as { token: string }).token;
}

describe('SIGKILL of a node under HTTP appends', () => {
  test('every append answered 201 survives, at its seqnum, without gaps', async () => {
    const acked = new Map<string, Map<number, string>>();
    for (const killAfter of [400, 900]) {
      const { child, url } = await startNodeProcess();
      const token = await login(url);
      let count = 0;
      let killed = false;
      const exited = new Promise((resolve) => child.on('exit', resolve));
      const writers = Array.from({ length: 16 }, async (_, writer) => {
        for (let index = 0; !killed && index < 10_000; index++) {
          const stream = `s${(writer * 7 + index) % 12}`;
          const body = JSON.stringify({ writer, index, killAfter });
          try {
            const response = await fetch(`${url}/streams/crash/${stream}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-session': token }, body });
            if (response.status !== 201) continue;
            const { meta } = (await response.json()) as { meta: { id: number } };
            const entries = acked.get(stream) ?? new Map<number, string>();
            entries.set(meta.id, body);
            acked.set(stream, entries);
            if (++count === killAfter) {
              killed = true;
              child.kill('SIGKILL');
            }
          } catch {
            return; // the node is gone
          }
        }
      });
      await Promise.all(writers);
      await exited;
      expect(count).toBeGreaterThanOrEqual(killAfter);
    }
    const { child, url } = await startNodeProcess();
    const token = await login(url);
    for (const [stream, entries] of acked) {
      const response = await fetch(`${url}/streams/crash/${stream}?limit=1000&from=1`, { headers: { 'x-session': token } });
      const read = (await response.json()) as { meta: { id: number }; data: unknown }[];
      expect(read.map((entry) => entry.meta.id)).toEqual(Array.from({ length: read.length }, (_, index) => index + 1));
      const byId = new Map(read.map((entry) => [entry.meta.id, JSON.stringify(entry.data)]));
      for (const [id, body] of entries) expect(byId.get(id), `${stream} ${id}`).toBe(body);
    }
    child.kill('SIGTERM');
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
  }, 120_000);
});
