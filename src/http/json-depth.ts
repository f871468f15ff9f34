/**
 * How deeply a JSON text or value nests arrays and objects: a scalar is 0,
 * `[]` is 1, `{"a":[1]}` is 2. Iorio bounds every JSON body it takes from a
 * client (core/limits.ts jsonDepthMax), because JSON.stringify, deep
 * equality and fast-json-patch all recurse: a value nested 5,000 deep
 * overflows the stack, and V8's JSON.parse does not (it is iterative), so a
 * bound must be checked before anything else touches the value. Both
 * functions here are linear, never recurse, and stop counting past `max`.
 * Pure.
 */

const byteKind = { other: 0, quote: 1, open: 2, close: 3 } as const;

/** What each byte is to the scanner outside strings; most bytes are `other`, one table load decides. */
const kindOfByte = new Uint8Array(256);
kindOfByte[0x22] = byteKind.quote; // "
kindOfByte[0x5b] = byteKind.open; // [
kindOfByte[0x7b] = byteKind.open; // {
kindOfByte[0x5d] = byteKind.close; // ]
kindOfByte[0x7d] = byteKind.close; // }

const quoteByte = 0x22;
const backslashByte = 0x5c;

/**
 * Bytes of a string scanned one by one before handing the rest of it to
 * Buffer#indexOf (memchr): short strings are cheaper to walk, long ones far
 * cheaper to search (a 1 MB string body costs microseconds, not a millisecond).
 */
const stringInlineBytes = 32;

/**
 * The nesting depth of a JSON text, or `max + 1` as soon as it is deeper
 * than `max`. Counts `[` and `{` outside strings (a backslash escapes the
 * byte after it), so it needs no valid JSON: on text that does not parse it
 * still ends, and the parser then refuses the text.
 */
export function jsonTextDepth(text: Uint8Array, max: number): number {
  const length = text.length;
  let depth = 0;
  let deepest = 0;
  let index = 0;
  while (index < length) {
    const kind = kindOfByte[text[index++]!]!;
    if (kind === byteKind.other) continue;
    if (kind === byteKind.open) {
      depth += 1;
      if (depth > deepest) {
        if (depth > max) return max + 1;
        deepest = depth;
      }
    } else if (kind === byteKind.close) {
      depth -= 1;
    } else {
      index = endOfString(text, index);
    }
  }
  return deepest;
}

/** True when the JSON text nests deeper than `max`; texts of at most `max` bytes cannot, and are not scanned. */
export function jsonTextTooDeep(text: Uint8Array, max: number): boolean {
  return text.length > max && jsonTextDepth(text, max) > max;
}

/** The index just past the quote closing the string whose first content byte is at `start` (the length when unclosed). */
function endOfString(text: Uint8Array, start: number): number {
  const length = text.length;
  let index = start;
  const inlineEnd = Math.min(length, start + stringInlineBytes);
  while (index < inlineEnd) {
    const byte = text[index++]!;
    if (byte === quoteByte) return index;
    if (byte === backslashByte) index += 1;
  }
  if (index >= length) return length;
  for (;;) {
    const quote = indexOfByte(text, quoteByte, index);
    if (quote === -1) return length;
    // A quote is escaped when an odd run of backslashes precedes it; the run
    // starts at `index` at the earliest, since every byte before was consumed.
    let runStart = quote;
    while (runStart > index && text[runStart - 1] === backslashByte) runStart -= 1;
    if ((quote - runStart) % 2 === 0) return quote + 1;
    index = quote + 1;
  }
}

function indexOfByte(text: Uint8Array, byte: number, from: number): number {
  return Buffer.isBuffer(text) ? text.indexOf(byte, from) : Uint8Array.prototype.indexOf.call(text, byte, from);
}

/**
 * The nesting depth of a parsed JSON value, or `max + 1` as soon as it is
 * deeper than `max`; walked with an explicit stack, never recursively.
 */
export function jsonValueDepth(value: unknown, max: number): number {
  if (value === null || typeof value !== 'object') return 0;
  const containers: object[] = [value];
  const depths: number[] = [1];
  let deepest = 1;
  while (containers.length > 0) {
    const container = containers.pop()!;
    const depth = depths.pop()!;
    if (depth > deepest) deepest = depth;
    if (deepest > max) return max + 1;
    const children = Array.isArray(container) ? container : Object.values(container);
    for (const child of children) {
      if (child !== null && typeof child === 'object') {
        containers.push(child as object);
        depths.push(depth + 1);
      }
    }
  }
  return deepest;
}
