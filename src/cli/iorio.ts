import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { createLogger } from '../log.js';
import { StartupError } from '../core/errors.js';
import type { IorioNode } from '../node.js';
import { lockHolder, prepareDataFolder } from '../store/data-folder.js';
import { version, versionLine } from '../version.js';
import { exitCodes } from './exit-codes.js';
import { flagsNameAddress, nodeUrlOf, readText, recordedUrlOf, urlFileOf } from './node-url.js';
import { unknownCommandText } from './suggest.js';

/**
 * `iorio <command> [-c file] [--key value | --key=value ...]`
 *
 *   console  run the node in the foreground; SIGINT/SIGTERM stop it cleanly (exit 0)
 *   start    run the node in the background (log in <data>/log/iorio.log)
 *   stop     stop the node started from the same data folder, and wait for it
 *   ping     GET /ping on the node of this data folder
 *   status   whether the node of this data folder runs and answers
 *   version  this build's version
 *   help     the commands, or one command's help
 *
 * The running node keeps `<data>/iorio.pid` (its pid) and `<data>/iorio.url`
 * (its HTTP URL, useful when http.port = 0) while it runs; which node a
 * command is about is decided by the data folder's lock (store/data-folder.ts).
 *
 * Exit statuses (cli/exit-codes.ts, the same for iorio-admin and ioriocli):
 * 0 done, 1 failed (a start-up failure, a bad configuration, a node not
 * running or not answering), 2 usage error, 3 `status`: not running (LSB).
 */

interface CommandHelp {
  readonly summary: string;
  readonly details: string;
}

const configFlagsHelp = `  -c, --config <file>  the configuration file (default: built-in defaults)
  --<key> <value>      any config key: --http.port 8081, --paths.data /var/lib/iorio`;

const commandHelp: Readonly<Record<string, CommandHelp>> = {
  console: {
    summary: 'run the node in the foreground (Ctrl-C stops it cleanly)',
    details: `Runs the node in the foreground, logging JSON lines to stdout. SIGINT or
SIGTERM stops it cleanly (flush, close, exit 0). A start-up failure prints one
line naming what to change and exits 1.`,
  },
  start: {
    summary: 'run the node in the background, logging to <paths.data>/log/iorio.log',
    details: `Starts the node in the background and waits until it answers. Exits 0 once
it does, 1 with the node's one-line reason when it could not start (a port in
use, a data folder it cannot write...), or when a node already runs on the
data folder.`,
  },
  stop: {
    summary: 'stop the node of this data folder and wait until it has exited',
    details: 'Sends SIGTERM to the node holding the data folder\'s lock and waits until it\nhas exited. Exits 1 when no node runs on the data folder.',
  },
  ping: {
    summary: 'check that the node of this data folder answers',
    details: `GET /ping on the node running on the data folder (or on the address given
with --http.host / --http.port). Prints pong and exits 0, or says the node is
not responding and exits 1 (after 5 s for a hung node).`,
  },
  status: {
    summary: "show whether the node of this data folder runs, its pid, URL and version",
    details: `Reports the node holding the data folder's lock only, never another node that
happens to answer on the same address. Exit status: 0 running and answering,
1 running but not responding (hung, stopped with SIGSTOP, or still starting),
3 not running (as LSB init scripts do).`,
  },
  version: { summary: "print this build's version", details: 'Prints the version of iorio and of Node.js. Also: iorio --version.' },
  help: { summary: 'list the commands, or show one command\'s help', details: 'iorio help <command> is the same as iorio <command> --help.' },
};

const commandNames = Object.keys(commandHelp);

const usage = `usage: iorio <command> [-c config-file] [--<key> <value> ...]

commands:
${commandNames.map((name) => `  ${name.padEnd(8)} ${commandHelp[name]!.summary}`).join('\n')}

options:
${configFlagsHelp}
  -h, --help           this text, or a command's help (iorio <command> --help)
  --version            the version

Tools find the node by --http.host/--http.port if given, else the URL the
node of paths.data recorded, else http.host:http.port from the configuration.

exit status: 0 done, 1 failed (start-up failure, bad configuration, node not
running or not answering), 2 usage error, 3 status: not running`;

const shortUsage = 'usage: iorio <console|start|stop|ping|status|version|help> [-c config-file] [--<key> <value> ...]\n(iorio help lists the commands; iorio <command> --help explains one)';

