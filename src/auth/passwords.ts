import bcrypt from 'bcryptjs';
import { IorioError } from '../core/errors.js';
import { passwordBytesMax } from '../core/limits.js';

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
 * bcrypt hashing at the configured cost. `verify` against a user that does
 * not exist still compares against a real hash of the same cost, so a wrong
 * user name costs as much time as a wrong password.
 */
export class Passwords {
  private constructor(
    readonly rounds: number,
    private readonly dummyHash: string,
  ) {}

  static async create(rounds: number): Promise<Passwords> {
    const dummyHash = await bcrypt.hash('iorio: no such user', rounds);
    return new Passwords(rounds, dummyHash);
  }

  hash(password: string): Promise<string> {
    return bcrypt.hash(password, this.rounds);
  }

  /**
   * True when `password` matches `hash`. An absent or unusable hash is
   * compared against the dummy one (same cost) and never matches; so is a
   * password bcrypt would truncate, which no stored password can equal.
   */
  async verify(password: string, hash: string | undefined): Promise<boolean> {
    const usable = hash !== undefined && isBcryptHash(hash);
    const matches = await bcrypt.compare(password, usable ? hash : this.dummyHash);
    return usable && matches && passwordProblem(password) === undefined;
  }

  /** True when a stored hash was made with another cost than the configured one. */
  needsRehash(hash: string): boolean {
    return isBcryptHash(hash) && bcrypt.getRounds(hash) !== this.rounds;
  }
}

const bcryptHashPattern = /^\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}$/;

export function isBcryptHash(hash: string): boolean {
  return bcryptHashPattern.test(hash);
}
