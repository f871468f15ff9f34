/**
 * Inter-node wire format: frames and the numbered message types.
 *
 * Frame layout (all integers big-endian, network order: msgpack itself is
 * big-endian, and so is the `{packet, 4}` length prefix of Erlang sockets
 * that riak_core's handoff uses):
 *
 *   offset  size  field
 *   0       4     u32 length     bytes after this field: 7 + body length
 *   4       1     u8  kind       FrameKind below
 *   5       2     u16 type       MessageType below (a response carries its request's type)
 *   7       4     u32 requestId  request, response, error: the id the requester chose (never 0);
 *                                one-way and handshake: 0
 *   11      ..    body           exactly one msgpack value (msgpackr, records off: plain
 *                                msgpack maps, so any msgpack decoder reads it)
 *
 * A frame is `4 + length` bytes, at most clusterFrameBytesMax (before a
 * connection is authenticated, clusterHandshakeFrameBytesMax). The body is at
 * least one byte (msgpack nil is 0xc0). Body encoding notes: integers beyond
 * 32 bits travel as float64 (exact up to 2^53), Buffers and Uint8Arrays as
 * msgpack bin (decoded as Buffer views into the frame), `undefined` as
 * msgpackr's fixext `d4 00 00` (decoded as undefined).
 *
 * Kinds:
 *   1 request   expects exactly one response or error with the same requestId
 *   2 response  body: the handler's return value
 *   3 error     body: { code: ErrorCode, message: string, details?: object }
 *   4 one-way   no reply
 *   5 handshake the connection's first frames, before anything else (types 1-5)
 *
 * A length below 8 or above the bound, an unknown kind, a requestId of 0 on a
 * request/response/error or not 0 on a one-way/handshake frame, or a body that
 * is not exactly one msgpack value is a protocol error: the decoder throws and
 * the connection is closed. An unknown *type* is not a protocol error (a newer
 * peer may know more types): a request gets an error response, a one-way
 * message is dropped.
 *
 * Message types are grouped by area in blocks of a hundred, with gaps left
 * for growth. A number is never reused or renumbered: a changed body shape
 * gets a new number, as riak_core kept PT_MSG_OLDSYNC beside PT_MSG_SYNC
 * (include/riak_core_handoff.hrl). Body shapes belong to the module that owns
 * the area; this layer types them as `unknown`.
 *
 * Handshake (kind 5; bodies owned by src/cluster/handshake.ts):
 *   dialer   -> acceptor  hello          { protocol, node, target, cluster, nonce, incarnation }
 *   acceptor -> dialer    helloChallenge { protocol, node, cluster, nonce, incarnation, proof }
 *   dialer   -> acceptor  helloProof     { proof }
 *   acceptor -> dialer    welcome        {}
 *   either way, then close: refused      { reason, message }
 */
import { Packr, RESERVE_START_SPACE } from 'msgpackr';
import { IorioError, assert } from './errors.js';
import { clusterFrameBytesMax } from './limits.js';

/** Version of this frame format and handshake; both sides must speak the same one. */
export const wireProtocolVersion = 1;

/** Bytes before the body: length, kind, type, requestId. */
export const frameHeaderBytes = 11;
/** Bytes counted by the length field besides the body: kind, type, requestId. */
const lengthOverheadBytes = frameHeaderBytes - 4;

export const FrameKind = {
  request: 1,
  response: 2,
  error: 3,
  oneWay: 4,
  handshake: 5,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

const frameKindNames: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(FrameKind).map(([name, kind]) => [kind, name]));

export function isFrameKind(value: number): value is FrameKind {
  return frameKindNames[value] !== undefined;
}

/** Kinds that carry a requestId (never 0); the others carry 0. */
function kindHasRequestId(kind: FrameKind): boolean {
  return kind === FrameKind.request || kind === FrameKind.response || kind === FrameKind.error;
}

/**
 * The numbered message types. A request and its response share a type; the
 * frame kind says which way it goes.
 */
