/**
 * iorio-admin's group commands, global grants (viewstats) and stream info
 * against a real node (port 0): in-process through runAdmin (text and
 * --json output, exit statuses, usage errors with did-you-mean, per-command
 * help), then the real entry point (src/admin-main.ts) as a child process.
 * Each command is checked by what the node then does, not only by what it
 * prints.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runAdmin } from '../../src/cli/iorio-admin.js';
import { append, call, createUser, startTestNode, type TestNode } from './http-harness.js';

const run = promisify(execFile);
const adminMain = resolve(import.meta.dirname, '../../src/admin-main.ts');
const processTimeoutMs = 30_000;

let node: TestNode;
let bob: string;

beforeAll(async () => {
  node = await startTestNode();
  bob = await createUser(node, 'bob');
  await createUser(node, 'alice');
});
afterAll(async () => {
  await node?.stop();
});

interface AdminResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** runAdmin against the test node, with a clean environment: the default config's admin/secret. */
async function admin(...argv: string[]): Promise<AdminResult> {
  let stdout = '';
  let stderr = '';
  const code = await runAdmin(['--url', node.url, ...argv], { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), env: {} });
  return { code, stdout, stderr };
}

/** A GET as a client on another machine (loopback callers may read /stats without viewstats). */
async function statsFromAfar(token: string): Promise<number> {
  return (await node.node.app.inject({ method: 'GET', url: '/stats', remoteAddress: '192.0.2.7', headers: { 'x-session': token } })).statusCode;
}

describe('group', () => {
  test('add, list, add-user, show, remove-user, del: each changes what the node answers', async () => {
    expect(await admin('group', 'add', 'ops')).toEqual({ code: 0, stdout: 'group ops added\n', stderr: '' });
    expect(await admin('group', 'list')).toEqual({ code: 0, stdout: 'g-admin  (built in)\ng-authenticated  (built in)\nops\n', stderr: '' });
    expect(JSON.parse((await admin('--json', 'group', 'list')).stdout)).toEqual([
      { name: 'g-admin', builtin: true },
      { name: 'g-authenticated', builtin: true },
      { name: 'ops', builtin: false },
    ]);

    expect(await admin('group', 'add-user', 'ops', 'bob')).toEqual({ code: 0, stdout: 'user bob added to group ops\n', stderr: '' });
    expect(await admin('group', 'add-user', 'ops', 'alice')).toEqual({ code: 0, stdout: 'user alice added to group ops\n', stderr: '' });
    expect((await call(node, 'GET', '/groups/ops', { token: node.adminToken })).body.users.sort()).toEqual(['alice', 'bob']);
    expect(await admin('group', 'show', 'ops')).toEqual({ code: 0, stdout: 'group ops\nusers:\n  alice\n  bob\n', stderr: '' });
    expect(JSON.parse((await admin('--json', 'group', 'show', 'ops')).stdout)).toEqual({ name: 'ops', builtin: false, users: expect.arrayContaining(['alice', 'bob']) });

    // A grant to the group reaches its members.
    await append(node, 'opsbucket', 's', { n: 1 });
    expect((await call(node, 'GET', '/streams/opsbucket/s', { token: bob })).status).toBe(401);
    expect((await admin('grant', 'get', 'on', 'opsbucket', 'to', 'group:ops')).code).toBe(0);
    expect((await call(node, 'GET', '/streams/opsbucket/s', { token: bob })).status).toBe(200);

    expect(await admin('group', 'remove-user', 'ops', 'bob')).toEqual({ code: 0, stdout: 'user bob removed from group ops\n', stderr: '' });
    expect((await call(node, 'GET', '/streams/opsbucket/s', { token: bob })).status).toBe(401);
    expect(await admin('group', 'show', 'ops')).toEqual({ code: 0, stdout: 'group ops\nusers:\n  alice\n', stderr: '' });

    expect(await admin('group', 'del', 'ops')).toEqual({ code: 0, stdout: 'group ops deleted\n', stderr: '' });
    expect((await call(node, 'GET', '/groups/ops', { token: node.adminToken })).status).toBe(404);
  });

  test("the node's refusals: exit 1 with its type and reason", async () => {
    const missing = await admin('group', 'show', 'nosuch');
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(/^iorio-admin: 404 not-found: .+\n$/);
    expect((await admin('group', 'add', 'twice')).code).toBe(0);
    expect((await admin('group', 'add', 'twice')).stderr).toMatch(/^iorio-admin: 409 conflict: /);
    expect((await admin('group', 'del', 'g-admin')).stderr).toMatch(/^iorio-admin: 400 invalid-param: /);
    expect((await admin('group', 'add-user', 'twice', 'nobody')).code).toBe(1);
    expect((await admin('group', 'add', 'bad/name')).code).toBe(1);
  });

  test('usage errors: exit 2, one line and the short usage, with a did-you-mean', async () => {
    const cases: [string[], string][] = [
      [['group'], 'group needs one of add, del, list, show, add-user, remove-user'],
      [['group', 'ad', 'x'], 'unknown group command "ad"; did you mean add?'],
      [['group', 'add-usr', 'ops', 'bob'], 'unknown group command "add-usr"; did you mean add-user?'],
      [['group', 'add'], 'expected: group add <name>'],
      [['group', 'list', 'x'], 'expected: group list'],
      [['group', 'add-user', 'ops'], 'expected: group add-user <group> <user>'],
      [['grup', 'list'], 'unknown command "grup"; did you mean group?'],
    ];
    for (const [argv, message] of cases) {
      const result = await admin(...argv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.stderr.split('\n')[0]).toBe(`iorio-admin: ${message}`);
      expect(result.stderr.split('\n').length).toBeLessThan(5);
    }
  });

  test('group --help and help group show the group commands only', async () => {
    for (const argv of [['group', '--help'], ['help', 'group']]) {
      const result = await admin(...argv);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('iorio-admin [options] group add-user <group> <user>');
      expect(result.stdout).toContain('iorio-admin [options] group show <name>');
      expect(result.stdout).not.toContain('cluster join');
    }
  });
});

