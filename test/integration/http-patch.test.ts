import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mulberry32 } from '../helpers/clock.js';
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

  // IorioDB: 400 not-found (iorio_rest_stream.erl:271-273).
  test('an empty or unknown stream is 400 not-found', async () => {
    const reply = await patch('/streams/p/nothing', [{ op: 'add', path: '/a', value: 1 }]);
    expect(reply.status).toBe(400);
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
    // IorioDB's conflict body (iorio_rest_stream.erl:206-213), its spelling included.
    expect(reply.body).toEqual({ type: 'error', reason: { reason: 'confict', field: 'seqnum', expected: 7, got: 1 } });
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
    expect(reply.status).toBe(401);
    expect(reply.body.type).toBe('no-perm');
  });
});

/** Arrays nested `depth` deep around `inner`. */
function nested(depth: number, inner = '0'): string {
  return '['.repeat(depth) + inner + ']'.repeat(depth);
}

describe('PATCH and the nesting bound (512)', () => {
  test('an entry nested 5,000 deep (written before the bound) cannot be patched: 400 naming the bound, not 500', async () => {
    // Straight into the store: appends over HTTP refuse such a body now.
    await node.node.store.append({ bucket: 'p', stream: 'legacy', payloads: [Buffer.from(`{"deep":${nested(5_000)}}`)] });
    const reply = await patch('/streams/p/legacy', [{ op: 'add', path: '/x', value: 1 }]);
    expect(reply.status).toBe(400);
    expect(reply.body).toEqual({ type: 'invalid-body', reason: 'the last entry is nested deeper than 512 levels: it cannot be patched' });
    expect(await readAll(node, 'p', 'legacy')).toHaveLength(1);
    expect(await readAll(node, 'p', 'legacy-$patch')).toEqual([]);
    expect((await call(node, 'GET', '/ping')).status).toBe(200);
  });

  test('an entry at the bound is patched when the result stays within it', async () => {
    await call(node, 'POST', '/streams/p/edge', { token: node.adminToken, body: nested(512), contentType: 'application/json' });
    const path = '/0'.repeat(511) + '/0';
    const reply = await patch('/streams/p/edge', [{ op: 'replace', path, value: 'leaf' }]);
    expect(reply.status).toBe(200);
    expect((await call(node, 'GET', '/streams/p/edge', { token: node.adminToken })).text).toContain(nested(512, '"leaf"'));
  });

  test.each([
    ['a deep value added at a deep path', { a: JSON.parse(nested(300)) }, [{ op: 'replace', path: '/a' + '/0'.repeat(300), value: JSON.parse(nested(300)) }]],
    ['the entry moved below itself, deeper each time', { a: JSON.parse(nested(200)) }, [
      { op: 'copy', from: '/a', path: '/b' },
      { op: 'move', from: '/a', path: '/b' + '/0'.repeat(200) },
      { op: 'copy', from: '/b', path: '/c' },
      { op: 'move', from: '/b', path: '/c' + '/0'.repeat(400) },
    ]],
    ['a copy of a deep value to a deep path', { a: JSON.parse(nested(400)), b: JSON.parse(nested(200)) }, [{ op: 'copy', from: '/a', path: '/b' + '/0'.repeat(199) }]],
  ])('a patch that would nest the entry deeper than 512 levels (%s) is 400 and writes nothing', async (_name, document, operations) => {
    const stream = `deepen-${_name.length}`;
    await append(node, 'p', stream, document);
    const reply = await patch(`/streams/p/${stream}`, operations);
    expect(reply.status).toBe(400);
    expect(reply.body.type).toBe('invalid-body');
    expect(reply.body.reason).toMatch(/deeper than 512 levels/);
    expect(await readAll(node, 'p', stream)).toHaveLength(1);
    expect(await readAll(node, 'p', `${stream}-$patch`)).toEqual([]);
  });

  test('copies of the entry into itself, doubling it each time, stop at the entry size bound (413) instead of exhausting memory', async () => {
    await append(node, 'p', 'doubling', { a: 'x'.repeat(1000) });
    const started = Date.now();
    const reply = await patch('/streams/p/doubling', Array.from({ length: 60 }, (_, index) => ({ op: 'copy', from: '', path: `/c${index}` })));
    expect(reply.status).toBe(413);
    expect(reply.body.type).toBe('too-large');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await readAll(node, 'p', 'doubling')).toHaveLength(1);
    expect((await call(node, 'GET', '/ping')).status).toBe(200);
  });

  test('more than 10,000 operations is 400', async () => {
    await append(node, 'p', 'many', { n: 0 });
    const reply = await patch('/streams/p/many', Array.from({ length: 10_001 }, () => ({ op: 'test', path: '/n', value: 0 })));
    expect(reply.status).toBe(400);
    expect(reply.body.reason).toContain('at most 10000 operations');
  });
});

