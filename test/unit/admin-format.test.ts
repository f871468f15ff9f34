/**
 * cli/admin-format.ts: what iorio-admin prints for the cluster commands,
 * byte for byte against golden text laid out as Riak's riak_core_console
 * prints it. The plans come from the real core/plan.ts (IorioDB's devrel
 * walkthrough, its handoff exercise, a force-remove, a replace), so a change
 * of what plan computes or of how it is printed shows here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import type { MembersAnswer, PlanAnswer, RingAnswer, TransferRow, TransfersAnswer, VerifyAnswer, VerifyReplica, VerifyRow } from '../../src/cluster/admin-api.js';
import {
  banner,
  centre,
  datetime,
  formatMemberStatus,
  formatPlan,
  formatRingReady,
  formatRingStatus,
  formatTransferLimits,
  formatTransferLimitSet,
  formatTransfers,
  formatVerify,
  humanSize,
  humanTime,
  refusalText,
  stagedText,
  verifyFailed,
} from '../../src/cli/admin-format.js';
import { devNodes, devrelTable } from '../../src/cli/devrel.js';
import { parseCommand, UsageError } from '../../src/cli/iorio-admin.js';
import { plan, type StagedChange } from '../../src/core/plan.js';
import { addJoining, createRing, futureRing, memberStatus, type Ring } from '../../src/core/ring.js';
import { devMember } from '../helpers/cluster.js';

const n = (index: number) => `iorio${index}@127.0.0.1`;

/** What the node answers for GET /admin/cluster/plan: the plan as JSON (undefined fields dropped, as on the wire). */
function planAnswer(ring: Ring, staged: readonly StagedChange[] = [], seed = 7): PlanAnswer {
  const planned = plan(ring, staged, seed);
  return JSON.parse(JSON.stringify({ summary: planned.summary, transfers: planned.transfers, warnings: planned.warnings })) as PlanAnswer;
}

/** dev1 valid, dev2..devN joining: IorioDB's walkthrough after `cluster join`. */
function joiningRing(count: number): Ring {
  let ring = createRing('c1', 64, devMember(1));
  for (let index = 2; index <= count; index++) ring = addJoining(ring, devMember(index));
  return ring;
}

function membersAnswer(ring: Ring, unreachable: readonly string[] = []): MembersAnswer {
  const table = memberStatus(ring);
  return {
    node: n(1),
    cluster: ring.cluster,
    version: ring.version,
    claimant: ring.claimant,
    rows: table.rows.map((row) => ({
      node: row.node,
      status: row.status,
      ringPercent: row.ringPercent,
      pendingPercent: row.pendingPercent ?? null,
      reachable: !unreachable.includes(row.node),
    })),
    valid: table.valid,
    leaving: table.leaving,
    exiting: table.exiting,
    joining: table.joining,
    down: table.down,
  };
}

const membershipHead = [
  '================================= Membership ==================================',
  'Status     Ring    Pending    Node',
  '-------------------------------------------------------------------------------',
];
const rule = '-'.repeat(79);

describe('banners', () => {
  test("Riak's fixed banners: ~33..=s Membership ~34..=s and the others, 79 wide", () => {
    expect(banner('Membership')).toBe(`${'='.repeat(33)} Membership ${'='.repeat(34)}`);
    expect(banner('Claimant')).toBe(`${'='.repeat(34)} Claimant ${'='.repeat(35)}`);
    expect(banner('Ownership Handoff')).toBe(`${'='.repeat(30)} Ownership Handoff ${'='.repeat(30)}`);
    expect(banner('Unreachable Nodes')).toBe(`${'='.repeat(30)} Unreachable Nodes ${'='.repeat(30)}`);
    expect(banner('Staged Changes')).toBe(`${'='.repeat(31)} Staged Changes ${'='.repeat(32)}`);
  });

  test("string:centre puts the odd pad on the left, and cuts a longer text in the middle", () => {
    expect(centre(' Transfer Limit ', 79, '=')).toBe(`${'='.repeat(32)} Transfer Limit ${'='.repeat(31)}`);
    expect(centre('ab', 5)).toBe('  ab ');
    expect(centre('abcdef', 4)).toBe('bcde');
  });

  test('human sizes and times as riak_core_format prints them with ~.2f', () => {
    expect(humanSize(0)).toBe('0.00 B');
    expect(humanSize(1023)).toBe('1023.00 B');
    expect(humanSize(1536)).toBe('1.50 KB');
    expect(humanSize(12 * 1024 * 1024)).toBe('12.00 MB');
    expect(humanTime(0.5)).toBe('500.00 us');
    expect(humanTime(5)).toBe('5.00 ms');
    expect(humanTime(40_000)).toBe('40.00 s');
    expect(humanTime(90_000)).toBe('1.50 min');
    expect(humanTime(5 * 3_600_000)).toBe('5.00 hr');
    expect(humanTime(3 * 86_400_000)).toBe('3.00 d');
    expect(datetime(Date.UTC(2026, 10, 21, 9, 5, 3))).toBe('2026-11-21 09:05:03');
  });
});

