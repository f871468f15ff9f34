import { setTimeout as sleep } from 'node:timers/promises';
import { resourcePermissions, type GroupDetails, type GroupSummary, type Permission } from '../auth/types.js';
import type { MembersAnswer, PartitionsAnswer, PlanAnswer, RingAnswer, RingReadyAnswer, TransferLimits, TransfersAnswer, VerifyAnswer } from '../cluster/admin-api.js';
import { ConfigError, formatDuration as formatConfigDuration, loadConfig, parseDuration, parseSize, type Config } from '../config.js';
import { nodeNameProblem } from '../core/ring.js';
import { globalPermissions } from '../core/acl.js';
import {
  formatMemberStatus,
  formatPlan,
  formatRingReady,
  formatRingStatus,
  formatTransferLimits,
  formatTransferLimitSet,
  formatPartitions,
  formatTransfers,
  formatVerify,
  refusalText,
  stagedText,
  verifyFailed,
  type ClusterContext,
} from './admin-format.js';
import { versionLine } from '../version.js';
import { exitCodes } from './exit-codes.js';
import { flagsNameAddress, nodeUrlOf } from './node-url.js';
import { parsePolicySettings, policyPath, policyText, PolicySyntaxError, type PolicyBody } from './policy.js';
import { formatStreamInfo, streamInfoPath, type StreamInfoAnswer } from './stream-info.js';
import { unknownCommandText } from './suggest.js';

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
 * The cluster commands talk to `/admin/cluster/*` (cluster/admin-api.ts)
 * and print what Riak's riak-admin prints (cli/admin-format.ts). They also
 * work with the cluster secret, as riak-admin works with the Erlang cookie:
 * when the credentials come from the config file alone and the node refuses
 * them (an admin password changed since), the command sends `cluster.secret`
 * in `x-iorio-cluster-secret` instead. Credentials given on the command line
 * or in the environment are never replaced: a wrong one is an error.
 *
 * Exit codes: 0 done, 1 the node answered with an error or a refusal (or
 * could not be reached; `ringready` also exits 1 when it prints FALSE, as
 * riak-admin does), 2 usage errors, and commands this build does not have.
 */

/** One line of the command list: the words that select it (the first is the command), its synopsis, what it does. */
interface CommandEntry {
  readonly synopsis: string;
  readonly summary: string;
  readonly section: 'commands' | 'cluster';
}

const commandEntries: readonly CommandEntry[] = [
  { section: 'commands', synopsis: 'user add <name> <password>', summary: 'create a user' },
  { section: 'commands', synopsis: 'user passwd <name> <password>', summary: "change a user's password" },
  { section: 'commands', synopsis: 'user del <name>', summary: 'delete a user' },
  { section: 'commands', synopsis: 'user list', summary: 'list the users' },
  { section: 'commands', synopsis: 'user revoke-sessions <name>', summary: 'end every session of a user (its tokens stop working)' },
  { section: 'commands', synopsis: 'group add <name>', summary: 'create a group' },
  { section: 'commands', synopsis: 'group del <name>', summary: 'delete a group, its grants and memberships' },
  { section: 'commands', synopsis: 'group list', summary: 'list the groups (built-in ones marked)' },
  { section: 'commands', synopsis: 'group show <name>', summary: 'a group and its members' },
  { section: 'commands', synopsis: 'group add-user <group> <user>', summary: 'make a user a member of a group' },
  { section: 'commands', synopsis: 'group remove-user <group> <user>', summary: 'take a user out of a group' },
  {
    section: 'commands',
    synopsis: 'grant <permission>[,<permission>...] on <bucket>[/<stream>] to <user>|group:<group>',
    summary: `give permissions (${resourcePermissions.join(', ')})`,
  },
  { section: 'commands', synopsis: 'revoke <permission>[,<permission>...] on <bucket>[/<stream>] from <user>|group:<group>', summary: 'take permissions back' },
  {
    section: 'commands',
    synopsis: 'grant <permission>[,<permission>...] to <user>|group:<group>',
    summary: `give permissions globally (${globalPermissions.join(', ')}; viewstats reads /stats and /metrics remotely)`,
  },
  { section: 'commands', synopsis: 'revoke <permission>[,<permission>...] from <user>|group:<group>', summary: 'take global permissions back' },
  { section: 'commands', synopsis: 'access [<bucket>[/<stream>]]', summary: 'list the grants on a bucket or a stream (without one: the global grants)' },
  { section: 'commands', synopsis: 'policy get <bucket>[/<stream>]', summary: 'the eviction policy set on a bucket or stream ({} when none)' },
  {
    section: 'commands',
    synopsis: 'policy set <bucket>[/<stream>] [max_count=<n>] [max_bytes=<size>] [max_age=<duration>]',
    summary: 'set it (sizes like 512MB, durations like 7d; the stream policy overrides the bucket one)',
  },
  { section: 'commands', synopsis: 'policy del <bucket>[/<stream>]', summary: 'remove it (the bucket policy or the config default applies)' },
  { section: 'commands', synopsis: 'stream info <bucket>/<stream>', summary: "a stream's seqnums, entries, bytes, chunks and the policy in force" },
  { section: 'commands', synopsis: 'status', summary: "the node's ping answer and counters" },
  { section: 'commands', synopsis: 'services', summary: 'the services this node runs, as riak-admin prints them: [iorio]' },
  { section: 'commands', synopsis: 'wait-for-service <service> [<node>]', summary: 'wait until <node> (default: this node) runs <service> (iorio: its HTTP API)' },
  { section: 'commands', synopsis: 'version', summary: "this build's version (also --version)" },
  { section: 'commands', synopsis: 'help [<command>]', summary: "the commands, or one command's help (also <command> --help)" },
  { section: 'cluster', synopsis: 'cluster join <node>', summary: 'stage joining this node to the cluster of <node>' },
  { section: 'cluster', synopsis: 'cluster leave [<node>]', summary: "stage a leave of <node> (default: this node); its data is handed off" },
  { section: 'cluster', synopsis: 'cluster force-remove <node>', summary: 'stage removing <node> at once, without handing off its data' },
  { section: 'cluster', synopsis: 'cluster replace <node> <by>', summary: "stage handing <node>'s partitions to the joining node <by>" },
  { section: 'cluster', synopsis: 'cluster force-replace <node> <by>', summary: "stage <by> taking <node>'s place at once, without handoff" },
  { section: 'cluster', synopsis: 'cluster plan', summary: 'show the staged changes and what they would do' },
  { section: 'cluster', synopsis: 'cluster commit', summary: 'apply the plan shown by cluster plan' },
  { section: 'cluster', synopsis: 'cluster clear', summary: 'drop the staged changes' },
  { section: 'cluster', synopsis: 'down <node>', summary: 'mark an unreachable member down (it keeps its partitions)' },
  { section: 'cluster', synopsis: 'member-status', summary: 'the members, their ring share now and once transfers finish' },
  { section: 'cluster', synopsis: 'ring-status', summary: 'claimant, ring readiness, pending ownership transfers, unreachable nodes' },
  { section: 'cluster', synopsis: 'ringready', summary: 'whether every member agrees on the ring (exit 1 when not)' },
  { section: 'cluster', synopsis: 'transfers', summary: 'partitions waiting to be handed off, and the transfers running' },
  { section: 'cluster', synopsis: 'partitions', summary: "each partition's replica group: leader, epoch, voters, commit, follower lag (request.n > 1)" },
  {
    section: 'cluster',
    synopsis: 'verify [<bucket>[/<stream>]] [--repair]',
    summary: "compare each stream's last seqnum and digest across its replicas; --repair fills a replica that lacks records from one that holds them (exit 1 when they differ)",
  },
  { section: 'cluster', synopsis: 'transfer-limit [<concurrency>] [--rate <size>]', summary: "show, or set, this node's handoff concurrency and rate (0 = no limit)" },
  { section: 'cluster', synopsis: 'transfer cancel <partition>', summary: 'cancel the transfer of one partition' },
];

