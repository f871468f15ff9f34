/**
 * Riak's staged cluster changes turned into the ring they commit to
 * (riak_core_claimant: stage, plan, commit), pure: plan(ring, staged, seed)
 * is deterministic, so `cluster commit` recomputes it with the seed `cluster
 * plan` used and refuses if the result differs (commitPlan).
 *
 * What a plan does, in this order:
 *
 * 1. force-replace X by Y: Y takes X's place everywhere at once (owner of
 *    X's partitions, source or target of X's pending transfers, and X's
 *    status, valid if X was down: a leaving X's leave goes on as Y's); X is
 *    gone. Nothing is copied from X: Y gets X's replicas from the others.
 * 2. force-remove X: X is gone; pending transfers from X finish at once (the
 *    target owns the partition), those to X are dropped; claim gives X's
 *    partitions new owners directly, without transfers. What only X held is
 *    lost, and the plan says so.
 * 3. replace X by Y: Y is valid, X leaving; each of X's partitions is handed
 *    off to Y (transfers), one for one.
 * 4. leave X: X is leaving (exiting at once when it owns nothing); claim
 *    gives its partitions to the others through transfers.
 * 5. join Y, or a member already in the ring as joining (Riak's cluster
 *    join): Y is valid; claim gives it partitions through transfers.
 *
 * Claim runs on the owners as they will be once pending transfers finish,
 * over the valid members after the changes: always when anything joins,
 * leaves or is force-removed, and otherwise when it safely can (nothing
 * pending, nobody down), where on a balanced, diverse layout it moves
 * nothing. Owners of transferred partitions do not change until handoff
 * completes them (ring.completeTransfer).
 *
 * Refused (IorioError 'conflict', `details.reason` as Riak's atoms): a
 * change to a node that is not a member; a second change for one node; a
 * leave of the only member or of one already leaving; a force-remove or
 * force-replace of the claimant (mark it down first, which moves the
 * claimant); a replacement that is a member other than a joining one, or
 * that already replaces another node; a plan that leaves no valid member.
 * And, where Riak defers its rebalance instead, so that what plan prints is
 * what happens: a join, leave or replace while transfers are pending (other
 * than those a force-remove or force-replace in the same plan ends), and any
 * claim or replace while a member stays down (a down node cannot hand off:
 * bring it back, or force-remove or force-replace it in the same plan).
 */
import { claim, isDiverse, type ClaimResult } from './claim.js';
import { IorioError } from './errors.js';
import { ringMembersMax } from './limits.js';
import {
  addressProblem,
  futureOwners,
  memberOf,
  memberStatus,
  MemberStatus,
  nodeNameProblem,
  notMember,
  ringFrom,
  ringsEqual,
  settleLeavers,
  type Member,
  type MemberInfo,
  type MemberStatusTable,
  type Ring,
  type Transfer,
} from './ring.js';

/** The staged changes of `iorio-admin cluster`, named as Riak's plan prints them. */
export const ChangeKind = {
  join: 'join',
  leave: 'leave',
  forceRemove: 'force-remove',
  replace: 'replace',
  forceReplace: 'force-replace',
} as const;
export type ChangeKind = (typeof ChangeKind)[keyof typeof ChangeKind];

/** One staged change: a joiner or replacement comes with its addresses (it may not be in the ring yet). */
export type StagedChange =
  | { readonly kind: 'join'; readonly member: MemberInfo }
  | { readonly kind: 'leave'; readonly node: string }
  | { readonly kind: 'force-remove'; readonly node: string }
  | { readonly kind: 'replace'; readonly node: string; readonly by: MemberInfo }
  | { readonly kind: 'force-replace'; readonly node: string; readonly by: MemberInfo };

