// JSON with comments (// and /* */) and trailing commas, as editors treat .jsonc files.
// Comments and trailing commas are blanked out with spaces (newlines kept), so every
// character keeps its offset and JSON.parse's error position still points at the right line.

export class JsoncError extends Error {
  readonly line: number;
  readonly column: number;
  /** What is wrong, without the position. */
  readonly reason: string;
  constructor(reason: string, line: number, column: number) {
    super(`${reason} (line ${line}, column ${column})`);
    this.reason = reason;
    this.name = 'JsoncError';
    this.line = line;
    this.column = column;
  }
}

/** Parse JSONC text; throws JsoncError carrying a 1-based line and column. */
export function parseJsonc(text: string): unknown {
  const source = text.charCodeAt(0) === 0xfeff ? ' ' + text.slice(1) : text;
  const blanked = blankCommentsAndTrailingCommas(source);
  try {
    return JSON.parse(blanked);
  } catch (err) {
    const raw = err instanceof Error ? err.message : String(err);
    const offset = errorOffset(raw, blanked);
    const { line, column } = lineAndColumn(source, offset);
    // V8 appends its own position (and sometimes a snippet); ours replaces it.
    const reason = raw
      .replace(/\s*in JSON at position \d+.*$/s, '')
      .replace(/,?\s*"[^"]*"\s*is not valid JSON$/s, '')
      .replace(/\s*\(line \d+ column \d+\)$/, '');
    throw new JsoncError(reason || 'invalid JSON', line, column);
  }
}

function blankCommentsAndTrailingCommas(src: string): string {
  const out = src.split('');
  let i = 0;
  const blank = (from: number, to: number): void => {
    for (let k = from; k < to; k++) if (out[k] !== '\n' && out[k] !== '\r') out[k] = ' ';
  };
  while (i < src.length) {
    const c = src[i];
    if (c === '"') {
      i++;
      while (i < src.length && src[i] !== '"' && src[i] !== '\n') i += src[i] === '\\' ? 2 : 1;
      i++;
    } else if (c === '/' && src[i + 1] === '/') {
      const end = src.indexOf('\n', i);
      const stop = end === -1 ? src.length : end;
      blank(i, stop);
      i = stop;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      if (end === -1) {
        const { line, column } = lineAndColumn(src, i);
        throw new JsoncError('unclosed /* comment', line, column);
      }
      blank(i, end + 2);
      i = end + 2;
    } else if (c === ',') {
      // A comma followed only by whitespace/comments and then } or ] is a trailing comma.
      let j = i + 1;
      for (;;) {
        while (j < src.length && /\s/.test(src[j] ?? '')) j++;
        if (src[j] === '/' && src[j + 1] === '/') {
          const end = src.indexOf('\n', j);
          j = end === -1 ? src.length : end;
        } else if (src[j] === '/' && src[j + 1] === '*') {
          const end = src.indexOf('*/', j + 2);
          j = end === -1 ? src.length : end + 2;
        } else break;
      }
      if (src[j] === '}' || src[j] === ']') out[i] = ' ';
      i++;
    } else {
      i++;
    }
  }
  return out.join('');
}

function errorOffset(message: string, text: string): number {
  const pos = /position (\d+)/.exec(message);
  if (pos?.[1]) return Number(pos[1]);
  const lc = /line (\d+) column (\d+)/.exec(message);
  if (lc?.[1] && lc[2]) {
    const lines = text.split('\n');
    let offset = 0;
    for (let l = 0; l < Number(lc[1]) - 1 && l < lines.length; l++) offset += (lines[l]?.length ?? 0) + 1;
    return offset + Number(lc[2]) - 1;
  }
  // "Unexpected end of JSON input" has no position: the problem is at the end.
  return text.length;
}

function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let k = 0; k < offset && k < text.length; k++) {
    if (text[k] === '\n') {
      line++;
      lineStart = k + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}
