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

/** IorioDB's answer to a bad access change: 400 `{"type":"invalid-field","field","value"}` (iorio_rest_access.erl:105-109). */
export function invalidField(field: string, value: unknown, reason: string): IorioError {
  return new IorioError('invalid-field', reason, { field, value: value === undefined ? null : value });
}

/**
 * Validates a `POST /access` body: IorioDB's `{role, permission, action}`
 * (iorio_rest_access.erl:69-77, fields checked in its order: action, role,
 * permission), or Iorio's with `username` or `group` instead of `role`.
 * Throws 400 invalid-field naming the field and its value. `isUser` and
 * `isGroup` say whether a user or group of that name exists: a role is a
 * user when one does, else a group. Pure.
 */
export function parseGrantChange(
  change: unknown,
  isUser: (name: string) => boolean,
  isGroup: (name: string) => boolean = (name) => knownGroups.includes(name),
): ParsedGrantChange {
  if (change === null || typeof change !== 'object' || Array.isArray(change)) {
    throw new IorioError('invalid-body', 'expected an object with role (or username or group), permission and action');
  }
  const { role, username, group, permission, action } = change as Record<string, unknown>;
  const given = [role, username, group].filter((value) => value !== undefined && value !== null);
  if (action === undefined || action === null) throw invalidField('action', action, 'field "action" is missing: "grant" or "revoke"');
  if (given.length === 0) throw invalidField('role', null, 'field "role" is missing: a user or group name');
  if (given.length > 1) throw invalidField('role', given[0], 'give one of role, username and group');
  if (permission === undefined || permission === null) throw invalidField('permission', null, 'field "permission" is missing');
  if (action !== 'grant' && action !== 'revoke') throw invalidField('action', action, 'field "action" must be "grant" or "revoke"');
  if (!isPermission(permission)) throw invalidField('permission', permission, `unknown permission ${JSON.stringify(permission)}`);
  const principal = principalOf({ role, username, group }, isUser, isGroup);
  return { ...principal, permission, action };
}

function principalOf(
  fields: Record<string, unknown>,
  isUser: (name: string) => boolean,
  isGroup: (name: string) => boolean,
): Pick<ParsedGrantChange, 'kind' | 'principal'> {
  const [field, value] = Object.entries(fields).find(([, candidate]) => candidate !== undefined && candidate !== null)!;
  if (typeof value !== 'string') throw invalidField(field, value, `field "${field}" must be a user or group name`);
  const mayBeUser = field !== 'group';
  const mayBeGroup = field !== 'username';
  if (mayBeUser && isUser(value)) return { kind: PrincipalKind.user, principal: value };
  if (mayBeGroup && isGroup(value)) return { kind: PrincipalKind.group, principal: value };
  if (field === 'username') checkName('user', value);
  const known = mayBeGroup ? `no user or group ${value} (GET /groups lists the groups)` : `no user ${value}`;
  throw invalidField(field, value, known);
}

/** Human text for a resource in reasons and logs. */
export function describeResource(bucket?: string, stream?: string): string {
  if (bucket === undefined) return 'globally';
  return stream === undefined ? `on bucket ${bucket}` : `on stream ${bucket}/${stream}`;
}
