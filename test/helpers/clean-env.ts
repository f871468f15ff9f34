/**
 * Run before every test file (vitest.config.ts setupFiles): the caller's
 * IORIO_* variables (a shell that exported IORIO_USER for ioriocli, an
 * IORIO_HTTP_PORT for a node) must not change what the tests see, nor what
 * the processes they spawn inherit. IORIO_TEST_LOG, the tests' own log
 * level, is kept.
 */
for (const name of Object.keys(process.env)) {
  if (name.startsWith('IORIO_') && name !== 'IORIO_TEST_LOG') delete process.env[name];
}
