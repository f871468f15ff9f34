/**
 * The log checker of the real-process replication tests (DESIGN §7b, §9):
 * what was appended to one stream and what was answered, checked against
 * the whole log read back through any node and against what a listener saw.
 *
 * An append answered 201 is acknowledged at its seqnum. One answered 503
 * `unavailable`, or whose answer was lost with a node the test killed, has
 * an unknown outcome: it may appear at most once. The rules:
 *
 * - no seqnum is acknowledged twice (checked as each 201 arrives);
 * - the log's seqnums are gap-free from 1; no append appears twice; an
 *   entry is either the append acknowledged at its seqnum or one of unknown
 *   outcome; every acknowledged append is at its seqnum;
 * - real-time order: an append acknowledged before another was sent has
 *   the lower seqnum (a deposed leader's stale 201 breaks this);
 * - a listener that subscribed from seqnum 1 saw the log, exactly: each
 *   entry once, in order, with the value the log holds there.
 *
 * The checks are pure functions returning the problems they find, so
 * ledger.test.ts shows each one fail on a bad history.
 */
import { expect } from 'vitest';
import { waitFor, type Answer, type FaultCluster } from './netns.js';

/** One entry as a read or a listener saw it: its seqnum and which append it was. */
export interface SeenEntry {
  readonly seq: number;
  readonly n: number;
}

/** One append of a history. */
export interface AppendRecord {
  /** Which append, numbered from 1 within its history (the payload is `{ n }`). */
  readonly n: number;
  /** The history's logical time when it was sent, and when its 201 came. */
  readonly sentAt: number;
  answeredAt?: number;
  /** Wall-clock times, for the logs only: a timing never decides a test. */
  readonly sentMs: number;
  answeredMs?: number;
  /** The seqnum a 201 gave it. */
  seq?: number;
  /** The node it went through. */
  readonly via: number;
}

/** Problems are capped so a failure message stays readable. */
const problemsMax = 20;
/** Reads a stream in pages of this many entries (the node's read limit, core/limits.ts readLimitMax). */
const readPageCount = 1000;
const readPagesMax = 100;

/** What was sent and answered on one stream; no I/O (the Ledger does that). */
export class History {
  private clock = 0;
  readonly appends: AppendRecord[] = [];
  /** Seqnum to append number, for every 201. */
  readonly acknowledged = new Map<number, number>();
  /** Append numbers whose outcome is unknown. */
  readonly unknown = new Set<number>();

  sent(via: number): AppendRecord {
    const record: AppendRecord = { n: this.appends.length + 1, sentAt: ++this.clock, sentMs: Date.now(), via };
    this.appends.push(record);
    return record;
  }

  /** Records a 201 at `seq`; a problem when that seqnum was acknowledged already. */
  acknowledge(record: AppendRecord, seq: number): string | undefined {
    record.answeredAt = ++this.clock;
    record.answeredMs = Date.now();
    const taken = this.acknowledged.get(seq);
    if (taken !== undefined) return `seq ${seq} acknowledged twice: to append ${taken}, then to append ${record.n} (via node ${record.via})`;
    record.seq = seq;
    this.acknowledged.set(seq, record.n);
    return undefined;
  }

  unknownOutcome(record: AppendRecord): void {
    this.unknown.add(record.n);
  }

  /** Appends acknowledged whose request was sent at or after wall-clock `sinceMs`. */
  acknowledgedSince(sinceMs: number): AppendRecord[] {
    return this.appends.filter((record) => record.seq !== undefined && record.sentMs >= sinceMs);
  }
}

/** Problems of a stream's whole log (ascending, as read) against its history. Pure. */
export function logProblems(entries: readonly SeenEntry[], history: Pick<History, 'acknowledged' | 'unknown'>): string[] {
  const problems: string[] = [];
  const seenAt = new Map<number, number>();
  entries.forEach((entry, index) => {
    // The first place the seqnums go wrong is enough: every later one is off too.
    if (entry.seq !== index + 1 && (index === 0 || entries[index - 1]!.seq === index)) problems.push(`seqnums are not gap-free from 1: entry ${index + 1} has seq ${entry.seq}`);
    const before = seenAt.get(entry.n);
    if (before !== undefined) problems.push(`append ${entry.n} appears twice, at seq ${before} and seq ${entry.seq}`);
    seenAt.set(entry.n, entry.seq);
    const expected = history.acknowledged.get(entry.seq);
    if (expected !== undefined && expected !== entry.n) problems.push(`seq ${entry.seq} holds append ${entry.n}, but append ${expected} was acknowledged there`);
    if (expected === undefined && !history.unknown.has(entry.n)) problems.push(`seq ${entry.seq} holds append ${entry.n}, which was acknowledged at another seqnum or never sent`);
  });
  for (const [seq, n] of history.acknowledged) if (entries[seq - 1]?.n !== n || entries[seq - 1]?.seq !== seq) problems.push(`acknowledged append ${n} at seq ${seq} is missing`);
  return problems.slice(0, problemsMax);
}

