/**
 * The cluster transport over real sockets on 127.0.0.x (Linux loopback
 * answers on all of 127/8): nodes bind 127.0.0.2, .3, .4 ... so that which
 * address a connection comes from is visible, as it is to the fault tests'
 * iptables rules. Peers that misbehave (wrong secret, garbage, a reader that
 * stops reading) are played by raw sockets speaking the handshake by hand.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { IorioError } from '../../src/core/errors.js';
import { clusterRequestsPendingMax } from '../../src/core/limits.js';
import { FrameDecoder, FrameKind, MessageType, encodeFrame, wireProtocolVersion, type Frame } from '../../src/core/wire.js';
import { handshakeProof, parseChallenge, parseHello, type Transcript } from '../../src/cluster/handshake.js';
import { Transport, type PeerAddress, type TransportOptions } from '../../src/cluster/transport.js';
import { systemClock } from '../helpers/clock.js';

const secret = 'the-cluster-secret';
const repoRoot = path.resolve(import.meta.dirname, '../..');
/** Where each test node listens: the ring's job, here a map. */
const book = new Map<string, PeerAddress>();
const transports: Transport[] = [];
const sockets: net.Socket[] = [];
const servers: net.Server[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await Promise.all([...transports.splice(0).map((transport) => transport.close()), ...servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve)))]);
  book.clear();
});

type LogLine = Record<string, unknown>;

interface TestNode {
  readonly name: string;
  readonly transport: Transport;
  readonly port: number;
  readonly logs: LogLine[];
  warnings(message?: string): LogLine[];
}

function hostOf(name: string): string {
  return name.slice(name.indexOf('@') + 1);
}

async function startNode(name: string, overrides: Partial<TransportOptions> = {}): Promise<TestNode> {
  const logs: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line) as LogLine) });
  const transport = new Transport({
    self: name,
    host: hostOf(name),
    port: 0,
    secret,
    resolve: (peer) => book.get(peer),
    connectTimeoutMs: 1_000,
    requestTimeoutMs: 5_000,
    queueBytesMax: 8 * 1024 * 1024,
    logger,
    clock: systemClock,
    ...overrides,
  });
  const { port } = await transport.start();
  transports.push(transport);
  if (!book.has(name)) book.set(name, { host: overrides.host ?? hostOf(name), port });
  return { name, transport, port, logs, warnings: (message) => logs.filter((line) => line['level'] === 40 && (message === undefined || line['msg'] === message)) };
}

async function until(condition: () => boolean, timeoutMs = 3_000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function rejection(promise: Promise<unknown>): Promise<IorioError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(IorioError);
    return error as IorioError;
  }
  throw new Error('expected a rejection');
}

/** A raw socket that decodes frames and lets a test wait for them. */
class RawPeer {
  readonly frames: Frame[] = [];
  readonly decoder = new FrameDecoder();
  closed = false;
  constructor(readonly socket: net.Socket) {
    sockets.push(socket);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk, (frame) => this.frames.push(frame));
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
  }

  static connect(target: PeerAddress, localAddress: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ ...target, localAddress }, () => resolve(new RawPeer(socket)));
      socket.once('error', reject);
    });
  }

  async next(kind?: number): Promise<Frame> {
    await until(() => this.frames.length > 0 || this.closed, 3_000, 'a frame');
    const frame = this.frames.shift();
    if (frame === undefined) throw new Error('closed without a frame');
    if (kind !== undefined) expect(frame.kind).toBe(kind);
    return frame;
  }

  write(kind: FrameKind, type: number, requestId: number, body: unknown): void {
    this.socket.write(encodeFrame(kind, type, requestId, body));
  }
}

/**
 * Dials `target` as node `name` and runs the dialer's half of the handshake
 * by hand with `withSecret`, always sending its proof (a real node with the
 * wrong secret would give up at the challenge). Resolves with the socket and
 * the acceptor's last handshake frame (welcome or refused).
 */
async function handDial(target: TestNode, name: string, withSecret: string, incarnation = randomBytes(8)): Promise<{ peer: RawPeer; answer: Frame }> {
  const peer = await RawPeer.connect(book.get(target.name)!, hostOf(name));
  const nonce = randomBytes(32);
  peer.write(FrameKind.handshake, MessageType.hello, 0, { protocol: wireProtocolVersion, node: name, target: target.name, cluster: '', nonce, incarnation });
  const challengeFrame = await peer.next(FrameKind.handshake);
  const challenge = parseChallenge(challengeFrame.body);
  if (challenge === undefined) return { peer, answer: challengeFrame };
  const transcript: Transcript = {
    protocol: wireProtocolVersion,
    dialer: name,
    acceptor: target.name,
    cluster: '',
    dialerNonce: nonce,
    acceptorNonce: challenge.nonce,
    dialerIncarnation: incarnation,
    acceptorIncarnation: challenge.incarnation,
  };
  peer.write(FrameKind.handshake, MessageType.helloProof, 0, { proof: handshakeProof(withSecret, 'dialer', transcript) });
  return { peer, answer: await peer.next(FrameKind.handshake) };
}

