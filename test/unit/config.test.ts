import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  buildConfig,
  configKeys,
  configSpec,
  envNameOf,
  envWarnings,
  formatDuration,
  formatSize,
  loadConfig,
  parseConfigText,
  parseDuration,
  parseSize,
  parseValue,
  testConfig,
  type ConfigKey,
  type KeySpec,
} from '../../src/config.js';

const confPath = resolve(import.meta.dirname, '../../config/iorio.conf');
const scratch = mkdtempSync(join(tmpdir(), 'iorio-config-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let fileCount = 0;
function writeConf(text: string): string {
  const file = join(scratch, `conf-${fileCount++}.conf`);
  writeFileSync(file, text);
  return file;
}

/** Runs `action`, expects a ConfigError and returns it. */
function configError(action: () => unknown): ConfigError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, got none');
}

const spec = (key: ConfigKey): KeySpec => configSpec[key];

function parsed(key: ConfigKey, raw: string | number | boolean): unknown {
  const result = parseValue(spec(key), raw);
  if (!result.ok) throw new Error(`${key}=${String(raw)}: expected ${result.expected}`);
  return result.value;
}
function rejected(key: ConfigKey, raw: string | number | boolean): boolean {
  return !parseValue(spec(key), raw).ok;
}

describe('the shipped config/iorio.conf', () => {
  const text = readFileSync(confPath, 'utf8');
  const entries = parseConfigText(text, confPath);

  it('holds every key of the spec exactly once and nothing else', () => {
    expect(entries.map((entry) => entry.key).sort()).toEqual([...configKeys].sort());
  });

  it('states the built-in defaults, so the docs and the defaults cannot drift', () => {
    const fromFile = loadConfig({ file: confPath, env: {}, flags: {} });
    expect(fromFile).toEqual(testConfig());
    for (const { key, value } of entries) {
      expect(parseValue(spec(key as ConfigKey), value), key).toEqual(parseValue(spec(key as ConfigKey), spec(key as ConfigKey).default));
    }
  });

  it('documents every key with a comment right above it', () => {
    const lines = text.split('\n');
    for (const { key, line } of entries) {
      const above = lines[line - 2] ?? '';
      expect(above.trim().startsWith('#') && above.replace(/^#+/, '').trim().length > 0, `comment above ${key}`).toBe(true);
    }
  });

  it('gives every spec key a non-empty doc line', () => {
    for (const key of configKeys) expect(spec(key).doc.trim().length, key).toBeGreaterThan(10);
  });
});

describe('defaults', () => {
  it('match the documented list', () => {
    const config = testConfig();
    expect(config.nodename).toBe('iorio@127.0.0.1');
    expect(config['paths.data']).toBe(resolve(process.cwd(), 'data'));
    expect(config['http.port']).toBe(8080);
    expect(config['http.body.max']).toBe(1024 * 1024);
    expect(config['http.cors.enabled']).toBe(false);
    expect(config['http.ratelimit.enabled']).toBe(false);
    expect(config['http.ratelimit.window']).toBe(1000);
    expect(config['https.cert']).toBe('');
    expect(config['auth.secret']).toBe('');
    expect(config['auth.algorithm']).toBe('HS256');
    expect(config['auth.session.duration']).toBe(24 * 3600 * 1000);
    expect(config['auth.bcrypt.rounds']).toBe(10);
    expect(config['storage.sync']).toBe('always');
    expect(config['storage.sync.interval']).toBe(10);
    expect(config['storage.chunk.size']).toBe(8 * 1024 * 1024);
    expect(config['storage.checkpoint.log_size']).toBe(256 * 1024 * 1024);
    expect(config['channel.max_items']).toBe(50);
    expect(config['channel.max_items_size']).toBe(2 * 1024 * 1024);
    expect(config['eviction.interval']).toBe(60_000);
    expect(config['eviction.stream.max_age']).toBe(0);
    expect(config['ring.size']).toBe(64);
    expect(config['listen.timeout']).toBe(30_000);
    expect(config['metrics.interval']).toBe(60_000);
  });

  it('has exactly the keys of the spec', () => {
    expect(Object.keys(testConfig()).sort()).toEqual([...configKeys].sort());
  });

  it('is frozen', () => {
    const config = testConfig();
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as Record<string, unknown>)['http.port'] = 1;
    }).toThrow(TypeError);
    expect(config['http.port']).toBe(8080);
  });

  it('maps every key to a distinct environment variable', () => {
    const names = configKeys.map(envNameOf);
    expect(new Set(names).size).toBe(names.length);
    expect(envNameOf('http.port')).toBe('IORIO_HTTP_PORT');
    expect(envNameOf('channel.max_items')).toBe('IORIO_CHANNEL_MAX_ITEMS');
  });
});

