/**
 * Scenario `storage` (issue 2): durable appends through the stream store,
 * beside raw fs writes of the same bytes with one fdatasync per batch.
 *
 * - baseline: 64 records of 228 bytes (a 200-byte payload plus the record
 *   header) written to one file, then one fdatasync, in a loop.
 * - one stream: 64 concurrent writers appending 200-byte JSON, sync = always.
 * - 1,000 streams: the same, each append to the next of 1,000 streams.
 * - recovery: a child writes 1 GB of un-checkpointed data and is SIGKILLed;
 *   a fresh process opens the store, and the open time is reported.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Latencies } from '../../common/stats.js';
import type { BenchContext, BenchOption, BenchRow } from '../harness.js';
import { openBenchStore, payload200 } from '../storage/shared.js';

export interface StorageRow {
  readonly scenario: 'storage';
  readonly variant: string;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly ratio: number | undefined;
  readonly note: string;
}

export interface StorageOptions {
  readonly seconds: number;
  /** Bytes of un-checkpointed data for the recovery measurement (0 skips it). */
  readonly recoveryBytes: number;
  readonly log?: (line: string) => void;
}

const writers = 64;

/** `npm run bench -- storage [--seconds N] [--recovery-gb G]` (G = 0 skips the recovery measurement). */
/** What `npm run bench -- storage` accepts, checked before anything runs. */
export const options: Readonly<Record<string, BenchOption>> = {
  'recovery-gb': {
    doc: 'gigabytes written before the kill -9 of the recovery row (1; 0 skips it)',
    check: (raw) => (/^\d+(\.\d+)?$/.test(raw) ? undefined : `a number of gigabytes (0 skips recovery), got "${raw}"`),
  },
};

export async function run(context: BenchContext): Promise<BenchRow[]> {
  const recoveryGb = Number(context.options['recovery-gb'] ?? '1');
  const rows = await runStorage({ seconds: context.seconds, recoveryBytes: Math.round(recoveryGb * 2 ** 30), log: context.log });
  return rows.map((row, index) => ({
    variant: row.variant,
    group: row.variant.startsWith('recovery') ? 'recovery' : 'durable appends',
    baseline: index === 0,
    opsPerSec: row.opsPerSec,
    unit: row.variant.startsWith('recovery') ? 'ms to open' : 'appends/s',
    p50Ms: row.p50Ms,
    p99Ms: row.p99Ms,
    notes: row.note,
  }));
}

export async function runStorage(options: StorageOptions): Promise<StorageRow[]> {
  const log = options.log ?? (() => undefined);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'iorio-bench-storage-'));
  try {
    log('storage: raw fs baseline');
    const baseline = rawBaseline(path.join(root, 'raw.dat'), options.seconds);
    const rows: StorageRow[] = [{ ...baseline, ratio: 1 }];
    for (const [variant, streams] of [
      ['one stream, 64 writers, sync=always', 1],
      ['1,000 streams, 64 writers, sync=always', 1000],
    ] as const) {
      log(`storage: ${variant}`);
      const result = await storeAppends(path.join(root, `store-${streams}`), streams, options.seconds);
      rows.push({ scenario: 'storage', variant, ...result, ratio: result.opsPerSec / baseline.opsPerSec, note: result.note });
    }
    if (options.recoveryBytes > 0) {
      log(`storage: recovery after SIGKILL with ${(options.recoveryBytes / 2 ** 30).toFixed(1)} GB un-checkpointed`);
      rows.push(await recovery(path.join(root, 'recovery'), options.recoveryBytes));
    }
    return rows;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

function rawBaseline(file: string, seconds: number): Omit<StorageRow, 'ratio'> {
  const batch = Buffer.alloc(writers * 228, 0x61);
  const fd = fs.openSync(file, 'w');
  const latencies = new Latencies();
  let batches = 0;
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) {
    const begin = performance.now();
    fs.writeSync(fd, batch);
    fs.fdatasyncSync(fd);
    latencies.add(performance.now() - begin);
    batches++;
  }
  const elapsed = (performance.now() - started) / 1000;
  fs.closeSync(fd);
  const summary = latencies.summary();
  return {
    scenario: 'storage',
    variant: 'baseline: raw write + fdatasync per 64 records',
    opsPerSec: (batches * writers) / elapsed,
    p50Ms: summary.p50Ms,
    p99Ms: summary.p99Ms,
    note: `${batches} fdatasyncs`,
  };
}

