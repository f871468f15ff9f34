/**
 * The ring: who is in the cluster and who owns each partition, as one
 * immutable, versioned value (riak_core's chstate, simplified).
 *
 * One writer: the claimant makes every new version (plan.ts computes it,
 * the runtime commits it); everyone else gossips rings and keeps the one
 * reconcile() picks: the higher version, ties broken deterministically. So
 * no vector clocks, and no merging of member lists.
 *
 * Statuses are Riak's: a member is `joining` (in the ring, owning nothing,
 * until a plan is committed: plan makes joiners valid at commit, as Riak's
 * claimant makes joining nodes valid before it claims), `valid`, `leaving`
 * (its partitions are being handed off), `exiting` (it owns nothing any more:
 * the runtime tells it to stop, then removes it), or `down` (marked so by an
 * operator: it keeps its partitions, but no plan that moves data may run
 * until it is back, force-removed or force-replaced).
 *
 * The claimant is the first `valid` member in name order (a `down` member is
 * not valid). Every function here that makes a ring recomputes it, so it
 * moves when the claimant leaves or is marked down; the runtime watches the
 * field and starts or stops its claimant process.
 */
import { assert, IorioError } from './errors.js';
import { ringMembersMax, ringSizeMax, ringSizeMin, targetNMax } from './limits.js';

/** Riak's member statuses (`invalid`, a removed member, is simply not in the ring). */
export const MemberStatus = {
  joining: 'joining',
  valid: 'valid',
  leaving: 'leaving',
  exiting: 'exiting',
  down: 'down',
} as const;
export type MemberStatus = (typeof MemberStatus)[keyof typeof MemberStatus];

export interface Address {
  readonly host: string;
  readonly port: number;
}

export interface Member {
  /** `name@host`, unique in the ring. */
  readonly name: string;
  readonly status: MemberStatus;
  /** Where other nodes reach it (inter-node connection). */
  readonly cluster: Address;
  /** Where clients reach it. */
  readonly http: Address;
}

/** A member as a staged change names it: no status yet. */
export type MemberInfo = Pick<Member, 'name' | 'cluster' | 'http'>;

/** A committed ownership move not finished yet: handoff finishes it (completeTransfer). */
export interface Transfer {
  readonly partition: number;
  readonly source: string;
  readonly target: string;
}

export interface Ring {
  /** Cluster id: rings of different clusters never reconcile. */
  readonly cluster: string;
  /** Bumped by every change; the higher version wins. */
  readonly version: number;
  /** Partitions: a power of two, fixed at creation. */
  readonly size: number;
  /** The n_val claim spaces replicas for. */
  readonly targetN: number;
  /** The first valid member in name order. */
  readonly claimant: string;
  /** Sorted by name. */
  readonly members: readonly Member[];
  /** Owner of each partition now. */
  readonly owners: readonly string[];
  /** Pending transfers, sorted by partition, at most one per partition. */
  readonly next: readonly Transfer[];
}

const nodeNamePattern = /^[^@\s]+@[^@\s]+$/;
const nodeNameBytesMax = 255;

/** Why a node name is not `name@host`, or undefined when it is. */
export function nodeNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'a node name must be a string';
  if (Buffer.byteLength(name, 'utf8') > nodeNameBytesMax) return `a node name must be at most ${nodeNameBytesMax} bytes`;
  if (!nodeNamePattern.test(name)) return `a node name must look like name@host, not '${name}'`;
  return undefined;
}

/** Why an address is not a host and a port, or undefined when it is. */
export function addressProblem(address: unknown): string | undefined {
  if (typeof address !== 'object' || address === null) return 'an address must be {host, port}';
  const { host, port } = address as Record<string, unknown>;
  if (typeof host !== 'string' || host.length === 0 || host.length > 255) return 'an address host must be a non-empty string';
  // 0: not known yet (a node's HTTP port before it listens on port 0).
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) return 'an address port must be an integer in 0..65535';
  return undefined;
}