describe('value kinds', () => {
  it('durations', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('1m')).toBe(60_000);
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('7d')).toBe(7 * 86_400_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('0')).toBe(0);
    for (const badText of ['', '5', '1.5s', '-1s', '5 s', '5sec', '1w', 'ms', '30m1h', '1m1m', '5S', '0s0']) {
      expect(parseDuration(badText), badText).toBeUndefined();
    }
    expect(parsed('listen.timeout', '10s')).toBe(10_000);
    expect(parsed('listen.timeout', 250)).toBe(250);
    expect(rejected('listen.timeout', '0')).toBe(true); // below its minimum
    expect(rejected('listen.timeout', '1h')).toBe(true); // above listenTimeoutMsMax
    expect(rejected('listen.timeout', 1.5)).toBe(true);
    expect(rejected('listen.timeout', true)).toBe(true);
    expect(parsed('eviction.stream.max_age', '0')).toBe(0);
    expect(parsed('eviction.stream.max_age', '30d')).toBe(30 * 86_400_000);
  });

  it('sizes', () => {
    expect(parseSize('512KB')).toBe(512 * 1024);
    expect(parseSize('2MB')).toBe(2 * 1024 * 1024);
    expect(parseSize('1GB')).toBe(1024 ** 3);
    expect(parseSize('1TB')).toBe(1024 ** 4);
    expect(parseSize('100B')).toBe(100);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('2mb')).toBe(2 * 1024 * 1024);
    expect(parseSize('0')).toBe(0);
    for (const badText of ['', 'MB', '1.5MB', '-1KB', '2MiB', '2XB', '1e6', '99999999999999999TB']) {
      expect(parseSize(badText), badText).toBeUndefined();
    }
    expect(parsed('http.body.max', '64KB')).toBe(65_536);
    expect(parsed('http.body.max', 1000)).toBe(1000);
    expect(rejected('http.body.max', '0')).toBe(true); // a body limit of 0 makes no sense
    expect(rejected('http.body.max', '2GB')).toBe(true);
    expect(parsed('eviction.bucket.size.max', '50MB')).toBe(50 * 1024 * 1024);
  });

  it('format back into the syntax they were parsed from', () => {
    for (const text of ['500ms', '5s', '1m', '36h', '7d', '1h30m', '0']) {
      expect(parseDuration(formatDuration(parseDuration(text)!)), text).toBe(parseDuration(text));
    }
    expect(formatDuration(90_000)).toBe('90s');
    expect(formatDuration(86_400_000)).toBe('1d');
    expect(formatDuration(1500)).toBe('1500ms');
    for (const text of ['512KB', '2MB', '1GB', '1000', '0']) expect(formatSize(parseSize(text)!)).toBe(text);
  });

  it('booleans', () => {
    for (const word of ['yes', 'true', 'on', 'YES', 'True']) expect(parsed('http.cors.enabled', word), word).toBe(true);
    for (const word of ['no', 'false', 'off', 'No']) expect(parsed('http.cors.enabled', word), word).toBe(false);
    expect(parsed('http.cors.enabled', true)).toBe(true);
    for (const word of ['', '1', '0', 'y', 'enabled']) expect(rejected('http.cors.enabled', word), word).toBe(true);
    expect(rejected('http.cors.enabled', 1)).toBe(true);
  });

  it('integers', () => {
    expect(parsed('auth.bcrypt.rounds', '12')).toBe(12);
    expect(parsed('auth.bcrypt.rounds', 4)).toBe(4);
    for (const text of ['3', '32', '10.5', '1e1', 'ten', '', ' 10x', '0x10']) {
      expect(rejected('auth.bcrypt.rounds', text), text).toBe(true);
    }
    expect(parsed('eviction.stream.max_count', '0')).toBe(0);
    expect(rejected('eviction.stream.max_count', '-1')).toBe(true);
    expect(rejected('channel.max_items', '0')).toBe(true);
  });

  it('ports', () => {
    expect(parsed('http.port', '0')).toBe(0);
    expect(parsed('http.port', '65535')).toBe(65535);
    expect(parsed('http.port', 8091)).toBe(8091);
    for (const text of ['65536', '-1', '80.0', 'http', '']) expect(rejected('http.port', text), text).toBe(true);
  });

  it('enums are exact', () => {
    expect(parsed('storage.sync', 'batch')).toBe('batch');
    expect(parsed('log.level', 'silent')).toBe('silent');
    expect(parsed('auth.algorithm', 'HS512')).toBe('HS512');
    for (const text of ['Always', 'fsync', '', 'always ']) expect(rejected('storage.sync', text), text).toBe(true);
    expect(rejected('auth.algorithm', 'none')).toBe(true);
    expect(rejected('auth.algorithm', 'RS256')).toBe(true);
  });

  it('strings and names', () => {
    expect(parsed('nodename', 'iorio3@10.0.0.7')).toBe('iorio3@10.0.0.7');
    for (const text of ['iorio', '@host', 'a@b@c', 'a b@c', '']) expect(rejected('nodename', text), text).toBe(true);
    expect(parsed('auth.admin.username', 'root_1')).toBe('root_1');
    for (const text of ['', 'a/b', '..', 'x'.repeat(129)]) expect(rejected('auth.admin.username', text), text).toBe(true);
    expect(rejected('auth.admin.password', '')).toBe(true);
    expect(parsed('auth.admin.password', 'p#ss=word')).toBe('p#ss=word');
    expect(parsed('auth.secret', '')).toBe('');
    expect(rejected('http.host', 42)).toBe(true);
  });

  it('CORS origins', () => {
    expect(parsed('http.cors.origins', '*')).toBe('*');
    expect(parsed('http.cors.origins', 'https://a.example, http://b.example:8080')).toBe('https://a.example, http://b.example:8080');
    for (const text of ['a.example', 'https://a.example/path', '*,https://a.example', '']) {
      expect(rejected('http.cors.origins', text), text).toBe(true);
    }
  });

  it('ring.size is a power of two from 1 to 1024', () => {
    for (const size of [1, 2, 64, 1024]) expect(parsed('ring.size', String(size))).toBe(size);
    for (const size of ['0', '3', '48', '2048', '-64']) expect(rejected('ring.size', size), size).toBe(true);
    expect(configError(() => testConfig({ 'ring.size': 100 })).message).toMatch(/ring\.size.*power of two/);
  });

  it('paths resolve against the working directory', () => {
    const cwd = join(scratch, 'here');
    expect(buildConfig([{ key: 'paths.data', raw: 'node1/data', source: 'test' }], cwd)['paths.data']).toBe(join(cwd, 'node1/data'));
    expect(buildConfig([{ key: 'paths.data', raw: '/var/lib/iorio', source: 'test' }], cwd)['paths.data']).toBe('/var/lib/iorio');
    expect(buildConfig([{ key: 'https.cert', raw: 'tls/cert.pem', source: 'test' }], cwd)['https.cert']).toBe(join(cwd, 'tls/cert.pem'));
    expect(buildConfig([], cwd)['https.key']).toBe(''); // empty stays empty
    expect(rejected('paths.data', '')).toBe(true);
    expect(rejected('paths.data', 'a\0b')).toBe(true);
    expect(loadConfig({ env: {}, cwd })['paths.data']).toBe(join(cwd, 'data'));
  });
});

