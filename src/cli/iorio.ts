import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { createLogger } from '../log.js';
import { StartupError } from '../core/errors.js';
import { startNode, type IorioNode } from '../node.js';
import { lockHolder } from '../store/data-folder.js';
import { nodeUrlOf, readText, urlFileOf } from './node-url.js';

/**
 * `iorio <command> [-c file] [--key value | --key=value ...]`
 *
 *   console  run the node in the foreground; SIGINT/SIGTERM stop it cleanly (exit 0)
 *   start    run the node in the background (log in <data>/log/iorio.log)
 *   stop     stop the node started from the same data folder, and wait for it
 *   ping     GET /ping on the node
 *   status   whether the node runs, its pid, its URL, whether it answers
 *
 * The running node keeps `<data>/iorio.pid` (its pid) and `<data>/iorio.url`
 * (its HTTP URL, useful when http.port = 0) while it runs.
 */

const usage = `usage: iorio <console|start|stop|ping|status> [-c config-file] [--<key> <value> ...]

  console  run the node in the foreground (Ctrl-C stops it cleanly)
  start    run the node in the background, logging to <paths.data>/log/iorio.log
  stop     stop the background node and wait until it has exited
  ping     check that the node answers
  status   show whether the node runs, its pid and URL

Every config key can be given as a flag: --http.port 8081, --paths.data /var/lib/iorio`;

/** Bounds of the waits of start, stop and ping. */
const startWaitMs = 30_000;
const stopWaitMs = 60_000;
const pingTimeoutMs = 5_000;
const pollIntervalMs = 100;

export interface CliArguments {
  command: string | undefined;
  file: string | undefined;
  flags: Record<string, string>;
}

/** Parses `command -c file --key value --key=value`. Pure; throws on a malformed line. */
export function parseArguments(argv: readonly string[]): CliArguments {
  const flags: Record<string, string> = {};
  let command: string | undefined;
  let file: string | undefined;
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index]!;
    if (argument === '-c' || argument === '--config') {
      file = valueAfter(argv, index, argument);
      index += 1;
    } else if (argument === '-h' || argument === '--help') {
      command = 'help';
    } else if (argument.startsWith('--')) {
      const equals = argument.indexOf('=');
      if (equals !== -1) {
        flags[argument.slice(2, equals)] = argument.slice(equals + 1);
      } else {
        flags[argument.slice(2)] = valueAfter(argv, index, argument);
        index += 1;
      }
    } else if (command === undefined) {
      command = argument;
    } else {
      throw new UsageError(`unexpected argument "${argument}"`);
    }
  }
  return { command, file, flags };
}

function valueAfter(argv: readonly string[], index: number, name: string): string {
  const value = argv[index + 1];
  if (value === undefined) throw new UsageError(`${name} needs a value`);
  return value;
}

class UsageError extends Error {}