async function storeAppends(dataDir: string, streams: number, seconds: number) {
  const { store, close } = await openBenchStore(dataDir, { 'storage.sync': 'always' });
  const latencies = new Latencies();
  const payloads = Array.from({ length: 1024 }, (_, index) => payload200(index));
  // Warm up: every stream exists (folder, chunk file) before the clock starts.
  for (let start = 0; start < streams; start += writers) {
    await Promise.all(
      Array.from({ length: Math.min(writers, streams - start) }, (_, offset) =>
        store.append({ bucket: 'bench', stream: `s${start + offset}`, payloads: [payloads[0]!] }),
      ),
    );
  }
  const flushesBefore = store.stats().logFlushes;
  let appends = 0;
  let next = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (performance.now() < deadline) {
        const index = next++;
        const begin = performance.now();
        await store.append({ bucket: 'bench', stream: `s${index % streams}`, payloads: [payloads[index % payloads.length]!] });
        latencies.add(performance.now() - begin);
        appends++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const flushes = store.stats().logFlushes - flushesBefore;
  await close();
  const summary = latencies.summary();
  return { opsPerSec: appends / elapsed, p50Ms: summary.p50Ms, p99Ms: summary.p99Ms, note: `${flushes} fdatasyncs, ${(appends / Math.max(1, flushes)).toFixed(1)} appends each` };
}

async function recovery(dataDir: string, bytes: number): Promise<StorageRow> {
  // Compiled: a .js beside this file; run from source (tsx): the .ts.
  const self = fileURLToPath(import.meta.url);
  const fromSource = self.endsWith('.ts');
  const child = path.join(path.dirname(self), '..', 'storage', `recovery-child.${fromSource ? 'ts' : 'js'}`);
  const nodeArgs = fromSource ? ['--import', 'tsx'] : [];
  await new Promise<void>((resolve, reject) => {
    const writer = spawn(process.execPath, [...nodeArgs, child, 'write', dataDir, String(bytes)], { stdio: ['ignore', 'pipe', 'inherit'] });
    writer.stdout.on('data', (data: Buffer) => {
      if (data.toString().includes('written')) writer.kill('SIGKILL');
    });
    writer.on('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error('recovery writer exited on its own'))));
  });
  const logBytes = fs.readdirSync(path.join(dataDir, 'commitlog')).reduce((sum, name) => sum + fs.statSync(path.join(dataDir, 'commitlog', name)).size, 0);
  const began = performance.now();
  let servingMs = Number.NaN;
  const output = await new Promise<string>((resolve, reject) => {
    const opener = spawn(process.execPath, [...nodeArgs, child, 'open', dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    opener.stdout.on('data', (data: Buffer) => {
      text += data.toString();
      // Serving from the moment the store is open; the child then closes it (a checkpoint), which is not counted.
      if (Number.isNaN(servingMs) && text.includes('open ')) servingMs = performance.now() - began;
    });
    opener.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`recovery open exited with ${code}`))));
  });
  const processMs = servingMs;
  const openMs = Number(/open (\d+)/.exec(output)?.[1]);
  return {
    scenario: 'storage',
    variant: `recovery: open after SIGKILL, ${(logBytes / 2 ** 30).toFixed(2)} GB commit log`,
    opsPerSec: Number.NaN,
    p50Ms: openMs,
    p99Ms: Number.NaN,
    ratio: undefined,
    note: `store open ${openMs} ms; new process to serving ${processMs.toFixed(0)} ms`,
  };
}