describe('member-status', () => {
  test('IorioDB walkthrough after the joins: joining members first, nothing pending', () => {
    expect(formatMemberStatus(membersAnswer(joiningRing(2)))).toBe(
      [
        ...membershipHead,
        "joining     0.0%      --      'iorio2@127.0.0.1'",
        "valid     100.0%      --      'iorio1@127.0.0.1'",
        rule,
        'Valid:1 / Leaving:0 / Exiting:0 / Joining:1 / Down:0',
      ].join('\n'),
    );
  });

  test('after commit: Ring now, Pending once the transfers finish, 25.0% each for 4 nodes', () => {
    const committed = plan(joiningRing(4), [], 7).ring;
    expect(formatMemberStatus(membersAnswer(committed))).toBe(
      [
        ...membershipHead,
        "valid     100.0%     25.0%    'iorio1@127.0.0.1'",
        "valid       0.0%     25.0%    'iorio2@127.0.0.1'",
        "valid       0.0%     25.0%    'iorio3@127.0.0.1'",
        "valid       0.0%     25.0%    'iorio4@127.0.0.1'",
        rule,
        'Valid:4 / Leaving:0 / Exiting:0 / Joining:0 / Down:0',
      ].join('\n'),
    );
    expect(formatMemberStatus(membersAnswer(futureRing(committed)))).toContain("valid      25.0%      --      'iorio4@127.0.0.1'\n");
  });

  test("DESIGN.md's sample: a row with no transfer of its own shows --, the others their Pending share", () => {
    const answer: MembersAnswer = {
      node: n(1),
      cluster: 'c1',
      version: 9,
      claimant: n(1),
      rows: [
        { node: n(2), status: 'joining', ringPercent: 0, pendingPercent: null, reachable: true },
        { node: n(1), status: 'valid', ringPercent: 75, pendingPercent: 25, reachable: true },
        { node: n(3), status: 'valid', ringPercent: 9.375, pendingPercent: 25, reachable: true },
      ],
      valid: 2,
      leaving: 0,
      exiting: 0,
      joining: 1,
      down: 0,
    };
    expect(formatMemberStatus(answer)).toBe(
      [
        ...membershipHead,
        "joining     0.0%      --      'iorio2@127.0.0.1'",
        "valid      75.0%     25.0%    'iorio1@127.0.0.1'",
        "valid       9.4%     25.0%    'iorio3@127.0.0.1'",
        rule,
        'Valid:2 / Leaving:0 / Exiting:0 / Joining:1 / Down:0',
      ].join('\n'),
    );
  });

  test('a member this node cannot reach is marked (unreachable), unless it is already marked down', () => {
    const answer = membersAnswer(futureRing(plan(joiningRing(3), [], 7).ring), [n(3)]);
    const text = formatMemberStatus(answer);
    expect(text).toContain("valid      34.4%      --      'iorio1@127.0.0.1'\n");
    expect(text).toContain("valid      32.8%      --      'iorio3@127.0.0.1' (unreachable)\n");
    const down = { ...answer, rows: answer.rows.map((row) => (row.node === n(3) ? { ...row, status: 'down' as const } : row)) };
    expect(formatMemberStatus(down)).toContain("down       32.8%      --      'iorio3@127.0.0.1'\n");
  });
});

const stagedHead = [
  '=============================== Staged Changes ================================',
  'Action         Details(s)',
  rule,
];
const transitionBanner = [
  'NOTE: Applying these changes will result in 1 cluster transition',
  '',
  '###############################################################################',
  '                         After cluster transition 1/1',
  '###############################################################################',
  '',
];

