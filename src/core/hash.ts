import { createHash } from 'node:crypto';
import { hashStreamName } from './names.js';

/** Ring position: the first 8 bytes of SHA-1 over `bucket \0 stream`, as an unsigned 64-bit integer. */
export function ringPosition(bucket: string, stream: string): bigint {
  const digest = createHash('sha1').update(bucket).update('\0').update(hashStreamName(stream)).digest();
  return digest.readBigUInt64BE(0);
}

/** The partition (0..ringSize-1) owning a position; ringSize is a power of two. */
export function partitionOfPosition(position: bigint, ringSize: number): number {
  const width = 2n ** 64n / BigInt(ringSize);
  return Number(position / width);
}

export function partitionOf(bucket: string, stream: string, ringSize: number): number {
  return partitionOfPosition(ringPosition(bucket, stream), ringSize);
}