function helpOf(command: string): string {
  const help = commandHelp[command]!;
  const options = command === 'version' || command === 'help' ? '' : `\n\noptions:\n${configFlagsHelp}`;
  return `usage: iorio ${command}${command === 'help' ? ' [<command>]' : command === 'version' ? '' : ' [-c config-file] [--<key> <value> ...]'}\n\n${help.details}${options}`;
}

/** Bounds of the waits of start, stop and ping. */
const startWaitMs = 30_000;
const stopWaitMs = 60_000;
const pingTimeoutMs = 5_000;
const pollIntervalMs = 100;

export interface CliArguments {
  command: string | undefined;
  /** Words after the command (only `help <command>` takes one). */
  operands: string[];
  file: string | undefined;
  flags: Record<string, string>;
  help: boolean;
}

/** Parses `command -c file --key value --key=value`. Pure; throws UsageError on a malformed line. */
export function parseArguments(argv: readonly string[]): CliArguments {
  const parsed: CliArguments = { command: undefined, operands: [], file: undefined, flags: {}, help: false };
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index]!;
    if (argument === '-c' || argument === '--config') {
      parsed.file = valueAfter(argv, index, argument);
      index += 1;
    } else if (argument === '-h' || argument === '--help') {
      parsed.help = true;
    } else if (argument === '--version' || argument === '-V') {
      parsed.command ??= 'version';
    } else if (argument.startsWith('--')) {
      const equals = argument.indexOf('=');
      if (equals !== -1) {
        parsed.flags[argument.slice(2, equals)] = argument.slice(equals + 1);
      } else {
        parsed.flags[argument.slice(2)] = valueAfter(argv, index, argument);
        index += 1;
      }
    } else if (argument.startsWith('-') && argument.length > 1) {
      throw new UsageError(`unknown option "${argument}" (config keys are given as --<key> <value>)`);
    } else if (parsed.command === undefined) {
      parsed.command = argument;
    } else if (parsed.command === 'help' && parsed.operands.length === 0) {
      parsed.operands.push(argument);
    } else {
      throw new UsageError(`unexpected argument "${argument}"`);
    }
  }
  return parsed;
}

function valueAfter(argv: readonly string[], index: number, name: string): string {
  const value = argv[index + 1];
  if (value === undefined) throw new UsageError(`${name} needs a value`);
  return value;
}

class UsageError extends Error {}

/** What `help`, `--help` and `version` print, without loading any configuration; undefined for the node commands. */
function answerWithoutConfig(parsed: CliArguments): { text: string; code: number } | undefined {
  const { command } = parsed;
  if (command === undefined) return parsed.help ? { text: usage, code: exitCodes.ok } : undefined;
  if (!commandNames.includes(command)) throw new UsageError(unknownCommandText(command, commandNames));
  if (command === 'help') {
    const topic = parsed.operands[0];
    if (topic === undefined) return { text: usage, code: exitCodes.ok };
    if (!commandNames.includes(topic)) throw new UsageError(unknownCommandText(topic, commandNames));
    return { text: helpOf(topic), code: exitCodes.ok };
  }
  if (parsed.help) return { text: helpOf(command), code: exitCodes.ok };
  if (command === 'version') return { text: versionLine('iorio'), code: exitCodes.ok };
  return undefined;
}

/** Runs one `iorio` command; resolves to the process exit code. */
export async function runIorio(argv: readonly string[]): Promise<number> {
  let parsed: CliArguments;
  let config: Config;
  try {
    parsed = parseArguments(argv);
    const answer = answerWithoutConfig(parsed);
    if (answer !== undefined) {
      process.stdout.write(`${answer.text}\n`);
      return answer.code;
    }
    if (parsed.command === undefined) throw new UsageError('no command given');
    config = loadConfig({
      ...(parsed.file === undefined ? {} : { file: parsed.file }),
      env: process.env,
      flags: parsed.flags,
      warn: (message) => process.stderr.write(`iorio: warning: ${message}\n`),
    });
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`iorio: ${error.message}\n${shortUsage}\n`);
      return exitCodes.usage;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`iorio: ${error.message}\n`);
      return exitCodes.failed;
    }
    throw error;
  }
  switch (parsed.command) {
    case 'console':
      return runConsole(config);
    case 'start':
      return start(config, parsed);
    case 'stop':
      return stop(config);
    case 'ping':
      return ping(config, parsed);
    default:
      return status(config, parsed);
  }
}

function pidFileOf(config: Config): string {
  return join(config['paths.data'], 'iorio.pid');
}

