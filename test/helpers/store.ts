import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { testConfig, type ConfigKey, type ConfigValue } from '../../src/config.js';
import type { Clock } from '../../src/core/clock.js';
import { ManualClock, systemClock } from './clock.js';

export { ManualClock, systemClock };
import { openMeta, type MetaStore } from '../../src/store/meta.js';
import { StreamStore, storeSettings, type StoreSettings } from '../../src/store/stream-store.js';

export function tempDir(prefix = 'iorio-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export const silentLogger = pino({ level: 'silent' });

export interface OpenedStore {
  store: StreamStore;
  meta: MetaStore;
  settings: StoreSettings;
  close(): Promise<void>;
}

export async function openTestStore(
  dataDir: string,
  overrides: Partial<Record<ConfigKey, ConfigValue>> = {},
  clock: Clock = systemClock,
  settingsOverrides: Partial<StoreSettings> = {},
): Promise<OpenedStore> {
  const config = testConfig({ 'paths.data': dataDir, ...overrides });
  const settings = { ...storeSettings(dataDir, config), ...settingsOverrides };
  const meta = openMeta(path.join(dataDir, 'meta'));
  const store = await StreamStore.open(settings, meta, clock, silentLogger);
  return {
    store,
    meta,
    settings,
    close: async () => {
      await store.close();
      await meta.close();
    },
  };
}

export function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}