/** Why a change or a plan is refused: `details.reason` of the IorioError (Riak's atoms where Riak has one). */
export const PlanRefusal = {
  notMember: 'not_member',
  alreadyMember: 'already_member',
  alreadyStaged: 'already_staged',
  onlyMember: 'only_member',
  alreadyLeaving: 'already_leaving',
  isClaimant: 'is_claimant',
  invalidReplacement: 'invalid_replacement',
  alreadyReplacement: 'already_replacement',
  invalidMember: 'invalid_member',
  noValidMember: 'no_valid_member',
  tooManyMembers: 'too_many_members',
  transfersPending: 'transfers_pending',
  memberDown: 'member_down',
  nothingPlanned: 'nothing_planned',
  planChanged: 'plan_changed',
} as const;
export type PlanRefusal = (typeof PlanRefusal)[keyof typeof PlanRefusal];

/** One line of Riak's "Staged Changes" table: `join 'y'`, `replace 'x' with 'y'`. */
export interface PlanLine {
  readonly action: ChangeKind;
  readonly node: string;
  readonly by?: string;
}

/** `count` partitions going from source to target ("  4 transfers from 'a' to 'b'"). */
export interface Tally {
  readonly source: string;
  readonly target: string;
  readonly count: number;
}

/** A member's partitions before the plan and once its transfers finish. */
export interface OwnershipRow {
  readonly node: string;
  /** undefined: not a member before (joins) or after (force-removed, force-replaced). */
  readonly statusBefore: MemberStatus | undefined;
  readonly statusAfter: MemberStatus | undefined;
  readonly before: number;
  readonly after: number;
}

/** Everything `iorio-admin cluster plan` prints, as data. */
export interface PlanSummary {
  /** One per change (joining members included), by node. Empty: "There are no staged changes". */
  readonly lines: readonly PlanLine[];
  /** Nodes whose replicas are lost ("WARNING: All of 'x' replicas will be lost"). */
  readonly lost: readonly string[];
  /**
   * "NOTE: Applying these changes will result in N cluster transition(s)":
   * 1 for any change. Riak can need several (a leave, then a rebalance once
   * its transfers finish); here claim computes the final layout at once, and
   * a claim of a settled layout moves nothing (tested), so none follows.
   */
  readonly transitions: number;
  /** The Membership table of the planned ring (Ring % once committed, Pending % once transfers finish). */
  readonly memberStatus: MemberStatusTable;
  /** Per member, by node: partitions before and after. */
  readonly ownership: readonly OwnershipRow[];
  /** "Partitions reassigned from cluster changes: N": owners changed at once (force-remove, force-replace). */
  readonly reassignedCount: number;
  readonly reassigned: readonly Tally[];
  /** "Transfers resulting from cluster changes: N". */
  readonly transferCount: number;
  readonly transfers: readonly Tally[];
  /** Every targetN consecutive partitions on distinct nodes once transfers finish (else "WARNING: Not all replicas will be on distinct nodes"). */
  readonly diverse: boolean;
}

export interface Plan {
  /** The ring as it will be once committed: version bumped, statuses changed, `next` holding the transfers. */
  readonly ring: Ring;
  readonly transfers: readonly Transfer[];
  readonly summary: PlanSummary;
  /** Lines to print after the table: replicas lost, replicas not on distinct nodes. */
  readonly warnings: readonly string[];
}

/** Turns staged changes into the ring they commit to; deterministic for (ring, staged, seed). */
export function plan(ring: Ring, staged: readonly StagedChange[], seed: number): Plan {
  const changes = checkStaged(ring, staged);
  if (changes.length === 0) return emptyPlan(ring);
  const draft = new Draft(ring);
  draft.apply(changes);
  checkDraft(draft, changes);
  const claimed = draft.needsClaim(changes) || draft.canClaim() ? runClaim(draft, seed) : undefined;
  const planned = draft.finish(claimed?.owners ?? draft.futureLayout());
  return describe(ring, planned, changes, draft, claimed);
}

/**
 * Checks staged changes against the ring and each other and returns them in
 * plan order (by node), joining members of the ring added as joins; throws
 * the first refusal. Staging a change is checkStaged(ring, [...staged, change]).
 */