/** The pid of the node running on this data folder (the holder of its lock), if one does. */
function runningPid(config: Config): number | undefined {
  const holder = lockHolder(config['paths.data']);
  if (holder === undefined) return undefined;
  // Locked a moment ago, pid not yet written: the pid file is written later still, so read the lock again.
  return holder.pid ?? lockHolder(config['paths.data'])?.pid;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The node's URL: the one it recorded when running, else the configured one. */
async function runConsole(config: Config): Promise<number> {
  const logger = createLogger(config);
  logger.info({ version, node_version: process.versions.node, data: config['paths.data'] }, `starting iorio ${version}`);
  let node: IorioNode;
  try {
    // Loaded here, not at the top: the other commands (version, help, status) answer without loading the server.
    const { startNode } = await import('../node.js');
    node = await startNode(config, { logger });
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    logger.fatal({ reason: error.message }, 'the node cannot start');
    logger.flush();
    process.stderr.write(`iorio: ${error.message}\n`);
    return exitCodes.failed;
  }
  if (await node.auth.adminPasswordIsDefault()) {
    process.stderr.write(`iorio: warning: the admin user ${config['auth.admin.username']} still has the default password; change it with iorio-admin user passwd ${config['auth.admin.username']} <new-password>\n`);
  }
  writeNodeFiles(config, node.httpUrl, logger);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  logger.info({ signal }, 'stopping on signal');
  // A second signal while stopping gives up on the graceful stop.
  const forceExit = (second: NodeJS.Signals) => {
    logger.warn({ signal: second }, 'second signal: exiting without a clean stop');
    process.exit(130);
  };
  process.once('SIGINT', forceExit);
  process.once('SIGTERM', forceExit);
  try {
    await node.stop();
    return 0;
  } catch (error) {
    logger.error({ err: error }, 'stopping failed');
    return 1;
  } finally {
    rmSync(urlFileOf(config), { force: true });
    rmSync(pidFileOf(config), { force: true });
    logger.flush();
  }
}

/**
 * The pid and URL files tools read. On a full disk they may not be
 * writable: the node serves anyway (the lock file names its pid).
 */
function writeNodeFiles(config: Config, url: string, logger: ReturnType<typeof createLogger>): void {
  // Written aside, then renamed: a tool reading them never sees a file created but not yet written.
  const writeWhole = (file: string, text: string): void => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  try {
    writeWhole(pidFileOf(config), `${process.pid}\n`);
    writeWhole(urlFileOf(config), `${url}\n`);
  } catch (error) {
    logger.warn({ code: (error as NodeJS.ErrnoException).code }, 'could not write the pid and URL files in the data folder');
  }
}

/** This process's own entry point (dist/src/main.js), to run `console` in a detached child. */
function mainScript(): string {
  return fileURLToPath(new URL('../main.js', import.meta.url));
}

/** Prepares the data folder and opens the log for appending: a StartupError naming the folder when it cannot. */
function openLog(config: Config): { file: string; fd: number } {
  prepareDataFolder(config['paths.data']);
  const logDir = join(config['paths.data'], 'log');
  const file = join(logDir, 'iorio.log');
  try {
    mkdirSync(logDir, { recursive: true });
    return { file, fd: openSync(file, 'a') };
  } catch (error) {
    throw new StartupError(`cannot write the log file ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); fix the owner or mode of ${logDir}, or choose another data folder with paths.data`);
  }
}

async function start(config: Config, parsed: CliArguments): Promise<number> {
  const running = runningPid(config);
  if (running !== undefined) {
    process.stderr.write(`iorio: already running (pid ${running}) on the data folder ${config['paths.data']}\n`);
    return exitCodes.failed;
  }
  let log: { file: string; fd: number };
  try {
    log = openLog(config);
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    process.stderr.write(`iorio: ${error.message}\n`);
    return exitCodes.failed;
  }
  rmSync(pidFileOf(config), { force: true });
  const logStart = fstatSync(log.fd).size;
  const consoleArgs = ['console', ...(parsed.file === undefined ? [] : ['-c', resolvePath(parsed.file)])];
  for (const [key, value] of Object.entries(parsed.flags)) consoleArgs.push(`--${key}=${value}`);
  const child = spawn(process.execPath, [mainScript(), ...consoleArgs], { detached: true, stdio: ['ignore', log.fd, log.fd] });
  closeSync(log.fd);
  let exitCode: number | null | undefined;
  child.once('exit', (code) => {
    exitCode = code;
  });
  child.unref();
  const deadline = Date.now() + startWaitMs;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      process.stderr.write(`${startFailureLine(readFileSync(log.file, 'utf8').slice(logStart), exitCode, log.file)}\n`);
      return exitCodes.failed;
    }
    if (readText(pidFileOf(config)) === String(child.pid)) {
      process.stdout.write(`iorio started (pid ${child.pid}) at ${nodeUrlOf(config)}; log: ${log.file}\n`);
      return exitCodes.ok;
    }
    await sleep(pollIntervalMs);
  }
  process.stderr.write(`iorio: the node did not start within ${startWaitMs / 1000} s; see ${log.file}\n`);
  return exitCodes.failed;
}

