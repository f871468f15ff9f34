import type { ExtensionFactory } from './types.js';

/**
 * The example extension, IorioDB's ioriox_echo.erl: answers with the
 * method, the path below /x/echo/, the query and, when one was sent, the
 * body: `{"method","path":[..],"query":{..},"body"?}`. Anyone may call it.
 */
export const echo: ExtensionFactory = () => ({
  methods: ['GET', 'DELETE', 'PUT', 'POST'],
  handle(request) {
    const answer: Record<string, unknown> = { method: request.method, path: request.path, query: request.query };
    if (request.body !== undefined) answer['body'] = request.body;
    return { json: answer };
  },
});