/** A new ring of `size` partitions, all owned by its first member (valid, claimant), version 1. */
export function createRing(clusterId: string, size: number, firstMember: MemberInfo, targetN = 3): Ring {
  checkMemberInfo(firstMember);
  const fields: RingFields = {
    cluster: clusterId,
    version: 1,
    size,
    targetN,
    members: [{ name: firstMember.name, status: MemberStatus.valid, cluster: firstMember.cluster, http: firstMember.http }],
    owners: new Array<string>(Number.isInteger(size) && size > 0 && size <= ringSizeMax ? size : 0).fill(firstMember.name),
    next: [],
  };
  const problem = ringProblem(fields);
  if (problem !== undefined) throw new IorioError('invalid-param', `ring: ${problem}`, { reason_code: 'invalid_ring' });
  return ringFrom(fields);
}

/** The member named `node`, if it is in the ring (any status). */
export function memberOf(ring: Ring, node: string): Member | undefined {
  return ring.members.find((member) => member.name === node);
}

/** Names of the members with one of `statuses` (all members without), in name order. */
export function memberNames(ring: Ring, statuses?: readonly MemberStatus[]): string[] {
  return ring.members.filter((member) => statuses === undefined || statuses.includes(member.status)).map((member) => member.name);
}

/** Who should be claimant: the first valid member in name order. */
export function claimantOf(members: readonly Member[]): string | undefined {
  return [...members].sort(byName).find((member) => member.status === MemberStatus.valid)?.name;
}

/** Members whose acknowledgement of this ring the runtime waits for before it is "ready" (Riak: valid, leaving, exiting). */
export function readyMembers(ring: Ring): string[] {
  return memberNames(ring, [MemberStatus.valid, MemberStatus.leaving, MemberStatus.exiting]);
}

/** Owner of a partition now (it serves it until its transfer, if any, completes). */
export function ownerOf(ring: Ring, partition: number): string {
  checkPartition(ring, partition);
  return ring.owners[partition]!;
}

/** The pending transfer of a partition, if any. */
export function transferOf(ring: Ring, partition: number): Transfer | undefined {
  checkPartition(ring, partition);
  return ring.next.find((transfer) => transfer.partition === partition);
}

/** Owner of a partition once its pending transfer (if any) is done. */
export function futureOwner(ring: Ring, partition: number): string {
  return transferOf(ring, partition)?.target ?? ownerOf(ring, partition);
}

/** Owner of every partition once every pending transfer is done. */
export function futureOwners(ring: Ring): string[] {
  const owners = [...ring.owners];
  for (const transfer of ring.next) owners[transfer.partition] = transfer.target;
  return owners;
}

/** Some ownership transfer is committed and not finished (Riak's pending changes). */
export function hasPendingTransfers(ring: Ring): boolean {
  return ring.next.length > 0;
}

/** The ring as it will be once every pending transfer is done: leaving members that then own nothing are exiting (Riak's future_ring). Same version. */
export function futureRing(ring: Ring): Ring {
  return ringFrom({ ...ring, members: settleLeavers(ring.members, futureOwners(ring), []), owners: futureOwners(ring), next: [] });
}

/**
 * Handoff of a partition finished: its target owns it, the transfer is
 * dropped, the version bumped. A leaving source left owning nothing, with
 * nothing else to hand off, becomes exiting. `target`, when given, must be
 * the transfer's target (a transfer retargeted since is refused as stale).
 */
export function completeTransfer(ring: Ring, partition: number, target?: string): Ring {
  const transfer = transferOf(ring, partition);
  if (transfer === undefined) throw new IorioError('conflict', `no transfer of partition ${partition} is pending`, { reason_code: 'no_transfer', partition });
  if (target !== undefined && target !== transfer.target) {
    throw new IorioError('conflict', `the transfer of partition ${partition} now goes to '${transfer.target}', not '${target}'`, { reason_code: 'stale_transfer', partition });
  }
  const owners = [...ring.owners];
  owners[partition] = transfer.target;
  const next = ring.next.filter((pending) => pending.partition !== partition);
  return ringFrom({ ...ring, version: ring.version + 1, members: settleLeavers(ring.members, owners, next), owners, next });
}

