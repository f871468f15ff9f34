#!/usr/bin/env node
/**
 * ioriocli: an interactive client for an Iorio node, or one command per run.
 *
 *   ioriocli [--url U | --host H --port P] [--user U --password P] [command args...]
 *
 * With a command it runs it, prints JSON and exits (1 when the node answered
 * with an error, 2 on bad usage). Without one it reads commands from stdin: a
 * REPL with line editing, history and completion on a terminal, a script
 * otherwise (exit status 1 if any command failed). Credentials come from the
 * flags or IORIO_USER / IORIO_PASSWORD; the session token lives in memory.
 */
import { parseArgs } from 'node:util';
import { toolNodeUrlOf } from '../../src/cli/node-url.js';
import { versionLine } from '../../src/version.js';
import { ApiError, IorioClient } from '../common/client.js';
import { findCommand, runCommand, unknownCommandError, UsageError, type Command, type Session } from './commands.js';
import { runRepl } from './repl.js';

const usage = `usage: ioriocli [flags] [command [args...]]

flags:
  --url <url>             node base URL
  -H, --host <host>       node host (with -P: http://<host>:<port>)
  -P, --port <port>       node HTTP port
  -u, --user <name>       log in as this user (or IORIO_USER)
  -p, --password <pass>   its password (or IORIO_PASSWORD)
  -h, --help              this text; \`ioriocli help\` lists the commands
  -V, --version           the version

Where the node is: --url, else -H/-P when given (the other half from
IORIO_HTTP_HOST / IORIO_HTTP_PORT or 127.0.0.1:8080), else the URL the node
running on ./data (or $IORIO_PATHS_DATA) recorded in iorio.url, else
http://127.0.0.1:8080, as for iorio and iorio-admin.

Without a command, commands are read from stdin (a REPL on a terminal).
Exit status: 0 done, 1 the node answered with an error or could not be
reached, 2 usage error.`;

const shortUsage = 'usage: ioriocli [--url U | -H host -P port] [-u user -p password] [command [args...]]\n(ioriocli --help explains the flags; ioriocli help lists the commands)';

const valueFlags = new Set(['--url', '-H', '--host', '-P', '--port', '-u', '--user', '-p', '--password']);

/** Global flags come before the command; everything after it is the command's, verbatim (JSON may start with '-'). */
function splitArgv(argv: readonly string[]): { flags: string[]; command: string[] } {
  let index = 0;
  while (index < argv.length && (argv[index] as string).startsWith('-')) {
    const flag = argv[index] as string;
    index += valueFlags.has(flag) ? 2 : 1;
  }
  return { flags: argv.slice(0, index), command: argv.slice(index) };
}

function errorJson(error: unknown): string {
  if (error instanceof ApiError) return JSON.stringify(error.toJSON());
  return JSON.stringify({ type: 'client-error', reason: error instanceof Error ? error.message : String(error) });
}

function printResult(result: unknown): void {
  if (result === undefined) return;
  process.stdout.write((typeof result === 'string' ? result : JSON.stringify(result, null, 2)) + '\n');
}

/** Runs a command and prints its result or its error: the exit status (0 ok, 1 failed, 2 bad usage). */
async function execute(session: Session, command: Command, args: string[], signal: AbortSignal): Promise<number> {
  try {
    printResult(await runCommand(session, command, args, signal));
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`ioriocli: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(errorJson(error) + '\n');
    return 1;
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const split = splitArgv(argv);
  let values;
  try {
    ({ values } = parseArgs({
      args: split.flags,
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: 'string' },
        host: { type: 'string', short: 'H' },
        port: { type: 'string', short: 'P' },
        user: { type: 'string', short: 'u' },
        password: { type: 'string', short: 'p' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
    }));
  } catch (error) {
    process.stderr.write(`ioriocli: ${error instanceof Error ? error.message : String(error)}\n${shortUsage}\n`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(usage + '\n');
    return 0;
  }
  if (values.version === true) {
    process.stdout.write(versionLine('ioriocli') + '\n');
    return 0;
  }
  const baseUrl = toolNodeUrlOf({ url: values.url, host: values.host, port: values.port }, process.env);
  const session: Session = {
    client: new IorioClient({ baseUrl }),
    username: undefined,
    writeLine: (line) => process.stdout.write(line + '\n'),
  };
  try {
    const user = values.user ?? (process.env['IORIO_USER'] || undefined);
    const password = values.password ?? (process.env['IORIO_PASSWORD'] || undefined);
    if (user !== undefined) {
      if (password === undefined) {
        process.stderr.write('ioriocli: a user needs a password (--password or IORIO_PASSWORD)\n');
        return 2;
      }
      try {
        await session.client.login(user, password);
        session.username = user;
      } catch (error) {
        process.stderr.write(errorJson(error) + '\n');
        if (split.command.length > 0) return 1;
      }
    }
    if (split.command.length > 0) return await runOnce(session, split.command);
    const failures = await runRepl(session, {
      input: process.stdin,
      output: process.stdout,
      terminal: process.stdin.isTTY === true && process.stdout.isTTY === true,
      execute: async (command, args, signal) => (await execute(session, command, args, signal)) === 0,
      reportUsage: (message) => process.stderr.write(`ioriocli: ${message}\n`),
    });
    return failures === 0 ? 0 : 1;
  } finally {
    session.client.close();
  }
}

async function runOnce(session: Session, argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv as [string, ...string[]];
  const command = findCommand(name);
  if (command === undefined) {
    process.stderr.write(`ioriocli: ${unknownCommandError(name)}\n`);
    return 2;
  }
  // An unquoted JSON value split by the shell is joined back.
  const args = command.rawLast && rest.length > command.params.length ? [...rest.slice(0, command.params.length - 1), rest.slice(command.params.length - 1).join(' ')] : rest;
  const abort = new AbortController();
  const onInterrupt = (): void => abort.abort();
  process.once('SIGINT', onInterrupt);
  try {
    return await execute(session, command, args, abort.signal);
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`ioriocli: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
