/**
 * ioriocli's commands. Each takes its arguments as strings and returns what
 * to print (JSON), or streams lines itself (tail). Errors are thrown: ApiError
 * for the node's answers, UsageError for bad arguments.
 */
import { ApiError, IorioClient, isRecord, streamPath, type Subscription } from '../common/client.js';
import { sleep } from '../common/stats.js';
import { parsePolicySettings, policyPath, PolicySyntaxError } from '../../src/cli/policy.js';
import { formatStreamInfo, streamInfoPath, type StreamInfoAnswer } from '../../src/cli/stream-info.js';
import { unknownCommandText } from '../../src/cli/suggest.js';
import { versionLine } from '../../src/version.js';
import { parseJsonArgument } from './args.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Session {
  readonly client: IorioClient;
  username: string | undefined;
  /** Where tail writes its events, one JSON line each. */
  readonly writeLine: (line: string) => void;
}

export interface Command {
  readonly name: string;
  /** Parameter names; `[name]` is optional. */
  readonly params: readonly string[];
  /** The last parameter takes the rest of the line verbatim (JSON). */
  readonly rawLast?: boolean;
  readonly summary: string;
  /** Arguments completed from the node's lists: bucket names at position 0, stream names at 1. */
  readonly completes?: 'bucket' | 'bucket-stream';
  run(session: Session, args: readonly string[], signal: AbortSignal): Promise<unknown>;
}

/** Long-poll timeout tail uses; a Ctrl-C interrupts it at once. */
export const tailPollSecs = 25;

const permissions = ['get', 'put', 'delete', 'grant', 'list', 'adminusers', 'viewstats'] as const;

function requiredCount(command: Command): number {
  return command.params.filter((param) => !param.startsWith('[')).length;
}

export function usageOf(command: Command): string {
  return [command.name, ...command.params.map((param) => (param.startsWith('[') ? param : `<${param}>`))].join(' ');
}

function seqnumArgument(name: string, raw: string | undefined, min: number): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min) throw new UsageError(`${name} must be an integer ≥ ${min}, got "${raw}"`);
  return value;
}

/** `bucket` or `bucket/stream` (names cannot hold a slash). */
function resourceArgument(raw: string): { bucket: string; stream?: string } {
  const [bucket, stream, extra] = raw.split('/');
  if (bucket === undefined || bucket === '' || stream === '' || extra !== undefined) throw new UsageError(`expected <bucket> or <bucket>/<stream>, got "${raw}"`);
  return stream === undefined ? { bucket } : { bucket, stream };
}

/** `alice` or `group:g-admin`. */
function granteeArgument(raw: string): { username: string } | { group: string } {
  if (raw.startsWith('group:')) {
    const group = raw.slice('group:'.length);
    if (group === '') throw new UsageError('expected group:<name>');
    return { group };
  }
  return { username: raw };
}

/** `<permission> on <bucket>[/<stream>] to|from <grantee>`, or `<permission> to|from <grantee>`: globally (POST /access). */
async function changeAccess(session: Session, args: readonly string[], action: 'grant' | 'revoke'): Promise<unknown> {
  const preposition = action === 'grant' ? 'to' : 'from';
  const global = args.length === 3;
  const [permission, on, resource, to, grantee] = (global ? [args[0], 'on', undefined, args[1], args[2]] : args) as [string, string, string | undefined, string, string];
  if ((args.length !== 3 && args.length !== 5) || on !== 'on' || to !== preposition) {
    throw new UsageError(`usage: ${action} <permission> [on <bucket>[/<stream>]] ${preposition} <user|group:name>`);
  }
  if (!(permissions as readonly string[]).includes(permission)) throw new UsageError(`permission must be one of ${permissions.join(', ')}`);
  let path = '/access';
  if (resource !== undefined) {
    const { bucket, stream } = resourceArgument(resource);
    path = stream === undefined ? `/access/${encodeURIComponent(bucket)}` : `/access/${encodeURIComponent(bucket)}/${encodeURIComponent(stream)}`;
  }
  const body = { ...granteeArgument(grantee), permission, action };
  return (await session.client.expect([200, 201], 'POST', path, { body: JSON.stringify(body) })).body;
}