/** A node played by hand on the accepting side: it answers every hello correctly, as `name` with `incarnation`. */
async function handAccept(name: string, incarnation: Buffer): Promise<RawPeer[]> {
  const accepted: RawPeer[] = [];
  const server = net.createServer((socket) => {
    const peer = new RawPeer(socket);
    accepted.push(peer);
    void (async () => {
      const hello = parseHello((await peer.next(FrameKind.handshake)).body)!;
      const transcript: Transcript = {
        protocol: wireProtocolVersion,
        dialer: hello.node,
        acceptor: name,
        cluster: '',
        dialerNonce: hello.nonce,
        acceptorNonce: randomBytes(32),
        dialerIncarnation: hello.incarnation,
        acceptorIncarnation: incarnation,
      };
      peer.write(FrameKind.handshake, MessageType.helloChallenge, 0, {
        protocol: wireProtocolVersion,
        node: name,
        cluster: '',
        nonce: transcript.acceptorNonce,
        incarnation,
        proof: handshakeProof(secret, 'acceptor', transcript),
      });
      await peer.next(FrameKind.handshake);
      peer.write(FrameKind.handshake, MessageType.welcome, 0, {});
    })().catch(() => {});
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, hostOf(name), resolve));
  book.set(name, { host: hostOf(name), port: (server.address() as net.AddressInfo).port });
  return accepted;
}

