/**
 * Cluster metadata (riak_core's cluster metadata, simplified): users,
 * groups, grants, policies and the generated session secret are the same on every
 * node. Each record carries a version (a hybrid logical clock: wall ms,
 * counter, node), and the higher version wins everywhere.
 *
 * - A local change (store/meta.ts announces every write to the replicated
 *   tables) gets a new version and is sent to every other member;
 *   `settled()` resolves once every reachable member applied it (the HTTP
 *   layer waits for that before it answers, and names the members it could
 *   not reach).
 * - Anti-entropy: when a peer connects, and every few seconds with one
 *   random member, both sides exchange their whole metadata (it is small)
 *   and keep the newer version of each record; a node that was away catches
 *   up this way.
 * - A node joining a cluster adopts the cluster's metadata: its own records
 *   take the lowest version first, so they only fill gaps (its default
 *   admin never overrides the cluster's admin, its secret never the
 *   cluster's).
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { IorioError } from '../core/errors.js';
import type { Ring } from '../core/ring.js';
import { MessageType } from '../core/wire.js';
import { ReplicatedTable, sessionSecretSettingKey, type MetaChange, type MetaStore } from '../store/meta.js';
import type { ClusterTransport } from './transport.js';

/** [wall ms, counter, node]: compared element by element. */
export type Version = readonly [number, number, string];

const lowest: Version = [0, 0, ''];
/** The session secret's record in the versions table (it lives in meta.settings). */
const secretTable = 'secret';

interface VersionedChange {
  readonly table: ReplicatedTable | typeof secretTable;
  readonly key: string | unknown[];
  readonly value: unknown;
  readonly version: Version;
}

export interface MetadataOptions {
  readonly meta: MetaStore;
  readonly transport: ClusterTransport;
  readonly ring: () => Ring;
  readonly self: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly requestTimeoutMs: number;
  readonly antiEntropyMs: number;
}

export function compareVersions(a: Version, b: Version): number {
  if (a[0] !== b[0]) return a[0] - b[0];
  if (a[1] !== b[1]) return a[1] - b[1];
  return a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0;
}