describe('global grants', () => {
  test('grant viewstats to a user: /stats opens to it from another machine; access lists it; revoke closes it', async () => {
    expect(await statsFromAfar(bob)).toBe(401);
    expect(await admin('grant', 'viewstats', 'to', 'bob')).toEqual({ code: 0, stdout: 'granted viewstats globally to user bob\n', stderr: '' });
    expect(await statsFromAfar(bob)).toBe(200);

    const listed = await admin('access');
    expect(listed.code).toBe(0);
    expect(listed.stdout.split('\n')[0]).toBe('global access (every bucket)');
    expect(listed.stdout).toMatch(/\n {2}bob +viewstats\n/);
    expect(JSON.parse((await admin('--json', 'access')).stdout).users).toContainEqual({ name: 'bob', grants: ['viewstats'] });

    expect(await admin('revoke', 'viewstats', 'from', 'bob')).toEqual({ code: 0, stdout: 'revoked viewstats globally from user bob\n', stderr: '' });
    expect(await statsFromAfar(bob)).toBe(401);
  });

  test('to a group, and several at once', async () => {
    expect((await admin('group', 'add', 'watchers')).code).toBe(0);
    expect((await admin('group', 'add-user', 'watchers', 'alice')).code).toBe(0);
    expect(await admin('grant', 'viewstats,adminusers', 'to', 'group:watchers')).toEqual({
      code: 0,
      stdout: 'granted viewstats,adminusers globally to group watchers\n',
      stderr: '',
    });
    expect(JSON.parse((await admin('--json', 'access')).stdout).groups).toContainEqual({ name: 'watchers', grants: ['adminusers', 'viewstats'] });
  });

  test('a global permission on a bucket, or a misspelt one, is a usage error naming the right form', async () => {
    const onBucket = await admin('grant', 'viewstats', 'on', 'somebucket', 'to', 'bob');
    expect(onBucket.code).toBe(2);
    expect(onBucket.stderr.split('\n')[0]).toBe("iorio-admin: viewstats is global, not a bucket's: grant viewstats to bob");
    const misspelt = await admin('grant', 'viewstat', 'to', 'bob');
    expect(misspelt.code).toBe(2);
    expect(misspelt.stderr.split('\n')[0]).toContain('unknown permission "viewstat"; did you mean viewstats?');
    expect((await admin('grant', 'viewstats', 'bob')).stderr.split('\n')[0]).toBe(
      'iorio-admin: expected: grant <permission>[,<permission>...] [on <bucket>[/<stream>]] to <user>|group:<group>',
    );
  });

  test('a refusal of the node: an unknown user is exit 1 with invalid-field', async () => {
    const result = await admin('grant', 'viewstats', 'to', 'nobody');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^iorio-admin: 400 invalid-field: /);
  });
});

