import { describe, expect, test } from 'vitest';
import { jsonTextDepth, jsonTextTooDeep, jsonValueDepth } from '../../src/http/json-depth.js';
import { mulberry32 } from '../helpers/clock.js';

const bytes = (text: string) => Buffer.from(text, 'utf8');

/** A random JSON value: nested containers, strings full of brackets, quotes and backslashes, and long strings. */
function randomValue(random: () => number, depthLeft: number): unknown {
  const roll = random();
  if (depthLeft === 0 || roll < 0.3) {
    const pieces = ['[', ']', '{', '}', '"', '\\', '\\"', 'a', 'é', '\n', '\\\\', ' '];
    const length = random() < 0.1 ? 40 + Math.floor(random() * 200) : Math.floor(random() * 8);
    return random() < 0.5 ? Math.floor(random() * 1000) : Array.from({ length }, () => pieces[Math.floor(random() * pieces.length)]).join('');
  }
  const count = Math.floor(random() * 4);
  if (roll < 0.65) return Array.from({ length: count }, () => randomValue(random, depthLeft - 1));
  return Object.fromEntries(Array.from({ length: count }, (_, index) => [`k${index}[{"\\`, randomValue(random, depthLeft - 1)]));
}

describe('jsonTextDepth', () => {
  test('scalars are 0, each container adds one', () => {
    expect(jsonTextDepth(bytes('1'), 10)).toBe(0);
    expect(jsonTextDepth(bytes('"[[["'), 10)).toBe(0);
    expect(jsonTextDepth(bytes('[]'), 10)).toBe(1);
    expect(jsonTextDepth(bytes('{"a":[1,{"b":[]}]}'), 10)).toBe(4);
    expect(jsonTextDepth(bytes('[[],[[]],[]]'), 10)).toBe(3);
  });

  test('brackets inside strings do not count, escaped quotes do not end strings, escaped backslashes do', () => {
    expect(jsonTextDepth(bytes('["\\"[[[[" , "\\\\", [1]]'), 10)).toBe(2);
    expect(jsonTextDepth(bytes(`["${'\\\\'.repeat(40)}", [[ "${'x'.repeat(100)}\\"]]]]" ]]]`), 10)).toBe(3);
    expect(jsonTextDepth(bytes(`["${'x'.repeat(100)}${'\\\\'.repeat(7)}\\"[[[["]`), 10)).toBe(1);
  });

  test('stops counting past the bound', () => {
    expect(jsonTextDepth(bytes('['.repeat(100_000) + ']'.repeat(100_000)), 512)).toBe(513);
    expect(jsonTextDepth(bytes('['.repeat(512) + ']'.repeat(512)), 512)).toBe(512);
  });

  test('ends on text that is not JSON (unclosed strings and containers)', () => {
    expect(jsonTextDepth(bytes('["abc'), 10)).toBe(1);
    expect(jsonTextDepth(bytes('[' + '"'.repeat(3) + '\\'), 10)).toBe(1);
    expect(jsonTextDepth(bytes('["' + 'x'.repeat(100)), 10)).toBe(1);
    expect(jsonTextDepth(bytes(']]]]][['), 10)).toBe(0);
  });

  test('agrees with the depth of the parsed value on 2,000 seeded random values', () => {
    const random = mulberry32(7);
    for (let round = 0; round < 2_000; round += 1) {
      const value = randomValue(random, 1 + Math.floor(random() * 12));
      const text = JSON.stringify(value, null, random() < 0.3 ? 1 : undefined);
      const expected = jsonValueDepth(value, 100);
      expect(jsonTextDepth(bytes(text), 100), text).toBe(expected);
      expect(jsonTextDepth(bytes(text), expected - 1), text).toBe(expected === 0 ? 0 : expected);
      expect(jsonTextTooDeep(bytes(text), Math.max(0, expected - 1)), text).toBe(expected > 0);
    }
  });

  test('also reads a plain Uint8Array', () => {
    expect(jsonTextDepth(new Uint8Array(bytes(`[["${'x'.repeat(100)}\\"]"]]`)), 10)).toBe(2);
  });
});

describe('jsonTextTooDeep', () => {
  test('a text no longer than the bound is never too deep, and is not scanned', () => {
    expect(jsonTextTooDeep(bytes('['.repeat(4)), 4)).toBe(false);
    expect(jsonTextTooDeep(bytes('['.repeat(5)), 4)).toBe(true);
  });
});

describe('jsonValueDepth', () => {
  test('walks without recursion and stops past the bound', () => {
    expect(jsonValueDepth(1, 5)).toBe(0);
    expect(jsonValueDepth(null, 5)).toBe(0);
    expect(jsonValueDepth({ a: [1, { b: [] }] }, 5)).toBe(4);
    const deep = JSON.parse('['.repeat(200_000) + ']'.repeat(200_000));
    expect(jsonValueDepth(deep, 512)).toBe(513);
  });
});
