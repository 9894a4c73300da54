import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guideFloats } from '../engine/guidance.js';
import { loadModel, type LoadedModel } from '../engine/model.js';
import { providerOrder, resetProviderStateForTests } from '../engine/providers.js';
import { inspectModelFolder, scanModels } from '../engine/registry.js';
import { EngineError, type ExportGeneration, type ModelInfo } from '../engine/types.js';
import {
  VAE_ENCODER_LOGVAR,
  conditioningMeans,
  describeTinyModel,
  oracleUnetReference,
  tinyTextHidden,
  tinyVaeDecode,
  tinyVaeEncodeMean,
  writeTinyModel,
} from './fixtures/tiny-models.js';

const GENERATIONS: ExportGeneration[] = ['diffusers-legacy', 'optimum-old', 'optimum-new'];
const DTYPES = ['float32', 'float16'] as const;
const H = 4;
const W = 6; // non-square, so a swapped height/width would show
const SF = 0.18215;

let root: string;
const models = new Map<string, LoadedModel>();
const sigmas = describeTinyModel({ generation: 'optimum-new' }).sigmas;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function latent(batch: number, phase = 0): Float32Array {
  return Float32Array.from({ length: batch * 4 * H * W }, (_, i) => Math.sin(i * 0.37 + phase) * 1.5);
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'engine-model-'));
  const modelsDir = path.join(root, 'models');
  for (const generation of GENERATIONS) {
    for (const dtype of DTYPES) await writeTinyModel(path.join(modelsDir, `${generation}-${dtype}`), { generation, dtype });
  }
  const scan = await scanModels(modelsDir);
  expect(scan.problems).toEqual([]);
  for (const info of scan.models) models.set(info.name, await loadModel(info, { providers: ['cpu'], threads: 1 }));
});

afterAll(async () => {
  for (const m of models.values()) await m.release();
  await rm(root, { recursive: true, force: true });
});

function get(generation: ExportGeneration, dtype: 'float32' | 'float16'): LoadedModel {
  const m = models.get(`${generation}-${dtype}`);
  if (!m) throw new Error('model not loaded');
  return m;
}

describe('loadModel: what a loaded model knows', () => {
  it('tokenizer, scheduler config, scaling factor, conditioning width and provider', () => {
    for (const m of models.values()) {
      expect(m.provider).toBe('cpu');
      expect(m.hiddenDim).toBe(768);
      expect(m.vaeScalingFactor).toBeCloseTo(SF, 6);
      expect(m.scheduler.predictionType).toBe('epsilon');
      expect(m.tokenizer.encode('a cat').ids).toHaveLength(77);
      expect(typeof m.vaeEncode).toBe('function');
    }
  });
});

