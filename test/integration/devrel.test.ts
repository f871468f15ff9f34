/**
 * devrel (cli/devrel.ts) into a temporary folder: the table, each node's
 * config as the node reads it (IorioDB's names and ports, shifted by
 * --base-port), the scripts, the refusal to touch a devN holding data and
 * --force keeping that data; then the generated bin/iorio and
 * bin/iorio-admin run from another folder: status of a stopped node, and a
 * whole start, ping, stop.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { devConfText, devNodes, runDevrel, shellQuoted, usage } from '../../src/cli/devrel.js';
import { loadConfig, type Config } from '../../src/config.js';

const run = promisify(execFile);
const repoRoot = resolve(import.meta.dirname, '../..');
const template = join(repoRoot, 'config/iorio.conf');
const buildTimeoutMs = 180_000;
const processTimeoutMs = 60_000;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let root = '';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'iorio-devrel-'));
});

afterAll(async () => {
  if (root !== '') await rm(root, { recursive: true, force: true });
});

function devrel(...argv: string[]): Result {
  let stdout = '';
  let stderr = '';
  const code = runDevrel(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), cwd: root, repoRoot });
  return { code, stdout, stderr };
}

/** A node's config as the node loads it (no environment, no flags). */
function confOf(file: string): Config {
  return loadConfig({ file, env: {}, flags: {}, cwd: '/' });
}

const devKeys = ['nodename', 'paths.data', 'http.port', 'https.port', 'cluster.host', 'cluster.port'];

describe('the devN folders', () => {
  test("devrel 4: IorioDB's names and ports, every other key as in config/iorio.conf, executable scripts, the table", () => {
    const dir = join(root, 'four');
    const result = devrel('4', '--dir', 'four');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const reference = confOf(template);
    for (const index of [1, 2, 3, 4]) {
      const folder = join(dir, `dev${index}`);
      const conf = confOf(join(folder, 'iorio.conf'));
      expect(conf.nodename).toBe(`iorio${index}@127.0.0.1`);
      expect(conf['http.port']).toBe(8088 + 10 * index);
      expect(conf['https.port']).toBe(8528 + 10 * index);
      expect(conf['cluster.port']).toBe(10009 + 10 * index);
      expect(conf['cluster.host']).toBe('127.0.0.1');
      expect(conf['paths.data']).toBe(join(folder, 'data'));
      for (const key of Object.keys(reference) as (keyof Config)[]) {
        if (!devKeys.includes(key)) expect(conf[key], `${key} of dev${index}`).toEqual(reference[key]);
      }
      expect(statSync(join(folder, 'data')).isDirectory()).toBe(true);
      for (const script of ['iorio', 'iorio-admin']) {
        const mode = statSync(join(folder, 'bin', script)).mode;
        expect(mode & 0o111, `${script} is executable`).toBe(0o111);
      }
    }
    expect(result.stdout).toContain(`devrel: 4 nodes in ${dir}\n`);
    expect(result.stdout).toMatch(/\nnode +name +http +https +cluster +mqtt +data\n/);
    expect(result.stdout).toContain(`dev1  iorio1@127.0.0.1  8098  8538   10019    -     ${join(dir, 'dev1/data')}\n`);
    expect(result.stdout).toContain(`dev4  iorio4@127.0.0.1  8128  8568   10049    -     ${join(dir, 'dev4/data')}\n`);
    expect(result.stdout).toContain("Iorio has no MQTT\n(IorioDB's devN listened on 11883 + 10N: dev1 = 11893).");
  });

  test('--base-port P makes dev1 listen on P and moves every port by P - 8098', () => {
    const result = devrel('3', '--base-port', '20000', '--dir', join(root, 'shifted'));
    expect(result.code).toBe(0);
    const shift = 20000 - 8098;
    for (const index of [1, 2, 3]) {
      const conf = confOf(join(root, 'shifted', `dev${index}`, 'iorio.conf'));
      expect([conf['http.port'], conf['https.port'], conf['cluster.port']]).toEqual([8088 + 10 * index + shift, 8528 + 10 * index + shift, 10009 + 10 * index + shift]);
    }
    expect(result.stdout).toContain('dev1  iorio1@127.0.0.1  20000  20440  21921    -');
    expect(result.stdout).toContain('shifted like the others: dev1 = 23795');
  });

  test('a devN holding data is refused (nothing changed), and --force rewrites config and scripts but keeps the data', async () => {
    const dir = join(root, 'kept');
    expect(devrel('2', '--dir', dir).code).toBe(0);
    const entry = join(dir, 'dev2', 'data', 'precious.txt');
    await writeFile(entry, 'do not delete\n');
    const confBefore = await readFile(join(dir, 'dev1', 'iorio.conf'), 'utf8');

    const refused = devrel('2', '--dir', dir, '--base-port', '30000');
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain(`devrel: ${join(dir, 'dev2')} already holds data: nothing was changed.`);
    expect(await readFile(join(dir, 'dev1', 'iorio.conf'), 'utf8')).toBe(confBefore);

    const forced = devrel('2', '--dir', dir, '--base-port', '30000', '--force');
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain(`dev2: config and scripts rewritten; its data in ${join(dir, 'dev2', 'data')} was kept as it was.`);
    expect(await readFile(entry, 'utf8')).toBe('do not delete\n');
    expect(confOf(join(dir, 'dev2', 'iorio.conf'))['http.port']).toBe(30010);
    expect(confOf(join(dir, 'dev1', 'iorio.conf'))['http.port']).toBe(30000);

    // A devN without data is rewritten without --force.
    expect(devrel('1', '--dir', dir).code).toBe(0);
    expect(confOf(join(dir, 'dev1', 'iorio.conf'))['http.port']).toBe(8098);
  });

  test('usage errors exit 2 and write nothing', () => {
    const cases: [string[], RegExp][] = [
      [[], /how many nodes/],
      [['0'], /node count must be an integer from 1 to 64/],
      [['65'], /node count must be an integer from 1 to 64/],
      [['four'], /node count/],
      [['4', '5'], /unexpected argument "5"/],
      [['4', '--base-port'], /--base-port needs a value/],
      [['4', '--base-port', '0'], /--base-port must be an integer/],
      [['4', '--base-port', '65000'], /past 65535/],
      [['4', '--ports', '1'], /unknown option "--ports"/],
      [['4', '--force=yes'], /unknown option/],
    ];
    for (const [argv, message] of cases) {
      const result = devrel('--dir', join(root, 'never'), ...argv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toContain(usage);
    }
    expect(existsSync(join(root, 'never'))).toBe(false);
  });

  test('the config keeps the template\'s documentation, and a key the template lacks is appended', () => {
    const [node] = devNodes(1, 8098, '/d');
    const text = devConfText('# the port\nhttp.port = 1\n\n# name\nnodename = x@y\n', 'small.conf', node!);
    expect(text).toBe(
      [
        '## dev1 of the devrel (npm run devrel): small.conf with this node\'s',
        '## nodename, ports and paths.data. Rewritten by npm run devrel -- --force.',
        '',
        '# the port',
        'http.port = 8098',
        '',
        '# name',
        'nodename = iorio1@127.0.0.1',
        '',
        '## devrel',
        'paths.data = /d/dev1/data',
        'https.port = 8538',
        'cluster.host = 127.0.0.1',
        'cluster.port = 10019',
        '',
      ].join('\n'),
    );
    expect(shellQuoted("it's here")).toBe(`'it'\\''s here'`);
  });
});

/** The newest modification time of any file under `folder`. */
function newestMtimeMs(folder: string): number {
  let newest = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/** Whether a TCP port on 127.0.0.1 is free right now. */
async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolvePromise) => {
    server.once('error', () => resolvePromise(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePromise(true)));
  });
}

