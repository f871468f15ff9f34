import type { MetaStore } from '../store/meta.js';
import { isValidName } from '../core/names.js';

/**
 * A group an admin made, as kept in meta.groups (key: its name). Who is in
 * it is kept with each user (`UserRecord.groups`), so a user's groups are
 * one read when a request is checked. The built-in groups (g-admin,
 * g-authenticated) are not stored: they always exist.
 */
export interface GroupRecord {
  readonly name: string;
  readonly createdMs: number;
}

/** Reads of meta.groups; writes happen inside the callers' lmdb transactions with the `*Sync` helpers. */
export class GroupTable {
  constructor(private readonly meta: MetaStore) {}

  get(name: unknown): GroupRecord | undefined {
    if (!isValidName(name)) return undefined;
    return toGroupRecord(this.meta.groups.get(name));
  }

  exists(name: unknown): boolean {
    return this.get(name) !== undefined;
  }

  /** Every stored group, ordered by name. */
  list(): GroupRecord[] {
    const groups: GroupRecord[] = [];
    for (const { value } of this.meta.groups.getRange({})) {
      const group = toGroupRecord(value);
      if (group !== undefined) groups.push(group);
    }
    return groups;
  }

  /** Inside a transaction. */
  putSync(group: GroupRecord): void {
    this.meta.groups.putSync(group.name, { ...group });
  }

  /** Inside a transaction. */
  removeSync(name: string): boolean {
    return this.meta.groups.removeSync(name);
  }
}

function toGroupRecord(value: unknown): GroupRecord | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const record = value as Record<string, unknown>;
  if (typeof record.name !== 'string') return undefined;
  return { name: record.name, createdMs: typeof record.createdMs === 'number' ? record.createdMs : 0 };
}
