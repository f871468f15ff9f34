import { runDevrel } from './devrel.js';

/** `npm run devrel -- <count> [--base-port P] [--force] [--dir folder]` (cli/devrel.ts). */
process.exitCode = runDevrel(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});