export const MessageType = {
  // 1-99: connection (the transport's own)
  /** Handshake: dialer introduces itself (who, whom it means, nonce). */
  hello: 1,
  /** Handshake: acceptor introduces itself, challenges, proves it knows the secret. */
  helloChallenge: 2,
  /** Handshake: dialer proves it knows the secret. */
  helloProof: 3,
  /** Handshake: acceptor says the connection is up. */
  welcome: 4,
  /** Handshake: either side says why it closes the connection. */
  refused: 5,
  /** Request answered by the transport itself: `{ node }`. */
  ping: 10,

  // 100-199: ring gossip
  ringPush: 100,
  ringPull: 101,

  // 200-299: membership (join, the claimant's RPCs)
  joinRequest: 200,
  claimantStage: 210,
  claimantPlan: 211,
  claimantCommit: 212,
  claimantClear: 213,
  claimantStatus: 214,
  /** A join request as the claimant takes it: the member added as joining, its join staged; answers the ring. */
  claimantJoin: 215,
  claimantDown: 216,
  /** A member's addresses changed (it restarted elsewhere): the claimant records them. */
  claimantMemberUpdate: 217,
  /** A transfer finished: the claimant makes its target the owner. */
  claimantTransferComplete: 218,

  // 300-399: failure detector
  heartbeat: 300,

  // 400-499: request forwarding (an HTTP-like request sent to the partition's owner; the response carries the same type)
  forwardRequest: 400,
  /** Stream operations sent to the node that serves the stream's partition. */
  streamAppend: 410,
  streamAppendAtomic: 411,
  streamRead: 412,
  streamLastSeq: 413,
  streamDelete: 414,
  /** A stream's seqnums, size and policy in force (GET /streams/:bucket/:stream/info). */
  streamInfo: 415,

  // 500-599: listen forwarding
  listenSubscribe: 500,
  listenUnsubscribe: 501,
  listenEntries: 510,
  listenTruncated: 511,
  listenEnd: 512,

  // 600-699: coverage queries
  coverageListBuckets: 600,
  coverageListStreams: 601,

  // 700-799: handoff
  handoffStart: 700,
  handoffBatch: 701,
  handoffBatchAck: 702,
  handoffDone: 703,
  handoffCancel: 704,
  handoffStatus: 705,

  // 800-899: cluster metadata (users, grants, policies, the session secret)
  metadataUsers: 800,
  metadataGrants: 801,
  metadataPolicies: 802,
  metadataSecret: 803,
  /** Versioned changes to users, grants, policies or the session secret (cluster/metadata.ts). */
  metadataChanges: 804,
  metadataCatchUp: 810,

  // 1000-1999: replication, reserved (VR Revisited's messages; more will come in this range)
  replicationPrepare: 1000,
  replicationPrepareOk: 1001,
  replicationCommit: 1002,
  replicationStartViewChange: 1010,
  replicationDoViewChange: 1011,
  replicationStartView: 1012,
  replicationHeartbeat: 1020,
  replicationLeaseGrant: 1021,
  /** Everything a node's replicas send one peer in one event-loop turn (cluster/replication/host.ts). */
  replicationBatch: 1030,
  /** A follower behind its leader's compaction point asks for the partition's streams, then their records. */
  replicationStateStreams: 1031,
  replicationStateRecords: 1032,
  /** A node's replicas, for iorio-admin partitions. */
  replicationStatus: 1033,
  /** iorio-admin verify (cluster/replication/verify.ts): a replica's streams of a partition, with first and last seqnums. */
  replicationVerifyStreams: 1034,
  /** iorio-admin verify: per stream, a digest over seqnums from..upTo and the seqnum ranges the replica cannot read. */
  replicationVerifyDigests: 1035,
  /** iorio-admin verify --repair: a replica fills one stream from another (its missing tail, or chunks rebuilt). */
  replicationVerifyRepair: 1036,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** The block of type numbers reserved for replication. */
export const replicationTypeRange = { first: 1000, last: 1999 } as const;

const messageTypeNames: ReadonlyMap<number, string> = new Map(Object.entries(MessageType).map(([name, type]) => [type, name]));

/** The name of a message type for logs: `handoffBatch`, or `unknown(4242)`. */
export function messageTypeName(type: number): string {
  return messageTypeNames.get(type) ?? `unknown(${type})`;
}

/** The name of a frame kind for logs. */
export function frameKindName(kind: number): string {
  return frameKindNames[kind] ?? `unknown(${kind})`;
}

export interface Frame {
  readonly kind: FrameKind;
  readonly type: number;
  readonly requestId: number;
  readonly body: unknown;
  /** Bytes of the whole frame on the wire. */
  readonly bytes: number;
}

/** Error-response body. */
export interface ErrorBody {
  readonly code: string;
  readonly message: string;
  readonly details?: Record<string, unknown>;
}

/** A peer broke the frame format: the connection must be closed. */
export class WireProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireProtocolError';
  }
}

// Records off: every frame stands alone and any msgpack decoder reads it.
// variableMapSize: small maps as fixmap, so an encoding has one form.
const packr = new Packr({ useRecords: false, variableMapSize: true, mapsAsObjects: true });

/**
 * Encodes one frame. A body whose frame would exceed `frameBytesMax` is
 * refused as too-large (an operating error: callers bound what they send).
 */
export function encodeFrame(kind: FrameKind, type: number, requestId: number, body: unknown, frameBytesMax = clusterFrameBytesMax): Buffer {
  assert(isFrameKind(kind), 'frame kind is known');
  assert(Number.isInteger(type) && type >= 0 && type <= 0xffff, 'message type fits u16');
  assert(Number.isInteger(requestId) && requestId >= 0 && requestId <= 0xffffffff, 'requestId fits u32');
  assert(kindHasRequestId(kind) === (requestId !== 0), 'requestId is set exactly on requests, responses and errors');
  // msgpackr writes the body after 11 reserved bytes: the header goes in front without a copy.
  const frame = packr.pack(body, RESERVE_START_SPACE | frameHeaderBytes);
  if (frame.length > frameBytesMax) {
    throw new IorioError('too-large', `a ${messageTypeName(type)} frame of ${frame.length} bytes exceeds the ${frameBytesMax}-byte bound`);
  }
  frame.writeUInt32BE(frame.length - 4, 0);
  frame.writeUInt8(kind, 4);
  frame.writeUInt16BE(type, 5);
  frame.writeUInt32BE(requestId, 7);
  return frame;
}

