import { describe, expect, test } from 'vitest';
import { IorioError } from '../../src/core/errors.js';
import {
  FrameDecoder,
  FrameKind,
  MessageType,
  WireProtocolError,
  encodeFrame,
  frameHeaderBytes,
  messageTypeName,
  replicationTypeRange,
  type Frame,
} from '../../src/core/wire.js';
import { mulberry32 } from '../helpers/clock.js';

/** One fixture per frame kind: header fields, then the msgpack body, byte for byte. */
const golden = {
  request: {
    frame: [FrameKind.request, MessageType.forwardRequest, 7, { method: 'GET', path: '/ping' }] as const,
    hex:
      '0000001e' + // u32 length = 7 + 23-byte body
      '01' + // u8 kind = request
      '0190' + // u16 type = 400 forwardRequest
      '00000007' + // u32 requestId = 7
      '82' + 'a6' + '6d6574686f64' + 'a3' + '474554' + 'a4' + '70617468' + 'a5' + '2f70696e67', // {method: 'GET', path: '/ping'}
  },
  response: {
    frame: [FrameKind.response, MessageType.forwardRequest, 7, { status: 200 }] as const,
    hex: '00000011' + '02' + '0190' + '00000007' + '81' + 'a6' + '737461747573' + 'cc' + 'c8', // {status: 200 (uint8)}
  },
  error: {
    frame: [FrameKind.error, MessageType.forwardRequest, 8, { code: 'unavailable', message: 'no quorum' }] as const,
    hex:
      '0000002b' + '03' + '0190' + '00000008' +
      '82' + 'a4' + '636f6465' + 'ab' + '756e617661696c61626c65' + 'a7' + '6d657373616765' + 'a9' + '6e6f2071756f72756d',
  },
  oneWay: {
    frame: [FrameKind.oneWay, MessageType.handoffBatch, 0, { partition: 3, data: Buffer.from('ab') }] as const,
    hex:
      '0000001c' + '04' + '02bd' + '00000000' + // kind one-way, type 701 handoffBatch, requestId 0
      '82' + 'a9' + '706172746974696f6e' + '03' + 'a4' + '64617461' + 'c4' + '02' + '6162', // {partition: 3, data: bin8 'ab'}
  },
  handshake: {
    frame: [FrameKind.handshake, MessageType.welcome, 0, {}] as const,
    hex: '00000008' + '05' + '0004' + '00000000' + '80', // kind handshake, type 4 welcome, {} (fixmap 0)
  },
};

function decodeAll(decoder: FrameDecoder, chunks: Buffer[]): Frame[] {
  const frames: Frame[] = [];
  for (const chunk of chunks) decoder.push(chunk, (frame) => frames.push(frame));
  return frames;
}

/** Cuts `bytes` into pieces of 1..maxPiece bytes. */
function split(bytes: Buffer, random: () => number, maxPiece: number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    const size = 1 + Math.floor(random() * maxPiece);
    pieces.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return pieces;
}

function expectProtocolError(action: () => void, pattern: RegExp): void {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(WireProtocolError);
  expect((thrown as Error).message).toMatch(pattern);
}

