/** The bench harness's option checks, failure isolation and target marks; and `npm run bench` refusing bad options before it measures. */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatBenchTable, listOption, optionProblems, positiveOption, runGroups, withRatios, type BenchRow, type Scenario } from '../../tools/bench/harness.js';
import { options as httpOptions } from '../../tools/bench/scenarios/http.js';

const repoRoot = resolve(import.meta.dirname, '../..');
const benchMain = join(repoRoot, 'dist/tools/bench/main.js');

const scenario = (options: Scenario['options']): Scenario => ({ options, run: async () => [] });

describe('bench options', () => {
  const scenarios = { one: scenario({ connections: positiveOption('connections'), groups: listOption('groups', ['append', 'get']) }), two: scenario({}) };

  it('accepts what a selected scenario declares', () => {
    expect(optionProblems({ connections: '8', groups: 'get,append' }, scenarios)).toEqual([]);
  });

  it('names an option no selected scenario takes, with the nearest one', () => {
    expect(optionProblems({ conections: '8' }, scenarios)).toEqual(['--conections: no selected scenario takes it; did you mean --connections? (they take: --connections, --groups)']);
  });

  it('names a bad value and what was expected', () => {
    expect(optionProblems({ connections: 'many', groups: 'get,put' }, scenarios)).toEqual([
      '--connections (one): expected a positive number, got "many"',
      '--groups (one): expected a comma-separated list of append, get; unknown: put',
    ]);
  });

  it('the http scenario declares every option tools/README.md lists for it', () => {
    expect(Object.keys(httpOptions).sort()).toEqual(['batch', 'batch-connections', 'connections', 'fanout-processes', 'groups', 'rate', 'subscribers', 'warmup']);
  });
});

describe('bench failures and targets', () => {
  it('a group that throws becomes one failed row; the groups after it still run', async () => {
    const logged: string[] = [];
    const rows = await runGroups({ log: (line) => logged.push(line) }, ['a', 'b', 'c'], async (group) => {
      if (group === 'b') throw new Error('the node refused');
      return [{ variant: `${group} row`, group, opsPerSec: 1, unit: 'req/s', p50Ms: 1, p99Ms: 1 }];
    });
    expect(rows.map((row) => [row.variant, row.failed])).toEqual([
      ['a row', undefined],
      ['b (failed)', 'the node refused'],
      ['c row', undefined],
    ]);
    expect(logged).toEqual(['b FAILED: the node refused']);
    expect(formatBenchTable('s', rows).split('\n')[2]).toMatch(/b \(failed\)\s+-\s+-\s+-\s+-\s+✗ FAILED: the node refused$/);
  });

  it('a missed target is marked, a met one ticked, and the JSON says which', () => {
    const rows: BenchRow[] = [
      { variant: 'bare', group: 'g', baseline: true, opsPerSec: 1000, unit: 'req/s', p50Ms: 0.4, p99Ms: 2 },
      { variant: 'slow', group: 'g', opsPerSec: 700, unit: 'req/s', p50Ms: 0.6, p99Ms: 3, target: { ratioMin: 0.8 } },
      { variant: 'fast', group: 'g', opsPerSec: 900, unit: 'req/s', p50Ms: 0.5, p99Ms: 3, target: { ratioMin: 0.8 } },
      { variant: 'batch', group: 'h', opsPerSec: 120_000, unit: 'entries/s', p50Ms: 2, p99Ms: 9, target: { opsPerSecMin: 150_000 }, notes: '1000/request' },
      { variant: 'fanout', group: 'i', opsPerSec: 10, unit: 'deliveries/s', p50Ms: 2, p99Ms: 40, target: { p99MsMax: 50 } },
    ];
    const lines = formatBenchTable('http', rows).split('\n');
    expect(lines[1]).toMatch(/0\.40\s+2\.00\s+baseline$/);
    expect(lines[2]).toMatch(/0\.70x\s+✗ MISSED target >= 0\.8x$/);
    expect(lines[3]).toMatch(/0\.90x\s+✓ target >= 0\.8x$/);
    expect(lines[4]).toMatch(/✗ MISSED target >= 150,000 entries\/s; 1000\/request$/);
    expect(lines[5]).toMatch(/✓ target p99 < 50 ms$/);
    expect(withRatios(rows).map((row) => row.targetMet)).toEqual([undefined, false, true, false, true]);
  });
});

function bench(args: readonly string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolveRun) => {
    execFile(process.execPath, [benchMain, ...args], { cwd, timeout: 60_000 }, (error, stdout, stderr) => {
      resolveRun({ code: error === null ? 0 : ((error as { code?: number }).code ?? -1), stdout, stderr });
    });
  });
}

describe('npm run bench', () => {
  it('refuses a misspelt or bad option before measuring anything (exit 2, no results written)', async () => {
    expect(existsSync(benchMain), `${benchMain} is missing: run npm run build`).toBe(true);
    const work = await mkdtemp(join(tmpdir(), 'iorio-bench-args-'));
    try {
      const misspelt = await bench(['http', '--conections', '8', '--out', 'results'], work);
      expect(misspelt.code).toBe(2);
      expect(misspelt.stderr).toMatch(/^bench: --conections: no selected scenario takes it; did you mean --connections\?/);
      expect(misspelt.stderr).not.toContain('[http]');
      const badValue = await bench(['http', '--groups', 'append,gett', '--out', 'results'], work);
      expect(badValue.code).toBe(2);
      expect(badValue.stderr).toMatch(/^bench: --groups \(http\): expected a comma-separated list of append, get, batch, fanout; unknown: gett\n/);
      const unknown = await bench(['htp'], work);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toMatch(/^bench: unknown scenario "htp"; did you mean http\?/);
      expect(await readdir(work)).toEqual([]);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  it('--help lists every scenario with its options and points to a file that exists', async () => {
    const help = await bench(['--help'], repoRoot);
    expect(help.code).toBe(0);
    for (const name of ['http', 'storage', 'cluster', 'listen-idle']) expect(help.stdout).toContain(`\n  ${name}\n`);
    expect(help.stdout).toContain('--batch-connections');
    const pointed = /(tools\/[\w/.-]+\.md)/.exec(help.stdout)?.[1];
    expect(pointed).toBeDefined();
    expect(existsSync(join(repoRoot, pointed!))).toBe(true);
  });
});
