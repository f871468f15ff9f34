import fs from 'node:fs';
import { open, type Database, type RootDatabase } from 'lmdb';

/**
 * The node's metadata store (lmdb at `<data>/meta`). One environment, one
 * named database per kind of record. Keys are arrays (lmdb orders them
 * element by element), values are structured-cloned with msgpackr.
 *
 * | db        | key                          | value |
 * |-----------|------------------------------|-------|
 * | settings  | string                       | node-wide settings (jwt secret, checkpoint position) |
 * | users     | username                     | { username, passwordHash, groups, createdMs } |
 * | grants    | [bucket, stream or '', kind ('u'/'g'), principal] | permission[] |
 * | policies  | [bucket, stream or '']       | { max_count?, max_bytes?, max_age_secs? } |
 * | streams   | [bucket, stream]             | per-stream checkpointed state (store/stream-log) |
 * | chunks    | [bucket, stream, firstSeq]   | closed-chunk summary { lastSeq, lastMs, bytes } |
 * | ring      | string                       | ring state (cluster) |
 */
export interface MetaStore {
  readonly root: RootDatabase;
  readonly settings: Database<any, string>;
  readonly users: Database<any, string>;
  readonly grants: Database<any, any[]>;
  readonly policies: Database<any, any[]>;
  readonly streams: Database<any, any[]>;
  readonly chunks: Database<any, any[]>;
  readonly ring: Database<any, string>;
  close(): Promise<void>;
}

export function openMeta(path: string): MetaStore {
  const root = open({ path, compression: false });
  const named = <K extends string | any[]>(name: string) => root.openDB<any, K>({ name });
  const meta: MetaStore = {
    root,
    settings: named<string>('settings'),
    users: named<string>('users'),
    grants: named<any[]>('grants'),
    policies: named<any[]>('policies'),
    streams: named<any[]>('streams'),
    chunks: named<any[]>('chunks'),
    ring: named<string>('ring'),
    close: () => root.close(),
  };
  return meta;
}

/**
 * LMDB's meta pages (lmdb-js's LMDB 1.0 layout, pinned by a test against a
 * real file): pages 0 and 1 each hold, after a 24-byte page header,
 *
 *   +0x00 u32 magic 0xBEEFC0DE   +0x04 u32 version
 *   +0x18 u32 page size (the free DB's md_pad)
 *   +0x78 u64 last page in use   +0x80 u64 txnid
 *
 * The meta with the higher txnid is current; a file shorter than its last
 * page is truncated, and mapping it would end in SIGBUS on first access.
 */
const lmdbMagic = 0xbeefc0de;
const lmdbMetaOffset = 0x18;
const lmdbPageSizeMin = 512;
const lmdbPageSizeMax = 65536;

interface LmdbMeta {
  readonly pageBytes: number;
  readonly lastPage: number;
  readonly txnid: number;
}

function readLmdbMeta(head: Buffer, pageOffset: number): LmdbMeta | undefined {
  const at = pageOffset + lmdbMetaOffset;
  if (head.length < at + 0x88 || head.readUInt32LE(at) !== lmdbMagic) return undefined;
  const pageBytes = head.readUInt32LE(at + 0x18);
  if (pageBytes < lmdbPageSizeMin || pageBytes > lmdbPageSizeMax || (pageBytes & (pageBytes - 1)) !== 0) return undefined;
  return { pageBytes, lastPage: Number(head.readBigUInt64LE(at + 0x78)), txnid: Number(head.readBigUInt64LE(at + 0x80)) };
}

/** Why an lmdb data file cannot be mapped safely, or undefined when its meta pages and size agree. */
export function lmdbFileProblem(file: string): string | undefined {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, 2 * lmdbPageSizeMax));
    fs.readSync(fd, head, 0, head.length, 0);
    const first = readLmdbMeta(head, 0);
    if (first === undefined) return 'not an LMDB file: no valid meta page at its start';
    const second = readLmdbMeta(head, first.pageBytes);
    const current = second !== undefined && second.txnid > first.txnid ? second : first;
    const needed = (current.lastPage + 1) * current.pageBytes;
    if (size < Math.max(needed, 2 * first.pageBytes)) return `truncated: ${size} bytes, its last committed page ends at byte ${needed}`;
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}
