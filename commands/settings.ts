// /settings: per-member defaults. Values follow the parser's rules and the club's limits:
// out-of-range numbers are clamped with an explanation, nonsense is refused with the choices.
import { SAMPLERS } from '../engine/types.js';
import { parseAspect } from '../src/jobs/aspect.js';
import { readPlainDecimal } from '../src/jobs/numbers.js';
import { resolveSampler } from '../src/jobs/parse.js';
import type { MemberSettings } from '../src/jobs/types.js';
import { refuse, shorten } from './format.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

type Key = keyof MemberSettings;
const KEYS: Key[] = ['aspect', 'negativePrompt', 'steps', 'guidance', 'sampler', 'images', 'model'];

/** What members may type for each key (flag names from /imagine work too). */
const ALIASES: Record<string, Key> = {
  aspect: 'aspect',
  ar: 'aspect',
  ratio: 'aspect',
  negative: 'negativePrompt',
  negativeprompt: 'negativePrompt',
  neg: 'negativePrompt',
  no: 'negativePrompt',
  steps: 'steps',
  step: 'steps',
  guidance: 'guidance',
  cfg: 'guidance',
  cfgscale: 'guidance',
  scale: 'guidance',
  sampler: 'sampler',
  images: 'images',
  image: 'images',
  n: 'images',
  count: 'images',
  model: 'model',
};
const LABEL: Record<Key, string> = {
  aspect: 'aspect',
  negativePrompt: 'negative',
  steps: 'steps',
  guidance: 'guidance',
  sampler: 'sampler',
  images: 'images',
  model: 'model',
};

type Outcome = { ok: true; value: MemberSettings[Key]; note?: string } | { ok: false; error: string };

function clampNumber(
  label: string,
  raw: string,
  min: number,
  max: number,
  integer: boolean,
  why: string,
): Outcome {
  const n = readPlainDecimal(raw) ?? Number.NaN;
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    return { ok: false, error: `${label} takes ${integer ? 'a whole number' : 'a number'} from ${min} to ${max}; "${shorten(raw, 20)}" is not one.` };
  }
  if (n > max) return { ok: true, value: max, note: `${label} ${n} → ${max}, ${why}.` };
  if (n < min) return { ok: true, value: min, note: `${label} ${n} → ${min}, the least allowed.` };
  return { ok: true, value: n };
}

function validate(key: Key, raw: string, ctx: CommandContext): Outcome {
  const { limits } = ctx.config;
  switch (key) {
    case 'steps':
      return clampNumber('steps', raw, 1, limits.maxSteps, true, "this club's maximum");
    case 'guidance':
      return clampNumber('guidance', raw, 0, limits.maxGuidance, false, "this club's maximum");
    case 'images':
      return clampNumber('images', raw, 1, limits.maxImagesPerJob, true, "this club's maximum per job");
    case 'aspect': {
      const parsed = parseAspect(raw);
      return parsed.ok ? { ok: true, value: `${parsed.w}:${parsed.h}` } : { ok: false, error: parsed.error };
    }
    case 'sampler': {
      const sampler = resolveSampler(raw);
      return sampler
        ? { ok: true, value: sampler }
        : { ok: false, error: `Unknown sampler "${shorten(raw, 40)}". Samplers: ${SAMPLERS.join(', ')}.` };
    }
    case 'model': {
      const models = ctx.models();
      const model = models.find((m) => m.name === raw) ?? models.find((m) => m.name.toLowerCase() === raw.toLowerCase());
      if (model) return { ok: true, value: model.name };
      const list = models.length ? models.map((m) => m.name).join(', ') : 'none are installed';
      return { ok: false, error: `Unknown model "${shorten(raw, 40)}". Models: ${list}.` };
    }
    case 'negativePrompt': {
      // "none" means "no negative prompt", overriding the club's default one.
      // Control characters would be dropped by the parser anyway; keep them out of the overview too.
      const clean = raw.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, ' ').trim();
      const text = /^(none|-|off|"")$/i.test(clean) ? '' : clean;
      if (text.length > limits.maxPromptLength) {
        return {
          ok: true,
          value: text.slice(0, limits.maxPromptLength),
          note: `negative prompt cut to ${limits.maxPromptLength} characters, this club's maximum.`,
        };
      }
      return { ok: true, value: text };
    }
  }
}

function clubDefault(key: Key, ctx: CommandContext): string {
  const d = ctx.config.defaults;
  switch (key) {
    case 'aspect':
      return d.aspect;
    case 'negativePrompt':
      return d.negativePrompt ? `“${shorten(d.negativePrompt, 80)}”` : '(none)';
    case 'steps':
      return String(d.steps);
    case 'guidance':
      return String(d.guidance);
    case 'sampler':
      return d.sampler;
    case 'images':
      return String(d.images);
    case 'model':
      return ctx.config.models.default || ctx.models()[0]?.name || '(none installed)';
  }
}

