/**
 * Scripted runs of the simulator: the histories that broke published
 * systems, replayed against the replication core. Each is also run with the
 * planted bug it is about, which must make the checker fail.
 */

import type { ReplicaTiming } from '../../src/cluster/replication/types.js';
import type { Simulation } from './sim.js';

/** A scripted history starts on a quiet network (no loss, no duplicates) with a leader serving; false if none came. */
function quietStart(sim: Simulation): boolean {
  sim.quiet();
  return sim.runUntilTrue(() => sim.servingLeader() !== undefined, 5_000);
}

/**
 * Raft's Figure 8 (five replicas). An entry of an old epoch reaches a
 * majority under a later leader, which then dies; a replica holding a
 * conflicting entry of a newer epoch (but an older normal epoch) asks for
 * votes. Choosing by the entries' epochs elects it and overwrites a
 * committed entry; VR's normal epoch refuses it.
 */
export function figure8(sim: Simulation): void {
  const ids = sim.ids;
  if (!quietStart(sim)) return;
  const a = sim.servingLeader()!.id;
  const b = ids.find((id) => id !== a)!;
  // (a) X reaches a and b only.
  for (const other of ids) if (other !== a && other !== b) {
    sim.cut.add(`${a}>${other}`);
    sim.cut.add(`${other}>${a}`);
  }
  sim.appendAt(a, 's1', 'X');
  sim.runUntil(sim.time + 30);
  // (b) a dies; b is cut off; the other three elect one of them, which takes Y alone.
  sim.crash(sim.node(a));
  sim.heal();
  sim.isolate(b);
  const rest = ids.filter((id) => id !== a && id !== b);
  if (!sim.runUntilTrue(() => sim.servingLeader(rest) !== undefined, 5_000)) return;
  const c = sim.servingLeader(rest)!.id;
  sim.isolate(c);
  sim.appendAt(c, 's1', 'Y');
  sim.runUntil(sim.time + 30);
  sim.crash(sim.node(c));
  // (c) a comes back, at the centre of a star: the others reach only a, so only a can gather a majority.
  sim.heal();
  sim.restart(sim.node(a));
  const live = ids.filter((id) => id !== c);
  for (const x of live) for (const y of live) if (x !== y && x !== a && y !== a) sim.cut.add(`${x}>${y}`);
  sim.runUntilTrue(() => {
    const leader = sim.servingLeader(live);
    return leader !== undefined && leader.replica!.commit >= 1;
  }, 6_000);
  sim.runUntil(sim.time + 200);
  sim.heal();
  // (d) that leader dies; c comes back, and the others cannot reach each other, only c.
  const leader = sim.servingLeader(live);
  if (leader !== undefined) sim.crash(leader);
  const survivors = ids.filter((id) => id !== c && sim.node(id).up);
  for (const x of survivors) for (const y of survivors) if (x !== y) sim.cut.add(`${x}>${y}`);
  sim.restart(sim.node(c));
  sim.runUntil(sim.time + 6_000);
  // (e) everything heals; the group must settle on one log.
  sim.heal();
  for (const node of sim.nodes) if (!node.up) sim.restart(node);
  sim.runUntil(sim.time + 6_000);
}

/**
 * KIP-279's fast double failover (three replicas): the leader dies with
 * entries the others lack; the next leader takes one entry and dies before
 * replicating it; the first comes back. Nothing acknowledged is lost, the
 * uncommitted entries are dropped, and the three logs end the same.
 */
export function doubleFailover(sim: Simulation): void {
  const ids = sim.ids;
  if (!quietStart(sim)) return;
  const a = sim.servingLeader()!.id;
  for (let index = 0; index < 6; index++) sim.appendAt(a, 's1', `A${index}`);
  sim.runUntil(sim.time + 50);
  // Entries only a holds.
  sim.isolate(a);
  for (let index = 6; index < 10; index++) sim.appendAt(a, 's1', `A${index}`);
  sim.runUntil(sim.time + 20);
  sim.crash(sim.node(a));
  sim.heal();
  const rest = ids.filter((id) => id !== a);
  if (!sim.runUntilTrue(() => sim.servingLeader(rest) !== undefined, 5_000)) return;
  const b = sim.servingLeader(rest)!.id;
  sim.isolate(b);
  sim.appendAt(b, 's1', 'B0');
  sim.runUntil(sim.time + 20);
  sim.crash(sim.node(b));
  sim.heal();
  sim.restart(sim.node(a));
  sim.runUntilTrue(() => sim.servingLeader() !== undefined, 6_000);
  const leader = sim.servingLeader();
  if (leader !== undefined) sim.appendAt(leader.id, 's1', 'after');
  sim.restart(sim.node(b));
  sim.runUntil(sim.time + 6_000);
}

