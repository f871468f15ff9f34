/**
 * The checker of DESIGN §9, over what a simulated run's clients saw and what
 * its replicas committed. Online checks (one leader per epoch, acknowledgements
 * that never go back, every committed op the same everywhere) run inside the
 * simulation; these run at the end.
 */

import type { LogEntry } from '../../src/cluster/replication/types.js';
import { type ClientOp, placements, type Simulation, type SimPayload, type SimResult } from './sim.js';

export function check(sim: Simulation, result: SimResult): string[] {
  const failures = sim.violations.map((violation) => `at ${violation.at.toFixed(1)} ms: ${violation.what}`);
  if (result.liveness !== undefined) failures.push(result.liveness);

  // The final log: every op committed anywhere (committed ops form one prefix, checked online).
  const final: LogEntry<SimPayload>[] = [];
  for (let op = 1; sim.committed.has(op); op++) final.push(sim.committed.get(op)!);
  const maxCommitted = Math.max(0, ...sim.committed.keys());
  if (maxCommitted !== final.length) failures.push(`committed ops are not one prefix: ${final.length} contiguous, up to ${maxCommitted}`);

  // Per stream: seqnums 1, 2, 3 ... in op order, each value once.
  const atSeq = new Map<string, Map<number, string>>();
  const where = new Map<string, { stream: string; seq: number }>();
  const pairWhere = new Map<string, { stream: string; seq: number }>();
  for (const entry of final) {
    const places = placements(entry);
    for (const [index, place] of places.entries()) {
      const seqs = atSeq.get(place.stream) ?? new Map<number, string>();
      atSeq.set(place.stream, seqs);
      if (place.seq !== seqs.size + 1) failures.push(`${place.stream}: op ${entry.op} has seqnum ${place.seq} after ${seqs.size} (a gap or a repeat)`);
      seqs.set(place.seq, entry.payload.value);
      const index_ = index === 0 ? where : pairWhere;
      if (index_.has(entry.payload.value)) failures.push(`${entry.payload.value} is in the log twice (${place.stream}#${index_.get(entry.payload.value)!.seq} and #${place.seq})`);
      else index_.set(entry.payload.value, place);
    }
  }

  const byValue = new Map(sim.ops.map((op) => [op.value, op]));
  for (const value of where.keys()) {
    if (value !== 'probe' && !byValue.has(value)) failures.push(`${value} is in the log but no client sent it`);
  }

  // Every acknowledged append is there exactly once, at its seqnum; a refused one is not there at all.
  const observed = new Map<string, string>();
  const observe = (stream: string, seq: number, value: string, how: string): void => {
    const key = `${stream}#${seq}`;
    const before = observed.get(key);
    if (before === undefined) observed.set(key, value);
    else if (before !== value) failures.push(`${key} was seen as ${before} and as ${value} (${how})`);
  };
  for (const op of sim.ops) {
    const found = where.get(op.value);
    if (op.outcome === 'ok') {
      observe(op.stream, op.seq!, op.value, `acknowledged to client ${op.client}`);
      if (found === undefined) failures.push(`acknowledged ${op.value} (${op.stream}#${op.seq}) is not in the final log`);
      else if (found.seq !== op.seq || found.stream !== op.stream) failures.push(`acknowledged ${op.value} at ${op.stream}#${op.seq} is at ${found.stream}#${found.seq}`);
      if (op.expectSeq !== undefined && op.seq !== op.expectSeq + 1) failures.push(`conditional ${op.value} expected ${op.expectSeq} but got seqnum ${op.seq}`);
      if (op.pair !== undefined) {
        observe(op.pair, op.pairSeq!, op.value, `acknowledged to client ${op.client}`);
        const second = pairWhere.get(op.value);
        if (second === undefined || second.stream !== op.pair || second.seq !== op.pairSeq) failures.push(`acknowledged ${op.value}'s second write (${op.pair}#${op.pairSeq}) is not in the final log`);
      }
    } else if (op.outcome === 'failed' && found !== undefined) {
      failures.push(`${op.value} was refused to its client but is in the log at ${found.stream}#${found.seq}`);
    }
    // All or nothing: a pair is in the log with both writes, or not at all.
    if (op.pair !== undefined && (found === undefined) !== (pairWhere.get(op.value) === undefined)) failures.push(`${op.value} is in the log with only one of its two writes`);
  }

  // Reads saw only what the final log holds, at the same seqnums.
  for (const read of sim.reads) {
    let previous = 0;
    for (const entry of read.entries) {
      observe(read.stream, entry.seq, entry.value, `read from ${read.node} at ${read.at.toFixed(1)}`);
      const seqs = atSeq.get(read.stream);
      if (seqs?.get(entry.seq) !== entry.value) failures.push(`a read of ${read.stream} from ${read.node} at ${read.at.toFixed(1)} ms saw #${entry.seq} = ${entry.value}, not in the final log`);
      if (entry.seq !== previous + 1) failures.push(`a read of ${read.stream} from ${read.node} skipped from #${previous} to #${entry.seq}`);
      previous = entry.seq;
    }
  }

  // Reads are linearizable: a read sent after an append was acknowledged shows it (a deposed leader serves nothing).
  const ackedByStream = new Map<string, ClientOp[]>();
  for (const op of sim.ops) {
    if (op.outcome !== 'ok') continue;
    const list = ackedByStream.get(op.stream) ?? [];
    list.push(op);
    ackedByStream.set(op.stream, list);
  }
  for (const read of sim.reads) {
    const shown = read.entries.length === 0 ? 0 : read.entries[read.entries.length - 1]!.seq;
    for (const op of ackedByStream.get(read.stream) ?? []) {
      if (op.ackedAt! < read.issuedAt && op.seq! > shown) {
        failures.push(`a read of ${read.stream} from ${read.node} sent at ${read.issuedAt.toFixed(1)} ms shows up to #${shown}, but ${op.value} was acknowledged at #${op.seq} at ${op.ackedAt!.toFixed(1)} ms (a stale read)`);
        break;
      }
    }
  }

  // Real-time order: an append sent after another was acknowledged gets a later seqnum.
  const acked = sim.ops.filter((op) => op.outcome === 'ok').sort((a, b) => a.ackedAt! - b.ackedAt!);
  for (const later of sim.ops) {
    const laterSeq = where.get(later.value);
    if (laterSeq === undefined) continue;
    for (const earlier of acked) {
      if (earlier.ackedAt! >= later.sentAt) break;
      if (earlier.stream === later.stream && earlier.seq! >= laterSeq.seq) {
        failures.push(`${later.value} was sent at ${later.sentAt.toFixed(1)} after ${earlier.value} was acknowledged at ${earlier.ackedAt!.toFixed(1)}, but has seqnum ${laterSeq.seq} <= ${earlier.seq}`);
      }
    }
  }

  // Live replicas' committed logs are prefixes of the final one, entry for entry.
  for (const { id, entries } of sim.committedLogs()) {
    for (const entry of entries) {
      const expected = final[entry.op - 1];
      if (expected === undefined || JSON.stringify(expected) !== JSON.stringify(entry)) {
        failures.push(`${id}'s committed op ${entry.op} differs from the final log`);
        break;
      }
    }
  }
  return [...new Set(failures)];
}
