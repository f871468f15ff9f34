/**
 * GET /listen over WebSocket against a real node: commands and their
 * replies, replay from the tail and from chunk files, many streams per
 * connection, refusals before the upgrade, the truncation notice, resuming
 * from `last id + 1` while a writer appends, and the slow-consumer cut-off.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ListenSocket,
  UpgradeRefused,
  createUser,
  listenGauges,
  postEntries,
  range,
  startTestNode,
  storeEntries,
  waitFor,
  waitForGauges,
  type TestNode,
} from './listen-helpers.js';

describe('listen over WebSocket', () => {
  let test: TestNode;
  let bobToken: string;

  beforeAll(async () => {
    // A small tail, so replays older than 5 entries read the chunk files.
    test = await startTestNode({ 'channel.max_items': 5 });
    bobToken = await createUser(test, 'bob', 'bobpassword');
  });
  afterAll(async () => {
    await test?.stop();
  });

  it('answers ping, subscribe and unsubscribe with their ids, and streams events as arrays', async () => {
    const client = await ListenSocket.open(test.wsUrl, `?jwt=${test.adminToken}`);
    try {
      expect(await client.command({ cmd: 'ping', id: 'p-1' })).toEqual({ ok: true, id: 'p-1', type: 'ping' });
      expect(await client.command({ cmd: 'subscribe', bucket: 'ws', stream: 'cmds', id: 2 })).toEqual({ ok: true, id: 2, type: 'subscribe' });
      await postEntries(test, 'ws', 'cmds', [{ n: 1 }, { n: 2 }]);
      await client.waitForEvents(2);
      expect(client.events[0]).toMatchObject({ meta: { id: 1, bucket: 'ws', stream: 'cmds' }, data: { n: 1 } });
      expect(typeof client.events[0]!.meta.t).toBe('number');
      expect(client.ids('ws', 'cmds')).toEqual([1, 2]);
      // Each durable batch is one message: an array.
      expect(client.messages.filter(Array.isArray)).toHaveLength(2);

      expect(await client.command({ cmd: 'unsubscribe', bucket: 'ws', stream: 'cmds', id: 3 })).toEqual({ ok: true, id: 3, type: 'unsubscribe' });
      expect(await client.command({ cmd: 'subscribe', bucket: 'ws', stream: 'marker', id: 4 })).toMatchObject({ ok: true });
      await postEntries(test, 'ws', 'cmds', [{ n: 3 }]);
      await postEntries(test, 'ws', 'marker', [{ done: true }]);
      // The marker was appended after entry 3 was durable: had entry 3 been sent, it would have come first.
      await client.waitForEvents(3);
      expect(client.ids('ws', 'marker')).toEqual([1]);
      expect(client.ids('ws', 'cmds')).toEqual([1, 2]);
    } finally {
      await client.close();
    }
  });

  it('replies ok:false to bad JSON, unknown commands, bad names, bad from and streams it may not read', async () => {
    const client = await ListenSocket.open(test.wsUrl, `?jwt=${bobToken}`);
    try {
      client.socket.send('{not json');
      await waitFor('bad JSON reply', () => client.messages.length === 1);
      // id 0 when the command has none, as IorioDB (iorio_listen_handler.erl:29).
      expect(client.messages[0]).toMatchObject({ ok: false, id: 0 });
      expect((client.messages[0] as { reason: string }).reason).toMatch(/JSON/);

      expect(await client.command({ cmd: 'dance', id: 'u' })).toMatchObject({ ok: false, id: 'u', reason: 'unknown command' });
      expect(await client.command({ cmd: 'subscribe', bucket: '..', stream: 's', id: 'n1' })).toMatchObject({ ok: false, id: 'n1' });
      expect(await client.command({ cmd: 'subscribe', bucket: 'b', stream: 'a/b', id: 'n2' })).toMatchObject({ ok: false, id: 'n2' });
      expect(await client.command({ cmd: 'unsubscribe', bucket: 'b', id: 'n3' })).toMatchObject({ ok: false, id: 'n3' });
      expect(await client.command({ cmd: 'subscribe', bucket: '_user_bob', stream: 's', from: -1, id: 'f1' })).toMatchObject({ ok: false, id: 'f1' });
      expect(await client.command({ cmd: 'subscribe', bucket: '_user_bob', stream: 's', from: 'x', id: 'f2' })).toMatchObject({ ok: false, id: 'f2' });
      const denied = await client.command({ cmd: 'subscribe', bucket: 'private', stream: 's', id: 'perm' });
      expect(denied).toMatchObject({ ok: false, id: 'perm' });
      expect(denied['reason']).toBe('no-perm');

      // Still usable, and bob may listen to his own bucket.
      expect(await client.command({ cmd: 'subscribe', bucket: '_user_bob', stream: 's', from: 1, id: 'own' })).toEqual({ ok: true, id: 'own', type: 'subscribe' });
      await postEntries(test, '_user_bob', 's', [{ mine: true }]);
      await client.waitForEvents(1);
      expect(client.events[0]).toMatchObject({ meta: { id: 1, bucket: '_user_bob', stream: 's' }, data: { mine: true } });
    } finally {
      await client.close();
    }
  });

  it('refuses the upgrade with 401 for a bad token and 400 for a bad s; skips a stream it may not read', async () => {
    const refusal = (query: string, headers: Record<string, string> = {}) =>
      ListenSocket.open(test.wsUrl, query, headers).then(
        async (client) => {
          await client.close();
          throw new Error('upgrade was accepted');
        },
        (error: unknown) => error as UpgradeRefused,
      );
    const badToken = await refusal('?jwt=not-a-token&s=b:s');
    expect(badToken.status).toBe(401);
    expect(JSON.parse(badToken.body)).toMatchObject({ type: 'unauthorized' });
    const bearer = await refusal('?s=b:s', { authorization: 'Bearer x.y.z' });
    expect(bearer.status).toBe(401);

    // IorioDB skips a subscription the user may not read and serves the others (iorio_listen_handler.erl:124-168).
    const skipping = await ListenSocket.open(test.wsUrl, `?jwt=${bobToken}&s=_user_bob:s&s=private:s`);
    try {
      expect(await skipping.command({ cmd: 'unsubscribe', bucket: 'private', stream: 's', id: 'p' })).toMatchObject({ ok: false, reason: 'not subscribed' });
      expect(await skipping.command({ cmd: 'unsubscribe', bucket: '_user_bob', stream: 's', id: 'o' })).toMatchObject({ ok: true });
    } finally {
      await skipping.close();
    }

    const badName = await refusal(`?jwt=${test.adminToken}&s=..:s`);
    expect(badName.status).toBe(400);
    expect(JSON.parse(badName.body)).toMatchObject({ type: 'invalid-name' });
    const badFrom = await refusal(`?jwt=${test.adminToken}&s=b:s:-4`);
    expect(badFrom.status).toBe(400);
    expect(JSON.parse(badFrom.body)).toMatchObject({ type: 'invalid-param' });
  });

  it('replays s=bucket:stream:from from the in-memory tail, then goes live', async () => {
    await storeEntries(test, 'ws', 'tail', range(1, 4).map((n) => ({ n })));
    const client = await ListenSocket.open(test.wsUrl, `?jwt=${test.adminToken}&s=ws:tail:2`);
    try {
      await client.waitForEvents(3);
      expect(client.ids()).toEqual([2, 3, 4]);
      expect(client.events.map((event) => event.data)).toEqual([{ n: 2 }, { n: 3 }, { n: 4 }]);
      await postEntries(test, 'ws', 'tail', [{ n: 5 }]);
      await client.waitForEvents(4);
      expect(client.ids()).toEqual([2, 3, 4, 5]);
    } finally {
      await client.close();
    }
  });

  it('replays from the chunk files, in pages, with no gap or duplicate against live appends', async () => {
    const total = 2_600;
    for (let first = 1; first <= total; first += 200) await storeEntries(test, 'ws', 'disk', range(first, first + 199).map((n) => ({ n, pad: 'x'.repeat(40) })));
    const disk = test.node.store.stats().readsFromDisk;
    const client = await ListenSocket.open(test.wsUrl, `?jwt=${test.adminToken}&s=ws:disk:2`);
    try {
      // Live appends while the replay runs.
      await storeEntries(test, 'ws', 'disk', [{ n: total + 1 }]);
      await postEntries(test, 'ws', 'disk', [{ n: total + 2 }]);
      await client.waitForEvents(total + 1, 20_000);
      expect(client.ids()).toEqual(range(2, total + 2));
      expect(client.events.map((event) => (event.data as { n: number }).n)).toEqual(range(2, total + 2));
      expect(test.node.store.stats().readsFromDisk).toBeGreaterThan(disk);
      // More than one page (readLimitMax = 1000 entries).
      expect(client.messages.filter(Array.isArray).length).toBeGreaterThanOrEqual(3);
    } finally {
      await client.close();
    }
  });

  it('listens to many streams on one connection, from s= and from subscribe commands', async () => {
    const streams = range(0, 59).map((index) => `m${index}`);
    for (const stream of streams) await storeEntries(test, 'many', stream, [{ stream, n: 1 }]);
    const initial = streams.slice(0, 40).map((stream) => `s=many:${stream}:1`).join('&');
    const client = await ListenSocket.open(test.wsUrl, `?jwt=${test.adminToken}&${initial}`);
    try {
      for (const stream of streams.slice(40)) {
        expect(await client.command({ cmd: 'subscribe', bucket: 'many', stream, from: 1, id: stream })).toMatchObject({ ok: true });
      }
      await client.waitForEvents(60);
      for (const stream of streams) await storeEntries(test, 'many', stream, [{ stream, n: 2 }]);
      await client.waitForEvents(120);
      for (const stream of streams) expect(client.ids('many', stream)).toEqual([1, 2]);
    } finally {
      await client.close();
    }
  });

  it('sends one truncated notice before the replay when the requested seqnum was evicted', async () => {
    const evicting = await startTestNode({ 'storage.chunk.size': 1024, 'channel.max_items': 5 });
    try {
      for (let n = 1; n <= 200; n += 10) await storeEntries(evicting, 'ev', 's', range(n, n + 9).map((value) => ({ n: value, pad: 'y'.repeat(60) })));
      await evicting.node.store.setPolicy('ev', 's', { max_count: 40 });
      const read = await evicting.node.store.read('ev', 's', { from: 1, limit: 1 });
      expect(read.truncated).toBe(true);
      const first = read.first;
      expect(first).toBeGreaterThan(1);

      const client = await ListenSocket.open(evicting.wsUrl, `?jwt=${evicting.adminToken}&s=ev:s:1`);
      try {
        await client.waitForEvents(200 - first + 1);
        expect(client.messages[0]).toEqual({ type: 'truncated', bucket: 'ev', stream: 's', requested: 1, first });
        expect(client.messages.filter((message) => !Array.isArray(message))).toHaveLength(1);
        expect(client.ids()).toEqual(range(first, 200));
      } finally {
        await client.close();
      }
      // A resume from a kept seqnum gets no notice.
      const resumed = await ListenSocket.open(evicting.wsUrl, `?jwt=${evicting.adminToken}&s=ev:s:${first + 1}`);
      try {
        await resumed.waitForEvents(200 - first);
        expect(resumed.messages.every(Array.isArray)).toBe(true);
      } finally {
        await resumed.close();
      }
    } finally {
      await evicting.stop();
    }
  });

  it('resuming from last id + 1 after each disconnect gets every entry exactly once, in order, while a writer appends', async () => {
    const total = 400;
    let written = 0;
    const writer = (async () => {
      for (let n = 1; n <= total; n += 4) {
        await postEntries(test, 'ws', 'resume', range(n, n + 3).map((value) => ({ n: value })));
        written = n + 3;
      }
    })();
    const received: number[] = [];
    let next = 1;
    // Disconnect abruptly after every ~60 events, then resume; bounded number of sessions.
    for (let session = 0; session < 50 && next <= total; session++) {
      const client = await ListenSocket.open(test.wsUrl, `?jwt=${test.adminToken}&s=ws:resume:${next}`);
      const want = Math.min(total - next + 1, 60);
      await client.waitForEvents(want, 20_000);
      client.socket.terminate();
      // Whatever arrived before the cut counts; the resume point is the last one seen.
      const ids = client.ids();
      received.push(...ids);
      next = ids[ids.length - 1]! + 1;
    }
    await writer;
    expect(written).toBe(total);
    expect(received).toEqual(range(1, total));
  });

  it('releases the store subscriptions of closed connections', async () => {
    await waitForGauges(test, 'earlier connections to go', (gauges) => gauges.websocket === 0 && gauges.streams === 0);
    const clients = await Promise.all(range(1, 5).map(() => ListenSocket.open(test.wsUrl, `?jwt=${test.adminToken}&s=ws:gc1&s=ws:gc2`)));
    const open = await listenGauges(test);
    expect(open.websocket).toBe(5);
    // One shared subscription per stream, whatever the number of listeners.
    expect(open.streams).toBe(2);
    await Promise.all(clients.map((client) => client.close()));
    await waitForGauges(test, 'connections to be released', (gauges) => gauges.websocket === 0 && gauges.streams === 0);
  });

  it('cuts off a consumer that stops reading, with close code 1013 "slow consumer"', async () => {
    const client = await ListenSocket.open(test.wsUrl, `?jwt=${test.adminToken}&s=ws:slow`);
    try {
      const raw = (client.socket as unknown as { _socket: import('node:net').Socket })._socket;
      raw.pause();
      const payload = { pad: 'z'.repeat(512 * 1024) };
      // 48 MB: more than the 8 MB cap plus what the loopback socket buffers can hold.
      for (let batch = 0; batch < 96 && client.closeCode === undefined; batch++) await storeEntries(test, 'ws', 'slow', [payload]);
      raw.resume();
      await waitFor('the server to close the connection', () => client.closeCode !== undefined, 30_000);
      expect(client.closeCode).toBe(1013);
      expect(client.closeReason).toBe('slow consumer');
      // What did arrive is a gap-free prefix, so the client can resume from its last id + 1.
      expect(client.ids()).toEqual(range(1, client.ids().length));
      expect(client.ids().length).toBeLessThan(96);
    } finally {
      await client.close();
    }
  });
});
