/** "Did you mean" for the tools' commands, as config keys have it. Pure. */

/** Edit distance where swapping two neighbouring letters counts as one edit (optimal string alignment): "stauts" is 1 from "status". */
export function editDistance(source: string, target: string): number {
  const rows: number[][] = Array.from({ length: source.length + 1 }, (_, i) => Array.from({ length: target.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= source.length; i += 1) {
    for (let j = 1; j <= target.length; j += 1) {
      const cost = source[i - 1] === target[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && source[i - 1] === target[j - 2] && source[i - 2] === target[j - 1]) best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = best;
    }
  }
  return rows[source.length]![target.length]!;
}

/** The candidate nearest to `word` when it is close (at most a third of its letters off, and at least 1); else undefined. */
export function closestWord(word: string, candidates: readonly string[]): string | undefined {
  const distanceMax = Math.max(1, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestDistance = distanceMax + 1;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** `unknown command "stauts"; did you mean status?` (or without the question when nothing is close). */
export function unknownCommandText(word: string, candidates: readonly string[], what = 'command'): string {
  const guess = closestWord(word, candidates);
  return `unknown ${what} "${word}"${guess === undefined ? '' : `; did you mean ${guess}?`}`;
}
