import { runIorio } from './cli/iorio.js';

/** How long a finished command may take to exit on its own before it is made to. */
const exitGraceMs = 2_000;

const code = await runIorio(process.argv.slice(2));
process.exitCode = code;
// Everything was closed; if some handle still holds the event loop, do not hang.
setTimeout(() => process.exit(code), exitGraceMs).unref();
