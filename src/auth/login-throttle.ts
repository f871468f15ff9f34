import { LRUCache } from 'lru-cache';
import type { Clock } from '../core/clock.js';
import { IorioError } from '../core/errors.js';
import { loginInFlightRetryMs, loginThrottleEntriesMax } from '../core/limits.js';
import { isValidName } from '../core/names.js';

/**
 * Failed logins of one user name or one client address. An attempt still
 * being checked counts as a failure until it is settled, so that a burst
 * of concurrent guesses cannot all slip in before the first one fails.
 */
export interface LoginTally {
  failures: number;
  /** Monotonic ms of the first failure of the current window. */
  windowStartMs: number;
  inFlight: number;
}

export interface ThrottleRule {
  readonly failuresMax: number;
  readonly windowMs: number;
}

/**
 * How long a new attempt must wait (ms), or undefined when it may go on.
 * A tally whose window has passed counts as empty. Pure.
 */
export function waitOf(tally: LoginTally | undefined, rule: ThrottleRule, nowMs: number): number | undefined {
  if (tally === undefined) return undefined;
  const failures = nowMs >= tally.windowStartMs + rule.windowMs ? 0 : tally.failures;
  if (failures >= rule.failuresMax) return tally.windowStartMs + rule.windowMs - nowMs;
  if (failures + tally.inFlight >= rule.failuresMax) return loginInFlightRetryMs;
  return undefined;
}

/** The tally after one more failure at `nowMs`: a passed window starts over. Pure. */
export function withFailure(tally: LoginTally, rule: ThrottleRule, nowMs: number): LoginTally {
  if (tally.failures === 0 || nowMs >= tally.windowStartMs + rule.windowMs) return { ...tally, failures: 1, windowStartMs: nowMs };
  return { ...tally, failures: tally.failures + 1 };
}

/** What a refused login is told: 429 rate-limited, with the wait in whole seconds (Retry-After). */
export function throttledError(what: string, waitMs: number): IorioError {
  const retryAfterSecs = Math.max(1, Math.ceil(waitMs / 1000));
  return new IorioError('rate-limited', `too many failed logins ${what}: retry in ${retryAfterSecs} s`, { retry_after_secs: retryAfterSecs });
}

/** One admitted login attempt; settle it exactly once. */
export interface LoginAttempt {
  /** The password matched: the user's failures are forgotten. Its address keeps its own (a valid account must not reset it). */
  succeeded(): void;
  /** The password did not match. Returns the keys that have just reached the limit (for the log). */
  failed(): string[];
  /** The check itself failed (busy, stopping): the attempt counts for nothing. */
  abandoned(): void;
}

/**
 * Throttles failed logins per user name and per client address
 * (auth.login.failures.max within auth.login.failures.window): past the
 * limit an attempt is refused with 429 before its password is looked at.
 * Two bounded LRU tables, so that spraying addresses cannot push the users'
 * tallies out, and the reverse. Every user name that could exist is
 * tracked, known or not, so a refusal never tells which users exist.
 */
export class LoginThrottle {
  private readonly users: LRUCache<string, LoginTally>;
  private readonly addresses: LRUCache<string, LoginTally>;

  constructor(
    private readonly rule: ThrottleRule,
    private readonly clock: Clock,
    entriesMax = loginThrottleEntriesMax,
  ) {
    this.users = new LRUCache({ max: entriesMax });
    this.addresses = new LRUCache({ max: entriesMax });
  }

  /** Admits one attempt, or throws 429 `rate-limited` (details.retry_after_secs) when the user or the address is over its limit. */
  admit(username: string, address: string): LoginAttempt {
    const nowMs = this.clock.monotonic();
    const userKey = isValidName(username) ? username : undefined;
    const userWait = userKey === undefined ? undefined : waitOf(this.users.get(userKey), this.rule, nowMs);
    if (userWait !== undefined) throw throttledError(`for user ${userKey}`, userWait);
    const addressWait = waitOf(this.addresses.get(address), this.rule, nowMs);
    if (addressWait !== undefined) throw throttledError(`from ${address}`, addressWait);
    if (userKey !== undefined) this.tallyOf(this.users, userKey).inFlight += 1;
    this.tallyOf(this.addresses, address).inFlight += 1;
    return this.attempt(userKey, address);
  }

  private attempt(userKey: string | undefined, address: string): LoginAttempt {
    let settled = false;
    const settle = () => {
      if (settled) throw new Error('assertion failed: a login attempt is settled once');
      settled = true;
      if (userKey !== undefined) this.leave(this.users, userKey);
      this.leave(this.addresses, address);
    };
    return {
      succeeded: () => {
        settle();
        if (userKey !== undefined) this.users.delete(userKey);
      },
      failed: () => {
        settle();
        const nowMs = this.clock.monotonic();
        const reached: string[] = [];
        if (userKey !== undefined && this.fail(this.users, userKey, nowMs)) reached.push(`user ${userKey}`);
        if (this.fail(this.addresses, address, nowMs)) reached.push(`address ${address}`);
        return reached;
      },
      abandoned: settle,
    };
  }

  /** Records a failure; true when it is the one that reaches the limit. */
  private fail(table: LRUCache<string, LoginTally>, key: string, nowMs: number): boolean {
    const tally = withFailure(this.tallyOf(table, key), this.rule, nowMs);
    table.set(key, tally);
    return tally.failures === this.rule.failuresMax;
  }

  /** One in-flight attempt is settled; a tally with nothing left in it is dropped. */
  private leave(table: LRUCache<string, LoginTally>, key: string): void {
    const tally = table.get(key);
    if (tally === undefined) return;
    tally.inFlight = Math.max(0, tally.inFlight - 1);
    if (tally.inFlight === 0 && tally.failures === 0) table.delete(key);
  }

  private tallyOf(table: LRUCache<string, LoginTally>, key: string): LoginTally {
    let tally = table.get(key);
    if (tally === undefined) {
      tally = { failures: 0, windowStartMs: 0, inFlight: 0 };
      table.set(key, tally);
    }
    return tally;
  }
}
