/** Runs one load task in a child process (tools/bench/load/child) and returns its outcome. */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { AutocannonOutcome, AutocannonTask, ChildMessage, FanoutOutcome, FanoutTask, LoadTask } from './tasks.js';

/** Extra time a child gets beyond its task's own duration before it is killed. */
export const childGraceMs = 60_000;
/** How long a fan-out child waits after its window for the last deliveries (see child.ts). */
export const fanoutDrainMs = 3000;

function childPath(): { file: string; execArgv: string[] } {
  const isTypeScript = import.meta.url.endsWith('.ts');
  const file = fileURLToPath(new URL(isTypeScript ? './child.ts' : './child.js', import.meta.url));
  return { file, execArgv: isTypeScript ? ['--import', 'tsx'] : [] };
}

export function runLoad(task: AutocannonTask): Promise<AutocannonOutcome>;
export function runLoad(task: FanoutTask): Promise<FanoutOutcome>;
export function runLoad(task: LoadTask): Promise<AutocannonOutcome | FanoutOutcome> {
  const { file, execArgv } = childPath();
  const child = fork(file, [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const durationMs =
    task.kind === 'fanout' ? Math.max(0, task.startAtMs - Date.now()) + (task.warmupSecs + task.durationSecs) * 1000 + fanoutDrainMs : task.durationSecs * 1000;
  return new Promise((resolve, reject) => {
    let answered = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`load child did not finish within ${durationMs + childGraceMs} ms`));
    }, durationMs + childGraceMs);
    child.once('message', (message: ChildMessage) => {
      answered = true;
      clearTimeout(timer);
      if (message.ok) resolve(message.outcome);
      else reject(new Error(`load child failed: ${message.error}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (!answered) reject(new Error(`load child exited with ${code} before answering`));
    });
    child.send(task);
  });
}