/** The command words iorio-admin knows (the first word of each entry). */
export const commandWords: readonly string[] = [...new Set(commandEntries.map((entry) => entry.synopsis.split(' ')[0]!))];

const synopsisWidth = 34;

function commandLines(entries: readonly CommandEntry[]): string {
  return entries
    .map((entry) =>
      entry.synopsis.length < synopsisWidth
        ? `  ${entry.synopsis.padEnd(synopsisWidth)}${entry.summary}`
        : `  ${entry.synopsis}\n  ${' '.repeat(synopsisWidth)}${entry.summary}`,
    )
    .join('\n');
}

const optionsHelp = `options:
  -c, --config <file>  the node's configuration file (its paths.data, http.host, http.port, auth.admin.*, cluster.secret)
  --<key> <value>      override a config key, as for iorio: --paths.data /var/lib/iorio
  --url <url>          the node's HTTP URL (see "where the node is" below)
  -u, --user <name>    admin user (default: $IORIO_ADMIN_USER, else auth.admin.username)
  -p, --password <pw>  its password (default: $IORIO_ADMIN_PASSWORD, else auth.admin.password)
  --timeout <duration> how long each request may take, like 5s or 2m (default: $IORIO_ADMIN_TIMEOUT, else 30s)
  --json               print the node's JSON answers instead of text
  --rate <size>        (transfer-limit) bytes per second, like 10MB; 0 = no limit
  --repair             (verify) fill the replicas that lack records, then compare again
  --                   everything after it is a command argument (a password starting with -)
  -h, --help           this text, or a command's help
  --version            the version`;

const exitStatusHelp = 'exit status: 0 done, 1 the node refused or could not be reached (or ringready is FALSE, or verify found replicas that differ or did not answer), or a bad configuration; 2 usage error';

export const usage = `usage: iorio-admin [-c config-file] [--<key> <value> ...] [--url http://host:port]
                   [-u user] [-p password] [--timeout 30s] [--json] <command>

commands:
${commandLines(commandEntries.filter((entry) => entry.section === 'commands'))}

cluster commands (staged, then planned and committed, as in Riak):
${commandLines(commandEntries.filter((entry) => entry.section === 'cluster'))}

${optionsHelp}

where the node is: --url, else --http.host/--http.port when given, else the URL
the node running on paths.data recorded in <paths.data>/iorio.url, else
http.host:http.port from the configuration (default 127.0.0.1:8080).

${exitStatusHelp}`;

/** `iorio-admin <command> --help`: that command's lines, how options are given, the exit statuses. */
export function commandHelpOf(word: string): string {
  const entries = commandEntries.filter((entry) => entry.synopsis.split(' ')[0] === word);
  if (entries.length === 0) return `usage: iorio-admin [options] ${word}\n\n${exitStatusHelp}`;
  return `usage:\n${entries.map((entry) => `  iorio-admin [options] ${entry.synopsis}`).join('\n')}\n\n${commandLines(entries)}\n\n(iorio-admin --help lists the options)\n${exitStatusHelp}`;
}

/** What a usage error prints after its message. */
export const shortUsage = 'usage: iorio-admin [-c config-file] [--url http://host:port] [-u user] [-p password] [--json] <command>\n(iorio-admin help lists the commands; iorio-admin help <command> explains one)';

/** Bound on every HTTP request the command makes, unless --timeout or IORIO_ADMIN_TIMEOUT says otherwise. */
export const requestTimeoutMsDefault = 30_000;
/** wait-for-service asks again this often, as riak-admin does. */
export const serviceWaitIntervalMsDefault = 3_000;
/** The services a node runs: `iorio`, its HTTP API. */
export const serviceNames = ['iorio'] as const;
/** Longest error body quoted when it is not Iorio's `{type, reason}`. */
const errorTextCharsMax = 200;
/** The header the node accepts the cluster secret in, on /admin/cluster/*. */
export const clusterSecretHeader = 'x-iorio-cluster-secret';

/** Where the command writes, and the environment it reads (tests pass their own). */
export interface AdminIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
  /** The wall clock, for the ages `transfers` prints; Date.now by default. */
  nowMs?: () => number;
  /** How often wait-for-service asks again; 3 s (riak-admin's) by default. */
  waitIntervalMs?: number;
  /** Ends wait-for-service early (exit 1), as Ctrl-C does. */
  signal?: AbortSignal;
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
  /** transfer-limit's --rate, as written. */
  rate: string | undefined;
  /** --timeout, as written. */
  timeout: string | undefined;
  json: boolean;
  /** verify's --repair. */
  repair: boolean;
  help: boolean;
  version: boolean;
}

