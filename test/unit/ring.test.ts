import { readFileSync } from 'node:fs';
import { pack, unpack } from 'msgpackr';
import { describe, expect, test } from 'vitest';
import {
  addJoining,
  claimantOf,
  completeTransfer,
  createRing,
  decodeRing,
  encodeRing,
  futureOwner,
  futureOwners,
  futureRing,
  hasPendingTransfers,
  markDown,
  markUp,
  memberNames,
  memberStatus,
  ownerOf,
  readyMembers,
  reconcile,
  removeMember,
  ringFrom,
  ringsEqual,
  transferOf,
  type Ring,
  type RingRecord,
} from '../../src/core/ring.js';
import { devMember } from '../helpers/cluster.js';

/**
 * core/ring.ts: the immutable, versioned ring. Table tests for each
 * function, the golden persistence form, and the decoder refusing what is
 * malformed with a message naming the field.
 */

const fixtureUrl = new URL('./fixtures/ring-v1.json', import.meta.url);
const golden = JSON.parse(readFileSync(fixtureUrl, 'utf8')) as RingRecord;

const [one, two, three, four] = [1, 2, 3, 4].map(devMember) as [ReturnType<typeof devMember>, ReturnType<typeof devMember>, ReturnType<typeof devMember>, ReturnType<typeof devMember>];

/** The ring the golden fixture holds, built by hand. */
function goldenRing(): Ring {
  return ringFrom({
    cluster: 'c0ffee',
    version: 7,
    size: 8,
    targetN: 2,
    members: [
      { ...four, status: 'down' },
      { ...one, status: 'valid' },
      { ...three, status: 'valid' },
      { ...two, status: 'leaving' },
    ],
    owners: [one, two, three, four, one, two, three, four].map((member) => member.name),
    next: [
      { partition: 5, source: two.name, target: three.name },
      { partition: 1, source: two.name, target: one.name },
    ],
  });
}

describe('createRing', () => {
  test('a new ring: version 1, every partition owned by its first member, who is the claimant', () => {
    const ring = createRing('c1', 64, one);
    expect(ring.version).toBe(1);
    expect(ring.size).toBe(64);
    expect(ring.targetN).toBe(3);
    expect(ring.claimant).toBe(one.name);
    expect(ring.members).toEqual([{ ...one, status: 'valid' }]);
    expect(new Set(ring.owners)).toEqual(new Set([one.name]));
    expect(ring.owners).toHaveLength(64);
    expect(hasPendingTransfers(ring)).toBe(false);
  });

  test('a ring is frozen: changing it throws', () => {
    const ring = createRing('c1', 8, one);
    expect(() => ((ring.owners as string[])[0] = 'x@y')).toThrow(TypeError);
    expect(() => ((ring as { version: number }).version = 2)).toThrow(TypeError);
    expect(() => ((ring.members[0] as { status: string }).status = 'down')).toThrow(TypeError);
  });

  test.each([
    ['a size that is not a power of two', () => createRing('c1', 48, one), /size must be a power of two/],
    ['a size below the minimum', () => createRing('c1', 4, one), /size must be a power of two in 8\.\.1024/],
    ['a size above the maximum', () => createRing('c1', 2048, one), /size/],
    ['a targetN of 0', () => createRing('c1', 64, one, 0), /targetN/],
    ['an empty cluster id', () => createRing('', 64, one), /cluster/],
    ['a node name without @', () => createRing('c1', 64, { ...one, name: 'iorio1' }), /name@host/],
    ['a port out of range', () => createRing('c1', 64, { ...one, http: { host: 'h', port: 70000 } }), /port/],
  ])('refuses %s', (_, create, message) => {
    expect(create).toThrow(message);
  });
});

