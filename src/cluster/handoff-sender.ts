/**
 * The sending side of an ownership handoff (riak_core_handoff_sender), one
 * partition to its new owner, while the partition keeps serving writes:
 *
 *  1. ask the target how far each stream goes there (its resume cursor);
 *  2. send every stream's records after that, in bounded batches, each
 *     durable on the target before the next (seqnums, timestamps and epochs
 *     as they are), at the handoff rate; repeat over what was written
 *     meanwhile until little is left;
 *  3. seal the partition (new writes wait, the running ones finish), send
 *     the rest, record durably that this node handed the partition off
 *     (from then on it never acknowledges a write for it: it forwards),
 *     and open it again: the waiting writes go to the target;
 *  4. tell the target to take over, and the claimant that the transfer is
 *     done (both retried until they answer).
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { IorioError } from '../core/errors.js';
import { handoffStreamsInFlightMax } from '../core/limits.js';
import { MessageType } from '../core/wire.js';
import type { StreamStore } from '../store/stream-store.js';
import type { StreamPosition } from '../store/types.js';
import type { HandoffBatchBody } from './handoff-receiver.js';
import type { PartitionRoutes } from './partition-routes.js';
import type { ClusterTransport } from './transport.js';

/** Catch-up passes before the partition is sealed even if writes keep coming. */
const passesMax = 4;
/** Sealed once fewer records than this were left to send in a pass. */
const sealBelowRecords = 2_000;

export interface TransferProgress {
  readonly partition: number;
  readonly source: string;
  readonly target: string;
  state: 'running' | 'finishing';
  streams: number;
  streamsDone: number;
  bytes: number;
  entries: number;
  startedMs: number;
  /** Monotonic ms of the last acknowledged batch (a stalled transfer is reaped). */
  lastProgressMs: number;
  /** Recent (monotonic ms, bytes) samples for the rate. */
  readonly samples: [number, number][];
}

export interface SenderDeps {
  readonly transport: ClusterTransport;
  readonly local: StreamStore;
  readonly routes: PartitionRoutes;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly requestTimeoutMs: number;
  /** Waits until `bytes` may be sent (handoff.rate). */
  readonly throttle: (bytes: number, signal: AbortSignal) => Promise<void>;
  /** The largest batch to export now: smaller under a rate limit, so the limit is smooth rather than a burst per batch. */
  readonly batchBytes: () => number;
  /** Tells the claimant the transfer finished. */
  readonly complete: (partition: number, target: string) => Promise<unknown>;
}

type Held = Map<string, { last: number; deletedAt: number }>;

export class HandoffSender {
  readonly progress: TransferProgress;

  constructor(
    private readonly deps: SenderDeps,
    readonly partition: number,
    readonly target: string,
    self: string,
    private readonly signal: AbortSignal,
  ) {
    const now = deps.clock.monotonic();
    this.progress = { partition, source: self, target, state: 'running', streams: 0, streamsDone: 0, bytes: 0, entries: 0, startedMs: deps.clock.now(), lastProgressMs: now, samples: [] };
  }

  async run(): Promise<void> {
    const { partition, target } = this;
    const start = await this.request<{ positions: StreamPosition[] }>(MessageType.handoffStart, { partition });
    const held: Held = new Map(start.positions.map((position) => [key(position), { last: position.last, deletedAt: position.deletedAt }]));
    for (let pass = 1; pass <= passesMax; pass++) {
      const sent = await this.pass(held);
      if (sent < sealBelowRecords) break;
    }
    this.progress.state = 'finishing';
    await this.deps.routes.seal(partition);
    try {
      await this.pass(held);
      await this.deps.routes.markHandedOff(partition, target);
      // Held until the target serves it: a request forwarded there meanwhile would bounce back.
      await this.request(MessageType.handoffDone, { partition }).catch(() => undefined);
    } finally {
      this.deps.routes.unseal(partition);
    }
    this.deps.logger.info({ partition, target, bytes: this.progress.bytes, entries: this.progress.entries }, 'handoff: partition handed off');
    await finishHandoff(this.deps, partition, target, this.signal);
  }

  /** Sends what the target does not hold yet; returns how many records it sent. */
  private async pass(held: Held): Promise<number> {
    const streams = this.deps.local.partitionStreams(this.partition);
    this.progress.streams = streams.length;
    this.progress.streamsDone = 0;
    let records = 0;
    let next = 0;
    // A few streams at once: each batch waits for its acknowledgement, so one stream at a time would leave both nodes idle.
    const worker = async () => {
      while (next < streams.length) {
        const position = streams[next++]!;
        this.signal.throwIfAborted();
        const there = held.get(key(position)) ?? { last: 0, deletedAt: 0 };
        if (there.last < position.last || there.deletedAt < position.deletedAt) records += await this.sendStream(position, there, held);
        this.progress.streamsDone++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(handoffStreamsInFlightMax, streams.length) }, worker));
    return records;
  }

  private async sendStream(position: StreamPosition, there: { last: number; deletedAt: number }, held: Held): Promise<number> {
    let after = there.last;
    let records = 0;
    for (;;) {
      this.signal.throwIfAborted();
      const batch = await this.deps.local.exportRecords(position.bucket, position.stream, after, this.deps.batchBytes());
      await this.deps.throttle(batch.records.length, this.signal);
      const body: HandoffBatchBody = { partition: this.partition, bucket: position.bucket, stream: position.stream, records: batch.records, deletedAt: batch.deletedAt };
      await this.request(MessageType.handoffBatch, body);
      records += batch.count;
      this.noteProgress(batch.records.length, batch.count);
      held.set(key(position), { last: batch.lastSeq, deletedAt: batch.deletedAt });
      if (batch.lastSeq >= batch.last) return records;
      after = batch.lastSeq;
    }
  }

  private noteProgress(bytes: number, entries: number): void {
    const now = this.deps.clock.monotonic();
    this.progress.bytes += bytes;
    this.progress.entries += entries;
    this.progress.lastProgressMs = now;
    this.progress.samples.push([now, bytes]);
    while (this.progress.samples.length > 0 && now - this.progress.samples[0]![0] > 5_000) this.progress.samples.shift();
  }

  private request<T>(type: number, body: object): Promise<T> {
    this.signal.throwIfAborted();
    return this.deps.transport.request<T>(this.target, type, body, { timeoutMs: this.deps.requestTimeoutMs, signal: this.signal });
  }
}

/**
 * After the partition was handed off: the target takes it over, then the
 * claimant completes the transfer. Retried until both answered (or aborted):
 * until then requests for the partition bounce between the two nodes and
 * are refused as retriable, never served twice.
 */
export async function finishHandoff(deps: Pick<SenderDeps, 'transport' | 'complete' | 'requestTimeoutMs' | 'logger'>, partition: number, target: string, signal: AbortSignal): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    signal.throwIfAborted();
    try {
      await deps.transport.request(target, MessageType.handoffDone, { partition }, { timeoutMs: deps.requestTimeoutMs, signal });
      await deps.complete(partition, target);
      return;
    } catch (error) {
      if (signal.aborted) throw error;
      if (error instanceof IorioError && error.code === 'conflict' && error.details?.['reason_code'] === 'no_transfer') return;
      if (attempt % 10 === 0) deps.logger.warn({ err: error, partition, target }, 'handoff: finishing a transfer failed; retrying');
      await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 200 * 2 ** Math.min(attempt, 5))).unref());
    }
  }
}

function key(position: { bucket: string; stream: string }): string {
  return `${position.bucket}\u0000${position.stream}`;
}