/**
 * A deposed leader (KurrentDB #3472, and SIGSTOP): the leader is paused and
 * cut off; the others elect a new one, which acknowledges an append; the old
 * leader wakes, still cut off, and is asked to read and to write. It must
 * answer neither (its lease ran out by its own monotonic clock), then follow.
 */
export function deposedLeader(sim: Simulation): void {
  if (!quietStart(sim)) return;
  const a = sim.servingLeader()!.id;
  const first = sim.appendAt(a, 's1', 'before');
  sim.runUntilTrue(() => first.outcome !== 'pending', 1_000);
  sim.isolate(a);
  sim.pause(sim.node(a), 3_000);
  const rest = sim.ids.filter((id) => id !== a);
  if (!sim.runUntilTrue(() => sim.servingLeader(rest) !== undefined, 5_000)) return;
  const acknowledged = sim.appendAt(sim.servingLeader(rest)!.id, 's1', 'while-deposed');
  sim.runUntilTrue(() => acknowledged.outcome !== 'pending', 1_000);
  sim.runUntilTrue(() => sim.node(a).pausedUntil <= sim.time, 5_000);
  sim.readAt(a, 's1');
  sim.appendAt(a, 's1', 'to-the-deposed');
  sim.runUntil(sim.time + 500);
  sim.heal();
  sim.runUntil(sim.time + 3_000);
}

/**
 * A leader transfer (leadership balancing) whose old leader hears nothing
 * after it told the target to campaign: the target leads and takes a
 * write; the old leader, asked to read straight after, must not answer
 * from its own state (it gave up its lease when the transfer began).
 */
export function transferCutOff(sim: Simulation): void {
  if (!quietStart(sim)) return;
  const a = sim.servingLeader()!.id;
  const before = sim.appendAt(a, 's1', 'before');
  sim.runUntilTrue(() => before.outcome !== 'pending', 1_000);
  sim.runUntil(sim.time + 50);
  const b = sim.node(a).replica!.config.voters.find((id) => id !== a)!;
  const started = sim.node(a).replica!.transferLeadership(b);
  sim.note(`script: ${a} hands its leadership to ${b} (${started ? 'started' : 'refused'}), then hears nothing`);
  sim.isolate(a, 'in');
  if (!sim.runUntilTrue(() => sim.servingLeader([b]) !== undefined, 2_000)) return;
  const after = sim.appendAt(b, 's1', 'after');
  sim.runUntilTrue(() => after.outcome !== 'pending', 500);
  sim.readAt(a, 's1');
  sim.appendAt(a, 's1', 'to-the-old-leader');
  sim.runUntil(sim.time + 300);
  sim.heal();
  sim.runUntil(sim.time + 3_000);
}

/**
 * A follower part-way through catching up to a new leader (two ops per
 * message here) is cut off, the new leader dies, the old one comes back.
 * The follower must not count as normal in the new epoch with a log shorter
 * than the leader's at the epoch's start, or it would out-rank the old
 * leader's complete log and drop committed ops.
 */
