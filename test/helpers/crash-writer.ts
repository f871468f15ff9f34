/**
 * Child process for the crash test: appends to many streams with
 * storage.sync = always and prints one line per acknowledged append
 * (`ack <stream> <seq> <payload>`), until it is killed.
 */
import { json, openTestStore } from './store.js';

const [dataDir, seedText, streamsText] = process.argv.slice(2);
const seed = Number(seedText);
const streams = Number(streamsText);

const opened = await openTestStore(dataDir!, {
  'storage.sync': 'always',
  'storage.checkpoint.log_size': '256KB',
  'storage.chunk.size': '16KB',
});
process.stdout.write('ready\n');
let counter = 0;
const writers = Array.from({ length: 32 }, async (_, writer) => {
  for (;;) {
    const index = counter++;
    const stream = `s${(index * 7919 + seed + writer) % streams}`;
    const text = JSON.stringify({ seed, index, pad: 'k'.repeat(index % 97) });
    const payloads = index % 5 === 0 ? [json({ batch: 1, index }), Buffer.from(text)] : [Buffer.from(text)];
    const metas = await opened.store.append({ bucket: 'crash', stream, payloads });
    const meta = metas[metas.length - 1]!;
    process.stdout.write(`ack ${stream} ${meta.id} ${text}\n`);
  }
});
await Promise.all(writers);
