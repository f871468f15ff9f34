/**
 * GET /listen as Server-Sent Events and as long-poll against a real node:
 * events, replay, the 200 / 204 answers, truncation, every refusal with its
 * status and body, and the release of a long-poll whose client went away.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ListenSocket,
  SseClient,
  createUser,
  longPoll,
  postEntries,
  range,
  startTestNode,
  storeEntries,
  waitFor,
  waitForGauges,
  type ListenEvent,
  type TestNode,
} from './listen-helpers.js';

describe('listen over HTTP', () => {
  let test: TestNode;
  let bobToken: string;

  beforeAll(async () => {
    test = await startTestNode({ 'channel.max_items': 5 });
    bobToken = await createUser(test, 'bob', 'bobpassword');
  });
  afterAll(async () => {
    await test?.stop();
  });

  const auth = () => `jwt=${test.adminToken}`;

  describe('long-poll', () => {
    it('answers 200 at once with the replay when entries at or after from exist', async () => {
      await storeEntries(test, 'lp', 'replay', range(1, 8).map((n) => ({ n })));
      const result = await longPoll(test.url, `?${auth()}&s=lp:replay:3`).done;
      expect(result.status).toBe(200);
      expect(result.headers['content-type']).toMatch(/^application\/json/);
      expect(result.headers['x-iorio-first-seqnum']).toBeUndefined();
      const events = JSON.parse(result.body) as ListenEvent[];
      expect(events.map((event) => event.meta.id)).toEqual(range(3, 8));
      expect(events[0]).toMatchObject({ meta: { id: 3, bucket: 'lp', stream: 'replay' }, data: { n: 3 } });
    });

    it('takes from 0 as from 1, as GET does: every entry', async () => {
      await storeEntries(test, 'lp', 'zero', range(1, 3).map((n) => ({ n })));
      const result = await longPoll(test.url, `?${auth()}&s=lp:zero:0`).done;
      expect(result.status).toBe(200);
      expect((JSON.parse(result.body) as ListenEvent[]).map((event) => event.meta.id)).toEqual([1, 2, 3]);
      const socket = await ListenSocket.open(test.wsUrl, `?${auth()}`);
      try {
        expect(await socket.command({ cmd: 'subscribe', bucket: 'lp', stream: 'zero', from: 0, id: 'z' })).toEqual({ ok: true, id: 'z', type: 'subscribe' });
        await socket.waitForEvents(3);
        expect(socket.ids()).toEqual([1, 2, 3]);
      } finally {
        await socket.close();
      }
    });

    it('waits for the next entry and answers 200 with it', async () => {
      await storeEntries(test, 'lp', 'wait', [{ n: 1 }]);
      const poll = longPoll(test.url, `?${auth()}&s=lp:wait:2&timeout=20`);
      await waitForGauges(test, 'the long-poll to be registered', (gauges) => gauges.longPoll === 1);
      await postEntries(test, 'lp', 'wait', [{ n: 2 }]);
      const result = await poll.done;
      expect(result.status).toBe(200);
      expect(JSON.parse(result.body)).toEqual([{ meta: { id: 2, t: expect.any(Number), bucket: 'lp', stream: 'wait' }, data: { n: 2 } }]);
    });

    it('takes the jwt from x-session and Authorization: Bearer as well', async () => {
      await storeEntries(test, 'lp', 'headers', [{ n: 1 }]);
      const variants: Record<string, string>[] = [{ 'x-session': test.adminToken }, { authorization: `Bearer ${test.adminToken}` }];
      for (const headers of variants) {
        const result = await longPoll(test.url, '?s=lp:headers:1', headers).done;
        expect(result.status).toBe(200);
        expect(JSON.parse(result.body)).toHaveLength(1);
      }
    });

    it('answers 204 when nothing arrives before timeout=<secs>', async () => {
      const result = await longPoll(test.url, `?${auth()}&s=lp:quiet&timeout=1&1732200000.12`).done;
      expect(result.status).toBe(204);
      expect(result.body).toBe('');
    });

    it('gathers several streams in one answer', async () => {
      await storeEntries(test, 'lp', 'x', [{ x: 1 }, { x: 2 }]);
      await storeEntries(test, 'lp', 'y', [{ y: 1 }]);
      const result = await longPoll(test.url, `?${auth()}&s=lp:x:1&s=lp:y:1&s=lp:z`).done;
      expect(result.status).toBe(200);
      const events = JSON.parse(result.body) as ListenEvent[];
      expect(events.map((event) => `${event.meta.stream}:${event.meta.id}`).sort()).toEqual(['x:1', 'x:2', 'y:1']);
    });

    it('names the oldest kept seqnum in x-iorio-first-seqnum when from was evicted', async () => {
      const evicting = await startTestNode({ 'storage.chunk.size': 1024, 'channel.max_items': 5 });
      try {
        for (let n = 1; n <= 100; n += 10) await storeEntries(evicting, 'ev', 's', range(n, n + 9).map((value) => ({ n: value, pad: 'p'.repeat(60) })));
        await evicting.node.store.setPolicy('ev', 's', { max_count: 30 });
        const { first } = await evicting.node.store.read('ev', 's', { from: 1, limit: 0 });
        expect(first).toBeGreaterThan(1);
        const result = await longPoll(evicting.url, `?jwt=${evicting.adminToken}&s=ev:s:1`).done;
        expect(result.status).toBe(200);
        expect(result.headers['x-iorio-first-seqnum']).toBe(String(first));
        expect((JSON.parse(result.body) as ListenEvent[])[0]!.meta.id).toBe(first);
      } finally {
        await evicting.stop();
      }
    });

    it('releases the subscription of a client that goes away', async () => {
      await waitForGauges(test, 'earlier polls to end', (gauges) => gauges.longPoll === 0 && gauges.streams === 0);
      const polls = range(1, 5).map(() => longPoll(test.url, `?${auth()}&s=lp:gone&timeout=60`));
      await waitForGauges(test, 'five long-polls on one stream', (gauges) => gauges.longPoll === 5 && gauges.streams === 1);
      for (const poll of polls) {
        poll.abort();
        await poll.done.catch(() => undefined);
      }
      await waitForGauges(test, 'the long-polls to be released', (gauges) => gauges.longPoll === 0 && gauges.streams === 0);
    });
  });

  describe('refusals', () => {
    const refusals: [string, () => string, number, string][] = [
      ['a bad token', () => '?jwt=garbage&s=lp:x', 401, 'unauthorized'],
      ['no s at all', () => `?${auth()}`, 400, 'invalid-param'],
      ['an s without a stream', () => `?${auth()}&s=lp`, 400, 'invalid-param'],
      ['an s with too many parts', () => `?${auth()}&s=lp:x:1:2`, 400, 'invalid-param'],
      ['a path-like bucket', () => `?${auth()}&s=..:x`, 400, 'invalid-name'],
      ['a stream with a slash', () => `?${auth()}&s=lp:a%2Fb`, 400, 'invalid-name'],
      ['a 200-byte name', () => `?${auth()}&s=lp:${'n'.repeat(200)}`, 400, 'invalid-name'],
      ['a non-ASCII name', () => `?${auth()}&s=lp:%C3%A9t%C3%A9`, 400, 'invalid-name'],
      ['a negative from', () => `?${auth()}&s=lp:x:-1`, 400, 'invalid-param'],
      ['a from that is not a number', () => `?${auth()}&s=lp:x:abc`, 400, 'invalid-param'],
      ['a huge from', () => `?${auth()}&s=lp:x:99999999999999999999`, 400, 'invalid-param'],
      ['a stream listed twice', () => `?${auth()}&s=lp:x&s=lp:x:3`, 400, 'invalid-param'],
      ['a bad timeout', () => `?${auth()}&s=lp:x&timeout=soon`, 400, 'invalid-param'],
      ['a negative timeout', () => `?${auth()}&s=lp:x&timeout=-1`, 400, 'invalid-param'],
      ['a timeout above 300 s', () => `?${auth()}&s=lp:x&timeout=9999`, 400, 'invalid-param'],
      ['more than 1000 streams', () => `?${auth()}&${range(1, 1001).map((n) => `s=b:${n}`).join('&')}`, 400, 'invalid-param'],
    ];
    it('names the bound when timeout is above it, and takes exactly 300', async () => {
      const refused = await longPoll(test.url, `?${auth()}&s=lp:x&timeout=300.5`).done;
      expect(refused.status).toBe(400);
      expect(JSON.parse(refused.body)).toEqual({ type: 'invalid-param', reason: 'timeout is at most 300 seconds, got 300.5', max: 300 });
      await storeEntries(test, 'lp', 'bound', [{ at: 'the bound' }]);
      const served = await longPoll(test.url, `?${auth()}&s=lp:bound:1&timeout=300`).done;
      expect(served.status).toBe(200);
    });

    for (const [what, query, status, type] of refusals) {
      it(`answers ${status} ${type} to ${what}`, async () => {
        const result = await longPoll(test.url, query()).done;
        expect(result.status).toBe(status);
        const body = JSON.parse(result.body) as { type: string; reason: string };
        expect(body.type).toBe(type);
        expect(typeof body.reason).toBe('string');
        // The same refusal for SSE, before any stream starts.
        const sse = await SseClient.open(test.url, query());
        await waitFor('the SSE refusal to end', () => sse.ended);
        expect(sse.status).toBe(status);
      });
    }

    // IorioDB skips a subscription the user may not read; no token is the anonymous user (iorio_listen_handler.erl:124-168, 236-251).
    it('skips streams the user may not read and serves the others', async () => {
      await postEntries(test, 'private', 'x', [{ secret: true }]);
      const skipped = await longPoll(test.url, `?jwt=${bobToken}&s=private:x:1&timeout=0.1`).done;
      expect(skipped.status).toBe(204);
      const anonymous = await longPoll(test.url, '?s=private:x:1&timeout=0.1').done;
      expect(anonymous.status).toBe(204);
      await postEntries(test, '_user_bob', 'x', [{ mine: true }]);
      const served = await longPoll(test.url, `?jwt=${bobToken}&s=private:x:1&s=_user_bob:x:1&timeout=5`).done;
      expect(served.status).toBe(200);
      expect((JSON.parse(served.body) as { meta: { bucket: string } }[]).map((event) => event.meta.bucket)).toEqual(['_user_bob']);
    });
  });

  describe('Server-Sent Events', () => {
    it('sends each event array as one data: event, replay first, then live', async () => {
      await storeEntries(test, 'sse', 's', [{ n: 1 }, { n: 2 }, { n: 3 }]);
      const client = await SseClient.open(test.url, `?${auth()}&s=sse:s:2&s=sse:other`);
      try {
        expect(client.status).toBe(200);
        expect(client.headers['content-type']).toMatch(/^text\/event-stream/);
        await waitFor('the replay', () => client.events.length === 2);
        expect(client.data).toHaveLength(1);
        expect(client.events.map((event) => event.meta.id)).toEqual([2, 3]);
        await postEntries(test, 'sse', 's', [{ n: 4 }]);
        await postEntries(test, 'sse', 'other', [{ o: 1 }]);
        await waitFor('the live events', () => client.events.length === 4);
        expect(client.events.slice(2)).toEqual([
          { meta: { id: 4, t: expect.any(Number), bucket: 'sse', stream: 's' }, data: { n: 4 } },
          { meta: { id: 1, t: expect.any(Number), bucket: 'sse', stream: 'other' }, data: { o: 1 } },
        ]);
        expect(client.data).toHaveLength(3);
      } finally {
        client.close();
      }
      await waitForGauges(test, 'the SSE connection to be released', (gauges) => gauges.sse === 0);
    });

    it('sends the truncated notice as a data: event before the replay', async () => {
      const evicting = await startTestNode({ 'storage.chunk.size': 1024, 'channel.max_items': 5 });
      try {
        for (let n = 1; n <= 100; n += 10) await storeEntries(evicting, 'ev', 's', range(n, n + 9).map((value) => ({ n: value, pad: 'q'.repeat(60) })));
        await evicting.node.store.setPolicy('ev', 's', { max_count: 30 });
        const { first } = await evicting.node.store.read('ev', 's', { from: 1, limit: 0 });
        expect(first).toBeGreaterThan(1);
        const client = await SseClient.open(evicting.url, `?jwt=${evicting.adminToken}&s=ev:s:1`);
        try {
          await waitFor('the replay', () => client.events.length === 100 - first + 1);
          expect(client.data[0]).toEqual({ type: 'truncated', bucket: 'ev', stream: 's', requested: 1, first });
          expect(client.events.map((event) => event.meta.id)).toEqual(range(first, 100));
        } finally {
          client.close();
        }
      } finally {
        await evicting.stop();
      }
    });

    it('ends open SSE streams, long-polls and WebSockets with a reason when the node stops', async () => {
      const stopping = await startTestNode();
      const client = await SseClient.open(stopping.url, `?jwt=${stopping.adminToken}&s=stop:s`);
      const poll = longPoll(stopping.url, `?jwt=${stopping.adminToken}&s=stop:t&timeout=120`);
      const socket = await ListenSocket.open(stopping.wsUrl, `?jwt=${stopping.adminToken}&s=stop:u`);
      await waitForGauges(stopping, 'the listeners', (gauges) => gauges.sse === 1 && gauges.longPoll === 1 && gauges.websocket === 1);
      await stopping.stop();
      expect((await poll.done).status).toBe(204);
      await waitFor('the SSE stream to end', () => client.ended);
      expect(client.namedEvents).toEqual([{ event: 'close', data: JSON.stringify({ type: 'closed', reason: 'server shutting down' }) }]);
      await waitFor('the WebSocket to close', () => socket.closeCode !== undefined);
      expect(socket.closeCode).toBe(1001);
      expect(socket.closeReason).toBe('server shutting down');
    });
  });
});
