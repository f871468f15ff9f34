/**
 * iorio-admin against a real node (startNode, port 0): every command in-process
 * through runAdmin (good and bad lines, exit codes, text and --json output,
 * where the URL and the credentials come from), then the real
 * rel/bin/iorio-admin script through a symlink from another folder. The
 * cluster commands run against a stub node answering /admin/cluster/* in the
 * shapes of cluster/admin-api.ts (requests recorded: method, path, body,
 * credentials), and against the real node too once it serves those routes.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { formatPlan } from '../../src/cli/admin-format.js';
import { runAdmin, shortUsage, usage } from '../../src/cli/iorio-admin.js';
import type { MembersAnswer, PlanAnswer, RingAnswer, RingReadyAnswer, TransfersAnswer } from '../../src/cluster/admin-api.js';
import { testConfig } from '../../src/config.js';
import { plan } from '../../src/core/plan.js';
import { addJoining, createRing, futureRing, memberStatus, type Ring } from '../../src/core/ring.js';
import { startNode, type IorioNode } from '../../src/node.js';
import { version as packageVersion } from '../../src/version.js';
import { devMember } from '../helpers/cluster.js';

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
/** The real node serves /admin/cluster/* (the cluster runtime has landed). */
let clusterRoutes = false;

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
  const probe = await fetch(`${url}/admin/cluster/members`);
  const probeBody = (await probe.json().catch(() => ({}))) as { reason?: unknown };
  clusterRoutes = !(probe.status === 404 && String(probeBody.reason).startsWith('no route'));
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

/** What a command that works on this node prints, to tell which node a URL reached. */
const expectedAccess = 'access to never-granted/x\nusers:\n  (none)\ngroups:\n  (none)\n';

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
    expect(again.stderr).toMatch(/^iorio-admin: 400 user-exists: .+\n$/);
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

  test('a bad user name is refused by the node (400 illegal-username, as IorioDB)', async () => {
    const bad = await admin('user', 'add', 'no/slash', 'pw');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^iorio-admin: 400 illegal-username: /);
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

  test('a user without adminusers is refused (401 no-perm)', async () => {
    expect((await admin('user', 'add', 'plain', 'plain-pw')).code).toBe(0);
    const result = await admin('-u', 'plain', '-p', 'plain-pw', 'user', 'list');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^iorio-admin: 401 no-perm: /);
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
    expect(await appendStatus(carol, 'shared', 's1')).toBe(401);

    const granted = await admin('grant', 'put,get', 'on', 'shared', 'to', 'carol');
    expect(granted).toEqual({ code: 0, stdout: 'granted put,get on shared to user carol\n', stderr: '' });
    expect(await appendStatus(carol, 'shared', 's1')).toBe(201);

    const listed = await admin('access', 'shared');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('access to shared\n');
    expect(listed.stdout).toMatch(/users:\n(.*\n)*  carol +get, put\n/);
    const listedJson = await admin('--json', 'access', 'shared');
    expect(JSON.parse(listedJson.stdout).users).toContainEqual({ name: 'carol', grants: ['get', 'put'] });

    const revoked = await admin('revoke', 'put', 'on', 'shared', 'from', 'carol');
    expect(revoked).toEqual({ code: 0, stdout: 'revoked put on shared from user carol\n', stderr: '' });
    expect(await appendStatus(carol, 'shared', 's1')).toBe(401);
    expect(JSON.parse((await admin('--json', 'access', 'shared')).stdout).users).toContainEqual({ name: 'carol', grants: ['get'] });
  });

  test('a grant on one stream to a group applies to that stream only', async () => {
    expect((await admin('user', 'add', 'dave', 'dave-pw')).code).toBe(0);
    const dave = await tokenOf('dave', 'dave-pw');
    expect((await admin('grant', 'put', 'on', 'grouped/open', 'to', 'group:g-authenticated')).stdout).toBe(
      'granted put on grouped/open to group g-authenticated\n',
    );
    expect(await appendStatus(dave, 'grouped', 'open')).toBe(201);
    expect(await appendStatus(dave, 'grouped', 'closed')).toBe(401);
    const listed = JSON.parse((await admin('--json', 'access', 'grouped/open')).stdout);
    expect(listed.groups).toContainEqual({ name: 'g-authenticated', grants: ['put'] });
    const text = await admin('access', 'grouped/open');
    expect(text.stdout).toMatch(/groups:\n  g-authenticated +put\n/);
    expect((await admin('revoke', 'put', 'on', 'grouped/open', 'from', 'group:g-authenticated')).code).toBe(0);
    expect(await appendStatus(dave, 'grouped', 'open')).toBe(401);
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
      // A global permission is not a bucket's (grant viewstats to carol: test/integration/iorio-admin-groups.test.ts).
      ['grant', 'viewstats', 'on', 'shared', 'to', 'carol'],
      ['grant', 'get', 'to'],
      // `access` alone lists the global grants.
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
    expect(unknown.stderr).toMatch(/^iorio-admin: 400 invalid-field: /);
    const badName = await admin('access', 'bad!name');
    expect(badName.code).toBe(1);
    expect(badName.stderr).toMatch(/^iorio-admin: 400 invalid-name: /);
  });
});

