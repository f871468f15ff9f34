/**
 * A cluster of four real node processes, as IorioDB's multinode walkthrough
 * forms it: three nodes join the first, the plan is committed, partitions
 * move (handoff) and every entry stays readable from every node, with the
 * same seqnums, timestamps and bodies. Users, grants and sessions are
 * cluster-wide. A node that is down makes only its own partitions
 * unavailable (503 naming it) and listings partial; a node that leaves
 * hands everything off first.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TestCluster, waitFor } from './cluster-harness.js';

// Ownership as request.n = 1 has it (one owner per partition, handoff, 503 naming a down owner); replica groups: cluster-replication.test.ts.
const cluster = new TestCluster({ 'request.n': '1' });
const written = new Map<string, { id: number; t: number; data: unknown }[]>();

beforeAll(async () => {
  await Promise.all([1, 2, 3, 4].map((index) => cluster.start(index)));
  // Data on the first node before anyone joins.
  for (let index = 0; index < 240; index++) {
    const path = `/streams/b${index % 3}/s${index % 40}`;
    const data = { index, text: 'x'.repeat(index % 50) };
    const answer = await cluster.call(1, 'POST', path, { body: data });
    expect(answer.status).toBe(201);
    const list = written.get(path) ?? [];
    list.push({ id: answer.body.meta.id, t: answer.body.meta.t, data });
    written.set(path, list);
  }
}, 120_000);

afterAll(async () => {
  await cluster.stopAll();
});

async function expectEverythingFrom(index: number): Promise<void> {
  for (const [path, entries] of written) {
    const answer = await cluster.call(index, 'GET', `${path}?limit=1000&from=1`);
    expect(answer.status, `${path} from node ${index}`).toBe(200);
    const got = answer.body.map((entry: { meta: { id: number; t: number }; data: unknown }) => ({ id: entry.meta.id, t: entry.meta.t, data: entry.data }));
    expect(got, `${path} from node ${index}: ${JSON.stringify(got)}`).toEqual(entries);
  }
}

describe('join, plan, commit, handoff', () => {
  test('staged joins show as joining; the plan moves 16 partitions to each new node; after commit and handoff each owns 25%', async () => {
    for (const index of [2, 3, 4]) {
      const joined = await cluster.admin(index, 'POST', 'join', { node: cluster.nameOf(1) });
      expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    }
    const staged = await waitFor('the joins to reach node 1', 10_000, async () => {
      const members = await cluster.admin(1, 'GET', 'members');
      return members.body.joining === 3 ? members.body : undefined;
    });
    expect(staged.valid).toBe(1);
    expect(staged.rows.find((row: { node: string }) => row.node === cluster.nameOf(1)).ringPercent).toBe(100);
    const plan = await cluster.admin(1, 'GET', 'plan');
    expect(plan.status).toBe(200);
    expect(plan.body.summary.transferCount).toBe(48);
    expect(plan.body.summary.transfers).toEqual([2, 3, 4].map((index) => ({ source: cluster.nameOf(1), target: cluster.nameOf(index), count: 16 })));
    const commit = await cluster.admin(1, 'POST', 'commit');
    expect(commit.status, JSON.stringify(commit.body)).toBe(200);
    const moving = await cluster.admin(1, 'GET', 'members');
    expect(moving.body.valid).toBe(4);
    for (const row of moving.body.rows) expect(row.pendingPercent).toBe(25);
    await cluster.settle();
    const done = await cluster.admin(2, 'GET', 'members');
    for (const row of done.body.rows) {
      expect(row.ringPercent).toBe(25);
      expect(row.pendingPercent).toBeNull();
    }
  }, 180_000);

  test('every entry reads back from every node at its seqnum, with its timestamp and body', async () => {
    for (const index of [1, 2, 3, 4]) await expectEverythingFrom(index);
  });

  test('appends through any node land where the stream lives and read back from every other', async () => {
    for (const index of [1, 2, 3, 4]) {
      const path = '/streams/b0/s0';
      const data = { via: index };
      const answer = await cluster.call(index, 'POST', path, { body: data });
      expect(answer.status).toBe(201);
      written.get(path)!.push({ id: answer.body.meta.id, t: answer.body.meta.t, data });
    }
    expect(written.get('/streams/b0/s0')!.map((entry) => entry.id)).toEqual(Array.from({ length: written.get('/streams/b0/s0')!.length }, (_, index) => index + 1));
    for (const index of [1, 2, 3, 4]) await expectEverythingFrom(index);
  });

  test('buckets and streams are listed from any node (coverage)', async () => {
    for (const index of [1, 3]) {
      const buckets = await cluster.call(index, 'GET', '/buckets');
      expect(buckets.body).toEqual({ status: 'ok', data: ['b0', 'b1', 'b2'] });
      const streams = await cluster.call(index, 'GET', '/streams/b1');
      expect(streams.body.status).toBe('ok');
      expect(streams.body.data).toHaveLength(new Set([...written.keys()].filter((path) => path.startsWith('/streams/b1/'))).size);
    }
  });
});

describe('users, grants and sessions are cluster-wide', () => {
  test('a user created on one node logs in on another; a token from one node works on every node; a grant changed anywhere applies everywhere', async () => {
    const created = await cluster.call(1, 'POST', '/users', { body: { username: 'carol', password: 'pw-carol' } });
    expect(created.status).toBe(201);
    const token = await cluster.login(4, 'carol', 'pw-carol');
    for (const index of [1, 2, 3]) expect((await cluster.call(index, 'GET', '/sessions', { token })).body).toEqual({ username: 'carol' });
    expect((await cluster.call(3, 'GET', '/streams/b2/s2?limit=1', { token })).status).toBe(401);
    const granted = await cluster.call(2, 'POST', '/access/b2', { body: { username: 'carol', permission: 'get', action: 'grant' } });
    expect(granted.status).toBe(200);
    for (const index of [1, 3, 4]) expect((await cluster.call(index, 'GET', '/streams/b2/s2?limit=1', { token })).status, `node ${index}`).toBe(200);
    // A password change ends the session everywhere at once.
    expect((await cluster.call(4, 'PUT', '/users/carol', { body: { password: 'pw-new' } })).status).toBe(200);
    for (const index of [1, 2, 3, 4]) expect((await cluster.call(index, 'GET', '/sessions', { token })).status, `node ${index}`).toBe(401);
  });
});

describe('a node that is down', () => {
  test('its partitions answer 503 naming it, the others keep working, listings are partial; back up, everything works', async () => {
    const down = cluster.nameOf(4);
    const owners = await cluster.admin(1, 'GET', 'ring');
    expect(owners.body.ownership.find((row: { node: string }) => row.node === down).partitions).toBe(16);
    await cluster.kill(4);
    const onDown: string[] = [];
    const onUp: string[] = [];
    for (let index = 0; index < 64; index++) {
      const stream = `probe${index}`;
      const read = await cluster.call(1, 'GET', `/streams/probe/${stream}?limit=1`);
      expect([200, 503]).toContain(read.status);
      (read.status === 503 ? onDown : onUp).push(stream);
    }
    expect(onDown.length).toBeGreaterThan(0);
    for (const stream of onDown.slice(0, 5)) {
      const answer = await cluster.call(2, 'POST', `/streams/probe/${stream}`, { body: { down: true } });
      expect(answer.status).toBe(503);
      expect(answer.body.reason).toContain(down);
    }
    for (const stream of onUp.slice(0, 5)) expect((await cluster.call(2, 'POST', `/streams/probe/${stream}`, { body: { up: true } })).status).toBe(201);
    expect((await cluster.call(3, 'GET', '/buckets')).body.status).toBe('partial');
    await cluster.start(4);
    await waitFor('node 4 back', 15_000, async () => ((await cluster.call(2, 'POST', `/streams/probe/${onDown[0]}`, { body: { back: true } })).status === 201 ? true : undefined));
    expect((await cluster.call(3, 'GET', '/buckets')).body.status).toBe('ok');
  }, 60_000);
});

describe('the claimant refuses a commit it cannot stand behind', () => {
  test('a plan that changed since it was shown, and a ring that not every member holds, are refused with a clear message', async () => {
    // Node 5 joins, the plan is shown; then node 6 joins: the shown plan is stale.
    await cluster.start(5);
    await cluster.start(6);
    expect((await cluster.admin(5, 'POST', 'join', { node: cluster.nameOf(1) })).status).toBe(200);
    expect((await cluster.admin(1, 'GET', 'plan')).status).toBe(200);
    expect((await cluster.admin(6, 'POST', 'join', { node: cluster.nameOf(1) })).status).toBe(200);
    const stale = await cluster.admin(1, 'POST', 'commit');
    expect(stale.status).toBe(409);
    expect(stale.body.reason_code).toBe('plan_changed');
    expect(stale.body.reason).toMatch(/plan has changed/i);
    // A member that cannot be reached: the ring is not ready.
    expect((await cluster.admin(1, 'GET', 'plan')).status).toBe(200);
    await cluster.kill(6);
    const notReady = await waitFor('node 6 to be missed', 20_000, async () => {
      const answer = await cluster.admin(1, 'POST', 'commit');
      return answer.status === 409 ? answer : undefined;
    });
    expect(notReady.body.reason_code).toBe('ring_not_ready');
    expect(notReady.body.reason).toContain(cluster.nameOf(6));
    // Clear: the joining nodes leave the ring again.
    expect((await cluster.admin(1, 'POST', 'clear')).status).toBe(200);
    await waitFor('the joiners to be gone', 10_000, async () => ((await cluster.admin(2, 'GET', 'members')).body.rows.length === 4 ? true : undefined));
    await cluster.kill(5);
  }, 60_000);
});

describe('leave', () => {
  test('a node that leaves hands off all its partitions, then owns none and is no longer a member; nothing is lost', async () => {
    const staged = await cluster.admin(4, 'POST', 'leave', {});
    expect(staged.status, JSON.stringify(staged.body)).toBe(200);
    await cluster.commitPlan();
    await waitFor('node 4 to leave the ring', 120_000, async () => {
      const members = await cluster.admin(1, 'GET', 'members');
      return members.body.rows.length === 3 && members.body.rows.every((row: { pendingPercent: number | null }) => row.pendingPercent === null) ? true : undefined;
    });
    await cluster.settle(60_000);
    for (const index of [1, 2, 3]) await expectEverythingFrom(index);
    // And one more: 4 to 2.
    expect((await cluster.admin(3, 'POST', 'leave', {})).status).toBe(200);
    await cluster.commitPlan();
    await waitFor('node 3 to leave the ring', 120_000, async () => {
      const members = await cluster.admin(1, 'GET', 'members');
      return members.body.rows.length === 2 && members.body.rows.every((row: { ringPercent: number; pendingPercent: number | null }) => row.ringPercent === 50 && row.pendingPercent === null) ? true : undefined;
    });
    await cluster.settle(60_000);
    for (const index of [1, 2]) await expectEverythingFrom(index);
  }, 240_000);
});
