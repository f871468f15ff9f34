/** The tools' shared rules: did-you-mean for commands, and where a tool finds the node. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configuredUrlOf, nodeUrlOf, toolNodeUrlOf } from '../../src/cli/node-url.js';
import { closestWord, editDistance, unknownCommandText } from '../../src/cli/suggest.js';
import { acquireDataLock } from '../../src/store/data-folder.js';

const scratch = mkdtempSync(join(tmpdir(), 'iorio-cli-rules-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('did you mean', () => {
  it('counts a swap of two neighbouring letters as one edit', () => {
    expect(editDistance('stauts', 'status')).toBe(1);
    expect(editDistance('status', 'status')).toBe(0);
    expect(editDistance('', 'abc')).toBe(3);
  });

  it('suggests the nearest command when it is close, nothing when none is', () => {
    const commands = ['console', 'start', 'stop', 'ping', 'status'];
    expect(closestWord('stauts', commands)).toBe('status');
    expect(closestWord('pnig', commands)).toBe('ping');
    expect(closestWord('frobnicate', commands)).toBeUndefined();
    expect(unknownCommandText('sotp', commands)).toBe('unknown command "sotp"; did you mean stop?');
    expect(unknownCommandText('xyz', commands)).toBe('unknown command "xyz"');
  });
});

describe('where the node is', () => {
  const recorded = 'http://127.0.0.1:41234';

  it('a node on every interface is reached on loopback', () => {
    expect(configuredUrlOf('0.0.0.0', 8080)).toBe('http://127.0.0.1:8080');
    expect(configuredUrlOf('::', 8080)).toBe('http://[::1]:8080');
  });

  it('iorio.url counts only while a node holds the folder; --url and an explicit address beat it', () => {
    const dataDir = join(scratch, 'data');
    const config = { 'paths.data': dataDir, 'http.host': '127.0.0.1', 'http.port': 8080 };
    expect(nodeUrlOf(config)).toBe('http://127.0.0.1:8080');
    mkdirSync(dataDir, { recursive: true });
    const lock = acquireDataLock(dataDir);
    try {
      writeFileSync(join(dataDir, 'iorio.url'), `${recorded}\n`);
      expect(nodeUrlOf(config)).toBe(recorded);
      expect(nodeUrlOf(config, { explicitAddress: true })).toBe('http://127.0.0.1:8080');
      expect(nodeUrlOf(config, { url: 'http://10.0.0.1:1' })).toBe('http://10.0.0.1:1');
      expect(toolNodeUrlOf({}, { IORIO_PATHS_DATA: dataDir })).toBe(recorded);
      expect(toolNodeUrlOf({ port: '9000' }, { IORIO_PATHS_DATA: dataDir })).toBe('http://127.0.0.1:9000');
      expect(toolNodeUrlOf({ host: 'example.org' }, { IORIO_PATHS_DATA: dataDir, IORIO_HTTP_PORT: '8098' })).toBe('http://example.org:8098');
    } finally {
      lock.release();
    }
    expect(nodeUrlOf(config)).toBe('http://127.0.0.1:8080');
    expect(toolNodeUrlOf({}, { IORIO_PATHS_DATA: dataDir })).toBe('http://127.0.0.1:8080');
  });
});