describe('conf file syntax', () => {
  it('skips comments and blank lines, trims, keeps # inside values, allows empty values', () => {
    const entries = parseConfigText(
      ['# a comment', '', '   ', '  ## indented comment', '  http.port   =   9000  ', 'auth.admin.password = a#b = c', 'https.cert =', 'x.y=z\r'].join(
        '\n',
      ),
    );
    expect(entries).toEqual([
      { key: 'http.port', value: '9000', line: 5 },
      { key: 'auth.admin.password', value: 'a#b = c', line: 6 },
      { key: 'https.cert', value: '', line: 7 },
      { key: 'x.y', value: 'z', line: 8 },
    ]);
  });

  it('accepts CRLF line endings', () => {
    expect(parseConfigText('a = 1\r\nb = 2\r\n')).toEqual([
      { key: 'a', value: '1', line: 1 },
      { key: 'b', value: '2', line: 2 },
    ]);
  });

  it('rejects a line without "=" naming the file and line', () => {
    const error = configError(() => parseConfigText('http.port = 1\nhttp.host 127.0.0.1\n', 'my.conf'));
    expect(error.source).toBe('my.conf:2');
    expect(error.message).toContain('my.conf:2');
  });

  it('rejects an empty or malformed key', () => {
    expect(configError(() => parseConfigText('= 5', 'c')).source).toBe('c:1');
    expect(configError(() => parseConfigText('http port = 5', 'c')).message).toContain('http port');
  });

  it('rejects a repeated key, naming both lines', () => {
    const error = configError(() => parseConfigText('http.port = 1\n# x\nhttp.port = 2\n', 'dup.conf'));
    expect(error.key).toBe('http.port');
    expect(error.source).toBe('dup.conf:3');
    expect(error.message).toMatch(/dup\.conf:3.*http\.port.*line 1/);
  });

  it('a missing file is a ConfigError naming it', () => {
    const missing = join(scratch, 'nope.conf');
    const error = configError(() => loadConfig({ file: missing, env: {} }));
    expect(error.message).toContain(missing);
  });
});

