// Replies with verbatim parts (an info text, a command to paste) drawn in Telegram's HTML mode:
// code parts in <pre> blocks, everything escaped, so `*`, `_`, `~~` and `<` copy exactly as typed.
// Telegram counts its 4096 limit after the markup is parsed; measuring the escaped markup is
// stricter, so a piece that fits here always fits there.
import type { ReplyPart } from '../../../commands/types.js';
import { MESSAGE_LIMIT, splitMessage } from './text.js';

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const PRE_OPEN = '<pre>';
const PRE_CLOSE = '</pre>';

/** Message-sized HTML pieces for these parts, in order; a code part too long for one message is split into several blocks. */
export function htmlPieces(parts: readonly ReplyPart[], max = MESSAGE_LIMIT): string[] {
  const blocks: string[] = [];
  for (const part of parts) {
    if (part.text.trim().length === 0) continue;
    const overhead = part.code ? PRE_OPEN.length + PRE_CLOSE.length : 0;
    for (const chunk of escapedChunks(part.text, max - overhead, part.code === true)) {
      blocks.push(part.code ? `${PRE_OPEN}${chunk}${PRE_CLOSE}` : chunk);
    }
  }
  const pieces: string[] = [];
  let current = '';
  for (const block of blocks) {
    const joined = current ? `${current}\n${block}` : block;
    if (joined.length <= max) current = joined;
    else {
      if (current) pieces.push(current);
      current = block;
    }
  }
  if (current) pieces.push(current);
  return pieces;
}

/**
 * Splits `text` so that each piece, once escaped, is at most `budget` long. Escaping grows text
 * (`&` → `&amp;`), so the raw cut is tightened until every escaped piece fits.
 */
function escapedChunks(text: string, budget: number, verbatim: boolean): string[] {
  let rawMax = budget;
  for (;;) {
    const raw = verbatim && text.length <= rawMax ? [text] : splitMessage(text, rawMax);
    const escaped = raw.map(escapeHtml);
    const longest = Math.max(...escaped.map((e) => e.length));
    if (longest <= budget || rawMax <= 1) return escaped;
    rawMax = Math.max(1, Math.floor((rawMax * budget) / longest) - 1);
  }
}
