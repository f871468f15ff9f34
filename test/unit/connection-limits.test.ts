import { describe, expect, test } from 'vitest';
import {
  admission,
  clientKeyOf,
  connectionBounds,
  connectionBoundsProblem,
  idleCheckIntervalMs,
  openFilesSoftLimitOf,
} from '../../src/http/connection-limits.js';

const procLimits = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                40000                files
Max locked memory         8388608              8388608              bytes
`;

describe('openFilesSoftLimitOf', () => {
  test('reads the soft limit of Max open files', () => {
    expect(openFilesSoftLimitOf(procLimits)).toBe(20000);
    expect(openFilesSoftLimitOf(procLimits.replace('20000', 'unlimited'))).toBe(1_048_576);
    expect(openFilesSoftLimitOf('Max processes 100 100 processes\n')).toBeUndefined();
    expect(openFilesSoftLimitOf(procLimits.replace('20000', 'lots'))).toBeUndefined();
  });
});

describe('connectionBounds', () => {
  const derive = (openFilesLimit: number, storageFilesMax = 1024) => connectionBounds({ configuredTotal: 0, configuredPerClient: 0, openFilesLimit, storageFilesMax });

  test('0 derives the total from the open-file limit minus storage.files.max minus 1024, and half of it per client', () => {
    expect(derive(20_000)).toEqual({ total: 17_952, perClient: 8_976 });
    expect(derive(65_536, 4096)).toEqual({ total: 60_416, perClient: 30_208 });
  });

  test('a low limit still leaves a quarter of it to clients', () => {
    expect(derive(1024)).toEqual({ total: 256, perClient: 128 });
    expect(derive(512, 64)).toEqual({ total: 128, perClient: 64 });
    expect(derive(3)).toEqual({ total: 1, perClient: 1 });
  });

  test('configured values win', () => {
    expect(connectionBounds({ configuredTotal: 200, configuredPerClient: 150, openFilesLimit: 20_000, storageFilesMax: 1024 })).toEqual({ total: 200, perClient: 150 });
    expect(connectionBounds({ configuredTotal: 200, configuredPerClient: 0, openFilesLimit: 20_000, storageFilesMax: 1024 })).toEqual({ total: 200, perClient: 100 });
    expect(connectionBounds({ configuredTotal: 0, configuredPerClient: 10, openFilesLimit: 20_000, storageFilesMax: 1024 })).toEqual({ total: 17_952, perClient: 10 });
  });

  test('bounds that can still exhaust the descriptors are named', () => {
    expect(connectionBoundsProblem({ total: 17_952, perClient: 8_976 }, 20_000, 1024)).toBeUndefined();
    expect(connectionBoundsProblem({ total: 256, perClient: 128 }, 1024, 1024)).toMatch(/open-file limit 1024 leaves -256 descriptors/);
    expect(connectionBoundsProblem({ total: 100_000, perClient: 100_000 }, 20_000, 1024)).toMatch(/raise ulimit -n/);
  });
});

describe('admission', () => {
  const bounds = { total: 10, perClient: 4 };
  test('the total bound first, then the client’s', () => {
    expect(admission(0, 0, bounds)).toBe('admitted');
    expect(admission(9, 3, bounds)).toBe('admitted');
    expect(admission(9, 4, bounds)).toBe('per-client');
    expect(admission(10, 0, bounds)).toBe('total');
    expect(admission(10, 4, bounds)).toBe('total');
  });
});

describe('clientKeyOf', () => {
  test('IPv4 and IPv4-mapped IPv6 addresses are the address', () => {
    expect(clientKeyOf('127.0.0.1')).toBe('127.0.0.1');
    expect(clientKeyOf('::ffff:10.1.2.3')).toBe('10.1.2.3');
  });

  test('IPv6 addresses are counted by /64, however written', () => {
    const key = '2001:db8:0:1::/64';
    expect(clientKeyOf('2001:db8:0:1::1')).toBe(key);
    expect(clientKeyOf('2001:0db8:0000:0001:ffff:ffff:ffff:ffff')).toBe(key);
    expect(clientKeyOf('2001:DB8:0:1:0:0:0:2%eth0')).toBe(key);
    expect(clientKeyOf('2001:db8:0:2::1')).not.toBe(key);
    expect(clientKeyOf('::1')).toBe('0:0:0:0::/64');
    expect(clientKeyOf('fe80::1.2.3.4')).toBe('fe80:0:0:0::/64');
  });

  test('what cannot be parsed is its own client', () => {
    expect(clientKeyOf(undefined)).toBe('unknown');
    expect(clientKeyOf('1:2:3')).toBe('1:2:3');
    expect(clientKeyOf('1::2::3')).toBe('1::2::3');
  });
});

describe('idleCheckIntervalMs', () => {
  test('a tenth of the idle timeout, at most a second', () => {
    expect(idleCheckIntervalMs(10_000)).toBe(1_000);
    expect(idleCheckIntervalMs(60_000)).toBe(1_000);
    expect(idleCheckIntervalMs(1_000)).toBe(100);
    expect(idleCheckIntervalMs(5)).toBe(1);
  });
});
