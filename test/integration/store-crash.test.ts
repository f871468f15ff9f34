import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { json, openTestStore, tempDir } from '../helpers/store.js';

const writer = path.join(import.meta.dirname, '../helpers/crash-writer.ts');
const dir = tempDir('iorio-crash-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Ack {
  stream: string;
  seq: number;
  text: string;
}

/** Runs the writer until it has acknowledged `acks` appends, then SIGKILLs it. */
function runAndKill(seed: number, acks: number): Promise<Ack[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', writer, dir, String(seed), '200'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const seen: Ack[] = [];
    let buffer = '';
    let stderr = '';
    const deadline = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stderr.on('data', (data) => (stderr += data));
    child.stdout.on('data', (data: Buffer) => {
      buffer += data.toString();
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (!line.startsWith('ack ')) continue;
        const [, stream, seq, ...rest] = line.split(' ');
        seen.push({ stream: stream!, seq: Number(seq), text: rest.join(' ') });
        if (seen.length === acks) child.kill('SIGKILL');
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(deadline);
      if (signal !== 'SIGKILL') reject(new Error(`writer exited with ${code}: ${stderr}`));
      else resolve(seen);
    });
  });
}

describe('crash safety with storage.sync = always', () => {
  test('every acknowledged append survives SIGKILL, with its seqnum, and seqnums go on without a gap', async () => {
    const acked = new Map<string, Map<number, string>>();
    // Three crashes in a row on the same data, at different moments.
    for (const [seed, acks] of [
      [11, 1500],
      [23, 4000],
      [37, 700],
    ] as const) {
      const seen = await runAndKill(seed, acks);
      expect(seen.length).toBeGreaterThanOrEqual(acks);
      for (const ack of seen) {
        const stream = acked.get(ack.stream) ?? new Map<number, string>();
        stream.set(ack.seq, ack.text);
        acked.set(ack.stream, stream);
      }
      const opened = await openTestStore(dir);
      for (const [stream, entries] of acked) {
        const result = await opened.store.read('crash', stream, { limit: 1000, from: 1 });
        const bySeq = new Map(result.entries.map((entry) => [entry.seq, entry.payload.toString()]));
        for (const [seq, text] of entries) expect(bySeq.get(seq), `${stream} seq ${seq}`).toBe(text);
        // Gap-free from 1 to the last seqnum.
        expect(result.entries.map((entry) => entry.seq)).toEqual(Array.from({ length: result.entries.length }, (_, index) => index + 1));
        expect(result.last).toBe(result.entries.length);
      }
      await opened.close();
    }
    const opened = await openTestStore(dir);
    for (const stream of [...acked.keys()].slice(0, 20)) {
      const last = await opened.store.lastSeq('crash', stream);
      const [meta] = await opened.store.append({ bucket: 'crash', stream, payloads: [json('after the crashes')] });
      expect(meta!.id).toBe(last + 1);
    }
    await opened.close();
  }, 180_000);
});