describe('owners and transfers', () => {
  test('ownerOf, futureOwner, transferOf and futureOwners read the pending transfers', () => {
    const ring = goldenRing();
    expect(ownerOf(ring, 1)).toBe(two.name);
    expect(futureOwner(ring, 1)).toBe(one.name);
    expect(futureOwner(ring, 2)).toBe(three.name);
    expect(transferOf(ring, 5)).toEqual({ partition: 5, source: two.name, target: three.name });
    expect(transferOf(ring, 4)).toBeUndefined();
    expect(futureOwners(ring)).toEqual([one, one, three, four, one, three, three, four].map((member) => member.name));
    expect(() => ownerOf(ring, 8)).toThrow(/assertion/);
  });

  test('completeTransfer: the target owns the partition, the transfer is gone, the version bumped', () => {
    const ring = completeTransfer(goldenRing(), 1, one.name);
    expect(ownerOf(ring, 1)).toBe(one.name);
    expect(transferOf(ring, 1)).toBeUndefined();
    expect(ring.version).toBe(8);
    expect(ring.next).toHaveLength(1);
  });

  test('a leaving member becomes exiting once its last transfer completes, and can then be removed', () => {
    const halfway = completeTransfer(goldenRing(), 1);
    expect(halfway.members.find((member) => member.name === two.name)?.status).toBe('leaving');
    const done = completeTransfer(halfway, 5);
    expect(done.members.find((member) => member.name === two.name)?.status).toBe('exiting');
    expect(hasPendingTransfers(done)).toBe(false);
    const removed = removeMember(done, two.name);
    expect(memberNames(removed)).toEqual([one.name, three.name, four.name]);
    expect(removed.version).toBe(done.version + 1);
  });

  test('completing a transfer that is not pending, or one retargeted since, is refused', () => {
    expect(() => completeTransfer(goldenRing(), 0)).toThrow(/no transfer of partition 0 is pending/);
    expect(() => completeTransfer(goldenRing(), 1, three.name)).toThrow(/now goes to 'iorio1@127.0.0.1', not 'iorio3@127.0.0.1'/);
  });

  test('futureRing: every transfer done, leavers left with nothing exiting, same version', () => {
    const future = futureRing(goldenRing());
    expect(future.owners).toEqual(futureOwners(goldenRing()));
    expect(future.next).toEqual([]);
    expect(future.version).toBe(7);
    expect(future.members.find((member) => member.name === two.name)?.status).toBe('exiting');
  });
});

describe('membership', () => {
  test('the claimant is the first valid member by name; down and leaving members are passed over', () => {
    expect(goldenRing().claimant).toBe(one.name);
    expect(claimantOf([{ ...two, status: 'valid' }, { ...one, status: 'leaving' }, { ...three, status: 'valid' }])).toBe(two.name);
    expect(claimantOf([{ ...one, status: 'down' }, { ...two, status: 'joining' }])).toBeUndefined();
  });

  test('marking the claimant down makes the next valid member claimant; marking it up makes it valid again', () => {
    const down = markDown(goldenRing(), one.name);
    expect(down.claimant).toBe(three.name);
    expect(down.version).toBe(8);
    expect(markDown(down, one.name)).toBe(down);
    const up = markUp(down, one.name);
    expect(up.claimant).toBe(one.name);
    expect(up.members.find((member) => member.name === one.name)?.status).toBe('valid');
  });

  test('the last valid member cannot be marked down, nor can a joining member', () => {
    const ring = createRing('c1', 8, one);
    expect(() => markDown(ring, one.name)).toThrow(/last valid member/);
    expect(() => markDown(addJoining(ring, two), two.name)).toThrow(/only valid or leaving members/);
    expect(() => markDown(ring, 'nobody@host')).toThrow(/'nobody@host' is not a member of the cluster/);
  });

  test('addJoining: in the ring, owning nothing; twice is refused; removeMember takes it out again (cluster clear)', () => {
    const ring = addJoining(createRing('c1', 8, one), two);
    expect(ring.members.map((member) => [member.name, member.status])).toEqual([
      [one.name, 'valid'],
      [two.name, 'joining'],
    ]);
    expect(() => addJoining(ring, two)).toThrow(/already a member/);
    expect(() => addJoining(ring, { ...three, name: 'bad name@x' })).toThrow(/name@host/);
    expect(memberNames(removeMember(ring, two.name))).toEqual([one.name]);
    expect(() => removeMember(ring, one.name)).toThrow(/only exiting or joining members can be removed/);
  });

  test('readyMembers are the valid, leaving and exiting ones (Riak ring_ready)', () => {
    expect(readyMembers(goldenRing())).toEqual([one.name, three.name, two.name].sort());
  });
});

describe('memberStatus', () => {
  test('Ring % now, Pending % only for nodes a transfer involves, rows in Riak order, the footer counts', () => {
    const table = memberStatus(goldenRing());
    expect(table.rows.map((row) => [row.status, row.ringPercent, row.pendingPercent, row.node])).toEqual([
      ['down', 25, undefined, four.name],
      ['leaving', 25, 0, two.name],
      ['valid', 25, 37.5, one.name],
      ['valid', 25, 37.5, three.name],
    ]);
    expect(table.rows.map((row) => [row.owned, row.pendingOwned])).toEqual([
      [2, undefined],
      [2, 0],
      [2, 3],
      [2, 3],
    ]);
    expect([table.valid, table.leaving, table.exiting, table.joining, table.down]).toEqual([2, 1, 0, 0, 1]);
  });

  test('a joining member shows 0.0% and no pending share', () => {
    const table = memberStatus(addJoining(createRing('c1', 64, one), two));
    expect(table.rows).toEqual([
      { node: two.name, status: 'joining', owned: 0, ringPercent: 0, pendingOwned: undefined, pendingPercent: undefined },
      { node: one.name, status: 'valid', owned: 64, ringPercent: 100, pendingOwned: undefined, pendingPercent: undefined },
    ]);
  });
});

