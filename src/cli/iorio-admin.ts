import { resourcePermissions, type Permission } from '../auth/types.js';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { nodeUrlOf } from './node-url.js';

/**
 * `iorio-admin [options] <command>`: administers a node through its HTTP API.
 *
 * The node's URL is `--url`, else the one the running node recorded in
 * `<paths.data>/iorio.url`, else `http://<http.host>:<http.port>` from the
 * config. Credentials are `-u`/`-p`, else IORIO_ADMIN_USER /
 * IORIO_ADMIN_PASSWORD, else the config's auth.admin.username / password
 * (each of the two resolved on its own). Commands that need them log in with
 * POST /sessions and send the token as `x-session`.
 *
 * Exit codes: 0 done, 1 the node answered with an error (or could not be
 * reached), 2 usage errors, and commands this build does not have.
 *
 * This build runs one node: member-status, ring-status and ringready report
 * that node as the whole cluster (which it is); the `cluster` commands and
 * `verify` need clustering and replication, and say so instead of pretending.
 */

export const usage = `usage: iorio-admin [-c config-file] [--<key> <value> ...] [--url http://host:port]
                   [-u user] [-p password] [--json] <command>

commands:
  user add <name> <password>        create a user
  user passwd <name> <password>     change a user's password
  user del <name>                   delete a user
  user list                         list the users
  user revoke-sessions <name>       end every session of a user (its tokens stop working)
  grant <permission>[,<permission>...] on <bucket>[/<stream>] to <user>|group:<group>
  revoke <permission>[,<permission>...] on <bucket>[/<stream>] from <user>|group:<group>
                                    permissions: ${resourcePermissions.join(', ')}
  access <bucket>[/<stream>]        list the grants on a bucket or a stream
  status                            the node's ping answer and counters
  member-status                     the cluster's members (Riak's table)
  ring-status                       ring size, ownership, pending transfers
  ringready                         whether every member agrees on the ring
  cluster <join|leave|plan|commit|clear|force-remove|replace> ...
                                    (not available in this build)

options:
  -c, --config <file>  the node's configuration file (its paths.data, http.host, http.port, ring.size, auth.admin.*)
  --<key> <value>      override a config key, as for iorio: --paths.data /var/lib/iorio
  --url <url>          the node's HTTP URL (default: <paths.data>/iorio.url, else http.host:http.port)
  -u, --user <name>    admin user (default: $IORIO_ADMIN_USER, else auth.admin.username)
  -p, --password <pw>  its password (default: $IORIO_ADMIN_PASSWORD, else auth.admin.password)
  --json               print the node's JSON answers instead of text
  --                   everything after it is a command argument (a password starting with -)

exit status: 0 done, 1 the node refused or could not be reached, 2 usage error`;

/** Bound on every HTTP request the command makes. */
const requestTimeoutMs = 30_000;
/** Longest error body quoted when it is not Iorio's `{type, reason}`. */
const errorTextCharsMax = 200;
/** Riak's console width: banners and rules are this many characters. */
const consoleWidthChars = 79;

export const clusterSubcommands = ['join', 'leave', 'plan', 'commit', 'clear', 'force-remove', 'replace'] as const;
export const clusterUnavailableMessage = 'cluster commands are not available in this build: clustering is not implemented yet';
export const verifyUnavailableMessage = 'verify is not available in this build: replication is not implemented yet';

/** Where the command writes, and the environment it reads (tests pass their own). */
export interface AdminIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
}

export class UsageError extends Error {}

// ---------------------------------------------------------------------------
// Arguments (pure)

export interface AdminArguments {
  positionals: string[];
  file: string | undefined;
  /** Config key overrides. */
  flags: Record<string, string>;
  url: string | undefined;
  user: string | undefined;
  password: string | undefined;
  json: boolean;
  help: boolean;
}

/** Options with a value that are iorio-admin's own, not config keys. */
const valueOptions: Readonly<Record<string, 'file' | 'url' | 'user' | 'password'>> = {
  '-c': 'file',
  '--config': 'file',
  '--url': 'url',
  '-u': 'user',
  '--user': 'user',
  '-p': 'password',
  '--password': 'password',
};

