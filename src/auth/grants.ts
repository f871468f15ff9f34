import type { Grant, GrantKey, PrincipalKind, Scope } from '../core/acl.js';
import { withPermissions, withoutPermissions } from '../core/acl.js';
import type { MetaStore } from '../store/meta.js';

/**
 * meta.grants: key `[bucket, stream or '', kind ('u'/'g'), principal]`,
 * value the sorted permission names. ('', '') is the global scope, (b, '')
 * the whole bucket b. lmdb orders array keys element by element, so the
 * grants of one scope are one contiguous range.
 */
export class GrantTable {
  constructor(private readonly meta: MetaStore) {}

  /** The grants stored under these keys (keys without a grant are skipped). Synchronous lmdb reads. */
  fetch(keys: readonly GrantKey[]): Grant[] {
    const grants: Grant[] = [];
    for (const key of keys) {
      const permissions = toPermissions(this.meta.grants.get(keyOf(key)));
      if (permissions.length > 0) grants.push({ ...key, permissions });
    }
    return grants;
  }

  /** Every grant of exactly this scope (not the wider ones), groups first, then users, each by name. */
  listScope(scope: Scope): Grant[] {
    const grants: Grant[] = [];
    for (const { key, value } of this.meta.grants.getRange({ start: [scope.bucket, scope.stream] })) {
      if (!Array.isArray(key) || key[0] !== scope.bucket || key[1] !== scope.stream) break;
      const permissions = toPermissions(value);
      if (permissions.length > 0) grants.push({ scope, kind: key[2] as PrincipalKind, principal: String(key[3]), permissions });
    }
    return grants;
  }

  /** Whether some stored grant, in any scope, satisfies `predicate` (a scan of every grant). */
  some(predicate: (grant: Grant) => boolean): boolean {
    for (const { key, value } of this.meta.grants.getRange({})) {
      if (!Array.isArray(key)) continue;
      const permissions = toPermissions(value);
      const grant: Grant = { scope: { bucket: String(key[0]), stream: String(key[1]) }, kind: key[2] as PrincipalKind, principal: String(key[3]), permissions };
      if (permissions.length > 0 && predicate(grant)) return true;
    }
    return false;
  }

  /** Inside a transaction: adds (or removes) permissions of one grant; an emptied grant is deleted. */
  changeSync(key: GrantKey, permissions: readonly string[], action: 'grant' | 'revoke'): void {
    const lmdbKey = keyOf(key);
    const current = toPermissions(this.meta.grants.get(lmdbKey));
    const next = action === 'grant' ? withPermissions(current, permissions) : withoutPermissions(current, permissions);
    if (next.length === 0) this.meta.grants.removeSync(lmdbKey);
    else this.meta.grants.putSync(lmdbKey, next);
  }

  /** Inside a transaction: deletes every grant given to one principal, in any scope. Returns how many. */
  removePrincipalSync(kind: PrincipalKind, principal: string): number {
    const doomed: unknown[][] = [];
    for (const key of this.meta.grants.getKeys({})) {
      if (Array.isArray(key) && key[2] === kind && key[3] === principal) doomed.push(key);
    }
    for (const key of doomed) this.meta.grants.removeSync(key);
    return doomed.length;
  }
}

function keyOf(key: GrantKey): string[] {
  return [key.scope.bucket, key.scope.stream, key.kind, key.principal];
}

function toPermissions(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((permission): permission is string => typeof permission === 'string') : [];
}