export function checkStaged(ring: Ring, staged: readonly StagedChange[]): StagedChange[] {
  const nodes = new Set<string>();
  const replacements = new Set<string>();
  for (const change of staged) {
    const node = changeNode(change);
    if (nodes.has(node)) throw refusal(PlanRefusal.alreadyStaged, `'${node}' already has a staged change`, node);
    nodes.add(node);
  }
  for (const change of staged) {
    checkChange(ring, change, nodes, replacements);
    if (change.kind === 'replace' || change.kind === 'force-replace') replacements.add(change.by.name);
  }
  const implicit = ring.members
    .filter((member) => member.status === MemberStatus.joining && !nodes.has(member.name) && !replacements.has(member.name))
    .map((member): StagedChange => ({ kind: 'join', member }));
  return [...staged, ...implicit].sort((a, b) => compareNames(changeNode(a), changeNode(b)));
}

/** `cluster commit`: recomputes the plan with its seed and returns the ring to install, or refuses if it changed since `planned`. */
export function commitPlan(ring: Ring, staged: readonly StagedChange[], seed: number, planned: Ring): Ring {
  const recomputed = plan(ring, staged, seed);
  if (recomputed.summary.lines.length === 0) {
    throw refusal(PlanRefusal.nothingPlanned, "There are no staged changes: verify the plan with 'iorio-admin cluster plan' before committing");
  }
  if (!samePlan(recomputed.ring, planned)) {
    throw refusal(PlanRefusal.planChanged, "The plan has changed. Verify with 'iorio-admin cluster plan' before committing");
  }
  return recomputed.ring;
}

/** Two planned rings commit to the same thing: members, statuses, owners and transfers (Riak's same_plan; versions aside). */
export function samePlan(a: Ring, b: Ring): boolean {
  return ringsEqual({ ...a, version: 0 }, { ...b, version: 0 });
}

// ---------------------------------------------------------------------------
// Checks

function changeNode(change: StagedChange): string {
  return change.kind === 'join' ? change.member.name : change.node;
}

function checkChange(ring: Ring, change: StagedChange, nodes: ReadonlySet<string>, replacements: ReadonlySet<string>): void {
  switch (change.kind) {
    case 'join':
      return checkJoin(ring, change.member);
    case 'leave':
      return checkLeave(ring, change.node);
    case 'force-remove':
      return checkForceRemove(ring, change.node);
    case 'replace':
    case 'force-replace':
      return checkReplace(ring, change, nodes, replacements);
  }
}

function checkJoin(ring: Ring, member: MemberInfo): void {
  checkMemberInfo(member);
  if (memberOf(ring, member.name) !== undefined) throw refusal(PlanRefusal.alreadyMember, `'${member.name}' is already a member of the cluster`, member.name);
}

function checkLeave(ring: Ring, node: string): void {
  const member = memberOf(ring, node);
  if (member === undefined) throw notMember(node);
  if (ring.members.length === 1) throw refusal(PlanRefusal.onlyMember, `'${node}' is the only member`, node);
  if (member.status === MemberStatus.leaving || member.status === MemberStatus.exiting) {
    throw refusal(PlanRefusal.alreadyLeaving, `'${node}' is already in the process of leaving the cluster`, node);
  }
  if (member.status === MemberStatus.down) throw downRefusal(node);
}

/** A down node cannot hand its partitions off. */
function downRefusal(node: string): IorioError {
  return refusal(PlanRefusal.memberDown, `'${node}' is down and cannot hand off its partitions: bring it back, or force-remove or force-replace it`, node);
}

function checkForceRemove(ring: Ring, node: string): void {
  if (memberOf(ring, node) === undefined) throw notMember(node);
  if (node === ring.claimant) throw claimantRefusal(node, 'remove');
  if (ring.members.length === 1) throw refusal(PlanRefusal.onlyMember, `'${node}' is the only member`, node);
}

