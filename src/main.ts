import { runIorio } from './cli/iorio.js';

/** How long a finished command may take to exit on its own before it is made to. */
const exitGraceMs = 2_000;

/**
 * lmdb-js rejects every write of a batch whose commit failed (a full disk, an
 * I/O error), including writes nobody awaits, and keeps their cause in a
 * `commitError` promise: those must not end the node (every write whose
 * outcome matters is awaited and handled where it is made; a full disk is
 * 507 and passes). Any other unhandled rejection is a bug: it ends the
 * process, as Node does by default.
 */
process.on('unhandledRejection', (reason: unknown) => {
  const commitError = (reason as { commitError?: Promise<unknown> } | undefined)?.commitError;
  if (reason instanceof Error && commitError !== undefined) {
    commitError.catch(() => undefined);
    process.stderr.write(`iorio: an lmdb write nobody waited for failed: ${reason.message}\n`);
    return;
  }
  if (reason instanceof Error && /^No space left on device/.test(reason.message)) return;
  throw reason;
});

const code = await runIorio(process.argv.slice(2));
process.exitCode = code;
// Everything was closed; if some handle still holds the event loop, do not hang.
setTimeout(() => process.exit(code), exitGraceMs).unref();
