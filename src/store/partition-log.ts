/**
 * The replication log of each partition this node holds a replica of
 * (DESIGN §7b): the ops a partition's group orders, from the compaction
 * point on, with the replica's promise and normal epoch. It is what
 * `ReplicaStorage` writes and what recovery hands back as `DurableState`.
 *
 * lmdb at `<data>/replication` (its own environment, so its syncs never wait
 * on the metadata store's):
 *
 * | db       | key               | value |
 * |----------|-------------------|-------|
 * | entries  | [partition, op]   | [epoch, writes, config, t, key, keyDigest, payload, crc] |
 * | state    | partition         | { promised, normalEpoch, lastOp, base, baseEpoch, baseConfig } |
 * | damaged  | [partition, op, recoveredMs] | an entry recovery could not trust, set aside (never deleted) |
 * | keys     | [partition, sha256(key)] | [op, firstSeqs, epoch, digest, t] of a compacted op that had an idempotency key |
 *
 * A write (truncate a suffix, append entries, record the state, drop what
 * is compacted) is one lmdb transaction, reported done only once lmdb has
 * flushed it (lmdb-js resolves a write at commit, before its sync). lmdb
 * groups the writes of one event-loop turn into one transaction: a group
 * commit across partitions.
 *
 * Idempotency keys outlive compaction: the keys of the ops a compaction
 * drops move to `keys` in the same transaction, and stay while they are
 * within the idempotency window (`idempotencyWindowMs` after the op's
 * stamp), so a retry that reaches a new leader after a failover, or a
 * leader after it compacted, is answered with the first write's seqnums
 * rather than written twice (Redpanda #3039).
 *
 * Every entry carries a CRC32 of its fields: recovery reads the log back in
 * op order and stops at the first entry that fails it or breaks the
 * sequence; that entry and the ones after are moved to `damaged`, and the
 * recorded `lastOp` then says the replica lost acknowledged ops (it is
 * recovering until its leader fills them in again).
 */

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { open, type Database, type RootDatabase } from 'lmdb';
import { idempotencyWindowMs } from '../core/limits.js';
import type { DurableState, GroupConfig, KeyRecord, LogEntry, LogWrite, ReplicaMeta, ReplicaStorage } from '../core/replication.js';

/** An op's payload: the entry's JSON text as UTF-8 bytes (what the stream store keeps). */
export type OpPayload = Buffer;

/** Writes as [stream, firstSeq, count, delete] tuples. */
type StoredWrite = [stream: string, firstSeq: number, count: number, deleted: boolean];
type StoredEntry = [epoch: number, writes: StoredWrite[], config: GroupConfig | null, t: number, key: string | null, keyDigest: string | null, payload: Buffer, crc: number];

type StoredKey = [op: number, firstSeqs: number[], epoch: number, digest: string | null, t: number];

function keyId(key: string): string {
  return createHash('sha256').update(key).digest('base64');
}

interface StoredState extends ReplicaMeta {
  readonly base: number;
  readonly baseEpoch: number;
  readonly baseConfig?: GroupConfig;
}

const emptyState: StoredState = { promised: 0, normalEpoch: 0, lastOp: 0, base: 0, baseEpoch: 0 };

function checksum(partition: number, op: number, entry: StoredEntry): number {
  const head = Buffer.from(JSON.stringify([partition, op, entry[0], entry[1], entry[2], entry[3], entry[4], entry[5]]));
  return crc32(entry[6], crc32(head));
}

function store(partition: number, entry: LogEntry<OpPayload>): StoredEntry {
  const writes: StoredWrite[] = entry.writes.map((write) => [write.stream, write.firstSeq, write.count, write.delete === true]);
  const config: GroupConfig | null = entry.config === undefined ? null : { voters: [...entry.config.voters], ...(entry.config.old === undefined ? {} : { old: [...entry.config.old] }) };
  const stored: StoredEntry = [entry.epoch, writes, config, entry.t, entry.key ?? null, entry.keyDigest ?? null, entry.payload, 0];
  stored[7] = checksum(partition, entry.op, stored);
  return stored;
}

function load(partition: number, op: number, stored: StoredEntry): LogEntry<OpPayload> | undefined {
  if (!Array.isArray(stored) || stored.length !== 8 || !Buffer.isBuffer(stored[6]) || checksum(partition, op, stored) !== stored[7]) return undefined;
  const [epoch, storedWrites, config, t, key, keyDigest, payload] = stored;
  if (!Array.isArray(storedWrites)) return undefined;
  const writes = storedWrites.map(([stream, firstSeq, count, deleted]) => ({ stream, firstSeq, count, ...(deleted ? { delete: true } : {}) }));
  return { epoch, op, writes, ...(config === null ? {} : { config }), t, ...(key === null ? {} : { key }), ...(keyDigest === null ? {} : { keyDigest }), payload };
}

/** A remembered key as a state transfer carries it: its id and record. */
export type StoredKeyRow = [id: string, value: StoredKey];