/**
 * The one line `start` prints when the node exited while starting: the
 * node's own reason (the last `iorio: ` line it wrote, not a warning),
 * else its exit code and where its log is. Pure.
 */
export function startFailureLine(logText: string, exitCode: number | null, logFile: string): string {
  const reason = logText
    .split('\n')
    .filter((line) => line.startsWith('iorio: ') && !line.startsWith('iorio: warning: '))
    .pop();
  return reason ?? `iorio: the node exited during start (code ${exitCode}); see ${logFile}`;
}

async function stop(config: Config): Promise<number> {
  const pid = runningPid(config);
  if (pid === undefined || pid <= 0) {
    process.stderr.write(`iorio: not running (no node holds the lock of ${config['paths.data']})\n`);
    return exitCodes.failed;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + stopWaitMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) {
      process.stdout.write('ok\n');
      return exitCodes.ok;
    }
    await sleep(pollIntervalMs);
  }
  process.stderr.write(`iorio: pid ${pid} did not stop within ${stopWaitMs / 1000} s\n`);
  return exitCodes.failed;
}

interface PingAnswer {
  pong: string;
  node: string;
  version?: string;
}

async function pingUrl(url: string): Promise<PingAnswer | string> {
  const target = `${url}/ping`;
  try {
    const response = await fetch(target, { signal: AbortSignal.timeout(pingTimeoutMs) });
    if (response.status !== 200) return `${target} answered ${response.status}`;
    return (await response.json()) as PingAnswer;
  } catch (error) {
    if ((error as Error).name === 'TimeoutError') return `no answer from ${target} within ${pingTimeoutMs / 1000} s`;
    const cause = (error as Error & { cause?: unknown }).cause;
    return `${target}: ${cause instanceof Error ? cause.message : (error as Error).message}`;
  }
}

/**
 * The URL of the node this command is about: the address flags when given,
 * else the one the node of this data folder recorded; undefined when no node
 * runs on the folder and no address was given (nothing of ours to ask).
 */
function urlOfOwnNode(config: Config, parsed: CliArguments): string | undefined {
  if (flagsNameAddress(parsed.flags)) return nodeUrlOf(config, { explicitAddress: true });
  if (runningPid(config) === undefined) return undefined;
  return recordedUrlOf(config) ?? nodeUrlOf(config, { explicitAddress: true });
}

async function ping(config: Config, parsed: CliArguments): Promise<number> {
  const url = urlOfOwnNode(config, parsed);
  const answer = url === undefined ? `no node runs on the data folder ${config['paths.data']}` : await pingUrl(url);
  if (typeof answer === 'string') {
    process.stderr.write(`Node '${config.nodename}' not responding to pings (${answer})\n`);
    return exitCodes.failed;
  }
  process.stdout.write('pong\n');
  return exitCodes.ok;
}

async function status(config: Config, parsed: CliArguments): Promise<number> {
  const pid = runningPid(config);
  const url = urlOfOwnNode(config, parsed);
  // Not running: the address it would answer on, from the configuration.
  const shownUrl = url ?? nodeUrlOf(config, { explicitAddress: true });
  const lines = [`node:    ${config.nodename}`, `data:    ${config['paths.data']}`, `pid:     ${pid ?? '-'}`, `url:     ${shownUrl}`];
  if (pid === undefined) {
    lines.push('status:  not running');
    process.stdout.write(`${lines.join('\n')}\n`);
    return exitCodes.notRunning;
  }
  const answer = await pingUrl(url!);
  if (typeof answer === 'string') {
    lines.push(`ping:    no answer (${answer})`, `status:  not responding (pid ${pid} holds the data folder: hung, stopped or still starting)`);
    process.stdout.write(`${lines.join('\n')}\n`);
    return exitCodes.failed;
  }
  lines.push(`version: ${answer.version ?? '?'}`, `ping:    pong (partition ${answer.pong}, node ${answer.node})`, 'status:  running');
  process.stdout.write(`${lines.join('\n')}\n`);
  return exitCodes.ok;
}
