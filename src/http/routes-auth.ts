import type { FastifyInstance, FastifyRequest } from 'fastify';
import { resourcePermissions, type GrantChange, type Permission } from '../auth/types.js';
import { IorioError } from '../core/errors.js';
import { checkName } from '../core/names.js';
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
  app.get('/sessions', async (request) => {
    requireSession(auth, request);
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
    const body = objectBodyOf(request);
    const username = checkName('user', stringField(body, 'username'));
    await auth.createUser(request.username, username, passwordField(body));
    return reply.code(201).send({ ok: true });
  });
  // IorioDB's form: the user is named in the body.
  app.put('/users', async (request) => {
    const body = objectBodyOf(request);
    await changePassword(context, request, checkName('user', stringField(body, 'username')), passwordField(body));
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
      await auth.changeAccess(request.username, bucket, stream, grantChangeOf(objectBodyOf(request)));
      return { ok: true };
    });
    app.get(path, { onRequest: requirePermission(auth, 'grant', 'resource') }, async (request) => {
      const { bucket, stream } = resourceParams(request.params);
      return auth.listAccess(request.username, bucket, stream);
    });
  }
}

/** A user changes their own password; changing someone else's needs `adminusers`. */
async function changePassword(context: RouteContext, request: FastifyRequest, username: string, password: string): Promise<void> {
  const { auth } = context.deps;
  requireSession(auth, request);
  if (username !== request.username) auth.check(request.username, 'adminusers');
  await auth.changePassword(request.username, username, password);
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

/** `{"username" or "group", "permission", "action": "grant"|"revoke"}`, checked. Pure. */
export function grantChangeOf(body: Record<string, unknown>): GrantChange {
  const hasUser = body['username'] !== undefined;
  const hasGroup = body['group'] !== undefined;
  if (hasUser === hasGroup) throw new IorioError('invalid-body', 'give exactly one of "username" and "group"');
  const permission = body['permission'];
  if (typeof permission !== 'string' || !resourcePermissions.includes(permission as Permission)) {
    throw new IorioError('invalid-body', `field "permission" must be one of ${resourcePermissions.join(', ')}`);
  }
  const action = body['action'];
  if (action !== 'grant' && action !== 'revoke') throw new IorioError('invalid-body', 'field "action" must be "grant" or "revoke"');
  if (hasUser) return { username: checkName('user', body['username']), permission: permission as Permission, action };
  return { group: checkName('group', body['group']), permission: permission as Permission, action };
}
