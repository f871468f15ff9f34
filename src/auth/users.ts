import type { MetaStore } from '../store/meta.js';
import { isValidName } from '../core/names.js';

/**
 * A user as kept in meta.users (key: username). `passwordHash` is a bcrypt
 * hash, or '' for a user nobody can log in as (the anonymous user).
 * `groups` lists explicit memberships only: g-authenticated is implicit.
 * `sessionGeneration` is random, carried by every token issued to the user
 * (claim `g`), and replaced when the password changes or the sessions are
 * revoked: tokens with another one are refused. A user created again under
 * the same name gets a new one, so the old user's tokens never fit it. ''
 * only in records written before it existed (filled in at start-up).
 */
export interface UserRecord {
  readonly username: string;
  readonly passwordHash: string;
  readonly groups: readonly string[];
  readonly createdMs: number;
  readonly sessionGeneration: string;
}

/** Reads of meta.users; writes happen inside the callers' lmdb transactions with the `*Sync` helpers. */
export class UserTable {
  constructor(private readonly meta: MetaStore) {}

  /** The user, or undefined when it does not exist (or the name could never be one). */
  get(username: unknown): UserRecord | undefined {
    if (!isValidName(username)) return undefined;
    return toUserRecord(this.meta.users.get(username));
  }

  exists(username: unknown): boolean {
    return this.get(username) !== undefined;
  }

  /** Every user, ordered by name. */
  list(): UserRecord[] {
    const users: UserRecord[] = [];
    for (const { value } of this.meta.users.getRange({})) {
      const user = toUserRecord(value);
      if (user !== undefined) users.push(user);
    }
    return users;
  }

  /** Inside a transaction. */
  putSync(user: UserRecord): void {
    this.meta.users.putSync(user.username, { ...user, groups: [...user.groups] });
  }

  /** Inside a transaction. */
  removeSync(username: string): boolean {
    return this.meta.users.removeSync(username);
  }
}

function toUserRecord(value: unknown): UserRecord | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const record = value as Record<string, unknown>;
  if (typeof record.username !== 'string' || typeof record.passwordHash !== 'string') return undefined;
  const groups = Array.isArray(record.groups) ? record.groups.filter((group): group is string => typeof group === 'string') : [];
  const createdMs = typeof record.createdMs === 'number' ? record.createdMs : 0;
  const sessionGeneration = typeof record.sessionGeneration === 'string' ? record.sessionGeneration : '';
  return { username: record.username, passwordHash: record.passwordHash, groups, createdMs, sessionGeneration };
}