function checkReplace(
  ring: Ring,
  change: Extract<StagedChange, { kind: 'replace' | 'force-replace' }>,
  nodes: ReadonlySet<string>,
  replacements: ReadonlySet<string>,
): void {
  const member = memberOf(ring, change.node);
  if (member === undefined) throw notMember(change.node);
  if (change.kind === 'force-replace' && change.node === ring.claimant) throw claimantRefusal(change.node, 'replace');
  if (change.kind === 'replace' && (member.status === MemberStatus.leaving || member.status === MemberStatus.exiting)) {
    throw refusal(PlanRefusal.alreadyLeaving, `'${change.node}' is already in the process of leaving the cluster`, change.node);
  }
  if (change.kind === 'replace' && member.status === MemberStatus.down) throw downRefusal(change.node);
  checkMemberInfo(change.by);
  const replacement = change.by.name;
  if (replacements.has(replacement)) throw refusal(PlanRefusal.alreadyReplacement, `'${replacement}' is already staged to replace another node`, replacement);
  const existing = memberOf(ring, replacement);
  const isNewcomer = existing === undefined || existing.status === MemberStatus.joining;
  if (!isNewcomer || nodes.has(replacement) || replacement === change.node) {
    throw refusal(PlanRefusal.invalidReplacement, `'${replacement}' is not a valid replacement candidate: only newly joining nodes can be used for replacement`, replacement);
  }
}

function checkMemberInfo(member: MemberInfo): void {
  const problem = nodeNameProblem(member.name) ?? addressProblem(member.cluster) ?? addressProblem(member.http);
  if (problem !== undefined) throw new IorioError('invalid-param', problem, { reason_code: PlanRefusal.invalidMember, node: member.name });
}

function claimantRefusal(node: string, action: string): IorioError {
  return refusal(
    PlanRefusal.isClaimant,
    `'${node}' is the claimant (see: iorio-admin ring-status). The claimant is the node responsible for initiating cluster changes, and cannot forcefully ${action} itself. You can use 'iorio-admin down' to mark the node as offline, which will make another node the claimant.`,
    node,
  );
}

/** Refusals that need the whole plan: pending transfers, down members, no valid member left, too many members. */
function checkDraft(draft: Draft, changes: readonly StagedChange[]): void {
  const movesData = changes.some((change) => change.kind === 'join' || change.kind === 'leave' || change.kind === 'replace');
  if (movesData && draft.next.size > 0) {
    throw refusal(PlanRefusal.transfersPending, `${draft.next.size} transfer(s) are pending: wait until they finish (iorio-admin transfers), as joins, leaves and replaces move data`);
  }
  const down = [...draft.members.values()].filter((member) => member.status === MemberStatus.down).map((member) => member.name);
  if (down.length > 0 && (movesData || draft.needsClaim(changes))) {
    const names = down.map((name) => `'${name}'`).join(', ');
    throw refusal(PlanRefusal.memberDown, `${names} ${down.length === 1 ? 'is' : 'are'} down: bring ${down.length === 1 ? 'it' : 'them'} back, or stage a force-remove or force-replace for ${down.length === 1 ? 'it' : 'each'}`, down[0]);
  }
  if (draft.claimingMembers().length === 0) throw refusal(PlanRefusal.noValidMember, 'these changes would leave no valid member to own the partitions');
  if (draft.members.size - draft.removed.size > ringMembersMax) throw refusal(PlanRefusal.tooManyMembers, `a ring holds at most ${ringMembersMax} members`);
}

function refusal(reason: PlanRefusal, message: string, node?: string): IorioError {
  return new IorioError('conflict', message, node === undefined ? { reason_code: reason } : { reason_code: reason, node });
}

// ---------------------------------------------------------------------------
// Applying the changes

/** The ring being planned, mutable while the plan is made. */
class Draft {
  readonly members: Map<string, Member>;
  /** Owner of each partition now (force changes applied). */
  readonly owners: string[];
  readonly next: Map<number, Transfer>;
  /** Force-removed nodes: their partitions change owner directly. */
  readonly removed = new Set<string>();
  /** replace X by Y: X's partitions go to Y. */
  readonly replacing = new Map<string, string>();
  /** Partitions reassigned directly (force-remove), with their old owner. */
  readonly reassigned: Tally[] = [];