/** Runs one `iorio` command; resolves to the process exit code. */
export async function runIorio(argv: readonly string[]): Promise<number> {
  let parsed: CliArguments;
  let config: Config;
  try {
    parsed = parseArguments(argv);
    if (parsed.command === undefined || parsed.command === 'help') {
      process.stdout.write(`${usage}\n`);
      return parsed.command === 'help' ? 0 : 1;
    }
    config = loadConfig({ ...(parsed.file === undefined ? {} : { file: parsed.file }), env: process.env, flags: parsed.flags });
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError) {
      process.stderr.write(`iorio: ${error.message}\n${error instanceof UsageError ? `${usage}\n` : ''}`);
      return 1;
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
      return ping(config);
    case 'status':
      return status(config);
    default:
      process.stderr.write(`iorio: unknown command "${parsed.command}"\n${usage}\n`);
      return 1;
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
  let node: IorioNode;
  try {
    node = await startNode(config, { logger });
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    logger.fatal({ reason: error.message }, 'the node cannot start');
    logger.flush();
    process.stderr.write(`iorio: ${error.message}\n`);
    return 1;
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
  try {
    writeFileSync(pidFileOf(config), `${process.pid}\n`);
    writeFileSync(urlFileOf(config), `${url}\n`);
  } catch (error) {
    logger.warn({ code: (error as NodeJS.ErrnoException).code }, 'could not write the pid and URL files in the data folder');
  }
}

/** This process's own entry point (dist/src/main.js), to run `console` in a detached child. */
function mainScript(): string {
  return fileURLToPath(new URL('../main.js', import.meta.url));
}

async function start(config: Config, parsed: CliArguments): Promise<number> {
  const running = runningPid(config);
  if (running !== undefined) {
    process.stderr.write(`iorio: already running (pid ${running})\n`);
    return 1;
  }
  rmSync(pidFileOf(config), { force: true });
  const logDir = join(config['paths.data'], 'log');
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, 'iorio.log');
  const logFd = openSync(logFile, 'a');
  const logStart = fstatSync(logFd).size;
  const consoleArgs = ['console', ...(parsed.file === undefined ? [] : ['-c', resolvePath(parsed.file)])];
  for (const [key, value] of Object.entries(parsed.flags)) consoleArgs.push(`--${key}=${value}`);
  const child = spawn(process.execPath, [mainScript(), ...consoleArgs], { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let exitCode: number | null | undefined;
  child.once('exit', (code) => {
    exitCode = code;
  });
  child.unref();
  const deadline = Date.now() + startWaitMs;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      // The node's own one-line reason (a StartupError) is the last `iorio:` line it wrote.
      const reason = readFileSync(logFile, 'utf8').slice(logStart).split('\n').filter((line) => line.startsWith('iorio: ')).pop();
      process.stderr.write(`${reason ?? `iorio: the node exited during start (code ${exitCode})`}\n`);
      process.stderr.write(`iorio: see ${logFile}\n`);
      return 1;
    }
    if (readText(pidFileOf(config)) === String(child.pid)) {
      process.stdout.write(`iorio started (pid ${child.pid}) at ${nodeUrlOf(config)}; log: ${logFile}\n`);
      return 0;
    }
    await sleep(pollIntervalMs);
  }
  process.stderr.write(`iorio: the node did not start within ${startWaitMs / 1000} s; see ${logFile}\n`);
  return 1;
}

async function stop(config: Config): Promise<number> {
  const pid = runningPid(config);
  if (pid === undefined || pid <= 0) {
    process.stderr.write(`iorio: not running (no node holds the lock of ${config['paths.data']})\n`);
    return 1;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + stopWaitMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) {
      process.stdout.write('ok\n');
      return 0;
    }
    await sleep(pollIntervalMs);
  }
  process.stderr.write(`iorio: pid ${pid} did not stop within ${stopWaitMs / 1000} s\n`);
  return 1;
}

async function pingNode(config: Config): Promise<{ pong: string; node: string } | string> {
  const url = `${nodeUrlOf(config)}/ping`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(pingTimeoutMs) });
    if (response.status !== 200) return `${url} answered ${response.status}`;
    return (await response.json()) as { pong: string; node: string };
  } catch (error) {
    return `${url}: ${(error as Error).message}`;
  }
}

async function ping(config: Config): Promise<number> {
  const answer = await pingNode(config);
  if (typeof answer === 'string') {
    process.stderr.write(`Node '${config.nodename}' not responding to pings (${answer})\n`);
    return 1;
  }
  process.stdout.write('pong\n');
  return 0;
}

async function status(config: Config): Promise<number> {
  const pid = runningPid(config);
  const answer = await pingNode(config);
  const lines = [`node:    ${config.nodename}`, `data:    ${config['paths.data']}`, `pid:     ${pid ?? '-'}`, `url:     ${nodeUrlOf(config)}`];
  lines.push(typeof answer === 'string' ? `ping:    no answer (${answer})` : `ping:    pong (partition ${answer.pong}, node ${answer.node})`);
  const running = pid !== undefined || typeof answer !== 'string';
  lines.push(`status:  ${running ? 'running' : 'not running'}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  // LSB: 3 = program is not running.
  return running ? 0 : 3;
}
