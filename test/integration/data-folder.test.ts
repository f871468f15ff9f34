/**
 * The data folder as an operator meets it, with real node processes: one
 * node per folder (an OS lock, never stale), damaged or missing metadata,
 * a folder the node cannot write. Every refusal is one line on stderr,
 * naming the folder or file, with exit status 1; never a stack trace or a
 * crash by signal.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { children, expectRefusal, killAll, login, repoRoot, runNode, stopNode } from './node-console.js';

const lockModule = path.join(repoRoot, 'dist/src/store/data-folder.js');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'iorio-datafolder-'));
const isRoot = process.getuid?.() === 0;

afterAll(() => {
  killAll();
  fs.rmSync(scratch, { recursive: true, force: true });
});

function newDataDir(): string {
  return fs.mkdtempSync(path.join(scratch, 'data-'));
}

describe('one node per data folder', () => {
  test('two processes racing for one folder, a hundred times: exactly one holds the lock each time', async () => {
    // The lock is the first thing a node takes; racing the lock itself keeps a hundred races quick.
    // A winner holds the lock until both have tried (its stdin is closed then), so the two always overlap.
    const contender = (dataDir: string) => {
      const script = `import(${JSON.stringify(lockModule)}).then((m) => { try { m.acquireDataLock(${JSON.stringify(dataDir)}); process.stdout.write('locked'); process.stdin.resume(); process.stdin.on('end', () => process.exit(0)); } catch (e) { process.stdout.write('refused: ' + e.message); } })`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
      children.add(child);
      let out = '';
      const tried = new Promise<string>((resolve) => child.stdout.on('data', (chunk: Buffer) => resolve((out += chunk.toString()))));
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      return { child, tried, exited };
    };
    const race = async (dataDir: string) => {
      const pair = [contender(dataDir), contender(dataDir)];
      const outcomes = await Promise.all(pair.map((one) => one.tried));
      for (const one of pair) one.child.stdin.end();
      await Promise.all(pair.map((one) => one.exited));
      for (const one of pair) children.delete(one.child);
      return outcomes;
    };
    const folders = Array.from({ length: 5 }, () => newDataDir());
    const outcomes: string[][] = [];
    for (let round = 0; round < 20; round++) {
      outcomes.push(...(await Promise.all(folders.map((folder) => race(folder)))));
    }
    expect(outcomes).toHaveLength(100);
    for (const pair of outcomes) {
      expect(pair.filter((outcome) => outcome === 'locked'), pair.join(' | ')).toHaveLength(1);
      expect(pair.find((outcome) => outcome !== 'locked')).toMatch(/^refused: the data folder .* is in use by another node \(pid \d+\)/);
    }
  });

  test('two whole nodes started at once on one folder: one serves, the other exits 1 with one line naming the folder and the pid', async () => {
    for (let round = 0; round < 3; round++) {
      const dataDir = newDataDir();
      const runs = [runNode(dataDir), runNode(dataDir)];
      const started = await Promise.all(runs.map((run) => run.started));
      expect(started.filter(Boolean)).toHaveLength(1);
      const winner = runs[started.indexOf(true)]!;
      const loser = runs[started.indexOf(false)]!;
      await expectRefusal(loser, new RegExp(`^iorio: the data folder ${dataDir} is in use by another node \\(pid ${winner.child.pid}\\)`));
      await stopNode(winner);
    }
  });

  test('a restart right after kill -9 starts at once, with every acknowledged append', async () => {
    const dataDir = newDataDir();
    const first = runNode(dataDir);
    expect(await first.started).toBe(true);
    const token = await login(first.url()!);
    const ids: number[] = [];
    for (let index = 0; index < 20; index++) {
      const response = await fetch(`${first.url()}/streams/b/s`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-session': token }, body: JSON.stringify({ index }) });
      ids.push(((await response.json()) as { meta: { id: number } }).meta.id);
    }
    first.child.kill('SIGKILL');
    await first.exited;
    const second = runNode(dataDir);
    expect(await second.started, second.stderr()).toBe(true);
    const read = await fetch(`${second.url()}/streams/b/s?limit=100&from=1`, { headers: { 'x-session': await login(second.url()!) } });
    expect(((await read.json()) as { meta: { id: number } }[]).map((entry) => entry.meta.id)).toEqual(ids);
    await stopNode(second);
  });
});

describe('damaged or missing metadata', () => {
  async function folderWithData(): Promise<string> {
    const dataDir = newDataDir();
    const run = runNode(dataDir);
    expect(await run.started).toBe(true);
    const token = await login(run.url()!);
    await fetch(`${run.url()}/streams/b/s`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-session': token }, body: '{"kept":true}' });
    await stopNode(run);
    return dataDir;
  }

  test('a truncated lmdb file stops the start with one line naming it, never a SIGBUS', async () => {
    const dataDir = await folderWithData();
    const file = path.join(dataDir, 'meta', 'data.mdb');
    const original = fs.readFileSync(file);
    fs.truncateSync(file, Math.floor(original.length / 2));
    await expectRefusal(runNode(dataDir), new RegExp(`^iorio: the metadata file ${file} is damaged \\(truncated: `));
    // Not an LMDB file at all.
    fs.writeFileSync(file, Buffer.alloc(original.length, 0x41));
    await expectRefusal(runNode(dataDir), /is damaged \(not an LMDB file/);
    // Put back, it starts.
    fs.writeFileSync(file, original);
    const run = runNode(dataDir);
    expect(await run.started, run.stderr()).toBe(true);
    await stopNode(run);
  });

  test('a deleted meta/ beside stream data stops the start and says how to force it; forced, the streams are kept', async () => {
    const dataDir = await folderWithData();
    fs.rmSync(path.join(dataDir, 'meta'), { recursive: true });
    await expectRefusal(runNode(dataDir), /holds stream data but .*meta is missing or empty .* --storage\.meta\.recreate yes/);
    expect(fs.existsSync(path.join(dataDir, 'meta'))).toBe(false);
    const run = runNode(dataDir, '--storage.meta.recreate', 'yes');
    expect(await run.started, run.stderr()).toBe(true);
    const read = await fetch(`${run.url()}/streams/b/s?limit=10`, { headers: { 'x-session': await login(run.url()!) } });
    expect(await read.json()).toEqual([{ meta: { id: 1, t: expect.any(Number) }, data: { kept: true } }]);
    await stopNode(run);
  });

  test('an emptied metadata store beside stream data stops the start too', async () => {
    const dataDir = await folderWithData();
    fs.rmSync(path.join(dataDir, 'meta'), { recursive: true });
    fs.mkdirSync(path.join(dataDir, 'meta'));
    fs.writeFileSync(path.join(dataDir, 'meta', 'data.mdb'), '');
    await expectRefusal(runNode(dataDir), /holds stream data but .*meta is missing or empty/);
  });
});

describe('the default admin password', () => {
  test('a node whose admin still has the default password says so on stderr at start; one created with another says nothing', async () => {
    const plain = runNode(newDataDir());
    expect(await plain.started).toBe(true);
    await expect.poll(() => plain.stderr()).toMatch(/^iorio: warning: the admin user admin still has the default password; change it with iorio-admin user passwd admin <new-password>\n$/);
    await stopNode(plain);
    const chosen = runNode(newDataDir(), '--auth.admin.password', 'correct horse');
    expect(await chosen.started).toBe(true);
    await stopNode(chosen);
    expect(chosen.stderr()).toBe('');
  });
});

describe('a data folder the node cannot write', () => {
  test('a read-only folder gets one line naming it', async () => {
    const dataDir = await (async () => {
      const folder = newDataDir();
      const run = runNode(folder);
      expect(await run.started).toBe(true);
      await stopNode(run);
      return folder;
    })();
    if (isRoot) {
      // Root ignores file modes: make the folder a read-only mount of itself.
      spawnSyncOrThrow('mount', ['--bind', dataDir, dataDir]);
      spawnSyncOrThrow('mount', ['-o', 'remount,bind,ro', dataDir]);
    } else {
      fs.chmodSync(dataDir, 0o555);
    }
    try {
      await expectRefusal(runNode(dataDir), new RegExp(`^iorio: the data folder ${dataDir} is not writable \\(E(ROFS|ACCES)\\)`));
    } finally {
      if (isRoot) spawnSyncOrThrow('umount', [dataDir]);
      else fs.chmodSync(dataDir, 0o755);
    }
  });

  test('a folder that cannot be made (under /proc, where Node 20\'s recursive mkdir used to spin forever) gets one line naming it', async () => {
    await expectRefusal(runNode('/proc/iorio-nope/data'), /^iorio: cannot create the data folder \/proc\/iorio-nope\/data \(ENOENT\)/);
  });

  test('a port in use gets one line naming it and the key that changes it', async () => {
    const first = runNode(newDataDir());
    expect(await first.started).toBe(true);
    const port = new URL(first.url()!).port;
    await expectRefusal(runNode(newDataDir(), '--http.port', port), new RegExp(`^iorio: the HTTP address 127\\.0\\.0\\.1:${port} is in use; .* http\\.port`));
    await stopNode(first);
  });
});

function spawnSyncOrThrow(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr}`);
}
