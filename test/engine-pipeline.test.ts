// The diffusion pipeline, in-process, on tiny fixture models in every export generation.
// The oracle UNet knows the clean latent x0*(c), so every correct sampler must land on it: a
// wrong sigma, timestep, input scaling, guidance formula or VAE scaling moves the result.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInfoText } from '../engine/infotext.js';
import { modelOutputToRgb, Pipeline } from '../engine/pipeline.js';
import { TorchCpuGenerator } from '../engine/rng.js';
import { createSampler, parseSchedulerConfig } from '../engine/schedulers.js';
import { ClipTokenizer } from '../engine/tokenizer.js';
import { EngineError, type GenerateRequest, type SamplerName, type StepProgress } from '../engine/types.js';
import {
  conditioningMeans,
  describeTinyModel,
  oracleTarget,
  tinyTextHidden,
  tinyVaeDecode,
  writeTinyModel,
  type TinyModelOptions,
} from './fixtures/tiny-models.js';

const SCALING = 0.18215;
const SIDE = 64; // tiny fixtures: 8×8 latents
const LATENT = SIDE / 8;

const MODELS: Record<string, TinyModelOptions> = {
  legacy: { generation: 'diffusers-legacy', unet: 'oracle', vaeEncoder: true },
  old: { generation: 'optimum-old', unet: 'oracle', vaeEncoder: true },
  new: { generation: 'optimum-new', unet: 'oracle', vaeEncoder: true },
  half: { generation: 'optimum-new', unet: 'oracle', dtype: 'float16', vaeEncoder: true },
  vpred: { generation: 'optimum-new', unet: 'oracle', prediction: 'v_prediction', family: 'sd2' },
  smooth: { generation: 'optimum-old', unet: 'smooth' },
  noenc: { generation: 'optimum-new', unet: 'oracle', vaeEncoder: false },
};

let root: string;
let pipeline: Pipeline;
const tokenizers = new Map<string, ClipTokenizer>();

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'engine-pipeline-'));
  for (const [name, opts] of Object.entries(MODELS)) await writeTinyModel(path.join(root, name), opts);
  pipeline = new Pipeline({ modelsDir: root, providers: ['cpu'], threads: 1 });
});