describe('status', () => {
  test('status summarises /ping and /stats', async () => {
    const result = await admin('status');
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(new RegExp(`^node: +${nodename}\n`));
    expect(result.stdout).toContain(`url:       ${url}\n`);
    expect(result.stdout).toMatch(/ping: +pong \(partition [0-9]+\)\n/);
    expect(result.stdout).toContain(`version:   ${packageVersion}\n`);
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

  test('a node that does not answer is exit 1, naming the URL', async () => {
    const deadUrl = `http://127.0.0.1:${await closedPort()}`;
    for (const command of ['member-status', 'status', 'user list', 'cluster plan']) {
      const result = await adminRaw(['--url', deadUrl, ...command.split(' ')]);
      expect(result.code, command).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`^iorio-admin: cannot reach ${deadUrl}/(ping|sessions): `));
    }
  });

  test('verify on a single node (groups of one, request.n = 3 by default): nothing diverges, exit 0; --repair goes with verify only', async (context) => {
    if (!clusterRoutes) context.skip();
    const report = await admin('verify');
    expect(report.code, report.stdout + report.stderr).toBe(0);
    expect(report.stdout).toMatch(/Diverged:0 \/ Unreachable:0/);
    expect((await admin('verify', 'b/s', '--repair')).code).toBe(0);
    expect(JSON.parse((await admin('--json', 'verify', 'b')).stdout)).toMatchObject({ n: 3, bucket: 'b', stream: null, repair: false, unreachable: [] });
    // The routes: admin only; a stream needs its bucket; a GET never repairs.
    const secret = { 'x-iorio-cluster-secret': 'iorio' };
    expect((await fetch(`${url}/admin/cluster/verify`)).status).toBe(401);
    expect((await fetch(`${url}/admin/cluster/verify?stream=s`, { headers: secret })).status).toBe(400);
    expect((await fetch(`${url}/admin/cluster/verify?repair=true`, { headers: secret })).status).toBe(400);
    expect((await fetch(`${url}/admin/cluster/verify?bucket=..`, { headers: secret })).status).toBe(400);
    const posted = await fetch(`${url}/admin/cluster/verify?repair=true`, { method: 'POST', headers: secret });
    expect(await posted.json()).toMatchObject({ n: 3, repair: true, unreachable: [] });
    const misplaced = await admin('status', '--repair');
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toMatch(/^iorio-admin: --repair goes with verify only\n/);
  });
});

/**
 * The cluster views against the real node, once it serves /admin/cluster/*
 * (the cluster runtime is built beside this CLI; until it lands these are
 * reported as skipped, and the stub below covers the commands).
 */
describe('the cluster views of a real one-node cluster', () => {
  test('member-status: this node, valid, owning the whole ring', async (context) => {
    if (!clusterRoutes) context.skip();
    expect(await admin('member-status')).toEqual({ code: 0, stdout: expectedMemberStatus, stderr: '' });
    const json = JSON.parse((await admin('--json', 'member-status')).stdout) as MembersAnswer;
    expect(json.rows).toEqual([{ node: nodename, status: 'valid', ringPercent: 100, pendingPercent: null, reachable: true }]);
    expect(json).toMatchObject({ node: nodename, claimant: nodename, valid: 1, leaving: 0, exiting: 0, joining: 0, down: 0 });
  });

  test('ring-status, ringready, plan and transfers of a settled one-node cluster', async (context) => {
    if (!clusterRoutes) context.skip();
    const ring = await admin('ring-status');
    expect(ring.code).toBe(0);
    expect(ring.stdout).toContain(`Claimant:  '${nodename}'\nStatus:     up\nRing Ready: true\n`);
    expect(ring.stdout).toContain('No pending changes.\n');
    expect(ring.stdout).toContain('All nodes are up and reachable\n');
    expect(await admin('ringready')).toEqual({ code: 0, stdout: `TRUE All nodes agree on the ring ['${nodename}']\n`, stderr: '' });
    expect(await admin('cluster', 'plan')).toEqual({ code: 0, stdout: 'There are no staged changes\n', stderr: '' });
    expect((await admin('transfers')).stdout).toMatch(/^No transfers active\n/);
  });

  test('with the config\'s admin password refused, the cluster secret stands in', async (context) => {
    if (!clusterRoutes) context.skip();
    const result = await admin('--auth.admin.password', 'not-the-password', 'member-status');
    expect(result).toEqual({ code: 0, stdout: expectedMemberStatus, stderr: '' });
    const wrongSecret = await admin('--auth.admin.password', 'not-the-password', '--cluster.secret', 'not-the-secret', 'member-status');
    expect(wrongSecret.code).toBe(1);
  });
});

// ---------------------------------------------------------------------------
// The cluster commands against a stub of /admin/cluster/* (cluster/admin-api.ts shapes)

interface StubRequest {
  method: string;
  path: string;
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
}

interface StubAnswer {
  status: number;
  body: unknown;
}

const stubNode = 'iorio2@127.0.0.1';
const stubSecret = 'stub-secret';
const stubToken = 'stub-token';

/** A node that answers /ping, /sessions (admin / secret) and /admin/cluster/* from `answers`, recording every request. */
class StubNode {
  readonly requests: StubRequest[] = [];
  answers = new Map<string, StubAnswer>();
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createHttpServer((request, response) => void this.handle(request, response));
    await new Promise<void>((resolvePromise) => this.server!.listen(0, '127.0.0.1', resolvePromise));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolvePromise) => (this.server === undefined ? resolvePromise() : this.server.close(() => resolvePromise())));
  }

  /** Requests to /admin/cluster/*, as "METHOD path". */
  clusterCalls(): string[] {
    return this.requests.filter((request) => request.path.startsWith('/admin/cluster')).map((request) => `${request.method} ${request.path}`);
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let text = '';
    for await (const chunk of request) text += String(chunk);
    const path = request.url ?? '';
    const body = text === '' ? undefined : (JSON.parse(text) as unknown);
    this.requests.push({ method: request.method ?? '', path, body, headers: request.headers });
    const answer = (status: number, value: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(value));
    };
    if (path === '/ping') return answer(200, { pong: '3', node: stubNode });
    if (path === '/sessions' && request.method === 'POST') {
      const { username, password } = (body ?? {}) as { username?: string; password?: string };
      return username === 'admin' && password === 'secret'
        ? answer(201, { ok: true, token: stubToken, username })
        : answer(401, { type: 'unauthorized', reason: 'wrong username or password' });
    }
    const authorized = request.headers['x-session'] === stubToken || request.headers['x-iorio-cluster-secret'] === stubSecret;
    if (!authorized) return answer(401, { type: 'unauthorized', reason: 'missing, invalid or expired credentials' });
    const stubbed = this.answers.get(`${request.method} ${path}`);
    if (stubbed === undefined) return answer(404, { type: 'not-found', reason: `no route for ${request.method} ${path}` });
    return answer(stubbed.status, stubbed.body);
  }
}

