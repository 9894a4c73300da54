// AUTOMATIC1111's "infotext": the generation parameters that A1111 writes into a PNG's
// `parameters` chunk and that its PNG Info tab reads back. Shape (modules/processing.py
// create_infotext and modules/infotext_utils.py parse_generation_parameters):
//
//   <prompt, possibly several lines>
//   Negative prompt: <negative prompt>          (omitted when empty)
//   Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, Model: name, ...
//
// A value containing `,`, `:` or a newline is written as a JSON string so the line stays parseable.

export interface InfoTextParams {
  prompt: string;
  negativePrompt: string;
  steps: number;
  sampler: string;
  guidance: number;
  seed: number;
  width: number;
  height: number;
  model: string;
  /** sha256 (hex) of the model's checkpoint file; A1111 writes its first 10 hex as "Model hash". */
  modelSha256?: string;
  variation?: { seed: number; strength: number };
  denoisingStrength?: number;
  /** LoRA name → short hash (A1111: first 12 hex), as `Lora hashes: "name: hash, …"`. */
  loraHashes?: Readonly<Record<string, string>>;
  /** Embedding name → short hash (first 12 hex of the file's sha256), as `TI hashes`. */
  tiHashes?: Readonly<Record<string, string>>;
}

export interface ParsedInfoText {
  prompt: string;
  negativePrompt: string;
  /** Keys exactly as written ("Steps", "CFG scale", "Size", …); values unquoted. */
  params: Record<string, string>;
}

const NEGATIVE_PREFIX = 'Negative prompt:';

function quote(value: string): string {
  return /[,:\n]/.test(value) ? JSON.stringify(value) : value;
}

/** Python's str() of the number as A1111 shows it: integers without ".0". */
function num(n: number): string {
  return String(n);
}

export function formatInfoText(p: InfoTextParams): string {
  const fields: [string, string][] = [
    ['Steps', num(p.steps)],
    ['Sampler', p.sampler],
    ['CFG scale', num(p.guidance)],
    ['Seed', num(p.seed)],
    ['Size', `${p.width}x${p.height}`],
    ...(p.modelSha256 ? [['Model hash', p.modelSha256.slice(0, 10)] as [string, string]] : []),
    ['Model', p.model],
  ];
  if (p.variation) {
    fields.push(['Variation seed', num(p.variation.seed)], ['Variation seed strength', num(p.variation.strength)]);
  }
  if (p.denoisingStrength !== undefined) fields.push(['Denoising strength', num(p.denoisingStrength)]);
  const loras = hashList(p.loraHashes);
  if (loras) fields.push(['Lora hashes', loras]);
  const embeddings = hashList(p.tiHashes);
  if (embeddings) fields.push(['TI hashes', embeddings]);
  // Our noise is torch-CPU compatible, which A1111 records as "RNG: CPU" (its default GPU is omitted).
  fields.push(['RNG', 'CPU']);
  const paramLine = fields.map(([k, v]) => `${k}: ${quote(v)}`).join(', ');
  const negative = p.negativePrompt.trim() ? `\n${NEGATIVE_PREFIX} ${p.negativePrompt}` : '';
  return `${p.prompt}${negative}\n${paramLine}`.trim();
}

/** A1111's "name: hash, name: hash" list; it drops ":" and "," from names so the list stays readable. */
function hashList(hashes: Readonly<Record<string, string>> | undefined): string | undefined {
  const entries = Object.entries(hashes ?? {}).filter(([, h]) => h);
  if (entries.length === 0) return undefined;
  return entries.map(([name, hash]) => `${name.replace(/[:,]/g, '')}: ${hash}`).join(', ');
}

/** Keys of which at least one must appear for a line to count as A1111 parameters. */
const ANCHOR_KEYS = ['Steps', 'Sampler', 'CFG scale', 'Seed', 'Size'];

// Sticky, so each pair must start where the previous one ended; keys are short, which also
// keeps a long prose line from costing quadratic time.
const PARAM = /\s*(\w[\w \-/+.()]{0,59}?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)/y;

/**
 * Reads an A1111 infotext (e.g. pasted from PNG Info). Returns undefined when the text has no
 * parameters line, i.e. it is just a prompt. Discord's slash options flatten newlines to
 * spaces, so the same text on one line is read too (the parameters start at "Steps:").
 */
export function parseInfoText(text: string): ParsedInfoText | undefined {
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
