/** Time, injected everywhere so the simulator and tests can drive it. */
export interface Clock {
  /** Wall-clock milliseconds since the epoch (entry timestamps, expiry). */
  now(): number;
  /** Monotonic milliseconds, for durations and timeouts. */
  monotonic(): number;
}
