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
 * | groups    | group name                   | { name, createdMs } (groups made by an admin; memberships are in users) |
 * | policies  | [bucket, stream or '']       | { max_count?, max_bytes?, max_age_secs? } |
 * | streams   | [bucket, stream]             | per-stream checkpointed state (store/stream-log) |
 * | chunks    | [bucket, stream, firstSeq]   | closed-chunk summary { lastSeq, lastMs, bytes } |
 * | ring      | string                       | ring state (cluster) |
 * | versions  | [table, ...key]              | cluster metadata: the version of each replicated record (cluster/metadata.ts) |
 *
 * users, groups, grants and policies are cluster metadata: every write to them is
 * announced on `changes` (the cluster replicates it), except the writes
 * made inside `quietly` (a replica applying another node's change).
 */
export interface MetaStore {
  readonly root: RootDatabase;
  readonly settings: Database<any, string>;
  readonly users: Database<any, string>;
  readonly grants: Database<any, any[]>;
  readonly groups: Database<any, string>;
  readonly policies: Database<any, any[]>;
  readonly streams: Database<any, any[]>;
  readonly chunks: Database<any, any[]>;
  readonly ring: Database<any, string>;
  readonly versions: Database<any, any[]>;
  readonly changes: MetaChanges;
  close(): Promise<void>;
}

/** meta.settings key of the generated session secret (cluster metadata too: a cluster shares one). */
export const sessionSecretSettingKey = 'auth.secret';

/** The replicated tables. */
export const ReplicatedTable = { users: 'users', grants: 'grants', policies: 'policies', groups: 'groups' } as const;
export type ReplicatedTable = (typeof ReplicatedTable)[keyof typeof ReplicatedTable];

/** One write to a replicated table: `value` undefined for a removal. */
export interface MetaChange {
  readonly table: ReplicatedTable;
  readonly key: string | unknown[];
  readonly value: unknown;
}

export class MetaChanges {
  private readonly listeners = new Set<(change: MetaChange) => void>();
  private readonly remoteListeners = new Set<(change: MetaChange | undefined) => void>();
  private readonly secretListeners = new Set<(secret: string) => void>();
  private quiet = 0;

  /** Changes another node made, applied here (undefined: many at once); caches built on the tables drop them. */
  onRemote(listener: (change: MetaChange | undefined) => void): () => void {
    this.remoteListeners.add(listener);
    return () => this.remoteListeners.delete(listener);
  }

  emitRemote(change: MetaChange | undefined): void {
    for (const listener of this.remoteListeners) listener(change);
  }

  /** The cluster's session secret replaced this node's (it joined a cluster). */
  onSecret(listener: (secret: string) => void): () => void {
    this.secretListeners.add(listener);
    return () => this.secretListeners.delete(listener);
  }

  emitSecret(secret: string): void {
    for (const listener of this.secretListeners) listener(secret);
  }

  on(listener: (change: MetaChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Runs `write` without announcing its changes (they came from another node). */
  quietly<T>(write: () => T): T {
    this.quiet++;
    try {
      return write();
    } finally {
      this.quiet--;
    }
  }

  emit(change: MetaChange): void {
    if (this.quiet > 0) return;
    for (const listener of this.listeners) listener(change);
  }
}

/** The database, with each write announced on `changes` once it is made. */
function announced<K extends string | any[]>(db: Database<any, K>, table: ReplicatedTable, changes: MetaChanges): Database<any, K> {
  const methods: Record<string, (target: Database<any, K>) => unknown> = {
    putSync: (target) => (key: K, value: unknown) => {
      const done = target.putSync(key, value);
      changes.emit({ table, key, value });
      return done;
    },
    removeSync: (target) => (key: K) => {
      const done = target.removeSync(key);
      if (done) changes.emit({ table, key, value: undefined });
      return done;
    },
    put: (target) => async (key: K, value: unknown) => {
      const done = await target.put(key, value);
      changes.emit({ table, key, value });
      return done;
    },
    remove: (target) => async (key: K) => {
      const done = await target.remove(key);
      if (done) changes.emit({ table, key, value: undefined });
      return done;
    },
  };
  return new Proxy(db, {
    get(target, property, receiver) {
      const wrap = typeof property === 'string' ? methods[property] : undefined;
      if (wrap !== undefined) return wrap(target);
      const value = Reflect.get(target, property, receiver) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

export function openMeta(path: string): MetaStore {
  const root = open({ path, compression: false });
  const named = <K extends string | any[]>(name: string) => root.openDB<any, K>({ name });
  const changes = new MetaChanges();
  const meta: MetaStore = {
    root,
    settings: named<string>('settings'),
    users: announced(named<string>('users'), ReplicatedTable.users, changes),
    grants: announced(named<any[]>('grants'), ReplicatedTable.grants, changes),
    groups: announced(named<string>('groups'), ReplicatedTable.groups, changes),
    policies: announced(named<any[]>('policies'), ReplicatedTable.policies, changes),
    versions: named<any[]>('versions'),
    changes,
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