/** Options with a value that are iorio-admin's own, not config keys. */
const valueOptions: Readonly<Record<string, 'file' | 'url' | 'user' | 'password' | 'rate' | 'timeout'>> = {
  '-c': 'file',
  '--config': 'file',
  '--url': 'url',
  '-u': 'user',
  '--user': 'user',
  '-p': 'password',
  '--password': 'password',
  '--rate': 'rate',
  '--timeout': 'timeout',
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
    rate: undefined,
    timeout: undefined,
    json: false,
    repair: false,
    help: false,
    version: false,
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
    } else if (argument === '--repair') {
      parsed.repair = true;
    } else if (argument === '-h' || argument === '--help') {
      parsed.help = true;
    } else if (argument === '--version') {
      parsed.version = true;
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

/** The cluster changes staged or applied with one POST, and what they print (admin-format's ClusterContext). */
export type ClusterChange = Exclude<ClusterContext['command'], 'plan'>;

export type AdminCommand =
  | { readonly kind: 'user-add' | 'user-passwd'; readonly username: string; readonly password: string }
  | { readonly kind: 'user-del' | 'user-revoke-sessions'; readonly username: string }
  | { readonly kind: 'user-list' | 'status' | 'member-status' | 'ring-status' | 'ringready' | 'transfers' | 'partitions' | 'cluster-plan' }
  /** bucket undefined: the global scope (POST /access). */
  | {
      readonly kind: 'grant' | 'revoke';
      readonly permissions: readonly Permission[];
      readonly bucket: string | undefined;
      readonly stream: string | undefined;
      readonly target: GrantTarget;
    }
  | { readonly kind: 'access'; readonly bucket: string | undefined; readonly stream: string | undefined }
  | { readonly kind: 'group-add' | 'group-del' | 'group-show'; readonly group: string }
  | { readonly kind: 'group-list' }
  | { readonly kind: 'group-add-user' | 'group-remove-user'; readonly group: string; readonly username: string }
  | { readonly kind: 'stream-info'; readonly bucket: string; readonly stream: string }
  /** join, leave, force-remove, replace, force-replace, commit, clear, down: one POST, then Riak's line. */
  | { readonly kind: 'cluster-change'; readonly change: ClusterChange; readonly node: string | undefined; readonly by: string | undefined }
  /** Both undefined: show the limits. */
  | { readonly kind: 'transfer-limit'; readonly concurrency: number | undefined; readonly rateBytesPerSec: number | undefined }
  | { readonly kind: 'transfer-cancel'; readonly partition: number }
  /** Both undefined: every stream; bucket alone: its streams. */
  | { readonly kind: 'verify'; readonly bucket: string | undefined; readonly stream: string | undefined; readonly repair: boolean }
  | { readonly kind: 'policy-get' | 'policy-del'; readonly bucket: string; readonly stream: string | undefined }
  | { readonly kind: 'policy-set'; readonly bucket: string; readonly stream: string | undefined; readonly policy: PolicyBody }
  | { readonly kind: 'services' }
  | { readonly kind: 'wait-for-service'; readonly service: string; readonly node: string | undefined }
  /** Answered without the node: help (of one command when topic is set) and version. */
  | { readonly kind: 'help'; readonly topic: string | undefined }
  | { readonly kind: 'version' };


/** Riak's underscore spellings, accepted as riak-admin accepts them. */
const commandAliases: Readonly<Record<string, string>> = {
  member_status: 'member-status',
  ring_status: 'ring-status',
  transfer_limit: 'transfer-limit',
  wait_for_service: 'wait-for-service',
};

/** The command line's words (and transfer-limit's --rate, verify's --repair) -> one command. Pure; throws UsageError. */
export function parseCommand(words: readonly string[], rate?: string, repair = false): AdminCommand {
  const [written, ...rest] = words;
  const command = written === undefined ? undefined : (commandAliases[written] ?? written);
  if (rate !== undefined && command !== 'transfer-limit') throw new UsageError('--rate goes with transfer-limit only');
  if (repair && command !== 'verify') throw new UsageError('--repair goes with verify only');
  switch (command) {
    case 'user':
      return parseUserCommand(rest);
    case 'grant':
    case 'revoke':
      return parseGrantCommand(command, rest);
    case 'access': {
      if (rest.length > 1) throw new UsageError('expected: access [<bucket>[/<stream>]]');
      return rest[0] === undefined ? { kind: 'access', bucket: undefined, stream: undefined } : { kind: 'access', ...parseResource(rest[0]) };
    }
    case 'group':
      return parseGroupCommand(rest);
    case 'stream':
      return parseStreamCommand(rest);
    case 'status':
    case 'member-status':
    case 'ring-status':
    case 'ringready':
    case 'transfers':
    case 'partitions':
      expectCount(command, rest, 0);
      return { kind: command };
    case 'cluster':
      return parseClusterCommand(rest);
    case 'down':
      expectCount('down <node>', rest, 1);
      return { kind: 'cluster-change', change: 'down', node: nodeArgument(rest[0]!), by: undefined };
    case 'transfer-limit':
      return parseTransferLimit(rest, rate);
    case 'transfer':
      if (rest[0] !== 'cancel' || rest.length !== 2) throw new UsageError('expected: transfer cancel <partition>');
      return { kind: 'transfer-cancel', partition: partitionArgument(rest[1]!) };
    case 'verify': {
      if (rest.length > 1) throw new UsageError('expected: verify [<bucket>[/<stream>]] [--repair]');
      const scope = rest[0] === undefined ? { bucket: undefined, stream: undefined } : parseResource(rest[0]);
      return { kind: 'verify', ...scope, repair };
    }
    case 'policy':
      return parsePolicyCommand(rest);
    case 'services':
      expectCount('services', rest, 0);
      return { kind: 'services' };
    case 'wait-for-service': {
      if (rest.length < 1 || rest.length > 2) throw new UsageError('expected: wait-for-service <service> [<node>]');
      const service = rest[0]!;
      if (!(serviceNames as readonly string[]).includes(service)) throw new UsageError(`${unknownCommandText(service, serviceNames, 'service')} (the services are: ${serviceNames.join(', ')})`);
      return { kind: 'wait-for-service', service, node: rest[1] === undefined ? undefined : nodeArgument(rest[1]) };
    }
    case 'version':
      expectCount('version', rest, 0);
      return { kind: 'version' };
    case 'help': {
      if (rest.length > 1) throw new UsageError('expected: help [<command>]');
      const topic = rest[0] === undefined ? undefined : (commandAliases[rest[0]] ?? rest[0]);
      if (topic !== undefined && !commandWords.includes(topic)) throw new UsageError(unknownCommandText(topic, commandWords));
      return { kind: 'help', topic };
    }
    case undefined:
      throw new UsageError('no command given');
    default:
      throw new UsageError(unknownCommandText(written!, commandWords));
  }
}

export const clusterSubcommands = ['join', 'leave', 'force-remove', 'replace', 'force-replace', 'plan', 'commit', 'clear'] as const;

function parseClusterCommand(words: readonly string[]): AdminCommand {
  const [subcommand, ...rest] = words;
  const change = (node: string | undefined, by?: string): AdminCommand => ({
    kind: 'cluster-change',
    change: subcommand as ClusterChange,
    node: node === undefined ? undefined : nodeArgument(node),
    by: by === undefined ? undefined : nodeArgument(by),
  });
  switch (subcommand) {
    case 'join':
    case 'force-remove':
      expectCount(`cluster ${subcommand} <node>`, rest, 1);
      return change(rest[0]);
    case 'leave':
      if (rest.length > 1) throw new UsageError('expected: cluster leave [<node>]');
      return change(rest[0]);
    case 'replace':
    case 'force-replace':
      expectCount(`cluster ${subcommand} <node> <by>`, rest, 2);
      return change(rest[0], rest[1]);
    case 'plan':
      expectCount('cluster plan', rest, 0);
      return { kind: 'cluster-plan' };
    case 'commit':
    case 'clear':
      expectCount(`cluster ${subcommand}`, rest, 0);
      return change(undefined);
    default:
      throw new UsageError(
        subcommand === undefined ? `cluster needs one of ${clusterSubcommands.join(', ')}` : `unknown cluster command "${subcommand}": one of ${clusterSubcommands.join(', ')}`,
      );
  }
}

function nodeArgument(word: string): string {
  const problem = nodeNameProblem(word);
  if (problem !== undefined) throw new UsageError(problem);
  return word;
}

function partitionArgument(word: string): number {
  if (!/^\d{1,9}$/.test(word)) throw new UsageError(`"${word}" is not a partition number`);
  return Number(word);
}

function parseTransferLimit(words: readonly string[], rate: string | undefined): AdminCommand {
  if (words.length > 1) throw new UsageError('expected: transfer-limit [<concurrency>] [--rate <size>]');
  const written = words[0];
  if (written !== undefined && !/^\d{1,9}$/.test(written)) throw new UsageError(`Invalid limit: ${written}`);
  const rateBytesPerSec = rate === undefined ? undefined : parseSize(rate);
  if (rate !== undefined && rateBytesPerSec === undefined) throw new UsageError(`Invalid rate: ${rate} (a size like 512KB or 10MB per second, or 0 for no limit)`);
  return { kind: 'transfer-limit', concurrency: written === undefined ? undefined : Number(written), rateBytesPerSec };
}

const policySubcommands = ['get', 'set', 'del'] as const;

/** `policy get|del <bucket>[/<stream>]`, `policy set <bucket>[/<stream>] max_count=N max_bytes=SIZE max_age=DURATION`. */
function parsePolicyCommand(words: readonly string[]): AdminCommand {
  const [subcommand, resource, ...settings] = words;
  switch (subcommand) {
    case 'get':
    case 'del':
      expectCount(`policy ${subcommand} <bucket>[/<stream>]`, words.slice(1), 1);
      return { kind: subcommand === 'get' ? 'policy-get' : 'policy-del', ...parseResource(resource!) };
    case 'set': {
      const form = 'policy set <bucket>[/<stream>] [max_count=<n>] [max_bytes=<size>] [max_age=<duration>]';
      if (resource === undefined || settings.length === 0) throw new UsageError(`expected: ${form}`);
      return { kind: 'policy-set', ...parseResource(resource), policy: parsePolicyArguments(settings) };
    }
    default:
      throw new UsageError(
        subcommand === undefined ? `policy needs one of ${policySubcommands.join(', ')}` : `${unknownCommandText(subcommand, policySubcommands, 'policy command')}`,
      );
  }
}

/** The settings of `policy set`, as a PUT body; a bad one is a usage error. */
function parsePolicyArguments(settings: readonly string[]): PolicyBody {
  try {
    return parsePolicySettings(settings);
  } catch (error) {
    if (error instanceof PolicySyntaxError) throw new UsageError(error.message);
    throw error;
  }
}

const groupSubcommands = ['add', 'del', 'list', 'show', 'add-user', 'remove-user'] as const;

/** `group add|del|show <name>`, `group list`, `group add-user|remove-user <group> <user>`. */
function parseGroupCommand(words: readonly string[]): AdminCommand {
  const [subcommand, ...rest] = words;
  switch (subcommand) {
    case 'add':
    case 'del':
    case 'show':
      expectCount(`group ${subcommand} <name>`, rest, 1);
      return { kind: `group-${subcommand}`, group: rest[0]! };
    case 'list':
      expectCount('group list', rest, 0);
      return { kind: 'group-list' };
    case 'add-user':
    case 'remove-user':
      expectCount(`group ${subcommand} <group> <user>`, rest, 2);
      return { kind: `group-${subcommand}`, group: rest[0]!, username: rest[1]! };
    default:
      throw new UsageError(
        subcommand === undefined ? `group needs one of ${groupSubcommands.join(', ')}` : unknownCommandText(subcommand, groupSubcommands, 'group command'),
      );
  }
}

/** `stream info <bucket>/<stream>`. */
function parseStreamCommand(words: readonly string[]): AdminCommand {
  const [subcommand, ...rest] = words;
  if (subcommand !== 'info') {
    throw new UsageError(subcommand === undefined ? 'stream needs info' : unknownCommandText(subcommand, ['info'], 'stream command'));
  }
  expectCount('stream info <bucket>/<stream>', rest, 1);
  const { bucket, stream } = parseResource(rest[0]!);
  if (stream === undefined) throw new UsageError(`"${rest[0]}" is not <bucket>/<stream>`);
  return { kind: 'stream-info', bucket, stream };
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

/** `<permissions> on <bucket>[/<stream>] to|from <user>|group:<group>`, or without `on ...`: globally. */
function parseGrantCommand(kind: 'grant' | 'revoke', words: readonly string[]): AdminCommand {
  const preposition = kind === 'grant' ? 'to' : 'from';
  const form = `${kind} <permission>[,<permission>...] [on <bucket>[/<stream>]] ${preposition} <user>|group:<group>`;
  const global = words.length === 3 && words[1] === preposition;
  if (!global && (words.length !== 5 || words[1] !== 'on' || words[3] !== preposition)) throw new UsageError(`expected: ${form}`);
  const permissions = words[0]!.split(',');
  const known: readonly string[] = [...resourcePermissions, ...globalPermissions];
  for (const permission of permissions) {
    if (!known.includes(permission)) throw new UsageError(`${unknownCommandText(permission, known, 'permission')} (the permissions are ${known.join(', ')})`);
    if (!global && (globalPermissions as readonly string[]).includes(permission)) {
      throw new UsageError(`${permission} is global, not a bucket's: ${kind} ${permission} ${preposition} ${words[4]}`);
    }
  }
  const resource = global ? { bucket: undefined, stream: undefined } : parseResource(words[2]!);
  return { kind, permissions: [...new Set(permissions)] as Permission[], ...resource, target: parseTarget(words[global ? 2 : 4]!) };
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

/** The node to talk to, by the one rule of cli/node-url.ts: --url, else --http.host/--http.port, else the running node's iorio.url, else the config. */
export function adminUrlOf(config: Config, explicitUrl: string | undefined, flags: Readonly<Record<string, string>> = {}): string {
  return checkedUrl(nodeUrlOf(config, { url: explicitUrl, explicitAddress: flagsNameAddress(flags) }));
}

/** --timeout, else IORIO_ADMIN_TIMEOUT, else 30 s; a duration like 500ms, 5s, 2m. Throws UsageError. */
export function requestTimeoutMsOf(parsed: Pick<AdminArguments, 'timeout'>, env: AdminIo['env']): number {
  const fromEnv = nonEmpty(env, 'IORIO_ADMIN_TIMEOUT');
  const written = parsed.timeout ?? fromEnv;
  if (written === undefined) return requestTimeoutMsDefault;
  const ms = parseDuration(written);
  if (ms === undefined || ms <= 0) {
    throw new UsageError(`${parsed.timeout === undefined ? 'IORIO_ADMIN_TIMEOUT' : '--timeout'} must be a duration like 500ms, 5s or 2m, got "${written}"`);
  }
  return ms;
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

function nonEmpty(env: AdminIo['env'], name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

/** Each of user and password: the flag, else the environment (when not empty), else the config. */
export function credentialsOf(config: Config, parsed: AdminArguments, env: AdminIo['env']): Credentials {
  return {
    username: parsed.user ?? nonEmpty(env, 'IORIO_ADMIN_USER') ?? config['auth.admin.username'],
    password: parsed.password ?? nonEmpty(env, 'IORIO_ADMIN_PASSWORD') ?? config['auth.admin.password'],
  };
}

/** The user named credentials (flags or environment): the cluster secret never stands in for them. */
export function credentialsAreExplicit(parsed: AdminArguments, env: AdminIo['env']): boolean {
  return parsed.user !== undefined || parsed.password !== undefined || nonEmpty(env, 'IORIO_ADMIN_USER') !== undefined || nonEmpty(env, 'IORIO_ADMIN_PASSWORD') !== undefined;
}

// ---------------------------------------------------------------------------
// The node's HTTP API

/** The node answered with an error status. */
export class AnswerError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly reason: string,
    /** The claimant's refusal, as Riak's atom (`not_member`, `plan_changed`...), when the node gave one. */
    readonly reasonCode: string | undefined = undefined,
    /** The node a refusal is about, when the node named it. */
    readonly node: string | undefined = undefined,
  ) {
    super(`${status} ${type}: ${reason}`);
  }
}

/** The node could not be reached, or its answer was not JSON. */
export class ReachError extends Error {}

/** How the client proves itself on /admin/cluster/*. */
export interface ClusterAuth {
  /** The cluster secret, sent when the config's credentials are refused; '' never. */
  readonly secret: string;
  /** Credentials from flags or the environment: a refusal of them is final. */
  readonly explicit: boolean;
}

/** A minimal client: JSON in and out, one login on first use. */
class AdminClient {
  private token: string | undefined;
  private useSecret = false;

  constructor(
    readonly url: string,
    private readonly credentials: Credentials,
    private readonly clusterAuth: ClusterAuth,
    private readonly timeoutMs: number = requestTimeoutMsDefault,
  ) {}

  /** An authenticated request. */
  async call(method: string, path: string, body?: unknown): Promise<unknown> {
    this.token ??= await this.login();
    return this.send(method, path, body, { 'x-session': this.token });
  }

  /** A request to /admin/cluster/*: the admin session, else (config credentials refused) the cluster secret. */
  async callCluster(method: string, path: string, body?: unknown): Promise<unknown> {
    return this.send(method, path, body, await this.clusterHeaders());
  }

  /** A request without credentials (GET /ping). */
  callAnonymous(method: string, path: string): Promise<unknown> {
    return this.send(method, path, undefined, {});
  }

  private async clusterHeaders(): Promise<Record<string, string>> {
    if (this.useSecret) return { [clusterSecretHeader]: this.clusterAuth.secret };
    if (this.token !== undefined) return { 'x-session': this.token };
    try {
      this.token = await this.login();
      return { 'x-session': this.token };
    } catch (error) {
      const refused = error instanceof AnswerError && (error.status === 401 || error.status === 429);
      if (!refused || this.clusterAuth.explicit || this.clusterAuth.secret === '') throw error;
      this.useSecret = true;
      return { [clusterSecretHeader]: this.clusterAuth.secret };
    }
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
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await response.text();
    } catch (error) {
      if (error instanceof Error && error.name === 'TimeoutError') {
        throw new ReachError(
          `no answer from ${target} within ${formatConfigDuration(this.timeoutMs)}: the node may be hung or overloaded (--timeout or IORIO_ADMIN_TIMEOUT waits longer)`,
        );
      }
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
    const { type, reason, reason_code: reasonCode, node } = body as { type: string; reason?: unknown; reason_code?: unknown; node?: unknown };
    return new AnswerError(
      response.status,
      type,
      typeof reason === 'string' ? reason : '',
      typeof reasonCode === 'string' ? reasonCode : undefined,
      typeof node === 'string' ? node : undefined,
    );
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
  let timeoutMs: number;
  try {
    parsed = parseAdminArguments(argv);
    const offline = answerOffline(parsed);
    if (offline !== undefined) {
      io.stdout(`${offline}\n`);
      return exitCodes.ok;
    }
    command = parseCommand(parsed.positionals, parsed.rate, parsed.repair);
    if (command.kind === 'help' || command.kind === 'version') {
      io.stdout(`${command.kind === 'version' ? versionLine('iorio-admin') : command.topic === undefined ? usage : commandHelpOf(command.topic)}\n`);
      return exitCodes.ok;
    }
    timeoutMs = requestTimeoutMsOf(parsed, io.env);
    config = loadConfig({
      ...(parsed.file === undefined ? {} : { file: parsed.file }),
      env: io.env,
      flags: parsed.flags,
      warn: (message) => io.stderr(`iorio-admin: warning: ${message}\n`),
    });
    url = adminUrlOf(config, parsed.url, parsed.flags);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`iorio-admin: ${error.message}\n${shortUsage}\n`);
      return exitCodes.usage;
    }
    if (error instanceof ConfigError) {
      io.stderr(`iorio-admin: ${error.message}\n`);
      return exitCodes.failed;
    }
    throw error;
  }
  const client = new AdminClient(
    url,
    credentialsOf(config, parsed, io.env),
    { secret: config['cluster.secret'], explicit: credentialsAreExplicit(parsed, io.env) },
    timeoutMs,
  );
  try {
    if (command.kind === 'wait-for-service') return await waitForService(command, client, io);
    const output = await execute(command, client, io.nowMs ?? Date.now);
    io.stdout(`${parsed.json ? JSON.stringify(output.json) : output.text}\n`);
    return output.failed === true ? exitCodes.failed : exitCodes.ok;
  } catch (error) {
    if (error instanceof AnswerError || error instanceof ReachError) {
      const riak = error instanceof AnswerError ? riakRefusalOf(command, error) : undefined;
      io.stderr(riak === undefined ? `iorio-admin: ${error.message}\n` : `${riak}\n`);
      return exitCodes.failed;
    }
    throw error;
  }
}

/** `--version`, `--help` and `<command> --help`, answered before anything else is checked; undefined otherwise. */
function answerOffline(parsed: AdminArguments): string | undefined {
  if (parsed.version) return versionLine('iorio-admin');
  if (!parsed.help) return undefined;
  const written = parsed.positionals[0];
  const word = written === undefined ? undefined : (commandAliases[written] ?? written);
  if (word === undefined || word === 'help') return usage;
  if (!commandWords.includes(word)) throw new UsageError(unknownCommandText(word, commandWords));
  return commandHelpOf(word);
}

/**
 * riak-admin's wait-for-service: asks every few seconds which services
 * <node> runs, printing `<service> is not up: [...]` each time, until it
 * runs <service>: `<service> is up`, exit 0. Without <node> it asks this
 * node (it runs `iorio` once its HTTP API answers); with one, this node's
 * view of the cluster (the member is up when this node reaches it). Waits
 * as long as it takes, as riak-admin does (Ctrl-C stops it).
 */
async function waitForService(command: Extract<AdminCommand, { kind: 'wait-for-service' }>, client: AdminClient, io: AdminIo): Promise<number> {
  const intervalMs = io.waitIntervalMs ?? serviceWaitIntervalMsDefault;
  while (io.signal?.aborted !== true) {
    const services = await servicesOf(client, command.node);
    if (services.list.includes(command.service)) {
      io.stdout(`${command.service} is up\n`);
      return exitCodes.ok;
    }
    io.stdout(`${command.service} is not up: ${formatServices(services.list)}${services.why === undefined ? '' : ` (${services.why})`}\n`);
    await sleep(intervalMs, undefined, io.signal === undefined ? {} : { signal: io.signal }).catch(() => undefined);
  }
  return exitCodes.failed;
}

/** The services `node` runs (this node when undefined), and why the list is empty when it is. Never throws for an unreachable node. */
async function servicesOf(client: AdminClient, node: string | undefined): Promise<{ list: string[]; why?: string }> {
  let self: PingAnswer;
  try {
    self = (await client.callAnonymous('GET', '/ping')) as PingAnswer;
  } catch (error) {
    if (error instanceof ReachError || error instanceof AnswerError) return { list: [], why: error.message };
    throw error;
  }
  if (node === undefined || node === self.node) return { list: ['iorio'] };
  try {
    const members = (await client.callCluster('GET', `${clusterPath}/members`)) as MembersAnswer;
    if (!members.rows.some((row) => row.node === node)) return { list: [], why: `${node} is not a member of ${self.node}'s cluster` };
    const ring = (await client.callCluster('GET', `${clusterPath}/ring`)) as RingAnswer;
    if (ring.unreachable.includes(node)) return { list: [], why: `${self.node} cannot reach ${node}` };
    return { list: ['iorio'] };
  } catch (error) {
    if (error instanceof ReachError || error instanceof AnswerError) return { list: [], why: error.message };
    throw error;
  }
}

/** An Erlang list of atoms, as riak-admin services prints it: `[iorio]`, `[]`. */
export function formatServices(services: readonly string[]): string {
  return `[${services.join(',')}]`;
}

/** A refusal of the claimant (the node gave a `reason_code`) to a cluster change or plan, in Riak's words. */
function riakRefusalOf(command: AdminCommand, error: AnswerError): string | undefined {
  if (error.reasonCode === undefined) return undefined;
  if (command.kind === 'cluster-change') {
    return refusalText(error.reasonCode, { command: command.change, node: command.node ?? error.node, by: command.by }, error.reason);
  }
  if (command.kind === 'cluster-plan') return refusalText(error.reasonCode, { command: 'plan', node: error.node }, error.reason);
  return undefined;
}

/** What a command prints: text by default, the node's JSON with --json; `failed` makes it exit 1 (ringready FALSE). */
interface CommandOutput {
  text: string;
  json: unknown;
  failed?: boolean;
}

async function execute(command: AdminCommand, client: AdminClient, nowMs: () => number): Promise<CommandOutput> {
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
      const title = command.bucket === undefined ? 'global access (every bucket)' : `access to ${resourceName(command.bucket, command.stream)}`;
      return { text: formatAccess(title, json as AccessAnswer), json };
    }
    case 'stream-info': {
      const json = await client.call('GET', streamInfoPath(command.bucket, command.stream));
      return { text: formatStreamInfo(json as StreamInfoAnswer), json };
    }
    case 'group-add':
    case 'group-del':
    case 'group-show':
    case 'group-list':
    case 'group-add-user':
    case 'group-remove-user':
      return executeGroup(command, client);
    case 'policy-get': {
      const json = await client.call('GET', policyPath(command.bucket, command.stream));
      return { text: formatPolicy(resourceName(command.bucket, command.stream), json as PolicyBody), json };
    }
    case 'policy-set': {
      const json = await client.call('PUT', policyPath(command.bucket, command.stream), command.policy);
      return { text: `policy of ${resourceName(command.bucket, command.stream)} set: ${policyText(command.policy)}`, json };
    }
    case 'policy-del': {
      const json = await client.call('DELETE', policyPath(command.bucket, command.stream));
      return { text: `policy of ${resourceName(command.bucket, command.stream)} removed`, json };
    }
    case 'services': {
      // riak-admin services asks the local node, which must be up: an unreachable node is an error here.
      await client.callAnonymous('GET', '/ping');
      return { text: formatServices(serviceNames), json: serviceNames };
    }
    case 'status': {
      const ping = (await client.callAnonymous('GET', '/ping')) as PingAnswer;
      const stats = await client.call('GET', '/stats');
      return { text: formatStatus(client.url, ping, stats as StatsAnswer), json: { ping, stats } };
    }
    default:
      return executeCluster(command, client, nowMs);
  }
}

