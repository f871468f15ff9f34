/**
 * IorioDB's own API tester (tools/apitest.py, with its client tools/iorio.py,
 * copied unchanged into test/fixtures/ioriodb/) against a real Iorio node:
 * inserters, patchers, requesters, bucket listers and long-poll listeners,
 * all through IorioDB's client, must finish without a single error.
 *
 * Needs python3 with `requests` (IorioDB's tools/requirements.txt; .ci/run
 * installs Debian's python3-requests). Its `faker` comes from the
 * interpreter if it has one, else from a stand-in in test/fixtures (Debian
 * has no python3-faker). /tmp/pyv/bin/python, then python3 on the PATH, are
 * tried; without requests the test is skipped and its title says why.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from './http-harness.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'ioriodb');

/** The folder with a stand-in `faker`, for a python3 that has requests but no faker (Debian packages one, not the other). */
const fakerStandIn = join(fixtures, 'faker-stand-in');

function findPython(): { python?: string; pythonPath?: string; reason?: string } {
  const candidates = ['/tmp/pyv/bin/python', 'python3', '/usr/bin/python3'];
  for (const candidate of candidates) {
    if (candidate.includes('/') && !existsSync(candidate)) continue;
    const probe = spawnSync(candidate, ['-c', 'import requests, faker'], { encoding: 'utf8', timeout: 30_000 });
    if (probe.status === 0) return { python: candidate };
    const withStandIn = spawnSync(candidate, ['-c', 'import requests, faker'], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, PYTHONPATH: fakerStandIn } });
    if (withStandIn.status === 0) return { python: candidate, pythonPath: fakerStandIn };
  }
  return { reason: `no python3 with requests (tried ${candidates.join(', ')}; .ci/run installs Debian's python3-requests)` };
}

const { python, pythonPath, reason } = findPython();
const title = python === undefined ? `SKIPPED: ${reason}` : 'runs clean against a real node';

function run(command: string, args: string[], cwd: string, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, PYTHONUNBUFFERED: '1', ...(pythonPath === undefined ? {} : { PYTHONPATH: pythonPath }) } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe("IorioDB's tools/apitest.py", () => {
  let node: TestNode | undefined;

  beforeAll(async () => {
    // Listeners long-poll until listen.timeout; a short one lets the run end soon after its inserts.
    if (python !== undefined) node = await startTestNode({ 'listen.timeout': 1_000 });
  });
  afterAll(async () => {
    await node?.stop();
  });

  it.skipIf(python === undefined)(title, async () => {
    const port = new URL(node!.url).port;
    const args = ['apitest.py', '-H', '127.0.0.1', '-P', port, '-i', '24', '-B', '2', '-S', '3', '-I', '2', '-s', '42'];
    const { code, output } = await run(python!, args, fixtures, 120_000);
    expect(code, output).toBe(0);
    expect(output).not.toMatch(/authentication failed|error response|response is not json|got error listening|error sending data/);
    const summaries = output.split('\n').filter((line) => / errors/.test(line));
    // One line per inserter (-I 2), patcher, requester, lister and listener.
    expect(summaries.length, output).toBe(6);
    for (const line of summaries) expect(line, output).toMatch(/ with 0 (write |read )?errors/);
    expect(output).toMatch(/sent 24 with 0 write errors/);
    expect(output).toMatch(/patched \d+ with 0 write errors/);
  }, 180_000);
});
