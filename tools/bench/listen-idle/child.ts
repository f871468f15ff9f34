/**
 * Child of the listen-idle scenario: opens `count` WebSocket and `count`
 * long-poll listeners on one stream, says when they are all waiting, then
 * (on `go`) times how long one entry takes to reach every one of them.
 */
import http from 'node:http';
import WebSocket from 'ws';

interface Task {
  readonly baseUrl: string;
  readonly token: string;
  readonly count: number;
}

type Message = { readonly kind: 'task'; readonly task: Task } | { readonly kind: 'go' };

const deliveryTimeoutMs = 30_000;

function send(message: unknown): void {
  process.send?.(message);
}

async function main(task: Task): Promise<void> {
  const { host, port } = new URL(task.baseUrl);
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  // From seqnum 1 (the stream is empty): a listener that registers late still gets the entry, by replay.
  const query = `jwt=${task.token}&s=bench:idle:1`;
  let wsDelivered = 0;
  let pollDelivered = 0;
  const sockets: WebSocket[] = [];
  for (let index = 0; index < task.count; index++) {
    const socket = new WebSocket(`ws://${host}/listen?${query}`);
    socket.on('message', (data) => {
      if (String(data).startsWith('[')) wsDelivered++;
    });
    socket.on('error', () => undefined);
    sockets.push(socket);
    if (index % 500 === 499) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const deadline = Date.now() + 60_000;
  while (sockets.some((socket) => socket.readyState === WebSocket.CONNECTING) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  const wsOpen = sockets.filter((socket) => socket.readyState === WebSocket.OPEN).length;
  const requests: http.ClientRequest[] = [];
  for (let index = 0; index < task.count; index++) {
    const request = http.get({ host: host.split(':')[0], port, path: `/listen?${query}&timeout=120`, agent }, (response) => {
      response.resume();
      response.on('end', () => {
        if (response.statusCode === 200) pollDelivered++;
      });
    });
    request.on('error', () => undefined);
    requests.push(request);
    if (index % 500 === 499) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => setTimeout(resolve, 1000));
  send({ kind: 'ready', wsOpen });
  await new Promise<void>((resolve) => process.once('message', () => resolve()));
  const started = performance.now();
  while ((wsDelivered < wsOpen || pollDelivered < task.count) && performance.now() - started < deliveryTimeoutMs) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const ms = performance.now() - started;
  for (const socket of sockets) socket.terminate();
  for (const request of requests) request.destroy();
  send({ kind: 'done', wsDelivered, pollDelivered, ms });
}

process.once('message', (message: Message) => {
  if (message.kind !== 'task') return;
  main(message.task).then(
    () => setTimeout(() => process.exit(0), 100),
    (error: unknown) => {
      send({ kind: 'failed', error: String(error) });
      process.exit(1);
    },
  );
});
