import { describe, expect, it } from 'vitest';
import { LoginThrottle, waitOf, withFailure, type LoginAttempt } from '../../src/auth/login-throttle.js';
import { IorioError } from '../../src/core/errors.js';
import { loginInFlightRetryMs } from '../../src/core/limits.js';
import { ManualClock } from '../helpers/clock.js';

const rule = { failuresMax: 5, windowMs: 60_000 };

function setup(entriesMax?: number): { throttle: LoginThrottle; clock: ManualClock } {
  const clock = new ManualClock();
  return { throttle: new LoginThrottle(rule, clock, entriesMax), clock };
}

/** The 429 an admission throws, or undefined when the attempt was admitted (and then settled as `outcome`). */
function refusal(throttle: LoginThrottle, username: string, address: string, outcome: 'failed' | 'succeeded' = 'failed'): IorioError | undefined {
  let attempt: LoginAttempt;
  try {
    attempt = throttle.admit(username, address);
  } catch (error) {
    if (error instanceof IorioError) return error;
    throw error;
  }
  attempt[outcome]();
  return undefined;
}

function failFrom(throttle: LoginThrottle, username: string, addresses: readonly string[]): void {
  for (const address of addresses) expect(refusal(throttle, username, address), `${username} from ${address}`).toBeUndefined();
}

