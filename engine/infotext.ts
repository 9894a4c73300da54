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
  variation?: { seed: number; strength: number };
  denoisingStrength?: number;
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
    ['Model', p.model],
  ];
  if (p.variation) {
    fields.push(['Variation seed', num(p.variation.seed)], ['Variation seed strength', num(p.variation.strength)]);
  }
  if (p.denoisingStrength !== undefined) fields.push(['Denoising strength', num(p.denoisingStrength)]);
  // Our noise is torch-CPU compatible, which A1111 records as "RNG: CPU" (its default GPU is omitted).
  fields.push(['RNG', 'CPU']);
  const paramLine = fields.map(([k, v]) => `${k}: ${quote(v)}`).join(', ');
  const negative = p.negativePrompt.trim() ? `\n${NEGATIVE_PREFIX} ${p.negativePrompt}` : '';
  return `${p.prompt}${negative}\n${paramLine}`.trim();
}

/**
 * One `Key: value` pair as A1111 matches it: a key starting with a word character, then a quoted
 * JSON string or anything up to the next comma.
 */
const PARAM_RE = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;

/** A1111 only treats the last line as parameters when it holds at least three pairs. */
const MIN_PARAMS = 3;

function parseParamLine(line: string): [string, string][] {
  const pairs: [string, string][] = [];
  for (const m of line.matchAll(PARAM_RE)) {
    const key = m[1]!;
    let value = m[2]!;
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      try {
        const unquoted: unknown = JSON.parse(value);
        if (typeof unquoted === 'string') value = unquoted;
      } catch {
        // Not valid JSON: keep the raw text, as A1111 does when unquoting fails.
      }
    }
    pairs.push([key, value.trim()]);
  }
  return pairs;
}

/**
 * Reads an A1111 infotext (e.g. pasted from PNG Info). Returns undefined when the text has no
 * parameters line, i.e. it is just a prompt.
 */
export function parseInfoText(text: string): ParsedInfoText | undefined {
  const lines = text.replace(/\r\n?/g, '\n').trim().split('\n');
  const last = lines.pop() ?? '';
  const pairs = parseParamLine(last);
  if (pairs.length < MIN_PARAMS) return undefined;
  let prompt = '';
  let negativePrompt = '';
  let inNegative = false;
  for (const raw of lines) {
    let line = raw.trim();
    if (line.startsWith(NEGATIVE_PREFIX)) {
      inNegative = true;
      line = line.slice(NEGATIVE_PREFIX.length).trim();
    }
    if (inNegative) negativePrompt += (negativePrompt === '' ? '' : '\n') + line;
    else prompt += (prompt === '' ? '' : '\n') + line;
  }
  const params: Record<string, string> = {};
  for (const [k, v] of pairs) params[k] = v;
  return { prompt, negativePrompt, params };
}