describe.each(DTYPES)('every export generation agrees (%s)', (dtype) => {
  const tol = dtype === 'float32' ? 1e-5 : 2e-2;

  it('encodeText feeds int32 or int64 ids and returns [B,77,D] float32 matching the reference', async () => {
    const ref = get('diffusers-legacy', 'float32');
    const ids = [ref.tokenizer.encode('').ids, ref.tokenizer.encode('a photo of a cat').ids];
    const want = new Float32Array(2 * 77 * 768);
    want.set(tinyTextHidden(ids[0]!, 768), 0);
    want.set(tinyTextHidden(ids[1]!, 768), 77 * 768);
    for (const gen of GENERATIONS) {
      const got = await get(gen, dtype).encodeText(ids);
      expect(got).toBeInstanceOf(Float32Array);
      expect(maxAbsDiff(got, want)).toBeLessThan(dtype === 'float32' ? 1e-4 : 4e-3);
    }
  });

  it('unet at an integer timestep equals the oracle formula, for batch 2 with different conditioning', async () => {
    const base = get('diffusers-legacy', 'float32');
    const cond = await base.encodeText([base.tokenizer.encode('').ids, base.tokenizer.encode('a fox in the snow').ids]);
    const means = conditioningMeans(cond, 2);
    expect(Math.abs(means[0]! - means[1]!)).toBeGreaterThan(1e-3); // CFG would be invisible otherwise
    const sample = latent(2);
    const want = oracleUnetReference({ sample, latentH: H, latentW: W, timestep: 500, means, sigmas, prediction: 'epsilon' });
    for (const gen of GENERATIONS) {
      const got = await get(gen, dtype).unet(sample, 2, H, W, 500, cond);
      expect(maxAbsDiff(got, want)).toBeLessThan(dtype === 'float32' ? 1e-4 : tol * 2);
    }
  });

  it('unet with guidance and input scaling runs [x·s, x·s] at batch 2 and returns exactly the guided combination of that run', async () => {
    const base = get('diffusers-legacy', 'float32');
    const cond = await base.encodeText([base.tokenizer.encode('').ids, base.tokenizer.encode('a fox in the snow').ids]);
    const one = latent(1, 3);
    const scale = 0.3;
    const both = new Float32Array(2 * one.length);
    both.set(one.map((v) => v * scale));
    both.set(one.map((v) => v * scale), one.length);
    for (const gen of GENERATIONS) {
      const m = get(gen, dtype);
      // Copied: a float16 export reuses its output buffer on the next call.
      const plain = (await m.unet(both, 2, H, W, 500, cond)).slice();
      const want = new Float32Array(one.length);
      guideFloats(plain, 7.5, want);
      const into = new Float32Array(one.length);
      const got = await m.unet(one, 1, H, W, 500, cond, { guidance: { scale: 7.5, into }, sampleScale: scale });
      expect(got).toBe(into);
      expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
      // The two halves really differ (else the guidance would be invisible).
      expect(maxAbsDiff(got, plain.subarray(one.length))).toBeGreaterThan(1e-3);
    }
  });

  it('unet input scaling equals scaling the sample first, bit for bit', async () => {
    const base = get('diffusers-legacy', 'float32');
    const cond = await base.encodeText([base.tokenizer.encode('a cat').ids]);
    const x = latent(1, 4);
    for (const gen of GENERATIONS) {
      const m = get(gen, dtype);
      const want = (await m.unet(x.map((v) => v * 0.7), 1, H, W, 700, cond)).slice();
      const got = (await m.unet(x, 1, H, W, 700, cond, { sampleScale: 0.7 })).slice();
      expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
      expect(maxAbsDiff(got, await m.unet(x, 1, H, W, 700, cond))).toBeGreaterThan(1e-3);
    }
  });

  it('unet timesteps: float exports interpolate fractional t, int64 exports truncate it (numpy astype)', async () => {
    const base = get('diffusers-legacy', 'float32');
    const cond = await base.encodeText([base.tokenizer.encode('a cat').ids]);
    const means = conditioningMeans(cond, 1);
    const sample = latent(1, 1);
    const t = 893.84; // an Euler linspace timestep whose rounding and truncation differ
    const ref = (timestep: number): Float32Array =>
      oracleUnetReference({ sample, latentH: H, latentW: W, timestep, means, sigmas, prediction: 'epsilon' });
    // fp16 timesteps are quantized by the export itself (893.84 → 894, half-precision steps of 0.5).
    const floatT = dtype === 'float16' ? 894 : t;
    expect(maxAbsDiff(await get('diffusers-legacy', dtype).unet(sample, 1, H, W, t, cond), ref(floatT))).toBeLessThan(tol);
    expect(maxAbsDiff(await get('optimum-new', dtype).unet(sample, 1, H, W, t, cond), ref(floatT))).toBeLessThan(tol);
    const truncated = await get('optimum-old', dtype).unet(sample, 1, H, W, t, cond);
    expect(maxAbsDiff(truncated, ref(893))).toBeLessThan(tol);
    if (dtype === 'float32') expect(maxAbsDiff(truncated, ref(t))).toBeGreaterThan(1e-3);
  });

  it('vaeDecode divides by the scaling factor and returns [B,3,8h,8w]', async () => {
    const x = latent(2, 2);
    const want = tinyVaeDecode(x.map((v) => v / SF), 2, H, W);
    for (const gen of GENERATIONS) {
      const got = await get(gen, dtype).vaeDecode(x, 2, H, W);
      expect(got.length).toBe(2 * 3 * 8 * H * 8 * W);
      expect(maxAbsDiff(got, want)).toBeLessThan(dtype === 'float32' ? 1e-5 : 4e-3);
    }
  });

  it('vaeEncode returns scaled latents; latent_parameters are sampled with the given noise', async () => {
    const image = tinyVaeDecode(latent(1, 3).map((v) => v / SF), 1, H, W); // in about [-1, 1]
    const mean = tinyVaeEncodeMean(image, 1, 8 * H, 8 * W);
    const ones = (): Float32Array => new Float32Array(4 * H * W).fill(1);
    for (const gen of GENERATIONS) {
      let draws = 0;
      const got = await get(gen, dtype).vaeEncode!(image, 1, 8 * H, 8 * W, () => {
        draws++;
        return ones();
      });
      const std = gen === 'optimum-new' ? Math.exp(0.5 * VAE_ENCODER_LOGVAR) : 0;
      const want = mean.map((v) => (v + std) * SF);
      expect(draws).toBe(gen === 'optimum-new' ? 1 : 0);
      expect(maxAbsDiff(got, want)).toBeLessThan(dtype === 'float32' ? 1e-5 : 5e-3);
    }
  });
});