const clusterPath = '/admin/cluster';

type GroupCommand = Extract<AdminCommand, { kind: `group-${string}` }>;

async function executeGroup(command: GroupCommand, client: AdminClient): Promise<CommandOutput> {
  if (command.kind === 'group-list') {
    const json = await client.call('GET', '/groups');
    return { text: formatGroups(json as GroupSummary[]), json };
  }
  const path = `/groups/${encodeURIComponent(command.group)}`;
  switch (command.kind) {
    case 'group-add': {
      const json = await client.call('POST', '/groups', { name: command.group });
      return { text: `group ${command.group} added`, json };
    }
    case 'group-del': {
      const json = await client.call('DELETE', path);
      return { text: `group ${command.group} deleted`, json };
    }
    case 'group-show': {
      const json = await client.call('GET', path);
      return { text: formatGroup(json as GroupDetails), json };
    }
    case 'group-add-user': {
      const json = await client.call('POST', `${path}/users`, { username: command.username });
      return { text: `user ${command.username} added to group ${command.group}`, json };
    }
    case 'group-remove-user': {
      const json = await client.call('DELETE', `${path}/users/${encodeURIComponent(command.username)}`);
      return { text: `user ${command.username} removed from group ${command.group}`, json };
    }
  }
}

async function executeCluster(command: AdminCommand, client: AdminClient, nowMs: () => number): Promise<CommandOutput> {
  switch (command.kind) {
    case 'member-status': {
      const json = (await client.callCluster('GET', `${clusterPath}/members`)) as MembersAnswer;
      return { text: formatMemberStatus(json), json };
    }
    case 'ring-status': {
      const json = (await client.callCluster('GET', `${clusterPath}/ring`)) as RingAnswer;
      return { text: formatRingStatus(json), json };
    }
    case 'ringready': {
      const json = (await client.callCluster('GET', `${clusterPath}/ringready`)) as RingReadyAnswer;
      return { text: formatRingReady(json), json, failed: !json.ready };
    }
    case 'transfers': {
      const json = (await client.callCluster('GET', `${clusterPath}/transfers`)) as TransfersAnswer;
      return { text: formatTransfers(json, nowMs()), json };
    }
    case 'partitions': {
      const json = (await client.callCluster('GET', `${clusterPath}/partitions`)) as PartitionsAnswer;
      const leaderless = new Set(json.rows.map((row) => row.partition));
      for (const row of json.rows) if (row.role === 'leader' && row.leader === row.node) leaderless.delete(row.partition);
      return { text: formatPartitions(json), json, failed: json.n > 1 && leaderless.size > 0 };
    }
    case 'verify':
      return verify(command, client);
    case 'cluster-plan': {
      const json = (await client.callCluster('GET', `${clusterPath}/plan`)) as PlanAnswer;
      return { text: formatPlan(json), json };
    }
    case 'cluster-change':
      return changeCluster(command, client);
    case 'transfer-limit':
      return transferLimit(command, client);
    case 'transfer-cancel': {
      const json = await client.callCluster('DELETE', `${clusterPath}/transfers/${command.partition}`);
      return { text: `Success: cancelled the transfer of partition ${command.partition}`, json };
    }
    default:
      throw new Error(`assertion failed: ${command.kind} is not a cluster command`);
  }
}

