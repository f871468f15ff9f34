/**
 * The interactive loop: node:readline with history and completion (command
 * names, then bucket and stream names fetched from the node). Also reads
 * scripts from a pipe: then no prompt is printed and the caller gets the
 * number of failed commands.
 */
import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { takeTokens } from './args.js';
import { commands, exitWords, findCommand, unknownCommandError, type Command, type Session } from './commands.js';

export const historySizeMax = 1000;
/** How long fetched bucket / stream names serve completion. */
export const completionCacheMs = 5000;

export interface ReplOptions {
  readonly input: Readable;
  readonly output: Writable;
  /** Line editing, prompt and Ctrl-C handling (stdin is a TTY). */
  readonly terminal: boolean;
  /** Runs one line's command; resolves false when it failed (it reports the failure itself). */
  readonly execute: (command: Command, args: string[], signal: AbortSignal) => Promise<boolean>;
  readonly reportUsage: (message: string) => void;
}

/** Splits a REPL line into its command and arguments; throws on an unknown command or unclosed quote. */
export function parseLine(line: string): { command: Command; args: string[] } | undefined {
  const { tokens, rest } = takeTokens(line, 1);
  const name = tokens[0];
  if (name === undefined) return undefined;
  const command = findCommand(name);
  if (command === undefined) throw new Error(unknownCommandError(name));
  if (rest === undefined) return { command, args: [] };
  if (!command.rawLast) return { command, args: takeTokens(rest, Infinity).tokens };
  const leading = takeTokens(rest, command.params.length - 1);
  return { command, args: leading.rest === undefined ? leading.tokens : [...leading.tokens, leading.rest] };
}

export function makeCompleter(session: Session): (line: string, callback: (error: null, result: [string[], string]) => void) => void {
  const cache = new Map<string, { at: number; names: string[] }>();
  const names = async (path: string, fetch: () => Promise<string[]>): Promise<string[]> => {
    const cached = cache.get(path);
    if (cached !== undefined && Date.now() - cached.at < completionCacheMs) return cached.names;
    const fetched = await fetch().catch(() => [] as string[]);
    cache.set(path, { at: Date.now(), names: fetched });
    return fetched;
  };
  return (line, callback) => {
    const complete = async (): Promise<[string[], string]> => {
      let tokens: string[];
      try {
        tokens = takeTokens(line, Infinity).tokens;
      } catch {
        return [[], line];
      }
      const atNewWord = line.length === 0 || /\s$/.test(line);
      const word = atNewWord ? '' : (tokens[tokens.length - 1] ?? '');
      const position = atNewWord ? tokens.length : tokens.length - 1;
      let candidates: string[] = [];
      if (position === 0) candidates = [...commands.map((command) => command.name), ...exitWords];
      else {
        const command = findCommand(tokens[0] as string);
        if (command?.completes !== undefined && position === 1) candidates = await names('/buckets', () => session.client.listBuckets());
        else if (command?.completes === 'bucket-stream' && position === 2) {
          const bucket = tokens[1] as string;
          candidates = await names(`/streams/${bucket}`, () => session.client.listStreams(bucket));
        }
      }
      const matches = candidates.filter((candidate) => candidate.startsWith(word));
      return [matches.length > 0 ? matches.map((match) => match + ' ') : [], word];
    };
    void complete().then((result) => callback(null, result));
  };
}

/** Runs the loop until end of input or `exit`; resolves with the number of failed commands. */
export async function runRepl(session: Session, options: ReplOptions): Promise<number> {
  const rl = readline.createInterface({
    input: options.input,
    output: options.terminal ? options.output : undefined,
    terminal: options.terminal,
    completer: options.terminal ? makeCompleter(session) : undefined,
    historySize: historySizeMax,
    removeHistoryDuplicates: true,
    prompt: 'iorio> ',
  });
  let running: AbortController | undefined;
  let interruptedOnce = false;
  const interrupt = (): void => {
    if (running !== undefined) {
      running.abort();
      return;
    }
    if (!options.terminal || interruptedOnce || rl.line.length === 0) {
      if (!options.terminal || interruptedOnce) rl.close();
      else {
        interruptedOnce = true;
        options.output.write('\n(To leave, press Ctrl-C again, Ctrl-D, or type exit)\n');
        rl.prompt();
      }
      return;
    }
    rl.write(null, { ctrl: true, name: 'u' });
    options.output.write('\n');
    rl.prompt();
  };
  rl.on('SIGINT', interrupt);
  process.on('SIGINT', interrupt);
  const runLine = async (line: string): Promise<boolean> => {
    let parsed;
    try {
      parsed = parseLine(line);
    } catch (error) {
      options.reportUsage(error instanceof Error ? error.message : String(error));
      return false;
    }
    if (parsed === undefined) return true;
    running = new AbortController();
    try {
      return await options.execute(parsed.command, parsed.args, running.signal);
    } finally {
      running = undefined;
    }
  };
  let failures = 0;
  try {
    if (options.terminal) {
      options.output.write(`connected to ${session.client.baseUrl.origin} as ${session.username ?? 'anonymous'}; type help\n`);
      rl.prompt();
    }
    for await (const line of rl) {
      interruptedOnce = false;
      const trimmed = line.trim();
      if ((exitWords as readonly string[]).includes(trimmed)) break;
      if (trimmed.length > 0 && !(await runLine(line))) failures += 1;
      if (options.terminal) rl.prompt();
    }
  } finally {
    process.off('SIGINT', interrupt);
    rl.close();
  }
  return failures;
}
