import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { IorioError } from '../core/errors.js';
import { passwordQueueCountMax, passwordWorkersMax } from '../core/limits.js';

/** One bcrypt job, as posted to a worker. */
export type PasswordJob =
  | { readonly op: 'hash'; readonly password: string; readonly rounds: number }
  | { readonly op: 'compare'; readonly password: string; readonly hash: string };

/** A worker's answer: the job's value, or why it threw. */
type WorkerReply = { readonly ok: true; readonly value: string | boolean } | { readonly ok: false; readonly message: string };

/**
 * The worker's whole program: bcryptjs (pure JavaScript, so the same hashes
 * as before) run synchronously, one job at a time. Inline source rather than
 * a file so that it runs alike from src/ under vitest and from dist/; the
 * path of bcryptjs's CommonJS build comes from the parent.
 */
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const bcrypt = require(workerData.bcryptPath);
parentPort.on('message', (job) => {
  try {
    const value = job.op === 'hash' ? bcrypt.hashSync(job.password, job.rounds) : bcrypt.compareSync(job.password, job.hash);
    parentPort.postMessage({ ok: true, value });
  } catch (error) {
    parentPort.postMessage({ ok: false, message: String(error && error.message || error) });
  }
});
`;

interface PendingJob {
  readonly job: PasswordJob;
  resolve(value: string | boolean): void;
  reject(error: Error): void;
}

export interface PasswordPoolOptions {
  /** Worker threads at most; default: one core left to the event loop, at least 1, at most passwordWorkersMax. */
  readonly threads?: number;
  /** Jobs that may wait for a worker; default passwordQueueCountMax. */
  readonly queueCountMax?: number;
  readonly logger?: Logger;
}

/** Worker threads for a machine with `cores` cores: leave one to the event loop. Pure. */
export function passwordThreadsFor(cores: number): number {
  return Math.max(1, Math.min(passwordWorkersMax, cores - 1));
}

/**
 * bcrypt off the event loop. bcryptjs hashes in 100 ms slices on the main
 * thread, so a few concurrent logins stall every other request for seconds;
 * here each job runs whole on a worker thread. Workers start on demand and
 * stay; an idle worker is unref'd so that it never keeps a process alive,
 * a busy one is ref'd so that an awaited hash is not cut short. Jobs beyond
 * the workers wait in a bounded queue; past it they fail with 503.
 */
export class PasswordWorkerPool {
  private readonly threads: number;
  private readonly queueCountMax: number;
  private readonly logger: Logger | undefined;
  private readonly idle: Worker[] = [];
  private readonly running = new Map<Worker, PendingJob>();
  private readonly queue: PendingJob[] = [];
  private closed = false;
  private readonly bcryptPath = createRequire(import.meta.url).resolve('bcryptjs');

  constructor(options: PasswordPoolOptions = {}) {
    this.threads = Math.max(1, options.threads ?? passwordThreadsFor(availableParallelism()));
    this.queueCountMax = options.queueCountMax ?? passwordQueueCountMax;
    this.logger = options.logger;
  }

  hash(password: string, rounds: number): Promise<string> {
    return this.run({ op: 'hash', password, rounds }) as Promise<string>;
  }

  compare(password: string, hash: string): Promise<boolean> {
    return this.run({ op: 'compare', password, hash }) as Promise<boolean>;
  }

  /** Thread ids of the live workers (never the main thread's). */
  threadIds(): number[] {
    return [...this.idle, ...this.running.keys()].map((worker) => worker.threadId);
  }

  /** Jobs waiting for a worker. */
  get queued(): number {
    return this.queue.length;
  }

  /** Ends every worker; jobs still running or waiting fail with 503. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const stopping = new IorioError('unavailable', 'the node is stopping');
    for (const pending of this.queue.splice(0)) pending.reject(stopping);
    for (const pending of this.running.values()) pending.reject(stopping);
    const workers = [...this.idle.splice(0), ...this.running.keys()];
    this.running.clear();
    await Promise.all(workers.map((worker) => worker.terminate()));
  }

  private run(job: PasswordJob): Promise<string | boolean> {
    if (this.closed) return Promise.reject(new IorioError('unavailable', 'the node is stopping'));
    const worker = this.idle.pop() ?? (this.running.size < this.threads ? this.spawn() : undefined);
    if (worker === undefined && this.queue.length >= this.queueCountMax) {
      return Promise.reject(new IorioError('unavailable', `${this.queueCountMax} password checks are already waiting: retry later`));
    }
    return new Promise((resolve, reject) => {
      const pending: PendingJob = { job, resolve, reject };
      if (worker === undefined) this.queue.push(pending);
      else this.start(worker, pending);
    });
  }

  private start(worker: Worker, pending: PendingJob): void {
    this.running.set(worker, pending);
    worker.ref();
    worker.postMessage(pending.job);
  }

  /** The worker's job is done (or lost): give it the next one, or let it idle. */
  private release(worker: Worker): void {
    this.running.delete(worker);
    const next = this.queue.shift();
    if (next !== undefined) return this.start(worker, next);
    worker.unref();
    this.idle.push(worker);
  }

  private spawn(): Worker {
    const worker = new Worker(workerSource, { eval: true, workerData: { bcryptPath: this.bcryptPath } });
    worker.on('message', (reply: WorkerReply) => {
      const pending = this.running.get(worker);
      if (pending === undefined) return;
      this.release(worker);
      if (reply.ok) pending.resolve(reply.value);
      else pending.reject(new Error(`password worker: ${reply.message}`));
    });
    // A worker only dies of a bug or of memory: fail its job, forget it; the next job starts a fresh one.
    worker.on('error', (error: Error) => this.lose(worker, error));
    worker.on('exit', (code: number) => this.lose(worker, new Error(`password worker exited with code ${code}`)));
    return worker;
  }

  private lose(worker: Worker, error: Error): void {
    if (this.closed) return;
    const pending = this.running.get(worker);
    this.running.delete(worker);
    const idleIndex = this.idle.indexOf(worker);
    if (idleIndex !== -1) this.idle.splice(idleIndex, 1);
    if (pending === undefined && idleIndex === -1) return;
    this.logger?.error({ err: error, threadId: worker.threadId }, 'password worker lost');
    pending?.reject(error);
    // Queued jobs were waiting for a worker that is gone: start another for the next one.
    const next = this.queue.shift();
    if (next !== undefined) this.start(this.spawn(), next);
  }
}
