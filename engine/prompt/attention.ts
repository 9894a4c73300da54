// AUTOMATIC1111's emphasis syntax, parsed the way its prompt_parser.parse_prompt_attention does
// (behaviour taken from its documentation and doctests; this is our own code):
//   (a) ×1.1, ((a)) ×1.21, (a:1.3) ×1.3, [a] ÷1.1, \( \) \[ \] \\ literal characters;
//   a lone backslash disappears; an unmatched ")" or "]" is ordinary text; a bracket left open at
//   the end still applies to everything after it; "BREAK" (a whole word) starts a new chunk.
// Pieces with equal weights are merged, so "(a)(b)" is one piece "ab" at 1.1.

export const ROUND_MULTIPLIER = 1.1;
export const SQUARE_MULTIPLIER = 1 / 1.1;

/** A piece of prompt text and its weight; `break: true` marks BREAK (no text). */
export type AttentionPiece = { text: string; weight: number; break?: false } | { text: 'BREAK'; weight: -1; break: true };

// Order matters: escapes first, then brackets, then ":number)" (an explicit weight closing a round
// bracket), then runs of plain text, then a lone ":".
const ATTENTION = /\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|[^\\()[\]:]+|:/g;
const BREAK = /\s*\bBREAK\b\s*/;

interface Mutable {
  text: string;
  weight: number;
  isBreak: boolean;
}

export function parsePromptAttention(prompt: string): AttentionPiece[] {
  const res: Mutable[] = [];
  const round: number[] = [];
  const square: number[] = [];
  const multiplyFrom = (start: number, by: number) => {
    for (let p = start; p < res.length; p++) if (!res[p]!.isBreak) res[p]!.weight *= by;
  };
  const addText = (text: string) => {
    const parts = text.split(BREAK);
    parts.forEach((part, i) => {
      if (i > 0) res.push({ text: 'BREAK', weight: -1, isBreak: true });
      res.push({ text: part, weight: 1, isBreak: false });
    });
  };

  for (const m of prompt.matchAll(ATTENTION)) {
    const token = m[0];
    const explicit = m[1];
    if (token.startsWith('\\')) res.push({ text: token.slice(1), weight: 1, isBreak: false });
    else if (token === '(') round.push(res.length);
    else if (token === '[') square.push(res.length);
    else if (explicit !== undefined && round.length > 0) {
      // A1111 calls float() here and fails on "1.2.3"; a member gets the text kept as typed instead.
      const value = Number(explicit);
      if (Number.isFinite(value)) multiplyFrom(round.pop()!, value);
      else addText(token);
    } else if (token === ')' && round.length > 0) multiplyFrom(round.pop()!, ROUND_MULTIPLIER);
    else if (token === ']' && square.length > 0) multiplyFrom(square.pop()!, SQUARE_MULTIPLIER);
    else addText(token);
  }
  for (const pos of round) multiplyFrom(pos, ROUND_MULTIPLIER);
  for (const pos of square) multiplyFrom(pos, SQUARE_MULTIPLIER);
  if (res.length === 0) res.push({ text: '', weight: 1, isBreak: false });

  // BREAK carries weight −1, so it never merges with a neighbour (A1111 merges by weight alone).
  for (let i = 0; i + 1 < res.length; ) {
    if (res[i]!.weight === res[i + 1]!.weight) {
      res[i]!.text += res[i + 1]!.text;
      res.splice(i + 1, 1);
    } else i++;
  }
  return res.map((p) => (p.isBreak ? { text: 'BREAK', weight: -1, break: true } : { text: p.text, weight: p.weight }));
}
