// CommandReply parts drawn in Discord markdown: prose as it is, verbatim parts (an info text, a
// command to paste) in code blocks, where Discord applies no formatting, so `*`, `_` and `~~`
// copy as typed. Every message stays within Discord's 2000 characters.
import type { ReplyPart } from '../../../commands/types.js';

export const MAX_MESSAGE = 2000;
const FENCE = '```';
const OPEN = `${FENCE}\n`;
const CLOSE = `\n${FENCE}`;

/** A ``` inside the text would end the block early; a zero-width space between the ticks stops that. */
export function neutraliseFences(text: string): string {
  return text.replace(/`(?=``)/g, '`\u200b');
}

/** Cuts text into pieces of at most `max` characters, at line breaks where possible, never inside a surrogate pair. */
function cut(text: string, max: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest.length > max) {
    let at = rest.lastIndexOf('\n', max);
    if (at < max / 2) at = max;
    const code = rest.charCodeAt(at - 1);
    if (code >= 0xd800 && code <= 0xdbff) at--;
    out.push(rest.slice(0, at));
    rest = rest.slice(at).replace(/^\n/, '');
  }
  out.push(rest);
  return out;
}

/** Draws the parts as one or more Discord messages, each at most `max` characters. */
export function renderParts(parts: ReplyPart[], max = MAX_MESSAGE): string[] {
  const blocks: string[] = [];
  for (const part of parts) {
    if (!part.text) continue;
    if (part.code) {
      for (const piece of cut(neutraliseFences(part.text), max - OPEN.length - CLOSE.length)) blocks.push(OPEN + piece + CLOSE);
    } else {
      blocks.push(...cut(part.text, max));
    }
  }
  const messages: string[] = [];
  for (const block of blocks) {
    const last = messages.length - 1;
    if (last >= 0 && messages[last]!.length + 1 + block.length <= max) messages[last] += `\n${block}`;
    else messages.push(block);
  }
  return messages.length > 0 ? messages : [''];
}
