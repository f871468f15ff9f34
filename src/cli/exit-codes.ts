/**
 * The exit statuses of every Iorio binary (iorio, iorio-admin, ioriocli,
 * apitest, bench), so a script can tell a refusal from a typo.
 */
export const exitCodes = {
  /** Done. */
  ok: 0,
  /** The command ran and failed: the node refused or could not be reached, a start failed, a bad configuration. */
  failed: 1,
  /** The command line is wrong: unknown command or option, missing or extra arguments. */
  usage: 2,
  /** `iorio status` only: no node runs on the data folder (LSB's "program is not running"). */
  notRunning: 3,
} as const;
