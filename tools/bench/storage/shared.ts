/** Pieces shared by the storage scenario and its child processes. */
import path from 'node:path';
import pino from 'pino';
import { testConfig, type ConfigKey, type ConfigValue } from '../../../src/config.js';
import { systemClock } from '../../../src/node.js';
import { openMeta } from '../../../src/store/meta.js';
import { StreamStore, storeSettings } from '../../../src/store/stream-store.js';


export async function openBenchStore(dataDir: string, overrides: Partial<Record<ConfigKey, ConfigValue>>) {
  const config = testConfig({ 'paths.data': dataDir, ...overrides });
  const meta = openMeta(path.join(dataDir, 'meta'));
  const store = await StreamStore.open(storeSettings(dataDir, config), meta, systemClock, pino({ level: 'silent' }));
  return {
    store,
    close: async () => {
      await store.close();
      await meta.close();
    },
  };
}

/** A 200-byte JSON payload. */
export function payload200(index: number): Buffer {
  const head = JSON.stringify({ index, pad: '' });
  const text = JSON.stringify({ index, pad: 'x'.repeat(200 - head.length) });
  return Buffer.from(text);
}
