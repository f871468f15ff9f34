import type { Clock } from '../../src/core/clock.js';

/** A clock the test moves by hand. */
export class ManualClock implements Clock {
  constructor(public nowMs = 1_700_000_000_000) {}
  now(): number {
    return this.nowMs;
  }
  monotonic(): number {
    return this.nowMs;
  }
  advance(ms: number): void {
    this.nowMs += ms;
  }
}

export { systemClock } from '../../src/node.js';

/** A deterministic PRNG (mulberry32) in [0, 1), so a failing seed reproduces. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
