/**
 * What `iorio-admin` prints for the cluster commands, as pure functions of
 * the node's answers (cluster/admin-api.ts), laid out as Riak's
 * riak_core_console prints them: member_status, ring_status, print_plan,
 * transfers, transfer_limit and the claimant's refusals. Node names are
 * written as Erlang's `~p` writes a node atom (`'iorio1@127.0.0.1'`) where
 * Riak uses `~p`, bare where it uses `~s`. Golden tests:
 * test/unit/admin-format.test.ts.
 *
 * Where Iorio knows more than Riak printed, it says so in Riak's layout:
 * a member this node cannot reach is marked `(unreachable)` after its name
 * in the Membership table (Riak shows reachability only in `cluster status`,
 * as `down!`); `transfers` shows bytes, entries, streams, rate and ETA where
 * Riak shows objects; `transfer-limit` has a Rate column.
 */
import type {
  MembersAnswer,
  PartitionsAnswer,
  PlanAnswer,
  RingAnswer,
  RingReadyAnswer,
  TransferLimits,
  TransferRow,
  TransfersAnswer,
  VerifyAnswer,
  VerifyReplica,
  VerifyRow,
  VerifyVerdict,
} from '../cluster/admin-api.js';

/** Riak's console width: banners and rules are this many characters. */
export const consoleWidthChars = 79;

const rule = '-'.repeat(consoleWidthChars);
const hashRule = '#'.repeat(consoleWidthChars);

/** Riak's section banner (`~33..=s Membership ~34..=s`): the title centred in `=`, the odd one on the right. */
export function banner(title: string): string {
  const padded = ` ${title} `;
  const left = Math.floor((consoleWidthChars - padded.length) / 2);
  return `${'='.repeat(left)}${padded}${'='.repeat(Math.max(0, consoleWidthChars - padded.length - left))}`;
}

/** Erlang's string:centre/3: the odd pad on the left. */
export function centre(text: string, width: number, fill = ' '): string {
  if (text.length >= width) return text.slice(Math.floor((text.length - width) / 2), Math.floor((text.length - width) / 2) + width);
  const right = Math.floor((width - text.length) / 2);
  return `${fill.repeat(width - text.length - right)}${text}${fill.repeat(right)}`;
}

/** A node as Erlang's `~p` prints a node atom. */
export function quoted(node: string): string {
  return `'${node}'`;
}

/** A list of nodes as `~p` prints it: `['a@h','b@h']`. */
export function nodeList(nodes: readonly string[]): string {
  return `[${nodes.map(quoted).join(',')}]`;
}

/** `~5.1f%`. */
function percentCell(percent: number): string {
  return `${percent.toFixed(1).padStart(5)}%`;
}

/** Joins lines, dropping trailing empty ones (Riak ends some outputs with blank lines). */
function text(lines: readonly string[]): string {
  const kept = [...lines];
  while (kept.length > 0 && kept[kept.length - 1] === '') kept.pop();
  return kept.join('\n');
}

// ---------------------------------------------------------------------------
// member-status

/** One row of the Membership table, from a MemberRow or from a plan's MemberStatusRow. */
export interface MembershipRow {
  readonly node: string;
  readonly status: string;
  readonly ringPercent: number;
  /** null or absent: `--`. */
  readonly pendingPercent?: number | null | undefined;
  /** false: marked `(unreachable)` unless the member is already marked down. */
  readonly reachable?: boolean;
}

export interface MembershipCounts {
  readonly valid: number;
  readonly leaving: number;
  readonly exiting: number;
  readonly joining: number;
  readonly down: number;
}