/** Decodes one msgpack value that must fill `bytes` exactly. */
export function decodeBody(bytes: Buffer): unknown {
  try {
    return packr.unpack(bytes);
  } catch (error) {
    throw new WireProtocolError(`frame body is not one msgpack value: ${(error as Error).message}`);
  }
}

/**
 * Incremental frame decoder: feed it TCP chunks of any size, get whole
 * frames. It holds at most one frame's bytes; a bad length prefix or kind is
 * reported as soon as its bytes arrive, without waiting for the body.
 */
export class FrameDecoder {
  /** Can be lowered or raised between chunks (the handshake bound, then the frame bound). */
  frameBytesMax: number;
  private readonly header = Buffer.alloc(frameHeaderBytes);
  private headerFill = 0;
  private kind: FrameKind = FrameKind.request;
  private type = 0;
  private requestId = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;
  private failure: WireProtocolError | undefined;

  constructor(frameBytesMax = clusterFrameBytesMax) {
    this.frameBytesMax = frameBytesMax;
  }

  /** Bytes held for a frame not yet complete. */
  get bufferedBytes(): number {
    return this.headerFill + this.bodyFill;
  }

  /**
   * Hands every frame completed by `chunk` to `onFrame`, in order. Throws a
   * WireProtocolError at the first malformed frame (after delivering the
   * frames before it); the decoder then refuses anything more.
   */
  push(chunk: Buffer, onFrame: (frame: Frame) => void): void {
    if (this.failure) throw this.failure;
    try {
      this.consume(chunk, onFrame);
    } catch (error) {
      if (error instanceof WireProtocolError) this.failure = error;
      throw error;
    }
  }

  private consume(chunk: Buffer, onFrame: (frame: Frame) => void): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.body === undefined) {
        let bodyBytes: number;
        if (this.headerFill === 0 && chunk.length - offset >= frameHeaderBytes) {
          bodyBytes = this.readHeader(chunk, offset);
          offset += frameHeaderBytes;
        } else {
          const take = Math.min(frameHeaderBytes - this.headerFill, chunk.length - offset);
          chunk.copy(this.header, this.headerFill, offset, offset + take);
          this.headerFill += take;
          offset += take;
          this.checkPartialHeader();
          if (this.headerFill < frameHeaderBytes) return;
          this.headerFill = 0;
          bodyBytes = this.readHeader(this.header, 0);
        }
        if (chunk.length - offset >= bodyBytes) {
          this.emit(chunk.subarray(offset, offset + bodyBytes), onFrame);
          offset += bodyBytes;
          continue;
        }
        this.body = Buffer.allocUnsafe(bodyBytes);
        this.bodyFill = 0;
      }
      const take = Math.min(this.body.length - this.bodyFill, chunk.length - offset);
      chunk.copy(this.body, this.bodyFill, offset, offset + take);
      this.bodyFill += take;
      offset += take;
      if (this.bodyFill === this.body.length) {
        const body = this.body;
        this.body = undefined;
        this.bodyFill = 0;
        this.emit(body, onFrame);
      }
    }
  }

  /** Checks what a header cut short already shows: the length, then the kind. */
  private checkPartialHeader(): void {
    if (this.headerFill >= 4) this.checkLength(this.header.readUInt32BE(0));
    if (this.headerFill >= 5) this.checkKind(this.header.readUInt8(4));
  }

  /** Validates and records a whole header; returns the body's length. */
  private readHeader(source: Buffer, offset: number): number {
    const length = source.readUInt32BE(offset);
    this.checkLength(length);
    const kind = source.readUInt8(offset + 4);
    this.checkKind(kind);
    const requestId = source.readUInt32BE(offset + 7);
    if (kindHasRequestId(kind as FrameKind) !== (requestId !== 0)) {
      throw new WireProtocolError(`a ${frameKindName(kind)} frame with requestId ${requestId}`);
    }
    this.kind = kind as FrameKind;
    this.type = source.readUInt16BE(offset + 5);
    this.requestId = requestId;
    return length - lengthOverheadBytes;
  }

  private checkLength(length: number): void {
    if (length < lengthOverheadBytes + 1) throw new WireProtocolError(`frame length ${length} is below the smallest frame`);
    if (length + 4 > this.frameBytesMax) throw new WireProtocolError(`frame of ${length + 4} bytes exceeds the ${this.frameBytesMax}-byte bound`);
  }

  private checkKind(kind: number): void {
    if (!isFrameKind(kind)) throw new WireProtocolError(`unknown frame kind ${kind}`);
  }

  private emit(bodyBytes: Buffer, onFrame: (frame: Frame) => void): void {
    const body = decodeBody(bodyBytes);
    onFrame({ kind: this.kind, type: this.type, requestId: this.requestId, body, bytes: frameHeaderBytes + bodyBytes.length });
  }
}
