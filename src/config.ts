/**
 * Iorio's configuration: one spec table (key, kind, default, doc), pure
 * parsers and validators, and one thin effectful `loadConfig`.
 *
 * Sources, later ones winning:
 *   built-in defaults < conf file (`key = value`) < env `IORIO_<KEY>` < flags
 *
 * The result is a frozen, flat object keyed by the dotted conf key:
 * durations are numbers of milliseconds, sizes numbers of bytes, yes/no
 * values booleans, enums their literal strings, paths absolute.
 *
 * Conf file syntax (cuttlefish style): one `key = value` per line; lines
 * whose first non-blank character is `#` are comments; blank lines are
 * ignored; there are no trailing comments (a `#` inside a value is part of
 * it, passwords may hold one); the value is trimmed and may be empty. A key
 * may appear at most once per file: a repeated key is an error naming both
 * lines, since "last one wins" silently hides an edit made in the wrong
 * place.
 *
 * Unknown keys in the file and the flags are errors, so a typo can never
 * leave a setting at its default unnoticed; an unknown IORIO_* variable is
 * warned about (envWarnings), never fatal. Every error is a
 * ConfigError naming the key, where it came from and what was expected.
 */

import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { listenTimeoutMsMax } from './core/limits.js';
import { nameProblem } from './core/names.js';
import { majorityOf } from './core/replication.js';

// ---------------------------------------------------------------------------
// Kinds and units

export const ConfigKind = {
  string: 'string',
  path: 'path',
  integer: 'integer',
  port: 'port',
  bool: 'bool',
  enum: 'enum',
  duration: 'duration',
  size: 'size',
} as const;
export type ConfigKind = (typeof ConfigKind)[keyof typeof ConfigKind];

const msPerSecond = 1000;
const msPerMinute = 60 * msPerSecond;
const msPerHour = 60 * msPerMinute;
const msPerDay = 24 * msPerHour;
/** Duration units, largest first (compound durations must follow this order). */
const durationUnits: readonly (readonly [string, number])[] = [
  ['d', msPerDay],
  ['h', msPerHour],
  ['m', msPerMinute],
  ['s', msPerSecond],
  ['ms', 1],
];

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;
const gibibyte = 1024 * mebibyte;
const tebibyte = 1024 * gibibyte;
/** Size units, largest first; KB = 1024 bytes, as in cuttlefish and Riak. */
const sizeUnits: readonly (readonly [string, number])[] = [
  ['TB', tebibyte],
  ['GB', gibibyte],
  ['MB', mebibyte],
  ['KB', kibibyte],
  ['B', 1],
];

/** The longest delay Node's timers accept (2^31 - 1 ms, about 24.8 days). */
const timerMsMax = 2_147_483_647;

// ---------------------------------------------------------------------------
// The spec table

interface SpecBase {
  /** The default, written as it would be in the conf file. */
  readonly default: string;
  /** One line: what the key does (its unit and allowed values are derived from the kind). */
  readonly doc: string;
}
interface StringSpec extends SpecBase {
  readonly kind: 'string';
  readonly allowEmpty?: boolean;
  /** Never echoed in error messages. */
  readonly secret?: boolean;
  /** Why a value is not acceptable, or undefined when it is. */
  readonly check?: (value: string) => string | undefined;
}
interface PathSpec extends SpecBase {
  readonly kind: 'path';
  readonly allowEmpty?: boolean;
}
interface IntegerSpec extends SpecBase {
  readonly kind: 'integer';
  readonly min: number;
  readonly max: number;
  readonly check?: (value: number) => string | undefined;
}
interface PortSpec extends SpecBase {
  readonly kind: 'port';
}
interface BoolSpec extends SpecBase {
  readonly kind: 'bool';
}
interface EnumSpec extends SpecBase {
  readonly kind: 'enum';
  readonly values: readonly string[];
}
interface DurationSpec extends SpecBase {
  readonly kind: 'duration';
  /** Bounds in milliseconds. */
  readonly min: number;
  readonly max: number;
}
interface SizeSpec extends SpecBase {
  readonly kind: 'size';
  /** Bounds in bytes. */
  readonly min: number;
  readonly max: number;
}
export type KeySpec = StringSpec | PathSpec | IntegerSpec | PortSpec | BoolSpec | EnumSpec | DurationSpec | SizeSpec;

const nodenamePattern = /^[A-Za-z0-9_.-]+@[A-Za-z0-9_.:-]+$/;
const originPattern = /^https?:\/\/[^\s,/]+$/;

function nodenameProblem(value: string): string | undefined {
  return nodenamePattern.test(value) ? undefined : 'a node name of the form name@host (e.g. iorio@127.0.0.1)';
}

function usernameProblem(value: string): string | undefined {
  const problem = nameProblem(value);
  return problem === undefined ? undefined : `a valid user name (${problem})`;
}

function originsProblem(value: string): string | undefined {
  if (value === '*') return undefined;
  const origins = value.split(',').map((origin) => origin.trim());
  const bad = origins.find((origin) => !originPattern.test(origin));
  return bad === undefined ? undefined : `* or a comma-separated list of origins like https://example.com (bad: "${bad}")`;
}