describe('reconcile and equality', () => {
  test('the higher version wins, whichever side it is on', () => {
    const older = goldenRing();
    const newer = completeTransfer(older, 1);
    expect(reconcile(older, newer)).toBe(newer);
    expect(reconcile(newer, older)).toBe(newer);
  });

  test('a tie between different rings is broken the same way on both sides', () => {
    const a = completeTransfer(goldenRing(), 1);
    const b = completeTransfer(goldenRing(), 5);
    expect(a.version).toBe(b.version);
    expect(ringsEqual(a, b)).toBe(false);
    const winner = reconcile(a, b);
    expect(reconcile(b, a)).toBe(winner);
    expect([a, b]).toContain(winner);
  });

  test('rings of another cluster or size are refused', () => {
    expect(() => reconcile(createRing('c1', 8, one), createRing('c2', 8, one))).toThrow(/cluster 'c2' cannot reconcile with cluster 'c1'/);
    expect(() => reconcile(createRing('c1', 8, one), createRing('c1', 16, one))).toThrow(/8 and 16 partitions/);
  });

  test('ringsEqual compares content, not identity', () => {
    expect(ringsEqual(goldenRing(), goldenRing())).toBe(true);
    expect(ringsEqual(goldenRing(), markDown(goldenRing(), three.name))).toBe(false);
  });
});

describe('persistence form', () => {
  test('encodes to the golden fixture', () => {
    expect(encodeRing(goldenRing())).toEqual(golden);
  });

  test('decodes the golden fixture', () => {
    const ring = decodeRing(golden);
    expect(ringsEqual(ring, goldenRing())).toBe(true);
    expect(Object.isFrozen(ring)).toBe(true);
  });

  test('survives msgpackr unchanged', () => {
    const bytes = pack(encodeRing(goldenRing()));
    expect(ringsEqual(decodeRing(unpack(bytes)), goldenRing())).toBe(true);
  });

  const broken = (change: (record: Record<string, unknown>) => void): unknown => {
    const record = structuredClone(golden) as unknown as Record<string, unknown>;
    change(record);
    return record;
  };

  test.each([
    ['not an object', () => 'ring', /ring: ring must be an object/],
    ['another format', () => broken((record) => (record.format = 2)), /format must be 1/],
    ['a missing members list', () => broken((record) => delete record.members), /members must be an array/],
    ['a size that is not a power of two', () => broken((record) => (record.size = 12)), /size must be a power of two/],
    ['a version of 0', () => broken((record) => (record.version = 0)), /version must be a positive integer/],
    ['members out of name order', () => broken((record) => (record.members as unknown[]).reverse()), /sorted by name/],
    ['a bad member status', () => broken((record) => ((record.members as Record<string, unknown>[])[0]!.status = 'gone')), /members\[0\]\.status must be one of/],
    ['a bad member address', () => broken((record) => ((record.members as Record<string, unknown>[])[2]!.http = { host: '', port: 1 })), /members\[2\]\.http/],
    ['an owner index out of range', () => broken((record) => ((record.owners as number[])[3] = 9)), /owners\[3\] must be a member index, not 9/],
    ['too few owners', () => broken((record) => (record.owners as number[]).pop()), /one owner per partition \(8\)/],
    ['an exiting owner', () => broken((record) => ((record.members as Record<string, unknown>[])[1]!.status = 'exiting')), /owners\[1\] 'iorio2@127.0.0.1' is exiting/],
    ['a transfer whose source does not own the partition', () => broken((record) => ((record.next as number[][])[0]![1] = 2)), /next\[0\] source must own partition 1/],
    ['transfers out of order', () => broken((record) => (record.next as unknown[]).reverse()), /sorted by partition/],
    ['a transfer to a leaving member', () => broken((record) => ((record.next as number[][])[0]![2] = 1)), /target must differ|must be a valid member/],
    ['a wrong claimant', () => broken((record) => (record.claimant = 'iorio3@127.0.0.1')), /claimant must be 'iorio1@127.0.0.1'/],
  ])('refuses %s', (_, make, message) => {
    expect(() => decodeRing(make())).toThrow(message);
  });
});
