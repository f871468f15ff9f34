import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { append, call, readAll, startTestNode, type TestNode } from './http-harness.js';

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode();
});
afterAll(async () => {
  await node?.stop();
});

function patch(path: string, operations: unknown, headers: Record<string, string> = {}) {
  return call(node, 'PATCH', path, { token: node.adminToken, json: operations, contentType: 'application/json-patch+json', headers });
}

describe('PATCH /streams/:bucket/:stream', () => {
  test('applies the patch to the last entry, appends the result and logs the patch', async () => {
    await append(node, 'p', 'doc', { name: 'bob', tags: ['a'] });
    const operations = [
      { op: 'replace', path: '/name', value: 'alice' },
      { op: 'add', path: '/age', value: 29 },
      { op: 'add', path: '/tags/-', value: 'b' },
    ];
    const reply = await patch('/streams/p/doc', operations);
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ meta: { id: 2, t: expect.any(Number) } });
    const entries = await readAll(node, 'p', 'doc');
    expect(entries.map((entry) => entry.data)).toEqual([
      { name: 'bob', tags: ['a'] },
      { name: 'alice', tags: ['a', 'b'], age: 29 },
    ]);
    expect((await readAll(node, 'p', 'doc-$patch')).map((entry) => entry.data)).toEqual([operations]);
  });

  test('an empty or unknown stream is 404', async () => {
    const reply = await patch('/streams/p/nothing', [{ op: 'add', path: '/a', value: 1 }]);
    expect(reply.status).toBe(404);
    expect(reply.body.type).toBe('not-found');
    expect(await readAll(node, 'p', 'nothing-$patch')).toEqual([]);
  });

  test.each([
    ['not an array', { op: 'add', path: '/a', value: 1 }],
    ['an unknown op', [{ op: 'frobnicate', path: '/a' }]],
    ['a path without a slash', [{ op: 'add', path: 'a', value: 1 }]],
    ['a missing value', [{ op: 'add', path: '/a' }]],
    ['a non-object operation', [42]],
  ])('an invalid patch (%s) is 400 and writes nothing', async (_name, operations) => {
    await append(node, 'p', 'invalid', { a: 1 });
    const before = await readAll(node, 'p', 'invalid');
    const reply = await patch('/streams/p/invalid', operations);
    expect(reply.status).toBe(400);
    expect(reply.body.type).toBe('invalid-body');
    expect(await readAll(node, 'p', 'invalid')).toEqual(before);
    expect(await readAll(node, 'p', 'invalid-$patch')).toEqual([]);
  });

  test.each([
    ['removing a missing member', [{ op: 'remove', path: '/missing' }]],
    ['a failing test op', [{ op: 'test', path: '/a', value: 2 }]],
    ['adding under a missing parent', [{ op: 'add', path: '/x/y/z', value: 1 }]],
    ['a prototype path', [{ op: 'add', path: '/__proto__/polluted', value: 1 }]],
  ])('a patch that does not apply (%s) is 400 and writes nothing', async (_name, operations) => {
    await append(node, 'p', 'noapply', { a: 1 });
    const before = await readAll(node, 'p', 'noapply');
    const reply = await patch('/streams/p/noapply', operations);
    expect(reply.status).toBe(400);
    expect(reply.body.type).toBe('invalid-body');
    expect(reply.body.reason).not.toContain('"a":1');
    expect(await readAll(node, 'p', 'noapply')).toEqual(before);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  test('x-iorio-expect-seqnum other than the last seqnum is 409', async () => {
    await append(node, 'p', 'cond', { v: 1 });
    const reply = await patch('/streams/p/cond', [{ op: 'replace', path: '/v', value: 2 }], { 'x-iorio-expect-seqnum': '7' });
    expect(reply.status).toBe(409);
    expect(reply.body).toMatchObject({ type: 'conflict', expected: 7, got: 1 });
    expect(await readAll(node, 'p', 'cond')).toHaveLength(1);
  });

  test('concurrent patches: each success appended exactly once with its patch, the others 409', async () => {
    await append(node, 'p', 'race', { n: 0 });
    const replies = await Promise.all(Array.from({ length: 10 }, (_, index) => patch('/streams/p/race', [{ op: 'replace', path: '/n', value: index + 1 }])));
    const statuses = replies.map((reply) => reply.status);
    expect(statuses.every((status) => status === 200 || status === 409)).toBe(true);
    const successes = statuses.filter((status) => status === 200).length;
    expect(successes).toBeGreaterThanOrEqual(1);
    const entries = await readAll(node, 'p', 'race');
    expect(entries).toHaveLength(1 + successes);
    expect(await readAll(node, 'p', 'race-$patch')).toHaveLength(successes);
    const ids = entries.map((entry) => entry.meta.id);
    expect(ids).toEqual(ids.map((_, index) => index + 1));
  });

  test('a patch log cannot itself be patched', async () => {
    const reply = await patch('/streams/p/doc-$patch', [{ op: 'add', path: '/-', value: 1 }]);
    expect(reply.status).toBe(400);
    expect(reply.body.type).toBe('invalid-name');
  });

  test('PATCH needs put on the stream', async () => {
    const reply = await call(node, 'PATCH', '/streams/p/doc', { json: [{ op: 'add', path: '/x', value: 1 }], contentType: 'application/json-patch+json' });
    expect(reply.status).toBe(403);
    expect(reply.body.type).toBe('no-perm');
  });
});
