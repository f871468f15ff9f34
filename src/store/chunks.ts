/**
 * Chunk files of one stream: `<stream dir>/<first seqnum, 20 digits>.chunk`,
 * records back to back (core/record.ts). Helpers to list, validate, index and
 * read them; the stream store owns when they are called.
 */
import fs from 'node:fs';
import path from 'node:path';
import { peekRecord, scanChunkRecords, scanToLastGood, decodeRecord, type DecodedRecord } from '../core/record.js';
import { sparseIndexStrideBytes } from '../core/limits.js';

const chunkPattern = /^(\d{20})\.chunk$/;

export function chunkFileName(firstSeq: number): string {
  return `${String(firstSeq).padStart(20, '0')}.chunk`;
}

export interface ChunkFile {
  readonly firstSeq: number;
  readonly bytes: number;
}

/** The chunk files of a stream folder, oldest first (none when the folder does not exist). */
export function listChunkFiles(directory: string): ChunkFile[] {
  let names: string[];
  try {
    names = fs.readdirSync(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const chunks: ChunkFile[] = [];
  for (const name of names) {
    const match = chunkPattern.exec(name);
    if (!match) continue;
    chunks.push({ firstSeq: Number(match[1]), bytes: fs.statSync(path.join(directory, name)).size });
  }
  return chunks.sort((a, b) => a.firstSeq - b.firstSeq);
}

export interface ValidationResult {
  /** Bytes of the file that hold good records. */
  readonly goodBytes: number;
  /** Seqnum of the last good record (firstSeq - 1 when none). */
  readonly lastSeq: number;
  /** Timestamp of the last good record, if any. */
  readonly lastMs: number | undefined;
  readonly stop: 'end' | 'short' | 'corrupt' | 'sequence';
}

/**
 * Checks a chunk's records from `offset` (where seqnum `expectedSeq` starts)
 * to the end of the file, stopping at the first short, corrupt or
 * out-of-sequence record.
 */
export function validateChunk(file: string, offset: number, expectedSeq: number): ValidationResult {
  const data = readFrom(file, offset);
  const scan = scanToLastGood(data, 0, expectedSeq, false);
  let lastMs: number | undefined;
  let lastSeq = expectedSeq - 1;
  if (scan.goodBytes > 0) {
    // Walk the good region once more for the last record's fields (headers only).
    let position = 0;
    let last: DecodedRecord | undefined;
    while (position < scan.goodBytes) {
      last = peekRecord(data, position)!;
      position += last.bytes;
    }
    lastSeq = last!.seq;
    lastMs = last!.t;
  }
  return { goodBytes: offset + scan.goodBytes, lastSeq, lastMs, stop: scan.stop };
}

function readFrom(file: string, offset: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const length = Math.max(0, size - offset);
    const buffer = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const read = fs.readSync(fd, buffer, done, length - done, offset + done);
      if (read === 0) break;
      done += read;
    }
    return buffer.subarray(0, done);
  } finally {
    fs.closeSync(fd);
  }
}

/** Points (seqnum, byte offset) roughly every `sparseIndexStrideBytes`, to seek without scanning. */
export class SparseIndex {
  readonly seqs: number[] = [];
  readonly offsets: number[] = [];
  /** Byte offset up to which the index has seen records. */
  coveredBytes = 0;
  lastSeq = 0;
  lastMs: number | undefined;

  add(seq: number, offset: number, recordBytes: number, t: number): void {
    const lastPoint = this.offsets.length > 0 ? this.offsets[this.offsets.length - 1]! : -Infinity;
    if (offset - lastPoint >= sparseIndexStrideBytes) {
      this.seqs.push(seq);
      this.offsets.push(offset);
    }
    this.coveredBytes = offset + recordBytes;
    this.lastSeq = seq;
    this.lastMs = t;
  }

  /** Offset of the indexed record at or before `seq` (0 when none). */
  floor(seq: number): { seq: number; offset: number } | undefined {
    let low = 0;
    let high = this.seqs.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (this.seqs[middle]! <= seq) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found < 0 ? undefined : { seq: this.seqs[found]!, offset: this.offsets[found]! };
  }
}

