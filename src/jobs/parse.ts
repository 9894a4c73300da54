// The one parser that turns what a member typed — slash-command options, a prompt with
// Midjourney-style --flags, or a pasted AUTOMATIC1111 info text — into a JobSpec within this
// club's limits. Every clamp and default that changes the request is explained in `notes`;
// nonsense is refused with a message the member can act on. It never throws.
//
// Precedence, for each setting: slash-command option > inline flag / pasted info text >
// the member's /settings > the club's config defaults (turbo models: the model's own defaults
// instead of the member's and the club's steps, guidance and sampler).
import { randomInt } from 'node:crypto';
import { collectLoras, loraTag, parseLoraFlag } from '../../engine/job-loras.js';
import { EngineError, SAMPLERS, type LoraRequest, type ModelInfo, type SamplerName } from '../../engine/types.js';
import type { Config } from '../config/schema.js';
import { parseInfoText } from '../../engine/infotext.js';
import { aspectToSize, exactSize, SDXL_BUCKETS, type SizeResult } from './aspect.js';
import { clampToSafe, readTypedNumber } from './numbers.js';
import type { JobSpec, MemberSettings } from './types.js';

export { aspectToSize } from './aspect.js';

export interface ParseInput {
  text?: string;
  options?: Record<string, string | number | boolean>;
}

export interface ParseContext {
  config: Config;
  models: ModelInfo[];
  member: MemberSettings;
}

export type ParseResult = { ok: true; spec: JobSpec; notes: string[] } | { ok: false; error: string };

/** Native size assumed when no model information is available. */
const FALLBACK_NATIVE = { width: 512, height: 512 };
const UINT32 = 2 ** 32;

/** What one source (the options, or the text) asked for, already type-checked. */
interface Wish {
  prompt?: string;
  negative?: string;
  aspect?: string;
  size?: { width: number; height: number };
  seed?: number;
  steps?: number;
  guidance?: number;
  sampler?: SamplerName;
  images?: number;
  model?: string;
  variation?: { seed: number; strength: number };
  /** `--lora` flags (repeatable); they become `<lora:…>` tags at the end of the prompt. */
  loras?: LoraRequest[];
  /** How a number was written when that differs from its value (1e400, 99999999999999999999). */
  typed?: Partial<Record<'steps' | 'guidance' | 'images', string>>;
}

type Field = Exclude<keyof Wish, 'typed'>;

