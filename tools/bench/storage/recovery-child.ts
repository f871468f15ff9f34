/**
 * Child of the storage scenario's recovery measurement.
 *   write <dir> <bytes>: appends until `bytes` of un-checkpointed data are in
 *     the commit log, prints `written`, then waits to be SIGKILLed.
 *   open <dir>: opens the store (recovery), prints `open <ms>`, closes.
 */
import { openBenchStore, payload200 } from './shared.js';

const [mode, dataDir, bytesText] = process.argv.slice(2);
const noCheckpoint = { 'storage.checkpoint.interval': '24h', 'storage.checkpoint.log_size': '64GB', 'storage.sync': 'none' } as const;

if (mode === 'write') {
  const target = Number(bytesText);
  const { store } = await openBenchStore(dataDir!, noCheckpoint);
  let written = 0;
  let index = 0;
  const streams = 1000;
  while (written < target) {
    const batch: Promise<unknown>[] = [];
    for (let writer = 0; writer < 64; writer++) {
      const payloads = Array.from({ length: 50 }, () => payload200(index++));
      batch.push(store.append({ bucket: 'bench', stream: `s${index % streams}`, payloads }));
      written += 50 * (200 + 28);
    }
    await Promise.all(batch);
  }
  process.stdout.write(`written ${written}\n`);
  setInterval(() => undefined, 1000);
} else if (mode === 'open') {
  const started = performance.now();
  const { store, close } = await openBenchStore(dataDir!, { 'storage.checkpoint.interval': '24h' });
  const openMs = performance.now() - started;
  const last = await store.lastSeq('bench', 's1');
  process.stdout.write(`open ${openMs.toFixed(0)} ${last}\n`);
  await close();
} else {
  process.stderr.write('usage: storage-recovery-child write <dir> <bytes> | open <dir>\n');
  process.exit(2);
}
