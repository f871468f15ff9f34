/**
 * The partition replication log on disk (src/store/partition-log.ts), and
 * the replication core running on it: writes, truncation, compaction,
 * damage set aside (never deleted) and the replica that then knows it is
 * recovering; and a three-replica group in one process with real logs,
 * restarted from disk, losing nothing it acknowledged.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { majorityOf, Replica } from '../../src/cluster/replication/replica.js';
import type { LogEntry, LogWrite, ProposeResult, ReplicationMessage } from '../../src/core/replication.js';
import { type OpPayload, PartitionLogs } from '../../src/store/partition-log.js';

const folders: string[] = [];
const opened: PartitionLogs[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((logs) => logs.close()));
  for (const folder of folders.splice(0)) fs.rmSync(folder, { recursive: true, force: true });
});

function tempFolder(): string {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'iorio-plog-'));
  folders.push(folder);
  return folder;
}

function openLogs(folder: string): PartitionLogs {
  const logs = new PartitionLogs(folder);
  opened.push(logs);
  return logs;
}

async function close(logs: PartitionLogs): Promise<void> {
  opened.splice(opened.indexOf(logs), 1);
  await logs.close();
}

function entry(op: number, epoch: number, seq = op): LogEntry<OpPayload> {
  return { epoch, op, writes: [{ stream: 'b/s', firstSeq: seq, count: 1 }], t: 1_700_000_000_000 + op, payload: Buffer.from(JSON.stringify({ op })) };
}

function write(logs: PartitionLogs, partition: number, change: LogWrite<OpPayload>): Promise<void> {
  return new Promise((resolve, reject) => logs.storage(partition).write(change, (error) => (error === undefined ? resolve() : reject(error))));
}

const meta = (lastOp: number, promised = 1, normalEpoch = 1) => ({ promised, normalEpoch, lastOp });

describe('the partition log', () => {
  test('idempotency keys of compacted ops stay (through a reopen) within the window, and go after it', async () => {
    const folder = tempFolder();
    let logs = openLogs(folder);
    const now = Date.now();
    const keyed = (op: number, key: string, t: number): LogEntry<OpPayload> => ({ ...entry(op, 1), key, keyDigest: `d-${key}`, t });
    const windowMs = 10 * 60 * 1000;
    await write(logs, 2, { entries: [keyed(1, 'old', now - windowMs - 1_000), keyed(2, 'fresh', now - 1_000), keyed(3, 'kept-in-log', now)], meta: meta(3) });
    expect(logs.committedKey(2, 'fresh'), 'in the log, not yet a compacted key').toBeUndefined();
    await write(logs, 2, { entries: [], meta: meta(3), base: { op: 2, epoch: 1 } });
    await close(logs);
    logs = openLogs(folder);
    expect(logs.committedKey(2, 'fresh')).toEqual({ op: 2, firstSeqs: [2], epoch: 1, digest: 'd-fresh', t: now - 1_000 });
    expect(logs.committedKey(2, 'old'), 'older than the window when compacted').toBeUndefined();
    expect(logs.committedKey(3, 'fresh'), 'keys are per partition').toBeUndefined();
    expect(logs.keysOf(2).length).toBe(1);
    expect(logs.committedKey(2, 'fresh', now + windowMs), 'past the window').toBeUndefined();
    // A follower taking a leader's state takes its keys.
    await logs.putKeys(5, logs.keysOf(2));
    expect(logs.committedKey(5, 'fresh')?.op).toBe(2);
  });

  test('entries and state come back after a reopen, per partition', async () => {
    const folder = tempFolder();
    let logs = openLogs(folder);
    await write(logs, 3, { entries: [entry(1, 1), entry(2, 1)], meta: meta(2) });
    await write(logs, 3, { entries: [entry(3, 1)], meta: meta(3, 2, 1) });
    await write(logs, 4, { entries: [entry(1, 5)], meta: meta(1, 5, 5) });
    await close(logs);
    logs = openLogs(folder);
    const three = logs.recover(3);
    expect(three.meta).toMatchObject(meta(3, 2, 1));
    expect(three.entries).toEqual([entry(1, 1), entry(2, 1), entry(3, 1)]);
    expect(three.damaged).toBeUndefined();
    expect(logs.recover(4).entries).toEqual([entry(1, 5)]);
    expect(logs.recover(5)).toMatchObject({ meta: meta(0, 0, 0), entries: [] });
  });

  test('a truncation drops the suffix and what follows replaces it, in one write', async () => {
    const logs = openLogs(tempFolder());
    await write(logs, 0, { entries: [1, 2, 3, 4].map((op) => entry(op, 1)), meta: meta(4) });
    await write(logs, 0, { truncateAfter: 2, entries: [entry(3, 2)], meta: meta(3, 2, 2) });
    expect(logs.recover(0).entries).toEqual([entry(1, 1), entry(2, 1), entry(3, 2)]);
  });

  test('compaction drops what the state machine holds; recovery starts after it', async () => {
    const logs = openLogs(tempFolder());
    await write(logs, 0, { entries: [1, 2, 3, 4, 5].map((op) => entry(op, op < 3 ? 1 : 2)), meta: meta(5, 2, 2) });
    await write(logs, 0, { entries: [], meta: meta(5, 2, 2), base: { op: 3, epoch: 2 } });
    const recovered = logs.recover(0);
    expect(recovered).toMatchObject({ base: 3, baseEpoch: 2 });
    expect(recovered.entries).toEqual([entry(4, 2), entry(5, 2)]);
    expect(logs.read(0, 1, 5).map((each) => each.op)).toEqual([4, 5]);
  });

  test('writes of a partition are reported done in order, each after it is flushed', async () => {
    const logs = openLogs(tempFolder());
    const done: number[] = [];
    const all = Array.from({ length: 50 }, (_, index) => new Promise<void>((resolve) => logs.storage(1).write({ entries: [entry(index + 1, 1)], meta: meta(index + 1) }, () => {
      done.push(index);
      resolve();
    })));
    await Promise.all(all);
    expect(done).toEqual(Array.from({ length: 50 }, (_, index) => index));
    expect(logs.recover(1).entries).toHaveLength(50);
  });

  test('a damaged entry ends the log there; it and the rest are set aside, and the replica knows it is recovering', async () => {
    const folder = tempFolder();
    let logs = openLogs(folder);
    await write(logs, 7, { entries: [1, 2, 3, 4, 5, 6].map((op) => entry(op, 1)), meta: meta(6) });
    const raw = logs.rawEntry(7, 4)!;
    const flipped = Buffer.from(raw[6]);
    flipped[2] ^= 0x10;
    logs.putRawSync(7, 4, [raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], flipped, raw[7]]);
    await close(logs);
    logs = openLogs(folder);
    const recovered = logs.recover(7);
    expect(recovered.entries.map((each) => each.op)).toEqual([1, 2, 3]);
    expect(recovered.damaged).toEqual({ first: 4, last: 6 });
    expect(logs.damagedCount(7)).toBe(3);
    const replica = new Replica<OpPayload>({
      self: 'a',
      members: ['a', 'b', 'c'],
      w: 2,
      env: { monotonic: () => 0, now: () => 0, random: () => 0.5, send: () => undefined },
      storage: logs.storage(7),
      durable: recovered,
    });
    expect(replica.recovering).toBe(true);
    expect(replica.lastOp).toBe(3);
    // Recovery again finds a clean log (the damage was moved, not lost).
    expect(logs.recover(7).damaged).toBeUndefined();
  });
});

describe('three replicas on real partition logs, in one process', () => {
  test('every acknowledged op survives follower and leader restarts from disk; the committed logs end identical', async () => {
    const ids = ['a', 'b', 'c'];
    const folders = Object.fromEntries(ids.map((id) => [id, tempFolder()]));
    const logs = new Map<string, PartitionLogs>();
    const replicas = new Map<string, Replica<OpPayload>>();
    const committed = new Map<string, LogEntry<OpPayload>[]>();
    const start = (id: string): void => {
      const log = openLogs(folders[id]!);
      logs.set(id, log);
      committed.set(id, []);
      const durable = log.recover(0);
      replicas.set(
        id,
        new Replica<OpPayload>({
          self: id,
          members: ids,
          w: majorityOf(ids.length),
          timing: { heartbeatMs: 20, electionTimeoutMs: 200, electionStepMs: 40, electionJitterMs: 40, leaseMs: 150 },
          env: {
            monotonic: () => performance.now(),
            now: () => Date.now(),
            random: Math.random,
            send: (to: string, message: ReplicationMessage<OpPayload>) => setImmediate(() => replicas.get(to)?.receive(message)),
            applied: (applied) => committed.get(id)!.push(applied),
          },
          storage: log.storage(0),
          durable,
        }),
      );
    };
    const stop = async (id: string): Promise<void> => {
      replicas.delete(id);
      const log = logs.get(id)!;
      logs.delete(id);
      await close(log);
    };
    for (const id of ids) start(id);
    const ticker = setInterval(() => {
      for (const replica of replicas.values()) replica.tick();
    }, 5);
    const waitFor = async (what: string, probe: () => boolean): Promise<void> => {
      for (let round = 0; round < 1_000; round++) {
        if (probe()) return;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error(`timed out waiting for ${what}`);
    };
    const leader = (): Replica<OpPayload> | undefined => [...replicas.values()].find((replica) => replica.serveCheck().ok);
    const acknowledged: { seq: number; body: string }[] = [];
    const appendMany = async (count: number, tag: string): Promise<void> => {
      for (let index = 0; index < count; index++) {
        const body = `${tag}-${index}`;
        for (let attempt = 0; ; attempt++) {
          await waitFor('a leader', () => leader() !== undefined);
          const result = await new Promise<ProposeResult>((resolve) => leader()!.propose({ writes: [{ stream: 'b/s', count: 1 }], payload: Buffer.from(body), key: body, keyDigest: body }, resolve));
          if (result.ok) {
            acknowledged.push({ seq: result.firstSeqs[0]!, body });
            break;
          }
          expect(attempt, `append ${body}: ${result.code}`).toBeLessThan(50);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    };
    try {
      await appendMany(100, 'first');
      const firstLeader = [...replicas].find(([, replica]) => replica.role === 'leader')![0];
      const follower = ids.find((id) => id !== firstLeader)!;
      await stop(follower);
      await appendMany(100, 'without-follower');
      start(follower);
      await stop(firstLeader);
      await appendMany(100, 'new-leader');
      start(firstLeader);
      await waitFor('every replica to commit everything', () => ids.every((id) => (replicas.get(id)?.commit ?? 0) >= 300));
      // Each op once, at its seqnum, in every replica's committed log (a restarted replica re-applies from its compaction point, 0 here).
      expect(new Set(acknowledged.map((each) => each.seq)).size).toBe(300);
      for (const id of ids) {
        const bySeq = new Map(committed.get(id)!.map((each) => [each.writes[0]!.firstSeq, each.payload.toString()]));
        for (const { seq, body } of acknowledged) expect(bySeq.get(seq), `${id} #${seq}`).toBe(body);
      }
      const logOf = (id: string) => replicas.get(id)!.entries(1, 300).map((each) => [each.op, each.epoch, each.writes, each.payload.toString()]);
      expect(logOf('b')).toEqual(logOf('a'));
      expect(logOf('c')).toEqual(logOf('a'));
    } finally {
      clearInterval(ticker);
    }
  }, 60_000);
});
