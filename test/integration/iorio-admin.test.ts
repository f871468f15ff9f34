/**
 * iorio-admin against a real node (startNode, port 0): every command in-process
 * through runAdmin (good and bad lines, exit codes, text and --json output,
 * where the URL and the credentials come from), then the real
 * rel/bin/iorio-admin script through a symlink from another folder.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { clusterSubcommands, clusterUnavailableMessage, runAdmin, usage } from '../../src/cli/iorio-admin.js';
import { testConfig } from '../../src/config.js';
import { startNode, type IorioNode } from '../../src/node.js';

const run = promisify(execFile);
const repoRoot = resolve(import.meta.dirname, '../..');
const nodename = 'admintest@127.0.0.1';
const buildTimeoutMs = 180_000;
const processTimeoutMs = 60_000;

interface AdminResult {
  code: number;
  stdout: string;
  stderr: string;
}

let root = '';
let dataDir = '';
let node: IorioNode;
let url = '';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'iorio-admin-'));
  dataDir = join(root, 'data');
  // This file logs in with wrong passwords on purpose, all from 127.0.0.1: more than login throttling
  // (tested in http-auth.test.ts) lets through in a minute.
  const config = testConfig({
    'http.port': 0,
    'cluster.port': 0,
    'paths.data': dataDir,
    'auth.bcrypt.rounds': 4,
    nodename,
    'http.ratelimit.enabled': false,
    'auth.login.failures.max': 1000,
  });
  node = await startNode(config, { logger: pino({ level: 'silent' }) });
  url = node.httpUrl;
});

afterAll(async () => {
  await node?.stop();
  await node?.auth.close();
  if (root !== '') await rm(root, { recursive: true, force: true });
});

/** runAdmin in-process with a clean environment (the machine's IORIO_* variables never leak in). */
async function adminRaw(argv: readonly string[], env: Record<string, string> = {}): Promise<AdminResult> {
  let stdout = '';
  let stderr = '';
  const code = await runAdmin(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), env });
  return { code, stdout, stderr };
}

/** runAdmin against the test node. */
function admin(...argv: string[]): Promise<AdminResult> {
  return adminRaw(['--url', url, ...argv]);
}

