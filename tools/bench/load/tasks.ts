/** What the bench's load child process can be asked to do, and what it answers. */

export interface AutocannonTask {
  readonly kind: 'autocannon';
  readonly url: string;
  readonly method: 'GET' | 'POST';
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  readonly connections: number;
  readonly durationSecs: number;
  /** When set, request i goes to `${path}${i % pathCount}` instead of the url's path. */
  readonly pathPrefix?: string;
  readonly pathCount?: number;
}

export interface AutocannonOutcome {
  readonly requests: number;
  readonly requestsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly non2xx: number;
  readonly errors: number;
}

export interface FanoutTask {
  readonly kind: 'fanout';
  /** WebSocket URL every subscriber opens (subscribed through `s=` in the query). */
  readonly wsUrl: string;
  /** Where each entry is POSTed; absent: this process only subscribes. */
  readonly postUrl?: string;
  readonly postHeaders: Readonly<Record<string, string>>;
  /** Subscribers opened by this process. */
  readonly subscribers: number;
  readonly entriesPerSec: number;
  /** Wall-clock ms when posting starts (every process connects before it). */
  readonly startAtMs: number;
  readonly warmupSecs: number;
  readonly durationSecs: number;
  /** Bytes of each posted JSON body. */
  readonly bodyBytes: number;
}

export interface FanoutOutcome {
  /** Entries posted during the measured window (by this process). */
  readonly posted: number;
  readonly postErrors: number;
  /** Deliveries of window entries to this process's subscribers. */
  readonly delivered: number;
  /** The latency histogram as [bucket index, count] pairs, to merge across processes. */
  readonly histogram: readonly (readonly [number, number])[];
  readonly maxMs: number;
}

export type LoadTask = AutocannonTask | FanoutTask;
export type LoadOutcome = AutocannonOutcome | FanoutOutcome;

export type ChildMessage = { readonly ok: true; readonly outcome: LoadOutcome } | { readonly ok: false; readonly error: string };