describe('cluster plan', () => {
  test("IorioDB's devrel: 3 joins on 64 partitions, 48 transfers, 16 from iorio1 to each new node", () => {
    expect(formatPlan(planAnswer(joiningRing(4)))).toBe(
      [
        ...stagedHead,
        "join           'iorio2@127.0.0.1'",
        "join           'iorio3@127.0.0.1'",
        "join           'iorio4@127.0.0.1'",
        rule,
        '',
        '',
        ...transitionBanner,
        ...membershipHead,
        "valid     100.0%     25.0%    'iorio1@127.0.0.1'",
        "valid       0.0%     25.0%    'iorio2@127.0.0.1'",
        "valid       0.0%     25.0%    'iorio3@127.0.0.1'",
        "valid       0.0%     25.0%    'iorio4@127.0.0.1'",
        rule,
        'Valid:4 / Leaving:0 / Exiting:0 / Joining:0 / Down:0',
        '',
        'Transfers resulting from cluster changes: 48',
        "  16 transfers from 'iorio1@127.0.0.1' to 'iorio2@127.0.0.1'",
        "  16 transfers from 'iorio1@127.0.0.1' to 'iorio3@127.0.0.1'",
        "  16 transfers from 'iorio1@127.0.0.1' to 'iorio4@127.0.0.1'",
      ].join('\n'),
    );
  });

  test("IorioDB's handoff exercise: one join, 32 transfers, and the warning that 2 nodes cannot hold 3 distinct replicas", () => {
    expect(formatPlan(planAnswer(joiningRing(2)))).toBe(
      [
        ...stagedHead,
        "join           'iorio2@127.0.0.1'",
        rule,
        '',
        '',
        ...transitionBanner,
        ...membershipHead,
        "valid     100.0%     50.0%    'iorio1@127.0.0.1'",
        "valid       0.0%     50.0%    'iorio2@127.0.0.1'",
        rule,
        'Valid:2 / Leaving:0 / Exiting:0 / Joining:0 / Down:0',
        '',
        'WARNING: Not all replicas on distinct nodes: 2 member(s) cannot hold 3 distinct replicas',
        '',
        'Transfers resulting from cluster changes: 32',
        "  32 transfers from 'iorio1@127.0.0.1' to 'iorio2@127.0.0.1'",
      ].join('\n'),
    );
  });

  test('force-remove: the lost replicas after the staged changes, partitions reassigned rather than transferred', () => {
    const four = futureRing(plan(joiningRing(4), [], 7).ring);
    expect(formatPlan(planAnswer(four, [{ kind: 'force-remove', node: n(4) }]))).toBe(
      [
        ...stagedHead,
        "force-remove   'iorio4@127.0.0.1'",
        rule,
        '',
        "WARNING: All of 'iorio4@127.0.0.1' replicas will be lost",
        '',
        ...transitionBanner,
        ...membershipHead,
        "valid      34.4%      --      'iorio1@127.0.0.1'",
        "valid      32.8%      --      'iorio2@127.0.0.1'",
        "valid      32.8%      --      'iorio3@127.0.0.1'",
        rule,
        'Valid:3 / Leaving:0 / Exiting:0 / Joining:0 / Down:0',
        '',
        'WARNING: Not all replicas on distinct nodes: 3 members cannot place every 3 consecutive partitions of a 64-partition ring on distinct nodes (it takes 4)',
        '',
        'Partitions reassigned from cluster changes: 16',
        "  6 reassigned from 'iorio4@127.0.0.1' to 'iorio1@127.0.0.1'",
        "  5 reassigned from 'iorio4@127.0.0.1' to 'iorio2@127.0.0.1'",
        "  5 reassigned from 'iorio4@127.0.0.1' to 'iorio3@127.0.0.1'",
      ].join('\n'),
    );
  });

  test("replace: Riak's \"replace 'x' with 'y'\" line, the leaving node handing all its partitions to its replacement", () => {
    const four = futureRing(plan(joiningRing(4), [], 7).ring);
    const text = formatPlan(planAnswer(addJoining(four, devMember(5)), [{ kind: 'replace', node: n(3), by: devMember(5) }]));
    expect(text).toContain(`${rule}\nreplace        'iorio3@127.0.0.1' with 'iorio5@127.0.0.1'\n${rule}\n`);
    expect(text).toContain("leaving    25.0%      0.0%    'iorio3@127.0.0.1'\n");
    expect(text).toContain("valid      25.0%      --      'iorio1@127.0.0.1'\n");
    expect(text.endsWith("Transfers resulting from cluster changes: 16\n  16 transfers from 'iorio3@127.0.0.1' to 'iorio5@127.0.0.1'")).toBe(true);
    expect(text).not.toContain('WARNING');
  });

  test('force-replace prints its line in Riak\'s words', () => {
    const answer = planAnswer(joiningRing(4));
    const edited: PlanAnswer = { ...answer, summary: { ...answer.summary, lines: [{ action: 'force-replace', node: n(2), by: n(5) }] } };
    expect(formatPlan(edited)).toContain("\nforce-replace  'iorio2@127.0.0.1' with 'iorio5@127.0.0.1'\n");
  });

  test('nothing staged', () => {
    expect(formatPlan(planAnswer(createRing('c1', 64, devMember(1))))).toBe('There are no staged changes');
  });
});