export interface RecoveredPartition extends DurableState<OpPayload> {
  /** Ops recovery set aside as damaged (first and last), if any. */
  readonly damaged?: { readonly first: number; readonly last: number };
}

/**
 * lmdb-js rejects a failed commit with "Commit failed" and the cause (ENOSPC,
 * EIO) in a `commitError` promise of its own, which would otherwise go
 * unhandled and end the process: the cause is what the replica is told.
 */
async function commitCause(error: unknown): Promise<never> {
  const cause = (error as { commitError?: Promise<unknown> } | undefined)?.commitError;
  if (cause === undefined) throw error;
  const real = await cause.then(
    () => error,
    (reason: unknown) => reason,
  );
  throw real instanceof Error ? real : error;
}

/** Below this much free space, a failed write counts as a full disk. */
const diskFullBytes = 4 * 1024 * 1024;

export class PartitionLogs {
  private readonly root: RootDatabase;
  private readonly entries: Database<StoredEntry, [number, number]>;
  private readonly state: Database<StoredState, number>;
  private readonly damaged: Database<StoredEntry, [number, number, number]>;
  private readonly keys: Database<StoredKey, [number, string]>;
  /** Per partition, the previous write: writes of one partition complete in order. */
  private readonly tails = new Map<number, Promise<void>>();
  private closed = false;

  /** `timeFlush` starts a timer a write's flush stops (the node's fsync histogram). */
  constructor(
    private readonly folder: string,
    private readonly timeFlush?: () => () => void,
  ) {
    fs.mkdirSync(folder, { recursive: true });
    this.root = open({ path: path.join(folder, 'log.mdb'), compression: false });
    this.entries = this.root.openDB<StoredEntry, [number, number]>({ name: 'entries' });
    this.state = this.root.openDB<StoredState, number>({ name: 'state' });
    this.damaged = this.root.openDB<StoredEntry, [number, number, number]>({ name: 'damaged' });
    this.keys = this.root.openDB<StoredKey, [number, string]>({ name: 'keys' });
  }

  /** What recovery reads back for a partition: its state and its entries after the compaction point, up to the first damaged one. */
  recover(partition: number, nowMs: number = Date.now()): RecoveredPartition {
    const state = this.state.get(partition) ?? emptyState;
    const entries: LogEntry<OpPayload>[] = [];
    let expected = state.base + 1;
    let damagedFrom: number | undefined;
    for (const { key, value } of this.entries.getRange({ start: [partition, state.base + 1], end: [partition, Number.MAX_SAFE_INTEGER] })) {
      const op = key[1];
      const entry = op === expected ? load(partition, op, value) : undefined;
      if (entry === undefined) {
        damagedFrom = Math.min(op, expected);
        break;
      }
      entries.push(entry);
      expected++;
    }
    const baseConfig = state.baseConfig === undefined ? {} : { baseConfig: state.baseConfig };
    if (damagedFrom === undefined) return { meta: state, base: state.base, baseEpoch: state.baseEpoch, ...baseConfig, entries };
    // Set the untrusted tail aside, then drop it from the log: the replica rewrites those ops from its leader.
    let last = damagedFrom;
    this.root.transactionSync(() => {
      for (const { key, value } of this.entries.getRange({ start: [partition, damagedFrom!], end: [partition, Number.MAX_SAFE_INTEGER] })) {
        this.damaged.putSync([partition, key[1], nowMs], value);
        this.entries.removeSync(key);
        last = key[1];
      }
    });
    return { meta: state, base: state.base, baseEpoch: state.baseEpoch, ...baseConfig, entries, damaged: { first: damagedFrom, last } };
  }

  /** Whether the log's file system has (almost) no room left: lmdb may report a full disk as EIO. */
  diskFull(): boolean {
    try {
      const stats = fs.statfsSync(this.folder);
      return stats.bavail * stats.bsize < diskFullBytes;
    } catch {
      return false;
    }
  }

  /** Records the voters a new group starts with (a partition with no state yet), synchronously: before the replica says anything. */
  recordFirstConfig(partition: number, config: GroupConfig): void {
    if (this.state.get(partition) !== undefined) return;
    this.state.putSync(partition, { ...emptyState, baseConfig: config });
  }

  /** The partitions this log holds a replica's state for. */
  partitions(): number[] {
    return [...this.state.getKeys({})].filter((key): key is number => typeof key === 'number');
  }

  /** The storage a partition's replica writes through. */
  storage(partition: number): ReplicaStorage<OpPayload> {
    return { write: (write, done) => this.write(partition, write, done) };
  }