function headersProblem(value: string): string | undefined {
  const bad = value.split(',').map((header) => header.trim()).find((header) => header !== '' && !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(header));
  return bad === undefined ? undefined : `a comma-separated list of header names (bad: "${bad}")`;
}

function bucketNameProblem(value: string): string | undefined {
  const problem = nameProblem(value);
  return problem === undefined ? undefined : `a valid bucket or stream name (${problem})`;
}

function bucketPrefixProblem(value: string): string | undefined {
  const problem = nameProblem(value + 'x');
  return problem === undefined ? undefined : `a prefix that makes valid bucket names (${problem})`;
}

function powerOfTwoProblem(value: number): string | undefined {
  return (value & (value - 1)) === 0 ? undefined : 'a power of two';
}

export const configSpec = {
  nodename: {
    kind: 'string',
    default: 'iorio@127.0.0.1',
    check: nodenameProblem,
    doc: 'Name of this node in the cluster, name@host; logged on every line.',
  },
  'paths.data': {
    kind: 'path',
    default: './data',
    doc: 'Directory holding the node\'s data (meta/, commitlog/, vnodes/); relative to the working directory.',
  },
  'log.level': {
    kind: 'enum',
    default: 'info',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    doc: 'Lowest level of log lines written (on stdout; see log.format).',
  },
  'log.format': {
    kind: 'enum',
    default: 'auto',
    values: ['auto', 'json', 'pretty'],
    doc: 'Log lines as JSON (one object a line, for files and collectors) or pretty (one readable line each, colored on a terminal); auto = pretty when stdout is a terminal, JSON otherwise.',
  },
  'log.access': { kind: 'bool', default: 'no', doc: 'Log one line per HTTP request at info (component access): method, path (the jwt query parameter hidden), status, ms, user, client address.' },

  'http.enabled': { kind: 'bool', default: 'yes', doc: 'Serve the API over HTTP (IorioDB\'s http.enabled); with no, only HTTPS serves it (https.enabled must be yes).' },
  'http.host': {
    kind: 'string',
    default: '127.0.0.1',
    doc: 'Address the HTTP API listens on (0.0.0.0 for every interface).',
  },
  'http.port': { kind: 'port', default: '8080', doc: 'TCP port of the HTTP API; 0 picks a free port.' },
  'http.body.max': {
    kind: 'size',
    default: '1MB',
    min: 1,
    max: gibibyte,
    doc: 'Largest request body accepted; larger ones get 413 too-large.',
  },
  'http.cors.enabled': { kind: 'bool', default: 'no', doc: 'Answer CORS preflights and add CORS headers.' },
  'http.cors.origins': {
    kind: 'string',
    default: '*',
    check: originsProblem,
    doc: 'Origins allowed by CORS when enabled: * or a comma-separated list.',
  },
  'http.cors.headers': {
    kind: 'string',
    default: '',
    allowEmpty: true,
    check: headersProblem,
    doc: 'Request headers CORS allows besides the ones Iorio\'s and IorioDB\'s clients send (x-session, content-type, x-socket-transport, ...): a comma-separated list.',
  },
  'http.cors.maxage': {
    kind: 'duration',
    default: '60s',
    min: 0,
    max: 365 * msPerDay,
    doc: 'How long a browser may cache a CORS preflight answer (Access-Control-Max-Age, whole seconds).',
  },
  'http.ratelimit.enabled': {
    kind: 'bool',
    default: 'no',
    doc: 'Limit the request rate per user; beyond it requests get IorioDB\'s answer, 400 rate-limited. Off by default, as in IorioDB.',
  },
  'http.ratelimit.max': {
    kind: 'integer',
    default: '10000',
    min: 1,
    max: 1_000_000_000,
    doc: 'Requests one user may make per rate-limit window.',
  },
  'http.ratelimit.window': {
    kind: 'duration',
    default: '1s',
    min: 1,
    max: timerMsMax,
    doc: 'Length of the rate-limit window.',
  },
  'http.connections.max': {
    kind: 'integer',
    default: '0',
    min: 0,
    max: 10_000_000,
    doc: 'Most client connections (HTTP and HTTPS together, listeners included) open at once; beyond it a new one is answered 503 unavailable and closed. 0 = derived from the open-file limit (the soft RLIMIT_NOFILE, read from /proc/self/limits, 4096 assumed where it cannot be read): that limit minus storage.files.max minus 1024 kept for the node, and at least a quarter of it.',
  },
  'http.connections.per_client.max': {
    kind: 'integer',
    default: '0',
    min: 0,
    max: 10_000_000,
    doc: 'Most connections one client may hold open at once (a client is an IPv4 address or an IPv6 /64); beyond it a new one is answered 503 unavailable and closed. 0 = half of http.connections.max. Behind a proxy every client is the proxy: raise it.',
  },
  'http.idle_timeout': {
    kind: 'duration',
    default: '10s',
    min: 1,
    max: timerMsMax,
    doc: 'A connection that has not sent a whole request header this long after it opened (or after its last answer) is closed; a request that arrived is never cut, so listeners stay open. The body must follow within 5 minutes.',
  },

  'https.enabled': { kind: 'bool', default: 'no', doc: 'Also serve the API over HTTPS (needs https.cert and https.key).' },
  'https.port': { kind: 'port', default: '8443', doc: 'TCP port of the HTTPS API; 0 picks a free port.' },
  'https.cert': {
    kind: 'path',
    default: '',
    allowEmpty: true,
    doc: 'PEM certificate (chain) file for HTTPS; relative to the working directory.',
  },
  'https.key': {
    kind: 'path',
    default: '',
    allowEmpty: true,
    doc: 'PEM private key file for HTTPS; relative to the working directory.',
  },

  'auth.secret': {
    kind: 'string',
    default: '',
    allowEmpty: true,
    secret: true,
    doc: 'Secret signing session tokens; empty: generated on first start and kept in the node\'s metadata.',
  },
  'auth.algorithm': {
    kind: 'enum',
    default: 'HS256',
    values: ['HS256', 'HS384', 'HS512'],
    doc: 'HMAC algorithm of session tokens; tokens signed otherwise are refused.',
  },
  'auth.session.duration': {
    kind: 'duration',
    default: '24h',
    min: msPerSecond,
    max: 365 * msPerDay,
    doc: 'How long a session token from POST /sessions stays valid.',
  },
  'auth.admin.username': {
    kind: 'string',
    default: 'admin',
    check: usernameProblem,
    doc: 'Administrator ensured at start-up (member of g-admin).',
  },
  'auth.admin.password': {
    kind: 'string',
    default: 'secret',
    secret: true,
    doc: 'Password the administrator is created with (only when it does not exist yet).',
  },
  'auth.anonymous.username': {
    kind: 'string',
    default: 'anonymous',
    check: usernameProblem,
    doc: 'User that requests without credentials act as.',
  },
  'auth.anon.password': {
    kind: 'string',
    default: '',
    allowEmpty: true,
    secret: true,
    doc: 'Password the anonymous user may log in with (POST /sessions), getting a token that acts as anonymous; empty: it cannot log in (IorioDB\'s default is secret).',
  },
  'auth.permission.user.has_bucket': {
    kind: 'bool',
    default: 'yes',
    doc: 'Give every new user its own bucket <auth.permission.user.bucket.prefix><username> with every permission.',
  },
  'auth.permission.user.bucket.prefix': {
    kind: 'string',
    default: '_user_',
    check: bucketPrefixProblem,
    doc: 'Prefix of the bucket every user owns when auth.permission.user.has_bucket = yes.',
  },
  'auth.bcrypt.rounds': {
    kind: 'integer',
    default: '10',
    min: 4,
    max: 31,
    doc: 'bcrypt cost factor of stored passwords (each step doubles the hashing time).',
  },
  'auth.login.failures.max': {
    kind: 'integer',
    default: '5',
    min: 1,
    max: 1_000_000,
    doc: 'Failed logins allowed per user name and per client address within auth.login.failures.window; beyond it logins get 429 rate-limited with Retry-After.',
  },
  'auth.login.failures.window': {
    kind: 'duration',
    default: '1m',
    min: 1,
    max: timerMsMax,
    doc: 'Window over which failed logins are counted (and the longest a throttled login waits).',
  },

  'storage.meta.recreate': {
    kind: 'bool',
    default: 'no',
    doc: 'Start even though meta/ is missing or empty while vnodes/ holds stream data: users, grants, policies and the session secret restart from their defaults; streams are kept.',
  },
  'storage.commitlog.accept_damage': {
    kind: 'bool',
    default: 'no',
    doc: 'Start even though a commit-log segment is unreadable where it cannot be decided whether acknowledged entries were lost; the segment is first copied to commitlog/damaged/ and the range counted as lost.',
  },
  'storage.sync': {
    kind: 'enum',
    default: 'always',
    values: ['always', 'batch', 'none'],
    doc: 'When the commit log is fsynced: always (group commit before each ack), batch (every storage.sync.interval), none (left to the OS).',
  },
  'storage.sync.interval': {
    kind: 'duration',
    default: '10ms',
    min: 1,
    max: timerMsMax,
    doc: 'Time between commit-log fsyncs when storage.sync = batch.',
  },
  'storage.chunk.size': {
    kind: 'size',
    default: '8MB',
    min: 1,
    max: gibibyte,
    doc: 'A stream\'s chunk file rolls over to a new one past this size.',
  },
  'storage.chunk.max_age': {
    kind: 'duration',
    default: '24h',
    min: 0,
    max: 3650 * msPerDay,
    doc: 'A chunk file rolls over once its first entry is this old; 0 = never by age.',
  },
  'storage.checkpoint.interval': {
    kind: 'duration',
    default: '30s',
    min: 1,
    max: timerMsMax,
    doc: 'Time between checkpoints (fsync dirty chunks, trim the commit log).',
  },
  'storage.checkpoint.log_size': {
    kind: 'size',
    default: '256MB',
    min: 1,
    max: 64 * gibibyte,
    doc: 'A checkpoint also starts once the commit log grows past this size.',
  },
  'storage.files.max': {
    kind: 'integer',
    default: '1024',
    min: 1,
    max: 1_000_000,
    doc: 'Most chunk files kept open at once (least recently used are closed).',
  },
  'storage.streams.open.max': {
    kind: 'integer',
    default: '10000',
    min: 1,
    max: 10_000_000,
    doc: 'Most streams kept open in memory with their tail (least recently used are dropped).',
  },

  'channel.max_items': {
    kind: 'integer',
    default: '50',
    min: 1,
    max: 1_000_000,
    doc: 'Entries of each open stream kept in memory (the tail) for reads and listen replays.',
  },
  'channel.max_items_size': {
    kind: 'size',
    default: '2MB',
    min: 1,
    max: gibibyte,
    doc: 'Most bytes of payload one stream\'s in-memory tail holds.',
  },

  'eviction.interval': {
    kind: 'duration',
    default: '1m',
    min: 1,
    max: timerMsMax,
    doc: 'Time between passes that delete chunks beyond the eviction policies.',
  },
  'eviction.stream.max_count': {
    kind: 'integer',
    default: '0',
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'Default policy: entries a stream keeps at most; 0 = no limit.',
  },
  'eviction.stream.max_bytes': {
    kind: 'size',
    default: '0',
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'Default policy: bytes a stream keeps at most; 0 = no limit.',
  },
  'eviction.stream.max_age': {
    kind: 'duration',
    default: '0',
    min: 0,
    max: 36500 * msPerDay,
    doc: 'Default policy: age past which a stream\'s entries are deleted; 0 = no limit.',
  },
  'eviction.bucket.size.max': {
    kind: 'size',
    default: '0',
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'Default policy: bytes a bucket keeps at most, oldest chunks deleted first; 0 = no limit.',
  },

  'cluster.host': {
    kind: 'string',
    default: '127.0.0.1',
    doc: 'Address this node listens on for other nodes, and binds its outgoing node connections to.',
  },
  'cluster.port': { kind: 'port', default: '10019', doc: 'TCP port for other nodes (node-to-node traffic, handoff); 0 picks a free port.' },
  'cluster.secret': {
    kind: 'string',
    default: 'iorio',
    secret: true,
    doc: 'Shared secret every node of a cluster must hold (like an Erlang cookie); a node with another one is refused.',
  },
  'handoff.concurrency': {
    kind: 'integer',
    default: '2',
    min: 1,
    max: 64,
    doc: 'Partition transfers a node runs at once (changeable at run time with iorio-admin transfer-limit).',
  },
  'handoff.rate': {
    kind: 'size',
    default: '0',
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'Bytes per second all transfers of a node may send together; 0 = no limit (changeable at run time with iorio-admin transfer-limit).',
  },
  'request.n': {
    kind: 'integer',
    default: '3',
    min: 1,
    max: 7,
    doc: 'Replicas of each partition (IorioDB request.n; DESIGN 7b). Each partition is a replica group with a leader per epoch; a write is acknowledged once request.w replicas hold it. With fewer members than n, n is the number of members (a single node: groups of one). 1: one copy per partition, moved between nodes by handoff (no failover: a dead node makes its partitions unavailable).',
  },
  'request.w': {
    kind: 'integer',
    default: '0',
    min: 0,
    max: 7,
    doc: 'Replicas that hold an append durably before it is acknowledged; 0 = a majority of request.n. Below a majority is refused: two leaders could then each acknowledge writes the other never sees.',
  },
  'ring.size': {
    kind: 'integer',
    default: '64',
    min: 1,
    max: 1024,
    check: powerOfTwoProblem,
    doc: 'Partitions of the ring; fixed when the cluster is created.',
  },
  'listen.timeout': {
    kind: 'duration',
    default: '30s',
    min: 1,
    max: listenTimeoutMsMax,
    doc: 'How long a long-poll listen waits before answering 204 (a timeout=<secs> query overrides).',
  },
  'metrics.enabled': { kind: 'bool', default: 'yes', doc: 'Append this node\'s metrics to bucket $sys every metrics.interval.' },
  'metrics.bucket': {
    kind: 'string',
    default: '$sys',
    check: bucketNameProblem,
    doc: 'Bucket this node appends its metrics (metrics.stream) and its activity (stream activity) to.',
  },
  'metrics.stream': {
    kind: 'string',
    default: 'metrics',
    check: bucketNameProblem,
    doc: 'Stream of metrics.bucket the node appends its metrics to every metrics.interval.',
  },
  'metrics.interval': {
    kind: 'duration',
    default: '60s',
    min: 1,
    max: timerMsMax,
    doc: 'Time between two metrics entries appended to $sys.',
  },
} as const satisfies Readonly<Record<string, KeySpec>>;