/** riak_core_console:print_member_status, rows in the order given (the node sends Riak's: by status, then name). */
export function membershipLines(rows: readonly MembershipRow[], counts: MembershipCounts): string[] {
  const lines = [banner('Membership'), 'Status     Ring    Pending    Node', rule];
  for (const row of rows) {
    const pending = row.pendingPercent === null || row.pendingPercent === undefined ? '      --      ' : `    ${percentCell(row.pendingPercent)}    `;
    const mark = row.reachable === false && row.status !== 'down' ? ' (unreachable)' : '';
    lines.push(`${row.status.padEnd(8)}  ${percentCell(row.ringPercent)}${pending}${quoted(row.node)}${mark}`);
  }
  lines.push(rule, `Valid:${counts.valid} / Leaving:${counts.leaving} / Exiting:${counts.exiting} / Joining:${counts.joining} / Down:${counts.down}`);
  return lines;
}

/** `iorio-admin member-status`. */
export function formatMemberStatus(answer: MembersAnswer): string {
  return text(membershipLines(answer.rows, answer));
}

// ---------------------------------------------------------------------------
// ring-status

/** `iorio-admin ring-status`: riak_core_console:ring_status (Claimant, Ownership Handoff, Unreachable Nodes). */
export function formatRingStatus(answer: RingAnswer): string {
  const unreachable = new Set(answer.unreachable);
  const claimantDown = unreachable.has(answer.claimant);
  return text([
    banner('Claimant'),
    `Claimant:  ${quoted(answer.claimant)}`,
    claimantDown ? 'Status:     down' : 'Status:     up',
    claimantDown ? 'Ring Ready: unknown' : `Ring Ready: ${String(answer.ringReady)}`,
    '',
    ...ownershipHandoffLines(answer.pending, unreachable),
    '',
    ...unreachableLines(answer.unreachable),
  ]);
}

/** Pending transfers grouped by (owner, next owner), Riak's orddict order; each group ends with a rule. */
function ownershipHandoffLines(pending: RingAnswer['pending'], unreachable: ReadonlySet<string>): string[] {
  const lines = [banner('Ownership Handoff')];
  if (pending.length === 0) return [...lines, 'No pending changes.'];
  const groups = new Map<string, { source: string; target: string; partitions: number[] }>();
  for (const { partition, source, target } of pending) {
    const key = `${source}\u0000${target}`;
    const group = groups.get(key) ?? { source, target, partitions: [] };
    group.partitions.push(partition);
    groups.set(key, group);
  }
  const ordered = [...groups.values()].sort((a, b) => compare(a.source, b.source) || compare(a.target, b.target));
  for (const group of ordered) {
    lines.push(`Owner:      ${group.source}`, `Next Owner: ${group.target}`, '');
    const down = [group.source, group.target].filter((node) => unreachable.has(node));
    if (down.length > 0) lines.push(...down.map((node) => `!!! ${node} is DOWN !!!`), '');
    lines.push(...[...group.partitions].sort((a, b) => a - b).map((partition) => `Index: ${partition}`), '', rule);
  }
  return lines;
}

function unreachableLines(unreachable: readonly string[]): string[] {
  if (unreachable.length === 0) return [banner('Unreachable Nodes'), 'All nodes are up and reachable'];
  return [
    banner('Unreachable Nodes'),
    `The following nodes are unreachable: ${nodeList(unreachable)}`,
    '',
    'WARNING: The cluster state will not converge until all nodes',
    'are up. Once the above nodes come back online, convergence',
    'will continue. If the outages are long-term or permanent, you',
    'can either mark the nodes as down (iorio-admin down NODE) or',
    'forcibly remove the nodes from the cluster (iorio-admin',
    'cluster force-remove NODE) to allow the remaining nodes to settle.',
  ];
}

// ---------------------------------------------------------------------------
// ringready

