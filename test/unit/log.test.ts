import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { testConfig } from '../../src/config.js';
import { createLogger, formatLogLine } from '../../src/log.js';

/** A destination collecting each JSON line pino writes. */
function collector(): { stream: Writable; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line));
      done();
    },
  });
  return { stream, lines };
}

describe('createLogger', () => {
  it('writes JSON lines carrying the node name, and child bindings', () => {
    const { stream, lines } = collector();
    const logger = createLogger(testConfig({ nodename: 'iorio7@10.0.0.7' }), stream);
    logger.child({ component: 'store' }).info({ partition: 3 }, 'opened');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ node: 'iorio7@10.0.0.7', component: 'store', partition: 3, msg: 'opened', level: 30 });
  });

  it('honours log.level', () => {
    const { stream, lines } = collector();
    const logger = createLogger(testConfig({ 'log.level': 'warn' }), stream);
    logger.info('dropped');
    logger.child({ component: 'x' }).debug('dropped too');
    logger.warn('kept');
    expect(lines.map((line) => line.msg)).toEqual(['kept']);

    const silent = collector();
    createLogger(testConfig({ 'log.level': 'silent' }), silent.stream).fatal('nothing');
    expect(silent.lines).toEqual([]);
  });
});

describe('log.format', () => {
  const terminal = () => {
    const written: string[] = [];
    return { written, output: { stream: { write: (text: string) => void written.push(text) }, isTerminal: true } };
  };

  it('auto: pretty lines on a terminal, colored', () => {
    const { written, output } = terminal();
    createLogger(testConfig({ nodename: 'n@h' }), undefined, output).child({ component: 'http' }).info({ bucket: 'b', n: 3 }, 'append');
    expect(written).toHaveLength(1);
    expect(written[0]).toContain('\u001b[');
    expect(written[0]!.replace(/\u001b\[[0-9]+m/g, '')).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  \[http\] append bucket=b n=3\n$/);
  });

  it('json: JSON lines even on a terminal; auto: JSON lines elsewhere', () => {
    const { written, output } = terminal();
    createLogger(testConfig({ 'log.format': 'json' }), undefined, output).info('plain');
    expect(JSON.parse(written.join(''))).toMatchObject({ msg: 'plain', level: 30 });
    const { stream, lines } = collector();
    createLogger(testConfig({}), stream).info('to a file');
    expect(lines[0]).toMatchObject({ msg: 'to a file' });
  });

  it('formatLogLine: fields after the message, quoted when needed; an error with its stack; other text kept', () => {
    const line = JSON.stringify({ level: 40, time: Date.UTC(2026, 11, 3, 8, 9, 10, 11), pid: 1, node: 'n@h', component: 'store', msg: 'slow', path: 'a b', ms: 12.5, list: [1] });
    expect(formatLogLine(line, false)).toBe('08:09:10.011 WARN  [store] slow path="a b" ms=12.5 list=[1]');
    const failed = JSON.stringify({ level: 50, time: 0, msg: 'failed', err: { message: 'boom', stack: 'Error: boom\n    at here' } });
    expect(formatLogLine(failed, false)).toBe('00:00:00.000 ERROR failed\n    Error: boom\n        at here');
    expect(formatLogLine('not json', true)).toBe('not json');
  });
});
