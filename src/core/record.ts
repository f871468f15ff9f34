/**
 * Chunk record layout (all integers little-endian):
 *
 *   offset  size  field
 *   0       4     u32 length      payload length in bytes
 *   4       4     u32 crc32       CRC-32 (zlib polynomial) over bytes 8 .. end of payload
 *   8       8     u64 seqnum
 *   16      8     u64 timestamp   ms since the Unix epoch
 *   24      4     u32 epoch       replication epoch the entry was written in
 *   28      len   payload         the entry's JSON text, UTF-8
 *
 * A record is `recordHeaderBytes + length` bytes long. A chunk file is records
 * back to back, nothing else: its name gives the first seqnum, and seqnums
 * inside increase by one. Recovery keeps records up to the first one that is
 * short, fails its checksum or breaks the seqnum sequence, and truncates there.
 *
 * Commit-log frame layout (node-wide write-ahead log, store/commit-log.ts):
 *
 *   0       4     u32 bodyLength
 *   4       4     u32 crc32 over the segment field and the body's header
 *                 bytes: everything but the appended records, which carry
 *                 their own checksums (so the hot path checksums each
 *                 payload once, not twice)
 *   8       4     u32 segment     id of the log segment the frame was written
 *                 to: a recycled segment's old frames name an older one, so
 *                 replay knows where the new frames end
 *   12      ..    body:
 *                 u16 sectionCount
 *                 per section:
 *                   u8  op            1 = append records, 2 = delete stream
 *                   u16 partition
 *                   u16 bucketLength, bucket (UTF-8)
 *                   u16 streamLength, stream (UTF-8)
 *                   op 1: u32 recordsBytes, then chunk records as above
 *                   op 2: u64 lastSeq (the stream's last seqnum, kept as a tombstone)
 *                   op 4: nothing more (empty names): drop every stream
 *                         of the partition (its new owner took over)
 *                   op 3: u64 previousSegmentBytes (partition 0, empty names):
 *                         the first frame of every segment, alone in its
 *                         frame: where the frames of the segment before it
 *                         end. Replay then knows what of that segment was
 *                         written before this one began (damage inside it
 *                         is a loss to report; bytes after it were never
 *                         acknowledged).
 *
 * A frame is the unit of atomicity: a PATCH writes its stream and the
 * `-$patch` log in one frame, so recovery replays both or neither. A frame is
 * good only if its header checksum matches and every record of every section
 * is whole, checksums right, and fills its section exactly.
 */
import { crc32 } from 'node:zlib';
import { assert } from './errors.js';

export const recordHeaderBytes = 28;
export const frameHeaderBytes = 12;

export interface DecodedRecord {
  readonly seq: number;
  readonly t: number;
  readonly epoch: number;
  /** A view into the source buffer. */
  readonly payload: Buffer;
  /** Total bytes of the record, header included. */
  readonly bytes: number;
}

export function recordBytes(payloadBytes: number): number {
  return recordHeaderBytes + payloadBytes;
}

/** Encodes one record into `target` at `offset`; returns the offset after it. */
export function encodeRecordInto(target: Buffer, offset: number, seq: number, t: number, epoch: number, payload: Buffer): number {
  assert(Number.isSafeInteger(seq) && seq >= 1, 'seqnum is a positive safe integer');
  assert(Number.isSafeInteger(t) && t >= 0, 'timestamp is a non-negative safe integer');
  assert(Number.isInteger(epoch) && epoch >= 0 && epoch <= 0xffffffff, 'epoch fits u32');
  const end = offset + recordHeaderBytes + payload.length;
  assert(end <= target.length, 'record fits its buffer');
  target.writeUInt32LE(payload.length, offset);
  writeU64(target, offset + 8, seq);
  writeU64(target, offset + 16, t);
  target.writeUInt32LE(epoch, offset + 24);
  payload.copy(target, offset + recordHeaderBytes);
  target.writeUInt32LE(crc32(target.subarray(offset + 8, end)), offset + 4);
  return end;
}

export function encodeRecord(seq: number, t: number, epoch: number, payload: Buffer): Buffer {
  const buffer = Buffer.allocUnsafe(recordHeaderBytes + payload.length);
  encodeRecordInto(buffer, 0, seq, t, epoch, payload);
  return buffer;
}

