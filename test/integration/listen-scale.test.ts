/**
 * Thousands of idle listeners on one node: WebSocket and long-poll clients
 * all waiting on one stream, then a single append that must reach every one
 * of them. The counts stay under the process's open-file limit (each
 * in-process connection costs two descriptors, client and server).
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListenSocket, longPoll, postEntries, range, startTestNode, waitFor, waitForGauges, type LongPollResult, type TestNode } from './listen-helpers.js';

const listenersWanted = 2_000;
/** Descriptors kept aside for the node itself (lmdb, chunks, commit log) and vitest. */
const descriptorsReserved = 1_000;

function openFileLimit(): number {
  const text = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  return text === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(text);
}

async function inWaves<T>(count: number, wave: number, open: (index: number) => Promise<T>): Promise<T[]> {
  const opened: T[] = [];
  for (let start = 0; start < count; start += wave) {
    opened.push(...(await Promise.all(range(start, Math.min(count, start + wave) - 1).map(open))));
  }
  return opened;
}

describe('listen at scale', () => {
  let test: TestNode;
  // Two descriptors per connection, two kinds of connection.
  const perKind = Math.min(listenersWanted, Math.floor((openFileLimit() - descriptorsReserved) / 4));

  beforeAll(async () => {
    // Every listener comes from 127.0.0.1: only the node-wide connection bound applies.
    test = await startTestNode({ 'http.connections.per_client.max': 1_000_000 });
  });
  afterAll(async () => {
    await test?.stop();
  });

  it(`delivers one append to ${perKind} idle WebSocket and ${perKind} idle long-poll listeners`, async () => {
    expect(perKind).toBeGreaterThanOrEqual(100);
    const sockets = await inWaves(perKind, 100, () => ListenSocket.open(test.wsUrl, `?jwt=${test.adminToken}&s=scale:s:1`));
    const polls = range(1, perKind).map(() => longPoll(test.url, `?jwt=${test.adminToken}&s=scale:s:1&timeout=120`));
    const results: LongPollResult[] = [];
    for (const poll of polls) void poll.done.then((result) => results.push(result));
    try {
      await waitForGauges(test, 'every listener to be registered', (gauges) => gauges.websocket === perKind && gauges.longPoll === perKind, 60_000);
      // One fan-out for the stream, whatever the number of listeners.
      await waitForGauges(test, 'one subscription', (gauges) => gauges.streams === 1);
      expect(results).toHaveLength(0);

      await postEntries(test, 'scale', 's', [{ hello: 'everyone' }]);
      await waitFor('every WebSocket to get the event', () => sockets.every((socket) => socket.events.length === 1), 60_000);
      await waitFor('every long-poll to answer', () => results.length === perKind, 60_000);
      for (const socket of sockets) expect(socket.events[0]).toMatchObject({ meta: { id: 1, bucket: 'scale', stream: 's' }, data: { hello: 'everyone' } });
      for (const result of results) {
        expect(result.status).toBe(200);
        expect(JSON.parse(result.body)).toEqual([{ meta: { id: 1, t: expect.any(Number), bucket: 'scale', stream: 's' }, data: { hello: 'everyone' } }]);
      }
    } finally {
      for (const poll of polls) poll.abort();
      await inWaves(sockets.length, 200, (index) => sockets[index]!.close());
    }
    await waitForGauges(test, 'every listener to be released', (gauges) => gauges.websocket === 0 && gauges.longPoll === 0 && gauges.streams === 0, 60_000);
  }, 180_000);
});
