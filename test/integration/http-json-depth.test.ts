/**
 * The nesting bound (jsonDepthMax = 512) on every JSON a client sends:
 * appends, NDJSON batches and WebSocket listen commands. Bodies at the bound
 * are stored and read back; deeper ones are 400 invalid-body naming the
 * bound, write nothing, and however deep, never reach a recursive step that
 * could overflow the stack (the node keeps answering).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { jsonDepthMax } from '../../src/core/limits.js';
import { call, readAll, startTestNode, type TestNode } from './http-harness.js';

let node: TestNode;

beforeAll(async () => {
  node = await startTestNode({ 'http.body.max': 4 * 1024 * 1024 });
});
afterAll(async () => {
  await node?.stop();
});

/** Arrays nested `depth` deep around `inner` (depth 1 is `[inner]`). */
function nested(depth: number, inner = '0'): string {
  return '['.repeat(depth) + inner + ']'.repeat(depth);
}

/** Objects and arrays alternating, with brackets and escaped quotes in strings that must not count. */
function mixed(depth: number): string {
  let text = '"x \\"]]]}}} [[[{{{"';
  for (let level = 0; level < depth; level += 1) text = level % 2 === 0 ? `{"k\\\\":${text},"s":"[{"}` : `[1,${text},"}]"]`;
  return text;
}

function append(stream: string, body: string, contentType = 'application/json') {
  return call(node, 'POST', `/streams/depth/${stream}`, { token: node.adminToken, body, contentType });
}

describe('appends', () => {
  test.each([
    ['arrays', nested],
    ['objects and arrays, with brackets in strings', mixed],
  ])('%s nested 512 deep are stored and read back; 513 deep are 400 invalid-body naming the bound', async (_name, make) => {
    const stream = _name.startsWith('arrays') ? 'arrays' : 'mixed';
    const atBound = await append(stream, make(jsonDepthMax));
    expect(atBound.status).toBe(201);
    const stored = await readAll(node, 'depth', stream);
    expect(stored.map((entry) => entry.data)).toEqual([JSON.parse(make(jsonDepthMax))]);

    const beyond = await append(stream, make(jsonDepthMax + 1));
    expect(beyond.status).toBe(400);
    expect(beyond.body).toEqual({ type: 'invalid-body', reason: 'the body is nested deeper than 512 levels' });
    expect(await readAll(node, 'depth', stream)).toHaveLength(1);
  });

  test('100,000 levels deep is 400, not 500, and the node still answers', async () => {
    const reply = await append('hundred-thousand', nested(100_000));
    expect(reply.status).toBe(400);
    expect(reply.body.reason).toContain('nested deeper than 512 levels');
    const objects = await append('hundred-thousand', '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000));
    expect(objects.status).toBe(400);
    expect(await readAll(node, 'depth', 'hundred-thousand')).toEqual([]);
    expect((await call(node, 'GET', '/ping')).status).toBe(200);
    expect((await append('after', '{"ok":true}')).status).toBe(201);
  });

  test('an unclosed deep body is refused as too deep or not JSON, never 500', async () => {
    for (const body of ['['.repeat(100_000), '[' + '"\\'.repeat(1000), '{"a":"' + '['.repeat(10_000)]) {
      const reply = await append('unclosed', body);
      expect({ status: reply.status, type: reply.body.type }).toEqual({ status: 400, type: 'invalid-body' });
    }
  });
});

describe('NDJSON batches', () => {
  test('one line nested too deep refuses the whole batch, naming the line and the bound; nothing is written', async () => {
    const lines = ['{"n":1}', nested(jsonDepthMax), nested(jsonDepthMax + 1), '{"n":4}'].join('\n');
    const reply = await append('batch', lines, 'application/x-ndjson');
    expect(reply.status).toBe(400);
    expect(reply.body).toEqual({ type: 'invalid-body', reason: 'line 3 is nested deeper than 512 levels', line: 3 });
    expect(await readAll(node, 'depth', 'batch')).toEqual([]);

    const fine = await append('batch', ['{"n":1}', nested(jsonDepthMax)].join('\n'), 'application/x-ndjson');
    expect(fine.status).toBe(201);
    expect(await readAll(node, 'depth', 'batch')).toHaveLength(2);
  });
});

describe('WebSocket listen commands', () => {
  test('a command nested too deep is refused with a reply; the connection and the node go on', async () => {
    const socket = new WebSocket(`${node.url.replace(/^http/, 'ws')}/listen?jwt=${node.adminToken}`);
    const replies: any[] = [];
    socket.on('message', (data) => replies.push(JSON.parse(data.toString())));
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    try {
      // The id is echoed in replies: 20,000 levels of it used to overflow JSON.stringify inside the socket's handler.
      socket.send(`{"cmd":"ping","id":${nested(20_000)}}`);
      socket.send(`{"cmd":"ping","id":${nested(jsonDepthMax - 1)}}`);
      socket.send('{"cmd":"ping","id":"after"}');
      const deadline = Date.now() + 5_000;
      while (replies.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(replies[0]).toEqual({ ok: false, id: 0, reason: 'a command must not be nested deeper than 512 levels' });
      expect(replies[1]).toMatchObject({ ok: true, type: 'ping' });
      expect(replies[2]).toEqual({ ok: true, id: 'after', type: 'ping' });
      expect(socket.readyState).toBe(WebSocket.OPEN);
    } finally {
      socket.close();
    }
    expect((await call(node, 'GET', '/ping')).status).toBe(200);
  });
});
