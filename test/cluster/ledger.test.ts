/**
 * The replication tests' checker (ledger.ts) fails on bad histories: a
 * checker that cannot fail proves nothing. Each case is one planted fault
 * in an otherwise good history, of the kinds the fault tests look for.
 */
import { describe, expect, test } from 'vitest';
import { History, listenedProblems, logProblems, orderProblems, type SeenEntry } from './ledger.js';

/** Appends 1..count acknowledged in turn at seq 1..count, then append count + 1 of unknown outcome. */
function goodHistory(count: number): History {
  const history = new History();
  for (let index = 1; index <= count; index++) expect(history.acknowledge(history.sent(1), index)).toBeUndefined();
  history.unknownOutcome(history.sent(2));
  return history;
}

function log(...ns: number[]): SeenEntry[] {
  return ns.map((n, index) => ({ seq: index + 1, n }));
}

describe('the replication checker', () => {
  test('a good history passes, with or without its append of unknown outcome', () => {
    const history = goodHistory(3);
    expect(logProblems(log(1, 2, 3), history)).toEqual([]);
    expect(logProblems(log(1, 2, 3, 4), history)).toEqual([]);
    expect(orderProblems(history.appends)).toEqual([]);
    expect(listenedProblems(log(1, 2, 3, 4), log(1, 2, 3, 4))).toEqual([]);
  });

  test('a seqnum acknowledged twice is caught as the second 201 arrives', () => {
    const history = goodHistory(3);
    expect(history.acknowledge(history.sent(3), 2)).toMatch(/seq 2 acknowledged twice/);
  });

  test('a lost acknowledged append, a duplicate, a gap, a stranger and a swapped value are each caught', () => {
    const history = goodHistory(3);
    expect(logProblems(log(1, 2), history)).toEqual(['acknowledged append 3 at seq 3 is missing']);
    expect(logProblems(log(1, 2, 3, 4, 4), history).join('\n')).toMatch(/append 4 appears twice/);
    expect(logProblems([{ seq: 1, n: 1 }, { seq: 3, n: 2 }, { seq: 4, n: 3 }], history).join('\n')).toMatch(/not gap-free from 1: entry 2 has seq 3/);
    expect(logProblems([{ seq: 2, n: 2 }, { seq: 3, n: 3 }], goodHistory(0)).join('\n')).toMatch(/not gap-free from 1: entry 1 has seq 2/);
    expect(logProblems(log(1, 2, 3, 9), history).join('\n')).toMatch(/append 9, which was acknowledged at another seqnum or never sent/);
    expect(logProblems(log(1, 3, 2), history).join('\n')).toMatch(/seq 2 holds append 3, but append 2 was acknowledged there/);
  });

  test('a stale 201 (acknowledged at a seqnum below one acknowledged before it was sent) breaks real-time order', () => {
    const history = new History();
    const first = history.sent(1);
    expect(history.acknowledge(first, 5)).toBeUndefined();
    const stale = history.sent(2);
    expect(history.acknowledge(stale, 4)).toBeUndefined();
    expect(orderProblems(history.appends).join('\n')).toMatch(/append 1 was acknowledged at seq 5 before append 2 was sent/);
    // Concurrent appends may take either order.
    const concurrent = new History();
    const a = concurrent.sent(1);
    const b = concurrent.sent(2);
    concurrent.acknowledge(b, 1);
    concurrent.acknowledge(a, 2);
    expect(orderProblems(concurrent.appends)).toEqual([]);
  });

  test("a listener's duplicate, gap, wrong value or missing tail is caught", () => {
    const final = log(1, 2, 3, 4);
    expect(listenedProblems([...log(1, 2), { seq: 2, n: 2 }, { seq: 3, n: 3 }, { seq: 4, n: 4 }], final).join('\n')).toMatch(/entry 3 is seq 2: a gap, a duplicate or out of order/);
    expect(listenedProblems([{ seq: 1, n: 1 }, { seq: 3, n: 3 }, { seq: 4, n: 4 }], final).join('\n')).toMatch(/a gap/);
    expect(listenedProblems(log(1, 2, 9, 4), final).join('\n')).toMatch(/saw append 9 at seq 3; the log holds append 3/);
    expect(listenedProblems(log(1, 2, 3), final)).toEqual(['the listener saw 3 entries; the log holds 4']);
  });
});