  private write(partition: number, write: LogWrite<OpPayload>, done: (error?: Error) => void): void {
    if (this.closed) return done(new Error('the replication log is closed'));
    const previous = this.tails.get(partition) ?? Promise.resolve();
    const state = this.state.get(partition) ?? emptyState;
    const base = write.base !== undefined && write.base.op > state.base ? write.base : { op: state.base, epoch: state.baseEpoch, ...(state.baseConfig === undefined ? {} : { config: state.baseConfig }) };
    const committed = this.root.transaction(() => {
      if (write.truncateAfter !== undefined) {
        for (const key of this.entries.getKeys({ start: [partition, write.truncateAfter + 1], end: [partition, Number.MAX_SAFE_INTEGER] })) this.entries.removeSync(key);
      }
      for (const entry of write.entries) this.entries.putSync([partition, entry.op], store(partition, entry));
      if (base.op > state.base) {
        const oldest = Date.now() - idempotencyWindowMs;
        for (const { key, value } of this.entries.getRange({ start: [partition, 0], end: [partition, base.op + 1] })) {
          // The op goes; its idempotency key stays for the window.
          const stored = value as StoredEntry | undefined;
          if (Array.isArray(stored) && typeof stored[4] === 'string' && stored[3] >= oldest) this.keys.putSync([partition, keyId(stored[4])], [key[1], stored[1].map((write) => write[1]), stored[0], stored[5], stored[3]]);
          this.entries.removeSync(key);
        }
        for (const { key, value } of this.keys.getRange({ start: [partition, ''], end: [partition + 1, ''] })) if (value[4] < oldest) this.keys.removeSync(key);
      }
      this.state.putSync(partition, { ...write.meta, base: base.op, baseEpoch: base.epoch, ...(base.config === undefined ? {} : { baseConfig: base.config }) });
    });
    const stop = this.timeFlush?.();
    const flushed = committed.then(() => this.root.flushed).catch(commitCause);
    if (stop !== undefined) void flushed.then(() => stop(), () => stop());
    const tail = Promise.all([previous, flushed]).then(
      () => done(),
      (error: unknown) => done(error instanceof Error ? error : new Error(String(error))),
    );
    this.tails.set(partition, tail);
  }

  /** Entries `from`..`to` of a partition, as stored (for a leader resending what its memory has dropped, or for verify). */
  read(partition: number, from: number, to: number): LogEntry<OpPayload>[] {
    const entries: LogEntry<OpPayload>[] = [];
    for (const { key, value } of this.entries.getRange({ start: [partition, from], end: [partition, to + 1] })) {
      const entry = load(partition, key[1], value);
      if (entry === undefined) break;
      entries.push(entry);
    }
    return entries;
  }

  /** An idempotency key of a compacted op, within the window. */
  committedKey(partition: number, key: string, nowMs: number = Date.now()): KeyRecord | undefined {
    const stored = this.keys.get([partition, keyId(key)]);
    if (stored === undefined || stored[4] < nowMs - idempotencyWindowMs) return undefined;
    return { op: stored[0], firstSeqs: stored[1], epoch: stored[2], digest: stored[3] ?? undefined, t: stored[4] };
  }

  /** Every remembered key of a partition within the window (a state transfer carries them to the follower). */
  keysOf(partition: number, nowMs: number = Date.now()): StoredKeyRow[] {
    const rows: StoredKeyRow[] = [];
    for (const { key, value } of this.keys.getRange({ start: [partition, ''], end: [partition + 1, ''] })) if (value[4] >= nowMs - idempotencyWindowMs) rows.push([key[1], value]);
    return rows;
  }

  /** Keys taken from a leader with its state. */
  async putKeys(partition: number, rows: readonly StoredKeyRow[]): Promise<void> {
    await this.root.transaction(() => {
      for (const [id, value] of rows) this.keys.putSync([partition, id], value);
    });
    await this.root.flushed;
  }

  /**
   * Forgets a partition's log, state and remembered keys: the node left the
   * partition's group, whose committed configuration no longer names it.
   * Entries set aside as damaged stay (they are never deleted).
   */
  async drop(partition: number): Promise<void> {
    await (this.tails.get(partition) ?? Promise.resolve()).catch(() => undefined);
    this.tails.delete(partition);
    await this.root.transaction(() => {
      for (const key of this.entries.getKeys({ start: [partition, 0], end: [partition, Number.MAX_SAFE_INTEGER] })) this.entries.removeSync(key);
      for (const key of this.keys.getKeys({ start: [partition, ''], end: [partition + 1, ''] })) this.keys.removeSync(key);
      this.state.removeSync(partition);
    });
    await this.root.flushed;
  }

  /** For tests: the raw stored entry, to damage it. */
  rawEntry(partition: number, op: number): StoredEntry | undefined {
    return this.entries.get([partition, op]);
  }

  /** For tests: put a raw stored entry back (damaged or not). */
  putRawSync(partition: number, op: number, stored: StoredEntry): void {
    this.entries.putSync([partition, op], stored);
  }

  /** How many damaged entries were set aside for a partition. */
  damagedCount(partition: number): number {
    return this.damaged.getKeysCount({ start: [partition], end: [partition + 1] });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.tails.values()).catch(() => undefined);
    await this.root.close();
  }
}