describe('ring-status', () => {
  const base: RingAnswer = {
    node: n(1),
    cluster: 'c1',
    version: 3,
    size: 64,
    claimant: n(1),
    ringReady: true,
    unreachable: [],
    ownership: [{ node: n(1), partitions: 64 }],
    pending: [],
  };

  test('a settled cluster: claimant up, ring ready, no pending changes, everyone reachable', () => {
    expect(formatRingStatus(base)).toBe(
      [
        '================================== Claimant ===================================',
        "Claimant:  'iorio1@127.0.0.1'",
        'Status:     up',
        'Ring Ready: true',
        '',
        '============================== Ownership Handoff ==============================',
        'No pending changes.',
        '',
        '============================== Unreachable Nodes ==============================',
        'All nodes are up and reachable',
      ].join('\n'),
    );
  });

  test('pending transfers grouped by owner and next owner; a down side flagged; the unreachable nodes and their warning', () => {
    const answer: RingAnswer = {
      ...base,
      ringReady: false,
      unreachable: [n(3)],
      pending: [
        { partition: 5, source: n(1), target: n(3) },
        { partition: 1, source: n(1), target: n(2) },
        { partition: 9, source: n(1), target: n(2) },
      ],
    };
    expect(formatRingStatus(answer)).toBe(
      [
        '================================== Claimant ===================================',
        "Claimant:  'iorio1@127.0.0.1'",
        'Status:     up',
        'Ring Ready: false',
        '',
        '============================== Ownership Handoff ==============================',
        'Owner:      iorio1@127.0.0.1',
        'Next Owner: iorio2@127.0.0.1',
        '',
        'Index: 1',
        'Index: 9',
        '',
        rule,
        'Owner:      iorio1@127.0.0.1',
        'Next Owner: iorio3@127.0.0.1',
        '',
        '!!! iorio3@127.0.0.1 is DOWN !!!',
        '',
        'Index: 5',
        '',
        rule,
        '',
        '============================== Unreachable Nodes ==============================',
        "The following nodes are unreachable: ['iorio3@127.0.0.1']",
        '',
        'WARNING: The cluster state will not converge until all nodes',
        'are up. Once the above nodes come back online, convergence',
        'will continue. If the outages are long-term or permanent, you',
        'can either mark the nodes as down (iorio-admin down NODE) or',
        'forcibly remove the nodes from the cluster (iorio-admin',
        'cluster force-remove NODE) to allow the remaining nodes to settle.',
      ].join('\n'),
    );
  });

  test('an unreachable claimant: status down, ring readiness unknown', () => {
    const text = formatRingStatus({ ...base, unreachable: [n(1)] });
    expect(text).toContain("Claimant:  'iorio1@127.0.0.1'\nStatus:     down\nRing Ready: unknown\n");
  });
});

describe('ringready', () => {
  test("TRUE with every node, as Erlang's ~p prints the list", () => {
    expect(formatRingReady({ ready: true, nodes: [n(1), n(2)], disagreeing: [] })).toBe("TRUE All nodes agree on the ring ['iorio1@127.0.0.1','iorio2@127.0.0.1']");
  });

  test('FALSE names each node that disagrees and why', () => {
    expect(
      formatRingReady({
        ready: false,
        nodes: [n(1), n(2), n(3)],
        disagreeing: [
          { node: n(2), reason: 'holds ring version 4, not 5' },
          { node: n(3), reason: 'could not be reached' },
        ],
      }),
    ).toBe(
      [
        "FALSE ['iorio2@127.0.0.1','iorio3@127.0.0.1'] do not agree on the ring ['iorio1@127.0.0.1','iorio2@127.0.0.1','iorio3@127.0.0.1']",
        "  'iorio2@127.0.0.1': holds ring version 4, not 5",
        "  'iorio3@127.0.0.1': could not be reached",
      ].join('\n'),
    );
  });
});