afterAll(async () => {
  await pipeline?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

function request(overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    model: 'new',
    prompt: 'a photo of a cat',
    negativePrompt: '',
    width: SIDE,
    height: SIDE,
    steps: 8,
    guidance: 1,
    sampler: 'Euler',
    seed: 1234,
    count: 1,
    ...overrides,
  };
}

/** m(c) for a prompt as the tiny text encoder computes it (mean of its hidden states). */
async function promptMean(model: string, text: string): Promise<number> {
  let tok = tokenizers.get(model);
  if (!tok) {
    tok = await ClipTokenizer.load(path.join(root, model, 'tokenizer'));
    tokenizers.set(model, tok);
  }
  const hiddenDim = describeTinyModel(MODELS[model]!).hiddenDim;
  return conditioningMeans(tinyTextHidden(tok.encode(text).ids, hiddenDim), 1)[0]!;
}

/** The x0 that guided sampling must reach: x0*(u) + g·(x0*(c) − x0*(u)), affine in m. */
async function guidedTarget(req: GenerateRequest): Promise<Float32Array> {
  const mc = await promptMean(req.model, req.prompt);
  const useCfg = req.guidance > 1 && req.sampler !== 'Turbo';
  const m = useCfg ? (await promptMean(req.model, req.negativePrompt)) * (1 - req.guidance) + req.guidance * mc : mc;
  return oracleTarget(LATENT, LATENT, m);
}

async function finalLatents(req: GenerateRequest): Promise<{ latents: Float32Array[]; rgb: Uint8Array[] }> {
  const latents: Float32Array[] = [];
  const result = await pipeline.generate(req, {
    onLatents: (x, _first, k) => {
      const per = x.length / k;
      for (let j = 0; j < k; j++) latents.push(x.slice(j * per, (j + 1) * per));
    },
  });
  return { latents, rgb: result.images.map((i) => i.rgb) };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/**
 * Where the oracle run must end for a sampler. Euler-family and DPM samplers end at σ = 0, i.e.
 * exactly on x0. DDIM (set_alpha_to_one false) ends at ᾱ_final < 1: for an oracle its ε stays the
 * first step's ε, so x_final = √ᾱ_f·x0 + √(1−ᾱ_f)·ε_T.
 */
function expectedEnd(sampler: SamplerName, model: string, steps: number, x0: Float32Array, seed: number): Float32Array {
  if (sampler !== 'DDIM') return x0;
  const desc = describeTinyModel(MODELS[model]!);
  const s = createSampler('DDIM', parseSchedulerConfig(desc.schedulerConfig), steps);
  const sigmaT = s.sigmas[0]!;
  const sigmaF = s.sigmas[s.sigmas.length - 1]!;
  const aT = 1 / (1 + sigmaT * sigmaT);
  const aF = 1 / (1 + sigmaF * sigmaF);
  const z = new TorchCpuGenerator(seed).randn(x0.length);
  const out = new Float32Array(x0.length);
  for (let i = 0; i < out.length; i++) {
    const epsT = (z[i]! - Math.sqrt(aT) * x0[i]!) / Math.sqrt(1 - aT);
    out[i] = Math.sqrt(aF) * x0[i]! + Math.sqrt(1 - aF) * epsT;
  }
  return out;
}

/** The image the tiny VAE decoder makes of a latent, as bytes. */
function expectedImage(latent: Float32Array): Uint8Array {
  const scaled = latent.map((v) => v / SCALING);
  return modelOutputToRgb(tinyVaeDecode(scaled, 1, LATENT, LATENT), 0, SIDE, SIDE);
}

const SAMPLER_NAMES: SamplerName[] = ['Euler', 'Euler a', 'DPM++ 2M Karras', 'DDIM', 'Turbo'];

describe('oracle: every sampler lands on x0*', () => {
  for (const model of ['legacy', 'old', 'new'] as const) {
    for (const sampler of SAMPLER_NAMES) {
      it(`${model} · ${sampler}`, async () => {
        const steps = sampler === 'Turbo' ? 4 : 12;
        const req = request({ model, sampler, steps, seed: 77 });
        const x0 = await guidedTarget(req);
        const { latents, rgb } = await finalLatents(req);
        const end = expectedEnd(sampler, model, steps, x0, 77);
        expect(maxAbsDiff(latents[0]!, end)).toBeLessThan(2e-4);
        // And through the VAE: the picture is the decoder's image of x0* (±1 for rounding).
        expect(maxAbsDiff(rgb[0]!, expectedImage(end))).toBeLessThanOrEqual(1);
      });
    }
  }

  it('float16 model (fp16 IO and weights) lands on x0* within half precision', async () => {
    for (const sampler of ['Euler', 'DPM++ 2M Karras'] as const) {
      const req = request({ model: 'half', sampler, steps: 10 });
      const { latents } = await finalLatents(req);
      expect(maxAbsDiff(latents[0]!, await guidedTarget(req))).toBeLessThan(2e-2);
    }
  });

  it('v_prediction model lands on x0* with Euler, DPM++ 2M Karras and DDIM', async () => {
    for (const sampler of ['Euler', 'Euler a', 'DPM++ 2M Karras', 'DDIM'] as const) {
      const req = request({ model: 'vpred', sampler, steps: 10, seed: 5 });
      const x0 = await guidedTarget(req);
      const { latents } = await finalLatents(req);
      expect(maxAbsDiff(latents[0]!, expectedEnd(sampler, 'vpred', 10, x0, 5))).toBeLessThan(2e-4);
    }
  });

  it('classifier-free guidance g lands on x0*(u) + g·(x0*(c) − x0*(u)), negative prompt as u', async () => {
    const req = request({ prompt: 'a red fox in the snow', negativePrompt: 'blurry dog', guidance: 4, sampler: 'Euler' });
    const mu = await promptMean('new', req.negativePrompt);
    const mc = await promptMean('new', req.prompt);
    expect(Math.abs(mc - mu)).toBeGreaterThan(1e-3); // the two texts really condition differently
    const { latents } = await finalLatents(req);
    expect(maxAbsDiff(latents[0]!, await guidedTarget(req))).toBeLessThan(2e-4);
    // Guidance really mattered: the unguided target is far away.
    expect(maxAbsDiff(latents[0]!, oracleTarget(LATENT, LATENT, mc))).toBeGreaterThan(1e-2);
  });

  it('Turbo turns guidance off even when a scale is given, and its info text says so', async () => {
    const req = request({ sampler: 'Turbo', steps: 1, guidance: 7, negativePrompt: 'blurry dog' });
    const { latents } = await finalLatents(req);
    expect(maxAbsDiff(latents[0]!, oracleTarget(LATENT, LATENT, await promptMean('new', req.prompt)))).toBeLessThan(2e-4);
    const result = await pipeline.generate(req);
    expect(result.images[0]!.infoText).toContain('CFG scale: 1,');
  });
});

describe('seeds', () => {
  const base = request({ model: 'smooth', sampler: 'Euler a', steps: 5, guidance: 3, negativePrompt: 'blurry' });

  it('same seed and settings give byte-identical images, also from a new Pipeline', async () => {
    const a = await pipeline.generate(base);
    const b = await pipeline.generate(base);
    const fresh = new Pipeline({ modelsDir: root, providers: ['cpu'], threads: 1 });
    try {
      const c = await fresh.generate(base);
      expect(Buffer.from(b.images[0]!.rgb).equals(Buffer.from(a.images[0]!.rgb))).toBe(true);
      expect(Buffer.from(c.images[0]!.rgb).equals(Buffer.from(a.images[0]!.rgb))).toBe(true);
    } finally {
      await fresh.close();
    }
  });

  it('image i uses seed + i (mod 2^32), and its seed is returned', async () => {
    const batch = await pipeline.generate({ ...base, seed: 4294967294, count: 3 });
    expect(batch.images.map((i) => i.seed)).toEqual([4294967294, 4294967295, 0]);
    const alone = await pipeline.generate({ ...base, seed: 0, count: 1 });
    expect(Buffer.from(batch.images[2]!.rgb).equals(Buffer.from(alone.images[0]!.rgb))).toBe(true);
    expect(Buffer.from(batch.images[0]!.rgb).equals(Buffer.from(batch.images[1]!.rgb))).toBe(false);
    expect(parseInfoText(batch.images[1]!.infoText)?.params['Seed']).toBe('4294967295');
  });

  it('batched UNet calls give the same pictures as one-by-one', async () => {
    const batched = new Pipeline({ modelsDir: root, providers: ['cpu'], threads: 1, imagesPerBatch: 3 });
    try {
      const a = await batched.generate({ ...base, count: 3 });
      const b = await pipeline.generate({ ...base, count: 3 });
      for (let i = 0; i < 3; i++) expect(maxAbsDiff(a.images[i]!.rgb, b.images[i]!.rgb)).toBe(0);
    } finally {
      await batched.close();
    }
  });

  it('different seeds give different pictures', async () => {
    const a = await pipeline.generate({ ...base, seed: 1 });
    const b = await pipeline.generate({ ...base, seed: 2 });
    expect(Buffer.from(a.images[0]!.rgb).equals(Buffer.from(b.images[0]!.rgb))).toBe(false);
  });

  it('variation: strength 0 is the plain seed; otherwise every picture keeps the seed and orbits it', async () => {
    const plain = await pipeline.generate({ ...base, count: 2 });
    const zero = await pipeline.generate({ ...base, count: 2, variation: { seed: 999, strength: 0 } });
    for (let i = 0; i < 2; i++) expect(Buffer.from(zero.images[i]!.rgb).equals(Buffer.from(plain.images[i]!.rgb))).toBe(true);

    const varied = await pipeline.generate({ ...base, count: 2, variation: { seed: 999, strength: 0.3 } });
    expect(varied.images.map((i) => i.seed)).toEqual([base.seed, base.seed]);
    const info = varied.images.map((i) => parseInfoText(i.infoText)?.params);
    expect(info.map((p) => p?.['Variation seed'])).toEqual(['999', '1000']);
    expect(info[0]?.['Variation seed strength']).toBe('0.3');
    // Close to the chosen picture (image 0 of the plain run), but not equal, and different from each other.
    const d0 = maxAbsDiff(varied.images[0]!.rgb, plain.images[0]!.rgb);
    expect(d0).toBeGreaterThan(0);
    expect(Buffer.from(varied.images[0]!.rgb).equals(Buffer.from(varied.images[1]!.rgb))).toBe(false);
    const full = await pipeline.generate({ ...base, variation: { seed: 999, strength: 1 } });
    const other = await pipeline.generate({ ...base, seed: 999 });
    // Strength 1 starts from the variation seed's noise; ancestral noise still comes from the main seed.
    expect(Buffer.from(full.images[0]!.rgb).equals(Buffer.from(other.images[0]!.rgb))).toBe(false);
  });
});

describe('img2img', () => {
  const init = (() => {
    const rgb = new Uint8Array(SIDE * SIDE * 3);
    for (let p = 0; p < SIDE * SIDE; p++) {
      rgb[3 * p] = (p * 7) % 256;
      rgb[3 * p + 1] = 128;
      rgb[3 * p + 2] = 255 - ((p * 3) % 256);
    }
    return rgb;
  })();

  it('runs floor(steps·strength) steps and still lands on x0* with the oracle', async () => {
    for (const model of ['new', 'legacy'] as const) {
      const steps: number[] = [];
      const req = request({ model, steps: 20, init: { rgb: init, width: SIDE, height: SIDE, strength: 0.75 } });
      const latents: Float32Array[] = [];
      const result = await pipeline.generate(req, {
        onStep: (p) => steps.push(p.step),
        onLatents: (x) => latents.push(x.slice()),
      });
      expect(result.timing.stepsRun).toBe(15);
      expect(steps).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
      expect(maxAbsDiff(latents[0]!, await guidedTarget(req))).toBeLessThan(2e-4);
      expect(parseInfoText(result.images[0]!.infoText)?.params['Denoising strength']).toBe('0.75');
    }
  });

  it('the init picture matters, and the same init gives the same picture', async () => {
    const other = init.map((v) => 255 - v);
    const run = (rgb: Uint8Array) =>
      pipeline.generate(request({ model: 'smooth', steps: 10, init: { rgb, width: SIDE, height: SIDE, strength: 0.3 } }));
    const a = await run(init);
    const b = await run(init);
    const c = await run(other);
    expect(Buffer.from(a.images[0]!.rgb).equals(Buffer.from(b.images[0]!.rgb))).toBe(true);
    expect(maxAbsDiff(a.images[0]!.rgb, c.images[0]!.rgb)).toBeGreaterThan(10);
  });

  it('a model without vae_encoder/ refuses with a clear message', async () => {
    const err = await pipeline
      .generate(request({ model: 'noenc', init: { rgb: init, width: SIDE, height: SIDE, strength: 0.5 } }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('model');
    expect((err as EngineError).message).toMatch(/no vae_encoder/);
  });
});

describe('progress, previews and cancellation', () => {
  it('reports every step, with small previews every few steps when asked', async () => {
    const events: StepProgress[] = [];
    const result = await pipeline.generate(request({ steps: 9, count: 5, previews: true }), { onStep: (p) => events.push(p) });
    expect(events.map((e) => e.step)).toEqual(Array.from({ length: 18 }, (_, i) => i + 1));
    expect(events.every((e) => e.total === 18)).toBe(true);
    // Small pictures on CPU: 4 share a UNet call, the fifth runs after them; each batch counts
    // the job's own 9 steps.
    const nine = Array.from({ length: 9 }, (_, i) => i + 1);
    expect(events.map((e) => e.batch)).toEqual([
      ...nine.map((step) => ({ step, steps: 9, first: 0, size: 4, count: 5 })),
      ...nine.map((step) => ({ step, steps: 9, first: 4, size: 1, count: 5 })),
    ]);
    const withPreview = events.filter((e) => e.preview);
    expect(withPreview.length).toBeGreaterThan(0);
    expect(withPreview.length).toBeLessThanOrEqual(6);
    for (const e of withPreview) {
      expect(e.preview!.width).toBe(LATENT);
      expect(e.preview!.rgb.length).toBe(LATENT * LATENT * 3);
    }
    expect(result.timing.stepsRun).toBe(9);
    expect(result.timing.denoiseMs).toBeGreaterThan(0);
  });

  it('no previews unless asked', async () => {
    const events: { preview?: unknown }[] = [];
    await pipeline.generate(request({ steps: 9 }), { onStep: (p) => events.push(p) });
    expect(events.some((e) => e.preview)).toBe(false);
  });

  it('cancels between steps', async () => {
    const controller = new AbortController();
    const seen: number[] = [];
    const err = await pipeline
      .generate(request({ steps: 10 }), {
        signal: controller.signal,
        onStep: (p) => {
          seen.push(p.step);
          if (p.step === 3) controller.abort();
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('cancelled');
    expect(seen).toEqual([1, 2, 3]);
    // The pipeline is still usable afterwards.
    const after = await pipeline.generate(request({ steps: 2 }));
    expect(after.images).toHaveLength(1);
  });
});

describe('bad requests', () => {
  const bad = async (overrides: Partial<GenerateRequest>): Promise<EngineError> => {
    const err = await pipeline.generate(request(overrides)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    return err as EngineError;
  };

  it('unknown model lists the valid ones', async () => {
    const err = await bad({ model: 'nope' });
    expect(err.code).toBe('bad_request');
    expect(err.message).toMatch(/unknown model "nope"/);
    expect(err.message).toMatch(/legacy/);
    expect(err.message).toMatch(/smooth/);
  });

  it('sizes, steps, counts, seeds, samplers and init mismatches name the field', async () => {
    const cases: [Partial<GenerateRequest>, RegExp][] = [
      [{ width: 100 }, /width 100 .*multiple of 64/],
      [{ height: 0 }, /height 0/],
      [{ steps: 0 }, /steps 0/],
      [{ steps: 2.5 }, /steps 2.5/],
      [{ count: 0 }, /count 0/],
      [{ seed: -1 }, /seed -1/],
      [{ seed: 2 ** 32 }, /seed 4294967296/],
      [{ guidance: Number.NaN }, /guidance NaN/],
      [{ sampler: 'PLMS' as SamplerName }, /unknown sampler "PLMS"; available: Euler/],
      [{ variation: { seed: 1, strength: 2 } }, /variation strength 2/],
      [{ init: { rgb: new Uint8Array(10), width: 64, height: 64, strength: 0.5 } }, /packed RGB/],
      [{ init: { rgb: new Uint8Array(128 * 64 * 3), width: 128, height: 64, strength: 0.5 } }, /128x64 but 64x64/],
      [{ init: { rgb: new Uint8Array(64 * 64 * 3), width: 64, height: 64, strength: 0 } }, /strength 0/],
    ];
    for (const [overrides, pattern] of cases) {
      const err = await bad(overrides);
      expect(err.code, JSON.stringify(overrides)).toBe('bad_request');
      expect(err.message).toMatch(pattern);
    }
  });

  it('a prompt over 75 tokens is read whole; only words beyond the chunk limit are cut and reported', async () => {
    const words = (n: number) => Array.from({ length: n }, (_, i) => `word${i}`).join(' ');
    const long = await pipeline.generate(request({ prompt: words(90), steps: 1 }));
    expect(long.truncation).toEqual({});
    const limited = new Pipeline({ modelsDir: root, providers: ['cpu'], threads: 1, maxPromptChunks: 2 });
    try {
      const cut = await limited.generate(request({ prompt: words(200), steps: 1 }));
      expect(cut.truncation.negativePrompt).toBeUndefined();
      expect(cut.truncation.prompt?.tokenLimit).toBe(150);
      // The report starts at the first word whose tokens do not all fit in 150 ("word53" is three).
      const tok = await ClipTokenizer.load(path.join(root, 'new', 'tokenizer'));
      let firstCut = 0;
      while (tok.tokenize(words(firstCut + 1)).length <= 150) firstCut++;
      expect(firstCut).toBeGreaterThan(40);
      expect(cut.truncation.prompt?.dropped).toBe(words(200).slice(words(firstCut).length + 1));
    } finally {
      await limited.close();
    }
  });
});