/** Riak's join: the node enters the ring as joining, owning nothing; the next plan makes it valid and gives it partitions. */
export function addJoining(ring: Ring, member: MemberInfo): Ring {
  checkMemberInfo(member);
  if (memberOf(ring, member.name) !== undefined) throw new IorioError('conflict', `'${member.name}' is already a member of the cluster`, { reason_code: 'already_member', node: member.name });
  if (ring.members.length >= ringMembersMax) throw new IorioError('conflict', `a ring holds at most ${ringMembersMax} members`, { reason_code: 'too_many_members' });
  return ringFrom({ ...ring, version: ring.version + 1, members: [...ring.members, { ...member, status: MemberStatus.joining }] });
}

/** Drops an exiting member once it has stopped, or a joining one (Riak's `cluster clear`): neither owns anything. */
export function removeMember(ring: Ring, node: string): Ring {
  const member = memberOf(ring, node);
  if (member === undefined) throw notMember(node);
  if (member.status !== MemberStatus.exiting && member.status !== MemberStatus.joining) {
    throw new IorioError('conflict', `'${node}' is ${member.status}: only exiting or joining members can be removed (use leave or force-remove)`, { reason_code: 'not_removable', node });
  }
  return ringFrom({ ...ring, version: ring.version + 1, members: ring.members.filter((other) => other.name !== node) });
}

/**
 * `iorio-admin down`: marks a valid or leaving member down (the runtime
 * checks it is unreachable). It keeps its partitions and its pending
 * transfers; the claimant moves if it was the claimant. Marking a down
 * member again changes nothing.
 */
export function markDown(ring: Ring, node: string): Ring {
  const member = memberOf(ring, node);
  if (member === undefined) throw notMember(node);
  if (member.status === MemberStatus.down) return ring;
  if (member.status !== MemberStatus.valid && member.status !== MemberStatus.leaving) {
    throw new IorioError('conflict', `'${node}' is ${member.status}: only valid or leaving members can be marked down`, { reason_code: 'not_down_able', node });
  }
  const others = ring.members.filter((other) => other.name !== node);
  if (claimantOf(others) === undefined) throw new IorioError('conflict', `'${node}' is the last valid member: it cannot be marked down`, { reason_code: 'last_valid', node });
  return withStatus(ring, node, MemberStatus.down);
}

/** A member marked down is back: it is valid again (if it was leaving, stage its leave again). */
export function markUp(ring: Ring, node: string): Ring {
  const member = memberOf(ring, node);
  if (member === undefined) throw notMember(node);
  if (member.status !== MemberStatus.down) return ring;
  return withStatus(ring, node, MemberStatus.valid);
}

// ---------------------------------------------------------------------------
// member-status

export interface MemberStatusRow {
  readonly node: string;
  readonly status: MemberStatus;
  /** Partitions owned now, and as a percentage of the ring ("Ring"). */
  readonly owned: number;
  readonly ringPercent: number;
  /** Partitions owned once pending transfers finish, and the percentage ("Pending"); undefined ("--") when no transfer involves the node. */
  readonly pendingOwned: number | undefined;
  readonly pendingPercent: number | undefined;
}

export interface MemberStatusTable {
  /** In Riak's order: by status name, then by node. */
  readonly rows: readonly MemberStatusRow[];
  /** The footer: Valid / Leaving / Exiting / Joining / Down. */
  readonly valid: number;
  readonly leaving: number;
  readonly exiting: number;
  readonly joining: number;
  readonly down: number;
}