describe('PATCH never answers 500', () => {
  test.each([
    ['a path through a number', { a: 1 }, [{ op: 'add', path: '/a/b/c', value: 1 }]],
    ['a move into its own child', { a: { b: 1 } }, [{ op: 'move', from: '/a', path: '/a/b/c' }]],
    ['a copy from a missing path', { a: 1 }, [{ op: 'copy', from: '/missing/deeper', path: '/b' }]],
    ['a move from a missing path', { a: 1 }, [{ op: 'move', from: '/missing', path: '/b' }]],
    ['an array index past the end', { a: [1] }, [{ op: 'add', path: '/a/5', value: 1 }]],
    ['a non-numeric array index', { a: [1] }, [{ op: 'replace', path: '/a/x', value: 1 }]],
    ['the root removed, then a member added', { a: 1 }, [{ op: 'remove', path: '' }, { op: 'add', path: '/a', value: 1 }]],
    ['a constructor/prototype path', { a: 1 }, [{ op: 'add', path: '/constructor/prototype/polluted', value: 1 }]],
    ['a test of a deep value against a scalar', { a: 1 }, [{ op: 'test', path: '/a', value: JSON.parse(nested(500)) }]],
  ])('%s is 400 and writes nothing', async (_name, document, operations) => {
    const stream = `never500-${_name.replace(/[^a-z]/g, '')}`;
    await append(node, 'p', stream, document);
    const reply = await patch(`/streams/p/${stream}`, operations);
    expect({ status: reply.status, type: reply.body.type }).toEqual({ status: 400, type: 'invalid-body' });
    expect(await readAll(node, 'p', stream)).toHaveLength(1);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  test('300 seeded random patches on random documents get 200, 400 or 413, never a 5xx', async () => {
    const random = mulberry32(20_260_601);
    const pick = <T,>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const paths = ['', '/a', '/a/0', '/a/-', '/b', '/b/c', '/b/c/d', '/~1', '/~0', '/a/1/x', '/__proto__/x', '/constructor'];
    const values: unknown[] = [1, 'x', null, [], {}, [1, [2, [3]]], { c: { d: [1] } }, JSON.parse(nested(255)), JSON.parse(nested(511))];
    const documents: unknown[] = [{ a: [1, 2], b: { c: { d: 1 } } }, [1, 2, 3], 'scalar', { a: JSON.parse(nested(400)) }, {}];
    const statuses = new Set<number>();
    for (let round = 0; round < 300; round += 1) {
      const stream = `fuzz${round % 10}`;
      if (round < 10 || random() < 0.2) await append(node, 'p', stream, pick(documents));
      const operations = Array.from({ length: 1 + Math.floor(random() * 4) }, () => {
        const op = pick(['add', 'remove', 'replace', 'move', 'copy', 'test']);
        return { op, path: pick(paths), from: pick(paths), value: pick(values) };
      });
      const reply = await patch(`/streams/p/${stream}`, operations);
      statuses.add(reply.status);
      expect([200, 400, 413], `round ${round}: ${JSON.stringify(operations).slice(0, 300)} -> ${reply.status} ${reply.text.slice(0, 200)}`).toContain(reply.status);
    }
    expect(statuses.has(200)).toBe(true);
    expect(statuses.has(400)).toBe(true);
  });
});