/** The body of each change's POST (cluster/admin-api.ts). */
function changeBody(command: Extract<AdminCommand, { kind: 'cluster-change' }>): unknown {
  switch (command.change) {
    case 'commit':
    case 'clear':
      return undefined;
    case 'leave':
      return command.node === undefined ? {} : { node: command.node };
    case 'replace':
    case 'force-replace':
      return { node: command.node, by: command.by };
    default:
      return { node: command.node };
  }
}

async function changeCluster(command: Extract<AdminCommand, { kind: 'cluster-change' }>, client: AdminClient): Promise<CommandOutput> {
  const json = await client.callCluster('POST', `${clusterPath}/${command.change}`, changeBody(command));
  const answered = typeof (json as { node?: unknown }).node === 'string' ? (json as { node: string }).node : undefined;
  let thisNode = '';
  if (command.change === 'join') {
    // The joining node is this one: the answer names it, unless it names the node joined.
    thisNode = answered !== undefined && answered !== command.node ? answered : await nodeNameOf(client);
  } else if (command.change === 'leave' && command.node === undefined) {
    thisNode = answered ?? (await nodeNameOf(client));
  }
  return { text: stagedText({ command: command.change, node: command.node, by: command.by }, thisNode), json };
}

async function transferLimit(command: Extract<AdminCommand, { kind: 'transfer-limit' }>, client: AdminClient): Promise<CommandOutput> {
  if (command.concurrency === undefined && command.rateBytesPerSec === undefined) {
    const answer = (await client.callCluster('GET', `${clusterPath}/transfers`)) as TransfersAnswer;
    return { text: formatTransferLimits(await nodeNameOf(client), answer.limits), json: answer.limits };
  }
  const body = {
    ...(command.concurrency === undefined ? {} : { concurrency: command.concurrency }),
    ...(command.rateBytesPerSec === undefined ? {} : { rate: command.rateBytesPerSec }),
  };
  const json = (await client.callCluster('POST', `${clusterPath}/transfer-limit`, body)) as TransferLimits;
  return { text: formatTransferLimitSet(await nodeNameOf(client), json), json };
}