describe('transfers', () => {
  const startedMs = Date.UTC(2026, 10, 21, 10, 0, 0);
  const nowMs = startedMs + 90_000;
  const row = (partition: number, target: string, overrides: Partial<TransferRow> = {}): TransferRow => ({
    partition,
    source: n(1),
    target,
    state: 'waiting',
    streamsDone: 0,
    streams: 0,
    bytes: 0,
    entries: 0,
    rateBytesPerSec: 0,
    etaSecs: null,
    startedMs: null,
    ...overrides,
  });
  const limits = { concurrency: 2, rateBytesPerSec: 0 };

  test('nothing to hand off', () => {
    expect(formatTransfers({ transfers: [], limits, unreachable: [] }, nowMs)).toBe('No transfers active\n\nActive Transfers:');
  });

  test('waiting counts per sender, each running transfer with its progress box, and who could not be asked', () => {
    const answer: TransfersAnswer = {
      transfers: [
        row(1, n(2), { state: 'running', streamsDone: 3, streams: 10, bytes: 12 * 1024 * 1024, entries: 1200, rateBytesPerSec: 1_258_291, etaSecs: 40, startedMs }),
        row(2, n(3)),
        row(3, n(4)),
        { ...row(7, n(1)), source: n(2) },
      ],
      limits,
      unreachable: [n(4)],
    };
    expect(formatTransfers(answer, nowMs)).toBe(
      [
        "'iorio1@127.0.0.1' waiting to handoff 3 partitions",
        "'iorio2@127.0.0.1' waiting to handoff 1 partitions",
        '',
        'Active Transfers:',
        '',
        'transfer type: ownership',
        'partition: 1',
        'started: 2026-11-21 10:00:00 [1.50 min ago]',
        'state: running',
        'streams transferred: 3 of 10',
        'entries transferred: 1200',
        'bytes transferred: 12.00 MB',
        'eta: 40.00 s',
        '',
        '                         1200 entries',
        '     iorio1@127.0.0.1      =======>       iorio2@127.0.0.1',
        '         |============                               |  30%',
        '                           1.20 MB/s',
        '',
        '',
        "Node 'iorio4@127.0.0.1' could not be contacted",
      ].join('\n'),
    );
  });

  test('a finishing transfer with nothing known yet; node names of 25 characters and more wrap as Riak wraps them', () => {
    const source = 'a-rather-long-node-name-for-iorio@host.example.com';
    const answer: TransfersAnswer = { transfers: [{ ...row(4, n(2), { state: 'finishing' }), source }], limits, unreachable: [] };
    const text = formatTransfers(answer, nowMs);
    expect(text).toContain('started: not yet\nstate: finishing\nstreams transferred: 0 of 0\n');
    expect(text).toContain('eta: unknown\n');
    expect(text).toContain(
      [
        'a-rather-long-node-name-f  =======>       iorio2@127.0.0.1',
        'or-iorio@host.example.com',
        '         |                                           | N/A',
        '                           0.00 B/s',
      ].join('\n'),
    );
  });
});

describe('transfer-limit', () => {
  test("Riak's table with this node's concurrency and rate", () => {
    expect(formatTransferLimits(n(1), { concurrency: 2, rateBytesPerSec: 0 })).toBe(
      [
        '================================ Transfer Limit ===============================',
        'Limit        Rate           Node',
        rule,
        "    2        unlimited      'iorio1@127.0.0.1'",
        rule,
        "Note: You can change transfer limits with 'iorio-admin transfer-limit <limit>'",
        "      and 'iorio-admin transfer-limit --rate <size>' (per node: run it on each node)",
      ].join('\n'),
    );
    expect(formatTransferLimitSet(n(2), { concurrency: 4, rateBytesPerSec: 10 * 1024 * 1024 })).toBe(
      "Set transfer limit for 'iorio2@127.0.0.1' to 4 (rate: 10.00 MB/s)",
    );
  });
});

