import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The caller's IORIO_* variables never reach a test or the processes it spawns.
    setupFiles: ['test/helpers/clean-env.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Storage and cluster tests spawn processes and fsync; two cores.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