/** What `iorio-admin member-status` prints (Riak's Membership table). */
export function memberStatus(ring: Ring): MemberStatusTable {
  const now = countOwned(ring.owners);
  const future = countOwned(futureOwners(ring));
  const involved = new Set(ring.next.flatMap((transfer) => [transfer.source, transfer.target]));
  const rows = [...ring.members]
    .sort((a, b) => (a.status < b.status ? -1 : a.status > b.status ? 1 : byName(a, b)))
    .map((member): MemberStatusRow => {
      const owned = now.get(member.name) ?? 0;
      const pendingOwned = involved.has(member.name) ? (future.get(member.name) ?? 0) : undefined;
      return {
        node: member.name,
        status: member.status,
        owned,
        ringPercent: percentOf(owned, ring.size),
        pendingOwned,
        pendingPercent: pendingOwned === undefined ? undefined : percentOf(pendingOwned, ring.size),
      };
    });
  const count = (status: MemberStatus) => ring.members.filter((member) => member.status === status).length;
  return { rows, valid: count('valid'), leaving: count('leaving'), exiting: count('exiting'), joining: count('joining'), down: count('down') };
}

function countOwned(owners: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const owner of owners) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  return counts;
}

function percentOf(count: number, size: number): number {
  return (count * 100) / size;
}

// ---------------------------------------------------------------------------
// Reconcile and equality

/**
 * The ring to keep of two versions of one cluster's ring: the higher
 * version; on a tie (which a single writer never makes, but two claimants
 * on both sides of a network partition could) the greater canonical form,
 * so that every node picks the same one. Rings of different clusters (or
 * sizes) are refused.
 */
export function reconcile(a: Ring, b: Ring): Ring {
  if (a.cluster !== b.cluster) throw new IorioError('conflict', `ring of cluster '${b.cluster}' cannot reconcile with cluster '${a.cluster}'`, { reason_code: 'wrong_cluster' });
  if (a.size !== b.size) throw new IorioError('conflict', `rings of ${a.size} and ${b.size} partitions cannot reconcile`, { reason_code: 'wrong_size' });
  if (a.version !== b.version) return a.version > b.version ? a : b;
  const canonicalA = JSON.stringify(encodeRing(a));
  const canonicalB = JSON.stringify(encodeRing(b));
  return canonicalA >= canonicalB ? a : b;
}

/** Same cluster, version, members, owners and transfers. */
export function ringsEqual(a: Ring, b: Ring): boolean {
  return a === b || JSON.stringify(encodeRing(a)) === JSON.stringify(encodeRing(b));
}

// ---------------------------------------------------------------------------
// Persistence form (msgpackr, lmdb, gossip)

/**
 * The ring as plain data, compact: owners and transfers name members by
 * their index in `members` (sorted by name).
 *
 *   format    1
 *   cluster   string
 *   version   positive integer
 *   size      power of two in ringSizeMin..ringSizeMax
 *   targetN   1..targetNMax
 *   claimant  string (must be the first valid member by name)
 *   members   [{name, status, cluster: {host, port}, http: {host, port}}]
 *   owners    [member index] x size
 *   next      [[partition, source index, target index]] by partition
 */
export interface RingRecord {
  readonly format: 1;
  readonly cluster: string;
  readonly version: number;
  readonly size: number;
  readonly targetN: number;
  readonly claimant: string;
  readonly members: readonly Member[];
  readonly owners: readonly number[];
  readonly next: readonly (readonly [number, number, number])[];
}

/** Version of RingRecord; bumped on any change of the form. */
export const ringRecordFormat = 1;

/** The ring as its persistence form (RingRecord). */
export function encodeRing(ring: Ring): RingRecord {
  const index = new Map(ring.members.map((member, position) => [member.name, position]));
  return {
    format: ringRecordFormat,
    cluster: ring.cluster,
    version: ring.version,
    size: ring.size,
    targetN: ring.targetN,
    claimant: ring.claimant,
    members: ring.members.map((member) => ({
      name: member.name,
      status: member.status,
      cluster: { host: member.cluster.host, port: member.cluster.port },
      http: { host: member.http.host, port: member.http.port },
    })),
    owners: ring.owners.map((owner) => index.get(owner)!),
    next: ring.next.map((transfer) => [transfer.partition, index.get(transfer.source)!, index.get(transfer.target)!] as const),
  };
}