export const DecodeStatus = {
  ok: 'ok',
  /** Fewer bytes than the header or the payload needs: a torn write at the end. */
  short: 'short',
  /** The checksum does not match: corruption. */
  corrupt: 'corrupt',
} as const;
export type DecodeStatus = (typeof DecodeStatus)[keyof typeof DecodeStatus];

export type DecodeResult = { status: 'ok'; record: DecodedRecord } | { status: 'short' | 'corrupt' };

/** Decodes the record at `offset`, checking its checksum. */
export function decodeRecord(source: Buffer, offset: number, payloadBytesMax = 0xffffffff): DecodeResult {
  if (source.length - offset < recordHeaderBytes) return { status: 'short' };
  const length = source.readUInt32LE(offset);
  if (length > payloadBytesMax) return { status: 'corrupt' };
  const end = offset + recordHeaderBytes + length;
  if (end > source.length) return { status: 'short' };
  const expected = source.readUInt32LE(offset + 4);
  if (crc32(source.subarray(offset + 8, end)) !== expected) return { status: 'corrupt' };
  return { status: 'ok', record: readFields(source, offset, length) };
}

/** Reads a record's fields without checking the checksum (index building over verified data). */
export function peekRecord(source: Buffer, offset: number): DecodedRecord | undefined {
  if (source.length - offset < recordHeaderBytes) return undefined;
  const length = source.readUInt32LE(offset);
  if (offset + recordHeaderBytes + length > source.length) return undefined;
  return readFields(source, offset, length);
}

/** u64 little-endian as two u32 halves: exact for safe integers, and no BigInt on the hot path. */
function writeU64(target: Buffer, offset: number, value: number): void {
  target.writeUInt32LE(value % 0x100000000, offset);
  target.writeUInt32LE(Math.floor(value / 0x100000000), offset + 4);
}

function readU64(source: Buffer, offset: number): number {
  return source.readUInt32LE(offset) + source.readUInt32LE(offset + 4) * 0x100000000;
}

function readFields(source: Buffer, offset: number, length: number): DecodedRecord {
  return {
    seq: readU64(source, offset + 8),
    t: readU64(source, offset + 16),
    epoch: source.readUInt32LE(offset + 24),
    payload: source.subarray(offset + recordHeaderBytes, offset + recordHeaderBytes + length),
    bytes: recordHeaderBytes + length,
  };
}

export interface ScanResult {
  readonly records: DecodedRecord[];
  /** Byte offset just after the last good record. */
  readonly goodBytes: number;
  /** Why the scan stopped before the end of the buffer, if it did. */
  readonly stop: 'end' | 'short' | 'corrupt' | 'sequence';
}

/**
 * Scans records from `offset`, expecting seqnums `expectedSeq`, `expectedSeq + 1`, ...
 * (pass 0 to accept any first seqnum), and stops at the first record that is
 * short, corrupt or out of sequence.
 */
export function scanToLastGood(source: Buffer, offset: number, expectedSeq: number, keepRecords = true): ScanResult {
  const records: DecodedRecord[] = [];
  let position = offset;
  let next = expectedSeq;
  while (position < source.length) {
    const result = decodeRecord(source, position);
    if (result.status !== 'ok') return { records, goodBytes: position, stop: result.status };
    if (next !== 0 && result.record.seq !== next) return { records, goodBytes: position, stop: 'sequence' };
    if (keepRecords) records.push(result.record);
    next = result.record.seq + 1;
    position += result.record.bytes;
  }
  return { records, goodBytes: position, stop: 'end' };
}

/**
 * True when `source` is whole records back to back, each with a matching
 * checksum, seqnums increasing by one. The lean twin of scanToLastGood for
 * recovery's hot loop: it makes no objects.
 */
export function isWholeRecordRun(source: Buffer): boolean {
  let offset = 0;
  let previous = -1;
  while (offset < source.length) {
    if (source.length - offset < recordHeaderBytes) return false;
    const end = offset + recordHeaderBytes + source.readUInt32LE(offset);
    if (end > source.length) return false;
    if (crc32(source.subarray(offset + 8, end)) !== source.readUInt32LE(offset + 4)) return false;
    const seq = readU64(source, offset + 8);
    if (previous >= 0 && seq !== previous + 1) return false;
    previous = seq;
    offset = end;
  }
  return true;
}

