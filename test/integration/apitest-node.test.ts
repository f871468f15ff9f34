/** apitest with small flags against a real in-process node (port 0, temp data dir) finishes clean. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig } from '../../src/config.js';
import { startNode, type IorioNode } from '../../src/node.js';
import { formatApitestReport } from '../../tools/apitest/report.js';
import { parseApitestArgs, runApitest } from '../../tools/apitest/run.js';

describe('apitest against a real node', () => {
  let dataDir: string;
  let node: IorioNode;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'iorio-apitest-'));
    node = await startNode(testConfig({ 'http.port': 0, 'cluster.port': 0, 'paths.data': dataDir, 'log.level': 'warn', 'auth.bcrypt.rounds': 4 }));
  });

  afterAll(async () => {
    await node?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('finishes clean with -i 50 -B 2 -S 3', async () => {
    const parsed = parseApitestArgs(['--url', node.httpUrl, '-i', '50', '-B', '2', '-S', '3', '-I', '2', '-Q', '2', '--listeners', '2', '--listen-timeout', '1', '-s', '42', '-q']);
    if (parsed.help) throw new Error('unexpected --help');
    const report = await runApitest({ ...parsed.options, log: () => {} });
    expect(report.setupError, formatApitestReport(report)).toBeUndefined();
    expect(report.errorSamples, formatApitestReport(report)).toEqual([]);
    expect(report.checks.filter((check) => check.failures > 0)).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.roles.find((role) => role.role === 'inserters')?.count).toBe(100);
    expect(report.checks.find((check) => check.name === 'inserts-read-back')?.checked).toBe(100);
    expect(report.checks.find((check) => check.name === 'patches-applied-once')?.checked).toBe(100);
    expect(report.checks.find((check) => check.name === 'listeners-exactly-once')?.checked).toBeGreaterThan(100);
  });

  it('a second run with the same seed continues the same streams and still passes', async () => {
    const parsed = parseApitestArgs(['--url', node.httpUrl, '-i', '20', '-B', '2', '-S', '3', '-I', '2', '--listen-timeout', '1', '-s', '42', '-q']);
    if (parsed.help) throw new Error('unexpected --help');
    const report = await runApitest({ ...parsed.options, log: () => {} });
    expect(report.ok, formatApitestReport(report)).toBe(true);
  });
});
