import { describe, expect, test } from 'vitest';
import { IorioError } from '../../src/core/errors.js';
import { idempotencyWindowMs } from '../../src/core/limits.js';
import { IdempotencyWindow, requestDigest } from '../../src/http/idempotency.js';
import { ManualClock } from '../helpers/clock.js';

type Answer = { id: number };

/** A window on a manual clock, and a write that counts its calls and answers the next id. */
function setup() {
  const clock = new ManualClock();
  const window = new IdempotencyWindow<Answer>(clock);
  let writes = 0;
  const write = async (): Promise<Answer> => ({ id: ++writes });
  return { clock, window, write, writes: () => writes };
}

const digest = requestDigest('json', undefined, [Buffer.from('{"n":1}')]);

describe('IdempotencyWindow', () => {
  test('a key is answered from the window until idempotencyWindowMs has passed on the injected clock, then writes again', async () => {
    const { clock, window, write, writes } = setup();
    expect(await window.run(['alice', 'b', 's'], 'k', digest, write)).toEqual({ result: { id: 1 }, replayed: false });
    clock.advance(idempotencyWindowMs - 1);
    expect(await window.run(['alice', 'b', 's'], 'k', digest, write)).toEqual({ result: { id: 1 }, replayed: true });
    clock.advance(2);
    expect(await window.run(['alice', 'b', 's'], 'k', digest, write)).toEqual({ result: { id: 2 }, replayed: false });
    expect(writes()).toBe(2);
  });

  test('the same key with another body is 409 conflict naming the key, and does not write', async () => {
    const { window, write, writes } = setup();
    await window.run(['alice', 'b', 's'], 'k', digest, write);
    const other = requestDigest('json', undefined, [Buffer.from('{"n":2}')]);
    const refusal = await window.run(['alice', 'b', 's'], 'k', other, write).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(IorioError);
    expect((refusal as IorioError).toBody()).toEqual({ type: 'conflict', reason: 'idempotency key "k" was used with a different body', key: 'k' });
    expect((refusal as IorioError).status).toBe(409);
    expect(writes()).toBe(1);
  });

  test('keys are scoped: another user, bucket or stream with the same key writes', async () => {
    const { window, write, writes } = setup();
    await window.run(['alice', 'b', 's'], 'k', digest, write);
    for (const scope of [['bob', 'b', 's'], ['alice', 'b2', 's'], ['alice', 'b', 's2']]) {
      expect((await window.run(scope, 'k', digest, write)).replayed).toBe(false);
    }
    expect(writes()).toBe(4);
  });

  test('a failed attempt is forgotten: the same key then writes', async () => {
    const { window, write, writes } = setup();
    const failure = new IorioError('conflict', 'the last seqnum is 0, not 3');
    await expect(window.run(['alice', 'b', 's'], 'k', digest, () => Promise.reject(failure))).rejects.toBe(failure);
    expect(await window.run(['alice', 'b', 's'], 'k', digest, write)).toEqual({ result: { id: 1 }, replayed: false });
    expect(writes()).toBe(1);
  });

  test('retries racing the first attempt wait for it instead of writing', async () => {
    const { window, writes } = setup();
    let release: (answer: Answer) => void = () => undefined;
    let calls = 0;
    const slow = () => {
      calls += 1;
      return new Promise<Answer>((resolve) => (release = resolve));
    };
    const first = window.run(['alice', 'b', 's'], 'k', digest, slow);
    const second = window.run(['alice', 'b', 's'], 'k', digest, slow);
    release({ id: 7 });
    expect(await first).toEqual({ result: { id: 7 }, replayed: false });
    expect(await second).toEqual({ result: { id: 7 }, replayed: true });
    expect(calls).toBe(1);
    expect(writes()).toBe(0);
  });
});

describe('requestDigest', () => {
  const text = (value: string) => Buffer.from(value);

  test('the same request gives the same digest', () => {
    expect(requestDigest('json', 3, [text('{"a":1}')])).toBe(requestDigest('json', 3, [text('{"a":1}')]));
  });

  test('the kind, the condition and every text count', () => {
    const base = requestDigest('json', undefined, [text('1')]);
    const variants = [
      requestDigest('ndjson', undefined, [text('1')]),
      requestDigest('json', 0, [text('1')]),
      requestDigest('json', undefined, [text('2')]),
      requestDigest('ndjson', undefined, [text('1'), text('2')]),
    ];
    expect(new Set([base, ...variants]).size).toBe(5);
    expect(requestDigest('ndjson', undefined, [text('1'), text('2')])).not.toBe(requestDigest('ndjson', undefined, [text('12')]));
  });
});
