// A diffusers-format folder dropped into models/ through the real engine (worker thread,
// onnxruntime): listed as a model with source 'diffusers', prepared on first use with 'preparing'
// then 'loading' stages, not prepared again, and drawn exactly as the same weights given as a
// single-file checkpoint (with and without a LoRA). Folders the builders cannot take (pickled
// parts, a missing part, SDXL) are listed as problems with the reason; an ONNX export folder is
// still an ONNX model.
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type WorkerEngine } from '../engine/index.js';
import type { GenerateRequest, GenerateResult, ModelStage } from '../engine/types.js';
import { DEMO_TOKENIZER_DIR, writeTinyCheckpoint, writeTinyDiffusers, writeTinyLora } from './fixtures/tiny-checkpoint.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

let root: string;
let modelsDir: string;
let cacheDir: string;
let engine: WorkerEngine;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'engine-diffusers-'));
  modelsDir = path.join(root, 'models');
  cacheDir = path.join(root, 'model-cache');
  await mkdir(path.join(modelsDir, 'checkpoints'), { recursive: true });
  await mkdir(path.join(modelsDir, 'loras'), { recursive: true });
  // The same weights twice: a single-file checkpoint (tokenizer from models/tokenizer/) and a
  // diffusers folder carrying its own copy of that tokenizer.
  await writeTinyCheckpoint(path.join(modelsDir, 'tinyck.safetensors'));
  await cp(DEMO_TOKENIZER_DIR, path.join(modelsDir, 'tokenizer'), { recursive: true });
  await writeTinyDiffusers(path.join(modelsDir, 'tinydiff'), { tokenizer: DEMO_TOKENIZER_DIR });
  // In checkpoints/, fp16, and without tokenizer/: the checkpoints' fallback chain gives it one.
  await writeTinyDiffusers(path.join(modelsDir, 'checkpoints', 'halfdiff'), { seed: 5, dtype: 'F16', tokenizer: 'none' });
  await writeTinyLora(path.join(modelsDir, 'loras', 'Fox-Style.safetensors'));

  const pickled = path.join(modelsDir, 'pickled');
  await writeTinyDiffusers(pickled, { skip: 'unet' });
  await mkdir(path.join(pickled, 'unet'));
  await writeFile(path.join(pickled, 'unet', 'config.json'), JSON.stringify({ cross_attention_dim: 768, sample_size: 64 }));
  await writeFile(path.join(pickled, 'unet', 'diffusion_pytorch_model.bin'), Buffer.from([0x80, 0x02, 0x7d, 0x2e]));
  await writeTinyDiffusers(path.join(modelsDir, 'novae'), { skip: 'vae' });
  const xl = path.join(modelsDir, 'xl-diffusers');
  await mkdir(path.join(xl, 'unet'), { recursive: true });
  await writeFile(path.join(xl, 'unet', 'config.json'), JSON.stringify({ cross_attention_dim: 2048, addition_embed_type: 'text_time', sample_size: 128 }));
  await writeFile(path.join(xl, 'unet', 'diffusion_pytorch_model.safetensors'), '');
  // An ONNX export has model_index.json and unet/config.json too; its files make it ONNX.
  await writeTinyModel(path.join(modelsDir, 'onnxtiny'), { generation: 'optimum-new', unet: 'smooth' });

  engine = createEngine({ modelsDir, modelCacheDir: cacheDir, providers: ['cpu'], threads: 1 });
});

