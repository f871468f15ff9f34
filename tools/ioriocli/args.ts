/**
 * Splitting a REPL line into arguments: whitespace separates, '...' and
 * "..." quote (a backslash escapes inside double quotes). A command whose
 * last parameter is JSON takes the rest of the line verbatim instead, so
 * `put b s {"a": 1, "b": [1, 2]}` needs no quoting.
 */

export interface Split {
  readonly tokens: string[];
  /** The text after the first `count` tokens, trimmed (undefined when nothing is left). */
  readonly rest: string | undefined;
}

/** Reads up to `count` tokens from the start of `text` (all of them when count is Infinity). */
export function takeTokens(text: string, count: number): Split {
  const tokens: string[] = [];
  let index = 0;
  const skipSpace = (): void => {
    while (index < text.length && /\s/.test(text[index] as string)) index += 1;
  };
  skipSpace();
  while (index < text.length && tokens.length < count) {
    let token = '';
    while (index < text.length && !/\s/.test(text[index] as string)) {
      const char = text[index] as string;
      if (char === "'" || char === '"') {
        const close = readQuoted(text, index);
        token += close.value;
        index = close.end;
      } else {
        token += char;
        index += 1;
      }
    }
    tokens.push(token);
    skipSpace();
  }
  const rest = text.slice(index).trim();
  return { tokens, rest: rest.length > 0 ? rest : undefined };
}

function readQuoted(text: string, start: number): { value: string; end: number } {
  const quote = text[start] as string;
  let value = '';
  let index = start + 1;
  while (index < text.length && text[index] !== quote) {
    if (quote === '"' && text[index] === '\\' && index + 1 < text.length) index += 1;
    value += text[index];
    index += 1;
  }
  if (index >= text.length) throw new Error(`unclosed ${quote}`);
  return { value, end: index + 1 };
}

/** A JSON argument as typed: parsed as is, or, when wrapped in one pair of single quotes (shell habit), without them. */
export function parseJsonArgument(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch (error) {
    if (raw.length >= 2 && raw.startsWith("'") && raw.endsWith("'")) return parseJsonArgument(raw.slice(1, -1));
    throw new Error(`not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}
