/**
 * A node run in the foreground (`dist/src/main.js console`, npm test builds
 * first) for start-up and restart tests: whether it started or refused, its
 * stderr, its URL. (node-process.ts runs nodes for connection and
 * descriptor faults.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { expect } from 'vitest';

export const repoRoot = path.resolve(import.meta.dirname, '../..');
const mainScript = path.join(repoRoot, 'dist/src/main.js');
export const children = new Set<ChildProcess>();

export function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
}

export interface Run {
  child: ChildProcess;
  /** Resolves when the node logged that it started (true) or exited first (false). */
  started: Promise<boolean>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  url(): string | undefined;
}

export function runNode(dataDir: string, ...flags: string[]): Run {
  const child = spawn(process.execPath, [mainScript, 'console', '--paths.data', dataDir, '--http.port', '0', '--cluster.port', '0', '--auth.bcrypt.rounds', '4', '--metrics.enabled', 'no', ...flags], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  const started = new Promise<boolean>((resolve) => {
    const check = () => {
      if (stdout.includes('"msg":"node started"')) resolve(true);
    };
    child.stdout!.on('data', check);
    void exited.then(() => resolve(stdout.includes('"msg":"node started"')));
  });
  return {
    child,
    started,
    exited,
    stderr: () => stderr,
    url: () => /"httpUrl":"([^"]+)"/.exec(stdout)?.[1],
  };
}

export async function stopNode(run: Run): Promise<void> {
  run.child.kill('SIGTERM');
  expect((await run.exited).code).toBe(0);
}

export async function login(url: string): Promise<string> {
  const response = await fetch(`${url}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'secret' }) });
  return ((await response.json()) as { token: string }).token;
}

/** Expects the run to refuse to start: exit 1, and exactly one line on stderr matching `pattern`. */
export async function expectRefusal(run: Run, pattern: RegExp): Promise<string> {
  const { code, signal } = await run.exited;
  expect(signal).toBeNull();
  expect(code).toBe(1);
  const lines = run.stderr().trim().split('\n');
  expect(lines, run.stderr()).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  return lines[0]!;
}

