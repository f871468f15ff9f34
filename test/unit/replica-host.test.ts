/**
 * The replica host (src/cluster/replication/host.ts): three nodes in one
 * process with real cluster transports on 127.0.0.1, real stream stores and
 * real partition logs. Appends through the leader are answered once
 * committed and applied; every node's stream store ends with the same
 * entries; the leader is stopped and another takes over; the stopped node
 * comes back from its disk and catches up; a change of the group brings a
 * fourth node in and takes one out.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { ReplicaHost } from '../../src/cluster/replication/host.js';
import { Transport } from '../../src/cluster/transport.js';
import { testConfig } from '../../src/config.js';
import { openMeta, type MetaStore } from '../../src/store/meta.js';
import { PartitionLogs } from '../../src/store/partition-log.js';
import { openStreamStore, type StreamStore } from '../../src/store/stream-store.js';
import { systemClock } from '../helpers/clock.js';
import { partitionOf } from '../../src/core/hash.js';

/** The partition of the stream b/s in a ring of 64: a state transfer copies the streams the store keeps under it. */
const partitionOfBS = partitionOf('b', 's', 64);

const logger = pino({ level: 'silent' });
const secret = 'host-test-secret';
const book = new Map<string, { host: string; port: number }>();
const folders: string[] = [];

interface TestNode {
  readonly name: string;
  readonly dataDir: string;
  transport: Transport;
  meta: MetaStore;
  store: StreamStore;
  logs: PartitionLogs;
  host: ReplicaHost;
}

const running = new Set<TestNode>();

afterEach(async () => {
  for (const node of [...running]) await stop(node);
  for (const folder of folders.splice(0)) fs.rmSync(folder, { recursive: true, force: true });
  book.clear();
});

const timing = { heartbeatMs: 30, electionTimeoutMs: 300, electionStepMs: 60, electionJitterMs: 60, leaseMs: 240 };

async function start(name: string, dataDir?: string, keepOps?: number, gate?: Promise<void>): Promise<TestNode> {
  const folder = dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'iorio-host-'));
  if (dataDir === undefined) folders.push(folder);
  const transport = new Transport({ self: name, host: '127.0.0.1', port: 0, secret, resolve: (peer) => book.get(peer), connectTimeoutMs: 1_000, requestTimeoutMs: 5_000, queueBytesMax: 8 * 1024 * 1024, logger, clock: systemClock });
  const { port } = await transport.start();
  book.set(name, { host: '127.0.0.1', port });
  const config = testConfig({ 'paths.data': folder, 'storage.sync': 'always' });
  const meta = openMeta(path.join(folder, 'meta'));
  const store = await openStreamStore({ dataDir: folder, meta, config, clock: systemClock, logger });
  const logs = new PartitionLogs(path.join(folder, 'replication'));
  // A gate holds back the store's checkpoints as the host sees them (the store still runs its own).
  const machine = gate === undefined ? store : Object.assign(Object.create(store) as StreamStore, { checkpointAfterNow: () => gate.then(() => store.checkpointAfterNow()) });
  const host = new ReplicaHost({ self: name, w: 2, transport, store: machine, logs, clock: systemClock, logger, timing, tickMs: 10, ...(keepOps === undefined ? {} : { keepOps }) });
  const node: TestNode = { name, dataDir: folder, transport, meta, store, logs, host };
  running.add(node);
  return node;
}

async function stop(node: TestNode): Promise<void> {
  running.delete(node);
  await node.host.close();
  await node.transport.close();
  await node.logs.close();
  await node.store.close();
  await node.meta.close();
}