async function loginStatus(username: string, password: string): Promise<number> {
  const response = await fetch(`${url}/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  await response.body?.cancel();
  return response.status;
}

/** GET /sessions with the token: 200 while the session holds, 401 once it ended. */
async function sessionStatus(token: string): Promise<number> {
  const response = await fetch(`${url}/sessions`, { headers: { 'x-session': token } });
  await response.body?.cancel();
  return response.status;
}

async function tokenOf(username: string, password: string): Promise<string> {
  const response = await fetch(`${url}/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  expect(response.status).toBe(201);
  return ((await response.json()) as { token: string }).token;
}

async function appendStatus(token: string, bucket: string, stream: string): Promise<number> {
  const response = await fetch(`${url}/streams/${bucket}/${stream}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-session': token },
    body: JSON.stringify({ by: 'iorio-admin test' }),
  });
  await response.body?.cancel();
  return response.status;
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolvePromise) => server.listen(0, '127.0.0.1', resolvePromise));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolvePromise) => server.close(() => resolvePromise()));
  return port;
}

const expectedMemberStatus = [
  '================================= Membership ==================================',
  'Status     Ring    Pending    Node',
  '-------------------------------------------------------------------------------',
  `valid     100.0%      --      '${nodename}'`,
  '-------------------------------------------------------------------------------',
  'Valid:1 / Leaving:0 / Exiting:0 / Joining:0 / Down:0',
  '',
].join('\n');

describe('user', () => {
  test('add, list, passwd, del, each changing what the node does', async () => {
    const added = await admin('user', 'add', 'bob', 'first-pw');
    expect(added).toEqual({ code: 0, stdout: 'user bob added\n', stderr: '' });
    expect(await loginStatus('bob', 'first-pw')).toBe(201);

    const listed = await admin('user', 'list');
    expect(listed.code).toBe(0);
    expect(listed.stdout.split('\n')).toEqual(expect.arrayContaining(['admin', 'bob']));
    const listedJson = await admin('--json', 'user', 'list');
    expect(listedJson.code).toBe(0);
    expect(JSON.parse(listedJson.stdout)).toEqual(expect.arrayContaining([{ username: 'bob' }, { username: 'admin' }]));

    const changed = await admin('user', 'passwd', 'bob', 'second-pw');
    expect(changed).toEqual({ code: 0, stdout: 'password of bob changed\n', stderr: '' });
    expect(await loginStatus('bob', 'first-pw')).toBe(401);
    expect(await loginStatus('bob', 'second-pw')).toBe(201);

    const deleted = await admin('--json', 'user', 'del', 'bob');
    expect(deleted.code).toBe(0);
    expect(JSON.parse(deleted.stdout)).toEqual({ ok: true });
    expect(await loginStatus('bob', 'second-pw')).toBe(401);
    expect((await admin('user', 'list')).stdout.split('\n')).not.toContain('bob');
  });

  test('adding a user twice is a conflict (exit 1), and the first password still holds', async () => {
    expect((await admin('user', 'add', 'twice', 'pw-one')).code).toBe(0);
    const again = await admin('user', 'add', 'twice', 'pw-two');
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    expect(again.stderr).toMatch(/^iorio-admin: 409 conflict: .+\n$/);
    expect(await loginStatus('twice', 'pw-one')).toBe(201);
  });

  test('deleting or changing a user that does not exist is an error answer', async () => {
    const deleted = await admin('user', 'del', 'nobody-here');
    expect(deleted.code).toBe(1);
    expect(deleted.stderr).toMatch(/^iorio-admin: 404 not-found: /);
    const changed = await admin('user', 'passwd', 'nobody-here', 'pw');
    expect(changed.code).toBe(1);
    expect(changed.stderr).toMatch(/^iorio-admin: 404 not-found: /);
  });

  test('a bad user name is refused by the node (400 invalid-name)', async () => {
    const bad = await admin('user', 'add', 'no/slash', 'pw');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^iorio-admin: 400 invalid-name: /);
  });

  test('a password starting with - goes after --', async () => {
    expect((await admin('user', 'add', 'dash', '--', '-pw-')).code).toBe(0);
    expect(await loginStatus('dash', '-pw-')).toBe(201);
    expect((await admin('user', 'add', 'dash2', '-pw-')).code).toBe(2);
  });

  test('revoke-sessions ends every session of that user, and nobody else\'s', async () => {
    expect((await admin('user', 'add', 'kim', 'kim-pw')).code).toBe(0);
    expect((await admin('user', 'add', 'lee', 'lee-pw')).code).toBe(0);
    const kimTokens = [await tokenOf('kim', 'kim-pw'), await tokenOf('kim', 'kim-pw')];
    const lee = await tokenOf('lee', 'lee-pw');
    const adminToken = await tokenOf('admin', 'secret');
    const revoked = await admin('user', 'revoke-sessions', 'kim');
    expect(revoked).toEqual({ code: 0, stdout: 'sessions of kim ended\n', stderr: '' });
    expect(await Promise.all(kimTokens.map(sessionStatus))).toEqual([401, 401]);
    expect([await sessionStatus(lee), await sessionStatus(adminToken)]).toEqual([200, 200]);
    expect(await sessionStatus(await tokenOf('kim', 'kim-pw'))).toBe(200);
    expect(JSON.parse((await admin('--json', 'user', 'revoke-sessions', 'lee')).stdout)).toEqual({ ok: true });
    expect(await sessionStatus(lee)).toBe(401);
    const unknown = await admin('user', 'revoke-sessions', 'nobody-here');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^iorio-admin: 404 not-found: /);
  });

  test('missing or extra arguments are usage errors (exit 2) and change nothing', async () => {
    for (const line of [['user'], ['user', 'add'], ['user', 'add', 'carl'], ['user', 'add', 'carl', 'pw', 'extra'], ['user', 'passwd', 'carl'], ['user', 'del'], ['user', 'list', 'x'], ['user', 'rename', 'a', 'b'], ['user', 'revoke-sessions'], ['user', 'revoke-sessions', 'a', 'b']]) {
      const result = await admin(...line);
      expect(result.code, line.join(' ')).toBe(2);
      expect(result.stderr).toContain('usage: iorio-admin');
      expect(result.stdout).toBe('');
    }
    expect(await loginStatus('carl', 'pw')).toBe(401);
  });
});

describe('credentials', () => {
  test('a wrong password is 401 unauthorized, exit 1', async () => {
    const result = await admin('-p', 'not-the-password', 'user', 'list');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^iorio-admin: 401 unauthorized: .+\n$/);
  });

  test('a user without adminusers is refused (403 no-perm)', async () => {
    expect((await admin('user', 'add', 'plain', 'plain-pw')).code).toBe(0);
    const result = await admin('-u', 'plain', '-p', 'plain-pw', 'user', 'list');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^iorio-admin: 403 no-perm: /);
  });

  test('flags beat IORIO_ADMIN_USER/PASSWORD, which beat the config', async () => {
    const goodEnv = { IORIO_ADMIN_USER: 'admin', IORIO_ADMIN_PASSWORD: 'secret' };
    // Config alone: its admin password is used.
    expect((await adminRaw(['--url', url, 'user', 'list'])).code).toBe(0);
    expect((await adminRaw(['--url', url, '--auth.admin.password', 'wrong', 'user', 'list'])).code).toBe(1);
    // The environment beats the config.
    expect((await adminRaw(['--url', url, '--auth.admin.password', 'wrong', 'user', 'list'], goodEnv)).code).toBe(0);
    const badEnv = await adminRaw(['--url', url, 'user', 'list'], { IORIO_ADMIN_PASSWORD: 'wrong' });
    expect(badEnv.code).toBe(1);
    expect(badEnv.stderr).toMatch(/401 unauthorized/);
    // Flags beat the environment.
    expect((await adminRaw(['--url', url, '-p', 'wrong', 'user', 'list'], goodEnv)).code).toBe(1);
    expect((await adminRaw(['--url', url, '--user=admin', '--password=secret', 'user', 'list'], { IORIO_ADMIN_PASSWORD: 'wrong' })).code).toBe(0);
    // An empty variable counts as unset.
    expect((await adminRaw(['--url', url, 'user', 'list'], { IORIO_ADMIN_USER: '', IORIO_ADMIN_PASSWORD: '' })).code).toBe(0);
  });
});

describe('grant, revoke, access', () => {
  test('grants change what a user may do, and access lists them', async () => {
    expect((await admin('user', 'add', 'carol', 'carol-pw')).code).toBe(0);
    const carol = await tokenOf('carol', 'carol-pw');
    expect(await appendStatus(carol, 'shared', 's1')).toBe(403);

    const granted = await admin('grant', 'put,get', 'on', 'shared', 'to', 'carol');
    expect(granted).toEqual({ code: 0, stdout: 'granted put,get on shared to user carol\n', stderr: '' });
    expect(await appendStatus(carol, 'shared', 's1')).toBe(201);

    const listed = await admin('access', 'shared');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('access to shared\n');
    expect(listed.stdout).toMatch(/users:\n(.*\n)*  carol +get, put\n/);
    const listedJson = await admin('--json', 'access', 'shared');
    expect(JSON.parse(listedJson.stdout).users).toContainEqual({ username: 'carol', permissions: ['get', 'put'] });

    const revoked = await admin('revoke', 'put', 'on', 'shared', 'from', 'carol');
    expect(revoked).toEqual({ code: 0, stdout: 'revoked put on shared from user carol\n', stderr: '' });
    expect(await appendStatus(carol, 'shared', 's1')).toBe(403);
    expect(JSON.parse((await admin('--json', 'access', 'shared')).stdout).users).toContainEqual({ username: 'carol', permissions: ['get'] });
  });

  test('a grant on one stream to a group applies to that stream only', async () => {
    expect((await admin('user', 'add', 'dave', 'dave-pw')).code).toBe(0);
    const dave = await tokenOf('dave', 'dave-pw');
    expect((await admin('grant', 'put', 'on', 'grouped/open', 'to', 'group:g-authenticated')).stdout).toBe(
      'granted put on grouped/open to group g-authenticated\n',
    );
    expect(await appendStatus(dave, 'grouped', 'open')).toBe(201);
    expect(await appendStatus(dave, 'grouped', 'closed')).toBe(403);
    const listed = JSON.parse((await admin('--json', 'access', 'grouped/open')).stdout);
    expect(listed.groups).toContainEqual({ groupname: 'g-authenticated', permissions: ['put'] });
    const text = await admin('access', 'grouped/open');
    expect(text.stdout).toMatch(/groups:\n  g-authenticated +put\n/);
    expect((await admin('revoke', 'put', 'on', 'grouped/open', 'from', 'group:g-authenticated')).code).toBe(0);
    expect(await appendStatus(dave, 'grouped', 'open')).toBe(403);
  });

  test('an empty access list says so', async () => {
    const listed = await admin('access', 'never-granted/x');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toBe('access to never-granted/x\nusers:\n  (none)\ngroups:\n  (none)\n');
  });

  test('malformed grant lines are usage errors (exit 2)', async () => {
    for (const line of [
      ['grant', 'fly', 'on', 'shared', 'to', 'carol'],
      ['grant', 'get', 'shared', 'to', 'carol'],
      ['grant', 'get', 'on', 'shared', 'from', 'carol'],
      ['revoke', 'get', 'on', 'shared', 'to', 'carol'],
      ['grant', 'get', 'on', 'shared', 'to'],
      ['grant', 'get', 'on', '/s', 'to', 'carol'],
      ['grant', 'get', 'on', 'shared/', 'to', 'carol'],
      ['grant', 'get', 'on', 'shared', 'to', 'group:'],
      ['access'],
      ['access', 'a', 'b'],
    ]) {
      const result = await admin(...line);
      expect(result.code, line.join(' ')).toBe(2);
      expect(result.stderr).toContain('usage: iorio-admin');
    }
  });

  test('the node refuses grants to an unknown user and bad names (exit 1)', async () => {
    const unknown = await admin('grant', 'get', 'on', 'shared', 'to', 'no-such-user');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^iorio-admin: 404 not-found: /);
    const badName = await admin('access', 'bad!name');
    expect(badName.code).toBe(1);
    expect(badName.stderr).toMatch(/^iorio-admin: 400 invalid-name: /);
  });
});

describe('status and the cluster views', () => {
  test('status summarises /ping and /stats', async () => {
    const result = await admin('status');
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(new RegExp(`^node: +${nodename}\n`));
    expect(result.stdout).toContain(`url:       ${url}\n`);
    expect(result.stdout).toMatch(/ping: +pong \(partition [0-9]+\)\n/);
    expect(result.stdout).toMatch(/requests: +[0-9]+ \(2xx [0-9]+, 4xx [0-9]+, 5xx 0; rate-limited 0\)\n/);
    expect(result.stdout).toMatch(/memory: +rss [0-9.]+ MB/);

    const json = JSON.parse((await admin('--json', 'status')).stdout);
    expect(json.ping.node).toBe(nodename);
    expect(json.stats.node).toBe(nodename);
    expect(typeof json.stats.http.requests).toBe('number');
  });

  test('status needs the admin password', async () => {
    const result = await admin('-p', 'wrong', 'status');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^iorio-admin: 401 unauthorized: /);
  });

  test('member-status prints the Riak table for this one node', async () => {
    expect(await admin('member-status')).toEqual({ code: 0, stdout: expectedMemberStatus, stderr: '' });
    const json = JSON.parse((await admin('--json', 'member-status')).stdout);
    expect(json.members).toEqual([{ node: nodename, status: 'valid', ring_percent: 100, pending_percent: null }]);
    expect(json).toMatchObject({ valid: 1, leaving: 0, exiting: 0, joining: 0, down: 0 });
  });

  test('ring-status gives the ring size and this node owning every partition', async () => {
    const result = await admin('ring-status');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('================================== Claimant ===================================\n');
    expect(result.stdout).toContain(`Claimant:  '${nodename}'\n`);
    expect(result.stdout).toContain('Ring size: 64 partitions\n');
    expect(result.stdout).toMatch(new RegExp(`'${nodename}' +64 of 64 +100\\.0%\n`));
    expect(result.stdout).toContain('No pending changes.\n');
    const json = JSON.parse((await admin('--json', '--ring.size', '128', 'ring-status')).stdout);
    expect(json).toMatchObject({ ring_size: 128, owners: [{ node: nodename, partitions: 128 }], pending: [] });
  });

  test('ringready', async () => {
    expect(await admin('ringready')).toEqual({ code: 0, stdout: `TRUE All nodes agree on the ring ['${nodename}']\n`, stderr: '' });
  });

  test('a node that does not answer is exit 1, naming the URL', async () => {
    const deadUrl = `http://127.0.0.1:${await closedPort()}`;
    for (const command of ['member-status', 'status', 'user list']) {
      const result = await adminRaw(['--url', deadUrl, ...command.split(' ')]);
      expect(result.code, command).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`^iorio-admin: cannot reach ${deadUrl}/(ping|sessions): `));
    }
  });
});