export type ConfigKey = keyof typeof configSpec;
export const configKeys: readonly ConfigKey[] = Object.keys(configSpec) as ConfigKey[];

type ValueOfSpec<S> = S extends { readonly kind: 'enum'; readonly values: readonly (infer V)[] }
  ? V
  : S extends { readonly kind: 'bool' }
    ? boolean
    : S extends { readonly kind: 'string' | 'path' }
      ? string
      : number;

/**
 * The validated configuration: frozen, flat, keyed by the dotted conf key.
 * `extension.config` gathers IorioDB's `extension.config.<name> = <file>`
 * keys (one per extension, so not in the spec table): name -> absolute path
 * of the extension's JSON config file; `extension.module` likewise the
 * `extension.module.<name> = <file>` keys (the JavaScript module of an
 * extension that is not built in). Neither is enumerable, so the config
 * compares and lists as its spec keys.
 */
export type Config = { readonly [K in ConfigKey]: ValueOfSpec<(typeof configSpec)[K]> } & {
  readonly 'extension.config': Readonly<Record<string, string>>;
  readonly 'extension.module': Readonly<Record<string, string>>;
};

/** `extension.config.<name>` (IorioDB's, rel/files/iorio.schema `extension.config.$name`) and `extension.module.<name>`. */
export const extensionKeyPattern = /^extension\.(config|module)\.([a-z0-9_]{1,64})$/;

