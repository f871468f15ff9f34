import { threadId } from 'node:worker_threads';
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it } from 'vitest';
import { PasswordWorkerPool, passwordThreadsFor } from '../../src/auth/password-pool.js';
import { Passwords } from '../../src/auth/passwords.js';
import { IorioError } from '../../src/core/errors.js';
import { passwordWorkersMax } from '../../src/core/limits.js';

const pools: PasswordWorkerPool[] = [];

function pool(options: ConstructorParameters<typeof PasswordWorkerPool>[0] = {}): PasswordWorkerPool {
  const created = new PasswordWorkerPool(options);
  pools.push(created);
  return created;
}

afterEach(async () => {
  for (const created of pools.splice(0)) await created.close();
});

/** Counts event-loop turns (setImmediate callbacks) until `work` settles. */
async function turnsDuring<T>(work: Promise<T>): Promise<{ value: T; turns: number }> {
  let turns = 0;
  let done = false;
  const spin = () => {
    if (done) return;
    turns += 1;
    setImmediate(spin);
  };
  setImmediate(spin);
  const value = await work.finally(() => {
    done = true;
  });
  return { value, turns };
}

describe('password worker pool', () => {
  it('hashes off the event loop: it keeps turning while a slow hash runs', async () => {
    const workers = pool({ threads: 1 });
    await workers.hash('warm-up', 4);
    // Cost 12 is ~0.25 s of CPU. bcryptjs on the main thread yields every 100 ms: a handful of turns.
    // On a worker the loop turns freely: tens of thousands.
    const onWorker = await turnsDuring(workers.hash('slow', 12));
    const onMainThread = await turnsDuring(bcrypt.hash('slow', 12));
    expect(onMainThread.turns).toBeLessThan(100);
    expect(onWorker.turns).toBeGreaterThan(10 * onMainThread.turns);
    expect(onWorker.turns).toBeGreaterThan(1_000);
    expect(bcrypt.compareSync('slow', onWorker.value)).toBe(true);
  });

  it('runs its workers on threads other than the main one', async () => {
    const workers = pool({ threads: 2 });
    await Promise.all([workers.hash('a', 4), workers.hash('b', 4)]);
    const ids = workers.threadIds();
    expect(ids).toHaveLength(2);
    expect(ids).not.toContain(threadId);
  });

  it('makes the same hashes as bcryptjs on the main thread, so stored passwords keep working', async () => {
    const workers = pool({ threads: 1 });
    const storedBefore = bcrypt.hashSync('old-password', 4);
    expect(await workers.compare('old-password', storedBefore)).toBe(true);
    expect(await workers.compare('other', storedBefore)).toBe(false);
    const made = await workers.hash('new-password', 5);
    expect(made).toMatch(/^\$2b\$05\$/);
    expect(bcrypt.compareSync('new-password', made)).toBe(true);
  });

  it('reports a job that throws in the worker, and keeps working', async () => {
    const workers = pool({ threads: 1 });
    await expect(workers.compare('pw', 42 as unknown as string)).rejects.toThrow(/password worker: Illegal arguments/);
    expect(await workers.compare('pw', bcrypt.hashSync('pw', 4))).toBe(true);
  });

  it('bounds the queue: past it a job fails with 503 unavailable at once', async () => {
    const workers = pool({ threads: 1, queueCountMax: 2 });
    const accepted = [workers.hash('1', 8), workers.hash('2', 4), workers.hash('3', 4)];
    const refused = await workers.hash('4', 4).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(IorioError);
    expect((refused as IorioError).code).toBe('unavailable');
    expect(workers.queued).toBe(2);
    expect(await Promise.all(accepted)).toHaveLength(3);
    expect(workers.queued).toBe(0);
  });

  it('fails running and waiting jobs with 503 on close, and later ones too', async () => {
    const workers = pool({ threads: 1 });
    const running = workers.hash('1', 12).catch((error: unknown) => error);
    const waiting = workers.hash('2', 4).catch((error: unknown) => error);
    await workers.close();
    for (const outcome of [await running, await waiting, await workers.hash('3', 4).catch((error: unknown) => error)]) {
      expect((outcome as IorioError).code).toBe('unavailable');
    }
    expect(workers.threadIds()).toEqual([]);
    await workers.close();
  });

  it('leaves a core to the event loop', () => {
    expect([1, 2, 3, 8, 64].map(passwordThreadsFor)).toEqual([1, 1, 2, Math.min(7, passwordWorkersMax), passwordWorkersMax]);
  });
});

describe('passwords on the pool', () => {
  it('verifies, refuses unknown users against a real hash, and closes', async () => {
    const passwords = await Passwords.create(4, { threads: 1 });
    try {
      const hash = await passwords.hash('pw');
      expect(await passwords.verify('pw', hash)).toBe(true);
      expect(await passwords.verify('pw', undefined)).toBe(false);
      expect(await passwords.verify('pw', 'not-a-hash')).toBe(false);
    } finally {
      await passwords.close();
    }
    expect(((await passwords.hash('pw').catch((error: unknown) => error)) as IorioError).code).toBe('unavailable');
  });
});