const stub = new StubNode();
/** The stub's wall clock for `transfers`: 90 s after the transfer below started. */
const transferStartedMs = Date.UTC(2026, 10, 21, 10, 0, 0);

beforeAll(async () => {
  await stub.start();
});

afterAll(async () => {
  await stub.stop();
});

/** runAdmin against the stub, with its cluster secret in the config, clean environment, fixed clock. */
async function stubAdmin(...argv: string[]): Promise<AdminResult> {
  let stdout = '';
  let stderr = '';
  const code = await runAdmin(['--url', stub.url, '--cluster.secret', stubSecret, ...argv], {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    env: {},
    nowMs: () => transferStartedMs + 90_000,
  });
  return { code, stdout, stderr };
}

function stubAnswer(method: string, path: string, body: unknown, status = 200): void {
  stub.answers.set(`${method} /admin/cluster/${path}`, { status, body });
}

/** A refusal of the claimant, as the node sends it. */
function refusal(reasonCode: string, reason: string, node?: string): unknown {
  return { type: 'conflict', reason, reason_code: reasonCode, ...(node === undefined ? {} : { node }) };
}

const dev = (index: number) => `iorio${index}@127.0.0.1`;

/** dev1 valid, dev2..dev4 joining: what the stub's node holds after the three joins. */
function devRing(): Ring {
  let ring = createRing('c1', 64, devMember(1));
  for (const index of [2, 3, 4]) ring = addJoining(ring, devMember(index));
  return ring;
}

function membersOf(ring: Ring, unreachable: readonly string[] = []): MembersAnswer {
  const table = memberStatus(ring);
  return {
    node: dev(1),
    cluster: ring.cluster,
    version: ring.version,
    claimant: ring.claimant,
    rows: table.rows.map((row) => ({ node: row.node, status: row.status, ringPercent: row.ringPercent, pendingPercent: row.pendingPercent ?? null, reachable: !unreachable.includes(row.node) })),
    valid: table.valid,
    leaving: table.leaving,
    exiting: table.exiting,
    joining: table.joining,
    down: table.down,
  };
}