/** testConfig's overrides: spec keys, and extension keys. */
export type ConfigOverrides = Partial<Record<ConfigKey, ConfigValue>> & { readonly [key: `extension.${string}`]: string };
export type ConfigValue = string | number | boolean;

/**
 * Environment variables starting with IORIO_ that are not config keys but
 * the tools' own: iorio-admin's credentials and timeout, ioriocli's
 * credentials, the tests' log level. Never warned about.
 */
export const envAllowList: readonly string[] = ['IORIO_ADMIN_USER', 'IORIO_ADMIN_PASSWORD', 'IORIO_ADMIN_TIMEOUT', 'IORIO_USER', 'IORIO_PASSWORD', 'IORIO_TEST_LOG'];
export const envPrefix = 'IORIO_';

export function isConfigKey(key: string): key is ConfigKey {
  return Object.prototype.hasOwnProperty.call(configSpec, key);
}

function specOf(key: ConfigKey): KeySpec {
  return configSpec[key];
}

/** `http.port` -> `IORIO_HTTP_PORT`. */
export function envNameOf(key: ConfigKey): string {
  return envPrefix + key.toUpperCase().replaceAll('.', '_');
}

const keyByEnvName: ReadonlyMap<string, ConfigKey> = new Map(configKeys.map((key) => [envNameOf(key), key]));