/**
 * The offset of the next intact record at or after `from` whose seqnum lies
 * in (afterSeq, maxSeq], if any: how a reader gets past a damaged record
 * whose own length field cannot be trusted. Records are not aligned, so
 * every byte is a candidate; the seqnum range and the checksum decide.
 */
export function resyncRecord(source: Buffer, from: number, afterSeq: number, maxSeq: number): number | undefined {
  for (let offset = from; offset + recordHeaderBytes <= source.length; offset++) {
    const seq = readU64(source, offset + 8);
    if (seq <= afterSeq || seq > maxSeq) continue;
    const end = offset + recordHeaderBytes + source.readUInt32LE(offset);
    if (end > source.length) continue;
    if (crc32(source.subarray(offset + 8, end)) === source.readUInt32LE(offset + 4)) return offset;
  }
  return undefined;
}

/** A run of seqnums that a chunk should hold and does not (damaged, truncated or lost). */
export interface SeqRange {
  readonly from: number;
  readonly to: number;
}

export interface ChunkScan {
  /** Intact records, ascending (payloads are views into the source). */
  readonly records: DecodedRecord[];
  /** Seqnums between `afterSeq` and the last intact record (or `maxSeq` for a damaged end) that are not there. */
  readonly missing: SeqRange[];
  /** Byte offset after the last intact record. */
  readonly goodBytes: number;
  /** The scan ended at bytes that are not an intact record (a torn or damaged end). */
  readonly damagedEnd: boolean;
}

/**
 * Reads every intact record of a chunk's bytes with seqnum in (afterSeq,
 * maxSeq], stepping over damaged records instead of stopping at the first
 * one: what follows a damaged record is still found and kept.
 */
export function scanChunkRecords(source: Buffer, afterSeq: number, maxSeq: number): ChunkScan {
  const records: DecodedRecord[] = [];
  const missing: SeqRange[] = [];
  let previous = afterSeq;
  let offset = 0;
  let goodBytes = 0;
  while (offset < source.length) {
    const result = decodeRecord(source, offset);
    if (result.status === 'ok' && result.record.seq > previous && result.record.seq <= maxSeq) {
      const record = result.record;
      if (record.seq > previous + 1) missing.push({ from: previous + 1, to: record.seq - 1 });
      records.push(record);
      previous = record.seq;
      offset += record.bytes;
      goodBytes = offset;
      continue;
    }
    const next = resyncRecord(source, offset + 1, previous, maxSeq);
    if (next === undefined) {
      if (maxSeq > previous && maxSeq !== Number.MAX_SAFE_INTEGER) missing.push({ from: previous + 1, to: maxSeq });
      return { records, missing, goodBytes, damagedEnd: true };
    }
    offset = next;
  }
  return { records, missing, goodBytes, damagedEnd: false };
}

/** The seqnum of the record at `offset` (no checks: the caller verified the records). */
export function recordSeqAt(source: Buffer, offset: number): number {
  return readU64(source, offset + 8);
}

/** The total bytes of the record at `offset` (no checks). */
export function recordBytesAt(source: Buffer, offset: number): number {
  return recordHeaderBytes + source.readUInt32LE(offset);
}

// ---------------------------------------------------------------------------
// Commit-log frames

export const FrameOp = { append: 1, delete: 2, segmentStart: 3, dropPartition: 4 } as const;
export type FrameOp = (typeof FrameOp)[keyof typeof FrameOp];

/** Encoded size of a segment-start section: op, partition, two empty names, u64. */
const segmentStartSectionBytes = 1 + 2 + 2 + 2 + 8;

export type FrameSection =
  | { op: typeof FrameOp.append; partition: number; bucket: string; stream: string; records: Buffer }
  | { op: typeof FrameOp.delete; partition: number; bucket: string; stream: string; lastSeq: number }
  | { op: typeof FrameOp.dropPartition; partition: number; bucket: ''; stream: '' };

function sectionBytes(section: FrameSection): number {
  const names = 1 + 2 + 2 + Buffer.byteLength(section.bucket) + 2 + Buffer.byteLength(section.stream);
  if (section.op === FrameOp.dropPartition) return names;
  return names + (section.op === FrameOp.append ? 4 + section.records.length : 8);
}

export interface EncodedFrame {
  /** To be written back to back: header bytes, and each append section's records as they are (no copy). */
  readonly pieces: Buffer[];
  readonly bytes: number;
  /** Every byte of the frame but the records; `sealFrame` fills in its segment and checksum. */
  readonly header: Buffer;
}