describe('v_prediction oracle', () => {
  it('returns v = √ᾱ·ε − √(1−ᾱ)·x0*', async () => {
    const dir = await writeTinyModel(path.join(root, 'v', 'sd2v'), { generation: 'optimum-new', family: 'sd2', prediction: 'v_prediction' });
    const info = (await inspectModelFolder(dir)) as ModelInfo;
    expect(info.predictionType).toBe('v_prediction');
    const m = await loadModel(info, { providers: ['cpu'] });
    try {
      expect(m.hiddenDim).toBe(1024);
      expect(m.tokenizer.padId).toBe(0);
      const cond = await m.encodeText([m.tokenizer.encode('a red dog').ids]);
      const sample = latent(1, 4);
      const want = oracleUnetReference({
        sample, latentH: H, latentW: W, timestep: 250, means: conditioningMeans(cond, 1), sigmas, prediction: 'v_prediction',
      });
      expect(maxAbsDiff(await m.unet(sample, 1, H, W, 250, cond), want)).toBeLessThan(1e-4);
    } finally {
      await m.release();
    }
  });
});

describe('providers', () => {
  it('keeps CPU as the last resort in the configured order', () => {
    expect(providerOrder(['cuda', 'webgpu'])).toEqual(['cuda', 'webgpu', 'cpu']);
    expect(providerOrder(['cpu', 'cuda'])).toEqual(['cpu', 'cuda']);
  });

  it('falls back from an unavailable GPU provider with one warning that says how to install it', async () => {
    resetProviderStateForTests();
    const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
    const log = { info: () => {}, warn: (obj: Record<string, unknown>, msg: string) => warnings.push({ obj, msg }) };
    const info = get('optimum-new', 'float32').info;
    const first = await loadModel(info, { providers: ['cuda', 'cpu'], log });
    const second = await loadModel(info, { providers: ['cuda', 'cpu'], log });
    try {
      if (first.provider === 'cuda') {
        // A machine with a working CUDA provider: nothing to warn about.
        expect(warnings).toEqual([]);
      } else {
        expect(first.provider).toBe('cpu');
        expect(second.provider).toBe('cpu');
        expect(warnings).toHaveLength(1); // once per provider per process, not per part or per load
        expect(warnings[0]!.obj['provider']).toBe('cuda');
        expect(warnings[0]!.msg).toMatch(/cuda execution provider is unavailable, falling back to cpu/);
        expect(warnings[0]!.msg).toMatch(/cuDNN 9/);
        expect(warnings[0]!.msg).toMatch(/npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12/);
      }
    } finally {
      await first.release();
      await second.release();
    }
  });
});

describe('load errors name the part', () => {
  it('a corrupt unet/model.onnx → EngineError("model") naming the file', async () => {
    const dir = await writeTinyModel(path.join(root, 'broken', 'unet'), { generation: 'optimum-old' });
    const info = (await inspectModelFolder(dir)) as ModelInfo;
    await writeFile(path.join(dir, 'unet/model.onnx'), Buffer.from('not onnx at all'));
    const err = await loadModel(info, { providers: ['cpu'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('model');
    expect((err as EngineError).message).toMatch(/^model "unet": cannot load unet\/model\.onnx: /);
  });

  it('a tokenizer file removed after the scan → EngineError naming it', async () => {
    const dir = await writeTinyModel(path.join(root, 'broken', 'tok'), { generation: 'optimum-old' });
    const info = (await inspectModelFolder(dir)) as ModelInfo;
    await rm(path.join(dir, 'tokenizer/vocab.json'));
    const err = (await loadModel(info, { providers: ['cpu'] }).catch((e: unknown) => e)) as EngineError;
    expect(err.code).toBe('model');
    expect(err.message).toContain('vocab.json');
  });

  it('a released model refuses further calls with an EngineError', async () => {
    const info = get('optimum-new', 'float32').info;
    const m = await loadModel(info, { providers: ['cpu'] });
    await m.release();
    await expect(m.vaeDecode(latent(1), 1, H, W)).rejects.toBeInstanceOf(EngineError);
  });
});