describe('transport', () => {
  test('handshake, then requests and responses both ways; errors keep their code', async () => {
    const a = await startNode('a@127.0.0.2');
    const b = await startNode('b@127.0.0.3');
    const ups: string[] = [];
    a.transport.onPeerUp((peer) => ups.push(`a saw ${peer}`));
    b.transport.onPeerUp((peer) => ups.push(`b saw ${peer}`));
    b.transport.handle(MessageType.forwardRequest, async (body, from) => ({ echo: body, from }));
    a.transport.handle(MessageType.coverageListBuckets, () => ['x', 'y']);

    expect(await a.transport.request(b.name, MessageType.forwardRequest, { path: '/streams/b/s', data: Buffer.from('hi') })).toEqual({
      echo: { path: '/streams/b/s', data: Buffer.from('hi') },
      from: a.name,
    });
    expect(await b.transport.request(a.name, MessageType.coverageListBuckets, null)).toEqual(['x', 'y']);
    expect(await a.transport.request(b.name, MessageType.ping, null)).toEqual({ node: b.name });
    expect(ups.sort()).toEqual([`a saw ${b.name}`, `b saw ${a.name}`]);
    expect(a.transport.isConnected(b.name) && b.transport.isConnected(a.name)).toBe(true);
    expect(a.transport.stats().connectionsOpen).toBe(1);

    b.transport.handle(MessageType.claimantCommit, () => {
      throw new IorioError('conflict', 'the plan changed', { expected: 3, got: 4 });
    });
    const conflict = await rejection(a.transport.request(b.name, MessageType.claimantCommit, {}));
    expect([conflict.code, conflict.message, conflict.details]).toEqual(['conflict', 'the plan changed', { expected: 3, got: 4 }]);

    b.transport.handle(MessageType.claimantPlan, async () => {
      throw new TypeError('cannot read properties of undefined');
    });
    const internal = await rejection(a.transport.request(b.name, MessageType.claimantPlan, {}));
    expect([internal.code, internal.message]).toEqual(['internal-error', `internal error on ${b.name}`]);
    expect(b.logs.some((line) => line['msg'] === 'request handler failed' && line['level'] === 50)).toBe(true);

    const unhandled = await rejection(a.transport.request(b.name, MessageType.handoffStatus, {}));
    expect(unhandled.code).toBe('internal-error');
    expect(unhandled.message).toMatch(/no handler for handoffStatus/);
  });

  test('unknown peers, oversized bodies and requests to a closing transport fail cleanly', async () => {
    const a = await startNode('a@127.0.0.2');
    const b = await startNode('b@127.0.0.3');
    expect(a.transport.send('nobody@127.0.0.9', MessageType.heartbeat, {})).toBe(false);
    const unknown = await rejection(a.transport.request('nobody@127.0.0.9', MessageType.ping, null));
    expect([unknown.code, unknown.retriable]).toEqual(['unavailable', true]);
    expect(unknown.message).toMatch(/unknown peer nobody@127.0.0.9/);
    const huge = await rejection(a.transport.request(b.name, MessageType.handoffBatch, Buffer.alloc(65 * 1024 * 1024)));
    expect(huge.code).toBe('too-large');
    expect(() => a.transport.send(b.name, MessageType.handoffBatch, Buffer.alloc(65 * 1024 * 1024))).toThrow(/exceeds/);
    await a.transport.close();
    expect((await rejection(a.transport.request(b.name, MessageType.ping, null))).message).toMatch(/shutting down/);
  });

  test('one-way messages arrive in order, both ways', async () => {
    const a = await startNode('a@127.0.0.2');
    const b = await startNode('b@127.0.0.3');
    const atB: number[] = [];
    const atA: number[] = [];
    b.transport.on(MessageType.listenEntries, (body) => atB.push((body as { n: number }).n));
    a.transport.on(MessageType.listenEntries, (body) => atA.push((body as { n: number }).n));
    const count = 5_000;
    for (let n = 0; n < count; n++) {
      expect(a.transport.send(b.name, MessageType.listenEntries, { n, pad: 'x'.repeat(n % 300) })).toBe(true);
      if (n % 2 === 0) expect(b.transport.send(a.name, MessageType.listenEntries, { n })).toBe(true);
    }
    await until(() => atB.length === count && atA.length === count / 2, 5_000, 'every message');
    expect(atB).toEqual(Array.from({ length: count }, (_, n) => n));
    expect(atA).toEqual(Array.from({ length: count / 2 }, (_, n) => 2 * n));
  });

  test('a node with the wrong secret is refused both ways, logged once with its address and name, and callers get a clear error', async () => {
    const good = await startNode('good@127.0.0.3');
    const rogue = await startNode('rogue@127.0.0.4', { secret: 'not-the-secret' });

    // the rogue dials: it cannot check the good node's proof, refuses, and the good node logs it
    const dialling = await rejection(rogue.transport.request(good.name, MessageType.ping, null));
    expect([dialling.code, dialling.retriable]).toEqual(['unavailable', true]);
    expect(dialling.message).toMatch(/cannot reach good@127.0.0.3: good@127.0.0.3 did not prove the cluster secret/);
    await until(() => good.warnings().length > 0, 2_000, "the good node's warning");
    expect(good.warnings()[0]).toMatchObject({ msg: 'cluster connection refused by the other node', remoteAddress: '127.0.0.4', claimedNode: rogue.name, reason: 'authentication' });

    // the good node dials the rogue: its own check refuses it
    const reaching = await rejection(good.transport.request(rogue.name, MessageType.ping, null));
    expect(reaching.message).toMatch(/cannot reach rogue@127.0.0.4: rogue@127.0.0.4 did not prove the cluster secret/);
    expect(good.warnings('cluster connection refused')).toEqual([
      expect.objectContaining({ remoteAddress: '127.0.0.4', claimedNode: rogue.name, reason: 'authentication', direction: 'outbound' }),
    ]);

    // a stranger that sends a proof anyway, again and again: refused every time, one warning
    for (let attempt = 0; attempt < 5; attempt++) {
      const { peer, answer } = await handDial(good, 'mallory@127.0.0.5', 'guessed-secret');
      expect(answer.type).toBe(MessageType.refused);
      expect(answer.body).toMatchObject({ reason: 'authentication' });
      await until(() => peer.closed, 2_000, 'the stranger to be cut off');
    }
    const strangerWarnings = good.warnings('cluster connection refused').filter((line) => line['claimedNode'] === 'mallory@127.0.0.5');
    expect(strangerWarnings).toEqual([expect.objectContaining({ remoteAddress: '127.0.0.5', reason: 'authentication', direction: 'inbound' })]);
    expect(good.transport.isConnected('mallory@127.0.0.5')).toBe(false);
    expect(good.transport.isConnected(rogue.name)).toBe(false);
    expect(good.transport.stats().handshakesRefused).toBeGreaterThanOrEqual(7);

    // the same stranger with the right secret is let in (so the refusals above were the secret's doing)
    const { answer } = await handDial(good, 'mallory@127.0.0.5', secret);
    expect(answer.type).toBe(MessageType.welcome);
  });

  test('an acceptor that cannot prove the secret gets no proof from the dialer', async () => {
    const a = await startNode('a@127.0.0.2');
    const seen: Frame[] = [];
    const server = net.createServer((socket) => {
      const peer = new RawPeer(socket);
      void (async () => {
        const hello = parseHello((await peer.next(FrameKind.handshake)).body)!;
        const transcript: Transcript = {
          protocol: wireProtocolVersion,
          dialer: hello.node,
          acceptor: 'impostor@127.0.0.6',
          cluster: '',
          dialerNonce: hello.nonce,
          acceptorNonce: randomBytes(32),
          dialerIncarnation: hello.incarnation,
          acceptorIncarnation: randomBytes(8),
        };
        peer.write(FrameKind.handshake, MessageType.helloChallenge, 0, {
          protocol: wireProtocolVersion,
          node: 'impostor@127.0.0.6',
          cluster: '',
          nonce: transcript.acceptorNonce,
          incarnation: transcript.acceptorIncarnation,
          proof: handshakeProof('a-guess', 'acceptor', transcript),
        });
        const reply = await peer.next();
        seen.push(reply);
        if (reply.type === MessageType.helloProof) peer.write(FrameKind.handshake, MessageType.welcome, 0, {});
      })().catch(() => {});
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.6', resolve));
    book.set('impostor@127.0.0.6', { host: '127.0.0.6', port: (server.address() as net.AddressInfo).port });
    const error = await rejection(a.transport.request('impostor@127.0.0.6', MessageType.ping, null));
    expect(error.message).toMatch(/did not prove the cluster secret/);
    await until(() => seen.length === 1, 2_000, 'the dialer to answer the challenge');
    expect(seen[0]).toMatchObject({ kind: FrameKind.handshake, type: MessageType.refused, body: { reason: 'authentication' } });
    expect(a.transport.isConnected('impostor@127.0.0.6')).toBe(false);
  });

  test('a node claiming our name, a name the ring puts elsewhere, another target, version or cluster, or silent, is refused', async () => {
    const a = await startNode('a@127.0.0.2');
    const b = await startNode('b@127.0.0.3');
    // the ring says a is at 127.0.0.2; this connection comes from 127.0.0.7
    const elsewhere = await RawPeer.connect(book.get(b.name)!, '127.0.0.7');
    elsewhere.write(FrameKind.handshake, MessageType.hello, 0, { protocol: 1, node: a.name, target: b.name, cluster: '', nonce: randomBytes(32), incarnation: randomBytes(8) });
    expect((await elsewhere.next(FrameKind.handshake)).body).toMatchObject({ reason: 'name', message: expect.stringMatching(/a@127.0.0.2 is at 127.0.0.2, but this connection comes from 127.0.0.7/) });
    // our own name
    const self = await RawPeer.connect(book.get(b.name)!, '127.0.0.3');
    self.write(FrameKind.handshake, MessageType.hello, 0, { protocol: 1, node: b.name, target: b.name, cluster: '', nonce: randomBytes(32), incarnation: randomBytes(8) });
    expect((await self.next(FrameKind.handshake)).body).toMatchObject({ reason: 'name', message: expect.stringMatching(/own name/) });
    // a dialer that meant another node (a stale address)
    const stale = await RawPeer.connect(book.get(b.name)!, '127.0.0.8');
    stale.write(FrameKind.handshake, MessageType.hello, 0, { protocol: 1, node: 'c@127.0.0.8', target: 'd@127.0.0.9', cluster: '', nonce: randomBytes(32), incarnation: randomBytes(8) });
    expect((await stale.next(FrameKind.handshake)).body).toMatchObject({ reason: 'name', message: `this is ${b.name}, not d@127.0.0.9` });
    // another protocol version
    const future = await RawPeer.connect(book.get(b.name)!, '127.0.0.8');
    future.write(FrameKind.handshake, MessageType.hello, 0, { protocol: 2, node: 'c@127.0.0.8', target: b.name, cluster: '', nonce: randomBytes(32), incarnation: randomBytes(8) });
    expect((await future.next(FrameKind.handshake)).body).toMatchObject({ reason: 'version' });
    await until(() => elsewhere.closed && self.closed && stale.closed && future.closed, 2_000, 'all four to be closed');
    expect(b.warnings('cluster connection refused').map((line) => [line['remoteAddress'], line['claimedNode'], line['reason']])).toEqual([
      ['127.0.0.7', a.name, 'name'],
      ['127.0.0.3', b.name, 'name'],
      ['127.0.0.8', 'c@127.0.0.8', 'name'],
      ['127.0.0.8', 'c@127.0.0.8', 'version'],
    ]);
    // a connection that says nothing is closed once the handshake time is up
    const quiet = await startNode('q@127.0.0.10', { handshakeTimeoutMs: 150 });
    const silent = await RawPeer.connect(book.get(quiet.name)!, '127.0.0.11');
    await until(() => silent.closed, 2_000, 'the silent connection to be closed');
    expect(quiet.warnings()).toEqual([expect.objectContaining({ msg: 'cluster connection did not authenticate in time; closed', remoteAddress: '127.0.0.11' })]);
    // nodes of two clusters do not talk
    const blue = await startNode('blue@127.0.0.12', { clusterId: 'blue' });
    await startNode('green@127.0.0.13', { clusterId: 'green' });
    expect((await rejection(blue.transport.request('green@127.0.0.13', MessageType.ping, null))).message).toMatch(/green@127.0.0.13 belongs to cluster green, not blue/);
    // a real node on the wrong address claiming a's name, with the right secret, is refused too
    const fake = await startNode('a@127.0.0.2', { host: '127.0.0.9' });
    const refused = await rejection(fake.transport.request(b.name, MessageType.ping, null));
    expect(refused.message).toMatch(/b@127.0.0.3 refused the connection: a@127.0.0.2 is at 127.0.0.2, but this connection comes from 127.0.0.9/);
    expect(b.transport.isConnected(a.name)).toBe(false);
  });

  test('a transport on 127.0.0.2 dialling one on 127.0.0.3 is seen as coming from 127.0.0.2', async () => {
    const seenFrom: string[] = [];
    const listener = net.createServer((socket) => {
      seenFrom.push(socket.remoteAddress ?? '');
      socket.destroy();
    });
    servers.push(listener);
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.3', resolve));
    book.set('plain@127.0.0.3', { host: '127.0.0.3', port: (listener.address() as net.AddressInfo).port });
    const a = await startNode('a@127.0.0.2');
    await rejection(a.transport.request('plain@127.0.0.3', MessageType.ping, null));
    expect(seenFrom).toEqual(['127.0.0.2']);

    const b = await startNode('b@127.0.0.3');
    await a.transport.connect(b.name);
    const atB = b.transport.stats().peers.find((peer) => peer.peer === a.name)!;
    const atA = a.transport.stats().peers.find((peer) => peer.peer === b.name)!;
    expect([atB.remoteAddress, atB.direction, atA.localAddress, atA.direction]).toEqual(['127.0.0.2', 'inbound', '127.0.0.2', 'outbound']);
  });

  test('a dial that does not complete its handshake in connectTimeoutMs fails, and so do its queued requests', async () => {
    const silent = net.createServer((socket) => sockets.push(socket)); // accepts, then says nothing
    servers.push(silent);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.3', resolve));
    book.set('mute@127.0.0.3', { host: '127.0.0.3', port: (silent.address() as net.AddressInfo).port });
    book.set('nowhere@127.0.0.4', { host: '127.0.0.4', port: 70_000 });
    const a = await startNode('a@127.0.0.2', { connectTimeoutMs: 200 });
    const started = performance.now();
    const [first, second] = await Promise.all([
      rejection(a.transport.request('mute@127.0.0.3', MessageType.ping, null, { timeoutMs: 5_000 })),
      rejection(a.transport.request('mute@127.0.0.3', MessageType.ringPull, null, { timeoutMs: 5_000 })),
    ]);
    expect(performance.now() - started).toBeLessThan(1_500);
    for (const error of [first, second]) expect(error.message).toBe('cannot reach mute@127.0.0.3: no connection within 200 ms');
    expect(a.transport.stats().peers.find((peer) => peer.peer === 'mute@127.0.0.3')).toMatchObject({ state: 'backoff', pendingRequests: 0, queuedBytes: 0 });
    expect((await rejection(a.transport.request('nowhere@127.0.0.4', MessageType.ping, null))).message).toMatch(/cannot reach nowhere@127.0.0.4: bad address 127.0.0.4:70000/);
  });

  test('both nodes dialling at once end with exactly one connection and lose nothing', async () => {
    let races = 0;
    for (let round = 0; round < 16; round++) {
      const a = await startNode(`a${round}@127.0.0.2`);
      const b = await startNode(`b${round}@127.0.0.3`);
      const atA: number[] = [];
      const atB: number[] = [];
      a.transport.on(MessageType.heartbeat, (body) => atA.push(body as number));
      b.transport.on(MessageType.heartbeat, (body) => atB.push(body as number));
      a.transport.handle(MessageType.ringPull, () => 'ring of a');
      b.transport.handle(MessageType.ringPull, () => 'ring of b');
      // Neither has a connection and both dial. One starts a few turns of the event loop after the other
      // (a first in even rounds, b in odd ones), so the handshakes interleave differently from round to round.
      const [first, second] = round % 2 === 0 ? [a, b] : [b, a];
      const firstAnswer = first.transport.request(second.name, MessageType.ringPull, null);
      for (let n = 0; n < 150; n++) expect(first.transport.send(second.name, MessageType.heartbeat, n)).toBe(true);
      for (let turn = 0; turn < round >> 1; turn++) await new Promise((resolve) => setImmediate(resolve));
      const secondAnswer = second.transport.request(first.name, MessageType.ringPull, null);
      for (let n = 0; n < 300; n++) {
        if (n >= 150) expect(first.transport.send(second.name, MessageType.heartbeat, n)).toBe(true);
        expect(second.transport.send(first.name, MessageType.heartbeat, n)).toBe(true);
      }
      const [fromA, fromB] = round % 2 === 0 ? [firstAnswer, secondAnswer] : [secondAnswer, firstAnswer];
      expect(await Promise.all([fromA, fromB])).toEqual(['ring of b', 'ring of a']);
      await until(() => atA.length === 300 && atB.length === 300, 3_000, 'all messages');
      await until(() => a.transport.stats().connectionsOpen === 1 && b.transport.stats().connectionsOpen === 1, 2_000, 'the losing connection to close');
      const expected = Array.from({ length: 300 }, (_, n) => n);
      expect(atA).toEqual(expected);
      expect(atB).toEqual(expected);
      const statsA = a.transport.stats();
      const statsB = b.transport.stats();
      expect([statsA.connectionsOpen, statsB.connectionsOpen]).toEqual([1, 1]);
      const [linkA, linkB] = [statsA.peers[0]!, statsB.peers[0]!];
      expect(linkA.localPort).toBe(linkB.remotePort);
      expect(linkA.remotePort).toBe(linkB.localPort);
      const raced = [...a.logs, ...b.logs].some((line) => line['msg'] === 'duplicate connection refused' || String(line['msg']).startsWith('own dial abandoned'));
      // after a race, the connection kept is the one the lower name (a) dialled
      if (raced) expect([linkA.direction, linkB.direction]).toEqual(['outbound', 'inbound']);
      if (raced) races++;
      await Promise.all([a.transport.close(), b.transport.close()]);
    }
    expect(races).toBeGreaterThan(0);
  });

  test('a new connection from a peer replaces its old one, except the other half of a dial race', async () => {
    const a = await startNode('a@127.0.0.2');
    const events: string[] = [];
    a.transport.onPeerUp((peer) => events.push(`up ${peer}`));
    a.transport.onPeerDown((peer, reason) => events.push(`down ${peer}: ${reason}`));
    const z = 'z@127.0.0.6';
    const incarnation = randomBytes(8);
    const accepted = await handAccept(z, incarnation);
    await a.transport.connect(z); // a dialled z: a's own connection, and a has the lower name
    const inFlight = rejection(a.transport.request(z, MessageType.ringPull, null));

    // z, same incarnation, dials too: this may be a race in which a's connection wins; refused
    const { answer: duplicate } = await handDial(a, z, secret, incarnation);
    expect(duplicate).toMatchObject({ type: MessageType.refused, body: { reason: 'duplicate' } });
    expect(a.transport.isConnected(z) && !accepted[0]!.closed).toBe(true);

    // z restarted (a new incarnation) while a did not notice: its new connection replaces the old one
    const secondIncarnation = randomBytes(8);
    const { peer: restarted, answer: welcome } = await handDial(a, z, secret, secondIncarnation);
    expect(welcome.type).toBe(MessageType.welcome);
    const lost = await inFlight;
    expect(lost.message).toMatch(/connection to z@127.0.0.6 lost \(replaced by a new connection from the peer\)/);
    await until(() => accepted[0]!.closed, 2_000, 'the old connection to be closed');
    expect(events).toEqual([`up ${z}`, `down ${z}: replaced by a new connection from the peer`, `up ${z}`]);
    expect(a.transport.stats().peers[0]).toMatchObject({ direction: 'inbound', state: 'up' });

    // z dials again over a connection a did not see die (same incarnation, inbound): replaced as well
    const { answer: again } = await handDial(a, z, secret, secondIncarnation);
    expect(again.type).toBe(MessageType.welcome);
    await until(() => restarted.closed, 2_000, 'the previous inbound connection to be closed');
    expect(a.transport.stats().connectionsOpen).toBe(1);
  });

  test('a request times out, or is aborted, and the connection carries on', async () => {
    const a = await startNode('a@127.0.0.2');
    const b = await startNode('b@127.0.0.3');
    let release: (value: unknown) => void = () => {};
    b.transport.handle(MessageType.forwardRequest, () => new Promise((resolve) => (release = resolve)));
    b.transport.handle(MessageType.ringPull, () => 'ok');
    const started = performance.now();
    const timedOut = await rejection(a.transport.request(b.name, MessageType.forwardRequest, {}, { timeoutMs: 100 }));
    const elapsedMs = performance.now() - started;
    expect([timedOut.code, timedOut.retriable]).toEqual(['unavailable', true]);
    expect(timedOut.message).toBe(`forwardRequest request to ${b.name} timed out after 100 ms`);
    expect(elapsedMs).toBeGreaterThanOrEqual(95);
    expect(elapsedMs).toBeLessThan(1_000);
    release('too late'); // the late answer is dropped
    expect(await a.transport.request(b.name, MessageType.ringPull, null)).toBe('ok');

    const controller = new AbortController();
    const aborted = a.transport.request(b.name, MessageType.forwardRequest, {}, { signal: controller.signal });
    controller.abort(new IorioError('unavailable', 'the client went away'));
    expect((await rejection(aborted)).message).toBe('the client went away');
    expect(a.transport.stats().peers[0]!.pendingRequests).toBe(0);
  });

  test('requests in flight fail as unavailable when the peer transport closes', async () => {
    const a = await startNode('a@127.0.0.2');
    const b = await startNode('b@127.0.0.3');
    b.transport.handle(MessageType.forwardRequest, () => new Promise(() => {}));
    a.transport.handle(MessageType.forwardRequest, () => new Promise(() => {}));
    const downs: string[] = [];
    a.transport.onPeerDown((peer) => downs.push(peer));
    await a.transport.connect(b.name);
    const fromA = Array.from({ length: 20 }, () => rejection(a.transport.request(b.name, MessageType.forwardRequest, {}, { timeoutMs: 10_000 })));
    const fromB = rejection(b.transport.request(a.name, MessageType.forwardRequest, {}, { timeoutMs: 10_000 }));
    await until(() => b.transport.stats().peers[0]?.pendingRequests === 1, 2_000, 'b to have sent its request');
    await sleep(20);
    const started = performance.now();
    await b.transport.close();
    for (const error of await Promise.all(fromA)) {
      expect([error.code, error.retriable]).toEqual(['unavailable', true]);
      expect(error.message).toMatch(/connection to b@127.0.0.3 lost \(closed by the peer\) with the request in flight/);
    }
    expect(performance.now() - started).toBeLessThan(2_000);
    expect((await fromB).message).toMatch(/shutting down/);
    expect(downs).toEqual([b.name]);
    expect(a.transport.isConnected(b.name)).toBe(false);
  });

  test('requests in flight fail as unavailable when the peer process is killed', async () => {
    const a = await startNode('a@127.0.0.2');
    const script = `
      import { Transport } from './src/cluster/transport.ts';
      import { pino } from 'pino';
      const transport = new Transport({ self: 'k@127.0.0.3', host: '127.0.0.3', port: 0, secret: ${JSON.stringify(secret)},
        resolve: () => undefined, connectTimeoutMs: 1000, requestTimeoutMs: 5000, queueBytesMax: 1 << 20,
        logger: pino({ level: 'silent' }), clock: { now: () => Date.now(), monotonic: () => performance.now() } });
      transport.handle(${MessageType.forwardRequest}, () => new Promise(() => {}));
      const { port } = await transport.start();
      console.log('port ' + port);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await until(() => /port \d+/.test(output), 8_000, 'the child transport');
    book.set('k@127.0.0.3', { host: '127.0.0.3', port: Number(/port (\d+)/.exec(output)![1]) });
    expect(await a.transport.request('k@127.0.0.3', MessageType.ping, null)).toEqual({ node: 'k@127.0.0.3' });
    const inFlight = Array.from({ length: 10 }, () => rejection(a.transport.request('k@127.0.0.3', MessageType.forwardRequest, {}, { timeoutMs: 10_000 })));
    await sleep(50);
    const started = performance.now();
    child.kill('SIGKILL');
    for (const error of await Promise.all(inFlight)) {
      expect(error.code).toBe('unavailable');
      expect(error.message).toMatch(/connection to k@127.0.0.3 lost/);
    }
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  test('a restarted peer on the same port is reached again; meanwhile requests fail fast', async () => {
    const a = await startNode('a@127.0.0.2');
    let b = await startNode('b@127.0.0.3');
    const port = b.port;
    const ups: string[] = [];
    const downs: string[] = [];
    a.transport.onPeerUp((peer) => ups.push(peer));
    a.transport.onPeerDown((peer) => downs.push(peer));
    expect(await a.transport.request(b.name, MessageType.ping, null)).toEqual({ node: b.name });
    await b.transport.close();
    await until(() => downs.length === 1, 2_000, 'peer down');

    // b is gone: the first request finds the port closed, the next ones fail at once during the backoff
    const refused = await rejection(a.transport.request(b.name, MessageType.ping, null, { timeoutMs: 5_000 }));
    expect(refused.message).toMatch(/cannot reach b@127.0.0.3: connect ECONNREFUSED 127.0.0.3/);
    const started = performance.now();
    const fast = await rejection(a.transport.request(b.name, MessageType.ping, null, { timeoutMs: 5_000 }));
    expect(fast.message).toMatch(/b@127.0.0.3 is unreachable \(connect ECONNREFUSED .*\); next attempt in \d+ ms/);
    expect(performance.now() - started).toBeLessThan(100); // no dial, no timeout: at once
    expect(a.transport.send(b.name, MessageType.heartbeat, 1)).toBe(false);

    b = await startNode('b@127.0.0.3', { port });
    b.transport.handle(MessageType.ringPull, () => 'restarted');
    let answer: unknown;
    for (let attempt = 0; answer === undefined && attempt < 100; attempt++) {
      answer = await a.transport.request(b.name, MessageType.ringPull, null).catch(() => undefined);
      if (answer === undefined) await sleep(25);
    }
    expect(answer).toBe('restarted');
    expect(ups).toEqual([b.name, b.name]);
  });

  test('send returns false past queueBytesMax while the peer does not read, memory stays bounded, and waitWritable resumes', async () => {
    const queueBytesMax = 1024 * 1024;
    const a = await startNode('a@127.0.0.2', { queueBytesMax });
    const { peer: slow, answer } = await handDial(a, 'slow@127.0.0.5', secret);
    expect(answer.type).toBe(MessageType.welcome);
    await until(() => a.transport.isConnected('slow@127.0.0.5'), 2_000, 'the slow peer to be up');
    slow.socket.pause();

    const payload = Buffer.alloc(64 * 1024, 1);
    const queued = () => a.transport.stats().peers.find((peer) => peer.peer === 'slow@127.0.0.5')!.queuedBytes;
    // Send until refused, let the kernel take what it will, again, until its buffers (tens of MB on loopback) are full too.
    let accepted = 0;
    let stalls = 0;
    while (accepted < 3_000 && stalls < 5) {
      if (a.transport.send('slow@127.0.0.5', MessageType.handoffBatch, { n: accepted, payload })) {
        accepted++;
        continue;
      }
      expect(queued()).toBeGreaterThan(queueBytesMax - payload.length - 100);
      const before = queued();
      await sleep(20);
      stalls = queued() >= before ? stalls + 1 : 0;
    }
    expect(stalls, 'the queue stopped draining').toBe(5);
    expect(queued()).toBeLessThanOrEqual(queueBytesMax);
    const memoryBefore = process.memoryUsage();
    for (let n = 0; n < 5_000; n++) expect(a.transport.send('slow@127.0.0.5', MessageType.handoffBatch, { n, payload })).toBe(false);
    const memoryAfter = process.memoryUsage();
    expect(memoryAfter.arrayBuffers - memoryBefore.arrayBuffers).toBeLessThan(32 * 1024 * 1024);
    expect(queued()).toBeLessThanOrEqual(queueBytesMax);
    // requests are refused too, as retriable
    expect((await rejection(a.transport.request('slow@127.0.0.5', MessageType.handoffBatch, { payload }))).message).toMatch(/queue to slow@127.0.0.5 is full/);

    let writable = false;
    const waiting = a.transport.waitWritable('slow@127.0.0.5').then(() => (writable = true));
    await sleep(50);
    expect(writable).toBe(false);
    slow.socket.resume();
    await waiting;
    expect(a.transport.send('slow@127.0.0.5', MessageType.handoffBatch, { n: accepted, payload })).toBe(true);
    await until(() => slow.frames.length === accepted + 1, 3_000, 'every accepted message');
    expect(slow.frames.map((frame) => (frame.body as { n: number }).n)).toEqual(Array.from({ length: accepted + 1 }, (_, n) => n));
  });

  test('garbage or an oversized frame closes the connection without crashing, before or after the handshake', async () => {
    const a = await startNode('a@127.0.0.2');
    const b = await startNode('b@127.0.0.3');
    b.transport.handle(MessageType.ringPull, () => 'still here');

    const garbage = await RawPeer.connect(book.get(b.name)!, '127.0.0.7');
    garbage.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await until(() => garbage.closed, 2_000, 'garbage to be cut off');

    const huge = await RawPeer.connect(book.get(b.name)!, '127.0.0.9');
    huge.socket.write(Buffer.from('7fffffff', 'hex')); // a 2 GB frame announced; the handshake bound is 4 KB
    await until(() => huge.closed, 2_000, 'the huge frame to be cut off');

    // an authenticated peer: the bound is clusterFrameBytesMax, and a bad kind is still fatal
    const downs: string[] = [];
    b.transport.onPeerDown((peer) => downs.push(peer));
    const { peer: trusted } = await handDial(b, 'odd@127.0.0.8', secret);
    trusted.socket.write(Buffer.from('04000001' + '01' + '0001' + '00000001', 'hex')); // 64 MB + 1 frame announced
    await until(() => trusted.closed, 2_000, 'the oversized frame to be cut off');
    const { peer: kinky } = await handDial(b, 'weird@127.0.0.8', secret);
    kinky.socket.write(Buffer.from('0000000809000100000000c0', 'hex')); // kind 9
    await until(() => kinky.closed, 2_000, 'the bad kind to be cut off');
    expect(downs).toEqual(['odd@127.0.0.8', 'weird@127.0.0.8']);

    expect(b.transport.stats().protocolErrors).toBe(4);
    expect(b.warnings('cluster protocol error; connection closed').map((line) => line['detail'])).toEqual([
      expect.stringMatching(/frame of 1195725860 bytes exceeds the 4096-byte bound/),
      expect.stringMatching(/frame of 2147483651 bytes exceeds the 4096-byte bound/),
      expect.stringMatching(/frame of 67108869 bytes exceeds the 67108864-byte bound/),
      expect.stringMatching(/unknown frame kind 9/),
    ]);
    expect(await a.transport.request(b.name, MessageType.ringPull, null)).toBe('still here');
  });

  test('1,000 concurrent requests each get their own answer; the pending bound refuses the excess', async () => {
    const a = await startNode('a@127.0.0.2');
    const b = await startNode('b@127.0.0.3');
    b.transport.handle(MessageType.forwardRequest, async (body) => {
      const { n } = body as { n: number };
      if (n % 3 === 0) await sleep(n % 7);
      return { n, square: n * n };
    });
    const answers = await Promise.all(Array.from({ length: 1_000 }, (_, n) => a.transport.request(b.name, MessageType.forwardRequest, { n })));
    expect(answers).toEqual(Array.from({ length: 1_000 }, (_, n) => ({ n, square: n * n })));

    b.transport.handle(MessageType.ringPull, () => new Promise(() => {}));
    const stuck = Array.from({ length: clusterRequestsPendingMax }, () => a.transport.request(b.name, MessageType.ringPull, null, { timeoutMs: 60_000 }).catch(() => 'failed'));
    const excess = await rejection(a.transport.request(b.name, MessageType.ringPull, null));
    expect(excess.message).toMatch(/10000 requests to b@127.0.0.3 await their response already/);
    await a.transport.close();
    expect(new Set(await Promise.all(stuck))).toEqual(new Set(['failed']));
  });
});
