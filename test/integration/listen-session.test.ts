/**
 * An open listener is held to its session, not only the request that opened
 * it: a revoked `get` grant takes the stream away, an expired token (or a
 * deleted user, a changed password, revoked sessions) ends the connection. Checked on delivery and on the shared
 * heartbeat timer, for WebSocket, SSE and long-poll. The node runs on a
 * clock the test can move forward, so tokens expire without waiting.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { listenHeartbeatMs } from '../../src/core/limits.js';
import {
  ListenSocket,
  SseClient,
  createUser,
  login,
  longPoll,
  startTestNode,
  waitFor,
  waitForGauges,
  type TestNode,
} from './listen-helpers.js';

const dayMs = 24 * 60 * 60 * 1000;

/** Wall-clock time the test can jump forward (sessions last auth.session.duration = 24h by default). */
class SkewedClock {
  skewMs = 0;
  now(): number {
    return Date.now() + this.skewMs;
  }
  monotonic(): number {
    return performance.now();
  }
}

/** Appends through the store: the test's HTTP tokens may have expired with the clock. */
async function append(test: TestNode, bucket: string, stream: string, value: unknown): Promise<void> {
  await test.node.store.append({ bucket, stream, payloads: [Buffer.from(JSON.stringify(value), 'utf8')] });
}

