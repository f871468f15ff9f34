/**
 * Access control, as a pure decision over plain data: who asks (a subject:
 * a user name and its effective groups), for what (a permission on the
 * whole node, a bucket or one stream), and which grants exist.
 *
 * Scopes nest: the global scope (bucket '' and stream '') covers every
 * bucket, a bucket scope (bucket b, stream '') covers every stream in b, a
 * stream scope (b, s) covers only that stream. `adminusers` and `viewstats`
 * are global permissions: only grants in the global scope give them, so a
 * grant of `adminusers` on some bucket never makes anyone a user admin.
 * Members of `g-admin` may do everything. Every user but the anonymous one
 * is a member of `g-authenticated`; anonymous requests get only what is
 * granted to the anonymous user itself.
 *
 * The effectful twin (src/auth/) reads the grants `relevantGrantKeys` names
 * from lmdb and hands them to `decide`.
 *
 * The permission and group names are the ones of src/auth/types.ts (the
 * HTTP contract); they are repeated here because core imports nothing from
 * the layers above it, and a unit test keeps both lists equal.
 */

import { assert } from './errors.js';

export const resourcePermissions = ['get', 'put', 'delete', 'grant', 'list'] as const;
export const globalPermissions = ['adminusers', 'viewstats'] as const;
export const allPermissions = [...resourcePermissions, ...globalPermissions] as const;
export type AclPermission = (typeof allPermissions)[number];

export const AclGroup = { authenticated: 'g-authenticated', admin: 'g-admin' } as const;
export type AclGroup = (typeof AclGroup)[keyof typeof AclGroup];
export const knownGroups: readonly string[] = [AclGroup.authenticated, AclGroup.admin];

/** What a grant is given to: a user ('u') or a group ('g'). */
export const PrincipalKind = { user: 'u', group: 'g' } as const;
export type PrincipalKind = (typeof PrincipalKind)[keyof typeof PrincipalKind];

/** Where a grant applies. '' is "none": ('', '') is global, (b, '') the whole bucket b. */
export interface Scope {
  readonly bucket: string;
  readonly stream: string;
}

export const globalScope: Scope = Object.freeze({ bucket: '', stream: '' });

export interface GrantKey {
  readonly scope: Scope;
  readonly kind: PrincipalKind;
  readonly principal: string;
}

export interface Grant extends GrantKey {
  readonly permissions: readonly string[];
}

/** A stored user, as far as access control cares. */
export interface UserLike {
  readonly username: string;
  readonly groups: readonly string[];
}

/** Who asks: a user name and every group it is a member of (implicit ones included). */
export interface Subject {
  readonly username: string;
  readonly groups: readonly string[];
}

/** What is asked: a permission, globally (no bucket), on a bucket, or on one stream of a bucket. */
export interface AccessRequest {
  readonly permission: AclPermission;
  readonly bucket?: string;
  readonly stream?: string;
}

export type Decision =
  | { readonly allowed: true; readonly via: { readonly group: typeof AclGroup.admin } | { readonly grant: Grant } }
  | { readonly allowed: false };

export function isPermission(value: unknown): value is AclPermission {
  return typeof value === 'string' && (allPermissions as readonly string[]).includes(value);
}

export function isGlobalPermission(permission: AclPermission): boolean {
  return (globalPermissions as readonly string[]).includes(permission);
}

/** The subject a stored user acts as: its own groups, plus g-authenticated unless it is the anonymous user. */
export function subjectOf(user: UserLike, anonymousUsername: string): Subject {
  if (user.username === anonymousUsername) {
    return { username: user.username, groups: user.groups.filter((group) => group !== AclGroup.authenticated) };
  }
  const groups = user.groups.includes(AclGroup.authenticated) ? user.groups : [...user.groups, AclGroup.authenticated];
  return { username: user.username, groups };
}

export function isAdmin(subject: Subject): boolean {
  return subject.groups.includes(AclGroup.admin);
}

/** The scope a grant for this resource is stored in (global permissions always go global). */
export function scopeOf(permission: AclPermission, bucket?: string, stream?: string): Scope {
  if (isGlobalPermission(permission) || bucket === undefined) return globalScope;
  return { bucket, stream: stream ?? '' };
}

/** The scopes whose grants cover a request, widest first. */
export function coveringScopes(request: AccessRequest): Scope[] {
  checkRequestShape(request);
  const { permission, bucket, stream } = request;
  if (isGlobalPermission(permission) || bucket === undefined) return [globalScope];
  const scopes: Scope[] = [globalScope, { bucket, stream: '' }];
  if (stream !== undefined) scopes.push({ bucket, stream });
  return scopes;
}

/**
 * The keys of every grant that can decide this request for this subject:
 * each covering scope, for the user itself and for each of its groups.
 * None for a g-admin member, who needs no grant.
 */
export function relevantGrantKeys(subject: Subject, request: AccessRequest): GrantKey[] {
  if (isAdmin(subject)) return [];
  const keys: GrantKey[] = [];
  for (const scope of coveringScopes(request)) {
    keys.push({ scope, kind: PrincipalKind.user, principal: subject.username });
    for (const group of subject.groups) keys.push({ scope, kind: PrincipalKind.group, principal: group });
  }
  return keys;
}

/** Allow or deny. `grants` may hold unrelated grants: only those of the subject in a covering scope count. */
export function decide(subject: Subject, request: AccessRequest, grants: readonly Grant[]): Decision {
  const scopes = coveringScopes(request);
  if (isAdmin(subject)) return { allowed: true, via: { group: AclGroup.admin } };
  for (const grant of grants) {
    if (!grant.permissions.includes(request.permission)) continue;
    if (!scopes.some((scope) => sameScope(scope, grant.scope))) continue;
    if (!isSubjectPrincipal(subject, grant)) continue;
    return { allowed: true, via: { grant } };
  }
  return { allowed: false };
}

export function isAllowed(subject: Subject, request: AccessRequest, grants: readonly Grant[]): boolean {
  return decide(subject, request, grants).allowed;
}

export function sameScope(left: Scope, right: Scope): boolean {
  return left.bucket === right.bucket && left.stream === right.stream;
}

function isSubjectPrincipal(subject: Subject, key: GrantKey): boolean {
  if (key.kind === PrincipalKind.user) return key.principal === subject.username;
  return subject.groups.includes(key.principal);
}

function checkRequestShape(request: AccessRequest): void {
  assert(isPermission(request.permission), `unknown permission ${String(request.permission)}`);
  assert(request.bucket !== '', 'a bucket name is never empty ("" is the global scope)');
  assert(request.stream !== '', 'a stream name is never empty ("" is the bucket scope)');
  assert(request.stream === undefined || request.bucket !== undefined, 'a stream needs its bucket');
}

/** Adds permissions to a list: sorted, without duplicates. */
export function withPermissions(current: readonly string[], added: readonly string[]): string[] {
  return [...new Set([...current, ...added])].sort();
}

/** Removes permissions from a list, keeping it sorted. */
export function withoutPermissions(current: readonly string[], removed: readonly string[]): string[] {
  return current.filter((permission) => !removed.includes(permission)).sort();
}
