/**
 * The cluster handshake's bodies and proofs (frames of kind `handshake`,
 * core/wire.ts). Pure: the transport drives the exchange.
 *
 *   dialer                                   acceptor
 *   hello { protocol, node, target, cluster, nonce, incarnation } ->
 *          <- helloChallenge { protocol, node, cluster, nonce, incarnation, proof(acceptor) }
 *   helloProof { proof(dialer) } ->
 *                                            <- welcome {}   (or refused { reason, message })
 *
 * proof(role) = HMAC-SHA256(cluster secret, transcript(role)), where the
 * transcript binds the role, the protocol version, both node names, the
 * cluster id, both nonces and both incarnations. The secret never crosses the
 * wire; each side proves it with the other's fresh nonce, and the role label
 * keeps one side's proof from being replayed as the other's.
 *
 * What this gives: only nodes that know the secret get a connection, and each
 * side knows the other's name. What it does not: frames after the handshake
 * are neither encrypted nor individually authenticated (someone who can alter
 * the TCP stream can alter them); cluster traffic belongs on a private network.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { nodeNameBytesMax } from '../core/limits.js';

export const nonceBytes = 32;
export const incarnationBytes = 8;
export const proofBytes = 32;

export interface HelloBody {
  readonly protocol: number;
  /** The dialer's node name. */
  readonly node: string;
  /** The node the dialer means to reach: an acceptor with another name refuses. */
  readonly target: string;
  /** '' when the dialer has none. */
  readonly cluster: string;
  readonly nonce: Buffer;
  /** Random per transport start: tells a restarted peer from a reconnecting one. */
  readonly incarnation: Buffer;
}

export interface ChallengeBody {
  readonly protocol: number;
  readonly node: string;
  readonly cluster: string;
  readonly nonce: Buffer;
  readonly incarnation: Buffer;
  readonly proof: Buffer;
}

export interface ProofBody {
  readonly proof: Buffer;
}

export const RefusalReason = {
  /** The other side failed to prove the cluster secret. */
  authentication: 'authentication',
  version: 'version',
  cluster: 'cluster',
  /** A bad, clashing or unexpected node name. */
  name: 'name',
  /** The acceptor's own dial to the dialer wins the tie-break: the dialer waits for it. */
  duplicate: 'duplicate',
  closing: 'closing',
} as const;
export type RefusalReason = (typeof RefusalReason)[keyof typeof RefusalReason];

export interface RefusedBody {
  readonly reason: RefusalReason;
  readonly message: string;
}

const nodeNamePattern = /^[A-Za-z0-9_.-]+@[A-Za-z0-9_.:[\]-]+$/;

/** A node name is `name@host`: letters, digits, `_ . -` before the @, a host or address after it. */
export function isNodeName(value: unknown): value is string {
  return typeof value === 'string' && Buffer.byteLength(value) <= nodeNameBytesMax && nodeNamePattern.test(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function bytesOf(value: unknown, length: number): Buffer | undefined {
  if (!(value instanceof Uint8Array) || value.length !== length) return undefined;
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.length);
}

function clusterOf(value: unknown): string | undefined {
  return typeof value === 'string' && Buffer.byteLength(value) <= nodeNameBytesMax ? value : undefined;
}

/** The hello body, or undefined if it is malformed. */
export function parseHello(body: unknown): HelloBody | undefined {
  if (!isRecord(body) || !Number.isInteger(body['protocol'])) return undefined;
  const nonce = bytesOf(body['nonce'], nonceBytes);
  const incarnation = bytesOf(body['incarnation'], incarnationBytes);
  const cluster = clusterOf(body['cluster']);
  const { node, target } = body;
  if (!isNodeName(node) || !isNodeName(target) || nonce === undefined || incarnation === undefined || cluster === undefined) return undefined;
  return { protocol: body['protocol'] as number, node, target, cluster, nonce, incarnation };
}

export function parseChallenge(body: unknown): ChallengeBody | undefined {
  if (!isRecord(body) || !Number.isInteger(body['protocol'])) return undefined;
  const nonce = bytesOf(body['nonce'], nonceBytes);
  const incarnation = bytesOf(body['incarnation'], incarnationBytes);
  const proof = bytesOf(body['proof'], proofBytes);
  const cluster = clusterOf(body['cluster']);
  const { node } = body;
  if (!isNodeName(node) || nonce === undefined || incarnation === undefined || proof === undefined || cluster === undefined) return undefined;
  return { protocol: body['protocol'] as number, node, cluster, nonce, incarnation, proof };
}

export function parseProof(body: unknown): ProofBody | undefined {
  if (!isRecord(body)) return undefined;
  const proof = bytesOf(body['proof'], proofBytes);
  return proof === undefined ? undefined : { proof };
}

export function parseRefused(body: unknown): RefusedBody | undefined {
  if (!isRecord(body) || typeof body['reason'] !== 'string' || typeof body['message'] !== 'string') return undefined;
  const reason = Object.values(RefusalReason).find((known) => known === body['reason']);
  return { reason: reason ?? RefusalReason.name, message: body['message'].slice(0, 512) };
}

/** Everything both proofs bind: the hello and the challenge, less the proofs. */
export interface Transcript {
  readonly protocol: number;
  readonly dialer: string;
  readonly acceptor: string;
  readonly cluster: string;
  readonly dialerNonce: Buffer;
  readonly acceptorNonce: Buffer;
  readonly dialerIncarnation: Buffer;
  readonly acceptorIncarnation: Buffer;
}

/** HMAC-SHA256 over the transcript, labelled with the role of the side proving. */
export function handshakeProof(secret: string, role: 'dialer' | 'acceptor', transcript: Transcript): Buffer {
  const hmac = createHmac('sha256', secret);
  const text = ['iorio-cluster', role, String(transcript.protocol), transcript.dialer, transcript.acceptor, transcript.cluster].join('\0');
  hmac.update(text);
  hmac.update(Buffer.from([0]));
  hmac.update(transcript.dialerNonce);
  hmac.update(transcript.acceptorNonce);
  hmac.update(transcript.dialerIncarnation);
  hmac.update(transcript.acceptorIncarnation);
  return hmac.digest();
}

/** Constant-time comparison of a received proof with the expected one. */
export function proofMatches(secret: string, role: 'dialer' | 'acceptor', transcript: Transcript, proof: Buffer): boolean {
  const expected = handshakeProof(secret, role, transcript);
  return proof.length === expected.length && timingSafeEqual(proof, expected);
}