/** Reads a ring back from its persistence form; anything malformed or inconsistent is refused with a message naming the field. */
export function decodeRing(value: unknown): Ring {
  const record = asObject(value, 'ring');
  if (record.format !== ringRecordFormat) throw malformed(`format must be ${ringRecordFormat}, not ${String(record.format)}`);
  const members = asArray(record.members, 'members').map((member, position) => decodeMember(member, position));
  const names = members.map((member) => member.name);
  const memberAt = (index: unknown, field: string): string => {
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= names.length) throw malformed(`${field} must be a member index, not ${String(index)}`);
    return names[index]!;
  };
  const owners = asArray(record.owners, 'owners').map((index, partition) => memberAt(index, `owners[${partition}]`));
  const next = asArray(record.next, 'next').map((entry, position) => {
    const triple = asArray(entry, `next[${position}]`);
    if (triple.length !== 3) throw malformed(`next[${position}] must be [partition, source, target]`);
    return { partition: triple[0] as number, source: memberAt(triple[1], `next[${position}] source`), target: memberAt(triple[2], `next[${position}] target`) };
  });
  const fields = {
    cluster: record.cluster as string,
    version: record.version as number,
    size: record.size as number,
    targetN: record.targetN as number,
    members,
    owners,
    next,
  };
  const problem = ringProblem(fields);
  if (problem !== undefined) throw malformed(problem);
  const ring = ringFrom(fields);
  if (record.claimant !== ring.claimant) throw malformed(`claimant must be '${ring.claimant}' (the first valid member), not '${String(record.claimant)}'`);
  return ring;
}

function decodeMember(value: unknown, position: number): Member {
  const member = asObject(value, `members[${position}]`);
  const nameProblem = nodeNameProblem(member.name);
  if (nameProblem !== undefined) throw malformed(`members[${position}].name: ${nameProblem}`);
  if (!Object.values(MemberStatus).includes(member.status as MemberStatus)) throw malformed(`members[${position}].status must be one of ${Object.values(MemberStatus).join(', ')}`);
  for (const field of ['cluster', 'http'] as const) {
    const problem = addressProblem(member[field]);
    if (problem !== undefined) throw malformed(`members[${position}].${field}: ${problem}`);
  }
  const cluster = member.cluster as Address;
  const http = member.http as Address;
  return { name: member.name as string, status: member.status as MemberStatus, cluster: { host: cluster.host, port: cluster.port }, http: { host: http.host, port: http.port } };
}

function asObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed(`${field} must be an object`);
  return value as Record<string, unknown>;
}

function asArray(value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) throw malformed(`${field} must be an array`);
  return value;
}

function malformed(problem: string): IorioError {
  return new IorioError('invalid-body', `ring: ${problem}`, { reason_code: 'malformed_ring' });
}

// ---------------------------------------------------------------------------
// Construction and invariants

/** A ring's fields but the claimant, which is derived from the members. */
export type RingFields = Omit<Ring, 'claimant'>;

/** What is wrong with a would-be ring, or undefined when it is consistent. */
function ringProblem(fields: RingFields): string | undefined {
  const { cluster, version, size, targetN, members, owners, next } = fields;
  if (typeof cluster !== 'string' || cluster.length === 0) return 'cluster must be a non-empty string';
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) return 'version must be a positive integer';
  if (typeof size !== 'number' || !Number.isInteger(size) || size < ringSizeMin || size > ringSizeMax || (size & (size - 1)) !== 0) {
    return `size must be a power of two in ${ringSizeMin}..${ringSizeMax}`;
  }
  if (typeof targetN !== 'number' || !Number.isInteger(targetN) || targetN < 1 || targetN > targetNMax) return `targetN must be an integer in 1..${targetNMax}`;
  return membersProblem(members) ?? ownersProblem(fields, owners) ?? transfersProblem(fields, next);
}

function membersProblem(members: readonly Member[]): string | undefined {
  if (members.length === 0 || members.length > ringMembersMax) return `a ring has 1..${ringMembersMax} members`;
  for (let position = 1; position < members.length; position++) {
    if (members[position - 1]!.name >= members[position]!.name) return 'members must be sorted by name, each once';
  }
  if (claimantOf(members) === undefined) return 'at least one member must be valid';
  return undefined;
}

