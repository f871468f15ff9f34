import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { testConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';

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
