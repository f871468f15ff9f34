import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { Auth, Permission } from '../auth/types.js';
import { IorioError } from '../core/errors.js';
import { tokenOf } from './credentials.js';
import { resourceParams } from './params.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who the request acts as: the token's user, or the anonymous user when there is no token. */
    username: string;
  }
  interface FastifyContextConfig {
    /** The route ignores credentials entirely (/ping, POST /sessions). */
    skipAuth?: boolean;
  }
}

/**
 * Resolves the request's user before anything else runs: no token is the
 * anonymous user, a token that does not verify (bad signature, expired,
 * `alg: none`, another algorithm) is 401 unauthorized, whatever the route.
 */
export function authenticate(auth: Auth, request: FastifyRequest): void {
  if (request.routeOptions.config.skipAuth === true || request.method === 'OPTIONS') {
    request.username = auth.anonymousUsername;
    return;
  }
  const token = tokenOf(request.headers, request.query);
  request.username = token === undefined ? auth.anonymousUsername : auth.verifyToken(token);
}

/**
 * A route-level onRequest hook checking one permission on the route's
 * `:bucket` (and `:stream` when the route has one), or globally. It runs
 * before the body is read, so a request that may not write never makes the
 * node parse its body. Names are validated first (400 before 403).
 */
export function requirePermission(auth: Auth, permission: Permission, scope: 'resource' | 'global'): onRequestHookHandler {
  return function checkPermission(request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void) {
    try {
      if (scope === 'global') {
        auth.check(request.username, permission);
      } else {
        const { bucket, stream } = resourceParams(request.params);
        auth.check(request.username, permission, bucket, stream);
      }
      done();
    } catch (error) {
      done(error as Error);
    }
  };
}

/** Refuses the anonymous user (routes that only make sense with a session). */
export function requireSession(auth: Auth, request: FastifyRequest): void {
  if (request.username === auth.anonymousUsername) {
    throw new IorioError('no-perm', 'this needs a session: log in with POST /sessions');
  }
}
