import { mulberry32 } from '../helpers/clock.js';
import { describe, expect, it } from 'vitest';
import {
  AclGroup,
  allPermissions,
  coveringScopes,
  decide,
  globalPermissions,
  globalScope,
  isAllowed,
  knownGroups,
  relevantGrantKeys,
  resourcePermissions,
  sameScope,
  scopeOf,
  subjectOf,
  withoutPermissions,
  withPermissions,
  type AccessRequest,
  type AclPermission,
  type Grant,
  type Subject,
} from '../../src/core/acl.js';
import { AssertionError } from '../../src/core/errors.js';
import { Group, Permission, resourcePermissions as contractResourcePermissions } from '../../src/auth/types.js';

const anonymousUsername = 'anonymous';
const alice = subjectOf({ username: 'alice', groups: [] }, anonymousUsername);
const bob = subjectOf({ username: 'bob', groups: [] }, anonymousUsername);
const root = subjectOf({ username: 'root', groups: [AclGroup.admin] }, anonymousUsername);
const anonymous = subjectOf({ username: anonymousUsername, groups: [] }, anonymousUsername);

function userGrant(username: string, permissions: AclPermission[], bucket = '', stream = ''): Grant {
  return { scope: { bucket, stream }, kind: 'u', principal: username, permissions };
}

function groupGrant(group: string, permissions: AclPermission[], bucket = '', stream = ''): Grant {
  return { scope: { bucket, stream }, kind: 'g', principal: group, permissions };
}

describe('acl: permission and group catalogue', () => {
  it('matches the auth contract (src/auth/types.ts)', () => {
    expect([...allPermissions].sort()).toEqual(Object.values(Permission).sort());
    expect([...resourcePermissions]).toEqual([...contractResourcePermissions]);
    expect([...knownGroups].sort()).toEqual(Object.values(Group).sort());
    expect([...globalPermissions].sort()).toEqual(['adminusers', 'viewstats']);
  });
});

describe('acl: subjects', () => {
  it('puts every user but anonymous in g-authenticated', () => {
    expect(alice.groups).toEqual([AclGroup.authenticated]);
    expect(root.groups).toEqual([AclGroup.admin, AclGroup.authenticated]);
    expect(anonymous.groups).toEqual([]);
  });

  it('never puts anonymous in g-authenticated, even when its record says so', () => {
    const subject = subjectOf({ username: anonymousUsername, groups: [AclGroup.authenticated] }, anonymousUsername);
    expect(subject.groups).not.toContain(AclGroup.authenticated);
  });

  it('does not duplicate an explicit g-authenticated membership', () => {
    const subject = subjectOf({ username: 'carol', groups: [AclGroup.authenticated] }, anonymousUsername);
    expect(subject.groups).toEqual([AclGroup.authenticated]);
  });
});