/** `iorio-admin ringready`: Riak's TRUE/FALSE line; `ready` false makes the command exit 1, as riak-admin's does. */
export function formatRingReady(answer: RingReadyAnswer): string {
  if (answer.ready) return `TRUE All nodes agree on the ring ${nodeList(answer.nodes)}`;
  const disagreeing = answer.disagreeing.map((entry) => entry.node);
  const lines = [`FALSE ${nodeList(disagreeing)} do not agree on the ring ${nodeList(answer.nodes)}`];
  for (const entry of answer.disagreeing) lines.push(`  ${quoted(entry.node)}: ${entry.reason}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------
// cluster plan

const actionColumnChars = 15;

/** `iorio-admin cluster plan`: riak_core_console:print_plan of the node's PlanAnswer. */
export function formatPlan(answer: PlanAnswer): string {
  const summary = answer.summary;
  if (summary.lines.length === 0) return 'There are no staged changes';
  const lines = [banner('Staged Changes'), 'Action         Details(s)', rule];
  for (const line of summary.lines) {
    const details = line.by === undefined ? quoted(line.node) : `${quoted(line.node)} with ${quoted(line.by)}`;
    lines.push(`${line.action.padEnd(actionColumnChars)}${details}`);
  }
  lines.push(rule, '');
  lines.push(...summary.lost.map((node) => `WARNING: All of ${quoted(node)} replicas will be lost`), '');
  const transitions = Math.max(1, summary.transitions);
  lines.push(`NOTE: Applying these changes will result in ${transitions} cluster transition${transitions === 1 ? '' : 's'}`, '');
  lines.push(hashRule, `${' '.repeat(24)} After cluster transition 1/${transitions}`, hashRule, '');
  lines.push(...membershipLines(summary.memberStatus.rows, summary.memberStatus), '');
  const distinctWarnings = planDistinctWarnings(answer);
  if (distinctWarnings.length > 0) lines.push(...distinctWarnings, '');
  if (summary.reassigned.length > 0) {
    lines.push(`Partitions reassigned from cluster changes: ${summary.reassignedCount}`);
    lines.push(...summary.reassigned.map((tally) => `  ${tally.count} reassigned from ${quoted(tally.source)} to ${quoted(tally.target)}`), '');
  }
  if (summary.transfers.length > 0) {
    lines.push(`Transfers resulting from cluster changes: ${summary.transferCount}`);
    lines.push(...summary.transfers.map((tally) => `  ${tally.count} transfers from ${quoted(tally.source)} to ${quoted(tally.target)}`), '');
  }
  return text(lines);
}

/**
 * Riak's "WARNING: Not all replicas will be on distinct nodes", with the
 * node's own explanation when it gave one (its warnings other than the lost
 * replicas, which print after the staged changes, in Riak's words).
 */
function planDistinctWarnings(answer: PlanAnswer): string[] {
  const lostPrefixes = answer.summary.lost.map((node) => `All of ${quoted(node)} replicas`);
  const others = answer.warnings.filter((warning) => !lostPrefixes.some((prefix) => warning.startsWith(prefix)));
  const lines = others.map((warning) => `WARNING: ${warning.charAt(0).toUpperCase()}${warning.slice(1)}`);
  if (!answer.summary.diverse && lines.length === 0) lines.push('WARNING: Not all replicas will be on distinct nodes');
  return lines;
}

// ---------------------------------------------------------------------------
// transfers

const arrow = '=======> ';
const arrowboxSideChars = 25;
const progressBarChars = 50;

/** riak_core_format:human_size_fmt("~.2f", Bytes). */
export function humanSize(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(2)} ${units[unit]}`;
}

/** riak_core_format:human_time_fmt("~.2f", Micros), from milliseconds. */
export function humanTime(ms: number): string {
  const steps: readonly (readonly [number, string])[] = [
    [1000, 'ms'],
    [60, 's'],
    [60, 'min'],
    [24, 'hr'],
    [365, 'd'],
  ];
  let value = ms * 1000;
  let unit = 'us';
  let divisor = 1000;
  for (const [nextDivisor, nextUnit] of steps) {
    if (value < divisor) break;
    value /= divisor;
    unit = nextUnit;
    divisor = nextDivisor;
  }
  return `${value.toFixed(2)} ${unit}`;
}

/** Riak's datetime_str, in UTC: `2026-11-21 10:00:00`. */
export function datetime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

/**
 * `iorio-admin partitions`: each partition's replica group as its leader
 * reports it (leader, epoch, voters, commit, how far each follower lags),
 * a partition with no leader marked, a group that is changing marked with
 * its old voters; then a summary line.
 */
export function formatPartitions(answer: PartitionsAnswer): string {
  if (answer.n <= 1) return 'request.n = 1: each partition has one copy (no replica groups); see ring-status for its owner\n';
  const short = (node: string): string => node.split('@')[0]!;
  const byPartition = new Map<number, PartitionsAnswer['rows'][number][]>();
  for (const row of answer.rows) byPartition.set(row.partition, [...(byPartition.get(row.partition) ?? []), row]);
  const lines = [banner('Partitions'), `${'Partition'.padEnd(10)}${'Leader'.padEnd(22)}${'Epoch'.padStart(6)}  ${'Voters'.padEnd(26)}${'Commit'.padStart(8)}  Lag`, rule];
  let led = 0;
  let changing = 0;
  for (const [partition, rows] of [...byPartition].sort((a, b) => a[0] - b[0])) {
    const leader = rows.find((row) => row.role === 'leader' && row.leader === row.node);
    const view = leader ?? rows.reduce((a, b) => (b.epoch > a.epoch ? b : a));
    if (leader !== undefined) led++;
    if (view.old !== null) changing++;
    const voters = view.voters.map(short).join(',') + (view.old === null ? '' : ` (from ${view.old.map(short).join(',')})`);
    const lag = leader === undefined ? '-' : leader.followers.map((follower) => `${short(follower.replica)} ${follower.lag}`).join(', ') || '-';
    lines.push(`${String(partition).padEnd(10)}${(leader === undefined ? 'none' : `'${leader.node}'`).padEnd(22)}${String(view.epoch).padStart(6)}  ${voters.padEnd(26)}${String(view.commit).padStart(8)}  ${lag}`);
  }
  lines.push(rule);
  const without = byPartition.size - led;
  lines.push(`${byPartition.size} partitions: ${led} with a leader, ${without} without; ${changing} changing their group; unreachable: ${answer.unreachable.length === 0 ? 'none' : answer.unreachable.join(', ')}`);
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------
// verify

/** The verdicts in the order the summary counts them. */
const verdictOrder: readonly VerifyVerdict[] = ['ok', 'behind', 'damaged', 'diverged', 'unreachable'];

/** Exit 1 unless every stream compared is ok (after the repairs, when repairing) and every replica answered; request.n = 1 has nothing to compare. */
export function verifyFailed(answer: VerifyAnswer): boolean {
  if (answer.n <= 1) return false;
  return answer.unreachable.length > 0 || verdictOrder.some((verdict) => verdict !== 'ok' && answer.counts[verdict] > 0);
}

/** `n1 120`, `n2* 120` (the leader), with what it cannot read, its digest when the stream diverged, or `n3 unreachable`. */
function replicaCell(replica: VerifyReplica, row: VerifyRow): string {
  const name = `${replica.node.split('@')[0]!}${replica.leader ? '*' : ''}`;
  if (!replica.reachable) return `${name} unreachable`;
  const missing = replica.missing.length === 0 ? '' : ` missing ${replica.missing.map((range) => (range.from === range.to ? `${range.from}` : `${range.from}-${range.to}`)).join(',')}`;
  const digest = row.found === 'diverged' || row.verdict === 'diverged' ? ` #${(replica.digest ?? '').slice(0, 8)}` : '';
  return `${name} ${replica.last ?? 0}${missing}${digest}`;
}

function verdictCounts(counts: Readonly<Record<VerifyVerdict, number>>): string {
  return verdictOrder.map((verdict) => `${verdict.charAt(0).toUpperCase()}${verdict.slice(1)}:${counts[verdict]}`).join(' / ');
}

/** One repair as a line: who was filled from whom, what was done, where the replaced files went, what was skipped. */
function repairLine(row: VerifyRow, repair: VerifyRow['repairs'][number]): string {
  const who = repair.source === null ? quoted(repair.target) : `${quoted(repair.target)} from ${quoted(repair.source)}`;
  const done =
    repair.kind === 'tail'
      ? `${repair.records} records after its last`
      : `${repair.records} records in ${repair.chunks} chunk${repair.chunks === 1 ? '' : 's'} rebuilt${repair.aside.length === 0 ? '' : `; replaced files set aside: ${repair.aside.join(', ')}`}`;
  return `  ${row.bucket}/${row.stream} ${who}: ${done}${repair.skipped === null ? '' : `; not done: ${repair.skipped}`}`;
}

/**
 * `iorio-admin verify [bucket[/stream]] [--repair]`: one line per stream
 * (partition, stream, verdict, each replica's last seqnum, the leader
 * starred, what it cannot read), laid out as `partitions` is; with
 * --repair the verdict found and the one after (`damaged -> ok`) and a line
 * per repair; then the counts in member-status's `Valid:2 / ...` style.
 */
export function formatVerify(answer: VerifyAnswer): string {
  if (answer.n <= 1) return 'request.n = 1: each partition has one copy, so there is nothing to compare';
  const lines = [banner('Verify'), `${'Partition'.padEnd(10)}${'Stream'.padEnd(30)}${'Verdict'.padEnd(20)}Replicas (* leads)`, rule];
  if (answer.rows.length === 0) lines.push('(no streams)');
  for (const row of answer.rows) {
    const verdict = answer.repair && row.found !== row.verdict ? `${row.found} -> ${row.verdict}` : row.verdict;
    const name = `${row.bucket}/${row.stream}`;
    lines.push(`${String(row.partition).padEnd(10)}${name.padEnd(29)} ${verdict.padEnd(19)} ${row.replicas.map((replica) => replicaCell(replica, row)).join(', ')}`);
  }
  lines.push(rule);
  const repairs = answer.rows.flatMap((row) => row.repairs.map((repair) => repairLine(row, repair)));
  if (repairs.length > 0) lines.push('Repairs:', ...repairs, rule);
  const scope = answer.stream !== null ? `${answer.bucket}/${answer.stream}` : answer.bucket !== null ? `bucket ${answer.bucket}` : 'every bucket';
  lines.push(`${answer.streams} stream${answer.streams === 1 ? '' : 's'} in ${answer.partitions} partition${answer.partitions === 1 ? '' : 's'} (${scope})${answer.rowsOmitted > 0 ? `; ${answer.rowsOmitted} ok ones not listed` : ''}`);
  if (answer.repair) lines.push(`Found: ${verdictCounts(answer.found)}`, `Now:   ${verdictCounts(answer.counts)}`);
  else lines.push(verdictCounts(answer.counts));
  lines.push(`Unreachable replicas: ${answer.unreachable.length === 0 ? 'none' : nodeList(answer.unreachable)}`);
  return lines.join('\n');
}

/**
 * `iorio-admin transfers`: riak_core_console:transfers. First who still has
 * partitions to hand off ("'n' waiting to handoff N partitions", or "No
 * transfers active"), then each running transfer in Riak's status_v2 layout
 * with its arrow box, then the members that could not be asked.
 */
export function formatTransfers(answer: TransfersAnswer, nowMs: number): string {
  const lines: string[] = [];
  const waiting = new Map<string, number>();
  for (const transfer of answer.transfers) waiting.set(transfer.source, (waiting.get(transfer.source) ?? 0) + 1);
  const sources = [...waiting.keys()].sort(compare);
  if (sources.length === 0) lines.push('No transfers active');
  for (const source of sources) lines.push(`${quoted(source)} waiting to handoff ${waiting.get(source)} partitions`);
  lines.push('', 'Active Transfers:', '');
  const active = answer.transfers.filter((transfer) => transfer.state !== 'waiting').sort((a, b) => a.partition - b.partition);
  for (const transfer of active) lines.push(...activeTransferLines(transfer, nowMs), '');
  lines.push('');
  lines.push(...answer.unreachable.map((node) => `Node ${quoted(node)} could not be contacted`));
  return text(lines);
}

function activeTransferLines(transfer: TransferRow, nowMs: number): string[] {
  const started = transfer.startedMs === null ? 'not yet' : `${datetime(transfer.startedMs)} [${humanTime(Math.max(0, nowMs - transfer.startedMs))} ago]`;
  const fraction = transfer.streams > 0 ? transfer.streamsDone / transfer.streams : undefined;
  return [
    'transfer type: ownership',
    `partition: ${transfer.partition}`,
    `started: ${started}`,
    `state: ${transfer.state}`,
    `streams transferred: ${transfer.streamsDone} of ${transfer.streams}`,
    `entries transferred: ${transfer.entries}`,
    `bytes transferred: ${humanSize(transfer.bytes)}`,
    `eta: ${transfer.etaSecs === null ? 'unknown' : humanTime(transfer.etaSecs * 1000)}`,
    '',
    ...arrowbox(transfer.source, transfer.target, `${transfer.entries} entries`, `${humanSize(transfer.rateBytesPerSec)}/s`, fraction),
  ];
}

/** Riak's print_arrowbox: the top label, source =======> target (names past 25 characters wrap), the progress bar, the bottom label. */
function arrowbox(source: string, target: string, top: string, bottom: string, fraction: number | undefined): string[] {
  const [sourceFirst, ...sourceRest] = wrapName(source);
  const [targetFirst, ...targetRest] = wrapName(target);
  const toFrom = `${sourceFirst!.padStart(arrowboxSideChars)} ${arrow.padStart(10)} ${targetFirst!.padStart(arrowboxSideChars)}`;
  const width = toFrom.length;
  const lines = [centre(top, width), toFrom];
  for (let index = 0; index < Math.max(sourceRest.length, targetRest.length); index++) {
    lines.push(`${(sourceRest[index] ?? '').padEnd(arrowboxSideChars)} ${''.padEnd(10)} ${(targetRest[index] ?? '').padEnd(arrowboxSideChars)}`);
  }
  lines.push(centre(`     ${progressBar(fraction)}`, width), centre(bottom, width));
  return lines.map((line) => line.trimEnd());
}

/** A name centred in 25 characters, or cut in pieces of 25 (Riak's wrap: at most three lines). */
function wrapName(name: string): string[] {
  if (name.length < arrowboxSideChars) return [centre(name, arrowboxSideChars)];
  return [name.slice(0, 25), name.slice(25, 50), name.slice(50, 75)].filter((piece, index) => index === 0 || piece !== '');
}

/** `|=====      |  30%` in 50 characters; N/A when the share done is not known. */
function progressBar(fraction: number | undefined): string {
  const barChars = progressBarChars - 7;
  if (fraction === undefined) return `|${' '.repeat(barChars)}| N/A`;
  const clamped = Math.min(1, Math.max(0, fraction));
  const done = Math.trunc(clamped * barChars);
  return `|${'='.repeat(done)}${' '.repeat(barChars - done)}| ${String(Math.trunc(clamped * 100)).padStart(3)}%`;
}

// ---------------------------------------------------------------------------
// transfer-limit

/** A rate in bytes per second, or "unlimited" for 0. */
export function rateText(bytesPerSec: number): string {
  return bytesPerSec === 0 ? 'unlimited' : `${humanSize(bytesPerSec)}/s`;
}

/** `iorio-admin transfer-limit` without arguments: riak_core_console:transfer_limit, with a Rate column. */
export function formatTransferLimits(node: string, limits: TransferLimits): string {
  return [
    centre(' Transfer Limit ', consoleWidthChars, '='),
    'Limit        Rate           Node',
    rule,
    `${String(limits.concurrency).padStart(5)}        ${rateText(limits.rateBytesPerSec).padEnd(15)}${quoted(node)}`,
    rule,
    "Note: You can change transfer limits with 'iorio-admin transfer-limit <limit>'",
    "      and 'iorio-admin transfer-limit --rate <size>' (per node: run it on each node)",
  ].join('\n');
}

/** What `transfer-limit <n> [--rate <size>]` prints once the node took the new limits. */
export function formatTransferLimitSet(node: string, limits: TransferLimits): string {
  return `Set transfer limit for ${quoted(node)} to ${limits.concurrency} (rate: ${rateText(limits.rateBytesPerSec)})`;
}

// ---------------------------------------------------------------------------
// Staging messages and refusals

/** The cluster command a message is about: the node and the replacement named on its line. */
export interface ClusterContext {
  readonly command: 'join' | 'leave' | 'force-remove' | 'replace' | 'force-replace' | 'plan' | 'commit' | 'clear' | 'down';
  readonly node?: string | undefined;
  readonly by?: string | undefined;
}

const claimantLines = (node: string, action: string): string =>
  [
    `Failed: ${quoted(node)} is the claimant (see: iorio-admin ring-status).`,
    'The claimant is the node responsible for initiating cluster changes,',
    `and cannot forcefully ${action} itself. You can use 'iorio-admin down' to`,
    'mark the node as offline, which will trigger a new claimant to take',
    'over.  However, this will clear any staged changes.',
  ].join('\n');

/**
 * Riak's words for a refusal of the claimant (riak_core_console and
 * riak_kv_console), from the node's `reason_code`; undefined when Riak has
 * none for it (the caller prints the node's own reason).
 */
export function refusalText(reasonCode: string, context: ClusterContext, reason: string): string | undefined {
  const node = context.node ?? '';
  const by = context.by ?? '';
  switch (reasonCode) {
    case 'not_member':
      return `Failed: ${quoted(node)} is not a member of the cluster.`;
    case 'only_member':
      return `Failed: ${quoted(node)} is the only member.`;
    case 'already_leaving':
      return `${quoted(node)} is already in the process of leaving the cluster.`;
    case 'is_claimant':
      return claimantLines(node, context.command === 'force-remove' ? 'remove' : 'replace');
    case 'invalid_replacement':
      return `Failed: ${quoted(by)} is not a valid replacement candidate.\nOnly newly joining nodes can be used for replacement.`;
    case 'already_replacement':
      return `Failed: ${quoted(by)} is already staged to replace another node.`;
    case 'ring_not_ready':
      return `Cannot ${context.command === 'commit' ? 'commit' : 'plan'} until cluster state has converged.\nCheck 'Ring Ready' in 'iorio-admin ring-status'`;
    case 'nothing_planned':
      return "You must verify the plan with 'iorio-admin cluster plan' before committing";
    case 'plan_changed':
      return "The plan has changed. Verify with 'iorio-admin cluster plan' before committing";
    case 'not_reachable':
      return `Node ${node} is not reachable!`;
    case 'different_ring_sizes':
      return `Failed: ${node} has a different ring_creation_size`;
    case 'unable_to_get_join_ring':
      return `Failed: Unable to get ring from ${node}`;
    case 'not_single_node':
      return 'Failed: This node is already a member of a cluster';
    case 'self_join':
      return 'Failed: This node cannot join itself in a cluster';
    case 'is_up':
      return `Failed: ${node} is up`;
    default:
      return reason === '' ? undefined : `Failed: ${reason}`;
  }
}

/** What a staged change prints once the node took it (Riak's "Success: staged ..."). */
export function stagedText(context: ClusterContext, thisNode: string): string {
  const node = quoted(context.node ?? thisNode);
  switch (context.command) {
    case 'join':
      return `Success: staged join request for ${quoted(thisNode)} to ${node}`;
    case 'leave':
      return `Success: staged leave request for ${node}`;
    case 'force-remove':
      return `Success: staged remove request for ${node}`;
    case 'replace':
      return `Success: staged replacement of ${node} with ${quoted(context.by ?? '')}`;
    case 'force-replace':
      return `Success: staged forced replacement of ${node} with ${quoted(context.by ?? '')}`;
    case 'down':
      return `Success: ${node} marked as down`;
    case 'commit':
      return 'Cluster changes committed';
    case 'clear':
      return 'Cleared staged cluster changes';
    case 'plan':
      return '';
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