describe('verify', () => {
  const digest = (prefix: string) => prefix.padEnd(64, '0');
  const replica = (index: number, last: number, overrides: Partial<VerifyReplica> = {}): VerifyReplica => ({
    node: n(index),
    reachable: true,
    leader: index === 1,
    first: 1,
    last,
    deletedAt: 0,
    digest: digest('ab12cd34'),
    count: last,
    missing: [],
    error: null,
    ...overrides,
  });
  const none = { diverged: 0, damaged: 0, unreachable: 0, behind: 0, ok: 0 };
  const answer = (rows: VerifyRow[], overrides: Partial<VerifyAnswer> = {}): VerifyAnswer => {
    const count = (pick: (row: VerifyRow) => string) => rows.reduce((counts, row) => ({ ...counts, [pick(row)]: counts[pick(row) as keyof typeof none] + 1 }), { ...none });
    return { n: 3, bucket: null, stream: null, repair: false, partitions: 64, streams: rows.length, found: count((row) => row.found), counts: count((row) => row.verdict), rows, rowsOmitted: 0, unreachable: [], ...overrides };
  };
  const okRow: VerifyRow = { partition: 7, bucket: 'sensors', stream: 'temperature', from: 1, upTo: 300, found: 'ok', verdict: 'ok', replicas: [replica(1, 300), replica(2, 300), replica(3, 300)], repairs: [] };
  const damagedRow: VerifyRow = {
    partition: 12,
    bucket: 'sensors',
    stream: 'humidity',
    from: 1,
    upTo: 250,
    found: 'damaged',
    verdict: 'damaged',
    replicas: [replica(1, 250), replica(2, 250, { digest: digest('77aa'), missing: [{ from: 101, to: 148 }] }), replica(3, 0, { reachable: false, first: null, last: null, digest: null, error: 'no answer' })],
    repairs: [],
  };

  test('a report: one line per stream, the leader starred, what a replica cannot read, the counts; exit 1 unless all ok', () => {
    const report = answer([okRow, damagedRow], { unreachable: [n(3)] });
    expect(formatVerify(report)).toBe(
      [
        '=================================== Verify ====================================',
        'Partition Stream                        Verdict             Replicas (* leads)',
        '-------------------------------------------------------------------------------',
        '7         sensors/temperature           ok                  iorio1* 300, iorio2 300, iorio3 300',
        '12        sensors/humidity              damaged             iorio1* 250, iorio2 250 missing 101-148, iorio3 unreachable',
        '-------------------------------------------------------------------------------',
        '2 streams in 64 partitions (every bucket)',
        'Ok:1 / Behind:0 / Damaged:1 / Diverged:0 / Unreachable:0',
        "Unreachable replicas: ['iorio3@127.0.0.1']",
      ].join('\n'),
    );
    expect(verifyFailed(report)).toBe(true);
    expect(verifyFailed(answer([okRow]))).toBe(false);
    // A replica that did not answer fails the command even when every stream compared is ok.
    expect(verifyFailed(answer([okRow], { unreachable: [n(3)] }))).toBe(true);
  });

  test('a planted divergence shows each replica\'s digest', () => {
    const diverged: VerifyRow = { ...okRow, found: 'diverged', verdict: 'diverged', replicas: [replica(1, 300), replica(2, 300), replica(3, 300, { digest: digest('ffee0011') })] };
    const text = formatVerify(answer([diverged], { stream: 'temperature', bucket: 'sensors', partitions: 1 }));
    expect(text).toContain('7         sensors/temperature           diverged            iorio1* 300 #ab12cd34, iorio2 300 #ab12cd34, iorio3 300 #ffee0011\n');
    expect(text).toContain('1 stream in 1 partition (sensors/temperature)\nOk:0 / Behind:0 / Damaged:0 / Diverged:1 / Unreachable:0\n');
    expect(verifyFailed(answer([diverged]))).toBe(true);
  });

  test('a repair: the verdict found and the one after, a line per repair with where the replaced bytes went, what was left undone', () => {
    const repaired: VerifyRow = {
      ...damagedRow,
      verdict: 'ok',
      replicas: [replica(1, 250), replica(2, 250), replica(3, 250)],
      repairs: [{ target: n(2), source: n(1), kind: 'chunks', records: 48, chunks: 1, aside: ['damaged/vnodes/12/sensors/humidity/00000000000000000101.chunk'], skipped: null }],
    };
    const behind: VerifyRow = {
      ...okRow,
      stream: 'pressure',
      found: 'behind',
      verdict: 'behind',
      replicas: [replica(1, 300, { missing: [] }), replica(2, 280)],
      repairs: [{ target: n(2), source: null, kind: 'tail', records: 0, chunks: 0, aside: [], skipped: 'no reachable replica holds seqnums after its last, up to 300' }],
    };
    const text = formatVerify(answer([okRow, behind, repaired], { repair: true, bucket: 'sensors' }));
    expect(text).toBe(
      [
        '=================================== Verify ====================================',
        'Partition Stream                        Verdict             Replicas (* leads)',
        '-------------------------------------------------------------------------------',
        '7         sensors/temperature           ok                  iorio1* 300, iorio2 300, iorio3 300',
        '7         sensors/pressure              behind              iorio1* 300, iorio2 280',
        '12        sensors/humidity              damaged -> ok       iorio1* 250, iorio2 250, iorio3 250',
        '-------------------------------------------------------------------------------',
        'Repairs:',
        "  sensors/pressure 'iorio2@127.0.0.1': 0 records after its last; not done: no reachable replica holds seqnums after its last, up to 300",
        "  sensors/humidity 'iorio2@127.0.0.1' from 'iorio1@127.0.0.1': 48 records in 1 chunk rebuilt; replaced files set aside: damaged/vnodes/12/sensors/humidity/00000000000000000101.chunk",
        '-------------------------------------------------------------------------------',
        '3 streams in 64 partitions (bucket sensors)',
        'Found: Ok:1 / Behind:1 / Damaged:1 / Diverged:0 / Unreachable:0',
        'Now:   Ok:2 / Behind:1 / Damaged:0 / Diverged:0 / Unreachable:0',
        'Unreachable replicas: none',
      ].join('\n'),
    );
  });

  test('request.n = 1: nothing to compare, exit 0', () => {
    const single = answer([], { n: 1, partitions: 0 });
    expect(formatVerify(single)).toBe('request.n = 1: each partition has one copy, so there is nothing to compare');
    expect(verifyFailed(single)).toBe(false);
  });

  test('command lines: a bucket, a stream, --repair; --repair elsewhere and extra words are usage errors', () => {
    expect(parseCommand(['verify'])).toEqual({ kind: 'verify', bucket: undefined, stream: undefined, repair: false });
    expect(parseCommand(['verify', 'sensors'])).toEqual({ kind: 'verify', bucket: 'sensors', stream: undefined, repair: false });
    expect(parseCommand(['verify', 'sensors/humidity'], undefined, true)).toEqual({ kind: 'verify', bucket: 'sensors', stream: 'humidity', repair: true });
    expect(() => parseCommand(['verify', 'a', 'b'])).toThrow(UsageError);
    expect(() => parseCommand(['verify', 'a/'])).toThrow(UsageError);
    expect(() => parseCommand(['partitions'], undefined, true)).toThrow(/--repair goes with verify only/);
  });
});