describe('acl: decisions', () => {
  it('denies by default', () => {
    expect(isAllowed(alice, { permission: 'get', bucket: 'b' }, [])).toBe(false);
    expect(isAllowed(alice, { permission: 'adminusers' }, [])).toBe(false);
  });

  it('lets a g-admin member do everything', () => {
    for (const permission of allPermissions) {
      expect(decide(root, { permission }, [])).toEqual({ allowed: true, via: { group: AclGroup.admin } });
      expect(isAllowed(root, { permission, bucket: 'b', stream: 's' }, [])).toBe(true);
    }
  });

  it('a bucket grant covers every stream of the bucket and the bucket itself', () => {
    const grants = [userGrant('alice', ['put'], 'b')];
    expect(isAllowed(alice, { permission: 'put', bucket: 'b' }, grants)).toBe(true);
    expect(isAllowed(alice, { permission: 'put', bucket: 'b', stream: 's1' }, grants)).toBe(true);
    expect(isAllowed(alice, { permission: 'put', bucket: 'b', stream: 'other' }, grants)).toBe(true);
    expect(isAllowed(alice, { permission: 'get', bucket: 'b', stream: 's1' }, grants)).toBe(false);
    expect(isAllowed(alice, { permission: 'put', bucket: 'b2', stream: 's1' }, grants)).toBe(false);
    expect(isAllowed(bob, { permission: 'put', bucket: 'b', stream: 's1' }, grants)).toBe(false);
  });

  it('a stream grant covers only that stream', () => {
    const grants = [userGrant('alice', ['get'], 'b', 's1')];
    expect(isAllowed(alice, { permission: 'get', bucket: 'b', stream: 's1' }, grants)).toBe(true);
    expect(isAllowed(alice, { permission: 'get', bucket: 'b', stream: 's2' }, grants)).toBe(false);
    expect(isAllowed(alice, { permission: 'get', bucket: 'b' }, grants)).toBe(false);
    expect(isAllowed(alice, { permission: 'get', bucket: 'c', stream: 's1' }, grants)).toBe(false);
  });

  it('bucket names are compared exactly (no prefix matching)', () => {
    const grants = [userGrant('alice', ['get'], 'b')];
    expect(isAllowed(alice, { permission: 'get', bucket: 'bb' }, grants)).toBe(false);
    expect(isAllowed(alice, { permission: 'get', bucket: 'B' }, grants)).toBe(false);
  });

  it('global permissions come only from the global scope', () => {
    const onBucket = [userGrant('alice', ['adminusers', 'viewstats'], 'b'), userGrant('alice', ['adminusers'], 'b', 's')];
    expect(isAllowed(alice, { permission: 'adminusers' }, onBucket)).toBe(false);
    expect(isAllowed(alice, { permission: 'adminusers', bucket: 'b' }, onBucket)).toBe(false);
    expect(isAllowed(alice, { permission: 'viewstats', bucket: 'b', stream: 's' }, onBucket)).toBe(false);
    const global = [userGrant('alice', ['viewstats'])];
    expect(isAllowed(alice, { permission: 'viewstats' }, global)).toBe(true);
    expect(isAllowed(alice, { permission: 'adminusers' }, global)).toBe(false);
  });

  it('a global resource grant covers every bucket and stream', () => {
    const grants = [userGrant('alice', ['list'])];
    expect(isAllowed(alice, { permission: 'list' }, grants)).toBe(true);
    expect(isAllowed(alice, { permission: 'list', bucket: 'any' }, grants)).toBe(true);
    expect(isAllowed(alice, { permission: 'list', bucket: 'any', stream: 's' }, grants)).toBe(true);
  });

  it('group grants apply to members: g-authenticated to every user but anonymous', () => {
    const grants = [groupGrant(AclGroup.authenticated, ['get'], 'public')];
    expect(isAllowed(alice, { permission: 'get', bucket: 'public', stream: 'news' }, grants)).toBe(true);
    expect(isAllowed(bob, { permission: 'get', bucket: 'public' }, grants)).toBe(true);
    expect(isAllowed(anonymous, { permission: 'get', bucket: 'public', stream: 'news' }, grants)).toBe(false);
    expect(isAllowed(alice, { permission: 'put', bucket: 'public', stream: 'news' }, grants)).toBe(false);
  });

  it('anonymous gets what is granted to it explicitly', () => {
    const grants = [userGrant(anonymousUsername, ['get'], 'open')];
    expect(isAllowed(anonymous, { permission: 'get', bucket: 'open', stream: 's' }, grants)).toBe(true);
    expect(isAllowed(alice, { permission: 'get', bucket: 'open', stream: 's' }, grants)).toBe(false);
  });

  it('a g-admin group grant does not help non-members', () => {
    const grants = [groupGrant(AclGroup.admin, ['get'], '$sys')];
    expect(isAllowed(alice, { permission: 'get', bucket: '$sys' }, grants)).toBe(false);
  });

  it('reports the grant that allowed', () => {
    const grant = userGrant('alice', ['get', 'put'], 'b');
    expect(decide(alice, { permission: 'put', bucket: 'b', stream: 's' }, [grant])).toEqual({ allowed: true, via: { grant } });
  });

  it('refuses malformed requests as bugs', () => {
    expect(() => decide(alice, { permission: 'get', stream: 's' }, [])).toThrow(AssertionError);
    expect(() => decide(alice, { permission: 'get', bucket: '' }, [])).toThrow(AssertionError);
    expect(() => decide(alice, { permission: 'get', bucket: 'b', stream: '' }, [])).toThrow(AssertionError);
    expect(() => decide(alice, { permission: 'fly' as AclPermission, bucket: 'b' }, [])).toThrow(AssertionError);
  });
});

describe('acl: scopes and keys', () => {
  it('lists covering scopes widest first', () => {
    expect(coveringScopes({ permission: 'get', bucket: 'b', stream: 's' })).toEqual([globalScope, { bucket: 'b', stream: '' }, { bucket: 'b', stream: 's' }]);
    expect(coveringScopes({ permission: 'get', bucket: 'b' })).toEqual([globalScope, { bucket: 'b', stream: '' }]);
    expect(coveringScopes({ permission: 'adminusers', bucket: 'b', stream: 's' })).toEqual([globalScope]);
  });

  it('stores global permissions globally whatever the resource', () => {
    expect(scopeOf('adminusers', 'b', 's')).toEqual(globalScope);
    expect(scopeOf('get', 'b', 's')).toEqual({ bucket: 'b', stream: 's' });
    expect(scopeOf('get', 'b')).toEqual({ bucket: 'b', stream: '' });
  });

  it('names the user and each group in each covering scope, none for admins', () => {
    const keys = relevantGrantKeys(alice, { permission: 'get', bucket: 'b', stream: 's' });
    expect(keys).toHaveLength(3 * 2);
    expect(keys).toContainEqual({ scope: { bucket: 'b', stream: 's' }, kind: 'u', principal: 'alice' });
    expect(keys).toContainEqual({ scope: { bucket: 'b', stream: '' }, kind: 'g', principal: AclGroup.authenticated });
    expect(relevantGrantKeys(root, { permission: 'get', bucket: 'b' })).toEqual([]);
  });

  it('keeps permission lists sorted and unique', () => {
    expect(withPermissions(['put', 'get'], ['get', 'delete'])).toEqual(['delete', 'get', 'put']);
    expect(withoutPermissions(['put', 'get', 'list'], ['get', 'grant'])).toEqual(['list', 'put']);
  });
});

