/**
 * `npm run bench -- <scenario...> [--seconds N] [--out DIR] [--key value...]`
 *
 * Runs each scenario (tools/bench/scenarios/<name>.ts), prints its table and
 * writes `<out>/<scenario>-<timestamp>.json` (out defaults to .bench).
 * Unknown `--key value` flags are passed to the scenarios.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem, platform, release } from 'node:os';
import { join, resolve } from 'node:path';
import { formatBenchTable, scenarioNamePattern, scenarioNames, withRatios, type BenchContext, type Scenario } from './harness.js';

export const defaultSeconds = 10;
export const secondsMax = 600;

const usage = `usage: npm run bench -- <scenario...> [--seconds N] [--out DIR] [--<key> <value>...]

scenarios: ${scenarioNames().join(', ') || '(none)'}
  --seconds N   how long each variant runs (${defaultSeconds})
  --out DIR     where the JSON results go (.bench)
Other --key value flags are handed to the scenarios (see tools/bench/README.md).`;

interface Args {
  scenarios: string[];
  seconds: number;
  out: string;
  options: Record<string, string>;
}

function parseBenchArgs(argv: readonly string[]): Args | 'help' {
  const args: Args = { scenarios: [], seconds: defaultSeconds, out: '.bench', options: {} };
  for (let index = 0; index < argv.length; index += 1) {
    const arg = argv[index] as string;
    if (arg === '-h' || arg === '--help') return 'help';
    if (!arg.startsWith('--')) {
      args.scenarios.push(arg);
      continue;
    }
    const value = argv[index + 1];
    if (value === undefined) throw new Error(`${arg} needs a value`);
    index += 1;
    if (arg === '--seconds') {
      const seconds = Number(value);
      if (!(seconds > 0 && seconds <= secondsMax)) throw new Error(`--seconds must be in (0, ${secondsMax}], got "${value}"`);
      args.seconds = seconds;
    } else if (arg === '--out') args.out = value;
    else args.options[arg.slice(2)] = value;
  }
  return args;
}

function machine(): Record<string, unknown> {
  const cores = cpus();
  return { cpuModel: cores[0]?.model ?? 'unknown', cpus: cores.length, memoryBytes: totalmem(), platform: platform(), release: release(), node: process.version };
}

async function runScenario(name: string, args: Args): Promise<void> {
  const module = (await import(`./scenarios/${name}.js`)) as Partial<Scenario>;
  if (typeof module.run !== 'function') throw new Error(`scenario ${name} does not export run(context)`);
  const tempDirs: string[] = [];
  const context: BenchContext = {
    seconds: args.seconds,
    options: args.options,
    log: (line) => process.stderr.write(`[${name}] ${line}\n`),
    async tempDir(label) {
      const dir = await mkdtemp(join(tmpdir(), `iorio-bench-${name}-${label}-`));
      tempDirs.push(dir);
      return dir;
    },
  };
  const startedAt = new Date();
  try {
    const rows = await module.run(context);
    process.stdout.write(formatBenchTable(name, rows) + '\n\n');
    await mkdir(args.out, { recursive: true });
    const file = resolve(args.out, `${name}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    const result = { scenario: name, startedAt: startedAt.toISOString(), seconds: args.seconds, options: args.options, machine: machine(), rows: withRatios(rows) };
    await writeFile(file, JSON.stringify(result, null, 2) + '\n');
    process.stderr.write(`[${name}] results written to ${file}\n`);
  } finally {
    await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let args;
  try {
    args = parseBenchArgs(argv);
  } catch (error) {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n\n${usage}\n`);
    return 2;
  }
  if (args === 'help' || args.scenarios.length === 0) {
    process.stdout.write(usage + '\n');
    return args === 'help' ? 0 : 2;
  }
  const known = scenarioNames();
  const unknown = args.scenarios.filter((name) => !scenarioNamePattern.test(name) || !known.includes(name));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown scenario ${unknown.join(', ')} (known: ${known.join(', ')})\n`);
    return 2;
  }
  for (const name of args.scenarios) await runScenario(name, args);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
