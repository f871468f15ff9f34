import { isPermission, knownGroups, PrincipalKind, type AclPermission } from '../core/acl.js';
import { IorioError } from '../core/errors.js';
import { checkName } from '../core/names.js';

/** A validated grant change: one permission, to or from one user or group. */
export interface ParsedGrantChange {
  readonly kind: PrincipalKind;
  readonly principal: string;
  readonly permission: AclPermission;
  readonly action: 'grant' | 'revoke';
}

/**
 * Validates a `POST /access` body: exactly one of `username` / `group`, a
 * known permission, action `grant` or `revoke`. Throws `invalid-body` (or
 * `invalid-name` for a malformed user name, `not-found` for an unknown
 * group). Pure: whether the user exists is the caller's question.
 */
export function parseGrantChange(change: unknown): ParsedGrantChange {
  if (change === null || typeof change !== 'object' || Array.isArray(change)) {
    throw new IorioError('invalid-body', 'expected an object with username or group, permission and action');
  }
  const { username, group, permission, action } = change as Record<string, unknown>;
  const hasUser = username !== undefined && username !== null;
  const hasGroup = group !== undefined && group !== null;
  if (hasUser === hasGroup) throw new IorioError('invalid-body', 'give exactly one of username and group');
  if (!isPermission(permission)) {
    throw new IorioError('invalid-body', `unknown permission ${JSON.stringify(permission) ?? 'undefined'}`);
  }
  if (action !== 'grant' && action !== 'revoke') {
    throw new IorioError('invalid-body', `action must be "grant" or "revoke", not ${JSON.stringify(action) ?? 'undefined'}`);
  }
  if (hasUser) return { kind: PrincipalKind.user, principal: checkName('user', username), permission, action };
  if (typeof group !== 'string' || !knownGroups.includes(group)) {
    throw new IorioError('not-found', `unknown group ${JSON.stringify(group)} (groups: ${knownGroups.join(', ')})`);
  }
  return { kind: PrincipalKind.group, principal: group, permission, action };
}

/** Human text for a resource in reasons and logs. */
export function describeResource(bucket?: string, stream?: string): string {
  if (bucket === undefined) return 'globally';
  return stream === undefined ? `on bucket ${bucket}` : `on stream ${bucket}/${stream}`;
}
