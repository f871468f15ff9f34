/**
 * A full disk, for real: the node's data folder on a small tmpfs the test
 * mounts (root only; elsewhere the commit-log seam test in
 * test/unit/commit-log-faults.test.ts injects ENOSPC instead). While the
 * disk is full, appends answer 507 insufficient-storage (retriable) and
 * nothing else breaks: reads, listens and logins work, the node never exits.
 * Once space is back appends resume by themselves, seqnums without a gap,
 * and every acknowledged append reads back, also after a restart and after a
 * crash while the disk was full (a start on a full disk serves reads).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { killAll, login, runNode, stopNode, type Run } from './node-console.js';

const isRoot = process.getuid?.() === 0;
const mountPoint = fs.mkdtempSync(path.join(os.tmpdir(), 'iorio-diskfull-'));
let mounted = false;

afterAll(() => {
  killAll();
  if (mounted) spawnSync('umount', ['-l', mountPoint]);
  fs.rmSync(mountPoint, { recursive: true, force: true });
});

const dataDir = path.join(mountPoint, 'data');
const filler = path.join(mountPoint, 'filler');
const flags = ['--storage.chunk.size', '64KB', '--http.ratelimit.enabled', 'no'];

/** Writes the filler file until the filesystem refuses another byte. */
function fillDisk(): void {
  const fd = fs.openSync(filler, 'a');
  try {
    for (const size of [1024 * 1024, 4096, 1]) {
      const block = Buffer.alloc(size, 0x46);
      for (;;) {
        try {
          fs.writeSync(fd, block);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw error;
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

async function post(url: string, token: string, stream: string, body: unknown): Promise<{ status: number; body: { meta?: { id: number }; type?: string } }> {
  const response = await fetch(`${url}/streams/disk/${stream}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-session': token }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as { meta?: { id: number }; type?: string } };
}

async function readAll(url: string, token: string, stream: string): Promise<{ id: number; data: unknown }[]> {
  const response = await fetch(`${url}/streams/disk/${stream}?limit=1000&from=1`, { headers: { 'x-session': token } });
  expect(response.status).toBe(200);
  return ((await response.json()) as { meta: { id: number }; data: unknown }[]).map((entry) => ({ id: entry.meta.id, data: entry.data }));
}

describe.skipIf(!isRoot)('a full disk (tmpfs, as root)', () => {
  test('appends get 507 while reads, listens and logins work; appends resume when space is back; nothing acknowledged is lost across restarts and a crash', async () => {
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', mountPoint], { encoding: 'utf8' });
    expect(mount.status, mount.stderr).toBe(0);
    mounted = true;
    const acked = new Map<string, Map<number, unknown>>();
    const remember = (stream: string, id: number, data: unknown) => {
      const entries = acked.get(stream) ?? new Map<number, unknown>();
      expect(entries.has(id), `${stream} ${id} acknowledged twice`).toBe(false);
      entries.set(id, data);
      acked.set(stream, entries);
    };
    const expectEverything = async (run: Run) => {
      const token = await login(run.url()!);
      for (const [stream, entries] of acked) {
        const read = await readAll(run.url()!, token, stream);
        // Gap-free, and every acknowledged entry at its seqnum with its body.
        expect(read.map((entry) => entry.id)).toEqual(Array.from({ length: read.length }, (_, index) => index + 1));
        for (const [id, data] of entries) expect(read[id - 1]?.data, `${stream} ${id}`).toEqual(data);
      }
    };
    /** Appends until the node refuses with 507 (bounded); every 201 is remembered. */
    const appendUntilFull = async (url: string, token: string, tag: string) => {
      for (let index = 0; index < 5000; index++) {
        const stream = `s${index % 4}`;
        const data = { tag, index, pad: 'z'.repeat(2000) };
        const answer = await post(url, token, stream, data);
        if (answer.status === 201) {
          remember(stream, answer.body.meta!.id, data);
          continue;
        }
        expect(answer.status, JSON.stringify(answer.body)).toBe(507);
        expect(answer.body.type).toBe('insufficient-storage');
        return;
      }
      throw new Error('the node never refused an append on a full disk');
    };

    let run = runNode(dataDir, ...flags);
    expect(await run.started, run.stderr()).toBe(true);
    let token = await login(run.url()!);
    for (let index = 0; index < 100; index++) {
      const data = { before: index };
      const answer = await post(run.url()!, token, `s${index % 4}`, data);
      expect(answer.status).toBe(201);
      remember(`s${index % 4}`, answer.body.meta!.id, data);
    }

    fillDisk();
    await appendUntilFull(run.url()!, token, 'first');
    // Full: more appends are refused, never a 500, and the node stays up.
    for (let index = 0; index < 20; index++) expect((await post(run.url()!, token, 's0', { refused: index })).status).toBe(507);
    await expectEverything(run);
    const longPoll = await fetch(`${run.url()}/listen?jwt=${token}&s=disk:s1:1&timeout=1`);
    expect(longPoll.status).toBe(200);
    expect(((await longPoll.json()) as unknown[]).length).toBeGreaterThan(0);
    expect(typeof (await login(run.url()!))).toBe('string');
    const stats = (await (await fetch(`${run.url()}/stats`, { headers: { 'x-session': token } })).json()) as { store: { writesRefused: string | null } };
    expect(stats.store.writesRefused).toMatch(/disk of this node is full/);

    // Space is back: appends resume by themselves, with the next seqnum.
    fs.rmSync(filler);
    let resumed: { status: number; body: { meta?: { id: number } } } | undefined;
    for (let attempt = 0; attempt < 100; attempt++) {
      const data = { resumed: attempt };
      resumed = await post(run.url()!, token, 's0', data);
      if (resumed.status === 201) {
        remember('s0', resumed.body.meta!.id, data);
        break;
      }
      expect(resumed.status).toBe(507);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(resumed?.status).toBe(201);
    await expectEverything(run);
    await stopNode(run);

    // A restart keeps everything.
    run = runNode(dataDir, ...flags);
    expect(await run.started, run.stderr()).toBe(true);
    await expectEverything(run);

    // Full again, then a crash: a start on the full disk serves reads.
    token = await login(run.url()!);
    fillDisk();
    await appendUntilFull(run.url()!, token, 'second');
    run.child.kill('SIGKILL');
    await run.exited;
    run = runNode(dataDir, ...flags);
    expect(await run.started, run.stderr()).toBe(true);
    await expectEverything(run);
    token = await login(run.url()!);
    expect((await post(run.url()!, token, 's2', { stillFull: true })).status).toBe(507);
    fs.rmSync(filler);
    let after = 0;
    for (let attempt = 0; attempt < 100 && after !== 201; attempt++) {
      const data = { afterCrash: attempt };
      const answer = await post(run.url()!, token, 's2', data);
      after = answer.status;
      if (after === 201) remember('s2', answer.body.meta!.id, data);
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(after).toBe(201);
    await stopNode(run);
    run = runNode(dataDir, ...flags);
    expect(await run.started, run.stderr()).toBe(true);
    await expectEverything(run);
    await stopNode(run);
  }, 120_000);
});