describe('sources and precedence', () => {
  it('file < env < flags, each overriding only what it sets', () => {
    const file = writeConf('http.port = 9001\nstorage.sync = batch\nlog.level = warn\nring.size = 128\n');
    const onlyFile = loadConfig({ file, env: {} });
    expect([onlyFile['http.port'], onlyFile['storage.sync'], onlyFile['log.level'], onlyFile['ring.size']]).toEqual([9001, 'batch', 'warn', 128]);

    const env = { IORIO_HTTP_PORT: '9002', IORIO_STORAGE_SYNC: 'none', PATH: '/usr/bin', HOME: '/root' };
    const withEnv = loadConfig({ file, env });
    expect([withEnv['http.port'], withEnv['storage.sync'], withEnv['log.level']]).toEqual([9002, 'none', 'warn']);

    const withFlags = loadConfig({ file, env, flags: { 'http.port': '9003' } });
    expect([withFlags['http.port'], withFlags['storage.sync'], withFlags['log.level'], withFlags['ring.size']]).toEqual([
      9003,
      'none',
      'warn',
      128,
    ]);
    expect(withFlags['http.host']).toBe('127.0.0.1'); // untouched keys keep their defaults
  });

  it('env and flags apply without a file', () => {
    const config = loadConfig({ env: { IORIO_STORAGE_CHUNK_SIZE: '64KB' }, flags: { 'auth.admin.password': 'hunter2' } });
    expect(config['storage.chunk.size']).toBe(65_536);
    expect(config['auth.admin.password']).toBe('hunter2');
  });

  it('an empty env value is a value, not an absence', () => {
    expect(configError(() => loadConfig({ env: { IORIO_AUTH_ADMIN_PASSWORD: '' } })).key).toBe('auth.admin.password');
    expect(loadConfig({ env: { IORIO_AUTH_SECRET: '' } })['auth.secret']).toBe('');
  });

  it('unknown keys in the file, the flags and overrides are errors, naming the key and the source', () => {
    const file = writeConf('http.port = 9000\nhttp.prot = 9001\n');
    const fromFile = configError(() => loadConfig({ file, env: {} }));
    expect(fromFile.key).toBe('http.prot');
    expect(fromFile.source).toBe(`${file}:2`);
    expect(fromFile.message).toContain('http.prot');
    expect(fromFile.message).toContain('did you mean http.port');

    const fromFlag = configError(() => loadConfig({ env: {}, flags: { 'storage.sinc': 'none' } }));
    expect(fromFlag.key).toBe('storage.sinc');
    expect(fromFlag.source).toBe('flag --storage.sinc');
    expect(fromFlag.message).toContain('storage.sinc');

    const fromOverride = configError(() => testConfig({ 'no.such.key': 1 } as never));
    expect(fromOverride.message).toContain('no.such.key');
  });

  it('an unknown IORIO_* variable is a warning naming it and the nearest key, never an error', () => {
    const warnings: string[] = [];
    const config = loadConfig({ env: { IORIO_HTTP_PROT: '1', IORIO_FOO: 'x', IORIO_HTTP_PORT: '9001' }, warn: (message) => warnings.push(message) });
    expect(config['http.port']).toBe(9001);
    expect(warnings).toEqual([
      'ignoring the environment variable IORIO_FOO: not a configuration key',
      'ignoring the environment variable IORIO_HTTP_PROT: not a configuration key; did you mean IORIO_HTTP_PORT?',
    ]);
    expect(envWarnings({ IORIO_HTTP_PROT: '1' })).toHaveLength(1);
  });

  it("the tools' own IORIO_* variables are not warned about", () => {
    const env = { IORIO_USER: 'alice', IORIO_PASSWORD: 'pw', IORIO_ADMIN_USER: 'admin', IORIO_ADMIN_PASSWORD: 'pw', IORIO_ADMIN_TIMEOUT: '5s', IORIO_TEST_LOG: 'debug' };
    expect(envWarnings(env)).toEqual([]);
    const warnings: string[] = [];
    loadConfig({ env, warn: (message) => warnings.push(message) });
    expect(warnings).toEqual([]);
  });

  it('env vars outside the IORIO_ prefix are ignored, and undefined ones skipped', () => {
    expect(loadConfig({ env: { PORT: 'x', iorio_http_port: 'x', IORIO_HTTP_PORT: undefined } })['http.port']).toBe(8080);
  });

  it('a bad value names the key, the source and what is expected', () => {
    const file = writeConf('# c\nhttp.port = eighty\n');
    const fromFile = configError(() => loadConfig({ file, env: {} }));
    expect(fromFile.key).toBe('http.port');
    expect(fromFile.source).toBe(`${file}:2`);
    expect(fromFile.message).toContain('http.port');
    expect(fromFile.message).toContain('"eighty"');
    expect(fromFile.message).toContain('0 to 65535');

    const fromEnv = configError(() => loadConfig({ env: { IORIO_STORAGE_SYNC: 'sometimes' } }));
    expect(fromEnv.key).toBe('storage.sync');
    expect(fromEnv.source).toBe('env IORIO_STORAGE_SYNC');
    expect(fromEnv.message).toMatch(/storage\.sync.*IORIO_STORAGE_SYNC.*always, batch, none/);

    const fromFlag = configError(() => loadConfig({ env: {}, flags: { 'listen.timeout': '30' } }));
    expect(fromFlag.source).toBe('flag --listen.timeout');
    expect(fromFlag.message).toMatch(/listen\.timeout.*duration/);
  });

  it('never echoes a secret in an error', () => {
    const error = configError(() => loadConfig({ env: { IORIO_AUTH_SECRET: 'sec\0ret-value-that-is-long-enough-0123456789' } }));
    expect(error.key).toBe('auth.secret');
    expect(error.message).not.toContain('ret-value');
  });

  it('a bad value in a lower source is an error even when a higher one overrides it', () => {
    const file = writeConf('http.port = nope\n');
    expect(configError(() => loadConfig({ file, env: {}, flags: { 'http.port': '1' } })).source).toBe(`${file}:1`);
  });
});

