/**
 * The handoff manager (riak_core_handoff_manager): runs this node's
 * outgoing transfers, those the ring lists with this node as source, at most
 * `handoff.concurrency` at a time and `handoff.rate` bytes/s together (both
 * changeable at run time); reaps stalled ones and retries failed ones;
 * finishes transfers a restart interrupted after the hand-off; and drops a
 * partition's copy here once the ring says its new owner owns it.
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { IorioError } from '../core/errors.js';
import { handoffBatchBytesMax, handoffRetryMs, handoffRingLagRetryMs, handoffStallMs } from '../core/limits.js';
import type { Ring } from '../core/ring.js';
import type { StreamStore } from '../store/stream-store.js';
import type { TransferLimits, TransferRow } from './admin-api.js';
import { finishHandoff, HandoffSender, type SenderDeps } from './handoff-sender.js';
import type { PartitionRoutes } from './partition-routes.js';
import type { ClusterTransport } from './transport.js';

export interface HandoffManagerOptions {
  readonly transport: ClusterTransport;
  readonly local: StreamStore;
  readonly routes: PartitionRoutes;
  readonly ring: () => Ring;
  readonly self: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly requestTimeoutMs: number;
  readonly concurrency: number;
  readonly rateBytesPerSec: number;
  readonly complete: (partition: number, target: string) => Promise<unknown>;
  /** Tick of the scheduler (also how soon a new transfer starts). */
  readonly tickMs: number;
}

interface Running {
  readonly sender: HandoffSender;
  readonly abort: AbortController;
  readonly done: Promise<void>;
}

export class HandoffManager {
  private readonly logger: Logger;
  private readonly running = new Map<number, Running>();
  /** Partitions not to start again before this monotonic time (failed or cancelled). */
  private readonly notBefore = new Map<number, number>();
  private readonly finishing = new Map<number, AbortController>();
  private limits: TransferLimits;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Token bucket of handoff.rate. */
  private tokens = 0;
  private tokensAtMs = 0;