  constructor(readonly ring: Ring) {
    this.members = new Map(ring.members.map((member) => [member.name, member]));
    this.owners = [...ring.owners];
    this.next = new Map(ring.next.map((transfer) => [transfer.partition, transfer]));
  }

  apply(changes: readonly StagedChange[]): void {
    for (const change of changes) if (change.kind === 'force-replace') this.forceReplace(change.node, change.by);
    for (const change of changes) if (change.kind === 'force-remove') this.forceRemove(change.node);
    for (const change of changes) {
      if (change.kind === 'replace') this.replace(change.node, change.by);
      if (change.kind === 'leave') this.setStatus(change.node, MemberStatus.leaving);
      if (change.kind === 'join') this.join(change.member);
    }
  }

  needsClaim(changes: readonly StagedChange[]): boolean {
    return changes.some((change) => change.kind === 'join' || change.kind === 'leave' || change.kind === 'force-remove');
  }

  /**
   * Claim may run even when no change needs it (a replace alone): no member
   * down, no transfer pending. On a balanced, diverse layout it moves
   * nothing; otherwise (a replaced joining node, say) it rebalances.
   */
  canClaim(): boolean {
    return this.next.size === 0 && ![...this.members.values()].some((member) => member.status === MemberStatus.down);
  }

  /** Valid members after the changes, by name: who owns partitions once the plan is done. */
  claimingMembers(): string[] {
    return [...this.members.values()]
      .filter((member) => member.status === MemberStatus.valid)
      .map((member) => member.name)
      .sort(compareNames);
  }

  /** Owners once pending transfers finish, each replaced node's partitions given to its replacement. */
  futureLayout(): string[] {
    return this.owners.map((owner, partition) => {
      const future = this.next.get(partition)?.target ?? owner;
      return this.replacing.get(future) ?? future;
    });
  }

  /** The planned ring: force-removed partitions owned by their new owners at once, every other change a transfer. */
  finish(layout: readonly string[]): Ring {
    const owners = [...this.owners];
    const next: Transfer[] = [];
    for (let partition = 0; partition < owners.length; partition++) {
      const owner = owners[partition]!;
      const target = layout[partition]!;
      if (this.removed.has(owner)) {
        owners[partition] = target;
        this.reassigned.push({ source: owner, target, count: 1 });
      } else if (target !== owner) {
        next.push({ partition, source: owner, target });
      }
    }
    const remaining = [...this.members.values()].filter((member) => !this.removed.has(member.name));
    const members = settleLeavers(remaining, owners, next);
    return ringFrom({ ...this.ring, version: this.ring.version + 1, members, owners, next });
  }

  private forceReplace(node: string, by: MemberInfo): void {
    const member = this.members.get(node)!;
    this.members.delete(node);
    const status = member.status === MemberStatus.down ? MemberStatus.valid : member.status;
    this.members.set(by.name, { ...this.joiner(by), status });
    const rename = (name: string) => (name === node ? by.name : name);
    this.owners.forEach((owner, partition) => (this.owners[partition] = rename(owner)));
    for (const [partition, transfer] of this.next) this.next.set(partition, { partition, source: rename(transfer.source), target: rename(transfer.target) });
    this.reassigned.push(...tallyOf(this.ring.owners.map((owner) => ({ source: owner, target: rename(owner) })).filter((move) => move.source !== move.target)));
  }

  private forceRemove(node: string): void {
    this.removed.add(node);
    this.members.set(node, { ...this.members.get(node)!, status: MemberStatus.exiting });
    for (const [partition, transfer] of this.next) {
      if (transfer.source === node) {
        this.owners[partition] = transfer.target;
        this.reassigned.push({ source: node, target: transfer.target, count: 1 });
      }
      if (transfer.source === node || transfer.target === node) this.next.delete(partition);
    }
  }

  private replace(node: string, by: MemberInfo): void {
    this.setStatus(node, MemberStatus.leaving);
    this.members.set(by.name, { ...this.joiner(by), status: MemberStatus.valid });
    this.replacing.set(node, by.name);
  }

