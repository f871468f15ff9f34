import { describe, expect, test } from 'vitest';
import {
  decodeFrame,
  decodeRecord,
  encodeFrame,
  encodeRecord,
  FrameOp,
  recordHeaderBytes,
  scanToLastGood,
} from '../../src/core/record.js';

// seq 42, t 1700000000123, epoch 3, payload {"a":1}
const goldenRecordHex =
  '07000000' + // u32 length = 7
  'ea16ed05' + // u32 crc32 over seq..payload
  '2a00000000000000' + // u64 seqnum = 42
  '7b68e5cf8b010000' + // u64 timestamp = 1700000000123
  '03000000' + // u32 epoch = 3
  '7b2261223a317d'; // {"a":1}

describe('chunk record', () => {
  test('encodes to the documented golden bytes', () => {
    const record = encodeRecord(42, 1_700_000_000_123, 3, Buffer.from('{"a":1}'));
    expect(record.toString('hex')).toBe(goldenRecordHex);
    expect(record.length).toBe(recordHeaderBytes + 7);
  });

  test('decodes the golden bytes', () => {
    const result = decodeRecord(Buffer.from(goldenRecordHex, 'hex'), 0);
    expect(result.status).toBe('ok');
    if (result.status !== 'ok') return;
    expect(result.record.seq).toBe(42);
    expect(result.record.t).toBe(1_700_000_000_123);
    expect(result.record.epoch).toBe(3);
    expect(result.record.payload.toString()).toBe('{"a":1}');
    expect(result.record.bytes).toBe(35);
  });

  test('a flipped bit anywhere after the checksum field is detected', () => {
    const golden = Buffer.from(goldenRecordHex, 'hex');
    for (let byte = 8; byte < golden.length; byte++) {
      for (const bit of [0, 3, 7]) {
        const damaged = Buffer.from(golden);
        damaged[byte]! ^= 1 << bit;
        expect(decodeRecord(damaged, 0).status, `byte ${byte} bit ${bit}`).toBe('corrupt');
      }
    }
    const badChecksum = Buffer.from(golden);
    badChecksum[5]! ^= 0xff;
    expect(decodeRecord(badChecksum, 0).status).toBe('corrupt');
  });

  test('a record cut short anywhere is short, not corrupt', () => {
    const golden = Buffer.from(goldenRecordHex, 'hex');
    for (let cut = 0; cut < golden.length; cut++) {
      expect(decodeRecord(golden.subarray(0, cut), 0).status).toBe('short');
    }
  });

  test('scanToLastGood stops at the first record out of sequence', () => {
    const records = Buffer.concat([
      encodeRecord(5, 1, 0, Buffer.from('1')),
      encodeRecord(6, 2, 0, Buffer.from('2')),
      encodeRecord(8, 3, 0, Buffer.from('3')),
    ]);
    const scan = scanToLastGood(records, 0, 5);
    expect(scan.records.map((record) => record.seq)).toEqual([5, 6]);
    expect(scan.stop).toBe('sequence');
    expect(scan.goodBytes).toBe(2 * (recordHeaderBytes + 1));
  });

  test('refuses seqnums and timestamps that do not fit', () => {
    expect(() => encodeRecord(0, 1, 0, Buffer.from('1'))).toThrow(/assertion/);
    expect(() => encodeRecord(2 ** 53, 1, 0, Buffer.from('1'))).toThrow(/assertion/);
    expect(() => encodeRecord(1, -1, 0, Buffer.from('1'))).toThrow(/assertion/);
    expect(() => encodeRecord(1, 1, 2 ** 32, Buffer.from('1'))).toThrow(/assertion/);
  });
});

describe('commit-log frame', () => {
  const record = Buffer.from(goldenRecordHex, 'hex');
  const goldenFrameHex =
    '4a000000' + // u32 body length = 2 + 48 + 24 = 74
    '________' + // u32 crc32 over the segment field and the body's header bytes (checked separately)
    '07000000' + // u32 segment = 7
    '0200' + // u16 sections = 2
    '01' + '0500' + '0100' + '62' + '0100' + '73' + '23000000' + goldenRecordHex + // append to b/s in partition 5
    '02' + '0500' + '0100' + '62' + '0800' + '73' + '2d247061746368' + '2a00000000000000'; // delete b/s-$patch at 42

  test('encodes to the documented golden bytes and decodes back', () => {
    const frame = encodeFrame(
      [
        { op: FrameOp.append, partition: 5, bucket: 'b', stream: 's', records: record },
        { op: FrameOp.delete, partition: 5, bucket: 'b', stream: 's-$patch', lastSeq: 42 },
      ],
      7,
    );
    const hex = frame.toString('hex');
    expect(hex.slice(0, 8) + '________' + hex.slice(16)).toBe(goldenFrameHex);
    const decoded = decodeFrame(frame, 0, 1 << 20, 7);
    expect(decoded.status).toBe('ok');
    if (decoded.status !== 'ok') return;
    expect(decoded.bytes).toBe(frame.length);
    expect(decoded.sections).toHaveLength(2);
    const [append, remove] = decoded.sections;
    expect(append).toMatchObject({ op: FrameOp.append, partition: 5, bucket: 'b', stream: 's' });
    expect(append!.op === FrameOp.append && append!.records.equals(record)).toBe(true);
    expect(remove).toEqual({ op: FrameOp.delete, partition: 5, bucket: 'b', stream: 's-$patch', lastSeq: 42 });
  });

  test('torn and corrupt frames are told apart', () => {
    const frame = encodeFrame([{ op: FrameOp.append, partition: 0, bucket: 'b', stream: 's', records: record }], 3);
    for (let cut = 0; cut < frame.length; cut++) expect(decodeFrame(frame.subarray(0, cut), 0, 1 << 20, 3).status).toBe('short');
    for (let byte = 4; byte < frame.length; byte++) {
      const damaged = Buffer.from(frame);
      damaged[byte]! ^= 0x10;
      expect(decodeFrame(damaged, 0, 1 << 20, 3).status, `byte ${byte}`).toBe('corrupt');
    }
    const huge = Buffer.from(frame);
    huge.writeUInt32LE(0xfffffff0, 0);
    expect(decodeFrame(huge, 0, 1 << 20, 3).status).toBe('corrupt');
  });

  test('zeros and whole frames of an older segment end the frames; a torn frame does not', () => {
    expect(decodeFrame(Buffer.alloc(64), 0, 1 << 20, 3).status).toBe('end');
    const older = encodeFrame([{ op: FrameOp.append, partition: 0, bucket: 'b', stream: 's', records: record }], 2);
    expect(decodeFrame(older, 0, 1 << 20, 3).status).toBe('end');
    expect(decodeFrame(older, 0, 1 << 20, 2).status).toBe('ok');
    const tornOlder = Buffer.from(older);
    tornOlder[tornOlder.length - 1]! ^= 0x01;
    expect(decodeFrame(tornOlder, 0, 1 << 20, 3).status).toBe('corrupt');
  });
});
