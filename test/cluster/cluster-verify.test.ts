/**
 * iorio-admin verify on real node processes (issue 9): three nodes with
 * request.n = 3. Entries appended, verify says ok; one follower stopped and
 * a closed chunk of the stream cut to half in its data folder (the store
 * reports the entries lost), restarted: verify finds it damaged and exits
 * 1; verify --repair rebuilds the chunk from the leader, byte for byte, with
 * the cut file found set aside under damaged/; a second verify says ok.
 */

import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import type { VerifyAnswer, VerifyRow } from '../../src/cluster/admin-api.js';
import { runAdmin } from '../../src/cli/iorio-admin.js';
import { TestCluster, waitFor } from './cluster-harness.js';

let cluster: TestCluster | undefined;

afterEach(async () => {
  await cluster?.stopAll();
  cluster = undefined;
});

/** iorio-admin, in this process, against node `index`. */
async function admin(index: number, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runAdmin(['--url', cluster!.node(index).url, ...argv], { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), env: {} });
  return { code, stdout, stderr };
}

function rowOf(answer: VerifyAnswer): VerifyRow {
  const row = answer.rows.find((candidate) => candidate.bucket === 'rep' && candidate.stream === 's');
  if (row === undefined) throw new Error(`no row for rep/s in ${JSON.stringify(answer)}`);
  return row;
}

async function verify(index: number): Promise<VerifyAnswer> {
  const answer = await cluster!.admin(index, 'GET', 'verify?bucket=rep');
  if (answer.status !== 200) throw new Error(`verify answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  return answer.body as VerifyAnswer;
}

function chunksOf(dataDir: string): string[] {
  const vnodes = path.join(dataDir, 'vnodes');
  const found: string[] = [];
  for (const partition of fs.readdirSync(vnodes)) {
    const folder = path.join(vnodes, partition, 'rep', 's');
    if (fs.existsSync(folder)) found.push(...fs.readdirSync(folder).filter((name) => name.endsWith('.chunk')).map((name) => path.join(folder, name)));
  }
  return found.sort();
}

describe('iorio-admin verify with request.n = 3 on real processes', () => {
  test('ok; a follower with a chunk cut short is found damaged (exit 1); --repair rebuilds it from the leader and sets the cut file aside; ok again', async () => {
    cluster = new TestCluster({ 'request.n': '3', 'ring.size': '8', 'storage.chunk.size': '4KB', 'channel.max_items': '2' });
    await cluster.start(1);
    await Promise.all([2, 3].map((index) => cluster!.start(index)));
    await cluster.joinAll([2, 3]);
    // 150 entries of ~110 bytes: about four 4 KB chunks on every replica.
    for (let batch = 0; batch < 5; batch++) {
      const lines = Array.from({ length: 30 }, (_, offset) => JSON.stringify({ n: batch * 30 + offset, pad: 'r'.repeat(60) })).join('\n');
      const answer = await waitFor('a batch append', 30_000, async () => {
        const posted = await cluster!.call(1 + (batch % 3), 'POST', '/streams/rep/s', { body: lines, contentType: 'application/x-ndjson' });
        return posted.status === 201 ? posted : undefined;
      });
      expect(answer.body.meta).toHaveLength(30);
    }

    const ok = await waitFor('verify to find rep/s alike on all three', 30_000, async () => {
      const answer = await verify(1);
      return answer.counts.ok === 1 && rowOf(answer).replicas.every((replica) => replica.last === 150) ? answer : undefined;
    });
    expect(ok).toMatchObject({ n: 3, streams: 1, unreachable: [] });
    expect(new Set(rowOf(ok).replicas.map((replica) => replica.digest)).size).toBe(1);
    const report = await admin(2, 'verify', 'rep/s');
    expect(report.code).toBe(0);
    expect(report.stdout).toContain('rep/s');
    expect(report.stdout).toContain('Ok:1 / Behind:0 / Damaged:0 / Diverged:0 / Unreachable:0');

    // A follower of the stream's partition, stopped; one of its closed chunks of rep/s cut to half.
    const leader = rowOf(ok).replicas.find((replica) => replica.leader)!.node;
    const victim = [1, 2, 3].find((index) => cluster!.nameOf(index) !== leader)!;
    const victimName = cluster.nameOf(victim);
    await cluster.kill(victim, 'SIGTERM');
    const chunks = chunksOf(cluster.node(victim).dataDir);
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    const cut = chunks[1]!;
    const original = fs.readFileSync(cut);
    fs.truncateSync(cut, Math.floor(original.length / 2));
    await cluster.start(victim);

    const damaged = await waitFor('verify to find the cut chunk', 30_000, async () => {
      const answer = await verify(1);
      const row = rowOf(answer);
      return row.verdict === 'damaged' ? answer : undefined;
    });
    const lost = rowOf(damaged).replicas.find((replica) => replica.node === victimName)!;
    expect(lost.missing).toHaveLength(1);
    expect(lost.missing[0]!.to).toBe(Number(path.basename(chunks[2]!, '.chunk')) - 1);
    for (const replica of rowOf(damaged).replicas.filter((each) => each.node !== victimName)) expect(replica.missing).toEqual([]);
    const found = await admin(1, 'verify', 'rep');
    expect(found.code).toBe(1);
    expect(found.stdout).toMatch(/rep\/s +damaged +.*missing \d+-\d+/);

    const repaired = await admin(3, '--json', 'verify', 'rep/s', '--repair');
    expect(repaired.stderr).toBe('');
    expect(repaired.code).toBe(0);
    const row = rowOf(JSON.parse(repaired.stdout) as VerifyAnswer);
    expect(row).toMatchObject({ found: 'damaged', verdict: 'ok' });
    expect(row.repairs).toEqual([
      { target: victimName, source: leader, kind: 'chunks', records: lost.missing[0]!.to - lost.missing[0]!.from + 1, chunks: 1, aside: [expect.stringMatching(/^damaged\/vnodes\//)], skipped: null },
    ]);
    // The rebuilt chunk is the one that was cut, byte for byte; the cut one is kept aside.
    expect(fs.readFileSync(cut).equals(original)).toBe(true);
    expect(fs.readFileSync(path.join(cluster.node(victim).dataDir, row.repairs[0]!.aside[0]!))).toEqual(original.subarray(0, Math.floor(original.length / 2)));

    const again = await verify(2);
    expect(again.counts).toEqual({ diverged: 0, damaged: 0, unreachable: 0, behind: 0, ok: 1 });
    expect((await admin(1, 'verify')).code).toBe(0);
  }, 90_000);
});
