/**
 * `npm run bench -- <scenario...> [--seconds N] [--out DIR] [--key value...]`
 *
 * Runs each scenario (tools/bench/scenarios/<name>.ts), prints its table and
 * writes `<out>/<scenario>-<timestamp>.json` (out defaults to .bench), also
 * when a variant or the whole scenario failed. Every `--key value` option is
 * checked against what the selected scenarios declare (their `options`)
 * before anything runs.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem, platform, release } from 'node:os';
import { join, resolve } from 'node:path';
import { unknownCommandText } from '../../src/cli/suggest.js';
import { formatBenchTable, optionProblems, scenarioNamePattern, scenarioNames, withRatios, type BenchContext, type BenchRow, type Scenario } from './harness.js';

export const defaultSeconds = 10;
export const secondsMax = 600;

function usageOf(scenarios: Readonly<Record<string, Scenario>>): string {
  const lines = Object.entries(scenarios).map(([name, scenario]) => {
    const options = Object.entries(scenario.options ?? {}).map(([option, spec]) => `      --${option.padEnd(18)} ${spec.doc}`);
    return [`  ${name}`, ...options].join('\n');
  });
  return `usage: npm run bench -- <scenario...> [--seconds N] [--out DIR] [--<option> <value>...]

  --seconds N   how long each variant runs (${defaultSeconds}, at most ${secondsMax})
  --out DIR     where the JSON results go (.bench)

scenarios and their options (each checked before anything runs):
${lines.join('\n')}

What each scenario measures: tools/README.md, section "bench". A variant that
fails is reported as failed and the others still run; results are written
either way. Exit status: 0 every variant measured (a missed target is marked
in the table, not an error), 1 a variant or scenario failed, 2 usage error.`;
}

const shortUsage = 'usage: npm run bench -- <scenario...> [--seconds N] [--out DIR] [--<option> <value>...]\n(npm run bench -- --help lists the scenarios and their options)';
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

/** Runs one scenario; its results (and its error, if it failed) are written whatever happens. Resolves to whether all went well. */
async function runScenario(name: string, scenario: Scenario, args: Args): Promise<boolean> {
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
  let rows: BenchRow[] = [];
  let error: string | undefined;
  try {
    rows = await scenario.run(context);
  } catch (caught) {
    error = caught instanceof Error ? caught.message : String(caught);
    process.stderr.write(`[${name}] FAILED: ${error}\n`);
  } finally {
    await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
  }
  if (rows.length > 0) process.stdout.write(formatBenchTable(name, rows) + '\n\n');
  await mkdir(args.out, { recursive: true });
  const file = resolve(args.out, `${name}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  const result = { scenario: name, startedAt: startedAt.toISOString(), seconds: args.seconds, options: args.options, machine: machine(), rows: withRatios(rows), ...(error === undefined ? {} : { error }) };
  await writeFile(file, JSON.stringify(result, null, 2) + '\n');
  process.stderr.write(`[${name}] results written to ${file}\n`);
  return error === undefined && rows.every((row) => row.failed === undefined);
}

async function loadScenarios(names: readonly string[]): Promise<Record<string, Scenario>> {
  const scenarios: Record<string, Scenario> = {};
  for (const name of names) {
    const module = (await import(`./scenarios/${name}.js`)) as Partial<Scenario>;
    if (typeof module.run !== 'function') throw new Error(`scenario ${name} does not export run(context)`);
    scenarios[name] = module as Scenario;
  }
  return scenarios;
}

async function main(argv: readonly string[]): Promise<number> {
  let args;
  try {
    args = parseBenchArgs(argv);
  } catch (error) {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n${shortUsage}\n`);
    return 2;
  }
  const known = scenarioNames();
  if (args === 'help') {
    process.stdout.write(usageOf(await loadScenarios(known)) + '\n');
    return 0;
  }
  if (args.scenarios.length === 0) {
    process.stderr.write(`bench: no scenario given (one or more of ${known.join(', ')})\n${shortUsage}\n`);
    return 2;
  }
  const unknown = args.scenarios.filter((name) => !scenarioNamePattern.test(name) || !known.includes(name));
  if (unknown.length > 0) {
    process.stderr.write(`bench: ${unknown.map((name) => unknownCommandText(name, known, 'scenario')).join('; ')} (known: ${known.join(', ')})\n${shortUsage}\n`);
    return 2;
  }
  const scenarios = await loadScenarios(args.scenarios);
  const problems = optionProblems(args.options, scenarios);
  if (problems.length > 0) {
    process.stderr.write(`${problems.map((problem) => `bench: ${problem}`).join('\n')}\n${shortUsage}\n`);
    return 2;
  }
  let allWell = true;
  for (const name of args.scenarios) allWell = (await runScenario(name, scenarios[name]!, args)) && allWell;
  return allWell ? 0 : 1;
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