describe('login throttle', () => {
  it('refuses a user name after max failures from any addresses, with the wait; other users pass', () => {
    const { throttle } = setup();
    failFrom(throttle, 'alice', ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']);
    const refused = refusal(throttle, 'alice', '10.0.0.6', 'succeeded');
    expect(refused?.code).toBe('rate-limited');
    expect(refused?.status).toBe(429);
    expect(refused?.message).toMatch(/for user alice/);
    expect(refused?.details).toEqual({ retry_after_secs: 60 });
    expect(refusal(throttle, 'bob', '10.0.0.6')).toBeUndefined();
  });

  it('refuses an address after max failures on any user names; other addresses pass', () => {
    const { throttle } = setup();
    for (const username of ['u1', 'u2', 'u3', 'u4', 'u5']) failFrom(throttle, username, ['10.0.0.9']);
    const refused = refusal(throttle, 'u6', '10.0.0.9');
    expect(refused?.message).toMatch(/from 10\.0\.0\.9/);
    expect(refusal(throttle, 'u6', '10.0.0.10')).toBeUndefined();
  });

  it('lets a user through again once the window has passed, counting the wait down meanwhile', () => {
    const { throttle, clock } = setup();
    failFrom(throttle, 'alice', ['a1', 'a2', 'a3', 'a4', 'a5']);
    clock.advance(45_500);
    expect(refusal(throttle, 'alice', 'a6')?.details).toEqual({ retry_after_secs: 15 });
    clock.advance(14_500);
    expect(refusal(throttle, 'alice', 'a6', 'succeeded')).toBeUndefined();
  });

  it('counts the window from the first failure: failures spread over more than the window never add up', () => {
    const { throttle, clock } = setup();
    failFrom(throttle, 'alice', ['a1', 'a2', 'a3', 'a4']);
    clock.advance(60_000);
    failFrom(throttle, 'alice', ['a5', 'a6', 'a7', 'a8']);
    expect(refusal(throttle, 'alice', 'a9')).toBeUndefined();
    expect(refusal(throttle, 'alice', 'a10')?.code).toBe('rate-limited');
  });

  it('forgets a user\'s failures when it logs in, but not its address\'s', () => {
    const { throttle } = setup();
    failFrom(throttle, 'alice', ['a1', 'a2', 'a3', 'a4']);
    expect(refusal(throttle, 'alice', 'a5', 'succeeded')).toBeUndefined();
    failFrom(throttle, 'alice', ['b1', 'b2', 'b3', 'b4', 'b5']);
    expect(refusal(throttle, 'alice', 'b6')?.message).toMatch(/for user alice/);
    // A valid account does not buy an address more guesses on others.
    for (const username of ['x1', 'x2', 'x3', 'x4']) failFrom(throttle, username, ['10.1.1.1']);
    expect(refusal(throttle, 'bob', '10.1.1.1', 'succeeded')).toBeUndefined();
    expect(refusal(throttle, 'x5', '10.1.1.1')).toBeUndefined();
    expect(refusal(throttle, 'x6', '10.1.1.1')?.message).toMatch(/from 10\.1\.1\.1/);
  });

  it('counts attempts still being checked, so a concurrent burst gets no more than max guesses', () => {
    const { throttle } = setup();
    const burst = ['a1', 'a2', 'a3', 'a4', 'a5'].map((address) => throttle.admit('alice', address));
    const sixth = refusal(throttle, 'alice', 'a6');
    expect(sixth?.details).toEqual({ retry_after_secs: loginInFlightRetryMs / 1000 });
    burst[0]!.abandoned();
    expect(refusal(throttle, 'alice', 'a6')).toBeUndefined();
    for (const attempt of burst.slice(1)) attempt.failed();
    expect(refusal(throttle, 'alice', 'a7')?.details).toEqual({ retry_after_secs: 60 });
  });

  it('says which keys have just reached the limit, once', () => {
    const { throttle } = setup();
    for (const username of ['u1', 'u2', 'u3', 'u4']) expect(throttle.admit(username, '10.0.0.1').failed()).toEqual([]);
    expect(throttle.admit('u5', '10.0.0.1').failed()).toEqual(['address 10.0.0.1']);
  });

  it('tracks names that cannot be users by address only', () => {
    const { throttle } = setup();
    for (const address of ['a1', 'a2', 'a3', 'a4', 'a5', 'a6']) expect(refusal(throttle, 'not a name!', address)).toBeUndefined();
  });

  it('settles an attempt once', () => {
    const { throttle } = setup();
    const attempt = throttle.admit('alice', 'a1');
    attempt.failed();
    expect(() => attempt.succeeded()).toThrow(/settled once/);
  });

  it('holds at most entriesMax user names and addresses: the least recently used are forgotten', () => {
    const { throttle } = setup(2);
    failFrom(throttle, 'alice', ['a1', 'a2', 'a3', 'a4', 'a5']);
    expect(refusal(throttle, 'alice', 'a6')?.code).toBe('rate-limited');
    failFrom(throttle, 'bob', ['b1']);
    failFrom(throttle, 'carol', ['c1']);
    expect(refusal(throttle, 'alice', 'a6', 'succeeded')).toBeUndefined();
  });
});

describe('login throttle: the pure rule', () => {
  it('waits for the window to pass once max failures are in it', () => {
    const tally = { failures: 5, windowStartMs: 1_000, inFlight: 0 };
    expect(waitOf(undefined, rule, 0)).toBeUndefined();
    expect(waitOf(tally, rule, 1_000)).toBe(60_000);
    expect(waitOf(tally, rule, 60_999)).toBe(1);
    expect(waitOf(tally, rule, 61_000)).toBeUndefined();
    expect(waitOf({ ...tally, failures: 4 }, rule, 1_000)).toBeUndefined();
    expect(waitOf({ ...tally, failures: 4, inFlight: 1 }, rule, 1_000)).toBe(loginInFlightRetryMs);
    // A passed window counts for nothing, even with attempts in flight.
    expect(waitOf({ ...tally, inFlight: 4 }, rule, 61_000)).toBeUndefined();
  });

  it('starts a window at the first failure, and again once it has passed', () => {
    const empty = { failures: 0, windowStartMs: 0, inFlight: 2 };
    const first = withFailure(empty, rule, 5_000);
    expect(first).toEqual({ failures: 1, windowStartMs: 5_000, inFlight: 2 });
    expect(withFailure(first, rule, 64_999)).toEqual({ failures: 2, windowStartMs: 5_000, inFlight: 2 });
    expect(withFailure(first, rule, 65_000)).toEqual({ failures: 1, windowStartMs: 65_000, inFlight: 2 });
  });
});