function ownersProblem(fields: RingFields, owners: readonly string[]): string | undefined {
  if (owners.length !== fields.size) return `owners must name one owner per partition (${fields.size})`;
  const statuses = new Map(fields.members.map((member) => [member.name, member.status]));
  for (let partition = 0; partition < owners.length; partition++) {
    const status = statuses.get(owners[partition]!);
    if (status === undefined) return `owners[${partition}] '${owners[partition]}' is not a member`;
    if (status === MemberStatus.joining || status === MemberStatus.exiting) return `owners[${partition}] '${owners[partition]}' is ${status} and cannot own a partition`;
  }
  return undefined;
}

function transfersProblem(fields: RingFields, next: readonly Transfer[]): string | undefined {
  const statuses = new Map(fields.members.map((member) => [member.name, member.status]));
  for (let position = 0; position < next.length; position++) {
    const { partition, source, target } = next[position]!;
    if (!Number.isInteger(partition) || partition < 0 || partition >= fields.size) return `next[${position}] partition must be in 0..${fields.size - 1}`;
    if (position > 0 && next[position - 1]!.partition >= partition) return 'next must be sorted by partition, one transfer per partition';
    if (fields.owners[partition] !== source) return `next[${position}] source must own partition ${partition}`;
    if (target === source) return `next[${position}] target must differ from its source`;
    const targetStatus = statuses.get(target);
    if (targetStatus !== MemberStatus.valid && targetStatus !== MemberStatus.down) return `next[${position}] target '${target}' must be a valid member`;
  }
  return undefined;
}

/** Builds a frozen ring from its fields (members and transfers sorted, the claimant elected); a bug if inconsistent. */
export function ringFrom(fields: RingFields): Ring {
  const members = [...fields.members].sort(byName).map((member) => Object.freeze({ ...member, cluster: Object.freeze({ ...member.cluster }), http: Object.freeze({ ...member.http }) }));
  const next = [...fields.next].sort((a, b) => a.partition - b.partition).map((transfer) => Object.freeze({ ...transfer }));
  const sorted: RingFields = { ...fields, members, next };
  const problem = ringProblem(sorted);
  assert(problem === undefined, `ring is consistent: ${problem}`);
  return Object.freeze({
    cluster: fields.cluster,
    version: fields.version,
    size: fields.size,
    targetN: fields.targetN,
    claimant: claimantOf(members)!,
    members: Object.freeze(members),
    owners: Object.freeze([...fields.owners]),
    next: Object.freeze(next),
  });
}

/** Members as they are once `owners` and `next` hold: leaving members that own nothing and hand nothing off are exiting. */
export function settleLeavers(members: readonly Member[], owners: readonly string[], next: readonly Transfer[]): Member[] {
  const busy = new Set([...owners, ...next.map((transfer) => transfer.source)]);
  return members.map((member) => (member.status === MemberStatus.leaving && !busy.has(member.name) ? { ...member, status: MemberStatus.exiting } : member));
}

function withStatus(ring: Ring, node: string, status: MemberStatus): Ring {
  const members = ring.members.map((member) => (member.name === node ? { ...member, status } : member));
  return ringFrom({ ...ring, version: ring.version + 1, members });
}

function checkPartition(ring: Ring, partition: number): void {
  assert(Number.isInteger(partition) && partition >= 0 && partition < ring.size, 'partition is in the ring');
}

function checkMemberInfo(member: MemberInfo): void {
  const problem = nodeNameProblem(member.name) ?? addressProblem(member.cluster) ?? addressProblem(member.http);
  if (problem !== undefined) throw new IorioError('invalid-param', problem, { reason_code: 'invalid_member' });
}

/** Refusal for a node that is not in the ring, in Riak's words. */
export function notMember(node: string): IorioError {
  return new IorioError('conflict', `'${node}' is not a member of the cluster`, { reason_code: 'not_member', node });
}

function byName(a: Member, b: Member): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
