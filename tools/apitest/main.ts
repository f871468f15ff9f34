/** `npm run apitest -- [flags]`: runs apitest and prints its summary; exit 1 on any error or failed check, 2 on bad flags. */
import { parseApitestArgs, usage } from './options.js';
import { formatApitestReport } from './report.js';
import { runApitest } from './run.js';

async function main(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseApitestArgs(argv);
  } catch (error) {
    process.stderr.write(`apitest: ${error instanceof Error ? error.message : String(error)}\n\n${usage}\n`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(usage + '\n');
    return 0;
  }
  const report = await runApitest(parsed.options);
  process.stdout.write(formatApitestReport(report) + '\n');
  return report.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`apitest: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