describe('cluster views (stub node)', () => {
  test('member-status prints the Membership table of the answer; --json prints the answer', async () => {
    const answer = membersOf(devRing());
    stubAnswer('GET', 'members', answer);
    const result = await stubAdmin('member-status');
    expect(result).toEqual({
      code: 0,
      stdout: [
        '================================= Membership ==================================',
        'Status     Ring    Pending    Node',
        '-------------------------------------------------------------------------------',
        "joining     0.0%      --      'iorio2@127.0.0.1'",
        "joining     0.0%      --      'iorio3@127.0.0.1'",
        "joining     0.0%      --      'iorio4@127.0.0.1'",
        "valid     100.0%      --      'iorio1@127.0.0.1'",
        '-------------------------------------------------------------------------------',
        'Valid:1 / Leaving:0 / Exiting:0 / Joining:3 / Down:0',
        '',
      ].join('\n'),
      stderr: '',
    });
    expect(JSON.parse((await stubAdmin('--json', 'member-status')).stdout)).toEqual(answer);
    expect((await stubAdmin('member_status')).stdout).toBe(result.stdout);
    stubAnswer('GET', 'members', membersOf(futureRing(plan(devRing(), [], 7).ring), [dev(3)]));
    expect((await stubAdmin('member-status')).stdout).toContain("valid      25.0%      --      'iorio3@127.0.0.1' (unreachable)\n");
  });

  test('ring-status and ringready; ringready FALSE exits 1', async () => {
    const ring: RingAnswer = {
      node: dev(1),
      cluster: 'c1',
      version: 7,
      size: 64,
      claimant: dev(1),
      ringReady: true,
      unreachable: [],
      ownership: [{ node: dev(1), partitions: 64 }],
      pending: [{ partition: 3, source: dev(1), target: dev(2) }],
    };
    stubAnswer('GET', 'ring', ring);
    const status = await stubAdmin('ring-status');
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('Owner:      iorio1@127.0.0.1\nNext Owner: iorio2@127.0.0.1\n\nIndex: 3\n');
    expect(JSON.parse((await stubAdmin('--json', 'ring-status')).stdout)).toEqual(ring);

    const ready: RingReadyAnswer = { ready: true, nodes: [dev(1), dev(2)], disagreeing: [] };
    stubAnswer('GET', 'ringready', ready);
    expect(await stubAdmin('ringready')).toEqual({ code: 0, stdout: "TRUE All nodes agree on the ring ['iorio1@127.0.0.1','iorio2@127.0.0.1']\n", stderr: '' });
    stubAnswer('GET', 'ringready', { ready: false, nodes: [dev(1), dev(2)], disagreeing: [{ node: dev(2), reason: 'could not be reached' }] });
    const notReady = await stubAdmin('ringready');
    expect(notReady.code).toBe(1);
    expect(notReady.stdout).toBe("FALSE ['iorio2@127.0.0.1'] do not agree on the ring ['iorio1@127.0.0.1','iorio2@127.0.0.1']\n  'iorio2@127.0.0.1': could not be reached\n");
  });

  test("cluster plan prints Riak's plan of the answer: 48 transfers, 16 from iorio1 to each new node", async () => {
    const planned = plan(devRing(), [], 7);
    const answer: PlanAnswer = JSON.parse(JSON.stringify({ summary: planned.summary, transfers: planned.transfers, warnings: planned.warnings }));
    stubAnswer('GET', 'plan', answer);
    const result = await stubAdmin('cluster', 'plan');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${formatPlan(answer)}\n`);
    expect(result.stdout).toContain("join           'iorio3@127.0.0.1'\n");
    expect(result.stdout).toContain("Transfers resulting from cluster changes: 48\n  16 transfers from 'iorio1@127.0.0.1' to 'iorio2@127.0.0.1'\n");
    stubAnswer('GET', 'plan', refusal('ring_not_ready', 'the ring is not ready'), 409);
    expect(await stubAdmin('cluster', 'plan')).toEqual({
      code: 1,
      stdout: '',
      stderr: "Cannot plan until cluster state has converged.\nCheck 'Ring Ready' in 'iorio-admin ring-status'\n",
    });
  });

  test('transfers: who waits, the running ones with progress, who could not be asked', async () => {
    const answer: TransfersAnswer = {
      transfers: [
        { partition: 1, source: dev(1), target: dev(2), state: 'running', streamsDone: 1, streams: 4, bytes: 3 * 1024 * 1024, entries: 500, rateBytesPerSec: 2 * 1024 * 1024, etaSecs: 4.5, startedMs: transferStartedMs },
        { partition: 2, source: dev(1), target: dev(3), state: 'waiting', streamsDone: 0, streams: 0, bytes: 0, entries: 0, rateBytesPerSec: 0, etaSecs: null, startedMs: null },
      ],
      limits: { concurrency: 2, rateBytesPerSec: 0 },
      unreachable: [dev(4)],
    };
    stubAnswer('GET', 'transfers', answer);
    const result = await stubAdmin('transfers');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      [
        "'iorio1@127.0.0.1' waiting to handoff 2 partitions",
        '',
        'Active Transfers:',
        '',
        'transfer type: ownership',
        'partition: 1',
        'started: 2026-11-21 10:00:00 [1.50 min ago]',
        'state: running',
        'streams transferred: 1 of 4',
        'entries transferred: 500',
        'bytes transferred: 3.00 MB',
        'eta: 4.50 s',
        '',
        '                          500 entries',
        '     iorio1@127.0.0.1      =======>       iorio2@127.0.0.1',
        '         |==========                                 |  25%',
        '                           2.00 MB/s',
        '',
        '',
        "Node 'iorio4@127.0.0.1' could not be contacted",
        '',
      ].join('\n'),
    );
  });

  test('transfer-limit shows the limits, sets concurrency and rate, and transfer cancel deletes one transfer', async () => {
    stubAnswer('GET', 'transfers', { transfers: [], limits: { concurrency: 2, rateBytesPerSec: 0 }, unreachable: [] });
    const shown = await stubAdmin('transfer-limit');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain("    2        unlimited      'iorio2@127.0.0.1'\n");
    expect(JSON.parse((await stubAdmin('--json', 'transfer-limit')).stdout)).toEqual({ concurrency: 2, rateBytesPerSec: 0 });

    stubAnswer('POST', 'transfer-limit', { concurrency: 4, rateBytesPerSec: 10 * 1024 * 1024 });
    stub.requests.length = 0;
    expect(await stubAdmin('transfer-limit', '4', '--rate', '10MB')).toEqual({
      code: 0,
      stdout: "Set transfer limit for 'iorio2@127.0.0.1' to 4 (rate: 10.00 MB/s)\n",
      stderr: '',
    });
    expect(stub.requests.find((request) => request.path === '/admin/cluster/transfer-limit')?.body).toEqual({ concurrency: 4, rate: 10 * 1024 * 1024 });
    stub.requests.length = 0;
    expect((await stubAdmin('transfer-limit', '--rate=0')).code).toBe(0);
    expect(stub.requests.find((request) => request.path === '/admin/cluster/transfer-limit')?.body).toEqual({ rate: 0 });

    stubAnswer('DELETE', 'transfers/17', { ok: true, partition: 17 });
    stub.requests.length = 0;
    expect(await stubAdmin('transfer', 'cancel', '17')).toEqual({ code: 0, stdout: 'Success: cancelled the transfer of partition 17\n', stderr: '' });
    expect(stub.clusterCalls()).toEqual(['DELETE /admin/cluster/transfers/17']);
    stubAnswer('DELETE', 'transfers/18', { type: 'not-found', reason: 'no transfer of partition 18 is pending' }, 404);
    const missing = await stubAdmin('transfer', 'cancel', '18');
    expect(missing).toEqual({ code: 1, stdout: '', stderr: 'iorio-admin: 404 not-found: no transfer of partition 18 is pending\n' });
  });
});

describe('cluster changes (stub node)', () => {
  test('join: POSTs the node to join, prints Riak\'s staged line naming this node, whichever node the answer names', async () => {
    stubAnswer('POST', 'join', { ok: true, staged: 'join', node: stubNode });
    stub.requests.length = 0;
    const expected = { code: 0, stdout: "Success: staged join request for 'iorio2@127.0.0.1' to 'iorio1@127.0.0.1'\n", stderr: '' };
    expect(await stubAdmin('cluster', 'join', dev(1))).toEqual(expected);
    const posted = stub.requests.find((request) => request.path === '/admin/cluster/join')!;
    expect(posted.method).toBe('POST');
    expect(posted.body).toEqual({ node: dev(1) });
    expect(posted.headers['x-session']).toBe(stubToken);
    expect(posted.headers['x-iorio-cluster-secret']).toBeUndefined();
    stubAnswer('POST', 'join', { ok: true, staged: 'join', node: dev(1) });
    expect(await stubAdmin('cluster', 'join', dev(1))).toEqual(expected);
    expect(JSON.parse((await stubAdmin('--json', 'cluster', 'join', dev(1))).stdout)).toEqual({ ok: true, staged: 'join', node: dev(1) });
  });

  test('leave, force-remove, replace, force-replace, commit, clear and down: the body each POSTs and the line each prints', async () => {
    const cases: [string[], string, unknown, unknown, string][] = [
      [['cluster', 'leave'], 'leave', {}, { ok: true, staged: 'leave', node: stubNode }, "Success: staged leave request for 'iorio2@127.0.0.1'"],
      [['cluster', 'leave', dev(3)], 'leave', { node: dev(3) }, { ok: true, staged: 'leave', node: dev(3) }, "Success: staged leave request for 'iorio3@127.0.0.1'"],
      [['cluster', 'force-remove', dev(4)], 'force-remove', { node: dev(4) }, { ok: true, staged: 'force-remove', node: dev(4) }, "Success: staged remove request for 'iorio4@127.0.0.1'"],
      [
        ['cluster', 'replace', dev(3), dev(5)],
        'replace',
        { node: dev(3), by: dev(5) },
        { ok: true, staged: 'replace', node: dev(3), by: dev(5) },
        "Success: staged replacement of 'iorio3@127.0.0.1' with 'iorio5@127.0.0.1'",
      ],
      [
        ['cluster', 'force-replace', dev(3), dev(5)],
        'force-replace',
        { node: dev(3), by: dev(5) },
        { ok: true, staged: 'force-replace', node: dev(3), by: dev(5) },
        "Success: staged forced replacement of 'iorio3@127.0.0.1' with 'iorio5@127.0.0.1'",
      ],
      [['cluster', 'commit'], 'commit', undefined, { ok: true, version: 9 }, 'Cluster changes committed'],
      [['cluster', 'clear'], 'clear', undefined, { ok: true }, 'Cleared staged cluster changes'],
      [['down', dev(4)], 'down', { node: dev(4) }, { ok: true, version: 10 }, "Success: 'iorio4@127.0.0.1' marked as down"],
    ];
    for (const [line, route, body, answer, printed] of cases) {
      stubAnswer('POST', route, answer);
      stub.requests.length = 0;
      expect(await stubAdmin(...line), line.join(' ')).toEqual({ code: 0, stdout: `${printed}\n`, stderr: '' });
      const posted = stub.requests.filter((request) => request.path.startsWith('/admin/cluster'));
      expect(posted.map((request) => `${request.method} ${request.path}`), line.join(' ')).toEqual([`POST /admin/cluster/${route}`]);
      expect(posted[0]!.body, line.join(' ')).toEqual(body);
    }
  });

  test("refusals with a reason_code print Riak's words on stderr, exit 1; other refusals print the node's error", async () => {
    const cases: [string[], string, unknown, string][] = [
      [['cluster', 'leave', dev(7)], 'leave', refusal('not_member', `'${dev(7)}' is not a member of the cluster`, dev(7)), "Failed: 'iorio7@127.0.0.1' is not a member of the cluster."],
      [['cluster', 'leave'], 'leave', refusal('only_member', 'only member', stubNode), "Failed: 'iorio2@127.0.0.1' is the only member."],
      [
        ['cluster', 'replace', dev(3), dev(1)],
        'replace',
        refusal('invalid_replacement', 'not a valid replacement', dev(1)),
        "Failed: 'iorio1@127.0.0.1' is not a valid replacement candidate.\nOnly newly joining nodes can be used for replacement.",
      ],
      [['cluster', 'force-remove', dev(1)], 'force-remove', refusal('is_claimant', 'claimant', dev(1)), "Failed: 'iorio1@127.0.0.1' is the claimant (see: iorio-admin ring-status)."],
      [['cluster', 'commit'], 'commit', refusal('plan_changed', 'The plan has changed'), "The plan has changed. Verify with 'iorio-admin cluster plan' before committing"],
      [['cluster', 'commit'], 'commit', refusal('nothing_planned', 'nothing'), "You must verify the plan with 'iorio-admin cluster plan' before committing"],
      [['cluster', 'join', dev(1)], 'join', refusal('not_reachable', 'cannot reach'), 'Node iorio1@127.0.0.1 is not reachable!'],
      [['cluster', 'join', dev(1)], 'join', refusal('transfers_pending', '2 transfer(s) are pending: wait until they finish'), 'Failed: 2 transfer(s) are pending: wait until they finish'],
    ];
    for (const [line, route, body, printed] of cases) {
      stubAnswer('POST', route, body, 409);
      const result = await stubAdmin(...line);
      expect(result.code, line.join(' ')).toBe(1);
      expect(result.stdout, line.join(' ')).toBe('');
      expect(result.stderr.startsWith(`${printed}\n`), `${line.join(' ')}: ${result.stderr}`).toBe(true);
    }
    stubAnswer('POST', 'down', { type: 'invalid-param', reason: 'a node name must look like name@host' }, 400);
    expect(await stubAdmin('down', dev(4))).toEqual({ code: 1, stdout: '', stderr: 'iorio-admin: 400 invalid-param: a node name must look like name@host\n' });
  });

  test('usage errors exit 2 and send nothing to the node', async () => {
    stub.requests.length = 0;
    for (const line of [['cluster', 'join'], ['cluster', 'join', 'not-a-node'], ['cluster', 'replace', dev(1)], ['cluster', 'plan', 'x'], ['down'], ['transfer-limit', 'x'], ['transfer', 'cancel', 'x'], ['ringready', '--rate', '1MB'], ['cluster', 'dance']]) {
      const result = await stubAdmin(...line);
      expect(result.code, line.join(' ')).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain('usage: iorio-admin');
    }
    expect(stub.requests).toEqual([]);
  });
});

describe('cluster credentials (stub node)', () => {
  beforeAll(() => {
    stubAnswer('GET', 'members', membersOf(devRing()));
  });

  function lastClusterRequest(): StubRequest {
    return stub.requests.filter((request) => request.path.startsWith('/admin/cluster')).at(-1)!;
  }

  test('the config\'s credentials refused: the cluster secret from the config is sent instead', async () => {
    stub.requests.length = 0;
    const result = await stubAdmin('--auth.admin.password', 'changed-since', 'member-status');
    expect(result.code).toBe(0);
    expect(lastClusterRequest().headers['x-iorio-cluster-secret']).toBe(stubSecret);
    expect(lastClusterRequest().headers['x-session']).toBeUndefined();
    const wrongSecret = await stubAdmin('--auth.admin.password', 'changed-since', '--cluster.secret', 'not-it', 'member-status');
    expect(wrongSecret).toEqual({ code: 1, stdout: '', stderr: 'iorio-admin: 401 unauthorized: missing, invalid or expired credentials\n' });
  });

  test('credentials given on the line or in the environment are never replaced by the secret', async () => {
    stub.requests.length = 0;
    const flagged = await stubAdmin('-p', 'wrong', 'member-status');
    expect(flagged).toEqual({ code: 1, stdout: '', stderr: 'iorio-admin: 401 unauthorized: wrong username or password\n' });
    expect(stub.clusterCalls()).toEqual([]);
    let stderr = '';
    const code = await runAdmin(['--url', stub.url, '--cluster.secret', stubSecret, 'member-status'], {
      stdout: () => undefined,
      stderr: (text) => (stderr += text),
      env: { IORIO_ADMIN_PASSWORD: 'wrong' },
    });
    expect(code).toBe(1);
    expect(stderr).toMatch(/401 unauthorized/);
    expect(stub.clusterCalls()).toEqual([]);
  });

  test('user commands never use the secret', async () => {
    const result = await stubAdmin('--auth.admin.password', 'changed-since', 'user', 'list');
    expect(result).toEqual({ code: 1, stdout: '', stderr: 'iorio-admin: 401 unauthorized: wrong username or password\n' });
  });
});

describe('usage', () => {
  test('no command, an unknown command or option, a bad URL: exit 2; a bad config key or value: exit 1', async () => {
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
      expect(result.stderr).toBe(`${result.stderr.split('\n')[0]}\n${shortUsage}\n`);
    }
    const badKey = await adminRaw(['--no.such.key', '1', 'status']);
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toBe('iorio-admin: unknown configuration key "no.such.key" (from flag --no.such.key)\n');
    const badValue = await adminRaw(['--http.port', 'eighty', 'status']);
    expect(badValue.code).toBe(1);
    expect(badValue.stderr).toContain('http.port');
  });

  test('an unknown command gets a did-you-mean and a two-line usage, not the whole help', async () => {
    const result = await adminRaw(['member-stauts']);
    expect(result).toEqual({ code: 2, stdout: '', stderr: `iorio-admin: unknown command "member-stauts"; did you mean member-status?\n${shortUsage}\n` });
    expect(shortUsage.split('\n')).toHaveLength(2);
    expect((await adminRaw(['help', 'trnasfers'])).stderr).toMatch(/^iorio-admin: unknown command "trnasfers"; did you mean transfers\?\n/);
  });

  test('--help and help print the usage; <command> --help and help <command> print that command only; exit 0', async () => {
    expect(await adminRaw(['--help'])).toEqual({ code: 0, stdout: `${usage}\n`, stderr: '' });
    expect(await adminRaw(['help'])).toEqual({ code: 0, stdout: `${usage}\n`, stderr: '' });
    const user = await adminRaw(['user', '-h']);
    expect(user.code).toBe(0);
    expect(user.stdout).toContain('iorio-admin [options] user passwd <name> <password>');
    expect(user.stdout).not.toContain('cluster join');
    expect(await adminRaw(['help', 'user'])).toEqual(user);
    const cluster = await adminRaw(['cluster', '--help']);
    expect(cluster.stdout).toContain('cluster force-replace <node> <by>');
    expect(cluster.stdout).not.toContain('user add');
  });

  test('--version and version print the version without asking any node, exit 0', async () => {
    const expected = { code: 0, stdout: `iorio-admin ${packageVersion} (node ${process.versions.node})\n`, stderr: '' };
    expect(await adminRaw(['--version'])).toEqual(expected);
    expect(await adminRaw(['version'])).toEqual(expected);
    expect(await adminRaw(['--url', 'http://127.0.0.1:1', 'version'])).toEqual(expected);
  });
});

describe('environment', () => {
  test("an unknown IORIO_* variable is a warning on stderr, the command still runs; the tools' own are not warned about", async () => {
    const result = await adminRaw(['--url', url, 'access', 'never-granted/x'], { IORIO_FOO: '1', IORIO_HTTP_PROT: '1', IORIO_USER: 'x', IORIO_PASSWORD: 'y' });
    expect(result).toEqual({
      code: 0,
      stdout: expectedAccess,
      stderr:
        'iorio-admin: warning: ignoring the environment variable IORIO_FOO: not a configuration key\n' +
        'iorio-admin: warning: ignoring the environment variable IORIO_HTTP_PROT: not a configuration key; did you mean IORIO_HTTP_PORT?\n',
    });
  });
});

describe('request timeout', () => {
  test('a node that accepts the connection but never answers: exit 1 after --timeout, naming the URL and how to wait longer', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolvePromise) => silent.listen(0, '127.0.0.1', resolvePromise));
    const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const result = await adminRaw(['--url', silentUrl, '--timeout', '300ms', 'user', 'list']);
      expect(result).toEqual({
        code: 1,
        stdout: '',
        stderr: `iorio-admin: no answer from ${silentUrl}/sessions within 300ms: the node may be hung or overloaded (--timeout or IORIO_ADMIN_TIMEOUT waits longer)\n`,
      });
      const fromEnv = await adminRaw(['--url', silentUrl, 'services'], { IORIO_ADMIN_TIMEOUT: '200ms' });
      expect(fromEnv.code).toBe(1);
      expect(fromEnv.stderr).toContain('within 200ms');
      const bad = await adminRaw(['--url', silentUrl, '--timeout', 'soon', 'services']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/^iorio-admin: --timeout must be a duration like 500ms, 5s or 2m, got "soon"\n/);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolvePromise) => silent.close(() => resolvePromise()));
    }
  });
});

describe('services and wait-for-service', () => {
  test("services prints riak-admin's list; an unreachable node is exit 1", async () => {
    expect(await admin('services')).toEqual({ code: 0, stdout: '[iorio]\n', stderr: '' });
    expect(await admin('--json', 'services')).toEqual({ code: 0, stdout: '["iorio"]\n', stderr: '' });
    const dead = await adminRaw(['--url', `http://127.0.0.1:${await closedPort()}`, 'services']);
    expect(dead.code).toBe(1);
    expect(dead.stderr).toMatch(/^iorio-admin: cannot reach http:\/\/127\.0\.0\.1:\d+\/ping: /);
  });

  test('wait-for-service iorio: "is up" at once for a running node, for this node named, and an unknown service is a usage error', async () => {
    expect(await admin('wait-for-service', 'iorio')).toEqual({ code: 0, stdout: 'iorio is up\n', stderr: '' });
    expect(await admin('wait-for-service', 'iorio', nodename)).toEqual({ code: 0, stdout: 'iorio is up\n', stderr: '' });
    const unknown = await admin('wait-for-service', 'riak_kv');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^iorio-admin: unknown service "riak_kv" \(the services are: iorio\)\n/);
  });

  test('wait-for-service waits, printing "iorio is not up: []", until a node starts on the address', async () => {
    const port = await closedPort();
    const waitData = join(root, 'wait-for-service');
    let stdout = '';
    let stderr = '';
    let started: IorioNode | undefined;
    const waiting = runAdmin(['--url', `http://127.0.0.1:${port}`, 'wait-for-service', 'iorio'], {
      stdout: (text) => (stdout += text),
      stderr: (text) => (stderr += text),
      env: {},
      waitIntervalMs: 50,
    });
    try {
      await expect.poll(() => stdout, { timeout: 30_000 }).toMatch(/^iorio is not up: \[\] \(cannot reach http:\/\/127\.0\.0\.1:\d+\/ping: .*\)\n/);
      started = await startNode(testConfig({ 'http.port': port, 'cluster.port': 0, 'paths.data': waitData, 'auth.bcrypt.rounds': 4 }), { logger: pino({ level: 'silent' }) });
      expect(await waiting).toBe(0);
      expect(stdout).toMatch(/\niorio is up\n$/);
      expect(stderr).toBe('');
    } finally {
      await started?.stop();
      await started?.auth.close();
    }
  });

  test('wait-for-service for a node that is not a member says so while it waits', async () => {
    let stdout = '';
    const interrupt = new AbortController();
    const waiting = runAdmin(['--url', url, 'wait-for-service', 'iorio', 'stranger@127.0.0.1'], {
      stdout: (text) => (stdout += text),
      stderr: () => undefined,
      env: {},
      waitIntervalMs: 50,
      signal: interrupt.signal,
    });
    await expect.poll(() => stdout, { timeout: 30_000 }).toMatch(/^iorio is not up: \[\] \(stranger@127\.0\.0\.1 is not a member of admintest@127\.0\.0\.1's cluster\)\n/);
    // It waits as riak-admin does, as long as it takes; an interrupt ends it with exit 1.
    interrupt.abort();
    expect(await waiting).toBe(1);
  });
});

describe('policy', () => {
  test('set, get and del a bucket and a stream policy; what the node keeps is what was set', async () => {
    expect(await admin('policy', 'get', 'pol')).toEqual({ code: 0, stdout: "policy of pol: none of its own (its bucket's policy or the config default applies)\n", stderr: '' });
    expect(await admin('policy', 'set', 'pol', 'max_count=1000', 'max_bytes=512MB', 'max_age=7d')).toEqual({
      code: 0,
      stdout: 'policy of pol set: max_count=1000 max_bytes=512MB max_age=7d\n',
      stderr: '',
    });
    expect(await admin('policy', 'set', 'pol/one', 'max_count=10')).toEqual({ code: 0, stdout: 'policy of pol/one set: max_count=10\n', stderr: '' });
    expect(await admin('--json', 'policy', 'get', 'pol')).toEqual({ code: 0, stdout: '{"max_count":1000,"max_bytes":536870912,"max_age_secs":604800}\n', stderr: '' });
    expect(await admin('policy', 'get', 'pol/one')).toEqual({ code: 0, stdout: 'policy of pol/one: max_count=10\n', stderr: '' });
    expect(await admin('policy', 'del', 'pol/one')).toEqual({ code: 0, stdout: 'policy of pol/one removed\n', stderr: '' });
    expect((await admin('--json', 'policy', 'get', 'pol/one')).stdout).toBe('{}\n');
  });

  test('bad policy lines are usage errors (exit 2) and change nothing', async () => {
    const cases: [string[], RegExp][] = [
      [['policy'], /policy needs one of get, set, del/],
      [['policy', 'sett', 'b', 'max_count=1'], /unknown policy command "sett"; did you mean set\?/],
      [['policy', 'set', 'b'], /expected: policy set/],
      [['policy', 'set', 'b', 'max_cont=1'], /unknown policy setting "max_cont"; did you mean max_count\?/],
      [['policy', 'set', 'b', 'max_bytes=lots'], /max_bytes must be a size/],
      [['policy', 'set', 'b', 'max_age=1500ms'], /max_age must be a duration of whole seconds/],
      [['policy', 'get'], /expected: policy get/],
    ];
    for (const [argv, message] of cases) {
      const result = await admin(...argv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.stderr).toMatch(message);
    }
    expect((await admin('--json', 'policy', 'get', 'b')).stdout).toBe('{}\n');
  });

  test('a user without grant on the bucket is refused (exit 1)', async () => {
    expect((await admin('user', 'add', 'nopolicy', 'nopolicy-pw')).code).toBe(0);
    const refused = await adminRaw(['--url', url, '-u', 'nopolicy', '-p', 'nopolicy-pw', 'policy', 'set', 'pol', 'max_count=1']);
    expect(refused.code).toBe(1);
    // 401 (IorioDB) or 403, whichever the node answers: the refusal is what matters here.
    expect(refused.stderr).toMatch(/^iorio-admin: 40[13] no-perm: nopolicy may not grant on bucket pol\n$/);
  });
});

describe('where the node is', () => {
  test('without --url: the configured http.host and http.port', async () => {
    const port = new URL(url).port;
    const result = await adminRaw(['--paths.data', join(root, 'no-url-file'), '--http.port', port, 'access', 'never-granted/x']);
    expect(result).toEqual({ code: 0, stdout: expectedAccess, stderr: '' });
  });

  test('the URL the node running on paths.data recorded beats the configured address; --http.port and --url beat it', async () => {
    // The test node holds the lock of dataDir; record its URL there as `iorio console` does.
    await writeFile(join(dataDir, 'iorio.url'), `${url}\n`);
    const config = join(root, 'dead-port.conf');
    const deadPort = String(await closedPort());
    await writeFile(config, `http.port = ${deadPort}\n`);
    const recorded = await adminRaw(['-c', config, '--paths.data', dataDir, 'access', 'never-granted/x']);
    expect(recorded).toEqual({ code: 0, stdout: expectedAccess, stderr: '' });
    const explicitPort = await adminRaw(['--paths.data', dataDir, '--http.port', deadPort, 'access', 'never-granted/x']);
    expect(explicitPort.code).toBe(1);
    expect(explicitPort.stderr).toContain(`cannot reach http://127.0.0.1:${deadPort}/sessions`);
    const explicitUrl = await adminRaw(['--paths.data', dataDir, '--url', `http://127.0.0.1:${deadPort}`, 'access', 'never-granted/x']);
    expect(explicitUrl.code).toBe(1);
    expect(explicitUrl.stderr).toContain(`cannot reach http://127.0.0.1:${deadPort}/sessions`);
  });

  test('an iorio.url left behind by a node that no longer runs is not followed', async () => {
    const stale = join(root, 'stale');
    await mkdir(stale, { recursive: true });
    const deadPort = String(await closedPort());
    await writeFile(join(stale, 'iorio.url'), `http://127.0.0.1:${deadPort}\n`);
    const result = await adminRaw(['--paths.data', stale, '--http.port', new URL(url).port, 'access', 'never-granted/x']);
    expect(result).toEqual({ code: 0, stdout: expectedAccess, stderr: '' });
    const port = new URL(url).port;
    const configured = join(root, 'live-port.conf');
    await writeFile(configured, `http.port = ${port}\npaths.data = ${stale}\n`);
    expect(await adminRaw(['-c', configured, 'access', 'never-granted/x'])).toEqual({ code: 0, stdout: expectedAccess, stderr: '' });
  });

  test('-c reads the node config file', async () => {
    const file = join(root, 'admin-test.conf');
    await writeFile(file, `http.port = ${new URL(url).port}\npaths.data = ${join(root, 'conf-data')}\nauth.admin.password = secret\n`);
    expect(await adminRaw(['-c', file, 'access', 'never-granted/x'])).toEqual({ code: 0, stdout: expectedAccess, stderr: '' });
    expect((await adminRaw(['-c', file, 'user', 'list'])).code).toBe(0);
    const missing = await adminRaw(['-c', join(root, 'missing.conf'), 'status']);
    expect(missing.code).toBe(1);
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
    expect(await script(['--url', url, 'access', 'never-granted/x'])).toEqual({ code: 0, stdout: expectedAccess, stderr: '' });
    const env = { IORIO_ADMIN_USER: 'admin', IORIO_ADMIN_PASSWORD: 'secret' };
    const added = await script(['--url', url, '--auth.admin.password', 'wrong', 'user', 'add', 'scripted', 'scripted-pw'], env);
    expect(added).toEqual({ code: 0, stdout: 'user scripted added\n', stderr: '' });
    expect(await loginStatus('scripted', 'scripted-pw')).toBe(201);
    const refused = await script(['--url', url, '-p', 'wrong', 'user', 'list']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^iorio-admin: 401 unauthorized: /);
    stubAnswer('POST', 'join', { ok: true, staged: 'join', node: stubNode });
    expect(await script(['--url', stub.url, '--cluster.secret', stubSecret, 'cluster', 'join', 'iorio1@127.0.0.1'])).toEqual({
      code: 0,
      stdout: "Success: staged join request for 'iorio2@127.0.0.1' to 'iorio1@127.0.0.1'\n",
      stderr: '',
    });
    expect((await script(['cluster', 'join'])).code).toBe(2);
    expect((await script([])).code).toBe(2);
  });
});