describe('cluster commands in this build', () => {
  test('every cluster subcommand says clustering is not implemented, exit 2', async () => {
    for (const subcommand of clusterSubcommands) {
      const result = await admin('cluster', subcommand, 'iorio2@127.0.0.1');
      expect(result, subcommand).toEqual({ code: 2, stdout: '', stderr: `iorio-admin: ${clusterUnavailableMessage}\n` });
    }
    expect((await admin('cluster', 'join', 'iorio2@127.0.0.1')).stderr).toBe(
      'iorio-admin: cluster commands are not available in this build: clustering is not implemented yet\n',
    );
  });

  test('cluster without a known subcommand is a usage error; verify is not available', async () => {
    for (const line of [['cluster'], ['cluster', 'dance']]) {
      const result = await admin(...line);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('usage: iorio-admin');
    }
    const verify = await admin('verify');
    expect(verify.code).toBe(2);
    expect(verify.stderr).toBe('iorio-admin: verify is not available in this build: replication is not implemented yet\n');
  });
});

describe('usage', () => {
  test('no command, an unknown command or option, a bad URL or config key: exit 2', async () => {
    const cases: [string[], RegExp][] = [
      [[], /no command given/],
      [['frobnicate'], /unknown command "frobnicate"/],
      [['status', 'now'], /expected: status/],
      [['-x', 'status'], /unknown option "-x"/],
      [['status', '--url'], /--url needs a value/],
      [['--url', 'not a url', 'status'], /is not a URL/],
      [['--url', 'ftp://127.0.0.1:21', 'status'], /not an http or https URL/],
    ];
    for (const [argv, message] of cases) {
      const result = await adminRaw(argv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toContain(usage);
    }
    const badKey = await adminRaw(['--no.such.key', '1', 'status']);
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toContain('no.such.key');
    const badValue = await adminRaw(['--http.port', 'eighty', 'status']);
    expect(badValue.code).toBe(2);
    expect(badValue.stderr).toContain('http.port');
  });

  test('--help prints the usage, exit 0', async () => {
    expect(await adminRaw(['--help'])).toEqual({ code: 0, stdout: `${usage}\n`, stderr: '' });
    expect((await adminRaw(['user', '-h'])).code).toBe(0);
  });
});

describe('where the node is', () => {
  test('without --url: the configured http.host and http.port', async () => {
    const port = new URL(url).port;
    const result = await adminRaw(['--paths.data', join(root, 'no-url-file'), '--http.port', port, 'member-status']);
    expect(result).toEqual({ code: 0, stdout: expectedMemberStatus, stderr: '' });
  });

  test('the URL the running node recorded in <paths.data>/iorio.url beats the config; --url beats both', async () => {
    const recordedData = join(root, 'recorded');
    await mkdir(recordedData, { recursive: true });
    await writeFile(join(recordedData, 'iorio.url'), `${url}\n`);
    const deadPort = String(await closedPort());
    const recorded = await adminRaw(['--paths.data', recordedData, '--http.port', deadPort, 'member-status']);
    expect(recorded).toEqual({ code: 0, stdout: expectedMemberStatus, stderr: '' });
    const explicit = await adminRaw(['--paths.data', recordedData, '--url', `http://127.0.0.1:${deadPort}`, 'member-status']);
    expect(explicit.code).toBe(1);
    expect(explicit.stderr).toContain(`cannot reach http://127.0.0.1:${deadPort}/ping`);
  });

  test('-c reads the node config file', async () => {
    const file = join(root, 'admin-test.conf');
    await writeFile(file, `http.port = ${new URL(url).port}\npaths.data = ${join(root, 'conf-data')}\nauth.admin.password = secret\n`);
    expect(await adminRaw(['-c', file, 'member-status'])).toEqual({ code: 0, stdout: expectedMemberStatus, stderr: '' });
    expect((await adminRaw(['-c', file, 'user', 'list'])).code).toBe(0);
    const missing = await adminRaw(['-c', join(root, 'missing.conf'), 'status']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('missing.conf');
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

describe('rel/bin/iorio-admin', () => {
  const main = join(repoRoot, 'dist/src/admin-main.js');
  let bin = '';
  let work = '';

  beforeAll(async () => {
    if (!existsSync(main) || statSync(main).mtimeMs < newestMtimeMs(join(repoRoot, 'src'))) {
      // tsc still writes its output when some other file has a type error; what matters is that main is fresh.
      const built = await run('npx', ['tsc', '-p', '.'], { cwd: repoRoot, timeout: buildTimeoutMs }).catch((error: unknown) => error);
      expect(existsSync(main), `npx tsc -p . did not write ${main}: ${String((built as { stdout?: string }).stdout ?? '')}`).toBe(true);
      expect(statSync(main).mtimeMs).toBeGreaterThanOrEqual(statSync(join(repoRoot, 'src/admin-main.ts')).mtimeMs);
    }
    work = join(root, 'script');
    await mkdir(join(work, 'bin'), { recursive: true });
    bin = join(work, 'bin', 'iorio-admin');
    await symlink(join(repoRoot, 'rel/bin/iorio-admin'), bin);
  }, buildTimeoutMs);

  async function script(args: readonly string[], env: Record<string, string> = {}): Promise<AdminResult> {
    const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('IORIO_')));
    try {
      const { stdout, stderr } = await run(bin, args, { cwd: work, timeout: processTimeoutMs, env: { ...cleanEnv, ...env } });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  }

  test('runs through a symlink from another folder: output, exit codes, env credentials', async () => {
    expect(await script(['--url', url, 'member-status'])).toEqual({ code: 0, stdout: expectedMemberStatus, stderr: '' });
    const env = { IORIO_ADMIN_USER: 'admin', IORIO_ADMIN_PASSWORD: 'secret' };
    const added = await script(['--url', url, '--auth.admin.password', 'wrong', 'user', 'add', 'scripted', 'scripted-pw'], env);
    expect(added).toEqual({ code: 0, stdout: 'user scripted added\n', stderr: '' });
    expect(await loginStatus('scripted', 'scripted-pw')).toBe(201);
    const refused = await script(['--url', url, '-p', 'wrong', 'user', 'list']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^iorio-admin: 401 unauthorized: /);
    expect(await script(['cluster', 'join', 'iorio2@127.0.0.1'])).toEqual({
      code: 2,
      stdout: '',
      stderr: `iorio-admin: ${clusterUnavailableMessage}\n`,
    });
    expect((await script([])).code).toBe(2);
  });
});