  constructor(private readonly options: HandoffManagerOptions) {
    this.logger = options.logger.child({ component: 'handoff' });
    this.limits = { concurrency: options.concurrency, rateBytesPerSec: options.rateBytesPerSec };
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.tickMs);
    this.timer.unref();
    this.tick();
  }

  get transferLimits(): TransferLimits {
    return this.limits;
  }

  setLimits(change: { concurrency?: number; rate?: number }): TransferLimits {
    if (change.concurrency !== undefined && (!Number.isInteger(change.concurrency) || change.concurrency < 1 || change.concurrency > 64)) {
      throw new IorioError('invalid-param', 'concurrency must be an integer, 1..64');
    }
    if (change.rate !== undefined && (!Number.isSafeInteger(change.rate) || change.rate < 0)) throw new IorioError('invalid-param', 'rate must be a number of bytes per second, 0 for no limit');
    this.limits = { concurrency: change.concurrency ?? this.limits.concurrency, rateBytesPerSec: change.rate ?? this.limits.rateBytesPerSec };
    this.logger.info(this.limits, 'handoff limits changed');
    this.tick();
    return this.limits;
  }

  /** Stops one running transfer; it is tried again after handoffRetryMs. */
  cancel(partition: number): boolean {
    const running = this.running.get(partition);
    if (running === undefined) return false;
    running.abort.abort(new IorioError('unavailable', 'the transfer was cancelled'));
    this.notBefore.set(partition, this.options.clock.monotonic() + handoffRetryMs);
    return true;
  }

  /** This node's transfers: running ones with progress, waiting ones from the ring. */
  rows(): TransferRow[] {
    const now = this.options.clock.monotonic();
    const rows: TransferRow[] = [];
    for (const transfer of this.options.ring().next) {
      if (transfer.source !== this.options.self) continue;
      const running = this.running.get(transfer.partition)?.sender.progress;
      if (running === undefined) {
        rows.push({ ...transfer, state: 'waiting', streamsDone: 0, streams: 0, bytes: 0, entries: 0, rateBytesPerSec: 0, etaSecs: null, startedMs: null });
        continue;
      }
      const windowMs = running.samples.length > 0 ? Math.max(1000, now - running.samples[0]![0]) : 1000;
      const rate = Math.round((running.samples.reduce((sum, sample) => sum + sample[1], 0) * 1000) / windowMs);
      const left = running.streams - running.streamsDone;
      const perStream = running.streamsDone > 0 ? running.bytes / running.streamsDone : 0;
      rows.push({
        ...transfer,
        state: running.state,
        streamsDone: running.streamsDone,
        streams: running.streams,
        bytes: running.bytes,
        entries: running.entries,
        rateBytesPerSec: rate,
        etaSecs: rate > 0 && perStream > 0 ? Math.ceil((left * perStream) / rate) : null,
        startedMs: running.startedMs,
      });
    }
    return rows.sort((a, b) => a.partition - b.partition);
  }

  /** A new ring: settle marks and drop partitions that moved away for good. */
  async ringChanged(ring: Ring): Promise<void> {
    for (const [partition, running] of this.running) {
      const transfer = ring.next.find((entry) => entry.partition === partition);
      if (transfer === undefined || transfer.target !== running.sender.target) running.abort.abort(new IorioError('unavailable', 'the transfer is no longer in the ring'));
    }
    const settled = await this.options.routes.settle(ring);
    for (const partition of settled) {
      const dropped = await this.options.local.dropPartition(partition);
      this.logger.info({ partition, streams: dropped }, 'handoff: dropped the copy of a partition its new owner took over');
    }
    this.tick();
  }

  private tick(): void {
    if (this.closed) return;
    this.finishInterrupted();
    this.reapStalled();
    const now = this.options.clock.monotonic();
    for (const transfer of this.options.ring().next) {
      if (this.running.size >= this.limits.concurrency) break;
      if (transfer.source !== this.options.self || this.running.has(transfer.partition)) continue;
      if (this.options.routes.route(transfer.partition).reason === 'handed-off') continue;
      if ((this.notBefore.get(transfer.partition) ?? 0) > now) continue;
      this.startTransfer(transfer.partition, transfer.target);
    }
  }

  private startTransfer(partition: number, target: string): void {
    const abort = new AbortController();
    const sender = new HandoffSender(this.senderDeps(), partition, target, this.options.self, abort.signal);
    this.logger.info({ partition, target }, 'handoff: transfer starting');
    const done = sender
      .run()
      .catch((error: unknown) => {
        // The target has not heard of the transfer yet (the ring is still on its way): try again soon.
        const ringLag = error instanceof IorioError && error.details?.['reason_code'] === 'no_transfer';
        this.notBefore.set(partition, this.options.clock.monotonic() + (ringLag ? handoffRingLagRetryMs : handoffRetryMs));
        if (!abort.signal.aborted) this.logger.warn({ err: error, partition, target }, 'handoff: transfer failed; it will be tried again');
        else this.logger.info({ partition, target, reason: String(abort.signal.reason) }, 'handoff: transfer stopped');
      })
      .finally(() => {
        this.running.delete(partition);
        this.tick();
      });
    this.running.set(partition, { sender, abort, done });
  }

  /** Partitions handed off before a restart whose target or claimant was not told yet. */
  private finishInterrupted(): void {
    for (const [partition, target] of this.options.routes.handedOffPartitions()) {
      if (this.finishing.has(partition) || this.running.has(partition)) continue;
      if (this.options.ring().owners[partition] === target) continue;
      const abort = new AbortController();
      this.finishing.set(partition, abort);
      void finishHandoff(this.senderDeps(), partition, target, abort.signal)
        .catch(() => undefined)
        .finally(() => this.finishing.delete(partition));
    }
  }

  private reapStalled(): void {
    const now = this.options.clock.monotonic();
    for (const [partition, running] of this.running) {
      if (now - running.sender.progress.lastProgressMs > handoffStallMs) {
        this.logger.warn({ partition, target: running.sender.target }, 'handoff: transfer stalled; reaped');
        running.abort.abort(new IorioError('unavailable', 'the transfer stalled'));
      }
    }
  }

  private senderDeps(): SenderDeps {
    return {
      transport: this.options.transport,
      local: this.options.local,
      routes: this.options.routes,
      clock: this.options.clock,
      logger: this.logger,
      requestTimeoutMs: this.options.requestTimeoutMs,
      throttle: (bytes, signal) => this.throttle(bytes, signal),
      batchBytes: () => this.batchBytes(),
      complete: this.options.complete,
    };
  }

  /** A quarter of a second of the rate limit, within [16 KB, handoffBatchBytesMax]; the maximum when unlimited. */
  private batchBytes(): number {
    const rate = this.limits.rateBytesPerSec;
    if (rate <= 0) return handoffBatchBytesMax;
    return Math.max(16 * 1024, Math.min(handoffBatchBytesMax, Math.floor(rate / 4)));
  }

  /** Token bucket over every transfer of this node (one second of burst). */
  private async throttle(bytes: number, signal: AbortSignal): Promise<void> {
    for (;;) {
      const rate = this.limits.rateBytesPerSec;
      if (rate <= 0) return;
      const now = this.options.clock.monotonic();
      this.tokens = Math.min(rate, this.tokens + ((now - this.tokensAtMs) * rate) / 1000);
      this.tokensAtMs = now;
      if (this.tokens >= Math.min(bytes, rate)) {
        this.tokens -= bytes;
        return;
      }
      signal.throwIfAborted();
      const waitMs = Math.ceil(((Math.min(bytes, rate) - this.tokens) * 1000) / rate);
      await new Promise((resolve) => setTimeout(resolve, Math.min(waitMs, 1000)));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const running of this.running.values()) running.abort.abort(new IorioError('unavailable', 'the node is stopping'));
    for (const abort of this.finishing.values()) abort.abort(new IorioError('unavailable', 'the node is stopping'));
    await Promise.all([...this.running.values()].map((running) => running.done));
  }
}