describe("staging messages and refusals in Riak's words", () => {
  test('successes', () => {
    expect(stagedText({ command: 'join', node: n(1) }, n(2))).toBe("Success: staged join request for 'iorio2@127.0.0.1' to 'iorio1@127.0.0.1'");
    expect(stagedText({ command: 'leave', node: undefined }, n(3))).toBe("Success: staged leave request for 'iorio3@127.0.0.1'");
    expect(stagedText({ command: 'leave', node: n(4) }, n(3))).toBe("Success: staged leave request for 'iorio4@127.0.0.1'");
    expect(stagedText({ command: 'force-remove', node: n(4) }, '')).toBe("Success: staged remove request for 'iorio4@127.0.0.1'");
    expect(stagedText({ command: 'replace', node: n(3), by: n(5) }, '')).toBe("Success: staged replacement of 'iorio3@127.0.0.1' with 'iorio5@127.0.0.1'");
    expect(stagedText({ command: 'force-replace', node: n(3), by: n(5) }, '')).toBe(
      "Success: staged forced replacement of 'iorio3@127.0.0.1' with 'iorio5@127.0.0.1'",
    );
    expect(stagedText({ command: 'down', node: n(4) }, '')).toBe("Success: 'iorio4@127.0.0.1' marked as down");
    expect(stagedText({ command: 'commit' }, '')).toBe('Cluster changes committed');
    expect(stagedText({ command: 'clear' }, '')).toBe('Cleared staged cluster changes');
  });

  test('refusals by reason code; an unknown code prints the node\'s own reason', () => {
    const cases: [string, Parameters<typeof refusalText>[1], string][] = [
      ['not_member', { command: 'leave', node: n(7) }, "Failed: 'iorio7@127.0.0.1' is not a member of the cluster."],
      ['only_member', { command: 'leave', node: n(1) }, "Failed: 'iorio1@127.0.0.1' is the only member."],
      ['already_leaving', { command: 'leave', node: n(2) }, "'iorio2@127.0.0.1' is already in the process of leaving the cluster."],
      [
        'invalid_replacement',
        { command: 'replace', node: n(2), by: n(3) },
        "Failed: 'iorio3@127.0.0.1' is not a valid replacement candidate.\nOnly newly joining nodes can be used for replacement.",
      ],
      ['already_replacement', { command: 'force-replace', node: n(2), by: n(5) }, "Failed: 'iorio5@127.0.0.1' is already staged to replace another node."],
      ['ring_not_ready', { command: 'commit' }, "Cannot commit until cluster state has converged.\nCheck 'Ring Ready' in 'iorio-admin ring-status'"],
      ['ring_not_ready', { command: 'plan' }, "Cannot plan until cluster state has converged.\nCheck 'Ring Ready' in 'iorio-admin ring-status'"],
      ['nothing_planned', { command: 'commit' }, "You must verify the plan with 'iorio-admin cluster plan' before committing"],
      ['plan_changed', { command: 'commit' }, "The plan has changed. Verify with 'iorio-admin cluster plan' before committing"],
      ['not_reachable', { command: 'join', node: n(1) }, 'Node iorio1@127.0.0.1 is not reachable!'],
      ['different_ring_sizes', { command: 'join', node: n(1) }, 'Failed: iorio1@127.0.0.1 has a different ring_creation_size'],
      ['not_single_node', { command: 'join', node: n(1) }, 'Failed: This node is already a member of a cluster'],
      ['self_join', { command: 'join', node: n(1) }, 'Failed: This node cannot join itself in a cluster'],
      ['is_up', { command: 'down', node: n(3) }, 'Failed: iorio3@127.0.0.1 is up'],
      ['transfers_pending', { command: 'join', node: n(1) }, 'Failed: 3 transfer(s) are pending'],
    ];
    for (const [code, context, expected] of cases) expect(refusalText(code, context, '3 transfer(s) are pending'), code).toBe(expected);
    expect(refusalText('is_claimant', { command: 'force-remove', node: n(1) }, '')).toBe(
      [
        "Failed: 'iorio1@127.0.0.1' is the claimant (see: iorio-admin ring-status).",
        'The claimant is the node responsible for initiating cluster changes,',
        "and cannot forcefully remove itself. You can use 'iorio-admin down' to",
        'mark the node as offline, which will trigger a new claimant to take',
        'over.  However, this will clear any staged changes.',
      ].join('\n'),
    );
    expect(refusalText('is_claimant', { command: 'force-replace', node: n(1), by: n(5) }, '')).toContain('cannot forcefully replace itself');
    expect(refusalText('something_new', { command: 'join', node: n(1) }, '')).toBeUndefined();
  });
});

