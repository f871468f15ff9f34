/**
 * A damaged chunk as clients see it: a closed chunk cut to half (lost
 * entries in the middle of a stream). A GET steps over the lost entries to
 * the next intact ones and names them (x-iorio-missing-seqnums), never an
 * empty page when data follows, never a 500 or a server path; a listen
 * replay announces them with a truncated notice where they fall.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestNode, type TestNode } from './http-harness.js';
import { ListenSocket, SseClient, longPoll, postEntries, range, waitFor } from './listen-helpers.js';

const config = { 'storage.chunk.size': '4KB', 'channel.max_items': 1 } as const;
let first: TestNode;
let node: TestNode;
let lost: { from: number; to: number };

function chunkFiles(dataDir: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(path.join(dir, entry.name));
      else if (entry.name.endsWith('.chunk')) found.push(path.join(dir, entry.name));
    }
  };
  walk(path.join(dataDir, 'vnodes'));
  return found.sort();
}

beforeAll(async () => {
  first = await startTestNode(config);
  await postEntries(first, 'b', 's', range(1, 300).map((index) => ({ index, pad: 'd'.repeat(40) })));
  await first.node.stop();
  await first.node.auth.close();
  const chunks = chunkFiles(first.dataDir);
  const third = chunks[2]!;
  const firstSeq = Number(path.basename(third, '.chunk'));
  const lastSeq = Number(path.basename(chunks[3]!, '.chunk')) - 1;
  // Cut in the middle of a record: the entries from there to the chunk's end are lost.
  fs.truncateSync(third, Math.floor(fs.statSync(third).size / 2) + 3);
  node = await startTestNode({ ...config, 'paths.data': first.dataDir });
  await node.node.store.closedChunksChecked;
  const [report] = node.node.store.stats().damaged;
  expect(report!.from).toBeGreaterThan(firstSeq);
  lost = { from: report!.from, to: lastSeq };
});

afterAll(async () => {
  await node?.stop();
  await first?.stop();
});

const kept = () => range(1, 300).filter((seq) => seq < lost.from || seq > lost.to);

describe('reads past a damaged chunk', () => {
  test('GET from before the damage returns every intact entry and names the lost ones in x-iorio-missing-seqnums', async () => {
    const response = await fetch(`${node.url}/streams/b/s?limit=1000&from=1`, { headers: { 'x-session': node.adminToken } });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-iorio-missing-seqnums')).toBe(`${lost.from}-${lost.to}`);
    const entries = (await response.json()) as { meta: { id: number } }[];
    expect(entries.map((entry) => entry.meta.id)).toEqual(kept());
  });

  test('GET from inside the lost range gets the next intact entries, not an empty page', async () => {
    const response = await fetch(`${node.url}/streams/b/s?limit=3&from=${lost.from + 1}`, { headers: { 'x-session': node.adminToken } });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-iorio-missing-seqnums')).toBe(`${lost.from + 1}-${lost.to}`);
    expect(((await response.json()) as { meta: { id: number } }[]).map((entry) => entry.meta.id)).toEqual([lost.to + 1, lost.to + 2, lost.to + 3]);
  });

  test('/stats lists the damaged range; no response ever names a server path', async () => {
    const stats = (await (await fetch(`${node.url}/stats`, { headers: { 'x-session': node.adminToken } })).json()) as { store: { damaged: unknown[]; damagedRanges: number } };
    expect(stats.store.damagedRanges).toBe(1);
    expect(stats.store.damaged).toEqual([expect.objectContaining({ bucket: 'b', stream: 's', from: lost.from, to: lost.to })]);
    const body = await (await fetch(`${node.url}/streams/b/s?limit=1000&from=${lost.from - 2}`, { headers: { 'x-session': node.adminToken } })).text();
    expect(body).not.toContain(node.dataDir);
  });

  test('a WebSocket replay announces the lost range with a truncated notice where it falls, and goes on', async () => {
    const socket = await ListenSocket.open(node.url.replace('http', 'ws'), `?jwt=${node.adminToken}&s=b:s:${lost.from - 2}`);
    await waitFor('the replay', () => socket.events.some((event) => event.meta.id === 300));
    const notices = socket.messages.filter((message) => !Array.isArray(message) && (message as { type?: string }).type === 'truncated');
    expect(notices).toEqual([{ type: 'truncated', bucket: 'b', stream: 's', requested: lost.from, first: lost.to + 1 }]);
    expect(socket.events.map((event) => event.meta.id)).toEqual([lost.from - 2, lost.from - 1, ...range(lost.to + 1, 300)]);
    // The notice comes after the entries before the loss and before the ones after it.
    const noticeIndex = socket.messages.indexOf(notices[0]);
    const before = socket.messages.slice(0, noticeIndex).filter(Array.isArray).flat() as { meta: { id: number } }[];
    expect(before.map((event) => event.meta.id)).toEqual([lost.from - 2, lost.from - 1]);
    socket.socket.close();
  });

  test('SSE and long-poll replays step over the lost range too', async () => {
    const sse = await SseClient.open(node.url, `?jwt=${node.adminToken}&s=b:s:${lost.from}`);
    await waitFor('the SSE replay', () => sse.events.some((event) => event.meta.id === 300));
    expect(sse.events.map((event) => event.meta.id)).toEqual(range(lost.to + 1, 300));
    sse.close();
    const poll = await longPoll(node.url, `?jwt=${node.adminToken}&s=b:s:${lost.from}&timeout=1`).done;
    expect(poll.status).toBe(200);
    expect((JSON.parse(poll.body) as { meta: { id: number } }[])[0]!.meta.id).toBe(lost.to + 1);
  });
});