/** Parses options anywhere on the line; the rest are the command and its arguments. Throws UsageError. */
export function parseAdminArguments(argv: readonly string[]): AdminArguments {
  const parsed: AdminArguments = {
    positionals: [],
    file: undefined,
    flags: {},
    url: undefined,
    user: undefined,
    password: undefined,
    json: false,
    help: false,
  };
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index]!;
    if (argument === '--') {
      parsed.positionals.push(...argv.slice(index + 1));
      break;
    }
    const equals = argument.startsWith('--') ? argument.indexOf('=') : -1;
    const name = equals === -1 ? argument : argument.slice(0, equals);
    const inlineValue = equals === -1 ? undefined : argument.slice(equals + 1);
    const option = valueOptions[name];
    if (argument === '--json') {
      parsed.json = true;
    } else if (argument === '-h' || argument === '--help') {
      parsed.help = true;
    } else if (option !== undefined || name.startsWith('--')) {
      let value = inlineValue;
      if (value === undefined) {
        value = argv[index + 1];
        if (value === undefined) throw new UsageError(`${name} needs a value`);
        index += 1;
      }
      if (option === undefined) parsed.flags[name.slice(2)] = value;
      else parsed[option] = value;
    } else if (argument.startsWith('-') && argument.length > 1) {
      throw new UsageError(`unknown option "${argument}"`);
    } else {
      parsed.positionals.push(argument);
    }
  }
  return parsed;
}

export type GrantTarget = { readonly username: string } | { readonly group: string };

export type AdminCommand =
  | { readonly kind: 'user-add' | 'user-passwd'; readonly username: string; readonly password: string }
  | { readonly kind: 'user-del' | 'user-revoke-sessions'; readonly username: string }
  | { readonly kind: 'user-list' | 'status' | 'member-status' | 'ring-status' | 'ringready' }
  | {
      readonly kind: 'grant' | 'revoke';
      readonly permissions: readonly Permission[];
      readonly bucket: string;
      readonly stream: string | undefined;
      readonly target: GrantTarget;
    }
  | { readonly kind: 'access'; readonly bucket: string; readonly stream: string | undefined }
  /** A command this build does not have: print the message, exit 2. */
  | { readonly kind: 'unavailable'; readonly message: string };

/** The command line's words -> one command. Pure; throws UsageError. */
export function parseCommand(words: readonly string[]): AdminCommand {
  const [command, ...rest] = words;
  switch (command) {
    case 'user':
      return parseUserCommand(rest);
    case 'grant':
    case 'revoke':
      return parseGrantCommand(command, rest);
    case 'access': {
      expectCount('access <bucket>[/<stream>]', rest, 1);
      return { kind: 'access', ...parseResource(rest[0]!) };
    }
    case 'status':
    case 'member-status':
    case 'ring-status':
    case 'ringready':
      expectCount(command, rest, 0);
      return { kind: command };
    case 'cluster': {
      const subcommand = rest[0];
      if (subcommand === undefined || !(clusterSubcommands as readonly string[]).includes(subcommand)) {
        throw new UsageError(`cluster needs one of ${clusterSubcommands.join(', ')}`);
      }
      return { kind: 'unavailable', message: clusterUnavailableMessage };
    }
    case 'verify':
      return { kind: 'unavailable', message: verifyUnavailableMessage };
    case undefined:
      throw new UsageError('no command given');
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

function parseUserCommand(words: readonly string[]): AdminCommand {
  const [subcommand, ...rest] = words;
  switch (subcommand) {
    case 'add':
    case 'passwd':
      expectCount(`user ${subcommand} <name> <password>`, rest, 2);
      return { kind: subcommand === 'add' ? 'user-add' : 'user-passwd', username: rest[0]!, password: rest[1]! };
    case 'del':
      expectCount('user del <name>', rest, 1);
      return { kind: 'user-del', username: rest[0]! };
    case 'list':
      expectCount('user list', rest, 0);
      return { kind: 'user-list' };
    case 'revoke-sessions':
      expectCount('user revoke-sessions <name>', rest, 1);
      return { kind: 'user-revoke-sessions', username: rest[0]! };
    default:
      throw new UsageError(
        subcommand === undefined ? 'user needs add, passwd, del, list or revoke-sessions' : `unknown user command "${subcommand}"`,
      );
  }
}

/** `<permissions> on <bucket>[/<stream>] to|from <user>|group:<group>`. */
function parseGrantCommand(kind: 'grant' | 'revoke', words: readonly string[]): AdminCommand {
  const preposition = kind === 'grant' ? 'to' : 'from';
  const form = `${kind} <permission>[,<permission>...] on <bucket>[/<stream>] ${preposition} <user>|group:<group>`;
  if (words.length !== 5 || words[1] !== 'on' || words[3] !== preposition) throw new UsageError(`expected: ${form}`);
  const permissions = words[0]!.split(',');
  for (const permission of permissions) {
    if (!resourcePermissions.includes(permission as Permission)) {
      throw new UsageError(`unknown permission "${permission}": the permissions are ${resourcePermissions.join(', ')}`);
    }
  }
  return { kind, permissions: [...new Set(permissions)] as Permission[], ...parseResource(words[2]!), target: parseTarget(words[4]!) };
}

function parseResource(word: string): { bucket: string; stream: string | undefined } {
  const slash = word.indexOf('/');
  const bucket = slash === -1 ? word : word.slice(0, slash);
  const stream = slash === -1 ? undefined : word.slice(slash + 1);
  if (bucket === '' || stream === '') throw new UsageError(`"${word}" is not <bucket> or <bucket>/<stream>`);
  return { bucket, stream };
}

function parseTarget(word: string): GrantTarget {
  if (!word.startsWith('group:')) return { username: word };
  const group = word.slice('group:'.length);
  if (group === '') throw new UsageError('group: needs a group name, e.g. group:g-authenticated');
  return { group };
}

function expectCount(form: string, words: readonly string[], count: number): void {
  if (words.length !== count) throw new UsageError(`expected: ${form}`);
}

// ---------------------------------------------------------------------------
// Where and who

/** The node's URL: --url, else what the running node recorded, else the configured address. */
/** The node to talk to: `--url`, else where the running node says it answers (cli/node-url.ts). */
export function adminUrlOf(config: Config, explicitUrl: string | undefined): string {
  return checkedUrl(explicitUrl ?? nodeUrlOf(config));
}

function checkedUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`"${text}" is not a URL like http://127.0.0.1:8080`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`"${text}" is not an http or https URL`);
  return text.replace(/\/+$/, '');
}