afterAll(async () => {
  await engine?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

function request(overrides: Partial<GenerateRequest>): GenerateRequest {
  return { model: 'tinydiff', prompt: 'a fox in the snow', negativePrompt: '', width: 64, height: 64, steps: 2, guidance: 5, sampler: 'Euler', seed: 7, count: 1, ...overrides };
}

async function draw(overrides: Partial<GenerateRequest> = {}): Promise<{ result: GenerateResult; stages: ModelStage[] }> {
  const stages: ModelStage[] = [];
  const result = await engine.generate(request(overrides), { onStage: (s) => stages.push(s) });
  return { result, stages };
}

const pixels = (r: GenerateResult): Buffer => Buffer.from(r.images[0]!.rgb);
const preparing = (stages: ModelStage[]) => stages.filter((s) => s.stage === 'preparing');
const FOX = [{ name: 'Fox-Style', textEncoderWeight: 1, unetWeight: 1 }];

describe('diffusers folders in the models folder', () => {
  it('are listed as models with source, family, native size and dtype; unusable ones as problems with the reason', async () => {
    const scan = await engine.scanModels();
    const byName = new Map(scan.models.map((m) => [m.name, m]));
    expect([...byName.keys()].sort()).toEqual(['halfdiff', 'onnxtiny', 'tinyck', 'tinydiff']);
    expect(byName.get('tinydiff')).toMatchObject({ source: 'diffusers', family: 'sd1', nativeWidth: 512, nativeHeight: 512, storedDtype: 'fp32', loras: ['Fox-Style'] });
    expect(byName.get('halfdiff')).toMatchObject({ source: 'diffusers', family: 'sd1', storedDtype: 'fp16' });
    expect(byName.get('onnxtiny')?.source ?? 'onnx').toBe('onnx');
    const problems = new Map(scan.problems.map((p) => [p.name, p.reason]));
    expect(problems.get('pickled')).toMatch(/pickled\/unet holds only diffusion_pytorch_model\.bin, a Python pickle.*\.safetensors/);
    expect(problems.get('novae')).toMatch(/^novae has no vae\/ folder/);
    expect(problems.get('xl-diffusers')).toMatch(/^xl-diffusers is an SDXL diffusers folder; .*single-file \.safetensors/);
    expect(problems.size).toBe(3);
  });

  let checkpointPixels: Buffer;

  it('draws on first use after preparing then loading, exactly what the same weights draw as a checkpoint', async () => {
    const first = await draw();
    const prep = preparing(first.stages);
    expect(prep.length).toBeGreaterThan(3);
    expect(prep.every((s) => s.model === 'tinydiff')).toBe(true);
    const fractions = prep.map((s) => s.fraction!);
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
    expect(fractions.at(-1)).toBe(1);
    expect(first.stages.at(-1)).toEqual({ stage: 'loading', model: 'tinydiff' });
    expect(first.result.images[0]!.infoText).toMatch(/Model hash: [0-9a-f]{10}/);

    const checkpoint = await draw({ model: 'tinyck' });
    checkpointPixels = pixels(checkpoint.result);
    expect(checkpointPixels.some((v) => v !== checkpointPixels[0])).toBe(true);
    expect(pixels(first.result).equals(checkpointPixels)).toBe(true);
  });

  it('is not prepared again on the next job', async () => {
    const entries = (await readdir(cacheDir)).filter((e) => /-d.*-g\d+$/.test(e));
    const again = await draw();
    expect(preparing(again.stages)).toEqual([]);
    expect(pixels(again.result).equals(checkpointPixels)).toBe(true);
    expect((await readdir(cacheDir)).filter((e) => /-d.*-g\d+$/.test(e))).toEqual(entries);
  });

  it('takes LoRAs like the checkpoint: same picture as the checkpoint with the same LoRA', async () => {
    const withLora = await draw({ loras: FOX });
    expect(preparing(withLora.stages)[0]!.loras).toEqual(['Fox-Style']);
    expect(pixels(withLora.result).equals(checkpointPixels)).toBe(false);
    const checkpoint = await draw({ model: 'tinyck', loras: FOX });
    expect(pixels(withLora.result).equals(pixels(checkpoint.result))).toBe(true);
    expect(pixels((await draw()).result).equals(checkpointPixels)).toBe(true);
  });

  it('a folder without tokenizer/ gets one from the fallback chain and draws', async () => {
    const { result, stages } = await draw({ model: 'halfdiff' });
    expect(preparing(stages).at(-1)?.fraction).toBe(1);
    expect(result.images[0]!.width).toBe(64);
    const rgb = pixels(result);
    expect(rgb.some((v) => v !== rgb[0])).toBe(true);
    // The engine's providers (['cpu']) reached prepare: an fp16 folder gets the CPU's fp16-resident form.
    expect((await readdir(cacheDir)).filter((e) => /-d-h16r-mha-g\d+$/.test(e))).toHaveLength(1);
  });

  it('answers a job for a refused folder in one line', async () => {
    await expect(draw({ model: 'pickled' })).rejects.toThrow(/^model "pickled" cannot be used: pickled\/unet holds only diffusion_pytorch_model\.bin, a Python pickle/);
  });
});