describe('command lines', () => {
  test('each cluster command and its arguments', () => {
    expect(parseCommand(['cluster', 'join', n(1)])).toEqual({ kind: 'cluster-change', change: 'join', node: n(1), by: undefined });
    expect(parseCommand(['cluster', 'leave'])).toEqual({ kind: 'cluster-change', change: 'leave', node: undefined, by: undefined });
    expect(parseCommand(['cluster', 'leave', n(3)])).toMatchObject({ change: 'leave', node: n(3) });
    expect(parseCommand(['cluster', 'force-remove', n(3)])).toMatchObject({ change: 'force-remove', node: n(3) });
    expect(parseCommand(['cluster', 'replace', n(3), n(5)])).toMatchObject({ change: 'replace', node: n(3), by: n(5) });
    expect(parseCommand(['cluster', 'force-replace', n(3), n(5)])).toMatchObject({ change: 'force-replace', node: n(3), by: n(5) });
    expect(parseCommand(['cluster', 'plan'])).toEqual({ kind: 'cluster-plan' });
    expect(parseCommand(['cluster', 'commit'])).toMatchObject({ kind: 'cluster-change', change: 'commit' });
    expect(parseCommand(['cluster', 'clear'])).toMatchObject({ kind: 'cluster-change', change: 'clear' });
    expect(parseCommand(['down', n(4)])).toMatchObject({ kind: 'cluster-change', change: 'down', node: n(4) });
    expect(parseCommand(['transfers'])).toEqual({ kind: 'transfers' });
    expect(parseCommand(['ring_status'])).toEqual({ kind: 'ring-status' });
    expect(parseCommand(['transfer-limit'])).toEqual({ kind: 'transfer-limit', concurrency: undefined, rateBytesPerSec: undefined });
    expect(parseCommand(['transfer-limit', '4'], '10MB')).toEqual({ kind: 'transfer-limit', concurrency: 4, rateBytesPerSec: 10 * 1024 * 1024 });
    expect(parseCommand(['transfer_limit'], '0')).toEqual({ kind: 'transfer-limit', concurrency: undefined, rateBytesPerSec: 0 });
    expect(parseCommand(['transfer', 'cancel', '17'])).toEqual({ kind: 'transfer-cancel', partition: 17 });
  });

  test('wrong arity, bad node names, bad limits and unknown commands are usage errors', () => {
    const bad: [string[], string | undefined][] = [
      [['cluster'], undefined],
      [['cluster', 'dance'], undefined],
      [['cluster', 'join'], undefined],
      [['cluster', 'join', n(1), n(2)], undefined],
      [['cluster', 'join', 'no-at-sign'], undefined],
      [['cluster', 'leave', n(1), n(2)], undefined],
      [['cluster', 'replace', n(1)], undefined],
      [['cluster', 'force-replace', n(1), n(2), n(3)], undefined],
      [['cluster', 'plan', 'now'], undefined],
      [['cluster', 'commit', n(1)], undefined],
      [['down'], undefined],
      [['transfers', 'all'], undefined],
      [['transfer-limit', 'many'], undefined],
      [['transfer-limit', '1', '2'], undefined],
      [['transfer-limit'], 'fast'],
      [['member-status'], '10MB'],
      [['transfer', 'cancel'], undefined],
      [['transfer', 'cancel', '-1'], undefined],
      [['transfer', 'stop', '1'], undefined],
      [['cluster-status'], undefined],
    ];
    for (const [words, rate] of bad) expect(() => parseCommand(words, rate), words.join(' ')).toThrow(UsageError);
  });
});

describe("the README's Cluster walkthrough", () => {
  test('shows what devrel and the formatters print for its steps', () => {
    const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
    const committed = (count: number) => plan(joiningRing(count), [], 7).ring;
    const shown = [
      devrelTable(devNodes(4, 8098, '/home/me/iorio/dev'), '/home/me/iorio/dev', []),
      formatMemberStatus(membersAnswer(joiningRing(4))),
      formatPlan(planAnswer(joiningRing(4))),
      formatMemberStatus(membersAnswer(futureRing(committed(4)))),
      formatPlan(planAnswer(joiningRing(2))),
      formatMemberStatus(membersAnswer(futureRing(committed(2)))),
    ];
    for (const text of shown) expect(readme).toContain(`\`\`\`\n${text}\n\`\`\`\n`);
  });
});
