/**
 * The pure checks apitest applies to what it saw. Each returns a problem
 * (a sentence naming the seqnum) or undefined; callers gather them per check.
 */

/** Structural equality of JSON values (object key order does not matter). */
export function jsonEqual(left: unknown, right: unknown): boolean {
  if (left === right) return true;
  if (typeof left !== 'object' || typeof right !== 'object' || left === null || right === null) return false;
  if (Array.isArray(left) !== Array.isArray(right)) return false;
  if (Array.isArray(left) && Array.isArray(right)) {
    return left.length === right.length && left.every((item, index) => jsonEqual(item, right[index]));
  }
  const leftKeys = Object.keys(left);
  const rightRecord = right as Record<string, unknown>;
  if (leftKeys.length !== Object.keys(rightRecord).length) return false;
  return leftKeys.every((key) => Object.hasOwn(rightRecord, key) && jsonEqual((left as Record<string, unknown>)[key], rightRecord[key]));
}

/**
 * A listener joined a stream at seqnum `from` and must have received exactly
 * from, from+1, ..., target, in that order. Returns the first problem.
 */
export function listenSequenceProblem(from: number, target: number, received: readonly number[]): string | undefined {
  for (let index = 0; index < received.length; index += 1) {
    const expected = from + index;
    const got = received[index] as number;
    if (got === expected) continue;
    if (received.indexOf(got) < index) return `seqnum ${got} received twice (position ${index}, expected ${expected})`;
    if (got > expected) return `expected seqnum ${expected}, got ${got}: ${expected}..${got - 1} missing or reordered`;
    return `expected seqnum ${expected}, got ${got}: out of order`;
  }
  const next = from + received.length;
  if (next <= target) return `received up to ${next - 1}, missing ${next}..${target}`;
  return undefined;
}

/** Seqnums acknowledged on one stream must all differ. */
export function duplicateSeqnums(ids: readonly number[]): number[] {
  const seen = new Set<number>();
  const duplicates = new Set<number>();
  for (const id of ids) {
    if (seen.has(id)) duplicates.add(id);
    seen.add(id);
  }
  return [...duplicates].sort((a, b) => a - b);
}

/**
 * A GET of the last `limit` entries (or `limit` from `from`) must be
 * ascending and gap-free, at most `limit` long, and must show every entry
 * acknowledged before the request was sent (`ackedLast`, 0 if none).
 */
export function readRangeProblem(ids: readonly number[], limit: number, from: number | undefined, ackedLast: number): string | undefined {
  if (ids.length > limit) return `asked for ${limit} entries, got ${ids.length}`;
  for (let index = 1; index < ids.length; index += 1) {
    if (ids[index] !== (ids[index - 1] as number) + 1) return `seqnums not ascending and contiguous: ${ids[index - 1]} then ${ids[index]}`;
  }
  if (from !== undefined) {
    if (ids.length > 0 && ids[0] !== from) return `asked from ${from}, got first ${ids[0]}`;
    const expectedCount = Math.min(limit, Math.max(0, ackedLast - from + 1));
    if (ids.length < expectedCount) return `asked ${limit} from ${from} with ${ackedLast} acknowledged, got ${ids.length}`;
    return undefined;
  }
  if (limit > 0 && ackedLast > 0) {
    const last = ids.length === 0 ? 0 : (ids[ids.length - 1] as number);
    if (last < ackedLast) return `last ${limit} ends at ${last}, but ${ackedLast} was acknowledged before the read`;
    if (ids.length < Math.min(limit, ackedLast)) return `asked for the last ${limit} with ${ackedLast} acknowledged, got ${ids.length}`;
  }
  return undefined;
}

/**
 * A patch stream's document after the run: it starts with the numbers it had
 * before (`before`), then holds every acknowledged token exactly once, and
 * otherwise only tokens whose patch failed without an answer (`uncertain`).
 */
export function patchDocumentProblems(
  before: readonly unknown[],
  after: unknown,
  acknowledged: readonly string[],
  uncertain: ReadonlySet<string>,
): string[] {
  if (!Array.isArray(after)) return ['the final document has no "numbers" array'];
  if (after.length < before.length || !jsonEqual(after.slice(0, before.length), before)) {
    return ['the numbers present before the run were changed'];
  }
  const counts = new Map<unknown, number>();
  for (const value of after.slice(before.length)) counts.set(value, (counts.get(value) ?? 0) + 1);
  const problems: string[] = [];
  for (const token of acknowledged) {
    const count = counts.get(token) ?? 0;
    if (count !== 1) problems.push(`acknowledged patch ${token} applied ${count} times`);
    counts.delete(token);
  }
  for (const [value, count] of counts) {
    if (typeof value !== 'string' || !uncertain.has(value)) problems.push(`unexpected value ${JSON.stringify(value)} (${count} times)`);
    else if (count > 1) problems.push(`patch ${value} applied ${count} times`);
  }
  return problems;
}
