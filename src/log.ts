import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from './config.js';

/** Where log lines go and whether it is a terminal (pretty output and colors follow it under log.format = auto). */
export interface LogOutput {
  readonly stream: DestinationStream;
  readonly isTerminal: boolean;
}

/**
 * The one root logger of a node: at `log.level`, each line carrying the
 * node's name, as JSON lines or pretty ones (`log.format`; auto: pretty on
 * a terminal). To stdout unless a destination is given. Modules get a
 * `logger.child({ component })` of it, never a logger of their own.
 */
export function createLogger(config: Config, destination?: DestinationStream, output?: LogOutput): Logger {
  const target = output ?? (destination === undefined ? { stream: process.stdout, isTerminal: process.stdout.isTTY === true } : { stream: destination, isTerminal: false });
  const format = config['log.format'];
  const pretty = format === 'pretty' || (format === 'auto' && target.isTerminal);
  const options = { level: config['log.level'], base: { pid: process.pid, node: config.nodename } };
  if (pretty) return pino(options, prettyDestination(target.stream, target.isTerminal));
  return pino(options, output?.stream ?? destination);
}

/** Writes each JSON line pino makes as one readable line (formatLogLine). */
export function prettyDestination(stream: DestinationStream, colors: boolean): DestinationStream {
  return {
    write(chunk: string) {
      let out = '';
      for (const line of chunk.split('\n')) if (line !== '') out += formatLogLine(line, colors) + '\n';
      stream.write(out);
    },
  };
}

const levelNames: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const levelColors: Record<number, string> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };
/** Fields every line has, shown in the line's head or not at all. */
const headFields = new Set(['level', 'time', 'msg', 'pid', 'node', 'hostname', 'component', 'err']);

/**
 * One pino JSON line as `12:00:00.123 INFO  [http] message key=value ...`
 * (UTC time; an error's stack on the lines after). A line that is not JSON
 * is kept as it is. Pure.
 */
export function formatLogLine(line: string, colors: boolean): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const paint = (code: string, text: string) => (colors ? `\u001b[${code}m${text}\u001b[0m` : text);
  const level = typeof record.level === 'number' ? record.level : 30;
  const time = typeof record.time === 'number' ? new Date(record.time).toISOString().slice(11, 23) : '';
  const head = [paint('90', time), paint(levelColors[level] ?? '0', (levelNames[level] ?? String(level)).padEnd(5))];
  if (typeof record.component === 'string') head.push(paint('35', `[${record.component}]`));
  if (typeof record.msg === 'string') head.push(record.msg);
  const fields = Object.entries(record)
    .filter(([key]) => !headFields.has(key))
    .map(([key, value]) => `${paint('90', key + '=')}${fieldText(value)}`);
  const error = record.err as { message?: unknown; stack?: unknown } | undefined;
  const stack = error !== undefined && typeof error === 'object' ? `\n    ${String(error.stack ?? error.message).split('\n').join('\n    ')}` : '';
  return [...head, ...fields].join(' ') + stack;
}

function fieldText(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? String(value);
}
