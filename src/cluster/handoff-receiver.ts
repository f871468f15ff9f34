/**
 * The receiving side of an ownership handoff (riak_core_handoff_receiver):
 * tells the sender how far each stream of the partition already goes here
 * (the durable streams themselves are the resume cursor, so a transfer
 * resumes after either side restarts and sends nothing twice), makes each
 * batch durable before acknowledging it, and takes the partition over when
 * the sender says the last batch was sent and it stopped serving it.
 */
import type { Logger } from 'pino';
import { IorioError } from '../core/errors.js';
import { transferOf, type Ring } from '../core/ring.js';
import { MessageType } from '../core/wire.js';
import type { StreamStore } from '../store/stream-store.js';
import type { ImportBatch, StreamPosition } from '../store/types.js';
import type { PartitionRoutes } from './partition-routes.js';
import type { ClusterTransport } from './transport.js';

export interface HandoffBatchBody extends ImportBatch {
  readonly partition: number;
}

export interface ReceiverStats {
  batches: number;
  bytes: number;
  /** Records that were here already (a resent batch): skipped. */
  duplicateBytes: number;
}

export class HandoffReceiver {
  readonly stats: ReceiverStats = { batches: 0, bytes: 0, duplicateBytes: 0 };
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly transport: ClusterTransport,
    private readonly local: StreamStore,
    private readonly routes: PartitionRoutes,
    private readonly ring: () => Ring,
    private readonly self: string,
    private readonly logger: Logger,
  ) {
    this.unsubscribe.push(
      transport.handle(MessageType.handoffStart, (body, from) => this.start(body as { partition: number }, from)),
      transport.handle(MessageType.handoffBatch, (body, from) => this.batch(body as HandoffBatchBody, from)),
      transport.handle(MessageType.handoffDone, (body, from) => this.done(body as { partition: number }, from)),
    );
  }

  /** A transfer to this node is pending in the ring from `source` (or was completed and taken over already). */
  private check(partition: number, source: string): void {
    const transfer = transferOf(this.ring(), partition);
    if (transfer?.target === this.self && transfer.source === source) return;
    if (this.routes.takenOverPartitions().includes(partition)) return;
    throw new IorioError('conflict', `no transfer of partition ${partition} from ${source} to ${this.self} is pending in this node's ring`, { reason_code: 'no_transfer' });
  }

  private start(body: { partition: number }, from: string): { positions: StreamPosition[] } {
    this.check(body.partition, from);
    return { positions: this.local.partitionStreams(body.partition) };
  }

  private async batch(body: HandoffBatchBody, from: string): Promise<{ lastSeq: number }> {
    this.check(body.partition, from);
    const before = this.local.lastSeqNow(body.bucket, body.stream);
    await this.local.importRecords(body);
    this.stats.batches++;
    this.stats.bytes += body.records.length;
    if (before > 0 && body.records.length > 0 && this.firstSeq(body.records) <= before) this.stats.duplicateBytes += body.records.length;
    return { lastSeq: this.local.lastSeqNow(body.bucket, body.stream) };
  }

  private async done(body: { partition: number }, from: string): Promise<null> {
    this.check(body.partition, from);
    await this.routes.markTakenOver(body.partition);
    this.logger.info({ partition: body.partition, source: from }, 'handoff: took the partition over');
    return null;
  }

  private firstSeq(records: Buffer): number {
    return records.readUInt32LE(8) + records.readUInt32LE(12) * 0x100000000;
  }

  close(): void {
    for (const off of this.unsubscribe) off();
  }
}
