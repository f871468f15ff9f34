/** What an apitest run shares between its workers: acknowledgements, errors, checks and role statistics. */
import type { IorioClient } from '../common/client.js';
import { Latencies } from '../common/stats.js';
import { Prng } from '../common/prng.js';
import type { ApitestOptions } from './options.js';
import type { StreamRef } from './generator.js';

export const Role = {
  inserters: 'inserters',
  patchers: 'patchers',
  requesters: 'requesters',
  listers: 'listers',
  listeners: 'listeners',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

export const Check = {
  insertsReadBack: 'inserts-read-back',
  seqnumsUnique: 'seqnums-unique',
  listenersExactlyOnce: 'listeners-exactly-once',
  patchesAppliedOnce: 'patches-applied-once',
  readsConsistent: 'reads-consistent',
  listsComplete: 'lists-complete',
} as const;
export type Check = (typeof Check)[keyof typeof Check];

export const checkDescriptions: Readonly<Record<Check, string>> = {
  'inserts-read-back': 'every acknowledged insert reads back at its seqnum with the same data',
  'seqnums-unique': 'no seqnum was acknowledged twice on a stream',
  'listeners-exactly-once': 'each listener got every entry of its streams once, in order, from where it joined',
  'patches-applied-once': 'every acknowledged patch is in its final document exactly once',
  'reads-consistent': 'GETs are ascending, gap-free and show every write acknowledged before them',
  'lists-complete': 'bucket and stream lists show every bucket and stream written before them',
};

/** Failure messages kept per check and for request errors (the counts stay exact). */
export const samplesMax = 20;

export interface CheckResult {
  readonly name: Check;
  readonly description: string;
  checked: number;
  failures: number;
  readonly samples: string[];
}

export interface Ack {
  readonly id: number;
  readonly data: unknown;
}

export class RoleStats {
  workers = 0;
  count = 0;
  errors = 0;
  readonly latencies = new Latencies();
  readonly details: Record<string, number> = {};
  startedMs = 0;
  endedMs = 0;

  constructor(readonly role: Role) {}

  bump(detail: string, by = 1): void {
    this.details[detail] = (this.details[detail] ?? 0) + by;
  }
}

export class RunState {
  readonly roles: Record<Role, RoleStats> = {
    inserters: new RoleStats('inserters'),
    patchers: new RoleStats('patchers'),
    requesters: new RoleStats('requesters'),
    listers: new RoleStats('listers'),
    listeners: new RoleStats('listeners'),
  };
  readonly checks = new Map<Check, CheckResult>(
    Object.values(Check).map((name) => [name, { name, description: checkDescriptions[name], checked: 0, failures: 0, samples: [] }]),
  );
  /** Acknowledged inserts per stream key, by seqnum. */
  readonly acks = new Map<string, Map<number, Ack>>();
  /** Acknowledged patches per patch stream key: the token each added. */
  readonly patchAcks = new Map<string, string[]>();
  /** Patches that failed without a clear answer: they may or may not have been applied. */
  readonly patchUncertain = new Map<string, Set<string>>();
  /** Highest seqnum acknowledged per stream key (inserts, patches and creations). */
  readonly ackedLast = new Map<string, number>();
  /** Last seqnum per stream key before the run started. */
  readonly baselineLast = new Map<string, number>();
  /** The `numbers` of each patch stream's document before the run. */
  readonly baselineNumbers = new Map<string, unknown[]>();
  readonly insertKeys: ReadonlySet<string>;
  errorCount = 0;
  readonly errorSamples: string[] = [];
  writersDone = false;
  readersStopped = false;

  constructor(
    readonly options: ApitestOptions,
    readonly client: IorioClient,
    readonly insertStreams: readonly StreamRef[],
    readonly patchStreams: readonly StreamRef[],
  ) {
    this.insertKeys = new Set(insertStreams.map((ref) => ref.key));
  }

  /** A worker's own generator: its choices depend only on the seed and its label. */
  derive(label: string): Prng {
    return new Prng(this.options.seed, label);
  }

  get buckets(): string[] {
    return [...new Set(this.insertStreams.map((ref) => ref.bucket))];
  }

  noteError(role: Role, message: string): void {
    this.roles[role].errors += 1;
    this.errorCount += 1;
    const line = `${role}: ${message}`;
    if (this.errorSamples.length < samplesMax) {
      this.errorSamples.push(line);
      this.options.log(`error ${line}`);
    }
  }

  checked(check: Check, count = 1): void {
    (this.checks.get(check) as CheckResult).checked += count;
  }

  fail(check: Check, message: string): void {
    const result = this.checks.get(check) as CheckResult;
    result.failures += 1;
    if (result.samples.length < samplesMax) {
      result.samples.push(message);
      this.options.log(`check ${check} failed: ${message}`);
    }
  }

  acknowledge(ref: StreamRef, id: number, data: unknown): void {
    let byId = this.acks.get(ref.key);
    if (byId === undefined) {
      byId = new Map();
      this.acks.set(ref.key, byId);
    }
    this.checked(Check.seqnumsUnique);
    if (byId.has(id)) this.fail(Check.seqnumsUnique, `${ref.key}: seqnum ${id} acknowledged for two different inserts`);
    else byId.set(id, { id, data });
    this.noteAcked(ref, id);
  }

  noteAcked(ref: StreamRef, id: number): void {
    if (id > (this.ackedLast.get(ref.key) ?? 0)) this.ackedLast.set(ref.key, id);
  }

  /** Buckets and stream keys with an acknowledged write, at this moment. */
  writtenSnapshot(): { buckets: Set<string>; streams: Set<string> } {
    const streams = new Set(this.ackedLast.keys());
    return { buckets: new Set([...streams].map((key) => key.slice(0, key.indexOf('/')))), streams };
  }
}