export interface Credentials {
  username: string;
  password: string;
}

/** Each of user and password: the flag, else the environment (when not empty), else the config. */
export function credentialsOf(config: Config, parsed: AdminArguments, env: AdminIo['env']): Credentials {
  const fromEnv = (name: string) => {
    const value = env[name];
    return value === undefined || value === '' ? undefined : value;
  };
  return {
    username: parsed.user ?? fromEnv('IORIO_ADMIN_USER') ?? config['auth.admin.username'],
    password: parsed.password ?? fromEnv('IORIO_ADMIN_PASSWORD') ?? config['auth.admin.password'],
  };
}

// ---------------------------------------------------------------------------
// The node's HTTP API

/** The node answered with an error status. */
export class AnswerError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly reason: string,
  ) {
    super(`${status} ${type}: ${reason}`);
  }
}

/** The node could not be reached, or its answer was not JSON. */
export class ReachError extends Error {}

/** A minimal client: JSON in and out, one login on first use. */
class AdminClient {
  private token: string | undefined;

  constructor(
    readonly url: string,
    private readonly credentials: Credentials,
  ) {}

  /** An authenticated request. */
  async call(method: string, path: string, body?: unknown): Promise<unknown> {
    this.token ??= await this.login();
    return this.send(method, path, body, { 'x-session': this.token });
  }

  /** A request without credentials (GET /ping). */
  callAnonymous(method: string, path: string): Promise<unknown> {
    return this.send(method, path, undefined, {});
  }

  private async login(): Promise<string> {
    const answer = (await this.send('POST', '/sessions', this.credentials, {})) as { token?: unknown };
    if (typeof answer.token !== 'string') throw new ReachError(`${this.url}/sessions answered without a token`);
    return answer.token;
  }

  private async send(method: string, path: string, body: unknown, headers: Record<string, string>): Promise<unknown> {
    const target = `${this.url}${path}`;
    let response: Response;
    let text: string;
    try {
      response = await fetch(target, {
        method,
        headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(requestTimeoutMs),
      });
      text = await response.text();
    } catch (error) {
      throw new ReachError(`cannot reach ${target}: ${reachReasonOf(error)}`);
    }
    const parsed = parseJson(text);
    if (!response.ok) throw answerErrorOf(response, parsed, text);
    if (parsed === undefined) throw new ReachError(`${target} answered ${response.status} with a body that is not JSON`);
    return parsed.value;
  }
}

function reachReasonOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'TimeoutError') return `no answer within ${requestTimeoutMs / 1000} s`;
  // fetch's "fetch failed" hides the useful part (ECONNREFUSED...) in its cause.
  const cause = (error as Error & { cause?: unknown }).cause;
  return cause instanceof Error ? cause.message : error.message;
}

function parseJson(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

function answerErrorOf(response: Response, parsed: { value: unknown } | undefined, text: string): AnswerError {
  const body = parsed?.value;
  if (body !== null && typeof body === 'object' && typeof (body as { type?: unknown }).type === 'string') {
    const { type, reason } = body as { type: string; reason?: unknown };
    return new AnswerError(response.status, type, typeof reason === 'string' ? reason : '');
  }
  const quoted = text.length > errorTextCharsMax ? `${text.slice(0, errorTextCharsMax)}...` : text;
  return new AnswerError(response.status, response.statusText || 'error', quoted);
}

// ---------------------------------------------------------------------------
// Running a command

/** Runs one `iorio-admin` command line; resolves to the process exit code. */
export async function runAdmin(argv: readonly string[], io: AdminIo): Promise<number> {
  let parsed: AdminArguments;
  let command: AdminCommand;
  let config: Config;
  let url: string;
  try {
    parsed = parseAdminArguments(argv);
    if (parsed.help) {
      io.stdout(`${usage}\n`);
      return 0;
    }
    command = parseCommand(parsed.positionals);
    if (command.kind === 'unavailable') {
      io.stderr(`iorio-admin: ${command.message}\n`);
      return 2;
    }
    config = loadConfig({ ...(parsed.file === undefined ? {} : { file: parsed.file }), env: io.env, flags: parsed.flags });
    url = adminUrlOf(config, parsed.url);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`iorio-admin: ${error.message}\n${usage}\n`);
      return 2;
    }
    if (error instanceof ConfigError) {
      io.stderr(`iorio-admin: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const client = new AdminClient(url, credentialsOf(config, parsed, io.env));
  try {
    const output = await execute(command, client, config);
    io.stdout(`${parsed.json ? JSON.stringify(output.json) : output.text}\n`);
    return 0;
  } catch (error) {
    if (error instanceof AnswerError || error instanceof ReachError) {
      io.stderr(`iorio-admin: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

/** What a command prints: text by default, the node's JSON with --json. */
interface CommandOutput {
  text: string;
  json: unknown;
}

async function execute(command: Exclude<AdminCommand, { kind: 'unavailable' }>, client: AdminClient, config: Config): Promise<CommandOutput> {
  switch (command.kind) {
    case 'user-add': {
      const json = await client.call('POST', '/users', { username: command.username, password: command.password });
      return { text: `user ${command.username} added`, json };
    }
    case 'user-passwd': {
      const json = await client.call('PUT', `/users/${encodeURIComponent(command.username)}`, { password: command.password });
      return { text: `password of ${command.username} changed`, json };
    }
    case 'user-del': {
      const json = await client.call('DELETE', `/users/${encodeURIComponent(command.username)}`);
      return { text: `user ${command.username} deleted`, json };
    }
    case 'user-revoke-sessions': {
      const json = await client.call('DELETE', `/sessions/${encodeURIComponent(command.username)}`);
      return { text: `sessions of ${command.username} ended`, json };
    }
    case 'user-list': {
      const json = await client.call('GET', '/users');
      return { text: formatUsers(json as { username: string }[]), json };
    }
    case 'grant':
    case 'revoke':
      return changeAccess(command, client);
    case 'access': {
      const json = await client.call('GET', accessPath(command.bucket, command.stream));
      return { text: formatAccess(resourceName(command.bucket, command.stream), json as AccessAnswer), json };
    }
    case 'status': {
      const ping = (await client.callAnonymous('GET', '/ping')) as PingAnswer;
      const stats = await client.call('GET', '/stats');
      return { text: formatStatus(client.url, ping, stats as StatsAnswer), json: { ping, stats } };
    }
    case 'member-status': {
      const ping = (await client.callAnonymous('GET', '/ping')) as PingAnswer;
      return { text: formatMemberStatus(ping.node), json: memberStatusJson(ping.node) };
    }
    case 'ring-status': {
      const ping = (await client.callAnonymous('GET', '/ping')) as PingAnswer;
      const ringSize = config['ring.size'];
      return { text: formatRingStatus(ping.node, ringSize), json: ringStatusJson(ping.node, ringSize) };
    }
    case 'ringready': {
      const ping = (await client.callAnonymous('GET', '/ping')) as PingAnswer;
      return { text: `TRUE All nodes agree on the ring ['${ping.node}']`, json: { ready: true, nodes: [ping.node] } };
    }
  }
}

/** One POST /access per permission; stops at the first refusal (the earlier ones stay applied, and are reported). */
async function changeAccess(command: Extract<AdminCommand, { kind: 'grant' | 'revoke' }>, client: AdminClient): Promise<CommandOutput> {
  const resource = resourceName(command.bucket, command.stream);
  const target = 'group' in command.target ? `group ${command.target.group}` : `user ${command.target.username}`;
  const answers: unknown[] = [];
  for (const [index, permission] of command.permissions.entries()) {
    try {
      answers.push(await client.call('POST', accessPath(command.bucket, command.stream), { ...command.target, permission, action: command.kind }));
    } catch (error) {
      if (index > 0 && error instanceof AnswerError) {
        const done = command.permissions.slice(0, index).join(',');
        throw new AnswerError(error.status, error.type, `${error.reason} (${command.kind} ${done} on ${resource} was applied before this)`);
      }
      throw error;
    }
  }
  const verb = command.kind === 'grant' ? 'granted' : 'revoked';
  const preposition = command.kind === 'grant' ? 'to' : 'from';
  return { text: `${verb} ${command.permissions.join(',')} on ${resource} ${preposition} ${target}`, json: answers.length === 1 ? answers[0] : answers };
}

function accessPath(bucket: string, stream: string | undefined): string {
  return `/access/${encodeURIComponent(bucket)}${stream === undefined ? '' : `/${encodeURIComponent(stream)}`}`;
}

function resourceName(bucket: string, stream: string | undefined): string {
  return stream === undefined ? bucket : `${bucket}/${stream}`;
}

// ---------------------------------------------------------------------------
// Output (pure)

interface PingAnswer {
  pong: string;
  node: string;
}

interface AccessAnswer {
  users: { username: string; permissions: string[] }[];
  groups: { groupname: string; permissions: string[] }[];
}

interface StatsAnswer {
  node?: string;
  uptime_ms?: number;
  http?: Record<string, unknown> & { responses?: Record<string, number> };
  store?: Record<string, number>;
  memory?: Record<string, number>;
}

export function formatUsers(users: readonly { username: string }[]): string {
  if (users.length === 0) return '(no users)';
  return users
    .map((user) => user.username)
    .sort()
    .join('\n');
}

export function formatAccess(resource: string, access: AccessAnswer): string {
  const lines = [`access to ${resource}`];
  const section = (title: string, rows: { name: string; permissions: string[] }[]) => {
    lines.push(`${title}:`);
    if (rows.length === 0) lines.push('  (none)');
    const width = Math.max(0, ...rows.map((row) => row.name.length));
    for (const row of [...rows].sort((a, b) => a.name.localeCompare(b.name))) {
      lines.push(`  ${row.name.padEnd(width)}  ${row.permissions.join(', ')}`);
    }
  };
  section('users', access.users.map((user) => ({ name: user.username, permissions: user.permissions })));
  section('groups', access.groups.map((group) => ({ name: group.groupname, permissions: group.permissions })));
  return lines.join('\n');
}

export function formatStatus(url: string, ping: PingAnswer, stats: StatsAnswer): string {
  const http = stats.http ?? {};
  const responses = http.responses ?? {};
  const store = stats.store ?? {};
  const memory = stats.memory ?? {};
  const count = (value: unknown) => (typeof value === 'number' ? String(value) : '?');
  const responseClasses = ['2xx', '4xx', '5xx'].map((statusClass) => `${statusClass} ${count(responses[statusClass])}`).join(', ');
  const rows: [string, string][] = [
    ['node', ping.node],
    ['url', url],
    ['ping', `pong (partition ${ping.pong})`],
    ['uptime', typeof stats.uptime_ms === 'number' ? formatDuration(stats.uptime_ms) : '?'],
    ['requests', `${count(http['requests'])} (${responseClasses}; rate-limited ${count(http['rateLimited'])})`],
    ['appends', `${count(http['appends'])} requests, ${count(http['appendedEntries'])} entries, ${count(http['conflicts'])} conflicts`],
    ['reads', `${count(http['reads'])} requests, ${count(http['readEntries'])} entries`],
    ['store', `${count(store['openStreams'])} open streams, ${count(store['openFiles'])} open files, ${formatBytes(store['appendBytes'])} appended`],
    ['disk', `${count(store['logFlushes'])} log flushes, ${count(store['checkpoints'])} checkpoints, ${count(store['readsFromDisk'])} reads from disk`],
    ['evicted', `${count(store['evictedChunks'])} chunks, ${formatBytes(store['evictedBytes'])}`],
    ['memory', `rss ${formatBytes(memory['rss'])}, heap ${formatBytes(memory['heapUsed'])} of ${formatBytes(memory['heapTotal'])}`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 1;
  return rows.map(([label, value]) => `${`${label}:`.padEnd(width)}  ${value}`).join('\n');
}

export function formatBytes(bytes: number | undefined): string {
  if (typeof bytes !== 'number') return '?';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const parts: string[] = [];
  const days = Math.floor(seconds / 86_400);
  const hours = Math.floor((seconds % 86_400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  if (days > 0) parts.push(`${days}d`);
  if (days > 0 || hours > 0) parts.push(`${hours}h`);
  if (days > 0 || hours > 0 || minutes > 0) parts.push(`${minutes}m`);
  parts.push(`${seconds % 60}s`);
  return parts.join(' ');
}

/** Riak's section banner: the title centred in `=`, extra padding on the right (Erlang's string:centre). */
export function banner(title: string): string {
  const padded = ` ${title} `;
  const left = Math.floor((consoleWidthChars - padded.length) / 2);
  return `${'='.repeat(left)}${padded}${'='.repeat(consoleWidthChars - padded.length - left)}`;
}

const rule = '-'.repeat(consoleWidthChars);

/** Riak's `member-status` for a cluster of one: the node is valid, owns the whole ring, nothing pending. */
export function formatMemberStatus(node: string): string {
  return [
    banner('Membership'),
    'Status     Ring    Pending    Node',
    rule,
    `${'valid'.padEnd(8)}  ${(100).toFixed(1).padStart(5)}%      --      '${node}'`,
    rule,
    'Valid:1 / Leaving:0 / Exiting:0 / Joining:0 / Down:0',
  ].join('\n');
}

function memberStatusJson(node: string): unknown {
  return {
    members: [{ node, status: 'valid', ring_percent: 100, pending_percent: null }],
    valid: 1,
    leaving: 0,
    exiting: 0,
    joining: 0,
    down: 0,
  };
}

/** Riak's `ring-status` sections for a cluster of one, with the ring's size and ownership. */
export function formatRingStatus(node: string, ringSize: number): string {
  const ownerColumnChars = Math.max('Node'.length, node.length + 2);
  const owned = `${ringSize} of ${ringSize}`;
  const ownedColumnChars = Math.max('Partitions'.length, owned.length);
  return [
    banner('Claimant'),
    `Claimant:  '${node}'`,
    'Status:     up',
    'Ring Ready: true',
    '',
    banner('Ownership'),
    `Ring size: ${ringSize} partitions`,
    `${'Node'.padEnd(ownerColumnChars)}  ${'Partitions'.padEnd(ownedColumnChars)}  Share`,
    `${`'${node}'`.padEnd(ownerColumnChars)}  ${owned.padEnd(ownedColumnChars)}  100.0%`,
    '',
    banner('Ownership Handoff'),
    'No pending changes.',
    '',
    banner('Unreachable Nodes'),
    'All nodes are up and reachable',
  ].join('\n');
}

function ringStatusJson(node: string, ringSize: number): unknown {
  return {
    claimant: node,
    ring_ready: true,
    ring_size: ringSize,
    owners: [{ node, partitions: ringSize }],
    pending: [],
    unreachable: [],
  };
}