export function shortCatchUp(sim: Simulation): void {
  if (!quietStart(sim)) return;
  const a = sim.servingLeader()!.id;
  const [b, c] = sim.ids.filter((id) => id !== a) as [string, string];
  sim.isolate(c);
  for (let index = 0; index < 10; index++) sim.appendAt(a, 's1', `v${index}`);
  sim.runUntil(sim.time + 300);
  sim.crash(sim.node(a));
  sim.heal();
  if (!sim.runUntilTrue(() => sim.servingLeader([b]) !== undefined || sim.node(c).replica!.lastOp >= 4, 5_000)) return;
  // Cut c off from b as soon as it holds part of b's log.
  sim.runUntilTrue(() => sim.node(c).replica!.lastOp >= 4, 2_000);
  sim.cut.add(`${b}>${c}`);
  sim.cut.add(`${c}>${b}`);
  sim.note(`script: ${c} cut off holding ${sim.node(c).replica!.lastOp} ops`);
  sim.runUntil(sim.time + 50);
  sim.crash(sim.node(b));
  sim.heal();
  sim.restart(sim.node(a));
  sim.runUntilTrue(() => sim.servingLeader() !== undefined, 6_000);
  const leader = sim.servingLeader();
  if (leader !== undefined) sim.appendAt(leader.id, 's1', 'after');
  sim.runUntil(sim.time + 1_000);
  sim.restart(sim.node(b));
  sim.runUntil(sim.time + 3_000);
}

/**
 * A change of the group (one voter swapped for a spare) cut short: the
 * leader reaches only the newcomer while it puts the joint configuration in
 * its log and goes on, then dies. Ops are committed only with a majority of the old voters
 * and of the new; deciding with the new voters alone would let the old
 * voters elect a leader without them.
 */
export function swapCutShort(sim: Simulation): void {
  if (!quietStart(sim)) return;
  const leader = sim.servingLeader()!;
  const a = leader.id;
  const voters = leader.replica!.config.voters;
  const [b, c] = voters.filter((id) => id !== a) as [string, string];
  const d = sim.ids.find((id) => !voters.includes(id))!;
  for (let index = 0; index < 5; index++) sim.appendAt(a, 's1', `before-${index}`);
  sim.runUntil(sim.time + 100);
  for (const other of [b, c]) {
    sim.cut.add(`${a}>${other}`);
    sim.cut.add(`${other}>${a}`);
  }
  sim.note(`script: ${a} reaches only ${d}`);
  leader.replica!.reconfigure(voters.map((id) => (id === c ? d : id)), { value: 'config' }, () => undefined);
  if (!sim.runUntilTrue(() => sim.node(a).replica?.config.old !== undefined, 2_000)) return;
  for (let index = 0; index < 10; index++) sim.appendAt(a, 's1', `during-${index}`);
  sim.runUntil(sim.time + 300);
  sim.crash(sim.node(a));
  sim.heal();
  sim.isolate(d);
  sim.runUntilTrue(() => sim.servingLeader([b, c]) !== undefined, 5_000);
  const next = sim.servingLeader([b, c]);
  if (next !== undefined) sim.appendAt(next.id, 's1', 'after');
  sim.runUntil(sim.time + 1_000);
  sim.heal();
  sim.restart(sim.node(a));
  sim.runUntil(sim.time + 3_000);
}

/**
 * Failover time, as the benchmark measures it with real processes: the
 * serving leader is killed (kill -9) twenty times, on a quiet network with
 * clients writing; each time, how long until another replica leads and
 * serves. The checker then checks the run as any other.
 */
export function leaderKills(sim: Simulation): void {
  sim.quiet();
  for (let round = 0; round < 20; round++) {
    if (!sim.runUntilTrue(() => sim.servingLeader() !== undefined, 10_000)) return;
    const leader = sim.servingLeader()!;
    for (let index = 0; index < 5; index++) sim.appendAt(leader.id, 's1', `r${round}-${index}`);
    sim.runUntil(sim.time + 50 + sim.rng.next() * 100);
    sim.killServingLeader();
    const others = sim.ids.filter((id) => id !== leader.id);
    sim.runUntilTrue(() => sim.servingLeader(others) !== undefined, 10_000);
    sim.restart(leader);
    sim.runUntil(sim.time + 500);
  }
}

export const scenarioTiming: Record<string, Partial<ReplicaTiming>> = {
  'short-catch-up': { batchMax: 2 },
};

export const scenarios: Record<string, (sim: Simulation) => void> = {
  'leader-kills': leaderKills,
  'swap-cut-short': swapCutShort,
  'short-catch-up': shortCatchUp,
  'deposed-leader': deposedLeader,
  'transfer-cut-off': transferCutOff,
  'figure-8': figure8,
  'double-failover': doubleFailover,
};