/** GET /admin/cluster/verify reports; with --repair, a POST repairs first. Exit 1 unless every stream is ok and every replica answered. */
async function verify(command: Extract<AdminCommand, { kind: 'verify' }>, client: AdminClient): Promise<CommandOutput> {
  const scope = { ...(command.bucket === undefined ? {} : { bucket: command.bucket }), ...(command.stream === undefined ? {} : { stream: command.stream }) };
  const json = (
    command.repair ? await client.callCluster('POST', `${clusterPath}/verify`, { ...scope, repair: true }) : await client.callCluster('GET', `${clusterPath}/verify${queryOf(scope)}`)
  ) as VerifyAnswer;
  return { text: formatVerify(json), json, failed: verifyFailed(json) };
}

function queryOf(fields: Readonly<Record<string, string>>): string {
  const query = new URLSearchParams(fields).toString();
  return query === '' ? '' : `?${query}`;
}

/** This node's name, from GET /ping. */
async function nodeNameOf(client: AdminClient): Promise<string> {
  return ((await client.callAnonymous('GET', '/ping')) as PingAnswer).node;
}

/** One POST /access per permission; stops at the first refusal (the earlier ones stay applied, and are reported). */
async function changeAccess(command: Extract<AdminCommand, { kind: 'grant' | 'revoke' }>, client: AdminClient): Promise<CommandOutput> {
  const resource = command.bucket === undefined ? 'globally' : `on ${resourceName(command.bucket, command.stream)}`;
  const target = 'group' in command.target ? `group ${command.target.group}` : `user ${command.target.username}`;
  const answers: unknown[] = [];
  for (const [index, permission] of command.permissions.entries()) {
    try {
      answers.push(await client.call('POST', accessPath(command.bucket, command.stream), { ...command.target, permission, action: command.kind }));
    } catch (error) {
      if (index > 0 && error instanceof AnswerError) {
        const done = command.permissions.slice(0, index).join(',');
        throw new AnswerError(error.status, error.type, `${error.reason} (${command.kind} ${done} ${resource} was applied before this)`);
      }
      throw error;
    }
  }
  const verb = command.kind === 'grant' ? 'granted' : 'revoked';
  const preposition = command.kind === 'grant' ? 'to' : 'from';
  return { text: `${verb} ${command.permissions.join(',')} ${resource} ${preposition} ${target}`, json: answers.length === 1 ? answers[0] : answers };
}

