import type { FastifyInstance } from 'fastify';
import { invalidField } from '../auth/access.js';
import { checkName } from '../core/names.js';
import { requirePermission } from './auth-hook.js';
import { objectBodyOf } from './body.js';
import type { RouteContext } from './context.js';

/**
 * /groups (NEW; IorioDB manages groups from its console only): groups are
 * made, listed, deleted and given members here, and granted to with
 * /access (`{"group": <name>}` or `{"role": <name>}`). Every route needs
 * `adminusers`, as /users does; changing who is in g-admin takes a g-admin
 * member. Answers in /users' style: 201 `{"ok":true}` with a Location for
 * a new group, 200 `{"ok":true}` for the other changes.
 */
export function registerGroupRoutes(app: FastifyInstance, context: RouteContext): void {
  const { auth } = context.deps;
  const onRequest = requirePermission(auth, 'adminusers', 'global');
  const nameOf = (params: unknown, key: 'name' | 'username', kind: 'group' | 'user') => checkName(kind, (params as Record<string, unknown>)[key]);

  app.post('/groups', { onRequest }, async (request, reply) => {
    const name = requiredField(objectBodyOf(request), 'name', 'a group name');
    await auth.createGroup(request.username, name);
    return reply.code(201).header('location', `/groups/${name}`).send({ ok: true });
  });
  app.get('/groups', { onRequest }, async (request) => auth.listGroups(request.username));
  app.get('/groups/:name', { onRequest }, async (request) => auth.getGroup(request.username, nameOf(request.params, 'name', 'group')));
  app.delete('/groups/:name', { onRequest }, async (request) => {
    await auth.deleteGroup(request.username, nameOf(request.params, 'name', 'group'));
    return { ok: true };
  });
  app.post('/groups/:name/users', { onRequest }, async (request) => {
    const group = nameOf(request.params, 'name', 'group');
    const username = requiredField(objectBodyOf(request), 'username', 'a user name');
    await auth.addGroupMember(request.username, group, username);
    return { ok: true };
  });
  app.delete('/groups/:name/users/:username', { onRequest }, async (request) => {
    await auth.removeGroupMember(request.username, nameOf(request.params, 'name', 'group'), nameOf(request.params, 'username', 'user'));
    return { ok: true };
  });
}

/** A required string field of a body: 400 invalid-field naming it, as /access answers (the name itself is checked after). */
function requiredField(body: Record<string, unknown>, field: string, what: string): string {
  const value = body[field];
  if (typeof value !== 'string' || value === '') throw invalidField(field, value, `field "${field}" must be ${what}`);
  return value;
}
