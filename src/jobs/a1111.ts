// Reader for AUTOMATIC1111 "infotext", the text A1111 writes into a PNG's `parameters` chunk
// and members copy from its PNG Info tab:
//
//   a fox in the snow, detailed
//   Negative prompt: blurry, text
//   Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, Model: sd15, …
//
// Values may be double-quoted JSON strings with commas inside. Discord's slash options flatten
// newlines to spaces, so the same text on one line is read too (the parameters start at Steps:).

export interface InfoText {
  prompt: string;
  negativePrompt: string;
  /** Keys as written (e.g. "CFG scale"), values unquoted. */
  params: Record<string, string>;
}

/** Keys of which at least one must appear for a line to count as A1111 parameters. */
const ANCHOR_KEYS = ['Steps', 'Sampler', 'CFG scale', 'Seed', 'Size'];

// Sticky, so each pair must start where the previous one ended; keys are short, which also
// keeps a long prose line from costing quadratic time.
const PARAM = /\s*(\w[\w \-/+.()]{0,59}?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)/y;

export function parseInfoText(text: string): InfoText | undefined {
  const normalized = text.replace(/\r\n?/g, '\n').trim();
  if (!normalized) return undefined;

  const lines = normalized.split('\n');
  const last = lines[lines.length - 1] ?? '';
  let head: string;
  let params = readParams(last);
  if (params) {
    head = lines.slice(0, -1).join('\n');
  } else {
    // One flattened line: the parameters begin at the first "Steps: <n>" after which only
    // key: value pairs follow.
    const starts = [...normalized.matchAll(/(^|\s)Steps:\s*\d/g)].map((m) => m.index + (m[1] ?? '').length);
    const at = starts.find((s) => readParams(normalized.slice(s)) !== undefined);
    if (at === undefined) return undefined;
    params = readParams(normalized.slice(at));
    head = normalized.slice(0, at);
  }
  if (!params) return undefined;

  const { prompt, negativePrompt } = splitNegative(head);
  return { prompt, negativePrompt, params };
}

function readParams(line: string): Record<string, string> | undefined {
  // No prototype: a pasted key such as "__proto__" stays an ordinary (ignored) key.
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  let count = 0;
  let consumed = 0;
  const re = new RegExp(PARAM.source, PARAM.flags);
  while (consumed < line.length) {
    re.lastIndex = consumed;
    const m = re.exec(line);
    if (!m || m[0] === '') break;
    const key = (m[1] ?? '').trim();
    const raw = (m[2] ?? '').trim();
    // A1111 quotes any value holding a colon, so an unquoted one with a colon means this
    // "pair" swallowed prose (a flattened prompt) and the parameters start later.
    if (!raw.startsWith('"') && raw.includes(':')) break;
    consumed = re.lastIndex;
    params[key] = unquote(raw);
    count++;
  }
  // Every character must belong to a key: value pair, else this is prose that happens to hold colons.
  if (line.slice(consumed).trim() !== '') return undefined;
  if (count < 3 || !ANCHOR_KEYS.some((k) => k in params)) return undefined;
  return params;
}

function unquote(value: string): string {
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
    try {
      const parsed: unknown = JSON.parse(value);
      if (typeof parsed === 'string') return parsed;
    } catch {
      // A1111 quotes with json.dumps, but hand-edited text may not be valid JSON.
    }
    return value.slice(1, -1);
  }
  return value;
}

function splitNegative(head: string): { prompt: string; negativePrompt: string } {
  const lineStart = /(^|\n)Negative prompt:/i.exec(head);
  const anywhere = lineStart ?? /(^|\s)Negative prompt:/i.exec(head);
  if (!anywhere) return { prompt: head.trim(), negativePrompt: '' };
  const cut = anywhere.index + (anywhere[1] ?? '').length;
  return {
    prompt: head.slice(0, cut).trim(),
    negativePrompt: head.slice(cut + 'Negative prompt:'.length).trim(),
  };
}