export function formatPolicy(resource: string, policy: PolicyBody): string {
  const own = policyText(policy);
  return own === 'none' ? `policy of ${resource}: none of its own (its bucket's policy or the config default applies)` : `policy of ${resource}: ${own}`;
}

function accessPath(bucket: string | undefined, stream: string | undefined): string {
  if (bucket === undefined) return '/access';
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
  /** The node's version (absent from nodes before it was added). */
  version?: string;
}

/** GET /access, IorioDB's shape (DESIGN §4). */
interface AccessAnswer {
  users: { name: string; grants: string[] }[];
  groups: { name: string; grants: string[] }[];
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

export function formatGroups(groups: readonly GroupSummary[]): string {
  if (groups.length === 0) return '(no groups)';
  return groups.map((group) => (group.builtin ? `${group.name}  (built in)` : group.name)).join('\n');
}

export function formatGroup(group: GroupDetails): string {
  const lines = [`group ${group.name}${group.builtin ? ' (built in)' : ''}`, 'users:'];
  if (group.users.length === 0) lines.push('  (none)');
  for (const user of [...group.users].sort()) lines.push(`  ${user}`);
  return lines.join('\n');
}

/** `title`: `access to <bucket>[/<stream>]`, or the global scope's. */
export function formatAccess(title: string, access: AccessAnswer): string {
  const lines = [title];
  const section = (title: string, rows: { name: string; permissions: string[] }[]) => {
    lines.push(`${title}:`);
    if (rows.length === 0) lines.push('  (none)');
    const width = Math.max(0, ...rows.map((row) => row.name.length));
    for (const row of [...rows].sort((a, b) => a.name.localeCompare(b.name))) {
      lines.push(`  ${row.name.padEnd(width)}  ${row.permissions.join(', ')}`);
    }
  };
  section('users', access.users.map((user) => ({ name: user.name, permissions: user.grants })));
  section('groups', access.groups.map((group) => ({ name: group.name, permissions: group.grants })));
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
    ['version', ping.version ?? '?'],
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
