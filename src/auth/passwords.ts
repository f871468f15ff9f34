import bcrypt from 'bcryptjs';
import { IorioError } from '../core/errors.js';
import { passwordBytesMax } from '../core/limits.js';
import { PasswordWorkerPool, type PasswordPoolOptions } from './password-pool.js';

/** Why a new password is not acceptable, or undefined when it is. */
export function passwordProblem(password: unknown): string | undefined {
  if (typeof password !== 'string') return 'the password must be a string';
  if (password.length === 0) return 'the password must not be empty';
  const bytes = Buffer.byteLength(password, 'utf8');
  if (bytes > passwordBytesMax) return `the password must be at most ${passwordBytesMax} bytes (it is ${bytes})`;
  return undefined;
}

/** Throws `invalid-body` unless `password` may be set as a user's password. */
export function checkPassword(password: unknown): string {
  const problem = passwordProblem(password);
  if (problem !== undefined) throw new IorioError('invalid-body', problem);
  return password as string;
}

/**
 * bcrypt hashing at the configured cost, on worker threads (a hash at the
 * default cost is ~100 ms of CPU the event loop must not spend). `verify`
 * against a user that does not exist still compares against a real hash of
 * the same cost, so a wrong user name costs as much time as a wrong password.
 */
export class Passwords {
  private constructor(
    readonly rounds: number,
    private readonly pool: PasswordWorkerPool,
    private readonly dummyHash: string,
  ) {}

  static async create(rounds: number, options: PasswordPoolOptions = {}): Promise<Passwords> {
    const pool = new PasswordWorkerPool(options);
    try {
      const dummyHash = await pool.hash('iorio: no such user', rounds);
      return new Passwords(rounds, pool, dummyHash);
    } catch (error) {
      await pool.close();
      throw error;
    }
  }

  hash(password: string): Promise<string> {
    return this.pool.hash(password, this.rounds);
  }

  /**
   * True when `password` matches `hash`. An absent or unusable hash is
   * compared against the dummy one (same cost) and never matches; so is a
   * password bcrypt would truncate, which no stored password can equal.
   */
  async verify(password: string, hash: string | undefined): Promise<boolean> {
    const usable = hash !== undefined && isBcryptHash(hash);
    const matches = await this.pool.compare(password, usable ? hash : this.dummyHash);
    return usable && matches && passwordProblem(password) === undefined;
  }

  /** True when a stored hash was made with another cost than the configured one. */
  needsRehash(hash: string): boolean {
    return isBcryptHash(hash) && bcrypt.getRounds(hash) !== this.rounds;
  }

  /** Stops the worker threads; hashing after it fails with 503. */
  close(): Promise<void> {
    return this.pool.close();
  }
}

const bcryptHashPattern = /^\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}$/;

export function isBcryptHash(hash: string): boolean {
  return bcryptHashPattern.test(hash);
}