describe('cross-key facts', () => {
  it('HTTPS needs a certificate and a key', () => {
    const error = configError(() => testConfig({ 'https.enabled': true, 'https.cert': 'cert.pem' }));
    expect(error.key).toBe('https.enabled');
    expect(error.message).toMatch(/https\.cert.*https\.key/);
    expect(testConfig({ 'https.enabled': true, 'https.cert': 'c.pem', 'https.key': 'k.pem' })['https.enabled']).toBe(true);
  });

  it('HTTP and HTTPS cannot share a port', () => {
    const base = { 'https.enabled': true, 'https.cert': 'c.pem', 'https.key': 'k.pem' } as const;
    expect(configError(() => testConfig({ ...base, 'https.port': 8080 })).message).toContain('8080');
    expect(testConfig({ ...base, 'http.port': 0, 'https.port': 0 })['https.port']).toBe(0);
  });

  it('a configured secret is long enough for its algorithm', () => {
    const error = configError(() => loadConfig({ env: { IORIO_AUTH_SECRET: 'short' } }));
    expect(error.key).toBe('auth.secret');
    expect(error.message).toContain('env IORIO_AUTH_SECRET');
    expect(testConfig({ 'auth.secret': 'k'.repeat(32) })['auth.secret']).toHaveLength(32);
    expect(configError(() => testConfig({ 'auth.secret': 'k'.repeat(32), 'auth.algorithm': 'HS512' })).message).toContain('64');
  });

  it('admin and anonymous are different users', () => {
    expect(configError(() => testConfig({ 'auth.anonymous.username': 'admin' })).message).toMatch(/admin.*anonymous/);
  });
});

describe('testConfig', () => {
  it('accepts typed values and validates them like any source', () => {
    const config = testConfig({ 'http.port': 0, 'storage.sync': 'none', 'http.cors.enabled': true, 'listen.timeout': 200, 'storage.chunk.size': '4KB' });
    expect(config['http.port']).toBe(0);
    expect(config['storage.sync']).toBe('none');
    expect(config['http.cors.enabled']).toBe(true);
    expect(config['listen.timeout']).toBe(200);
    expect(config['storage.chunk.size']).toBe(4096);
    expect(configError(() => testConfig({ 'http.port': 70000 })).key).toBe('http.port');
    expect(configError(() => testConfig({ 'http.cors.enabled': 'maybe' })).source).toBe('override');
  });
});
