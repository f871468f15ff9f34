/** apitest's printed summary: one row per role, one line per check, the verdict last. */
import { formatTable } from '../common/table.js';
import type { ApitestReport } from './run.js';

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}

export function formatApitestReport(report: ApitestReport): string {
  const lines: string[] = [];
  if (report.setupError !== undefined) {
    return `setup failed: ${report.setupError}\n\nFAIL  seed ${report.seed}  ${report.baseUrl}`;
  }
  const rows = report.roles
    .filter((role) => role.workers > 0)
    .map((role) => [
      role.role,
      String(role.workers),
      String(role.count),
      String(role.errors),
      fixed(role.eventsPerSec, 1),
      fixed(role.p50Ms, 1),
      fixed(role.p99Ms, 1),
      Object.entries(role.details)
        .map(([name, value]) => `${name}=${value}`)
        .join(' '),
    ]);
  lines.push(formatTable(['role', 'workers', 'count', 'errors', 'events/s', 'p50 ms', 'p99 ms', 'notes'], rows, new Set([1, 2, 3, 4, 5, 6])));
  lines.push('(listeners: latency is delivery, receipt minus the entry\'s t)', '');
  for (const check of report.checks) {
    lines.push(`${check.failures === 0 ? 'ok  ' : 'FAIL'}  ${check.description} (${check.checked} checked${check.failures > 0 ? `, ${check.failures} failed` : ''})`);
    for (const sample of check.samples) lines.push(`        ${sample}`);
  }
  if (report.errorCount > 0) {
    lines.push('', `${report.errorCount} request error(s), first ones:`);
    for (const sample of report.errorSamples) lines.push(`        ${sample}`);
  }
  lines.push('', `${report.ok ? 'PASS' : 'FAIL'}  seed ${report.seed}  ${(report.durationMs / 1000).toFixed(1)} s  ${report.baseUrl}`);
  return lines.join('\n');
}