describe('frames', () => {
  for (const [name, fixture] of Object.entries(golden)) {
    test(`${name}: encodes to the documented golden bytes and decodes back`, () => {
      const [kind, type, requestId, body] = fixture.frame;
      const bytes = encodeFrame(kind, type, requestId, body);
      expect(bytes.toString('hex')).toBe(fixture.hex);
      const frames = decodeAll(new FrameDecoder(), [Buffer.from(fixture.hex, 'hex')]);
      expect(frames).toEqual([{ kind, type, requestId, body, bytes: bytes.length }]);
    });
  }

  test('the header is 11 bytes, big-endian', () => {
    const bytes = encodeFrame(FrameKind.request, 0x1234, 0x0a0b0c0d, null);
    expect(frameHeaderBytes).toBe(11);
    expect(bytes.toString('hex')).toBe('00000008' + '01' + '1234' + '0a0b0c0d' + 'c0');
  });

  test('frames split anywhere, or many in one chunk, decode the same', () => {
    const frames = Object.values(golden).map((fixture) => encodeFrame(...fixture.frame));
    frames.push(encodeFrame(FrameKind.oneWay, MessageType.listenEntries, 0, { pad: Buffer.alloc(100_000, 7) }));
    const stream = Buffer.concat([...frames, ...frames]);
    const expected = decodeAll(new FrameDecoder(), [stream]);
    expect(expected).toHaveLength(frames.length * 2);
    // Buffers compared as hex: vitest's deep equality walks them byte by byte, slowly.
    const summary = (decoded: Frame[]): string => decoded.map((frame) => JSON.stringify({ ...frame, body: encodeFrame(FrameKind.oneWay, 1, 0, frame.body).toString('hex') })).join('\n');
    const wanted = summary(expected);
    for (let seed = 1; seed <= 40; seed++) {
      const random = mulberry32(seed);
      const pieces = split(stream, random, seed % 2 === 0 ? 7 : 70_000);
      expect(summary(decodeAll(new FrameDecoder(), pieces)) === wanted, `seed ${seed}`).toBe(true);
    }
    expect(decodeAll(new FrameDecoder(), split(stream.subarray(0, 300), () => 0, 1))).toEqual(expected.slice(0, 5));
  });

  test('a length over the bound is refused as soon as its four bytes arrive, holding nothing', () => {
    const decoder = new FrameDecoder(1024);
    expectProtocolError(() => decoder.push(Buffer.from('ffffffff', 'hex'), () => {}), /exceeds the 1024-byte bound/);
    expect(decoder.bufferedBytes).toBeLessThanOrEqual(frameHeaderBytes);
    // and one byte at a time
    const slow = new FrameDecoder(1024);
    slow.push(Buffer.from('00', 'hex'), () => {});
    slow.push(Buffer.from('00', 'hex'), () => {});
    slow.push(Buffer.from('04', 'hex'), () => {});
    expectProtocolError(() => slow.push(Buffer.from('01', 'hex'), () => {}), /1029 bytes exceeds/);
    // a frame exactly at the bound passes
    const atBound = encodeFrame(FrameKind.oneWay, 1, 0, Buffer.alloc(1024 - frameHeaderBytes - 3));
    expect(atBound.length).toBe(1024);
    expect(decodeAll(new FrameDecoder(1024), [atBound])).toHaveLength(1);
  });

  test('an unknown kind, a bad requestId, a short length or a bad body is a protocol error', () => {
    expectProtocolError(() => new FrameDecoder().push(Buffer.from('0000000809', 'hex'), () => {}), /unknown frame kind 9/);
    expectProtocolError(() => new FrameDecoder().push(Buffer.from('000000080100010000000080', 'hex'), () => {}), /request frame with requestId 0/);
    expectProtocolError(() => new FrameDecoder().push(Buffer.from('000000080400010000000580', 'hex'), () => {}), /oneWay frame with requestId 5/);
    expectProtocolError(() => new FrameDecoder().push(Buffer.from('0000000704000100000000', 'hex'), () => {}), /below the smallest frame/);
    // two values where one is expected; a map cut short; a string cut short
    for (const body of ['c0c0', '82a161', 'd9ff41']) {
      const bytes = Buffer.from('000000' + (7 + body.length / 2).toString(16).padStart(2, '0') + '04000100000000' + body, 'hex');
      expectProtocolError(() => new FrameDecoder().push(bytes, () => {}), /not one msgpack value/);
    }
  });

  test('frames before a bad one are delivered; after it the decoder refuses everything', () => {
    const good = encodeFrame(FrameKind.oneWay, MessageType.heartbeat, 0, 1);
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    expectProtocolError(() => decoder.push(Buffer.concat([good, good, Buffer.from('00000008ee', 'hex')]), (frame) => frames.push(frame)), /kind 238/);
    expect(frames).toHaveLength(2);
    expectProtocolError(() => decoder.push(good, () => {}), /kind 238/);
  });

  test('random garbage never crashes the decoder nor makes it hold more than one bounded frame', () => {
    const random = mulberry32(99);
    for (let round = 0; round < 500; round++) {
      const decoder = new FrameDecoder(4096);
      const garbage = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 300) }, () => Math.floor(random() * 256)));
      try {
        decoder.push(garbage, () => {});
      } catch (error) {
        expect(error).toBeInstanceOf(WireProtocolError);
      }
      expect(decoder.bufferedBytes).toBeLessThanOrEqual(4096);
    }
  });

  test('a body too large for a frame is refused as too-large', () => {
    let thrown: unknown;
    try {
      encodeFrame(FrameKind.oneWay, MessageType.handoffBatch, 0, Buffer.alloc(2000), 1024);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(IorioError);
    expect((thrown as IorioError).code).toBe('too-large');
    expect((thrown as IorioError).message).toMatch(/handoffBatch frame of 2014 bytes exceeds the 1024-byte bound/);
  });

  test('requestId is set on requests, responses and errors only (a caller bug)', () => {
    expect(() => encodeFrame(FrameKind.request, 1, 0, null)).toThrow(/assertion/);
    expect(() => encodeFrame(FrameKind.oneWay, 1, 3, null)).toThrow(/assertion/);
    expect(() => encodeFrame(FrameKind.oneWay, 0x10000, 0, null)).toThrow(/assertion/);
  });
});