function shown(key: Key, settings: MemberSettings, ctx: CommandContext): string {
  const own = settings[key];
  if (own === undefined) return `${LABEL[key]}: ${clubDefault(key, ctx)} (club default)`;
  if (key === 'negativePrompt') return `${LABEL[key]}: ${own === '' ? '(none)' : `“${shorten(String(own), 80)}”`} (yours)`;
  return `${LABEL[key]}: ${String(own)} (yours)`;
}

function overview(settings: MemberSettings, ctx: CommandContext): string {
  return KEYS.map((k) => shown(k, settings, ctx)).join('\n');
}

const USAGE =
  'Change one with "key value": steps 30 · aspect 3:2 · negative blurry, text · sampler dpm++ 2m karras · ' +
  'images 2 · model NAME · guidance 6. "reset" clears all, "reset steps" one.';

function keyOf(word: string): Key | undefined {
  const name = word.toLowerCase().replace(/^-+/, '').replace(/[\s_-]/g, '');
  // Own properties only: "constructor" or "toString" must read as unknown settings.
  return Object.hasOwn(ALIASES, name) ? ALIASES[name] : undefined;
}

/** "steps 30", "steps: 30", "--steps 30", "negative prompt blurry, text". */
function splitChange(line: string): { key: Key; value: string } | { error: string } {
  const m = /^\s*(--?)?(cfg\s+scale|[A-Za-z][A-Za-z_-]*(?:\s+prompt\b)?)\s*[:=]?\s*([\s\S]*)$/i.exec(line);
  const key = m ? keyOf((m[2] ?? '').replace(/\s+/g, '')) : undefined;
  if (!m || !key) {
    const word = shorten(line.trim().split(/\s+/)[0] ?? '', 20);
    return { error: `Unknown setting "${word}". Settings: ${KEYS.map((k) => LABEL[k]).join(', ')}.` };
  }
  return { key, value: (m[3] ?? '').trim() };
}

/** One change per line or `;`; a line of --flags holds several. */
function changesOf(text: string): string[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('-')) return trimmed.split(/\s+(?=--?[A-Za-z])/).filter((s) => s.trim());
  return trimmed.split(/[\n;]/).filter((s) => s.trim());
}

export async function settings(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const { platform, userId } = req.requester;
  const option = req.options?.change;
  const text = (typeof option === 'string' ? option : (req.text ?? '')).trim();
  const current = await ctx.settings.get(platform, userId);
  if (!text) {
    return { ok: true, visibility: 'private', text: `Your defaults:\n${overview(current, ctx)}\n\n${USAGE}` };
  }

  const reset = /^reset(?:\s+(.+))?$/i.exec(text);
  if (reset) {
    const which = reset[1]?.trim();
    if (!which || /^all$/i.test(which)) {
      await ctx.settings.set(platform, userId, {});
      return { ok: true, visibility: 'private', text: `Back to the club defaults:\n${overview({}, ctx)}` };
    }
    const key = keyOf(which.replace(/\s+/g, ''));
    if (!key) return refuse(`Unknown setting "${shorten(which, 20)}". Settings: ${KEYS.map((k) => LABEL[k]).join(', ')}.`);
    const next: MemberSettings = { ...current };
    delete next[key];
    await ctx.settings.set(platform, userId, next);
    return { ok: true, visibility: 'private', text: `${LABEL[key]} is back to the club default.\n${overview(next, ctx)}` };
  }

  const changes = changesOf(text);
  if (changes.length === 0) return refuse(`Nothing to change there. ${USAGE}`);
  const next: MemberSettings = { ...current };
  const notes: string[] = [];
  const saved: string[] = [];
  for (const line of changes) {
    const change = splitChange(line);
    if ('error' in change) return refuse(`${change.error}\n${USAGE}`);
    const { key, value } = change;
    if (!value && key !== 'negativePrompt') return refuse(`Which ${LABEL[key]}? ${USAGE}`);
    const outcome = validate(key, value, ctx);
    if (!outcome.ok) return refuse(outcome.error);
    // One assignment per key keeps the union type honest without a cast per field.
    Object.assign(next, { [key]: outcome.value });
    if (outcome.note) notes.push(outcome.note);
    saved.push(LABEL[key]);
  }
  await ctx.settings.set(platform, userId, next);
  const lines = [`Saved ${saved.join(', ')}.`, ...notes, '', 'Your defaults:', overview(next, ctx)];
  return { ok: true, visibility: 'private', text: lines.join('\n') };
}