/** Encodes one frame, unsealed: the segment it goes to is known only when it is written. */
export function encodeFramePieces(sections: readonly FrameSection[]): EncodedFrame {
  assert(sections.length > 0 && sections.length <= 0xffff, 'a frame holds 1..65535 sections');
  let headerBytes = frameHeaderBytes + 2;
  let bodyBytes = 2;
  for (const section of sections) {
    const bytes = sectionBytes(section);
    bodyBytes += bytes;
    headerBytes += section.op === FrameOp.append ? bytes - section.records.length : bytes;
  }
  const header = Buffer.allocUnsafe(headerBytes);
  header.writeUInt32LE(bodyBytes, 0);
  let offset = frameHeaderBytes;
  header.writeUInt16LE(sections.length, offset);
  offset += 2;
  const pieces: Buffer[] = [];
  let pieceStart = 0;
  for (const section of sections) {
    header.writeUInt8(section.op, offset);
    header.writeUInt16LE(section.partition, offset + 1);
    offset = writeName(header, offset + 3, section.bucket);
    offset = writeName(header, offset, section.stream);
    if (section.op === FrameOp.append) {
      header.writeUInt32LE(section.records.length, offset);
      offset += 4;
      pieces.push(header.subarray(pieceStart, offset), section.records);
      pieceStart = offset;
    } else if (section.op === FrameOp.delete) {
      header.writeBigUInt64LE(BigInt(section.lastSeq), offset);
      offset += 8;
    }
  }
  assert(offset === header.length, 'frame header encoded to its computed size');
  if (pieceStart < offset) pieces.push(header.subarray(pieceStart, offset));
  return { pieces, bytes: frameHeaderBytes + bodyBytes, header };
}

/** Stamps the frame with the segment it is written to, and its checksum. */
export function sealFrame(frame: EncodedFrame, segment: number): void {
  assert(Number.isInteger(segment) && segment >= 0 && segment <= 0xffffffff, 'segment id fits u32');
  frame.header.writeUInt32LE(segment, 8);
  frame.header.writeUInt32LE(crc32(frame.header.subarray(8)), 4);
}

/** Encodes and seals one frame into one buffer. */
export function encodeFrame(sections: readonly FrameSection[], segment = 0): Buffer {
  const frame = encodeFramePieces(sections);
  sealFrame(frame, segment);
  return Buffer.concat(frame.pieces, frame.bytes);
}

function writeName(target: Buffer, offset: number, name: string): number {
  const length = target.write(name, offset + 2, 'utf8');
  target.writeUInt16LE(length, offset);
  return offset + 2 + length;
}

export type FrameDecodeResult =
  /** `previousSegmentBytes`: set for a segment-start frame (whose sections are empty). */
  | { status: 'ok'; sections: FrameSection[]; bytes: number; previousSegmentBytes?: number }
  /** Zeros (a preallocated segment's unused space) or a frame of an older use of a recycled segment: the frames end here. */
  | { status: 'end' }
  | { status: 'short' | 'corrupt' };

/**
 * Decodes the frame at `offset` of segment `segment`, checking its header
 * checksum, its structure and every record's checksum.
 */
export function decodeFrame(source: Buffer, offset: number, frameBytesMax: number, segment: number): FrameDecodeResult {
  if (source.length - offset < frameHeaderBytes) return { status: 'short' };
  const bodyBytes = source.readUInt32LE(offset);
  const isZero = bodyBytes === 0 && source.readUInt32LE(offset + 4) === 0 && source.readUInt32LE(offset + 8) === 0;
  if (isZero || (source.readUInt32LE(offset + 8) !== segment && frameChecksumMatches(source, offset, frameBytesMax))) return { status: 'end' };
  if (bodyBytes < 2 || bodyBytes > frameBytesMax) return { status: 'corrupt' };
  const end = offset + frameHeaderBytes + bodyBytes;
  if (end > source.length) return { status: 'short' };
  if (source.readUInt32LE(offset + 8) !== segment) return { status: 'corrupt' };
  const start: { previousSegmentBytes?: number } = {};
  const sections = decodeSections(source, offset + frameHeaderBytes, end, source.readUInt32LE(offset + 4), crc32(source.subarray(offset + 8, offset + 12)), start);
  if (sections === undefined) return { status: 'corrupt' };
  if (start.previousSegmentBytes !== undefined) return { status: 'ok', sections, bytes: frameHeaderBytes + bodyBytes, previousSegmentBytes: start.previousSegmentBytes };
  return { status: 'ok', sections, bytes: frameHeaderBytes + bodyBytes };
}