describe('stream info', () => {
  test("first and last seqnum, entries, bytes, chunks and the policy in force with where it comes from; --json is the node's answer", async () => {
    for (let index = 1; index <= 3; index++) await append(node, 'inf', 'temp', { index });
    expect((await admin('policy', 'set', 'inf', 'max_count=1000')).code).toBe(0);
    const shown = await admin('stream', 'info', 'inf/temp');
    expect(shown.code).toBe(0);
    const lines = shown.stdout.trimEnd().split('\n');
    const field = (label: string) => lines.find((line) => line.startsWith(`${label}:`))?.slice(label.length + 1).trim();
    expect(field('stream')).toBe('inf/temp');
    expect(field('seqnums')).toBe('1 to 3');
    expect(field('first')).toBe('1');
    expect(field('last')).toBe('3');
    expect(field('entries')).toBe('3');
    expect(field('chunks')).toBe('1');
    expect(field('bytes')).toMatch(/^\d+ \(\d+\.\d\d B\)$/);
    expect(field('policy')).toBe("max_count=1000 (its bucket's)");
    expect(field('deleted up to')).toBe('never deleted');

    expect((await admin('policy', 'set', 'inf/temp', 'max_age=7d')).code).toBe(0);
    expect((await admin('stream', 'info', 'inf/temp')).stdout).toContain("policy:           max_age=7d (the stream's own)");

    const json = await admin('--json', 'stream', 'info', 'inf/temp');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual((await call(node, 'GET', '/streams/inf/temp/info', { token: node.adminToken })).body);
  });

  test('a stream never written is exit 1 (404); a bucket alone or a misspelt word is a usage error', async () => {
    const missing = await admin('stream', 'info', 'inf/never');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^iorio-admin: 404 not-found: /);
    expect((await admin('stream', 'info', 'inf')).stderr.split('\n')[0]).toBe('iorio-admin: "inf" is not <bucket>/<stream>');
    expect((await admin('stream', 'infi', 'inf/temp')).stderr.split('\n')[0]).toBe('iorio-admin: unknown stream command "infi"; did you mean info?');
    expect((await admin('stream')).code).toBe(2);
    expect((await admin('stream', '--help')).stdout).toContain('iorio-admin [options] stream info <bucket>/<stream>');
  });
});

describe('as a process', () => {
  test('src/admin-main.ts: group list, grant viewstats, stream info, exit statuses', async () => {
    const env = { ...process.env, IORIO_ADMIN_USER: '', IORIO_ADMIN_PASSWORD: '' };
    const options = { env, timeout: processTimeoutMs };
    const runMain = (...argv: string[]) => run(process.execPath, ['--import', 'tsx', adminMain, '--url', node.url, ...argv], options);
    expect((await runMain('group', 'list')).stdout).toContain('g-authenticated  (built in)\n');
    expect((await runMain('grant', 'viewstats', 'to', 'alice')).stdout).toBe('granted viewstats globally to user alice\n');
    expect((await runMain('stream', 'info', 'inf/temp')).stdout).toContain('entries:          3\n');
    await expect(runMain('group', 'frob')).rejects.toMatchObject({ code: 2 });
    await expect(runMain('stream', 'info', 'inf/never')).rejects.toMatchObject({ code: 1 });
  });
});