describe('message types', () => {
  test('numbers are stable: this list changes only by adding', () => {
    expect(Object.entries(MessageType)).toEqual(
      Object.entries({
        hello: 1, helloChallenge: 2, helloProof: 3, welcome: 4, refused: 5, ping: 10,
        ringPush: 100, ringPull: 101,
        joinRequest: 200, claimantStage: 210, claimantPlan: 211, claimantCommit: 212, claimantClear: 213, claimantStatus: 214,
        claimantJoin: 215, claimantDown: 216, claimantMemberUpdate: 217, claimantTransferComplete: 218,
        heartbeat: 300,
        forwardRequest: 400, streamAppend: 410, streamAppendAtomic: 411, streamRead: 412, streamLastSeq: 413, streamDelete: 414, streamInfo: 415,
        listenSubscribe: 500, listenUnsubscribe: 501, listenEntries: 510, listenTruncated: 511, listenEnd: 512,
        coverageListBuckets: 600, coverageListStreams: 601,
        handoffStart: 700, handoffBatch: 701, handoffBatchAck: 702, handoffDone: 703, handoffCancel: 704, handoffStatus: 705,
        metadataUsers: 800, metadataGrants: 801, metadataPolicies: 802, metadataSecret: 803, metadataChanges: 804, metadataCatchUp: 810,
        replicationPrepare: 1000, replicationPrepareOk: 1001, replicationCommit: 1002,
        replicationStartViewChange: 1010, replicationDoViewChange: 1011, replicationStartView: 1012,
        replicationHeartbeat: 1020, replicationLeaseGrant: 1021, replicationBatch: 1030, replicationStateStreams: 1031, replicationStateRecords: 1032, replicationStatus: 1033,
        replicationVerifyStreams: 1034, replicationVerifyDigests: 1035, replicationVerifyRepair: 1036,
      }),
    );
  });

  test('numbers are unique, fit u16, and replication stays in its reserved block', () => {
    const numbers = Object.values(MessageType);
    expect(new Set(numbers).size).toBe(numbers.length);
    for (const [name, type] of Object.entries(MessageType)) {
      expect(type).toBeGreaterThan(0);
      expect(type).toBeLessThanOrEqual(0xffff);
      const inBlock = type >= replicationTypeRange.first && type <= replicationTypeRange.last;
      expect(inBlock, name).toBe(name.startsWith('replication'));
    }
  });

  test('names for logs', () => {
    expect(messageTypeName(MessageType.handoffBatch)).toBe('handoffBatch');
    expect(messageTypeName(4242)).toBe('unknown(4242)');
  });
});