  private join(member: MemberInfo): void {
    this.members.set(member.name, { ...this.joiner(member), status: MemberStatus.valid });
  }

  /** A newcomer's entry: its own registration when it is in the ring as joining. */
  private joiner(member: MemberInfo): Member {
    const registered = this.members.get(member.name);
    return registered ?? { name: member.name, status: MemberStatus.joining, cluster: { ...member.cluster }, http: { ...member.http } };
  }

  private setStatus(node: string, status: MemberStatus): void {
    this.members.set(node, { ...this.members.get(node)!, status });
  }
}

function runClaim(draft: Draft, seed: number): ClaimResult {
  return claim({ size: draft.ring.size, owners: draft.futureLayout(), members: draft.claimingMembers(), targetN: draft.ring.targetN, seed });
}

// ---------------------------------------------------------------------------
// The summary

function emptyPlan(ring: Ring): Plan {
  const summary: PlanSummary = {
    lines: [],
    lost: [],
    transitions: 0,
    memberStatus: memberStatus(ring),
    ownership: ownershipRows(ring, ring),
    reassignedCount: 0,
    reassigned: [],
    transferCount: 0,
    transfers: [],
    diverse: isLayoutDiverse(ring),
  };
  return { ring, transfers: ring.next, summary, warnings: [] };
}

function describe(before: Ring, planned: Ring, changes: readonly StagedChange[], draft: Draft, claimed: ClaimResult | undefined): Plan {
  const lost = changes.filter((change) => change.kind === 'force-remove' || change.kind === 'force-replace').map(changeNode);
  const diverse = isLayoutDiverse(planned);
  const warnings = lost.map((node) => `All of '${node}' replicas will be lost: what it held survives only where other replicas have it`);
  if (!diverse) warnings.push(claimed?.warning ?? `Not all replicas will be on distinct nodes (target_n_val ${planned.targetN})`);
  const reassigned = tallyOf(draft.reassigned.flatMap((tally) => new Array<Tally>(tally.count).fill(tally)));
  const summary: PlanSummary = {
    lines: changes.map(lineOf),
    lost,
    transitions: 1,
    memberStatus: memberStatus(planned),
    ownership: ownershipRows(before, planned),
    reassignedCount: reassigned.reduce((sum, tally) => sum + tally.count, 0),
    reassigned,
    transferCount: planned.next.length,
    transfers: tallyOf(planned.next),
    diverse,
  };
  return { ring: planned, transfers: planned.next, summary, warnings };
}

function lineOf(change: StagedChange): PlanLine {
  switch (change.kind) {
    case 'join':
      return { action: change.kind, node: change.member.name };
    case 'leave':
    case 'force-remove':
      return { action: change.kind, node: change.node };
    case 'replace':
    case 'force-replace':
      return { action: change.kind, node: change.node, by: change.by.name };
  }
}

/** Moves counted per (source, target), sorted. */
function tallyOf(moves: readonly { source: string; target: string }[]): Tally[] {
  const counts = new Map<string, Tally>();
  for (const { source, target } of moves) {
    const key = `${source}\u0000${target}`;
    counts.set(key, { source, target, count: (counts.get(key)?.count ?? 0) + 1 });
  }
  return [...counts.values()].sort((a, b) => compareNames(a.source, b.source) || compareNames(a.target, b.target));
}

function ownershipRows(before: Ring, planned: Ring): OwnershipRow[] {
  const countBefore = countOf(before.owners);
  const countAfter = countOf(futureOwners(planned));
  const nodes = [...new Set([...before.members, ...planned.members].map((member) => member.name))].sort(compareNames);
  return nodes.map((node) => ({
    node,
    statusBefore: memberOf(before, node)?.status,
    statusAfter: memberOf(planned, node)?.status,
    before: countBefore.get(node) ?? 0,
    after: countAfter.get(node) ?? 0,
  }));
}

function countOf(owners: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const owner of owners) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  return counts;
}

function isLayoutDiverse(ring: Ring): boolean {
  return isDiverse(futureOwners(ring), ring.targetN);
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
