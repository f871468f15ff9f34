import type { FastifyInstance, FastifyRequest } from 'fastify';
import { invalidField } from '../auth/access.js';
import { resourcePermissions } from '../auth/types.js';
import { IorioError, isIorioError } from '../core/errors.js';
import { checkName, nameProblem } from '../core/names.js';
import { requirePermission, requireSession } from './auth-hook.js';
import { objectBodyOf } from './body.js';
import type { RouteContext } from './context.js';
import { resourceParams } from './params.js';

/** Longest password accepted, in bytes (bcrypt itself only reads the first 72). */
const passwordBytesMax = 1024;

/**
 * /sessions, /users and /access. Ending sessions works per user, not per
 * token: DELETE /sessions ends every session of the caller (all its tokens,
 * on every device), DELETE /sessions/:username every session of that user.
 */
export function registerAuthRoutes(app: FastifyInstance, context: RouteContext): void {
  const { auth } = context.deps;

  app.post('/sessions', { config: { skipAuth: true } }, async (request, reply) => {
    const body = objectBodyOf(request);
    const username = stringField(body, 'username');
    const password = stringField(body, 'password');
    // request.ip is the peer's address: behind a reverse proxy every client shares the proxy's throttle.
    const token = await auth.login(username, password, request.ip);
    return reply.code(201).send({ ok: true, token, username });
  });
  // No token: the anonymous session (iorio_session.erl:34-35, 54-57), so 200 {"username":"anonymous"}.
  app.get('/sessions', async (request) => {
    context.activity.note('session_check', [request.username, request.headers.host ?? '', request.ip]);
    return { username: request.username };
  });
  app.delete('/sessions', async (request) => {
    requireSession(auth, request);
    await auth.revokeSessions(request.username, request.username);
    return { ok: true };
  });
  // NEW: the user itself, or one with adminusers (a g-admin member for a g-admin user).
  app.delete('/sessions/:username', async (request) => {
    const username = checkName('user', (request.params as Record<string, unknown>)['username']);
    await auth.revokeSessions(request.username, username);
    return { ok: true };
  });

  app.post('/users', { onRequest: requirePermission(auth, 'adminusers', 'global') }, async (request, reply) => {
    const { username, password } = userFields(objectBodyOf(request));
    await asIorioUserErrors(() => auth.createUser(request.username, username, password));
    return reply.code(201).header('location', `/users/${username}`).send({ ok: true });
  });
  // IorioDB's form: the user is named in the body.
  app.put('/users', async (request) => {
    const { username, password } = userFields(objectBodyOf(request));
    await asIorioUserErrors(() => changePassword(context, request, username, password));
    return { ok: true };
  });
  app.put('/users/:username', async (request) => {
    const username = checkName('user', (request.params as Record<string, unknown>)['username']);
    await changePassword(context, request, username, passwordField(objectBodyOf(request)));
    return { ok: true };
  });
  app.delete('/users/:username', { onRequest: requirePermission(auth, 'adminusers', 'global') }, async (request) => {
    const username = checkName('user', (request.params as Record<string, unknown>)['username']);
    await auth.deleteUser(request.username, username);
    return { ok: true };
  });
  app.get('/users', { onRequest: requirePermission(auth, 'adminusers', 'global') }, async (request) =>
    auth.listUsers(request.username),
  );

  for (const path of ['/access/:bucket', '/access/:bucket/:stream']) {
    app.post(path, { onRequest: requirePermission(auth, 'grant', 'resource') }, async (request) => {
      const { bucket, stream } = resourceParams(request.params);
      const change = objectBodyOf(request);
      if (isGlobalAlias(bucket, stream)) {
        await auth.changeAccess(request.username, undefined, undefined, change);
        return { ok: true };
      }
      // Global permissions are not a bucket's or a stream's to give.
      if (typeof change['permission'] === 'string' && !(resourcePermissions as readonly string[]).includes(change['permission'])) {
        throw invalidField(
          'permission',
          change['permission'],
          `field "permission" must be one of ${resourcePermissions.join(', ')} (${change['permission']} is global: POST /access)`,
        );
      }
      await auth.changeAccess(request.username, bucket, stream, change);
      return { ok: true };
    });
    app.get(path, { onRequest: requirePermission(auth, 'grant', 'resource') }, async (request) => {
      const { bucket, stream } = resourceParams(request.params);
      return isGlobalAlias(bucket, stream) ? auth.listAccess(request.username, undefined, undefined) : auth.listAccess(request.username, bucket, stream);
    });
  }
  // NEW: the global scope (adminusers, viewstats, or a resource permission on every bucket). The service decides who
  // may: adminusers to list, a g-admin member to give a global permission, `grant` everywhere for a resource one.
  app.post('/access', { onRequest: requirePermission(auth, 'adminusers', 'global') }, async (request) => {
    await auth.changeAccess(request.username, undefined, undefined, objectBodyOf(request));
    return { ok: true };
  });
  app.get('/access', { onRequest: requirePermission(auth, 'adminusers', 'global') }, async (request) => auth.listAccess(request.username, undefined, undefined));
}

/**
 * IorioDB keeps global permissions on the bucket `$$iorio.permissions$$`
 * (iorio.hrl's PERM_MAGIC_BUCKET; iorio_app.erl grants adminusers there):
 * /access on that bucket is /access, so its clients keep working.
 */
export const globalAccessBucket = '$$iorio.permissions$$';

function isGlobalAlias(bucket: string, stream: string | undefined): boolean {
  return bucket === globalAccessBucket && stream === undefined;
}

/** A user changes their own password; changing someone else's needs `adminusers`. */
async function changePassword(context: RouteContext, request: FastifyRequest, username: string, password: string): Promise<void> {
  const { auth } = context.deps;
  requireSession(auth, request);
  if (username !== request.username) auth.check(request.username, 'adminusers');
  await auth.changePassword(request.username, username, password);
}

/**
 * IorioDB's checks of a /users body, in its order (iorio_rest_user.erl:48-55):
 * 400 no-user-and-pass, no-user, no-pass; then illegal-username (:74-77).
 */
function userFields(body: Record<string, unknown>): { username: string; password: string } {
  const username = body['username'];
  const password = body['password'];
  const hasUser = typeof username === 'string' && username !== '';
  const hasPass = typeof password === 'string' && password !== '';
  if (!hasUser && !hasPass) throw new IorioError('no-user-and-pass', 'no username and password fields');
  if (!hasUser) throw new IorioError('no-user', 'no username field');
  if (!hasPass) throw new IorioError('no-pass', 'no password field');
  const problem = nameProblem(username);
  if (problem !== undefined) throw new IorioError('illegal-username', `illegal username: ${problem}`);
  return { username, password: passwordField(body) };
}

/** The service's conflict and name errors as IorioDB's user errors (iorio_rest_user.erl:70-77). */
async function asIorioUserErrors(change: () => Promise<void>): Promise<void> {
  try {
    await change();
  } catch (error) {
    if (isIorioError(error) && error.code === 'conflict') throw new IorioError('user-exists', error.message);
    if (isIorioError(error) && error.code === 'invalid-name') throw new IorioError('illegal-username', error.message);
    throw error;
  }
}

function stringField(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  if (typeof value !== 'string' || value.length === 0) throw new IorioError('invalid-body', `field "${name}" must be a non-empty string`);
  return value;
}

function passwordField(body: Record<string, unknown>): string {
  const password = stringField(body, 'password');
  if (Buffer.byteLength(password, 'utf8') > passwordBytesMax) {
    throw new IorioError('invalid-body', `a password is at most ${passwordBytesMax} bytes`);
  }
  return password;
}