// ---------------------------------------------------------------------------
// Errors

/** A configuration that cannot be used: the node must not start. */
export class ConfigError extends Error {
  /** The key as written in the source (conf key, env var name or flag name); undefined for syntax errors. */
  readonly key: string | undefined;
  /** Where it came from: `file:line`, `env IORIO_X`, `flag --x`, `override` or `default`. */
  readonly source: string;

  constructor(key: string | undefined, source: string, message: string) {
    super(message);
    this.name = 'ConfigError';
    this.key = key;
    this.source = source;
  }
}

// ---------------------------------------------------------------------------
// Pure parsing

export interface ConfigLine {
  readonly key: string;
  readonly value: string;
  /** 1-based line number in the text. */
  readonly line: number;
}

const keyPattern = /^[A-Za-z0-9_.-]+$/;

/**
 * Parses conf-file text into its `key = value` entries, in order.
 * Throws ConfigError (naming `sourceName:line`) on a malformed line or a
 * repeated key. Does not check whether the keys exist.
 */
export function parseConfigText(text: string, sourceName = 'config'): ConfigLine[] {
  const entries: ConfigLine[] = [];
  const lineOfKey = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    const line = index + 1;
    const content = lines[index]!.trim();
    if (content === '' || content.startsWith('#')) continue;
    const source = `${sourceName}:${line}`;
    const equals = content.indexOf('=');
    if (equals < 0) {
      throw new ConfigError(undefined, source, `${source}: expected "key = value", got "${content}"`);
    }
    const key = content.slice(0, equals).trim();
    if (!keyPattern.test(key)) {
      throw new ConfigError(key, source, `${source}: "${key}" is not a valid key (expected "key = value")`);
    }
    const previous = lineOfKey.get(key);
    if (previous !== undefined) {
      throw new ConfigError(key, source, `${source}: ${key} is set twice (first at line ${previous}); remove one of them`);
    }
    lineOfKey.set(key, line);
    entries.push({ key, value: content.slice(equals + 1).trim(), line });
  }
  return entries;
}

export type ParseResult = { readonly ok: true; readonly value: ConfigValue } | { readonly ok: false; readonly expected: string };

const ok = (value: ConfigValue): ParseResult => ({ ok: true, value });
const bad = (expected: string): ParseResult => ({ ok: false, expected });

/** `500ms`, `5s`, `1m`, `24h`, `7d`, `1h30m` or `0` -> milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const parts = /^(?:\d+(?:ms|s|m|h|d))+$/.test(text) ? text.match(/\d+(?:ms|s|m|h|d)/g)! : undefined;
  if (parts === undefined) return undefined;
  let total = 0;
  let lastUnitIndex = -1;
  for (const part of parts) {
    const [, digits, unit] = /^(\d+)(\D+)$/.exec(part)!;
    const unitIndex = durationUnits.findIndex(([name]) => name === unit);
    if (unitIndex <= lastUnitIndex) return undefined; // units must go from largest to smallest, each once
    lastUnitIndex = unitIndex;
    total += Number(digits) * durationUnits[unitIndex]![1];
  }
  return Number.isSafeInteger(total) ? total : undefined;
}

/** `512KB`, `2MB`, `1GB`, `100B`, `4096` or `0` -> bytes (KB = 1024); undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+)\s*([A-Za-z]*)$/.exec(text);
  if (match === null) return undefined;
  const [, digits, unitText] = match;
  const unit = unitText === '' ? 'B' : unitText!.toUpperCase();
  const multiplier = sizeUnits.find(([name]) => name === unit)?.[1];
  if (multiplier === undefined) return undefined;
  const bytes = Number(digits) * multiplier;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Milliseconds written the way the conf file accepts them, in the largest exact unit (`90000` -> `90s`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  const unit = durationUnits.find(([, size]) => ms % size === 0) ?? durationUnits[durationUnits.length - 1]!;
  return `${ms / unit[1]}${unit[0]}`;
}

/** Bytes written the way the conf file accepts them, in the largest exact unit (`2097152` -> `2MB`). */
export function formatSize(bytes: number): string {
  if (bytes === 0) return '0';
  const unit = sizeUnits.find(([, size]) => bytes % size === 0)!;
  return unit[0] === 'B' ? `${bytes}` : `${bytes / unit[1]}${unit[0]}`;
}

