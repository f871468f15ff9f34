/**
 * Where a request's session token may be: header `x-session`, header
 * `Authorization: Bearer <jwt>`, or query `jwt=<jwt>` (first one found wins).
 */
export function tokenOf(headers: Record<string, string | string[] | undefined>, query: unknown): string | undefined {
  const session = headers['x-session'];
  if (typeof session === 'string' && session.length > 0) return session;
  const authorization = headers['authorization'];
  if (typeof authorization === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (match) return match[1];
  }
  if (query !== null && typeof query === 'object') {
    const jwt = (query as Record<string, unknown>)['jwt'];
    if (typeof jwt === 'string' && jwt.length > 0) return jwt;
    if (Array.isArray(jwt) && typeof jwt[0] === 'string') return jwt[0];
  }
  return undefined;
}
