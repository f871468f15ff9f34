/** Plain-text tables for the tools' summaries. */

/** Columns padded to their widest cell; the columns in `rightAligned` (by index) are right-aligned (numbers). */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], rightAligned: ReadonlySet<number>): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    header
      .map((_, column) => {
        const cell = cells[column] ?? '';
        const width = widths[column] as number;
        return rightAligned.has(column) ? cell.padStart(width) : cell.padEnd(width);
      })
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