const trueWords = ['yes', 'true', 'on'];
const falseWords = ['no', 'false', 'off'];

/** What a key of this spec accepts, in words, for error messages and docs. */
export function describeSpec(spec: KeySpec): string {
  switch (spec.kind) {
    case 'string':
      return spec.allowEmpty === true ? 'a string (may be empty)' : 'a non-empty string';
    case 'path':
      return spec.allowEmpty === true ? 'a file path (may be empty)' : 'a non-empty file path';
    case 'integer':
      return `an integer from ${spec.min} to ${spec.max}`;
    case 'port':
      return 'a port number from 0 to 65535';
    case 'bool':
      return 'yes/no (or true/false, on/off)';
    case 'enum':
      return `one of ${spec.values.join(', ')}`;
    case 'duration':
      return `a duration (like 500ms, 5s, 1m, 24h, 7d; 0) from ${formatDuration(spec.min)} to ${formatDuration(spec.max)}`;
    case 'size':
      return `a size (like 512KB, 2MB, 1GB, or bytes; KB = 1024) from ${formatSize(spec.min)} to ${formatSize(spec.max)}`;
  }
}

function inRange(value: number, spec: { readonly min: number; readonly max: number }): boolean {
  return value >= spec.min && value <= spec.max;
}

function parseNumberKind(spec: IntegerSpec | PortSpec | DurationSpec | SizeSpec, raw: string | number): number | undefined {
  if (typeof raw === 'number') return Number.isSafeInteger(raw) ? raw : undefined;
  switch (spec.kind) {
    case 'integer':
    case 'port':
      return /^-?\d+$/.test(raw) && Number.isSafeInteger(Number(raw)) ? Number(raw) : undefined;
    case 'duration':
      return parseDuration(raw);
    case 'size':
      return parseSize(raw);
  }
}

/**
 * Parses and checks one raw value against its key's spec. Strings are the
 * conf syntax; numbers (ms, bytes, plain) and booleans are accepted for the
 * matching kinds, as tests pass them. Paths are returned unresolved.
 */
export function parseValue(spec: KeySpec, raw: ConfigValue): ParseResult {
  const expected = describeSpec(spec);
  if (spec.kind === 'bool') {
    if (typeof raw === 'boolean') return ok(raw);
    const word = String(raw).toLowerCase();
    if (trueWords.includes(word)) return ok(true);
    if (falseWords.includes(word)) return ok(false);
    return bad(expected);
  }
  if (typeof raw === 'boolean') return bad(expected);
  switch (spec.kind) {
    case 'string':
    case 'path': {
      if (typeof raw !== 'string') return bad(expected);
      if (raw === '' && spec.allowEmpty !== true) return bad(expected);
      if (raw.includes('\0')) return bad(`${expected} without NUL characters`);
      const problem = spec.kind === 'string' && raw !== '' ? spec.check?.(raw) : undefined;
      return problem === undefined ? ok(raw) : bad(problem);
    }
    case 'enum':
      return typeof raw === 'string' && spec.values.includes(raw) ? ok(raw) : bad(expected);
    case 'port': {
      const port = parseNumberKind(spec, raw);
      return port !== undefined && port >= 0 && port <= 65535 ? ok(port) : bad(expected);
    }
    case 'integer':
    case 'duration':
    case 'size': {
      const value = parseNumberKind(spec, raw);
      if (value === undefined || !inRange(value, spec)) return bad(expected);
      const problem = spec.kind === 'integer' ? spec.check?.(value) : undefined;
      return problem === undefined ? ok(value) : bad(`${expected}, and ${problem}`);
    }
  }
}

// ---------------------------------------------------------------------------
// Pure assembly: sources -> one validated, frozen Config

/** One value from one source, before validation. */
export interface Setting {
  /** The key as the source wrote it (may be unknown). */
  readonly key: string;
  readonly raw: ConfigValue;
  /** `file:line`, `env IORIO_X`, `flag --x`, `override`. */
  readonly source: string;
}

/** The conf file's entries as settings. */
export function fileSettings(text: string, fileName: string): Setting[] {
  return parseConfigText(text, fileName).map(({ key, value, line }) => ({ key, raw: value, source: `${fileName}:${line}` }));
}

/**
 * The environment's IORIO_* variables that are config keys, as settings.
 * Other IORIO_* names are skipped here and reported by envWarnings: a shell
 * carries unrelated variables, and a node that refuses to start for them is
 * hostile (DESIGN §7).
 */
