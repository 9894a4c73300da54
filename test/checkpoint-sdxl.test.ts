// SDXL end to end: one tiny SDXL-layout checkpoint (CLIP ViT-L under conditioner.embedders.0,
// OpenCLIP bigG under conditioner.embedders.1, a UNet with label_emb, the KL-VAE) written as a
// model folder in Optimum's SDXL layout, found by the registry and drawn by the engine's own
// pipeline (two tokenizers, penultimate states concatenated, pooled text_embeds, time_ids, Euler
// with guidance), against diffusers' arithmetic in scripts/reference/e2e_sdxl.py. Needs the real
// CLIP tokenizer files beside the repository; skips with a message where they are absent.
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TextualInversion } from '../engine/checkpoint/embeddings.js';
import { writeModelFolder } from '../engine/checkpoint/model-folder.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { encodePrompts } from '../engine/conditioning.js';
import { loadModel } from '../engine/model.js';
import { sdxlPromptEncoder } from '../engine/sdxl-conditioning.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { Pipeline } from '../engine/pipeline.js';
import { ClipTokenizer } from '../engine/tokenizer.js';
import type { GenerateRequest, ModelInfo } from '../engine/types.js';
import { writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import { tinySdxlPlan, tinySdxlReference as reference } from './fixtures/reference/tiny-sdxl.js';
import { hasSharedTokenizer, sharedTokenizerDir } from './helpers/shared-fixtures.js';

const tokenizerPresent = hasSharedTokenizer();
if (!tokenizerPresent) console.warn(`checkpoint-sdxl: skipped, no CLIP tokenizer at ${sharedTokenizerDir()} (set SD_TOKENIZER_DIR)`);

const plan = tinySdxlPlan;

type Run = (typeof reference.runs)[keyof typeof reference.runs];

/**
 * Final latents within `tolerance` of the reference's last step, relative to their scale (random
 * weights are no denoiser: the latents reach 19–49 here, and float32 rounding grows with them);
 * pixels within one level (rounding at .5 boundaries).
 */
function expectRunMatches(run: Run, latents: Float32Array, rgb: Uint8Array, tolerance: number): void {
  const last = run.latents_after_step[run.latents_after_step.length - 1]!;
  expect(latents.length).toBe(last.values.length);
  let worst = 0;
  let scale = 1;
  last.values.forEach((v, i) => {
    worst = Math.max(worst, Math.abs(latents[i]! - v));
    scale = Math.max(scale, Math.abs(v));
  });
  // Measured worst: 1.4e-4 absolute at a scale of 18.9 (7.6e-6 relative).
  expect(worst / scale).toBeLessThan(tolerance);
  expect(rgb.length).toBe(run.rgb.length);
  let off = 0;
  run.rgb.forEach((v, i) => {
    const d = Math.abs(rgb[i]! - v);
    expect(d).toBeLessThanOrEqual(1);
    off += d;
  });
  // Off-by-one only where the float sits within rounding error of a .5 boundary: a handful at most.
  expect(off).toBeLessThan(run.rgb.length / 100);
}

describe.skipIf(!tokenizerPresent)('SDXL from a checkpoint through the engine', () => {
  let dir: string;
  let modelsDir: string;
  let pipeline: Pipeline;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ckpt-sdxl-'));
    const file = path.join(dir, 'tiny-sdxl.safetensors');
    await writeSyntheticCheckpoint(file, reference.tensors, 0);
    modelsDir = path.join(dir, 'models');
    const weights = await openWeightsFile(file);
    try {
      await writeModelFolder(weights, plan, path.join(modelsDir, 'tiny-sdxl'), { tokenizerDir: sharedTokenizerDir() });
    } finally {
      await weights.close();
    }
    // The same weights as a Turbo-style fine-tune: only its settings file tells it apart.
    await cp(path.join(modelsDir, 'tiny-sdxl'), path.join(modelsDir, 'tiny-xl-fast'), { recursive: true });
    await writeFile(path.join(modelsDir, 'tiny-xl-fast', 'defaults.json'), JSON.stringify({ sampler: 'Turbo', steps: 1, guidance: 0 }));
    pipeline = new Pipeline({ modelsDir, providers: ['cpu'] });
  });
  afterAll(async () => {
    await pipeline?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the Optimum SDXL layout: two encoders and tokenizers, the SDXL VAE scale, leading Euler', async () => {
    const folder = path.join(modelsDir, 'tiny-sdxl');
    expect((await readdir(folder)).sort()).toEqual([
      'model_index.json', 'scheduler', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2', 'unet', 'vae_decoder', 'vae_encoder',
    ]);
    const json = async (rel: string) => JSON.parse(await readFile(path.join(folder, rel), 'utf8')) as Record<string, unknown>;
    expect(await json('vae_decoder/config.json')).toEqual({ scaling_factor: 0.13025 });
    expect(await json('model_index.json')).toMatchObject({ _class_name: 'StableDiffusionXLPipeline', force_zeros_for_empty_prompt: true });
    expect(await json('scheduler/scheduler_config.json')).toMatchObject({ timestep_spacing: 'leading', steps_offset: 1 });
    const unet = await ort.InferenceSession.create(path.join(folder, 'unet', 'model.onnx'));
    expect(unet.inputNames).toEqual(['sample', 'timestep', 'encoder_hidden_states', 'text_embeds', 'time_ids']);
    await unet.release();
    // The two tokenizers split alike and differ in padding: end token vs "!" (id 0).
    const t1 = await ClipTokenizer.load(path.join(folder, 'tokenizer'));
    const t2 = await ClipTokenizer.load(path.join(folder, 'tokenizer_2'));
    const [a, b] = [t1.encode('a dog on the beach').ids, t2.encode('a dog on the beach').ids];
    expect([...a.slice(0, reference.prompt_ids.length)]).toEqual(reference.prompt_ids);
    expect([...b.slice(0, reference.prompt_ids.length)]).toEqual(reference.prompt_ids);
    expect([a[reference.prompt_ids.length], b[reference.prompt_ids.length]]).toEqual([49407, 0]);
    expect([...t1.encode('blurry').ids.slice(0, reference.negative_ids.length)]).toEqual(reference.negative_ids);
  });

  it('the registry lists it as SDXL at 1024² with the usual defaults, and the Turbo-configured copy with its own', async () => {
    const scan = await pipeline.scanModels();
    expect(scan.problems).toEqual([]);
    const byName = new Map(scan.models.map((m) => [m.name, m]));
    expect(byName.get('tiny-sdxl')).toMatchObject<Partial<ModelInfo>>({
      family: 'sdxl', nativeWidth: 1024, nativeHeight: 1024, defaultSampler: 'DPM++ 2M Karras', defaultGuidance: 7, hasVaeEncoder: true,
    });
    expect(byName.get('tiny-xl-fast')).toMatchObject<Partial<ModelInfo>>({ family: 'sdxl', defaultSampler: 'Turbo', defaultSteps: 1, defaultGuidance: 0 });
  });

  it('an SDXL embedding (clip_l + clip_g) reaches both encoders: a trigger holding the rows of "dog" encodes as "dog"', async () => {
    const info = (await pipeline.scanModels()).models.find((m) => m.name === 'tiny-sdxl')!;
    const model = await loadModel(info, { providers: ['cpu'] });
    try {
      const dog = reference.prompt_ids[2]!;
      const row = (name: string, width: number) => syntheticTensor(name, [49408, width], 0).slice(dog * width, (dog + 1) * width);
      const [wl, wg] = [reference.clip_l.width, reference.clip_g.width];
      const pupper: TextualInversion = {
        name: 'pupper',
        family: 'sdxl',
        vectors: 1,
        parts: {
          clip_l: { width: wl, data: row('conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight', wl) },
          clip_g: { width: wg, data: row(`${reference.clip_g.prefix}token_embedding.weight`, wg) },
        },
      };
      const encode = (prompt: string) =>
        encodePrompts(prompt, '', {
          tokenizer: model.tokenizer,
          encoder: sdxlPromptEncoder(model.sdxl!, model.tokenizer.eosId),
          guidance: false,
          maxChunks: 8,
          embeddings: new Map([['pupper', pupper]]),
          modelName: info.name,
        });
      const [a, b] = [await encode('a pupper on the beach'), await encode('a dog on the beach')];
      expect(a.embeddingsUsed).toEqual(['pupper']);
      const worst = (x: Float32Array, y: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);
      expect(a.hidden.length).toBe(b.hidden.length);
      expect(worst(a.hidden, b.hidden)).toBeLessThan(1e-6);
      expect(worst(a.pooled!, b.pooled!)).toBeLessThan(1e-6);
    } finally {
      await model.release();
    }
  });

  const request = (model: string, run: Run, negativePrompt: string): GenerateRequest => ({
    model,
    prompt: 'a dog on the beach',
    negativePrompt,
    width: reference.width,
    height: reference.height,
    steps: run.steps,
    guidance: run.guidance,
    sampler: run.spacing === 'trailing' ? 'Turbo' : 'Euler',
    seed: run.seed,
    count: 1,
  });

  async function draw(req: GenerateRequest): Promise<{ latents: Float32Array; rgb: Uint8Array }> {
    let latents = new Float32Array(0);
    const result = await pipeline.generate(req, { onLatents: (x) => (latents = x.slice()) });
    return { latents, rgb: result.images[0]!.rgb };
  }

  it('4 Euler steps with guidance and an empty negative (zeros, as diffusers): latents and pixels match PyTorch', async () => {
    const run = reference.runs.cfg_empty_negative;
    const { latents, rgb } = await draw(request('tiny-sdxl', run, ''));
    expectRunMatches(run, latents, rgb, 1e-4);
  });

  it('4 Euler steps with a written negative prompt, encoded by both encoders: latents and pixels match PyTorch', async () => {
    const run = reference.runs.cfg_negative;
    const { latents, rgb } = await draw(request('tiny-sdxl', run, 'blurry'));
    expectRunMatches(run, latents, rgb, 1e-4);
  });

  it('the Turbo-configured model draws with guidance off: every UNet call is batch 1, and the picture matches PyTorch', async () => {
    const run = reference.runs.turbo;
    const calls: number[] = [];
    // Every session's run goes through the class's prototype: record the UNet's batch on the way.
    const proto = (ort.InferenceSession as unknown as { prototype: ort.InferenceSession }).prototype;
    const realRun = proto.run;
    proto.run = function (this: ort.InferenceSession, ...args: Parameters<typeof realRun>) {
      const feeds = args[0] as Record<string, ort.Tensor>;
      const timeIds = feeds['time_ids'];
      if (timeIds) {
        calls.push(feeds['sample']!.dims[0]!);
        expect([...(timeIds.data as Float32Array)]).toEqual([reference.height, reference.width, 0, 0, reference.height, reference.width]);
      }
      return realRun.apply(this, args);
    } as typeof realRun;
    try {
      const info = (await pipeline.scanModels()).models.find((m) => m.name === 'tiny-xl-fast')!;
      const { latents, rgb } = await draw({ ...request('tiny-xl-fast', run, ''), steps: info.defaultSteps, guidance: info.defaultGuidance, sampler: info.defaultSampler });
      expect(calls).toEqual([1]);
      expectRunMatches(run, latents, rgb, 1e-4);
    } finally {
      proto.run = realRun;
    }
  });
});