export class Metadata {
  private readonly logger: Logger;
  private last: Version = lowest;
  private pending: VersionedChange[] = [];
  private flushing: Promise<string[]> | undefined;
  private readonly inFlight = new Set<Promise<string[]>>();
  private scheduled = false;
  private readonly unsubscribe: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: MetadataOptions) {
    this.logger = options.logger.child({ component: 'metadata' });
  }

  start(): void {
    const { transport, meta } = this.options;
    this.versionSecret();
    this.unsubscribe.push(
      meta.changes.on((change) => this.localChange(change)),
      transport.handle(MessageType.metadataChanges, (body, from) => {
        this.checkMember(from);
        this.apply((body as { changes: VersionedChange[] }).changes);
        return null;
      }),
      transport.handle(MessageType.metadataCatchUp, (body, from) => {
        this.checkMember(from);
        const theirs = (body as { changes: VersionedChange[] }).changes;
        const mine = this.snapshot();
        this.apply(theirs);
        return { changes: mine };
      }),
      transport.onPeerUp((peer) => {
        if (this.isMember(peer)) void this.syncWith(peer);
      }),
    );
    this.timer = setInterval(() => {
      const others = this.others();
      if (others.length > 0) void this.syncWith(others[Math.floor(Math.random() * others.length)]!);
    }, this.options.antiEntropyMs);
    this.timer.unref();
  }

  /**
   * The generated session secret is written by auth (meta.settings), not
   * through the replicated tables: it gets its version the first time this
   * node shares its metadata (a joiner's was lowered before it joined).
   */
  private versionSecret(): void {
    const { meta } = this.options;
    if (meta.settings.get(sessionSecretSettingKey) === undefined) return;
    if (meta.versions.get(versionKey(secretTable, sessionSecretSettingKey)) !== undefined) return;
    meta.versions.putSync(versionKey(secretTable, sessionSecretSettingKey), { version: this.nextVersion(), deleted: false });
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const off of this.unsubscribe) off();
  }

  /** Resolves once every change made so far reached every reachable member; with the members it could not reach. */
  async settled(): Promise<string[]> {
    if (this.pending.length > 0) this.flush();
    const results = await Promise.all([...this.inFlight]);
    return [...new Set(results.flat())].sort();
  }

  /** Metadata is exchanged with members of this node's cluster only (a node about to join is not one yet). */
  private isMember(node: string): boolean {
    return this.options.ring().members.some((member) => member.name === node);
  }

  private checkMember(node: string): void {
    if (!this.isMember(node)) throw new IorioError('conflict', `${node} is not a member of this node's cluster: no metadata is exchanged with it`);
  }

  /**
   * About to join a cluster: this node's records take the lowest version,
   * so the cluster's win everywhere and this node's only fill gaps. Done
   * before the join, so no exchange ever sees them with their own versions.
   */
  async lowerForJoin(): Promise<void> {
    const { meta } = this.options;
    await meta.root.transaction(() => {
      for (const { key } of meta.versions.getRange({})) meta.versions.putSync(key as unknown[], { version: lowest, deleted: false });
      for (const [table, db] of this.tables()) {
        for (const { key } of db.getRange({})) meta.versions.putSync(versionKey(table, key as string | unknown[]), { version: lowest, deleted: false });
      }
      if (meta.settings.get(sessionSecretSettingKey) !== undefined) meta.versions.putSync(versionKey(secretTable, sessionSecretSettingKey), { version: lowest, deleted: false });
    });
    await meta.root.flushed;
  }

  /** Exchanges everything with a member now (after a join: adopts the cluster's metadata). */
  syncNow(peer: string): Promise<void> {
    return this.syncWith(peer);
  }

  private others(): string[] {
    return this.options.ring().members.map((member) => member.name).filter((name) => name !== this.options.self);
  }

  private tables(): [ReplicatedTable, MetaStore['users'] | MetaStore['grants'] | MetaStore['policies']][] {
    const { meta } = this.options;
    return [
      [ReplicatedTable.users, meta.users],
      [ReplicatedTable.groups, meta.groups],
      [ReplicatedTable.grants, meta.grants],
      [ReplicatedTable.policies, meta.policies],
    ];
  }

  /** A new version, above every version this node has seen. */
  private nextVersion(): Version {
    const now = this.options.clock.now();
    this.last = now > this.last[0] ? [now, 0, this.options.self] : [this.last[0], this.last[1] + 1, this.options.self];
    return this.last;
  }

  private observe(version: Version): void {
    if (compareVersions(version, this.last) > 0) this.last = [version[0], version[1], this.options.self];
  }

  private localChange(change: MetaChange): void {
    const version = this.nextVersion();
    void this.options.meta.versions.put(versionKey(change.table, change.key), { version, deleted: change.value === undefined });
    this.pending.push({ ...change, version });
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    const changes = this.pending;
    this.pending = [];
    if (changes.length === 0) return;
    const sent = this.sendToAll(changes);
    this.inFlight.add(sent);
    void sent.finally(() => this.inFlight.delete(sent));
  }

  private async sendToAll(changes: VersionedChange[]): Promise<string[]> {
    const unreached: string[] = [];
    await Promise.all(
      this.others().map(async (node) => {
        try {
          await this.options.transport.request(node, MessageType.metadataChanges, { changes }, { timeoutMs: this.options.requestTimeoutMs });
        } catch {
          unreached.push(node);
        }
      }),
    );
    if (unreached.length > 0) this.logger.warn({ unreached }, 'a metadata change could not reach every member yet; they catch up when they are back');
    return unreached;
  }

  /** Every replicated record with its version. */
  private snapshot(): VersionedChange[] {
    const { meta } = this.options;
    this.versionSecret();
    const changes: VersionedChange[] = [];
    for (const [table, db] of this.tables()) {
      for (const { key, value } of db.getRange({})) changes.push({ table, key: key as string | unknown[], value, version: this.versionOf(table, key as string | unknown[]) });
    }
    // Deleted records travel as tombstones, so a delete is not undone by a node that was away.
    for (const { key, value } of meta.versions.getRange({})) {
      const record = value as { version: Version; deleted: boolean };
      if (!record.deleted) continue;
      const [table, ...rest] = key as [string, ...unknown[]];
      changes.push({ table: table as ReplicatedTable, key: table === ReplicatedTable.users || table === ReplicatedTable.groups ? (rest[0] as string) : rest, value: undefined, version: record.version });
    }
    const secret = meta.settings.get(sessionSecretSettingKey) as string | undefined;
    if (secret !== undefined) changes.push({ table: secretTable, key: sessionSecretSettingKey, value: secret, version: this.versionOf(secretTable, sessionSecretSettingKey) });
    return changes;
  }

  private versionOf(table: string, key: string | unknown[]): Version {
    const record = this.options.meta.versions.get(versionKey(table, key)) as { version: Version } | undefined;
    return record?.version ?? lowest;
  }

  /** Applies what is newer than what this node holds, without announcing it again. */
  private apply(changes: readonly VersionedChange[]): void {
    const { meta } = this.options;
    const applied: VersionedChange[] = [];
    meta.changes.quietly(() =>
      meta.root.transactionSync(() => {
        for (const change of changes) {
          this.observe(change.version);
          if (compareVersions(change.version, this.versionOf(change.table, change.key)) <= 0) continue;
          if (change.table === secretTable) {
            if (typeof change.value === 'string') meta.settings.putSync(sessionSecretSettingKey, change.value);
          } else {
            const db = this.tables().find(([table]) => table === change.table)?.[1];
            if (db === undefined) continue;
            if (change.value === undefined) (db as MetaStore['grants']).removeSync(change.key as never);
            else (db as MetaStore['grants']).putSync(change.key as never, change.value);
          }
          meta.versions.putSync(versionKey(change.table, change.key), { version: change.version, deleted: change.value === undefined });
          applied.push(change);
        }
      }),
    );
    if (applied.length === 0) return;
    const secret = applied.find((change) => change.table === secretTable);
    if (secret !== undefined) meta.changes.emitSecret(secret.value as string);
    meta.changes.emitRemote(undefined);
    this.logger.debug({ applied: applied.length }, 'applied metadata changes from other members');
  }

  private async syncWith(peer: string): Promise<void> {
    try {
      const answer = await this.options.transport.request<{ changes: VersionedChange[] }>(peer, MessageType.metadataCatchUp, { changes: this.snapshot() }, { timeoutMs: this.options.requestTimeoutMs });
      this.apply(answer.changes);
    } catch (error) {
      this.logger.debug({ err: error, peer }, 'metadata anti-entropy with a member failed; it is tried again');
    }
  }
}

function versionKey(table: string, key: string | unknown[]): unknown[] {
  return Array.isArray(key) ? [table, ...key] : [table, key];
}