/**
 * Builds a chunk's sparse index by reading its record headers. It stops at
 * the first header out of sequence: past damage there are no index points,
 * and reads scan (and step over the damage) from the last one before it.
 */
export async function buildSparseIndex(file: string, bytes: number, firstSeq: number): Promise<SparseIndex> {
  const index = new SparseIndex();
  const handle = await fs.promises.open(file, 'r');
  try {
    const data = Buffer.allocUnsafe(bytes);
    const { bytesRead } = await handle.read(data, 0, bytes, 0);
    let offset = 0;
    let expected = firstSeq;
    while (offset < bytesRead) {
      const record = peekRecord(data.subarray(0, bytesRead), offset);
      if (!record || record.seq !== expected) break;
      index.add(record.seq, offset, record.bytes, record.t);
      offset += record.bytes;
      expected++;
    }
  } finally {
    await handle.close();
  }
  return index;
}

const readWindowBytes = 256 * 1024;

/**
 * Reads up to `countMax` records with seqnums in [startSeq, endSeq] from one
 * chunk, starting the scan at `offset` (a record boundary; the record there
 * has seqnum `offsetSeq`). Each record is checked against its checksum after
 * it is read back. A damaged record does not end the read: the rest of the
 * chunk is searched for the next intact record (core/record.ts
 * scanChunkRecords), so whatever follows damage is still served; the caller
 * sees the missing seqnums as a hole in what it got.
 */
export async function readChunkRange(
  fd: number,
  offset: number,
  offsetSeq: number,
  chunkBytes: number,
  startSeq: number,
  endSeq: number,
  countMax: number,
  into: DecodedRecord[],
): Promise<void> {
  let position = offset;
  let carry: Buffer = Buffer.alloc(0);
  let previousSeq = offsetSeq - 1;
  const take = (record: DecodedRecord): boolean => {
    previousSeq = record.seq;
    if (record.seq < startSeq) return true;
    if (record.seq > endSeq) return false;
    into.push({ ...record, payload: Buffer.from(record.payload) });
    return record.seq < endSeq && --countMax > 0;
  };
  while (position < chunkBytes) {
    const length = Math.min(readWindowBytes, chunkBytes - position);
    const window = Buffer.allocUnsafe(length);
    const bytesRead = await readAt(fd, window, position);
    if (bytesRead === 0) break;
    position += bytesRead;
    const data = carry.length > 0 ? Buffer.concat([carry, window.subarray(0, bytesRead)]) : window.subarray(0, bytesRead);
    let cursor = 0;
    while (cursor < data.length) {
      const result = decodeRecord(data, cursor);
      if (result.status === 'short' && position < chunkBytes) break;
      if (result.status !== 'ok' || result.record.seq !== previousSeq + 1) {
        const damagedAt = position - data.length + cursor;
        await readPastDamage(fd, damagedAt, chunkBytes, previousSeq, endSeq, take);
        return;
      }
      cursor += result.record.bytes;
      if (!take(result.record)) return;
    }
    carry = data.subarray(cursor);
  }
  if (carry.length > 0) {
    // The file ends inside a record: a truncated chunk. Nothing after it to find.
    return;
  }
}

/** The slow path once damage is met: the rest of the chunk read whole and searched record by record. */
async function readPastDamage(
  fd: number,
  from: number,
  chunkBytes: number,
  previousSeq: number,
  endSeq: number,
  take: (record: DecodedRecord) => boolean,
): Promise<void> {
  const rest = Buffer.allocUnsafe(Math.max(0, chunkBytes - from));
  let done = 0;
  while (done < rest.length) {
    const bytesRead = await readAt(fd, rest.subarray(done), from + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  for (const record of scanChunkRecords(rest.subarray(0, done), previousSeq, endSeq).records) {
    if (!take(record)) return;
  }
}

function readAt(fd: number, buffer: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buffer, 0, buffer.length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead)));
  });
}