/** A base port whose dev1 and dev2 ports (HTTP, HTTPS, cluster) are all free. */
async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const shift = base - 8098;
    const ports = [1, 2].flatMap((index) => [8088, 8528, 10009].map((start) => start + 10 * index + shift));
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free base port found');
}

describe("the devN scripts run the repository's rel/bin with their own config", () => {
  const mains = ['dist/src/main.js', 'dist/src/admin-main.js'].map((file) => join(repoRoot, file));
  let dir = '';
  let elsewhere = '';

  beforeAll(async () => {
    if (mains.some((main) => !existsSync(main) || statSync(main).mtimeMs < newestMtimeMs(join(repoRoot, 'src')))) {
      // tsc still writes its output when some other file has a type error; what matters is that the mains are fresh.
      await run('npx', ['tsc', '-p', '.'], { cwd: repoRoot, timeout: buildTimeoutMs }).catch((error: unknown) => error);
      for (const main of mains) expect(existsSync(main), `npx tsc -p . did not write ${main}`).toBe(true);
    }
    dir = join(root, 'scripts');
    elsewhere = join(root, 'elsewhere');
    await mkdir(elsewhere, { recursive: true });
    expect(devrel('2', '--dir', dir, '--base-port', String(await freeBasePort())).code).toBe(0);
  }, buildTimeoutMs);

  async function script(file: string, args: readonly string[]): Promise<Result> {
    const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('IORIO_')));
    try {
      const { stdout, stderr } = await run(file, args, { cwd: elsewhere, timeout: processTimeoutMs, env: cleanEnv });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  }

  test('bin/iorio status of a stopped dev2 names iorio2@127.0.0.1 and its data folder (exit 3)', async () => {
    const conf = confOf(join(dir, 'dev2', 'iorio.conf'));
    const result = await script(join(dir, 'dev2', 'bin', 'iorio'), ['status']);
    expect(result.code).toBe(3);
    expect(result.stdout).toContain('node:    iorio2@127.0.0.1\n');
    expect(result.stdout).toContain(`data:    ${join(dir, 'dev2', 'data')}\n`);
    expect(result.stdout).toContain(`url:     http://127.0.0.1:${conf['http.port']}\n`);
    expect(result.stdout).toContain('status:  not running\n');
  });

  test('bin/iorio-admin talks to its own node (its port, its credentials)', async () => {
    const conf = confOf(join(dir, 'dev2', 'iorio.conf'));
    const result = await script(join(dir, 'dev2', 'bin', 'iorio-admin'), ['user', 'list']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot reach http://127.0.0.1:${conf['http.port']}/sessions`);
    expect((await script(join(dir, 'dev2', 'bin', 'iorio-admin'), ['cluster', 'join'])).code).toBe(2);
  });

  test('bin/iorio start, ping, stop from another folder; bin/iorio-admin reaches the started node', async () => {
    const iorio = join(dir, 'dev1', 'bin', 'iorio');
    const started = await script(iorio, ['start']);
    try {
      expect(started.stderr).toBe('');
      expect(started.code).toBe(0);
      expect(started.stdout).toContain(`log: ${join(dir, 'dev1', 'data', 'log', 'iorio.log')}`);
      expect(await script(iorio, ['ping'])).toEqual({ code: 0, stdout: 'pong\n', stderr: '' });
      const listed = await script(join(dir, 'dev1', 'bin', 'iorio-admin'), ['user', 'list']);
      expect(listed.code).toBe(0);
      expect(listed.stdout.split('\n')).toContain('admin');
    } finally {
      const stopped = await script(iorio, ['stop']);
      expect(stopped).toEqual({ code: 0, stdout: 'ok\n', stderr: '' });
    }
    expect((await script(iorio, ['status'])).code).toBe(3);
  });
});
