import { clip, isHighSurrogate } from '../text.js';
// Telegram's length limits, counted in UTF-16 code units as JavaScript strings are.
export const CAPTION_LIMIT = 1024;
export const MESSAGE_LIMIT = 4096;

export { clip };

/** Splits long text into message-sized pieces, preferring line breaks, then spaces. */
export function splitMessage(text: string, max = MESSAGE_LIMIT): string[] {
  const pieces: string[] = [];
  let rest = text.trim();
  while (rest.length > max) {
    let cut = rest.lastIndexOf('\n', max);
    if (cut < max / 2) cut = rest.lastIndexOf(' ', max);
    if (cut < max / 2) cut = max;
    if (isHighSurrogate(rest.charCodeAt(cut - 1))) cut -= 1;
    pieces.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest.length > 0) pieces.push(rest);
  return pieces;
}

/** A caption that fits, and whatever did not fit (to send as a follow-up message). */
export function fitCaption(caption: string, max = CAPTION_LIMIT): { caption: string; overflow: string } {
  if (caption.length <= max) return { caption, overflow: '' };
  const [head = '', ...tail] = splitMessage(caption, max);
  return { caption: head, overflow: tail.join('\n') };
}