/** Own properties only: a member typing --constructor must not reach Object.prototype. */
function lookup<T>(table: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

class Refusal {
  constructor(readonly message: string) {}
}

export function parseJobRequest(input: ParseInput, ctx: ParseContext): ParseResult {
  try {
    return build(input, ctx);
  } catch (err) {
    if (err instanceof Refusal) return { ok: false, error: err.message };
    // A bug here must never reach the chat as a stack trace.
    return { ok: false, error: 'I could not read that request; please check it and try again.' };
  }
}

function build(input: ParseInput, ctx: ParseContext): ParseResult {
  const { config, models, member } = ctx;
  const limits = config.limits;
  const notes: string[] = [];

  const fromOptions = readOptions(input.options ?? {}, notes);
  const rawText = pickText(input, fromOptions);
  const lenient = new Set<Field>();
  const fromText = rawText === undefined ? {} : readText(rawText, notes, lenient);

  // Slash options win over the same setting written inline; say so when they disagree.
  const wish: Wish = { ...fromText, typed: { ...fromText.typed, ...fromOptions.typed } };
  for (const [key, value] of Object.entries(fromOptions) as [Field, Wish[Field]][]) {
    if (key === 'prompt' || (key as string) === 'typed') continue;
    const inline = fromText[key];
    if (inline !== undefined && JSON.stringify(inline) !== JSON.stringify(value)) {
      notes.push(`the ${optionName(key)} option (${show(value)}) was used instead of ${show(inline)} in the prompt`);
    }
    (wish as Record<Field, unknown>)[key] = value;
  }
  if (fromOptions.aspect !== undefined && fromText.size !== undefined) {
    delete wish.size;
    notes.push(`the aspect option (${fromOptions.aspect}) was used instead of --size ${fromText.size.width}x${fromText.size.height}`);
  }

  // ---- prompt ----
  const prompt = cutText(cleanText(wish.prompt ?? ''), limits.maxPromptLength, 'prompt', notes);
  if (prompt && isInvisible(prompt)) {
    throw new Refusal(
      'Your prompt has only invisible characters (zero-width spaces, joiners or the like). Tell me what to draw, e.g. `a fox in the snow`.',
    );
  }
  if (!prompt) {
    throw new Refusal('Tell me what to draw, e.g. `a fox in the snow --ar 3:2`. Flags come after the prompt.');
  }

  // ---- LoRAs: --lora flags become tags, so the prompt alone says what was drawn (the info text,
  // rerolls and the ℹ️ command carry them) ----
  const flagTags = (wish.loras ?? []).map(loraTag).join(' ');
  const promptWithLoras = flagTags ? `${prompt} ${flagTags}` : prompt;

  // ---- model ----
  const model = chooseModel(wish.model, lenient.has('model'), models, member, config, notes);
  const turbo = model !== undefined && (model.family === 'sd-turbo' || model.defaultSampler === 'Turbo');
  const turboModel = turbo ? model : undefined;
  const modelDefaults: string[] = [];
  /** What was asked for, else a turbo model's own value (named in a note), else the member's or club's default. */
  const choose = <T>(asked: T | undefined, own: (m: ModelInfo) => T, said: (value: T) => string, fallback: T): T => {
    if (asked !== undefined) return asked;
    if (!turboModel) return fallback;
    const value = own(turboModel);
    modelDefaults.push(said(value));
    return value;
  };
  const atMost = (value: number, max: number, label: 'steps' | 'guidance' | 'images'): number => {
    if (value <= max) return value;
    notes.push(`${label} ${wish.typed?.[label] ?? value} → ${max}, this club's maximum`);
    return max;
  };

  // ---- steps, guidance, sampler ----
  const steps = atMost(
    choose(wish.steps, (m) => m.defaultSteps, (v) => `${v} step${v === 1 ? '' : 's'}`, member.steps ?? config.defaults.steps),
    limits.maxSteps,
    'steps',
  );
  const guidance = atMost(
    choose(wish.guidance, (m) => m.defaultGuidance, (v) => `guidance ${v}`, member.guidance ?? config.defaults.guidance),
    limits.maxGuidance,
    'guidance',
  );
  const sampler = choose(wish.sampler, (m) => m.defaultSampler, (v) => `sampler ${v}`, member.sampler ?? config.defaults.sampler);
  if (turboModel && modelDefaults.length) {
    notes.push(`${turboModel.name} is a turbo model: using its own ${joinWords(modelDefaults)}`);
  }

  // ---- images ----
  const count = atMost(wish.images ?? member.images ?? config.defaults.images, limits.maxImagesPerJob, 'images');

  // ---- negative prompt ----
  const negativePrompt = cutText(
    cleanText(wish.negative ?? member.negativePrompt ?? config.defaults.negativePrompt),
    limits.maxPromptLength,
    'negative prompt',
    notes,
  );

  // Bad tags, a LoRA named twice, or a tag in the negative: the member hears now, not after queueing.
  try {
    collectLoras(promptWithLoras, negativePrompt);
  } catch (err) {
    if (err instanceof EngineError) throw new Refusal(capitalize(err.message));
    throw err;
  }

  // ---- size ----
  const native = model
    ? {
        width: model.nativeWidth,
        height: model.nativeHeight,
        // SDXL's buckets are its 1024² training sizes; a fine-tune set to another native size keeps the plain grid fit.
        ...(model.family === 'sdxl' && model.nativeWidth === 1024 && model.nativeHeight === 1024 ? { buckets: SDXL_BUCKETS } : {}),
      }
    : FALLBACK_NATIVE;
  let size: SizeResult;
  let asked: string;
  if (wish.size && wish.aspect === undefined) {
    asked = `${wish.size.width}x${wish.size.height}`;
    size = exactSize(wish.size.width, wish.size.height, limits.maxPixels, limits.maxSide);
    if (size.ok && !size.limited && (size.width !== wish.size.width || size.height !== wish.size.height)) {
      notes.push(`size ${asked} → ${size.width}x${size.height}: sides are multiples of 64 here`);
    }
  } else {
    if (wish.size && wish.aspect !== undefined) {
      notes.push(`--ar ${wish.aspect} was used; --size ${wish.size.width}x${wish.size.height} was ignored`);
    }
    asked = wish.aspect ?? member.aspect ?? config.defaults.aspect;
    size = aspectToSize(asked, native, limits.maxPixels, limits.maxSide);
  }
  if (!size.ok) throw new Refusal(capitalize(size.error));
  if (size.limited) {
    notes.push(
      `size ${asked} → ${size.width}x${size.height}, this club's maximum is ${limits.maxPixels} pixels and ${limits.maxSide} per side`,
    );
  }

  // ---- seed ----
  const seed = wish.seed ?? randomInt(0, UINT32);

  const spec: JobSpec = {
    prompt: promptWithLoras,
    negativePrompt,
    width: size.width,
    height: size.height,
    steps,
    guidance,
    sampler,
    seed,
    count,
    model: model?.name ?? config.models.default,
  };
  if (wish.variation) spec.variation = wish.variation;
  return { ok: true, spec, notes: [...new Set(notes)] };
}

// ---- where the text comes from -----------------------------------------------------------------

/** The prompt option and free text are the same thing arriving by two roads; the option wins. */
function pickText(input: ParseInput, fromOptions: Wish): string | undefined {
  if (fromOptions.prompt !== undefined && fromOptions.prompt.trim() !== '') return fromOptions.prompt;
  return input.text;
}

// ---- slash-command options ----------------------------------------------------------------------

const OPTION_FIELDS: Record<string, Field> = {
  prompt: 'prompt',
  negative: 'negative',
  aspect: 'aspect',
  seed: 'seed',
  steps: 'steps',
  guidance: 'guidance',
  sampler: 'sampler',
  images: 'images',
  model: 'model',
};

function optionName(field: Field): string {
  return Object.entries(OPTION_FIELDS).find(([, f]) => f === field)?.[0] ?? field;
}

function readOptions(options: Record<string, string | number | boolean>, notes: string[]): Wish {
  const wish: Wish = {};
  for (const [name, value] of Object.entries(options)) {
    const field = lookup(OPTION_FIELDS, name);
    // Options belonging to other commands are not ours to judge.
    if (!field) continue;
    if (typeof value === 'boolean') throw new Refusal(`The ${name} option needs a value, not ${String(value)}.`);
    const text = String(value);
    if (text.trim() === '' && field !== 'prompt' && field !== 'negative') continue;
    assign(wish, field, text, name, notes);
  }
  return wish;
}

// ---- free text: a pasted info text, or a prompt with --flags -----------------------------------

interface FlagDef {
  field: Field;
  /** The whole rest of the value belongs to the flag (it may contain spaces). */
  wholeValue: boolean;
}

const FLAGS: Record<string, FlagDef> = {
  ar: { field: 'aspect', wholeValue: false },
  aspect: { field: 'aspect', wholeValue: false },
  seed: { field: 'seed', wholeValue: false },
  no: { field: 'negative', wholeValue: true },
  neg: { field: 'negative', wholeValue: true },
  negative: { field: 'negative', wholeValue: true },
  steps: { field: 'steps', wholeValue: false },
  cfg: { field: 'guidance', wholeValue: false },
  guidance: { field: 'guidance', wholeValue: false },
  sampler: { field: 'sampler', wholeValue: true },
  n: { field: 'images', wholeValue: false },
  images: { field: 'images', wholeValue: false },
  model: { field: 'model', wholeValue: true },
  size: { field: 'size', wholeValue: false },
  variation: { field: 'variation', wholeValue: false },
  lora: { field: 'loras', wholeValue: false },
};

const FLAG_LIST = '--ar, --seed, --no, --steps, --cfg, --sampler, --n, --model, --size, --variation, --lora';
/** Flags that may be given several times, each adding one more. */
const REPEATABLE = new Set<Field>(['loras']);

function readText(text: string, notes: string[], lenient: Set<Field>): Wish {
  const info = parseInfoText(text);
  if (info && info.prompt.trim() === '') throw new Refusal(PARAMETERS_WITHOUT_PROMPT);
  if (info) return readInfoText(info, notes, lenient);
  if (isBareParameters(text)) throw new Refusal(PARAMETERS_WITHOUT_PROMPT);
  return readFlags(text, notes);
}

const PARAMETERS_WITHOUT_PROMPT =
  'That looks like AUTOMATIC1111 parameters without a prompt line. Paste the whole info text (the prompt comes first), or tell me what to draw, e.g. `a fox in the snow --steps 20`.';

/** A1111 keys that show a short "Key: value, Key: value" line is parameters, not a prompt. */
const PARAMETER_KEYS = new Set(['steps', 'sampler', 'cfg scale', 'seed', 'size', 'model', 'schedule type', 'denoising strength', 'clip skip']);

/**
 * "Steps: 20, Sampler: Euler a": fewer pairs than parseInfoText wants, but every comma-separated
 * piece is a known A1111 key with a value, so it is parameters that lost their prompt line.
 */
function isBareParameters(text: string): boolean {
  const pieces = text.trim().split(',');
  return pieces.every((piece) => {
    const m = /^\s*([A-Za-z][A-Za-z ]{0,20}?)\s*:\s*[^:]+$/.exec(piece);
    return m?.[1] !== undefined && PARAMETER_KEYS.has(m[1].toLowerCase());
  });
}

interface FlagHit {
  /** Where the flag token starts and where its value starts. */
  start: number;
  valueStart: number;
  name: string;
  typed: string;
  /** Value glued to the name, as in --n4 or --ar=3:2. */
  glued?: string;
}

/** Phones turn -- into an em dash (and some keyboards into an en dash); both count. */
const FLAG_TOKEN = /(^|\s)(--|—|–|−−)([^\s]+)/g;

function findFlags(text: string): FlagHit[] {
  const hits: FlagHit[] = [];
  for (const m of text.matchAll(FLAG_TOKEN)) {
    const start = m.index + (m[1] ?? '').length;
    const dashes = m[2] ?? '--';
    const word = (m[3] ?? '').replace(/^-+/, '');
    const valueStart = m.index + m[0].length;
    const hit = classifyFlag(word);
    if (hit) {
      hits.push({ start, valueStart, typed: `--${word}`, ...hit });
    } else if (dashes === '--' && /^[\p{L}]/u.test(word)) {
      // A real double hyphen before a word is meant as a flag; a dash used as punctuation is not.
      hits.push({ start, valueStart, typed: `--${word}`, name: '' });
    }
  }
  return hits;
}

function classifyFlag(word: string): { name: string; glued?: string } | undefined {
  const eq = word.indexOf('=');
  if (eq > 0) {
    const name = word.slice(0, eq).toLowerCase();
    return lookup(FLAGS, name) ? { name, glued: word.slice(eq + 1) } : undefined;
  }
  const lower = word.toLowerCase().normalize('NFKC');
  if (lookup(FLAGS, lower)) return { name: lower };
  // --n4, --steps30: a known name directly followed by a number.
  const m = /^([a-z]+)([-+]?\d.*)$/.exec(lower);
  if (m?.[1] && lookup(FLAGS, m[1])) return { name: m[1], glued: word.slice(m[1].length) };
  return undefined;
}

function readFlags(text: string, notes: string[]): Wish {
  const wish: Wish = {};
  const hits = findFlags(text);
  const unknown = hits.find((h) => h.name === '');
  if (unknown) {
    const shown = unknown.typed.length > 30 ? `${unknown.typed.slice(0, 30)}…` : unknown.typed;
    throw new Refusal(`Unknown flag ${shown}; flags: ${FLAG_LIST}.`);
  }

  const firstStart = hits[0]?.start ?? text.length;
  let prompt = text.slice(0, firstStart);
  const seen = new Set<Field>();
  const repeated = new Set<Field>();
  const leftovers: string[] = [];

  hits.forEach((hit, i) => {
    const def = lookup(FLAGS, hit.name) as FlagDef;
    const end = hits[i + 1]?.start ?? text.length;
    const rawValue = ((hit.glued ?? '') + (hit.glued !== undefined ? ' ' : '') + text.slice(hit.valueStart, end)).trim();
    if (rawValue === '') {
      throw new Refusal(`The flag --${hit.name} needs a value, e.g. ${exampleFor(hit.name)}.`);
    }
    let value: string;
    let rest = '';
    if (def.wholeValue) {
      value = stripQuotes(rawValue);
    } else {
      [value, rest] = firstToken(rawValue);
    }
    if (seen.has(def.field) && !repeated.has(def.field) && !REPEATABLE.has(def.field)) {
      repeated.add(def.field);
      notes.push(`--${hit.name} was given more than once; the last one counts`);
    }
    seen.add(def.field);
    assign(wish, def.field, value, `--${hit.name}`, notes);
    if (rest) leftovers.push(rest);
  });

  if (leftovers.length) {
    const extra = leftovers.join(' ');
    prompt = `${prompt.trimEnd()} ${extra}`;
    notes.push(`"${extra.length > 60 ? `${extra.slice(0, 60)}…` : extra}" after a flag was added to the prompt; put flags at the end`);
  }
  wish.prompt = prompt;
  return wish;
}

function exampleFor(flag: string): string {
  const examples: Record<string, string> = {
    ar: '--ar 3:2',
    aspect: '--aspect 3:2',
    seed: '--seed 42',
    no: '--no text, blurry',
    neg: '--neg text, blurry',
    negative: '--negative text, blurry',
    steps: '--steps 30',
    cfg: '--cfg 6',
    guidance: '--guidance 6',
    sampler: '--sampler "DPM++ 2M Karras"',
    n: '--n 4',
    images: '--images 4',
    model: '--model NAME',
    size: '--size 512x768',
    variation: '--variation 1234:0.2',
    lora: '--lora name:0.8',
  };
  return lookup(examples, flag) ?? `--${flag} VALUE`;
}

const OPEN_QUOTES: Record<string, string> = { '"': '"', '“': '”', '„': '“', '«': '»', "'": "'", '‘': '’', '”': '”' };

function stripQuotes(value: string): string {
  const first = value[0] ?? '';
  const close = lookup(OPEN_QUOTES, first);
  if (close && value.length >= 2 && value.endsWith(close)) return value.slice(1, -1).trim();
  return value;
}

/** A single-word value (or a quoted one) and whatever text follows it. */
function firstToken(value: string): [string, string] {
  const first = value[0] ?? '';
  const close = lookup(OPEN_QUOTES, first);
  if (close) {
    const end = value.indexOf(close, 1);
    if (end > 0) return [value.slice(1, end).trim(), value.slice(end + 1).trim()];
  }
  const m = /^(\S+)\s*([\s\S]*)$/.exec(value);
  return [m?.[1] ?? value, (m?.[2] ?? '').trim()];
}

// ---- a pasted AUTOMATIC1111 info text -----------------------------------------------------------

/** Keys that describe the file rather than the picture; ignoring them changes nothing. */
// TI hashes only identify files: the prompt's embedding words already say what is used.
const SILENT_KEYS = new Set(['model hash', 'vae hash', 'version', 'hashes', 'ti hashes', 'batch size', 'batch pos', 'schedule type']);

function readInfoText(info: { prompt: string; negativePrompt: string; params: Record<string, string> }, notes: string[], lenient: Set<Field>): Wish {
  const wish: Wish = { prompt: info.prompt, negative: info.negativePrompt };
  notes.push('read as pasted AUTOMATIC1111 parameters');
  const byKey = new Map(Object.entries(info.params).map(([k, v]) => [k.toLowerCase(), v]));
  const ignored: string[] = [];

  for (const [key, value] of Object.entries(info.params)) {
    const lower = key.toLowerCase();
    switch (lower) {
      case 'steps':
        assign(wish, 'steps', value, 'Steps', notes);
        break;
      case 'cfg scale':
        assign(wish, 'guidance', value, 'CFG scale', notes);
        break;
      case 'seed':
        assign(wish, 'seed', value, 'Seed', notes);
        break;
      case 'size':
        assign(wish, 'size', value, 'Size', notes);
        break;
      case 'model':
        wish.model = value;
        lenient.add('model');
        break;
      case 'sampler': {
        const schedule = byKey.get('schedule type');
        const combined = schedule && !/^(automatic|uniform)$/i.test(schedule) ? resolveSampler(`${value} ${schedule}`) : undefined;
        const sampler = combined ?? resolveSampler(value);
        if (sampler) {
          wish.sampler = sampler;
          if (schedule && !combined && !/^(automatic|uniform)$/i.test(schedule)) ignored.push(`Schedule type ${schedule}`);
        } else {
          notes.push(`sampler ${value}${schedule ? ` (${schedule})` : ''} is not available here (${SAMPLERS.join(', ')}); using the default`);
        }
        break;
      }
      case 'variation seed': {
        const strength = byKey.get('variation seed strength');
        if (strength !== undefined) assign(wish, 'variation', `${value}:${strength}`, 'Variation seed', notes);
        break;
      }
      case 'rng':
        // Noise here is torch-CPU compatible ("RNG: CPU"); GPU or NV noise cannot be reproduced.
        if (value.toUpperCase() !== 'CPU') ignored.push(`RNG ${value} (noise here is always CPU-style)`);
        break;
      case 'variation seed strength':
        if (!byKey.has('variation seed')) ignored.push(key);
        break;
      case 'lora hashes':
        // The prompt's <lora:…> tags draw them; hashes without tags name LoRAs that are not applied.
        if (!/<lora:/i.test(info.prompt)) ignored.push(key);
        break;
      default:
        if (!SILENT_KEYS.has(lower)) ignored.push(key);
    }
  }
  if (ignored.length) notes.push(`ignored: ${ignored.join(', ')}`);
  return wish;
}

// ---- values -----------------------------------------------------------------------------------

/** Type-check one value for one setting and store it; throws a Refusal naming where it came from. */
function assign(wish: Wish, field: Field, raw: string, label: string, notes: string[]): void {
  switch (field) {
    case 'prompt':
      wish.prompt = raw;
      return;
    case 'negative':
      wish.negative = raw;
      return;
    case 'aspect':
      wish.aspect = raw.normalize('NFKC').trim();
      return;
    case 'model':
      wish.model = raw.trim();
      return;
    case 'sampler': {
      const sampler = resolveSampler(raw);
      if (!sampler) throw new Refusal(`Unknown sampler "${clip(raw)}"; samplers: ${SAMPLERS.join(', ')}.`);
      wish.sampler = sampler;
      return;
    }
    case 'seed':
      wish.seed = readSeed(raw, label, notes);
      return;
    case 'steps':
    case 'images': {
      const value = readWhole(raw, label);
      if (value < 1) throw new Refusal(`${label} must be at least 1 (got ${clip(raw)}).`);
      wish[field] = value;
      rememberTyped(wish, field, raw, value);
      return;
    }
    case 'guidance': {
      const guidance = readDecimal(raw, label);
      if (guidance < 0) throw new Refusal(`${label} cannot be negative (got ${clip(raw)}).`);
      wish.guidance = guidance;
      rememberTyped(wish, field, raw, guidance);
      return;
    }
    case 'size': {
      const m = /^\s*(\d{1,6})\s*[x×*]\s*(\d{1,6})\s*$/i.exec(raw.normalize('NFKC'));
      if (!m) throw new Refusal(`${label} must look like 512x768 (got ${clip(raw)}).`);
      wish.size = { width: Number(m[1]), height: Number(m[2]) };
      return;
    }
    case 'variation': {
      const m = /^\s*([^:]+):\s*(\S+)\s*$/.exec(raw.normalize('NFKC'));
      if (!m?.[1] || !m[2]) throw new Refusal(`${label} must look like SEED:STRENGTH, e.g. 1234:0.2 (got ${clip(raw)}).`);
      const seed = readSeed(m[1], `${label} seed`, notes);
      const strength = readDecimal(m[2], `${label} strength`);
      if (strength < 0 || strength > 1) {
        throw new Refusal(`${label} strength must be between 0 and 1 (got ${clip(m[2])}).`);
      }
      wish.variation = { seed, strength };
      return;
    }
    case 'loras': {
      let lora: LoraRequest;
      try {
        lora = parseLoraFlag(raw);
      } catch (err) {
        if (err instanceof EngineError) throw new Refusal(capitalize(err.message));
        throw err;
      }
      wish.loras = [...(wish.loras ?? []), lora];
      return;
    }
  }
}

/** Digits as typed on any keyboard: fullwidth forms fold to ASCII; a trailing comma or full stop is forgiven. */
function numeric(raw: string): string {
  return raw.normalize('NFKC').trim().replace(/[,.;]$/, '');
}

/** Notes quote a clamped number as it was written when its value reads differently (2e1, 1e400). */
function rememberTyped(wish: Wish, field: 'steps' | 'guidance' | 'images', raw: string, value: number): void {
  const text = numeric(raw);
  if (text !== String(value)) (wish.typed ??= {})[field] = clip(text);
}

/** " (2e-1 is 0.2)" when the written form hides the value. */
function valueOf(text: string, value: number): string {
  return Number.isFinite(value) && text !== String(value) ? `, which is ${value}` : '';
}

/** Whole numbers in any notation (2e1 is 20); beyond any limit they become ±MAX_SAFE_INTEGER, for the clamp. */
function readWhole(raw: string, label: string): number {
  const text = numeric(raw);
  const n = readTypedNumber(text);
  if (!n) throw new Refusal(`${label} must be a whole number (got ${clip(raw)}).`);
  if (n.integer === undefined && !n.huge) {
    throw new Refusal(`${label} must be a whole number (got ${clip(raw)}${valueOf(text, n.value)}).`);
  }
  return clampToSafe(n);
}

/** Decimal numbers in any notation; beyond a double's range they become ±MAX_VALUE, for the clamp or range check. */
function readDecimal(raw: string, label: string): number {
  const text = numeric(raw);
  const n = readTypedNumber(text);
  if (!n) throw new Refusal(`${label} must be a number (got ${clip(raw)}).`);
  if (Number.isFinite(n.value)) return n.value;
  return n.value > 0 ? Number.MAX_VALUE : -Number.MAX_VALUE;
}

/**
 * Seeds are uint32. -1 means random (as in A1111). A larger whole number (another tool's 64-bit
 * seed) is reduced mod 2^32 — deterministic, so the same number always gives the same picture.
 */
function readSeed(raw: string, label: string, notes: string[]): number {
  const text = numeric(raw);
  if (text === '-1') {
    const seed = randomInt(0, UINT32);
    notes.push(`${label} -1 means random: using ${seed}`);
    return seed;
  }
  const n = readTypedNumber(text);
  if (n?.huge) throw new Refusal(`${label} ${clip(text)} is far too large; seeds run from 0 to ${UINT32 - 1}.`);
  const big = n?.integer;
  if (big === undefined || big < 0n) {
    throw new Refusal(`${label} must be a whole number from 0 to ${UINT32 - 1} (got ${clip(raw)}${n ? valueOf(text, n.value) : ''}).`);
  }
  if (big < BigInt(UINT32)) return Number(big);
  const reduced = Number(big % BigInt(UINT32));
  notes.push(`${label} ${clip(text)} → ${reduced} (seeds here run from 0 to ${UINT32 - 1})`);
  return reduced;
}

/** Sampler names as people write them: A1111 labels, k-diffusion and diffusers style names. */
const SAMPLER_ALIASES: Record<string, SamplerName> = {
  euler: 'Euler',
  eulera: 'Euler a',
  eulerancestral: 'Euler a',
  eulerdiscrete: 'Euler',
  eulerancestraldiscrete: 'Euler a',
  dpmpp2mkarras: 'DPM++ 2M Karras',
  dpmpp2m: 'DPM++ 2M Karras',
  dpmsolvermultistepkarras: 'DPM++ 2M Karras',
  dpmsolvermultistep: 'DPM++ 2M Karras',
  dpmpp2mk: 'DPM++ 2M Karras',
  ddim: 'DDIM',
  turbo: 'Turbo',
};

export function resolveSampler(raw: string): SamplerName | undefined {
  const key = raw
    .normalize('NFKC')
    .toLowerCase()
    .trim()
    .replace(/^["'“”]|["'“”]$/g, '')
    .replace(/^k[_\s-]/, '')
    .replace(/\+/g, 'p')
    .replace(/[^a-z0-9]/g, '');
  return lookup(SAMPLER_ALIASES, key);
}

// ---- models -----------------------------------------------------------------------------------

function findModel(name: string, models: ModelInfo[]): ModelInfo | undefined {
  const wanted = name.normalize('NFKC').trim().toLowerCase();
  const bare = wanted.replace(/\.(safetensors|ckpt|onnx)$/, '');
  return models.find((m) => m.name.toLowerCase() === wanted) ?? models.find((m) => m.name.toLowerCase() === bare);
}

function chooseModel(
  asked: string | undefined,
  lenient: boolean,
  models: ModelInfo[],
  member: MemberSettings,
  config: Config,
  notes: string[],
): ModelInfo | undefined {
  const fallback = (): ModelInfo | undefined =>
    (config.models.default ? findModel(config.models.default, models) : undefined) ?? models[0];
  const available = models.length ? models.map((m) => m.name).join(', ') : 'none are installed';

  if (asked !== undefined && asked !== '') {
    const found = findModel(asked, models);
    if (found) return found;
    if (!lenient) throw new Refusal(`Unknown model "${clip(asked)}"; models: ${available}.`);
    const used = fallback();
    notes.push(`model ${clip(asked)} is not installed here; using ${used?.name ?? 'the default'}`);
    return used;
  }
  if (member.model) {
    const found = findModel(member.model, models);
    if (found) return found;
    const used = fallback();
    if (models.length) notes.push(`your saved model ${clip(member.model)} is no longer installed; using ${used?.name ?? 'the default'}`);
    return used;
  }
  return fallback();
}

// ---- text helpers -----------------------------------------------------------------------------

/**
 * Characters that draw nothing: format characters (zero-width space and joiners, BOM, bidi
 * marks, soft hyphen), variation selectors, and the blank "letters" used to fake empty text.
 */
const INVISIBLE = /[\p{Cf}\p{Z}\s\u034f\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0\ufe00-\ufe0f\u{e0100}-\u{e01ef}]/gu;

/** True when nothing would be left to draw once invisible characters are removed. */
function isInvisible(text: string): boolean {
  return text.replace(INVISIBLE, '') === '';
}

/** Control characters (other than newline and tab) only confuse the tokenizer and the logs. */
function cleanText(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, ' ').trim();
}

function cutText(text: string, max: number, what: string, notes: string[]): string {
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  notes.push(`${what} cut to ${max} characters, this club's maximum`);
  return chars.slice(0, max).join('').trimEnd();
}

function clip(text: string): string {
  const chars = Array.from(text);
  return chars.length > 40 ? `${chars.slice(0, 40).join('')}…` : text;
}

function show(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && 'width' in value && 'height' in value) return `${value.width}x${value.height}`;
  if (value && typeof value === 'object' && 'seed' in value && 'strength' in value) return `${value.seed}:${value.strength}`;
  return String(value);
}

function joinWords(words: string[]): string {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

function capitalize(text: string): string {
  return text ? text[0]?.toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? '' : '.') : text;
}