export function envSettings(env: Readonly<Record<string, string | undefined>>): Setting[] {
  const settings: Setting[] = [];
  for (const name of Object.keys(env).sort()) {
    const raw = env[name];
    const key = keyByEnvName.get(name);
    const extension = /^IORIO_EXTENSION_(CONFIG|MODULE)_([A-Z0-9_]+)$/.exec(name);
    if (raw !== undefined && key === undefined && extension !== null) {
      settings.push({ key: `extension.${extension[1]!.toLowerCase()}.${extension[2]!.toLowerCase()}`, raw, source: `env ${name}` });
      continue;
    }
    if (raw === undefined || key === undefined) continue;
    settings.push({ key, raw, source: `env ${name}` });
  }
  return settings;
}

/**
 * One warning per IORIO_* variable that is neither a config key nor one of
 * the tools' own (envAllowList), with the nearest key when one is close, so
 * a misspelt override is never silently ignored. Pure.
 */
export function envWarnings(env: Readonly<Record<string, string | undefined>>): string[] {
  const warnings: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith(envPrefix) || env[name] === undefined || envAllowList.includes(name) || keyByEnvName.has(name) || /^IORIO_EXTENSION_(CONFIG|MODULE)_[A-Z0-9_]+$/.test(name)) continue;
    const guess = closestKey(name.slice(envPrefix.length).toLowerCase().replaceAll('_', '.'));
    const hint = guess === undefined ? '' : `; did you mean ${envNameOf(guess)}?`;
    warnings.push(`ignoring the environment variable ${name}: not a configuration key${hint}`);
  }
  return warnings;
}

/** Command-line flags (`--http.port 8081` arrives as `{'http.port': '8081'}`) as settings. */
export function flagSettings(flags: Readonly<Record<string, string>>): Setting[] {
  return Object.entries(flags).map(([key, raw]) => ({ key, raw, source: `flag --${key}` }));
}

/** Settings for testConfig: typed values allowed. */
function overrideSettings(overrides: Readonly<Record<string, ConfigValue | undefined>>): Setting[] {
  return Object.entries(overrides)
    .filter((entry): entry is [string, ConfigValue] => entry[1] !== undefined)
    .map(([key, raw]) => ({ key, raw, source: 'override' }));
}

