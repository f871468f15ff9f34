/**
 * Replicas with one planted bug each. The simulator must fail seeds with
 * every one of them (test/sim proves it): a checker that passes these
 * checks nothing.
 */

import { Replica } from '../../src/cluster/replication/replica.js';
import type { GroupConfig, VoteRequest } from '../../src/cluster/replication/types.js';
import type { ReplicaClass, SimPayload } from './sim.js';

/** Answers the client (and commits) once the leader alone holds the op. */
class AckBeforeQuorum extends Replica<SimPayload> {
  protected override heldByAtLeast(matches: readonly number[]): number {
    return matches[0]!;
  }
}

/** Chooses the better log by its last entry's epoch, not the normal epoch (Raft's Figure 8). */
class ElectByEntryEpoch extends Replica<SimPayload> {
  protected override logAtLeastAsGood(request: VoteRequest): boolean {
    const mine = this.lastEntryEpoch();
    return request.lastEpoch > mine || (request.lastEpoch === mine && request.lastOp >= this.lastOp);
  }
}

/** Serves reads up to the end of its log, committed or not. */
class ServeUncommittedTail extends Replica<SimPayload> {
  protected override readableOp(): number {
    return this.lastOp;
  }
}

/** Serves and accepts writes without a lease: a leader paused or cut off answers as if nothing happened. */
class NoLease extends Replica<SimPayload> {
  protected override leaseValid(): boolean {
    return true;
  }
}

/** Takes the leader's epoch as its normal epoch with a log shorter than the leader's at the epoch's start. */
class NormalWithShortLog extends Replica<SimPayload> {
  protected override holdsEpochStart(): boolean {
    return true;
  }
}

/** While the group changes, decides with the new voters alone (no joint consensus). */
class NoJointConsensus extends Replica<SimPayload> {
  protected override voterSets(config: GroupConfig = this.config): (readonly string[])[] {
    return [config.voters];
  }
}

/** Goes on serving while it hands its leadership over (keeps its lease through a transfer). */
class ServeDuringTransfer extends Replica<SimPayload> {
  protected override servesDuringTransfer(): boolean {
    return true;
  }
}

/** Grants any vote for a higher epoch, whatever its log. */
class VoteForAnyLog extends Replica<SimPayload> {
  protected override logAtLeastAsGood(): boolean {
    return true;
  }
}

export const plantedBugs: Record<string, ReplicaClass> = {
  'ack-before-quorum': AckBeforeQuorum,
  'elect-by-entry-epoch': ElectByEntryEpoch,
  'serve-uncommitted-tail': ServeUncommittedTail,
  'vote-for-any-log': VoteForAnyLog,
  'no-lease': NoLease,
  'normal-with-short-log': NormalWithShortLog,
  'no-joint-consensus': NoJointConsensus,
  'serve-during-transfer': ServeDuringTransfer,
};