/** Real-time order: an append acknowledged before another was sent has the lower seqnum. Pure. */
export function orderProblems(appends: readonly AppendRecord[]): string[] {
  const acknowledged = appends.filter((record) => record.seq !== undefined && record.answeredAt !== undefined);
  const byAnswer = [...acknowledged].sort((a, b) => a.answeredAt! - b.answeredAt!);
  // highest[i]: the highest seqnum among the first i + 1 appends answered, and which append had it.
  const highest: AppendRecord[] = [];
  for (const record of byAnswer) highest.push(highest.length === 0 || record.seq! > highest[highest.length - 1]!.seq! ? record : highest[highest.length - 1]!);
  const problems: string[] = [];
  for (const later of acknowledged) {
    // The appends answered before `later` was sent are a prefix of byAnswer.
    let low = 0;
    let high = byAnswer.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (byAnswer[middle]!.answeredAt! < later.sentAt) low = middle + 1;
      else high = middle;
    }
    const earlier = low === 0 ? undefined : highest[low - 1]!;
    if (earlier !== undefined && earlier.seq! >= later.seq!) {
      problems.push(`append ${earlier.n} was acknowledged at seq ${earlier.seq} before append ${later.n} was sent, which was acknowledged at the lower or same seq ${later.seq} (via node ${later.via})`);
    }
  }
  return problems.slice(0, problemsMax);
}

/** What a listener subscribed from seqnum 1 saw of a stream, against the whole log as read at the end. Pure. */
export function listenedProblems(seen: readonly SeenEntry[], log: readonly SeenEntry[]): string[] {
  const problems: string[] = [];
  seen.forEach((entry, index) => {
    if (entry.seq !== index + 1 && (index === 0 || seen[index - 1]!.seq === index)) problems.push(`the listener's entry ${index + 1} is seq ${entry.seq}: a gap, a duplicate or out of order`);
    const logged = log[entry.seq - 1];
    if (logged?.n !== entry.n) problems.push(`the listener saw append ${entry.n} at seq ${entry.seq}; the log holds ${logged === undefined ? 'nothing' : `append ${logged.n}`} there`);
  });
  if (seen.length !== log.length) problems.push(`the listener saw ${seen.length} entries; the log holds ${log.length}`);
  return problems.slice(0, problemsMax);
}

export interface LedgerOptions {
  /** Whether an append through `via` that got no answer (the connection ended) has an unknown outcome rather than failing the test: a node the test killed. */
  readonly answerMayBeLost?: (via: number) => boolean;
  /** How long an append waits for its answer before it fails the test as a hang (default: the harness's answerTimeoutMs). */
  readonly answerTimeoutMs?: number;
}

/** A History of one stream and the appends and reads behind it, through a FaultCluster. */
export class Ledger {
  readonly history = new History();

  constructor(
    private readonly cluster: FaultCluster,
    readonly bucket: string,
    readonly stream: string,
    private readonly options: LedgerOptions = {},
  ) {}

  get path(): string {
    return `/streams/${this.bucket}/${this.stream}`;
  }

  /** Appends `{ n }` through node `via`: the answer is 201 or 503 `unavailable`, never another; no seqnum is acknowledged twice. Undefined when the answer was lost with a killed node. */
  async append(via: number): Promise<Answer | undefined> {
    const record = this.history.sent(via);
    let answer: Answer;
    try {
      answer = await this.cluster.call(via, 'POST', this.path, { n: record.n }, this.options.answerTimeoutMs);
    } catch (error) {
      if (this.options.answerMayBeLost?.(via) !== true) throw error;
      this.history.unknownOutcome(record);
      return undefined;
    }
    if (answer.status === 201) {
      const problem = this.history.acknowledge(record, answer.body.meta.id as number);
      expect(problem, `${this.stream} via node ${via}`).toBeUndefined();
    } else {
      expect(answer.status, `append to ${this.stream} via node ${via}: ${JSON.stringify(answer.body)}`).toBe(503);
      expect(answer.body.type, `append to ${this.stream} via node ${via}`).toBe('unavailable');
      this.history.unknownOutcome(record);
    }
    return answer;
  }

  /** Appends through `via` until one is acknowledged (bounded in count and time); how many were refused first. */
  async appendUntilAcknowledged(via: number, timeoutMs = 60_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let last: Answer | undefined;
    let attempt = 0;
    for (; attempt < 1_000 && Date.now() < deadline; attempt++) {
      last = await this.append(via);
      if (last?.status === 201) return attempt;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no append to ${this.stream} through node ${via} was acknowledged (${attempt} tried, within ${timeoutMs} ms); the last answer: ${last?.status} ${JSON.stringify(last?.body)}`);
  }

  /** The whole stream read through node `via`, page by page (each page retried until a 200, within 30 s). */
  async read(via: number): Promise<SeenEntry[]> {
    const entries: SeenEntry[] = [];
    for (let page = 0; page < readPagesMax; page++) {
      const route = `${this.path}?limit=${readPageCount}&from=${entries.length + 1}`;
      const answer = await waitFor(`a read of ${this.stream} through node ${via}`, 30_000, async () => {
        const read = await this.cluster.call(via, 'GET', route);
        return read.status === 200 ? read : undefined;
      });
      const got = answer.body as { meta: { id: number }; data: { n: number } }[];
      entries.push(...got.map((entry) => ({ seq: entry.meta.id, n: entry.data.n })));
      if (got.length < readPageCount) return entries;
    }
    throw new Error(`${this.stream} holds more than ${readPagesMax} pages`);
  }

  /** Reads the stream through node `via` and checks it against the history; the log read. */
  async check(via: number): Promise<SeenEntry[]> {
    const entries = await this.read(via);
    expect(logProblems(entries, this.history), `${this.stream} read through node ${via}`).toEqual([]);
    expect(orderProblems(this.history.appends), `${this.stream}: real-time order`).toEqual([]);
    return entries;
  }
}
