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