async function until<T>(what: string, probe: () => T | undefined | false): Promise<T> {
  for (let round = 0; round < 1_000; round++) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function leaderOf(nodes: readonly TestNode[], partition: number): TestNode | undefined {
  return nodes.find((node) => running.has(node) && node.host.status(partition)?.role === 'leader' && node.host.leaderOf(partition) === node.name);
}

/** Appends through whichever node leads now, retrying 503s (bounded); returns the seqnum. */
async function append(nodes: readonly TestNode[], partition: number, body: string, key?: string): Promise<number> {
  const idempotency = key === undefined ? {} : { idempotency: { key, digest: `digest of ${body}` } };
  for (let attempt = 0; attempt < 200; attempt++) {
    const leader = leaderOf(nodes, partition);
    if (leader !== undefined) {
      try {
        const [metas] = await leader.host.append(partition, [{ bucket: 'b', stream: 's', payloads: [Buffer.from(JSON.stringify(body))], ...idempotency }]);
        return metas![0]!.id;
      } catch (error) {
        if ((error as { code?: string }).code !== 'unavailable') throw error;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`could not append ${body}`);
}

async function storeEntries(node: TestNode): Promise<string[]> {
  const page = await node.store.read('b', 's', { from: 1, limit: 10_000 });
  return page.entries.map((entry) => `${entry.seq}:${entry.payload.toString()}`);
}

describe('the replica host', () => {
  test('appends commit on a majority and reach every store; the leader stops, another leads; the stopped node catches up from its disk', async () => {
    const names = ['h1@127.0.0.1', 'h2@127.0.0.1', 'h3@127.0.0.1'];
    const nodes = await Promise.all(names.map((name) => start(name)));
    for (const node of nodes) node.host.open(0, names);
    const acknowledged = new Map<number, string>();
    for (let index = 0; index < 50; index++) acknowledged.set(await append(nodes, 0, `one-${index}`), `"one-${index}"`);
    expect([...acknowledged.keys()]).toEqual(Array.from({ length: 50 }, (_, index) => index + 1));

    // A read through the leader shows everything acknowledged.
    const leader = leaderOf(nodes, 0)!;
    const read = await leader.host.serve(0, () => leader.store.read('b', 's', { from: 1, limit: 100 }));
    expect(read.entries.map((entry) => entry.payload.toString())).toEqual([...acknowledged.values()]);

    // Stop the leader: the other two elect one of themselves and go on.
    const dataDir = leader.dataDir;
    await stop(leader);
    const survivors = nodes.filter((node) => node !== leader);
    for (let index = 0; index < 50; index++) acknowledged.set(await append(survivors, 0, `two-${index}`), `"two-${index}"`);
    expect(leaderOf(survivors, 0)).toBeDefined();

    // It comes back from its disk and catches up.
    const back = await start(leader.name, dataDir);
    back.host.open(0, names);
    const all = [...survivors, back];
    const expected = [...acknowledged].sort((a, b) => a[0] - b[0]).map(([seq, body]) => `${seq}:${body}`);
    for (const node of all) {
      await until(`${node.name} to apply everything`, () => (node.host.status(0)!.applied >= 100 ? true : undefined));
      expect(await storeEntries(node), node.name).toEqual(expected);
    }
  }, 60_000);

  test('the log is compacted behind what is applied; a follower that was away longer takes the leader\'s state, then the log', async () => {
    const names = ['c1@127.0.0.1', 'c2@127.0.0.1', 'c3@127.0.0.1'];
    const nodes = await Promise.all(names.map((name) => start(name, undefined, 10)));
    for (const node of nodes) node.host.open(partitionOfBS, names);
    for (let index = 0; index < 10; index++) await append(nodes, partitionOfBS, `first-${index}`);
    const away = nodes.find((node) => node !== leaderOf(nodes, partitionOfBS))!;
    const awayDir = away.dataDir;
    await stop(away);
    const rest = nodes.filter((node) => node !== away);
    for (let index = 0; index < 100; index++) await append(rest, partitionOfBS, `while-away-${index}`);
    await until('the leader to compact', () => (leaderOf(rest, partitionOfBS)!.host.status(partitionOfBS)!.lastOp - 0 > 0 && (leaderOf(rest, partitionOfBS)!.host as unknown as { hosted: Map<number, { replica: { compactedThrough: number } }> }).hosted.get(partitionOfBS)!.replica.compactedThrough > 20 ? true : undefined));
    const back = await start(away.name, awayDir, 10);
    back.host.open(partitionOfBS, names);
    for (let index = 0; index < 10; index++) await append([...rest, back], partitionOfBS, `after-${index}`);
    await until('the returning node to apply everything', () => (back.host.status(partitionOfBS)!.applied >= 120 ? true : undefined));
    const leader = leaderOf([...rest, back], partitionOfBS)!;
    expect(await storeEntries(back)).toEqual(await storeEntries(leader));
    expect((await storeEntries(back)).length).toBe(120);
  }, 60_000);

  test('a change of the group brings a fourth node in as a learner, then a voter, and takes one out; nothing is lost', async () => {
    const names = ['g1@127.0.0.1', 'g2@127.0.0.1', 'g3@127.0.0.1'];
    const nodes = await Promise.all(names.map((name) => start(name)));
    for (const node of nodes) node.host.open(1, names);
    for (let index = 0; index < 30; index++) await append(nodes, 1, `before-${index}`);
    const newcomer = await start('g4@127.0.0.1');
    newcomer.host.open(1, []);
    const leader = leaderOf(nodes, 1)!;
    const out = names.find((name) => name !== leader.name)!;
    const voters = [...names.filter((name) => name !== out), newcomer.name];
    await leader.host.reconfigure(1, voters);
    const group = [...nodes, newcomer];
    for (let index = 0; index < 30; index++) await append(group, 1, `after-${index}`);
    await until('the newcomer to apply everything', () => (newcomer.host.status(1)!.applied >= leaderOf(group, 1)!.host.status(1)!.commit ? true : undefined));
    expect(newcomer.host.status(1)!.config.voters).toEqual(voters);
    const page = await newcomer.store.read('b', 's', { from: 1, limit: 100 });
    expect(page.entries.map((entry) => entry.seq)).toEqual(Array.from({ length: 60 }, (_, index) => index + 1));
  }, 60_000);

  test('an idempotency key is answered with the first write after a failover, and after every replica compacted the op away (Redpanda #3039)', async () => {
    const names = ['k1@127.0.0.1', 'k2@127.0.0.1', 'k3@127.0.0.1'];
    const nodes = await Promise.all(names.map((name) => start(name, undefined, 10)));
    for (const node of nodes) node.host.open(partitionOfBS, names);
    const early = await append(nodes, partitionOfBS, 'early', 'key-early');
    const late = await append(nodes, partitionOfBS, 'late', 'key-late');
    // Enough writes that every replica compacts `early` out of its log (keepOps 10: compaction past 20 applied ops).
    for (let index = 0; index < 60; index++) await append(nodes, partitionOfBS, `filler-${index}`);
    for (const node of nodes) await until(`${node.name} to compact`, () => ((node.host as unknown as { hosted: Map<number, { replica: { compactedThrough: number } }> }).hosted.get(partitionOfBS)!.replica.compactedThrough > early ? true : undefined));
    const leader = leaderOf(nodes, partitionOfBS)!;
    await stop(leader);
    const rest = nodes.filter((node) => node !== leader);
    // The new leader never saw the first attempts as a leader: the keys come from its log (late) and from its compacted keys (early).
    expect(await append(rest, partitionOfBS, 'early', 'key-early')).toBe(early);
    expect(await append(rest, partitionOfBS, 'late', 'key-late')).toBe(late);
    // The same key with another body is a conflict, not a write.
    const newLeader = leaderOf(rest, partitionOfBS)!;
    await expect(newLeader.host.append(partitionOfBS, [{ bucket: 'b', stream: 's', payloads: [Buffer.from('"other"')], idempotency: { key: 'key-early', digest: 'another digest' } }])).rejects.toMatchObject({ code: 'conflict' });
    const entries = await storeEntries(newLeader);
    expect(entries.length).toBe(62);
    expect(entries.filter((entry) => entry.endsWith('"early"'))).toEqual([`${early}:"early"`]);
  }, 60_000);

  test('the log is compacted only behind a store checkpoint: the store takes applied ops lazily, and until a checkpoint they are durable in the log alone', async () => {
    const names = ['d1@127.0.0.1', 'd2@127.0.0.1', 'd3@127.0.0.1'];
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const nodes = await Promise.all(names.map((name) => start(name, undefined, 10, gate)));
    for (const node of nodes) node.host.open(partitionOfBS, names);
    for (let index = 0; index < 80; index++) await append(nodes, partitionOfBS, `op-${index}`);
    const compacted = (node: TestNode) => (node.host as unknown as { hosted: Map<number, { replica: { compactedThrough: number } }> }).hosted.get(partitionOfBS)!.replica.compactedThrough;
    for (const node of nodes) await until(`${node.name} to apply`, () => node.host.status(partitionOfBS)!.applied >= 80);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(nodes.map(compacted), 'no checkpoint yet: nothing compacted').toEqual([0, 0, 0]);
    open();
    for (const node of nodes) await until(`${node.name} to compact after the checkpoint`, () => compacted(node) > 0);
    for (const node of nodes) expect(compacted(node)).toBeLessThanOrEqual(80 - 10);
  }, 60_000);
});
