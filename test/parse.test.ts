import { describe, expect, it } from 'vitest';
import { formatInfoText } from '../engine/infotext.js';
import { SAMPLERS, type ModelInfo } from '../engine/types.js';
import { defaultConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { parseInfoText } from '../engine/infotext.js';
import { aspectToSize, exactSize } from '../src/jobs/aspect.js';
import { parseJobRequest, resolveSampler, type ParseResult } from '../src/jobs/parse.js';
import { reproduceCommand } from '../commands/format.js';
import { collectLoras, jobLoras } from '../engine/job-loras.js';
import type { JobSpec, MemberSettings } from '../src/jobs/types.js';
import { modelInfo as model } from './fixtures/model-info.js';

const SD15 = model('sd15');
const SD21 = model('sd21-768', { family: 'sd2', predictionType: 'v_prediction', nativeWidth: 768, nativeHeight: 768 });
const TURBO = model('sd-turbo', {
  family: 'sd-turbo',
  defaultSampler: 'Turbo',
  defaultSteps: 1,
  defaultGuidance: 0,
});
const MODELS = [SD15, SD21, TURBO];
const config = defaultConfig({}, '/tmp');

interface Call {
  options?: Record<string, string | number | boolean>;
  member?: MemberSettings;
  models?: ModelInfo[];
  config?: Config;
}

function parse(text: string | undefined, call: Call = {}): ParseResult {
  return parseJobRequest(
    { text, options: call.options },
    { config: call.config ?? config, models: call.models ?? MODELS, member: call.member ?? {} },
  );
}

function ok(text: string | undefined, call: Call = {}): { spec: JobSpec; notes: string[] } {
  const r = parse(text, call);
  if (!r.ok) throw new Error(`expected success, got: ${r.error}`);
  return r;
}

function refused(text: string | undefined, call: Call = {}): string {
  const r = parse(text, call);
  if (r.ok) throw new Error(`expected a refusal, got ${JSON.stringify(r.spec)}`);
  return r.error;
}

describe('parseJobRequest: accepted', () => {
  it('reads every Midjourney-style flag', () => {
    const { spec, notes } = ok(
      'a fox in the snow --ar 16:9 --seed 42 --no text, blurry --steps 30 --cfg 6 --sampler "dpm++ 2m karras" --n 2 --model SD15',
    );
    expect(spec).toEqual({
      prompt: 'a fox in the snow',
      negativePrompt: 'text, blurry',
      width: 704,
      height: 384,
      steps: 30,
      guidance: 6,
      sampler: 'DPM++ 2M Karras',
      seed: 42,
      count: 2,
      model: 'sd15',
    });
    expect(notes).toEqual([]);
  });

  it('accepts the long names, em and en dashes, glued values and fullwidth digits', () => {
    const a = ok('a fox —aspect 2:3 –guidance 4.5 —images 3 --negative cats --seed ４２');
    expect(a.spec).toMatchObject({ width: 448, height: 640, guidance: 4.5, count: 3, negativePrompt: 'cats', seed: 42 });
    const b = ok('a fox --n4 --ar=3:2 --steps30');
    expect(b.spec).toMatchObject({ count: 4, width: 640, height: 448, steps: 30 });
    // An em dash used as punctuation stays in the prompt.
    expect(ok('a fox —the last one— in snow').spec.prompt).toBe('a fox —the last one— in snow');
  });

  it('reads sampler names the way people write them', () => {
    const cases: [string, string][] = [
      ['euler_a', 'Euler a'],
      ['euler-a', 'Euler a'],
      ['Euler A', 'Euler a'],
      ['k_euler_ancestral', 'Euler a'],
      ['k_euler', 'Euler'],
      ['EULER', 'Euler'],
      ['dpmpp_2m_karras', 'DPM++ 2M Karras'],
      ['DPM++ 2M Karras', 'DPM++ 2M Karras'],
      ['ddim', 'DDIM'],
      ['turbo', 'Turbo'],
    ];
    for (const [typed, want] of cases) {
      expect(resolveSampler(typed), typed).toBe(want);
      expect(ok(`a fox --sampler ${typed}`).spec.sampler, typed).toBe(want);
    }
    expect(ok('a fox --sampler “dpm++ 2m karras” --seed 1').spec).toMatchObject({ sampler: 'DPM++ 2M Karras', seed: 1 });
    for (const name of SAMPLERS) expect(resolveSampler(name)).toBe(name);
  });

  it('takes typed slash-command options, and options win over inline flags with a note', () => {
    const a = ok(undefined, {
      options: { prompt: 'a fox', negative: 'blur', aspect: '9:16', seed: 7, steps: 12, guidance: 5, sampler: 'DDIM', images: 1, model: 'sd21-768' },
    });
    expect(a.spec).toMatchObject({ prompt: 'a fox', negativePrompt: 'blur', seed: 7, steps: 12, guidance: 5, sampler: 'DDIM', count: 1, model: 'sd21-768' });
    expect(a.spec.height).toBeGreaterThan(a.spec.width);

    // Discord members type flags inside the prompt option; they are read the same way.
    const b = ok(undefined, { options: { prompt: 'a fox --ar 3:2 --steps 20', steps: 10 } });
    expect(b.spec).toMatchObject({ prompt: 'a fox', width: 640, height: 448, steps: 10 });
    expect(b.notes).toContain('the steps option (10) was used instead of 20 in the prompt');

    // Telegram-style text values for numbers are fine too.
    expect(ok(undefined, { options: { prompt: 'a fox', steps: '15' } }).spec.steps).toBe(15);
  });

  it('fills what the request leaves out from the member, then from the club', () => {
    const member: MemberSettings = { aspect: '3:2', negativePrompt: 'ugly', steps: 40, sampler: 'Euler', images: 2, guidance: 9 };
    const a = ok('a fox', { member });
    expect(a.spec).toMatchObject({ width: 640, height: 448, negativePrompt: 'ugly', steps: 40, sampler: 'Euler', count: 2, guidance: 9 });
    const b = ok('a fox --steps 10 --no cats', { member });
    expect(b.spec).toMatchObject({ steps: 10, negativePrompt: 'cats' });
    const c = ok('a fox');
    expect(c.spec).toMatchObject({ width: 512, height: 512, steps: 25, guidance: 7, sampler: 'Euler a', count: 4, negativePrompt: '', model: 'sd15' });
  });

  it('chooses the model: named (any case), the member’s, the club default, else the first', () => {
    expect(ok('a fox --model SD-TURBO').spec.model).toBe('sd-turbo');
    expect(ok('a fox', { member: { model: 'sd21-768' } }).spec.model).toBe('sd21-768');
    const clubDefault = defaultConfig({ models: { dir: '/m', default: 'sd21-768' } }, '/tmp');
    expect(ok('a fox', { config: clubDefault }).spec.model).toBe('sd21-768');
    const gone = ok('a fox', { member: { model: 'deleted-model' } });
    expect(gone.spec.model).toBe('sd15');
    expect(gone.notes).toContain('your saved model deleted-model is no longer installed; using sd15');
    // No models scanned yet: 512×512 and the configured default name.
    const none = ok('a fox --ar 16:9', { models: [] });
    expect(none.spec).toMatchObject({ width: 704, height: 384, model: '' });
  });

  it('gives turbo models their own steps, guidance and sampler unless the member asks', () => {
    const a = ok('a fox --model sd-turbo', { member: { steps: 30, guidance: 8, sampler: 'Euler' } });
    expect(a.spec).toMatchObject({ steps: 1, guidance: 0, sampler: 'Turbo' });
    expect(a.notes).toContain('sd-turbo is a turbo model: using its own 1 step, guidance 0 and sampler Turbo');
    const b = ok('a fox --model sd-turbo --steps 4');
    expect(b.spec).toMatchObject({ steps: 4, guidance: 0, sampler: 'Turbo' });
    expect(b.notes).toContain('sd-turbo is a turbo model: using its own guidance 0 and sampler Turbo');
  });

  it('maps aspect ratios to the model’s native area in multiples of 64', () => {
    // 16:9 on a 512 model: w = √(512²·16/9) ≈ 683 → 704, h = √(512²·9/16) = 384.
    expect(ok('a fox --ar 16:9').spec).toMatchObject({ width: 704, height: 384 });
    expect(ok('a fox --ar 1:1 --model sd21-768').spec).toMatchObject({ width: 768, height: 768 });
    expect(ok('a fox --ar 2:3 --model sd21-768').spec).toMatchObject({ width: 640, height: 960 });
    // As people also write ratios: 3/2, 3x2, 3×2 (and fullwidth or ratio-sign colons).
    const threeTwo = ok('a fox --ar 3:2').spec;
    for (const ar of ['3/2', '3x2', '3X2', '3×2', '"3 / 2"', '3∶2', '３：２']) {
      expect(ok(`a fox --ar ${ar}`).spec, ar).toMatchObject({ width: threeTwo.width, height: threeTwo.height });
    }
    expect(ok(undefined, { options: { prompt: 'a fox', aspect: '16x9' } }).spec).toMatchObject({ width: 704, height: 384 });

    const ratios = ['1:1', '3:2', '2:3', '4:3', '3:4', '16:9', '9:16', '21:9', '4:1', '1:4', '7:5', '2.39:1'];
    for (const native of [512, 768, 1024]) {
      for (const ar of ratios) {
        const r = aspectToSize(ar, { width: native, height: native }, 4096 * 4096, 4096);
        if (!r.ok) throw new Error(r.error);
        const [w, h] = ar.split(':').map(Number) as [number, number];
        expect(r.width % 64, `${ar}@${native}`).toBe(0);
        expect(r.height % 64, `${ar}@${native}`).toBe(0);
        const area = (r.width * r.height) / (native * native);
        expect(area, `${ar}@${native} area`).toBeGreaterThan(0.85);
        expect(area, `${ar}@${native} area`).toBeLessThan(1.15);
        expect(Math.abs(Math.log(r.width / r.height / (w / h))), `${ar}@${native} ratio`).toBeLessThan(0.1);
        expect(r.limited).toBe(false);
      }
    }
  });

  it('on an SDXL model, --ar picks SDXL\'s 1024² training bucket nearest in ratio', () => {
    const xl = model('sdxl', { family: 'sdxl', nativeWidth: 1024, nativeHeight: 1024 });
    const roomy = defaultConfig({ limits: { maxPixels: 2048 * 2048, maxSide: 2048 } }, '/tmp');
    const size = (ar: string) => {
      const { width, height } = ok(`a fox --model sdxl --ar ${ar}`, { models: [xl], config: roomy }).spec;
      return `${width}x${height}`;
    };
    // 16:9 = 1.78 → 1344×768 (1.75).
    expect(size('16:9')).toBe('1344x768');
    expect(size('9:16')).toBe('768x1344');
    expect(size('1:1')).toBe('1024x1024');
    expect(size('4:3')).toBe('1152x896');
    expect(size('3:2')).toBe('1216x832');
    expect(size('21:9')).toBe('1536x640');
    // Far from every bucket (4:1; the widest bucket is 2.4:1): the grid fit at the native area.
    expect(size('4:1')).toBe('2048x512');
    // 2:1 is 20 % from the nearest bucket (1536×640, 2.4:1): the grid fit is closer.
    expect(size('2:1')).toBe('1408x704');
    // On a 1024² model of another family the grid fit stays (3:2 → 1280×832 there, 1216×832 on SDXL).
    const other = model('big', { family: 'sd2', nativeWidth: 1024, nativeHeight: 1024 });
    expect(ok('a fox --model big --ar 3:2', { models: [other], config: roomy }).spec).toMatchObject({ width: 1280, height: 832 });
    // A bucket beyond the club's limits falls back to the limited grid fit, with the note.
    const small = defaultConfig({ limits: { maxPixels: 768 * 768, maxSide: 1024 } }, '/tmp');
    const limited = ok('a fox --model sdxl --ar 16:9', { models: [xl], config: small });
    expect(limited.spec.width * limited.spec.height).toBeLessThanOrEqual(768 * 768);
    expect(limited.notes.some((n) => n.startsWith('size 16:9 →'))).toBe(true);
  });

  it('keeps sizes within maxPixels and maxSide and says so', () => {
    const big = model('big', { nativeWidth: 1024, nativeHeight: 1024 });
    const small = defaultConfig({ limits: { maxPixels: 512 * 512, maxSide: 768 } }, '/tmp');
    const a = ok('a fox --model big', { models: [big], config: small });
    expect(a.spec).toMatchObject({ width: 512, height: 512 });
    expect(a.notes).toContain("size 1:1 → 512x512, this club's maximum is 262144 pixels and 768 per side");
    const b = ok('a fox --model big --ar 4:1', { models: [big], config: small });
    expect(b.spec.width).toBeLessThanOrEqual(768);
    expect(b.spec.width * b.spec.height).toBeLessThanOrEqual(512 * 512);
    for (const [w, h] of [
      [5000, 5000],
      [4096, 1024],
      [100, 390],
      [63, 63],
    ] as const) {
      const r = exactSize(w, h, 512 * 512, 768);
      if (!r.ok) throw new Error(r.error);
      expect(r.width % 64 + (r.height % 64)).toBe(0);
      expect(r.width * r.height).toBeLessThanOrEqual(512 * 512);
      expect(Math.max(r.width, r.height)).toBeLessThanOrEqual(768);
    }
  });

  it('takes an exact --size, snapped to multiples of 64 and clamped, and --variation', () => {
    const a = ok('a fox --size 512x768 --variation 99:0.3');
    expect(a.spec).toMatchObject({ width: 512, height: 768, variation: { seed: 99, strength: 0.3 } });
    expect(a.notes).toEqual([]);
    const b = ok('a fox --size 500×700');
    expect(b.spec).toMatchObject({ width: 512, height: 704 });
    expect(b.notes).toContain('size 500x700 → 512x704: sides are multiples of 64 here');
    const c = ok('a fox --size 2048x2048');
    expect(c.spec).toMatchObject({ width: 1024, height: 1024 });
    expect(c.notes[0]).toMatch(/^size 2048x2048 → 1024x1024, this club's maximum/);
    const d = ok('a fox --size 512x768 --ar 16:9');
    expect(d.spec).toMatchObject({ width: 704, height: 384 });
    expect(d.notes).toContain('--ar 16:9 was used; --size 512x768 was ignored');
  });

  it('clamps steps, images, guidance and prompt length, explaining each', () => {
    const a = ok('a fox --steps 200 --n 9 --cfg 40');
    expect(a.spec).toMatchObject({ steps: 50, count: 4, guidance: 30 });
    expect(a.notes).toEqual([
      "steps 200 → 50, this club's maximum",
      "guidance 40 → 30, this club's maximum",
      "images 9 → 4, this club's maximum",
    ]);
    const huge = ok('a fox --steps 99999999999999999999999');
    expect(huge.spec.steps).toBe(50);
    expect(huge.notes[0]).toMatch(/^steps \d+ → 50, this club's maximum$/);

    const long = ok(`${'🦊'.repeat(1200)} --seed 1`);
    expect(Array.from(long.spec.prompt)).toHaveLength(1000);
    // Cut by characters, never through the middle of an emoji.
    expect(long.spec.prompt).toBe('🦊'.repeat(1000));
    expect(long.notes).toContain("prompt cut to 1000 characters, this club's maximum");

    const member = ok('a fox', { member: { steps: 80 } });
    expect(member.spec.steps).toBe(50);
    expect(member.notes).toContain("steps 80 → 50, this club's maximum");
  });

  it('handles seeds: random when absent, -1 random, big numbers reduced mod 2^32', () => {
    const seeds = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const { spec } = ok('a fox');
      expect(Number.isInteger(spec.seed) && spec.seed >= 0 && spec.seed < 2 ** 32).toBe(true);
      seeds.add(spec.seed);
    }
    expect(seeds.size).toBeGreaterThan(1);
    expect(ok('a fox --seed 4294967295').spec.seed).toBe(4294967295);
    expect(ok('a fox --seed 0').spec.seed).toBe(0);
    const big = ok('a fox --seed 4294967296');
    expect(big.spec.seed).toBe(0);
    expect(big.notes).toContain('--seed 4294967296 → 0 (seeds here run from 0 to 4294967295)');
    expect(ok('a fox --seed 99999999999999999999').spec.seed).toBe(Number(99999999999999999999n % 4294967296n));
    const random = ok('a fox --seed -1');
    expect(random.notes[0]).toMatch(/^--seed -1 means random: using \d+$/);
  });

  it('moves words after a single-value flag into the prompt, with a note', () => {
    const r = ok('a fox --seed 42 in the snow');
    expect(r.spec).toMatchObject({ prompt: 'a fox in the snow', seed: 42 });
    expect(r.notes[0]).toMatch(/"in the snow" after a flag was added to the prompt/);
    const twice = ok('a fox --seed 1 --seed 2');
    expect(twice.spec.seed).toBe(2);
    expect(twice.notes).toContain('--seed was given more than once; the last one counts');
    const many = ok(`a fox ${'--seed 1 '.repeat(50)}--seed 3`);
    expect(many.spec.seed).toBe(3);
    expect(many.notes).toEqual(['--seed was given more than once; the last one counts']);
  });

  it('keeps odd unicode in prompts and drops control characters', () => {
    const prompt = 'שועל בשלג 雪の中の狐 Fuchs im Schnee 🦊‍🔥 e\u0301 zero\u200bwidth';
    expect(ok(`${prompt} --ar 1:1`).spec.prompt).toBe(prompt);
    expect(ok('a\u0000fox\u0007 in\u001b snow\nsecond line').spec.prompt).toBe('a fox  in  snow\nsecond line');
  });

  it('reads a copy-paste line written by the info command', () => {
    const line =
      'a fox, "quoted" words --no "" --seed 3141592653 --size 512x768 --steps 20 --cfg 7.5 --sampler "DPM++ 2M Karras" --model sd15 --n 1 --variation 77:0.15';
    const { spec, notes } = ok(line, { member: { negativePrompt: 'my default negative' } });
    expect(spec).toEqual({
      prompt: 'a fox, "quoted" words',
      negativePrompt: '',
      width: 512,
      height: 768,
      steps: 20,
      guidance: 7.5,
      sampler: 'DPM++ 2M Karras',
      seed: 3141592653,
      count: 1,
      model: 'sd15',
      variation: { seed: 77, strength: 0.15 },
    });
    expect(notes).toEqual([]);
  });
});

describe('parseJobRequest: pasted AUTOMATIC1111 info text', () => {
  it('round-trips the engine’s own info text', () => {
    const original = {
      prompt: 'a fox, in the snow: cinematic\nsecond line',
      negativePrompt: 'blurry, text',
      steps: 20,
      sampler: 'DPM++ 2M Karras',
      guidance: 7.5,
      seed: 1234567,
      width: 512,
      height: 768,
      model: 'sd21-768',
      variation: { seed: 42, strength: 0.25 },
    };
    const text = formatInfoText(original);
    const { spec, notes } = ok(text);
    expect(spec).toMatchObject({
      prompt: original.prompt,
      negativePrompt: original.negativePrompt,
      steps: 20,
      sampler: 'DPM++ 2M Karras',
      guidance: 7.5,
      seed: 1234567,
      width: 512,
      height: 768,
      model: 'sd21-768',
      variation: { seed: 42, strength: 0.25 },
    });
    expect(notes).toEqual(['read as pasted AUTOMATIC1111 parameters']);
  });

  it('reads a real A1111 paste: new-style sampler + schedule, quoted values, unknown keys noted', () => {
    const text = [
      'masterpiece, a red fox sitting in snow',
      'Negative prompt: lowres, bad anatomy',
      'Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3908214, Size: 512x640, ' +
        'Model hash: 6ce0161689, Model: SD15, Lora hashes: "fox: 1a2b, snow: 3c4d", Clip skip: 2, ' +
        'Hires upscale: 2, Version: v1.9.4',
    ].join('\n');
    const { spec, notes } = ok(text);
    expect(spec).toMatchObject({
      prompt: 'masterpiece, a red fox sitting in snow',
      negativePrompt: 'lowres, bad anatomy',
      steps: 28,
      sampler: 'DPM++ 2M Karras',
      guidance: 6.5,
      seed: 3908214,
      width: 512,
      height: 640,
      model: 'sd15',
    });
    expect(notes).toContain('ignored: Lora hashes, Clip skip, Hires upscale');
  });

  it('reads the same paste flattened onto one line (Discord slash options drop newlines)', () => {
    const text =
      'a red fox Negative prompt: lowres Steps: 28, Sampler: Euler a, CFG scale: 6, Seed: 5, Size: 768x512, Model: nope';
    const { spec, notes } = ok(text);
    expect(spec).toMatchObject({ prompt: 'a red fox', negativePrompt: 'lowres', steps: 28, seed: 5, width: 768, height: 512, sampler: 'Euler a' });
    // A model that is not installed falls back to the default, with a note (not a refusal).
    expect(spec.model).toBe('sd15');
    expect(notes).toContain('model nope is not installed here; using sd15');
  });

  it('falls back from an unavailable sampler with a note, and clamps like everything else', () => {
    const { spec, notes } = ok('a fox\nSteps: 150, Sampler: DPM++ SDE, CFG scale: 7, Seed: 1, Size: 4096x4096');
    expect(spec.sampler).toBe('Euler a');
    expect(spec.steps).toBe(50);
    expect(spec.width * spec.height).toBeLessThanOrEqual(1024 * 1024);
    expect(notes.some((n) => n.startsWith('sampler DPM++ SDE is not available here'))).toBe(true);
    expect(notes).toContain("steps 150 → 50, this club's maximum");
  });

  it('refuses a paste without a prompt or with broken numbers', () => {
    const noPrompt = /^That looks like AUTOMATIC1111 parameters without a prompt line\./;
    expect(refused('Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1')).toMatch(noPrompt);
    // Too short for a full info text, but still parameters, not something to draw.
    expect(refused('Steps: 20, Sampler: Euler a')).toMatch(noPrompt);
    expect(refused('Seed: 5')).toMatch(noPrompt);
    expect(refused('Negative prompt: lowres\nSteps: 20, Sampler: Euler a, CFG scale: 7')).toMatch(noPrompt);
    // Prose with colons is still a prompt.
    expect(ok('Mood: calm, light: soft').spec.prompt).toBe('Mood: calm, light: soft');
    expect(refused('a fox\nSteps: twenty, Sampler: Euler a, CFG scale: 7, Seed: 1')).toBe('Steps must be a whole number (got twenty).');
  });

  it('does not mistake prose with colons for parameters', () => {
    expect(parseInfoText('a sign reading: Steps: 3 to heaven')).toBeUndefined();
    expect(ok('a poster: bold, title: fox, style: retro').spec.prompt).toBe('a poster: bold, title: fox, style: retro');
  });
});

describe('parseJobRequest: refused', () => {
  it('refuses an empty prompt', () => {
    for (const text of ['', '   ', '--ar 3:2 --seed 1', '\u0000\u0001']) expect(refused(text)).toMatch(/^Tell me what to draw/);
    expect(refused(undefined)).toMatch(/^Tell me what to draw/);
    expect(refused(undefined, { options: { prompt: '' } })).toMatch(/^Tell me what to draw/);
  });

  it('refuses a prompt that is empty once invisible characters are removed', () => {
    const invisible = /^Your prompt has only invisible characters/;
    for (const text of ['\u200b', '\u200b\u200c\u200d', '\ufeff \u2060', '\ufe0f\ufe0e', '\u3164', '\u2800\u00ad', '\u200b --ar 3:2', '\u{e0101}']) {
      expect(refused(text), JSON.stringify(text)).toMatch(invisible);
    }
    expect(refused(undefined, { options: { prompt: '\u200b\u200b' } })).toMatch(invisible);
    // Joiners inside a visible emoji sequence are part of the prompt and stay.
    expect(ok('👩\u200d🚀 in orbit').spec.prompt).toBe('👩\u200d🚀 in orbit');
    expect(ok('❤\ufe0f').spec.prompt).toBe('❤\ufe0f');
  });

  it('reads numbers in exponent form, and clamps or names absurdly large ones precisely', () => {
    expect(ok('a fox --steps 2e1').spec.steps).toBe(20);
    expect(ok('a fox --n 4E0').spec.count).toBe(4);
    expect(ok('a fox --cfg 6.5e0').spec.guidance).toBe(6.5);
    expect(ok('a fox --seed 1.5e3').spec.seed).toBe(1500);
    const steps = ok('a fox --steps 99999999999999999999');
    expect(steps.spec.steps).toBe(50);
    expect(steps.notes).toContain("steps 99999999999999999999 → 50, this club's maximum");
    const exp = ok('a fox --steps 1e400');
    expect(exp.spec.steps).toBe(50);
    expect(exp.notes).toContain("steps 1e400 → 50, this club's maximum");
    const cfg = ok('a fox --cfg 1e400');
    expect(cfg.spec.guidance).toBe(config.limits.maxGuidance);
    expect(cfg.notes).toContain(`guidance 1e400 → ${config.limits.maxGuidance}, this club's maximum`);
    // A huge seed is reduced mod 2^32 like any other 64-bit seed: the same text, the same picture.
    const seed = ok('a fox --seed 1e400');
    expect(seed.spec.seed).toBe(Number(10n ** 400n % 2n ** 32n));
    expect(seed.notes.some((n) => n.startsWith('--seed 1e400 → '))).toBe(true);
    expect(refused('a fox --seed 1e5000')).toBe('--seed 1e5000 is far too large; seeds run from 0 to 4294967295.');
    expect(refused('a fox --seed 2.5e0')).toBe('--seed must be a whole number from 0 to 4294967295 (got 2.5e0, which is 2.5).');
    expect(refused('a fox --variation 5:1e400')).toBe('--variation strength must be between 0 and 1 (got 1e400).');
  });

  it('refuses unknown flags and lists the known ones', () => {
    expect(refused('a fox --foo 3')).toBe(
      'Unknown flag --foo; flags: --ar, --seed, --no, --steps, --cfg, --sampler, --n, --model, --size, --variation, --lora.',
    );
    expect(refused('a fox --chaos 50')).toMatch(/^Unknown flag --chaos;/);
    // Names that exist on every JavaScript object are not flags either.
    expect(refused('a fox --constructor 1')).toMatch(/^Unknown flag --constructor;/);
    expect(refused('a fox --sampler constructor')).toMatch(/^Unknown sampler "constructor"/);
    // Only a letter after -- makes a flag; anything else is prompt text.
    expect(ok('a fox --__proto__ 1').spec.prompt).toBe('a fox --__proto__ 1');
  });

  it('refuses a flag without a value', () => {
    expect(refused('a fox --seed')).toBe('The flag --seed needs a value, e.g. --seed 42.');
    expect(refused('a fox --ar --seed 3')).toBe('The flag --ar needs a value, e.g. --ar 3:2.');
    expect(refused('a fox --no')).toMatch(/^The flag --no needs a value/);
  });

  it('refuses numbers that are not numbers, or below their minimum', () => {
    expect(refused('a fox --steps ten')).toBe('--steps must be a whole number (got ten).');
    expect(refused('a fox --steps 2.5')).toBe('--steps must be a whole number (got 2.5).');
    expect(refused('a fox --steps 0')).toBe('--steps must be at least 1 (got 0).');
    expect(refused('a fox --steps -3')).toBe('--steps must be at least 1 (got -3).');
    expect(refused('a fox --n 0')).toBe('--n must be at least 1 (got 0).');
    expect(refused('a fox --cfg high')).toBe('--cfg must be a number (got high).');
    expect(refused('a fox --cfg -2')).toBe('--cfg cannot be negative (got -2).');
    expect(refused('a fox --steps 2e-1')).toBe('--steps must be a whole number (got 2e-1, which is 0.2).');
    expect(refused('a fox --seed 1.5')).toMatch(/^--seed must be a whole number from 0 to 4294967295/);
    expect(refused('a fox --seed -7')).toMatch(/^--seed must be a whole number from 0 to 4294967295/);
    expect(refused('a fox --seed 0x10')).toMatch(/^--seed must be a whole number/);
    expect(refused(undefined, { options: { prompt: 'a fox', steps: 'many' } })).toBe('steps must be a whole number (got many).');
    expect(refused(undefined, { options: { prompt: 'a fox', seed: true } })).toBe('The seed option needs a value, not true.');
  });

  it('refuses unknown samplers and models, listing the valid ones', () => {
    expect(refused('a fox --sampler unipc')).toBe('Unknown sampler "unipc"; samplers: Euler, Euler a, DPM++ 2M Karras, DDIM, Turbo.');
    expect(refused('a fox --model sdxl')).toBe('Unknown model "sdxl"; models: sd15, sd21-768, sd-turbo.');
    expect(refused('a fox --model sdxl', { models: [] })).toBe('Unknown model "sdxl"; models: none are installed.');
    expect(refused(undefined, { options: { prompt: 'a fox', model: 'x' } })).toMatch(/^Unknown model "x"/);
  });

  it('refuses bad aspect ratios with examples', () => {
    for (const ar of ['0:1', '1:0', 'a:b', '5:1', '1:5', '16-9', '16', ':', '-1:2', '5/1']) {
      const error = refused(`a fox --ar ${ar}`);
      expect(error, ar).toMatch(/^Aspect ".*" (is not a ratio|has a zero side|is too extreme); use W:H such as 1:1, 3:2, 2:3, 4:3, 16:9, 9:16/);
    }
    expect(refused(undefined, { options: { prompt: 'a fox', aspect: '100:1' } })).toMatch(/is too extreme/);
  });

  it('refuses malformed --size and --variation', () => {
    expect(refused('a fox --size big')).toBe('--size must look like 512x768 (got big).');
    expect(refused('a fox --size 0x512')).toMatch(/is not a picture size/);
    expect(refused('a fox --size 4096x256')).toMatch(/too extreme/);
    expect(refused('a fox --variation 5')).toMatch(/^--variation must look like SEED:STRENGTH/);
    expect(refused('a fox --variation 5:1.5')).toBe('--variation strength must be between 0 and 1 (got 1.5).');
  });

  it('never throws, and every accepted spec is within the limits', () => {
    let state = 12345;
    const rand = (): number => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state / 2 ** 32;
    };
    const pieces = [
      'a fox', ' ', '--ar', '--seed', '--no', '--steps', '--cfg', '--sampler', '--n', '--model', '--size', '--variation',
      '—ar', '–n', '--', '—', '3:2', '0:0', '16:9', '999999999999999999999', '-1', '-', '1.5', 'x', '512x768', ':', '"',
      '“', 'euler a', 'sd15', 'sd-turbo', 'Steps: 20,', 'Sampler: Euler,', 'Seed: 5,', 'Negative prompt:', '\n', '🦊',
      '\u0000', '\u202e', 'ﬁ', '４', '=', 'NaN', 'Infinity', '1e9', '__proto__', 'constructor',
    ];
    let accepted = 0;
    for (let n = 0; n < 3000; n++) {
      let text = '';
      for (let k = Math.floor(rand() * 12); k > 0; k--) text += pieces[Math.floor(rand() * pieces.length)] + (rand() < 0.7 ? ' ' : '');
      let r: ParseResult | undefined;
      expect(() => {
        r = parseJobRequest({ text }, { config, models: MODELS, member: {} });
      }, JSON.stringify(text)).not.toThrow();
      if (!r) continue;
      if (!r.ok) {
        expect(r.error.length).toBeGreaterThan(0);
        expect(r.error).not.toMatch(/\n\s+at /);
        continue;
      }
      accepted++;
      const s = r.spec;
      expect(s.prompt.length).toBeGreaterThan(0);
      expect(s.width % 64).toBe(0);
      expect(s.height % 64).toBe(0);
      expect(s.width * s.height).toBeLessThanOrEqual(config.limits.maxPixels);
      expect(Math.max(s.width, s.height)).toBeLessThanOrEqual(config.limits.maxSide);
      expect(s.steps >= 1 && s.steps <= config.limits.maxSteps).toBe(true);
      expect(s.count >= 1 && s.count <= config.limits.maxImagesPerJob).toBe(true);
      expect(s.guidance >= 0 && s.guidance <= config.limits.maxGuidance).toBe(true);
      expect(Number.isInteger(s.seed) && s.seed >= 0 && s.seed < 2 ** 32).toBe(true);
      expect(SAMPLERS).toContain(s.sampler);
      expect(MODELS.map((m) => m.name)).toContain(s.model);
    }
    expect(accepted).toBeGreaterThan(100);
  });
});

describe('parseJobRequest: LoRAs', () => {
  it('--lora becomes a tag at the end of the prompt; repeatable; name:te:unet keeps both weights', () => {
    const { spec, notes } = ok('a fox <lora:snow:0.5> --lora ink:0.8 --ar 3:2 --lora paper:1:0.6');
    expect(spec.prompt).toBe('a fox <lora:snow:0.5> <lora:ink:0.8> <lora:paper:1:0.6>');
    expect(notes.some((n) => /more than once/.test(n))).toBe(false);
    expect(ok('a fox --lora ink').spec.prompt).toBe('a fox <lora:ink:1>');
  });

  it('refuses unreadable flags and tags, other add-on tags, tags in the negative and a LoRA named twice', () => {
    expect(refused('a fox --lora ink:heavy')).toBe('--lora "ink:heavy" cannot be read: write --lora name:0.8 (or name:te:unet, e.g. name:1:0.6).');
    expect(refused('a fox --lora')).toBe('The flag --lora needs a value, e.g. --lora name:0.8.');
    expect(refused('a fox <hypernet:glow:1>')).toBe('<hypernet:glow:1> is not supported: only LoRAs can be added to a prompt, as <lora:name:weight>.');
    expect(refused('a fox <lora:ink:lots>')).toBe('<lora:ink:lots> cannot be read: write <lora:name:weight>, e.g. <lora:name:0.8>.');
    expect(refused('a fox --no blurry <lora:ink:1>')).toBe(
      '<lora:ink:1> is in the negative prompt; a LoRA changes the whole model, so put its tag in the prompt.',
    );
    expect(refused('a fox <lora:Ink:0.5> --lora ink:1')).toBe('LoRA "ink" is asked for twice; name it once with the weight you want.');
    expect(refused('a fox --lora ink:40')).toBe('LoRA "ink" weight 40 is not allowed: use a number from -10 to 10.');
  });

  it('a pasted info text keeps its tags; Lora hashes are noted only when no tag names a LoRA', () => {
    const tagged = formatInfoText({
      prompt: 'a fox <lora:ink:0.7>',
      negativePrompt: '',
      steps: 20,
      sampler: 'Euler a',
      guidance: 7,
      seed: 5,
      width: 512,
      height: 512,
      model: 'sd15',
      loraHashes: { ink: '0123456789ab' },
    });
    const read = ok(tagged);
    expect(read.spec.prompt).toBe('a fox <lora:ink:0.7>');
    expect(read.notes).toEqual(['read as pasted AUTOMATIC1111 parameters']);
  });
});

describe('LoRAs and embeddings survive the info text and the ℹ️ command', () => {
  it('the engine info text and the copy-paste command both redraw the same job, LoRA weights included', () => {
    const { spec } = ok('a fox <lora:ink:0.7> in sparkle snow --lora paper:1:0.5 --no blurry, EasyNegative --seed 5 --steps 20 --cfg 6 --size 512x768 --model sd15 --n 1');
    const loras = collectLoras(spec.prompt, spec.negativePrompt);
    expect(loras).toEqual([
      { name: 'ink', textEncoderWeight: 0.7, unetWeight: 0.7 },
      { name: 'paper', textEncoderWeight: 1, unetWeight: 0.5 },
    ]);
    const info = formatInfoText({
      prompt: spec.prompt,
      negativePrompt: spec.negativePrompt,
      steps: spec.steps,
      sampler: spec.sampler,
      guidance: spec.guidance,
      seed: spec.seed,
      width: spec.width,
      height: spec.height,
      model: spec.model,
      modelSha256: 'ab'.repeat(32),
      loraHashes: { ink: '0123456789ab', paper: 'ba9876543210' },
      tiHashes: { sparkle: 'fedcba987654', EasyNegative: '0a1b2c3d4e5f' },
    });
    const fromInfo = ok(info).spec;
    expect(fromInfo).toEqual({ ...spec, count: fromInfo.count });
    const command = reproduceCommand(spec, 'telegram').replace(/^\/imagine /, '');
    expect(ok(command).spec).toEqual(spec);
    expect(collectLoras(ok(command).spec.prompt, '')).toEqual(loras);
  });

  it('LoRAs given to the engine as a list appear as tags in the info text prompt', () => {
    const base = { model: 'm', negativePrompt: '', width: 64, height: 64, steps: 1, guidance: 1, sampler: 'Euler' as const, seed: 1, count: 1 };
    const got = jobLoras({ ...base, prompt: 'a fox <lora:ink:0.5>', loras: [{ name: 'paper', textEncoderWeight: 1, unetWeight: 0.25 }] });
    expect(got.infoPrompt).toBe('a fox <lora:ink:0.5> <lora:paper:1:0.25>');
    expect(got.request.loras?.map((l) => l.name)).toEqual(['ink', 'paper']);
    expect(jobLoras({ ...base, prompt: 'a fox' }).request).not.toHaveProperty('loras');
  });
});