/** A segment's first frame: where the frames of the segment before it end (unsealed, like encodeFramePieces). */
export function encodeSegmentStartPieces(previousSegmentBytes: number): EncodedFrame {
  assert(Number.isSafeInteger(previousSegmentBytes) && previousSegmentBytes >= 0, 'a segment length is a non-negative safe integer');
  const header = Buffer.alloc(frameHeaderBytes + 2 + segmentStartSectionBytes);
  header.writeUInt32LE(header.length - frameHeaderBytes, 0);
  header.writeUInt16LE(1, frameHeaderBytes);
  header.writeUInt8(FrameOp.segmentStart, frameHeaderBytes + 2);
  header.writeBigUInt64LE(BigInt(previousSegmentBytes), header.length - 8);
  return { pieces: [header], bytes: header.length, header };
}

/** Whether the frame at `offset` is a whole frame of some segment (used to tell a recycled segment's old frames from a torn one). */
function frameChecksumMatches(source: Buffer, offset: number, frameBytesMax: number): boolean {
  const bodyBytes = source.readUInt32LE(offset);
  if (bodyBytes < 2 || bodyBytes > frameBytesMax || offset + frameHeaderBytes + bodyBytes > source.length) return false;
  const end = offset + frameHeaderBytes + bodyBytes;
  return decodeSections(source, offset + frameHeaderBytes, end, source.readUInt32LE(offset + 4), crc32(source.subarray(offset + 8, offset + 12))) !== undefined;
}

function decodeSections(
  source: Buffer,
  start: number,
  end: number,
  expectedCrc: number,
  initialCrc: number,
  segmentStart: { previousSegmentBytes?: number } = {},
): FrameSection[] | undefined {
  const count = source.readUInt16LE(start);
  const sections: FrameSection[] = [];
  let offset = start + 2;
  let headerStart = start;
  let crc = initialCrc;
  for (let index = 0; index < count; index++) {
    if (offset + 3 > end) return undefined;
    const op = source.readUInt8(offset);
    const partition = source.readUInt16LE(offset + 1);
    const bucket = readName(source, offset + 3, end);
    if (bucket === undefined) return undefined;
    const stream = readName(source, bucket.next, end);
    if (stream === undefined) return undefined;
    offset = stream.next;
    if (op === FrameOp.append) {
      if (offset + 4 > end) return undefined;
      const length = source.readUInt32LE(offset);
      offset += 4;
      if (offset + length > end) return undefined;
      crc = crc32(source.subarray(headerStart, offset), crc);
      const records = source.subarray(offset, offset + length);
      if (!isWholeRecordRun(records)) return undefined;
      sections.push({ op, partition, bucket: bucket.name, stream: stream.name, records });
      offset += length;
      headerStart = offset;
    } else if (op === FrameOp.delete) {
      if (offset + 8 > end) return undefined;
      sections.push({ op, partition, bucket: bucket.name, stream: stream.name, lastSeq: Number(source.readBigUInt64LE(offset)) });
      offset += 8;
    } else if (op === FrameOp.dropPartition && bucket.name === '' && stream.name === '') {
      sections.push({ op, partition, bucket: '', stream: '' });
    } else if (op === FrameOp.segmentStart && count === 1 && partition === 0 && bucket.name === '' && stream.name === '') {
      if (offset + 8 > end) return undefined;
      segmentStart.previousSegmentBytes = Number(source.readBigUInt64LE(offset));
      offset += 8;
    } else {
      return undefined;
    }
  }
  if (offset !== end) return undefined;
  crc = crc32(source.subarray(headerStart, end), crc);
  return crc === expectedCrc ? sections : undefined;
}

function readName(source: Buffer, offset: number, end: number): { name: string; next: number } | undefined {
  if (offset + 2 > end) return undefined;
  const length = source.readUInt16LE(offset);
  if (offset + 2 + length > end) return undefined;
  return { name: source.toString('utf8', offset + 2, offset + 2 + length), next: offset + 2 + length };
}
