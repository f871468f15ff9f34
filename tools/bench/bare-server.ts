/**
 * The baseline of the http scenario: bare fastify routes that do what any
 * JSON service does (parse the same body, return a same-shaped reply) and
 * nothing Iorio does (no auth, storage, fsync, names or limits).
 */
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';

export interface BareServer {
  readonly url: string;
  /** The body GET /bare/streams/:bucket/:stream answers with. */
  setReadBody(entries: unknown): void;
  close(): Promise<void>;
}

export async function startBareServer(): Promise<BareServer> {
  const app: FastifyInstance = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 });
  await app.register(websocket);
  const lastIds = new Map<string, number>();
  const sockets = new Set<WebSocket>();
  let readBody: unknown = [];
  const nextIds = (key: string, count: number): number => {
    const first = (lastIds.get(key) ?? 0) + 1;
    lastIds.set(key, first + count - 1);
    return first;
  };

  app.addContentTypeParser('application/x-ndjson', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, (body as string).split('\n').filter((line) => line.trim().length > 0).map((line) => JSON.parse(line) as unknown));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  app.post<{ Params: { bucket: string; stream: string } }>('/bare/streams/:bucket/:stream', async (request, reply) => {
    const key = `${request.params.bucket}/${request.params.stream}`;
    const t = Date.now();
    if (request.headers['content-type']?.startsWith('application/x-ndjson')) {
      const values = request.body as unknown[];
      const first = nextIds(key, values.length);
      return reply.code(201).send({ meta: values.map((_, index) => ({ id: first + index, t })) });
    }
    return reply.code(201).send({ meta: { id: nextIds(key, 1), t } });
  });
  app.get('/bare/streams/:bucket/:stream', async () => readBody);
  app.get('/bare/listen', { websocket: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  app.post('/bare/fanout', async (request, reply) => {
    const t = Date.now();
    const message = JSON.stringify([{ meta: { id: nextIds('fanout', 1), t, bucket: 'bench', stream: 'fanout' }, data: request.body }]);
    for (const socket of sockets) socket.send(message);
    return reply.code(201).send({ meta: { id: lastIds.get('fanout'), t } });
  });

  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    setReadBody(entries) {
      readBody = entries;
    },
    async close() {
      for (const socket of sockets) socket.terminate();
      await app.close();
    },
  };
}
