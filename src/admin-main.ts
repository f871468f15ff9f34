import { runAdmin } from './cli/iorio-admin.js';

/** How long a finished command may take to exit on its own before it is made to. */
const exitGraceMs = 2_000;

const code = await runAdmin(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
});
process.exitCode = code;
// Pooled keep-alive sockets to the node must not hold the process open.
setTimeout(() => process.exit(code), exitGraceMs).unref();