describe('listen sessions', () => {
  const clock = new SkewedClock();
  let test: TestNode;
  let aliceToken: string;
  let user = 0;

  beforeAll(async () => {
    test = await startTestNode({}, { clock });
    aliceToken = await createUser(test, 'alice', 'alicepassword');
  });
  afterAll(async () => {
    await test?.stop();
  });
  afterEach(async () => {
    vi.useRealTimers();
    clock.skewMs = 0;
    await waitForGauges(test, 'every listener to be gone', (gauges) => gauges.websocket + gauges.sse + gauges.longPoll === 0);
  });

  /** A fresh user bob<n> (tokens and grants of one test do not leak into the next), with get on alice's stream `shared<n>`. */
  async function bobWithGrant(): Promise<{ token: string; bucket: string; shared: string; own: string }> {
    user += 1;
    const name = `bob${user}`;
    const token = await createUser(test, name, 'bobpassword');
    const shared = `shared${user}`;
    const response = await fetch(`${test.url}/access/_user_alice/${shared}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session': aliceToken },
      body: JSON.stringify({ username: name, permission: 'get', action: 'grant' }),
    });
    expect(response.status).toBe(200);
    return { token, bucket: `_user_${name}`, shared, own: 'own' };
  }

  /** DELETE /sessions[/:username] with the token: ends every session of that user. */
  async function endSessions(token: string, username?: string): Promise<void> {
    const response = await fetch(`${test.url}/sessions${username === undefined ? '' : `/${username}`}`, { method: 'DELETE', headers: { 'x-session': token } });
    expect(response.status).toBe(200);
  }

  async function revoke(shared: string): Promise<void> {
    const name = `bob${user}`;
    const response = await fetch(`${test.url}/access/_user_alice/${shared}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session': aliceToken },
      body: JSON.stringify({ username: name, permission: 'get', action: 'revoke' }),
    });
    expect(response.status).toBe(200);
  }

  describe('WebSocket', () => {
    it('drops a stream whose get grant was revoked, on its next entry, and keeps the others', async () => {
      const bob = await bobWithGrant();
      const client = await ListenSocket.open(test.wsUrl, `?jwt=${bob.token}&s=_user_alice:${bob.shared}&s=${bob.bucket}:${bob.own}`);
      try {
        await append(test, '_user_alice', bob.shared, { before: true });
        await client.waitForEvents(1);
        await revoke(bob.shared);
        await append(test, '_user_alice', bob.shared, { after: true });
        await append(test, bob.bucket, bob.own, { mine: true });
        await waitFor('the own entry', () => client.ids(bob.bucket, bob.own).length === 1);
        await waitFor('the unsubscribed notice', () => client.messages.some((message) => (message as { type?: string }).type === 'unsubscribed'));
        expect(client.ids('_user_alice', bob.shared)).toEqual([1]);
        expect(client.messages).toContainEqual({
          type: 'unsubscribed',
          bucket: '_user_alice',
          stream: bob.shared,
          reason: `bob${user} may no longer get _user_alice/${bob.shared}`,
        });
        // Still open and usable; a later entry of the lost stream never arrives.
        expect(await client.command({ cmd: 'ping', id: 'p' })).toEqual({ ok: true, id: 'p', type: 'ping' });
        await append(test, '_user_alice', bob.shared, { later: true });
        await append(test, bob.bucket, bob.own, { mine: 2 });
        await waitFor('the second own entry', () => client.ids(bob.bucket, bob.own).length === 2);
        expect(client.ids('_user_alice', bob.shared)).toEqual([1]);
        expect(client.closeCode).toBeUndefined();
        await waitForGauges(test, 'the lost stream to be released', (gauges) => gauges.streams === 1);
      } finally {
        await client.close();
      }
    });

    it('drops a quiet stream whose grant was revoked at the next heartbeat', async () => {
      const bob = await bobWithGrant();
      vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
      const client = await ListenSocket.open(test.wsUrl, `?jwt=${bob.token}&s=_user_alice:${bob.shared}`);
      try {
        expect(await client.command({ cmd: 'ping', id: 1 })).toMatchObject({ ok: true });
        await revoke(bob.shared);
        vi.advanceTimersByTime(listenHeartbeatMs);
        await waitFor('the unsubscribed notice', () => client.messages.some((message) => (message as { type?: string }).type === 'unsubscribed'));
        expect(client.closeCode).toBeUndefined();
        await waitForGauges(test, 'the stream to be released', (gauges) => gauges.streams === 0);
      } finally {
        await client.close();
      }
    });

    it('closes with 4401 "session expired" when the token expired, at the next entry, delivering nothing', async () => {
      const bob = await bobWithGrant();
      const client = await ListenSocket.open(test.wsUrl, `?jwt=${bob.token}&s=${bob.bucket}:${bob.own}`);
      await append(test, bob.bucket, bob.own, { n: 1 });
      await client.waitForEvents(1);
      clock.skewMs = dayMs + 60_000;
      await append(test, bob.bucket, bob.own, { n: 2 });
      await waitFor('the close', () => client.closeCode !== undefined);
      expect(client.closeCode).toBe(4401);
      expect(client.closeReason).toBe('session expired');
      expect(client.ids()).toEqual([1]);
    });

    it('closes an idle connection whose token expired at the next heartbeat', async () => {
      const bob = await bobWithGrant();
      vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
      const client = await ListenSocket.open(test.wsUrl, `?jwt=${bob.token}&s=${bob.bucket}:${bob.own}`);
      expect(await client.command({ cmd: 'ping', id: 1 })).toMatchObject({ ok: true });
      vi.advanceTimersByTime(listenHeartbeatMs);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(client.closeCode).toBeUndefined(); // a valid session survives a heartbeat
      clock.skewMs = dayMs + 60_000;
      vi.advanceTimersByTime(listenHeartbeatMs);
      await waitFor('the close', () => client.closeCode !== undefined);
      expect([client.closeCode, client.closeReason]).toEqual([4401, 'session expired']);
    });

    it('refuses a subscribe command once the token expired, closing with 4401', async () => {
      const bob = await bobWithGrant();
      const client = await ListenSocket.open(test.wsUrl, `?jwt=${bob.token}`);
      clock.skewMs = dayMs + 60_000;
      client.send({ cmd: 'subscribe', bucket: bob.bucket, stream: bob.own, id: 's' });
      await waitFor('the close', () => client.closeCode !== undefined);
      expect([client.closeCode, client.closeReason]).toEqual([4401, 'session expired']);
      expect(client.messages).toEqual([]);
    });

    it('closes with 4401 when the user is deleted', async () => {
      const bob = await bobWithGrant();
      const client = await ListenSocket.open(test.wsUrl, `?jwt=${bob.token}&s=_user_alice:${bob.shared}`);
      const response = await fetch(`${test.url}/users/bob${user}`, { method: 'DELETE', headers: { 'x-session': test.adminToken } });
      expect(response.status).toBe(200);
      await append(test, '_user_alice', bob.shared, { n: 1 });
      await waitFor('the close', () => client.closeCode !== undefined);
      expect(client.closeCode).toBe(4401);
      expect(client.events).toEqual([]);
    });

    it('closes with 4401 at the next entry once the session is revoked (DELETE /sessions); another user listening goes on', async () => {
      const bob = await bobWithGrant();
      const client = await ListenSocket.open(test.wsUrl, `?jwt=${bob.token}&s=_user_alice:${bob.shared}`);
      const owner = await ListenSocket.open(test.wsUrl, `?jwt=${aliceToken}&s=_user_alice:${bob.shared}`);
      try {
        await append(test, '_user_alice', bob.shared, { n: 1 });
        await client.waitForEvents(1);
        await endSessions(bob.token);
        await append(test, '_user_alice', bob.shared, { n: 2 });
        await waitFor('the close', () => client.closeCode !== undefined);
        expect([client.closeCode, client.closeReason]).toEqual([4401, 'session ended: log in again']);
        expect(client.ids()).toEqual([1]);
        await owner.waitForEvents(2);
        expect(owner.closeCode).toBeUndefined();
      } finally {
        await owner.close();
      }
    });

    it('closes an idle connection at the next heartbeat once its user\'s password changed', async () => {
      const bob = await bobWithGrant();
      vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
      const client = await ListenSocket.open(test.wsUrl, `?jwt=${bob.token}&s=${bob.bucket}:${bob.own}`);
      expect(await client.command({ cmd: 'ping', id: 1 })).toMatchObject({ ok: true });
      const response = await fetch(`${test.url}/users/bob${user}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', 'x-session': bob.token },
        body: JSON.stringify({ password: 'another-password' }),
      });
      expect(response.status).toBe(200);
      vi.advanceTimersByTime(listenHeartbeatMs);
      await waitFor('the close', () => client.closeCode !== undefined);
      expect([client.closeCode, client.closeReason]).toEqual([4401, 'session ended: log in again']);
    });
  });

  describe('Server-Sent Events', () => {
    it('tells a revoked stream, and ends with event: close when no stream is left', async () => {
      const bob = await bobWithGrant();
      const sse = await SseClient.open(test.url, `?jwt=${bob.token}&s=_user_alice:${bob.shared}`);
      try {
        await waitForGauges(test, 'the SSE listener', (gauges) => gauges.sse === 1);
        await revoke(bob.shared);
        await append(test, '_user_alice', bob.shared, { n: 1 });
        await waitFor('the end', () => sse.ended);
        expect(sse.events).toEqual([]);
        expect(sse.data).toContainEqual({ type: 'unsubscribed', bucket: '_user_alice', stream: bob.shared, reason: expect.stringMatching(/may no longer get/) });
        expect(sse.namedEvents).toEqual([{ event: 'close', data: expect.stringContaining('may no longer get') }]);
      } finally {
        sse.close();
      }
    });

    it('ends with event: close "session expired" at the next entry, and at the next heartbeat when idle', async () => {
      const bob = await bobWithGrant();
      const busy = await SseClient.open(test.url, `?jwt=${bob.token}&s=${bob.bucket}:${bob.own}`);
      await waitForGauges(test, 'the SSE listener', (gauges) => gauges.sse === 1);
      clock.skewMs = dayMs + 60_000;
      await append(test, bob.bucket, bob.own, { n: 1 });
      await waitFor('the end', () => busy.ended);
      expect(busy.events).toEqual([]);
      expect(busy.namedEvents).toEqual([{ event: 'close', data: JSON.stringify({ type: 'closed', reason: 'session expired' }) }]);

      clock.skewMs = 0;
      vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
      const idle = await SseClient.open(test.url, `?jwt=${bob.token}&s=${bob.bucket}:${bob.own}`);
      try {
        await waitForGauges(test, 'the SSE listener', (gauges) => gauges.sse === 1);
        clock.skewMs = dayMs + 60_000;
        vi.advanceTimersByTime(listenHeartbeatMs);
        await waitFor('the end', () => idle.ended);
        expect(idle.namedEvents).toEqual([{ event: 'close', data: JSON.stringify({ type: 'closed', reason: 'session expired' }) }]);
      } finally {
        idle.close();
      }
    });
  });

  describe('ended sessions, over SSE and long-poll', () => {
    it('SSE ends with event: close at the next entry once an admin revokes the user\'s sessions', async () => {
      const bob = await bobWithGrant();
      const sse = await SseClient.open(test.url, `?jwt=${bob.token}&s=${bob.bucket}:${bob.own}`);
      try {
        await waitForGauges(test, 'the SSE listener', (gauges) => gauges.sse === 1);
        await endSessions(test.adminToken, `bob${user}`);
        await append(test, bob.bucket, bob.own, { n: 1 });
        await waitFor('the end', () => sse.ended);
        expect(sse.events).toEqual([]);
        expect(sse.namedEvents).toEqual([{ event: 'close', data: JSON.stringify({ type: 'closed', reason: 'session ended: log in again' }) }]);
      } finally {
        sse.close();
      }
    });

    it('a long-poll answers 401 instead of entries once the session was revoked while waiting', async () => {
      const bob = await bobWithGrant();
      const poll = longPoll(test.url, `?jwt=${bob.token}&s=${bob.bucket}:${bob.own}&timeout=20`);
      await waitForGauges(test, 'the long-poll', (gauges) => gauges.longPoll === 1);
      await endSessions(bob.token);
      await append(test, bob.bucket, bob.own, { n: 1 });
      const result = await poll.done;
      expect(result.status).toBe(401);
      expect(JSON.parse(result.body)).toEqual({ type: 'unauthorized', reason: 'session ended: log in again' });
    });
  });

  describe('long-poll', () => {
    it('answers 401 no-perm when the only stream is revoked while waiting', async () => {
      const bob = await bobWithGrant();
      const poll = longPoll(test.url, `?jwt=${bob.token}&s=_user_alice:${bob.shared}&timeout=20`);
      await waitForGauges(test, 'the long-poll', (gauges) => gauges.longPoll === 1);
      await revoke(bob.shared);
      await append(test, '_user_alice', bob.shared, { n: 1 });
      const result = await poll.done;
      expect(result.status).toBe(401);
      expect(JSON.parse(result.body)).toEqual({ type: 'no-perm', reason: expect.stringMatching(/may no longer get/) });
    });

    it('answers 401 "session expired" instead of entries when the token expired while waiting', async () => {
      const bob = await bobWithGrant();
      const poll = longPoll(test.url, `?jwt=${bob.token}&s=${bob.bucket}:${bob.own}&timeout=20`);
      await waitForGauges(test, 'the long-poll', (gauges) => gauges.longPoll === 1);
      clock.skewMs = dayMs + 60_000;
      await append(test, bob.bucket, bob.own, { n: 1 });
      const result = await poll.done;
      expect(result.status).toBe(401);
      expect(JSON.parse(result.body)).toEqual({ type: 'unauthorized', reason: 'session expired' });
    });
  });

  it('a token that is still valid keeps listening across grants to others', async () => {
    const bob = await bobWithGrant();
    const client = await ListenSocket.open(test.wsUrl, `?jwt=${bob.token}&s=_user_alice:${bob.shared}`);
    try {
      // Another user's grant changes drop the auth caches; bob's own grant still holds.
      await changeAccessFor(test, aliceToken, 'someone-else');
      await append(test, '_user_alice', bob.shared, { n: 1 });
      await client.waitForEvents(1);
      expect(client.messages.filter((message) => !Array.isArray(message))).toEqual([]);
      // And a fresh login still works: the admin token from before the tests is not needed.
      expect(typeof (await login(test.url, 'alice', 'alicepassword'))).toBe('string');
    } finally {
      await client.close();
    }
  });
});

async function changeAccessFor(test: TestNode, token: string, username: string): Promise<void> {
  await createUser(test, username, 'pw-' + username);
  const response = await fetch(`${test.url}/access/_user_alice/other`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-session': token },
    body: JSON.stringify({ username, permission: 'get', action: 'grant' }),
  });
  if (response.status !== 200) throw new Error(`grant: ${response.status}`);
}
