/** apitest's flags: IorioDB's tester's flags and defaults, plus a few of Iorio's own. */
import { randomInt } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { toolNodeUrlOf } from '../../src/cli/node-url.js';

export interface ApitestOptions {
  readonly username: string;
  readonly password: string;
  readonly host: string;
  readonly port: number;
  /** Overrides host and port (e.g. `https://node1:8443`). */
  readonly url?: string;
  readonly buckets: number;
  /** Streams per bucket. */
  readonly streams: number;
  readonly seed: number;
  /** Inserts per inserter and patches per patcher. */
  readonly iterations: number;
  readonly inserters: number;
  readonly listers: number;
  readonly requesters: number;
  readonly patchers: number;
  readonly listeners: number;
  /** The `timeout=` of each long-poll. */
  readonly listenTimeoutSecs: number;
  /** How long listeners may take, after the writers finished, to receive the last entries. */
  readonly drainTimeoutSecs: number;
  /** Progress line interval; 0 disables it. */
  readonly progressIntervalMs: number;
  /** Where progress and error lines go. */
  readonly log: (line: string) => void;
}

export const countFlagMax = 100_000;

export function defaultApitestOptions(): ApitestOptions {
  return {
    username: 'admin',
    password: 'secret',
    host: 'localhost',
    port: 8080,
    buckets: 5,
    streams: 5,
    seed: randomInt(0, 2 ** 31 - 1),
    iterations: 10,
    inserters: availableParallelism(),
    listers: 1,
    requesters: 1,
    patchers: 1,
    listeners: 1,
    listenTimeoutSecs: 5,
    drainTimeoutSecs: 30,
    progressIntervalMs: 1000,
    log: (line) => process.stderr.write(line + '\n'),
  };
}

export const usage = `usage: npm run apitest -- [flags]

Runs inserters, patchers, requesters, listers and listeners against an Iorio
(or IorioDB) node at once, then verifies what it saw. Exit status 0 only when
no request failed and every check passed.

  -u, --username <name>      user to log in as (admin)
  -p, --password <password>  its password (secret)
  -H, --host <host>          node host (localhost)
  -P, --port <port>          node HTTP port (8080)
      --url <url>            node base URL, overrides host and port
                             (neither given: the URL the node running on ./data,
                             or $IORIO_PATHS_DATA, recorded, else 127.0.0.1:8080,
                             as for iorio, iorio-admin and ioriocli)
  -B, --buckets <n>          buckets to use (5)
  -S, --streams <n>          streams per bucket (5)
  -s, --seed <n>             PRNG seed; the same seed repeats the same run (random)
  -i, --iterations <n>       inserts per inserter and patches per patcher (10)
  -I, --inserters <n>        concurrent inserters (CPU count)
  -L, --listers <n>          concurrent bucket/stream listers (1)
  -R, --requesters <n>       concurrent readers (1)
  -Q, --patchers <n>         concurrent patchers (1)
      --listeners <n>        concurrent long-poll listeners (1)
      --listen-timeout <s>   long-poll timeout in seconds (5)
      --drain-timeout <s>    time listeners get to catch up at the end (30)
  -q, --quiet                no progress lines
  -h, --help                 this text`;

export type ParsedArgs = { readonly help: true } | { readonly help: false; readonly options: ApitestOptions };

/** Parses argv (without node and script); throws an Error naming the bad flag. */
export function parseApitestArgs(argv: readonly string[], base: ApitestOptions = defaultApitestOptions()): ParsedArgs {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      username: { type: 'string', short: 'u' },
      password: { type: 'string', short: 'p' },
      host: { type: 'string', short: 'H' },
      port: { type: 'string', short: 'P' },
      url: { type: 'string' },
      buckets: { type: 'string', short: 'B' },
      streams: { type: 'string', short: 'S' },
      seed: { type: 'string', short: 's' },
      iterations: { type: 'string', short: 'i' },
      inserters: { type: 'string', short: 'I' },
      listers: { type: 'string', short: 'L' },
      requesters: { type: 'string', short: 'R' },
      patchers: { type: 'string', short: 'Q' },
      listeners: { type: 'string' },
      'listen-timeout': { type: 'string' },
      'drain-timeout': { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) return { help: true };
  const count = (name: string, raw: string | undefined, fallback: number, min = 0, max = countFlagMax): number => {
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new Error(`--${name} must be an integer from ${min} to ${max}, got "${raw}"`);
    }
    return value;
  };
  return {
    help: false,
    options: {
      ...base,
      username: values.username ?? base.username,
      password: values.password ?? base.password,
      host: values.host ?? base.host,
      port: count('port', values.port, base.port, 1, 65_535),
      // The one rule of src/cli/node-url.ts: --url, else -H/-P, else the running node's iorio.url, else the default.
      url: values.url ?? base.url ?? (values.host === undefined && values.port === undefined ? toolNodeUrlOf({}, process.env) : undefined),
      buckets: count('buckets', values.buckets, base.buckets, 1),
      streams: count('streams', values.streams, base.streams, 1),
      seed: count('seed', values.seed, base.seed, 0, 2 ** 32 - 1),
      iterations: count('iterations', values.iterations, base.iterations, 0, 10_000_000),
      inserters: count('inserters', values.inserters, base.inserters),
      listers: count('listers', values.listers, base.listers),
      requesters: count('requesters', values.requesters, base.requesters),
      patchers: count('patchers', values.patchers, base.patchers),
      listeners: count('listeners', values.listeners, base.listeners),
      listenTimeoutSecs: count('listen-timeout', values['listen-timeout'], base.listenTimeoutSecs, 1, 300),
      drainTimeoutSecs: count('drain-timeout', values['drain-timeout'], base.drainTimeoutSecs, 1, 3600),
      progressIntervalMs: values.quiet === true ? 0 : base.progressIntervalMs,
    },
  };
}