function editDistance(source: string, target: string): number {
  let previous = Array.from({ length: target.length + 1 }, (_, index) => index);
  for (let i = 1; i <= source.length; i++) {
    const current = [i];
    for (let j = 1; j <= target.length; j++) {
      const substitution = previous[j - 1]! + (source[i - 1] === target[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[target.length]!;
}

/** The known key nearest to a misspelt one, if any is close. */
function closestKey(key: string): ConfigKey | undefined {
  let best: ConfigKey | undefined;
  let bestDistance = 4;
  for (const candidate of configKeys) {
    const distance = editDistance(key, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function unknownKeyError(setting: Setting): ConfigError {
  const guess = closestKey(setting.key);
  const hint = guess === undefined ? '' : `; did you mean ${guess}?`;
  return new ConfigError(setting.key, setting.source, `unknown configuration key "${setting.key}" (from ${setting.source})${hint}`);
}

function badValueError(key: ConfigKey, source: string, raw: ConfigValue, expected: string): ConfigError {
  const spec = specOf(key);
  const shown = spec.kind === 'string' && spec.secret === true ? '(hidden)' : JSON.stringify(raw);
  return new ConfigError(key, source, `bad value for ${key} (from ${source}): expected ${expected}, got ${shown}`);
}

interface Resolved {
  readonly values: Record<ConfigKey, ConfigValue>;
  readonly sources: Record<ConfigKey, string>;
  /** extension.config.<name> and extension.module.<name> values, unresolved, by kind then name. */
  readonly extensions: { readonly config: Record<string, string>; readonly module: Record<string, string> };
}

/** A fact that spans keys; returns the offending keys and why, or undefined when it holds. */
type CrossCheck = (config: Config) => { keys: readonly ConfigKey[]; problem: string } | undefined;

const secretBytesMinByAlgorithm = { HS256: 32, HS384: 48, HS512: 64 } as const;

const crossChecks: readonly CrossCheck[] = [
  (config) =>
    config['https.enabled'] && (config['https.cert'] === '' || config['https.key'] === '')
      ? { keys: ['https.enabled', 'https.cert', 'https.key'], problem: 'https.enabled = yes needs both https.cert and https.key' }
      : undefined,
  (config) =>
    config['https.enabled'] && config['https.port'] !== 0 && config['https.port'] === config['http.port']
      ? { keys: ['https.port', 'http.port'], problem: `https.port and http.port are both ${config['http.port']}` }
      : undefined,
  (config) => {
    const minimum = secretBytesMinByAlgorithm[config['auth.algorithm']];
    const bytes = Buffer.byteLength(config['auth.secret'], 'utf8');
    return bytes > 0 && bytes < minimum
      ? {
          keys: ['auth.secret', 'auth.algorithm'],
          problem: `auth.secret must be at least ${minimum} bytes for ${config['auth.algorithm']} (RFC 7518 §3.2), or empty to generate one; it is ${bytes}`,
        }
      : undefined;
  },
  (config) =>
    !config['http.enabled'] && !config['https.enabled']
      ? { keys: ['http.enabled', 'https.enabled'], problem: 'http.enabled = no needs https.enabled = yes: the node would serve nothing' }
      : undefined,
  (config) => {
    const n = config['request.n'];
    const w = config['request.w'];
    const majority = majorityOf(n);
    if (w === 0) return undefined;
    if (w < majority) {
      return {
        keys: ['request.w', 'request.n'],
        problem: `request.w = ${w} is below a majority of request.n = ${n} (${majority}): two sides of a partition could each acknowledge writes the other never sees, and a failover would lose them; use ${majority}${majority < n ? ` to ${n}` : ''}, or 0 for a majority`,
      };
    }
    return w > n ? { keys: ['request.w', 'request.n'], problem: `request.w = ${w} is more than request.n = ${n} replicas` } : undefined;
  },
  (config) =>
    config['auth.admin.username'] === config['auth.anonymous.username']
      ? { keys: ['auth.admin.username', 'auth.anonymous.username'], problem: 'the admin and anonymous users must differ' }
      : undefined,
];

function applySettings(resolved: Resolved, settings: readonly Setting[]): void {
  for (const setting of settings) {
    const extension = extensionKeyPattern.exec(setting.key);
    if (extension !== null) {
      if (typeof setting.raw !== 'string' || setting.raw === '' || setting.raw.includes('\0')) {
        throw new ConfigError(setting.key, setting.source, `bad value for ${setting.key} (from ${setting.source}): expected a file path`);
      }
      resolved.extensions[extension[1] as 'config' | 'module'][extension[2]!] = setting.raw;
      continue;
    }
    if (!isConfigKey(setting.key)) throw unknownKeyError(setting);
    const result = parseValue(specOf(setting.key), setting.raw);
    if (!result.ok) throw badValueError(setting.key, setting.source, setting.raw, result.expected);
    resolved.values[setting.key] = result.value;
    resolved.sources[setting.key] = setting.source;
  }
}

function defaults(): Resolved {
  const values = {} as Record<ConfigKey, ConfigValue>;
  const sources = {} as Record<ConfigKey, string>;
  for (const key of configKeys) {
    const result = parseValue(specOf(key), configSpec[key].default);
    if (!result.ok) throw new Error(`assertion failed: the default of ${key} is invalid: ${result.expected}`);
    values[key] = result.value;
    sources[key] = 'default';
  }
  return { values, sources, extensions: { config: {}, module: {} } };
}

/**
 * Builds the Config from settings applied in order (later wins) over the
 * defaults; paths resolve against `cwd`. Pure: throws ConfigError on the
 * first unknown key, bad value or broken cross-key fact.
 */
export function buildConfig(settings: readonly Setting[], cwd: string): Config {
  const resolved = defaults();
  applySettings(resolved, settings);
  for (const key of configKeys) {
    const value = resolved.values[key];
    if (specOf(key).kind === 'path' && value !== '') resolved.values[key] = resolvePath(cwd, value as string);
  }
  const unfrozen: Record<string, unknown> = { ...resolved.values };
  for (const kind of ['config', 'module'] as const) {
    const paths: Record<string, string> = {};
    for (const [name, path] of Object.entries(resolved.extensions[kind])) paths[name] = resolvePath(cwd, path);
    Object.defineProperty(unfrozen, `extension.${kind}`, { value: Object.freeze(paths), enumerable: false });
  }
  const config = Object.freeze(unfrozen) as Config;
  for (const check of crossChecks) {
    const failure = check(config);
    if (failure === undefined) continue;
    const where = failure.keys.map((key) => `${key} from ${resolved.sources[key]}`).join(', ');
    throw new ConfigError(failure.keys[0], resolved.sources[failure.keys[0]!], `bad configuration: ${failure.problem} (${where})`);
  }
  return config;
}

// ---------------------------------------------------------------------------
// Effects

export interface LoadConfigOptions {
  /** Conf file to read; none: built-in defaults (plus env and flags). */
  readonly file?: string;
  /** Environment to take IORIO_* overrides from; default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** `--key value` flags, keyed by the dotted key without dashes. */
  readonly flags?: Readonly<Record<string, string>>;
  /** Directory relative paths resolve against; default process.cwd(). */
  readonly cwd?: string;
  /** Told each unknown IORIO_* variable (envWarnings); default: not told. */
  readonly warn?: (message: string) => void;
}

/** Reads the conf file, env and flags and returns the validated, frozen Config. Throws ConfigError. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const settings: Setting[] = [];
  if (options.file !== undefined) settings.push(...fileSettings(readConfFile(options.file), options.file));
  const env = options.env ?? process.env;
  for (const warning of envWarnings(env)) options.warn?.(warning);
  settings.push(...envSettings(env));
  settings.push(...flagSettings(options.flags ?? {}));
  return buildConfig(settings, options.cwd ?? process.cwd());
}

function readConfFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(undefined, file, `cannot read configuration file ${file}: ${reason}`);
  }
}

/**
 * Defaults plus overrides, validated like any other source, for tests.
 * Numbers are ms for durations and bytes for sizes; paths resolve against
 * the working directory.
 */
export function testConfig(overrides: ConfigOverrides = {}): Config {
  return buildConfig(overrideSettings(overrides), process.cwd());
}