// ---------------------------------------------------------------------------
// Property-style: random grant sets over a small universe, many seeds.


const usernames = ['alice', 'bob', anonymousUsername, 'root'];
const buckets = ['b1', 'b2'];
const streams = ['s1', 's2'];

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

function randomGrant(random: () => number): Grant {
  const level = Math.floor(random() * 3);
  const bucket = level === 0 ? '' : pick(random, buckets);
  const stream = level === 2 ? pick(random, streams) : '';
  const isGroup = random() < 0.3;
  const principal = isGroup ? pick(random, knownGroups) : pick(random, usernames);
  const permissions = allPermissions.filter(() => random() < 0.3);
  return { scope: { bucket, stream }, kind: isGroup ? 'g' : 'u', principal, permissions };
}

function randomRequest(random: () => number): AccessRequest {
  const permission = pick(random, allPermissions);
  const level = Math.floor(random() * 3);
  if (level === 0) return { permission };
  if (level === 1) return { permission, bucket: pick(random, buckets) };
  return { permission, bucket: pick(random, buckets), stream: pick(random, streams) };
}

function subjectFor(username: string): Subject {
  return subjectOf({ username, groups: username === 'root' ? [AclGroup.admin] : [] }, anonymousUsername);
}

/** The rules of DESIGN §4 written out case by case, independently of decide(). */
function referenceAllows(username: string, request: AccessRequest, grants: readonly Grant[]): boolean {
  if (username === 'root') return true;
  const isGlobal = (globalPermissions as readonly string[]).includes(request.permission);
  return grants.some((grant) => {
    const mine = grant.kind === 'u' ? grant.principal === username : grant.principal === AclGroup.authenticated && username !== anonymousUsername;
    if (!mine || !grant.permissions.includes(request.permission)) return false;
    if (grant.scope.bucket === '') return grant.scope.stream === '';
    if (isGlobal || request.bucket === undefined) return false;
    if (grant.scope.bucket !== request.bucket) return false;
    return grant.scope.stream === '' || grant.scope.stream === request.stream;
  });
}

describe('acl: properties over random grants', () => {
  const seeds = Array.from({ length: 200 }, (_, index) => index + 1);

  it('agrees with the case-by-case reference', () => {
    for (const seed of seeds) {
      const random = mulberry32(seed);
      const grants = Array.from({ length: Math.floor(random() * 8) }, () => randomGrant(random));
      for (let index = 0; index < 30; index++) {
        const username = pick(random, usernames);
        const request = randomRequest(random);
        expect(isAllowed(subjectFor(username), request, grants), `seed ${seed} ${username} ${JSON.stringify(request)}`).toBe(
          referenceAllows(username, request, grants),
        );
      }
    }
  });

  it('deciding on the relevant grants only gives the same answer as on all grants', () => {
    for (const seed of seeds) {
      const random = mulberry32(seed);
      const grants = Array.from({ length: Math.floor(random() * 8) }, () => randomGrant(random));
      for (let index = 0; index < 30; index++) {
        const subject = subjectFor(pick(random, usernames));
        const request = randomRequest(random);
        const keys = relevantGrantKeys(subject, request);
        const relevant = grants.filter((grant) =>
          keys.some((key) => sameScope(key.scope, grant.scope) && key.kind === grant.kind && key.principal === grant.principal),
        );
        expect(isAllowed(subject, request, relevant), `seed ${seed}`).toBe(isAllowed(subject, request, grants));
      }
    }
  });

  it('adding a grant never takes a permission away; a bucket grant implies its streams', () => {
    for (const seed of seeds) {
      const random = mulberry32(seed);
      const grants = Array.from({ length: Math.floor(random() * 6) }, () => randomGrant(random));
      const extra = randomGrant(random);
      for (let index = 0; index < 30; index++) {
        const subject = subjectFor(pick(random, usernames));
        const request = randomRequest(random);
        if (isAllowed(subject, request, grants)) expect(isAllowed(subject, request, [...grants, extra])).toBe(true);
        if (request.bucket !== undefined && request.stream === undefined && isAllowed(subject, request, grants)) {
          for (const stream of streams) expect(isAllowed(subject, { ...request, stream }, grants), `seed ${seed}`).toBe(true);
        }
      }
    }
  });

  it('a non-admin without grants of its own or its groups is denied everything', () => {
    for (const seed of seeds) {
      const random = mulberry32(seed);
      const others = Array.from({ length: 8 }, () => randomGrant(random)).filter(
        (grant) => !(grant.kind === 'u' && grant.principal === 'bob') && !(grant.kind === 'g' && grant.principal === AclGroup.authenticated),
      );
      for (let index = 0; index < 30; index++) expect(isAllowed(bob, randomRequest(random), others), `seed ${seed}`).toBe(false);
    }
  });
});
