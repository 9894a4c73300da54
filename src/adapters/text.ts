// Text limits on both platforms are counted in UTF-16 code units, as JavaScript strings are.

export function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** Cuts `text` to at most `max` units, never splitting a surrogate pair, marking the cut with "…". */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  if (isHighSurrogate(text.charCodeAt(end - 1))) end -= 1;
  return `${text.slice(0, end)}…`;
}