/** Follows one stream with long-polls, resuming from the last id + 1, until aborted (or `count` events). */
async function tail(session: Session, bucket: string, stream: string, from: number | undefined, count: number | undefined, signal: AbortSignal): Promise<void> {
  let next = from;
  let seen = 0;
  while (!signal.aborted && (count === undefined || seen < count)) {
    const subscription: Subscription = next === undefined ? { bucket, stream } : { bucket, stream, from: next };
    let events;
    try {
      ({ events } = await session.client.listen([subscription], tailPollSecs, signal));
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status === 429) {
        await sleep(500, signal);
        continue;
      }
      throw error;
    }
    for (const event of events) {
      if (isRecord(event) && isRecord(event.meta) && typeof event.meta.id === 'number') next = Math.max(next ?? 0, event.meta.id + 1);
      session.writeLine(JSON.stringify(event));
      seen += 1;
      if (count !== undefined && seen >= count) return;
    }
  }
}

export const commands: readonly Command[] = [
  {
    name: 'help',
    params: ['[command]'],
    summary: 'list the commands, or show one',
    async run(_session, [name]) {
      if (name === undefined) return commands.map((command) => `${usageOf(command).padEnd(52)} ${command.summary}`).join('\n');
      const command = findCommand(name);
      if (command === undefined) throw new UsageError(unknownCommandError(name));
      return `${usageOf(command)}\n  ${command.summary}`;
    },
  },
  {
    name: 'version',
    params: [],
    summary: "this client's version (the node's is in ping)",
    async run() {
      return versionLine('ioriocli');
    },
  },
  {
    name: 'login',
    params: ['username', 'password'],
    summary: 'start a session (the token is kept in memory only)',
    async run(session, [username, password]) {
      await session.client.login(username as string, password as string);
      session.username = username;
      return { ok: true, username };
    },
  },
  {
    name: 'whoami',
    params: [],
    summary: 'who the session belongs to (GET /sessions)',
    async run(session) {
      return (await session.client.expect([200], 'GET', '/sessions')).body;
    },
  },
  {
    name: 'ping',
    params: [],
    summary: 'is the node up (GET /ping)',
    async run(session) {
      return (await session.client.expect([200], 'GET', '/ping')).body;
    },
  },
  {
    name: 'put',
    params: ['bucket', 'stream', 'json'],
    rawLast: true,
    completes: 'bucket-stream',
    summary: 'append a JSON value to a stream',
    async run(session, [bucket, stream, json]) {
      return { meta: await session.client.append(bucket as string, stream as string, parseJsonArgument(json as string)) };
    },
  },
  {
    name: 'patch',
    params: ['bucket', 'stream', 'json-patch'],
    rawLast: true,
    completes: 'bucket-stream',
    summary: 'apply an RFC 6902 JSON Patch to the last entry and append the result',
    async run(session, [bucket, stream, json]) {
      return { meta: await session.client.patch(bucket as string, stream as string, parseJsonArgument(json as string)) };
    },
  },
  {
    name: 'get',
    params: ['bucket', 'stream', '[limit]', '[from]'],
    completes: 'bucket-stream',
    summary: 'read the last <limit> entries (10), or <limit> from seqnum <from>',
    async run(session, [bucket, stream, limit, from]) {
      const count = seqnumArgument('limit', limit, 0) ?? 10;
      return session.client.read(bucket as string, stream as string, count, seqnumArgument('from', from, 1));
    },
  },
  {
    name: 'tail',
    params: ['bucket', 'stream', '[from]', '[count]'],
    completes: 'bucket-stream',
    summary: 'print new entries as they arrive (from seqnum <from> if given) until Ctrl-C or <count> entries',
    async run(session, [bucket, stream, from, count], signal) {
      await tail(session, bucket as string, stream as string, seqnumArgument('from', from, 1), seqnumArgument('count', count, 1), signal);
      return undefined;
    },
  },
  {
    name: 'info',
    params: ['bucket', 'stream', '[--json]'],
    completes: 'bucket-stream',
    summary: "a stream's first and last seqnum, entries, bytes, chunks and the policy in force (--json: the node's answer)",
    async run(session, [bucket, stream, json]) {
      if (json !== undefined && json !== '--json') throw new UsageError(`usage: ${usageOf(this)}`);
      const info = (await session.client.expect([200], 'GET', streamInfoPath(bucket as string, stream as string))).body as StreamInfoAnswer;
      return json === undefined ? formatStreamInfo(info) : info;
    },
  },
  {
    name: 'delete',
    params: ['bucket', 'stream'],
    completes: 'bucket-stream',
    summary: 'delete a stream',
    async run(session, [bucket, stream]) {
      return session.client.deleteStream(bucket as string, stream as string);
    },
  },
  {
    name: 'buckets',
    params: [],
    summary: 'list buckets',
    async run(session) {
      return (await session.client.expect([200], 'GET', '/buckets')).body;
    },
  },
  {
    name: 'streams',
    params: ['bucket'],
    completes: 'bucket',
    summary: 'list the streams of a bucket',
    async run(session, [bucket]) {
      return (await session.client.expect([200], 'GET', streamPath(bucket as string))).body;
    },
  },
  {
    name: 'users',
    params: [],
    summary: 'list users (admin)',
    async run(session) {
      return (await session.client.expect([200], 'GET', '/users')).body;
    },
  },
  {
    name: 'useradd',
    params: ['username', 'password'],
    summary: 'create a user (admin)',
    async run(session, [username, password]) {
      return (await session.client.expect([201], 'POST', '/users', { body: JSON.stringify({ username, password }) })).body;
    },
  },
  {
    name: 'grant',
    params: ['permission', '[on]', '[bucket[/stream]]', 'to', 'user|group:name'],
    summary: `grant a permission (${permissions.join(', ')}); without on <bucket>: globally (adminusers, viewstats)`,
    async run(session, args) {
      return changeAccess(session, args, 'grant');
    },
  },
  {
    name: 'revoke',
    params: ['permission', '[on]', '[bucket[/stream]]', 'from', 'user|group:name'],
    summary: 'revoke a permission (without on <bucket>: a global one)',
    async run(session, args) {
      return changeAccess(session, args, 'revoke');
    },
  },
  {
    name: 'access',
    params: ['[bucket[/stream]]'],
    completes: 'bucket',
    summary: 'who may do what on a bucket or stream (without one: the global grants)',
    async run(session, [resource]) {
      if (resource === undefined) return (await session.client.expect([200], 'GET', '/access')).body;
      const { bucket, stream } = resourceArgument(resource);
      const path = stream === undefined ? `/access/${encodeURIComponent(bucket)}` : `/access/${encodeURIComponent(bucket)}/${encodeURIComponent(stream)}`;
      return (await session.client.expect([200], 'GET', path)).body;
    },
  },
  {
    name: 'policy',
    params: ['get|set|del', 'bucket[/stream]', '[max_count=N]', '[max_bytes=SIZE]', '[max_age=DURATION]'],
    completes: 'bucket',
    summary: 'the eviction policy of a bucket or stream: get it, set it (e.g. max_bytes=512MB max_age=7d), or del it',
    async run(session, [action, resource, ...settings]) {
      const { bucket, stream } = resourceArgument(resource as string);
      const path = policyPath(bucket, stream);
      switch (action) {
        case 'get':
          if (settings.length > 0) throw new UsageError('usage: policy get <bucket[/stream]>');
          return (await session.client.expect([200], 'GET', path)).body;
        case 'set': {
          if (settings.length === 0) throw new UsageError('usage: policy set <bucket[/stream]> [max_count=N] [max_bytes=SIZE] [max_age=DURATION]');
          let body;
          try {
            body = parsePolicySettings(settings);
          } catch (error) {
            throw error instanceof PolicySyntaxError ? new UsageError(error.message) : error;
          }
          return (await session.client.expect([200], 'PUT', path, { body: JSON.stringify(body) })).body;
        }
        case 'del':
          if (settings.length > 0) throw new UsageError('usage: policy del <bucket[/stream]>');
          return (await session.client.expect([200], 'DELETE', path)).body;
        default:
          throw new UsageError(unknownCommandText(action as string, ['get', 'set', 'del'], 'policy action'));
      }
    },
  },
];

/** `unknown command "x"; did you mean y? (try help)`. */
export function unknownCommandError(name: string): string {
  return `${unknownCommandText(name, [...commands.map((command) => command.name), ...exitWords])} (try help)`;
}

/** Names the REPL also accepts to leave. */
export const exitWords = ['exit', 'quit'] as const;

export function findCommand(name: string): Command | undefined {
  return commands.find((command) => command.name === name);
}

/** Checks the argument count and runs the command. */
export async function runCommand(session: Session, command: Command, args: readonly string[], signal: AbortSignal): Promise<unknown> {
  const required = requiredCount(command);
  if (args.length < required || args.length > command.params.length) throw new UsageError(`usage: ${usageOf(command)}`);
  return command.run(session, args, signal);
}
