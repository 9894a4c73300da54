import { cp, mkdir, mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectModelFolder, scanModels } from '../engine/registry.js';
import type { ModelInfo, ModelProblem, ModelScan } from '../engine/types.js';
import { writeTinyModel, type TinyModelOptions } from './fixtures/tiny-models.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'engine-registry-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function scanOne(name: string, opts: TinyModelOptions): Promise<ModelScan> {
  const modelsDir = path.join(root, `single-${name}`);
  await writeTinyModel(path.join(modelsDir, name), opts);
  return scanModels(modelsDir);
}

async function problemFor(name: string, opts: TinyModelOptions): Promise<string> {
  const scan = await scanOne(name, opts);
  expect(scan.models).toEqual([]);
  expect(scan.problems).toHaveLength(1);
  expect(scan.problems[0]!.name).toBe(name);
  return scan.problems[0]!.reason;
}

async function modelFor(name: string, opts: TinyModelOptions): Promise<ModelInfo> {
  const scan = await scanOne(name, opts);
  expect(scan.problems).toEqual([]);
  expect(scan.models).toHaveLength(1);
  return scan.models[0]!;
}

describe('scanModels: generation and dtype', () => {
  let scan: ModelScan;
  beforeAll(async () => {
    const modelsDir = path.join(root, 'generations');
    for (const generation of ['diffusers-legacy', 'optimum-old', 'optimum-new'] as const) {
      for (const dtype of ['float32', 'float16'] as const) {
        await writeTinyModel(path.join(modelsDir, `${generation}-${dtype}`), { generation, dtype });
      }
    }
    await mkdir(path.join(modelsDir, 'not-a-model'));
    await writeFile(path.join(modelsDir, 'README.txt'), 'put models here');
    scan = await scanModels(modelsDir);
  });

  it('finds every model folder, sorted by name, and ignores unrelated entries', () => {
    expect(scan.problems).toEqual([]);
    expect(scan.models.map((m) => m.name)).toEqual([
      'diffusers-legacy-float16',
      'diffusers-legacy-float32',
      'optimum-new-float16',
      'optimum-new-float32',
      'optimum-old-float16',
      'optimum-old-float32',
    ]);
  });

  it('tells the three export generations and both dtypes apart', () => {
    for (const m of scan.models) {
      const [gen, dtype] = m.name.split(/-(?=float)/);
      expect(m.generation).toBe(gen);
      expect(m.dtype).toBe(dtype);
      expect(m.family).toBe('sd1');
      expect(m.predictionType).toBe('epsilon');
      expect(m.hasVaeEncoder).toBe(true);
      expect(m.dir).toBe(path.join(root, 'generations', m.name));
    }
  });

  it('reads the native size from unet/config.json sample_size', () => {
    for (const m of scan.models) expect([m.nativeWidth, m.nativeHeight]).toEqual([64, 64]);
  });
});

describe('scanModels: family, prediction, native size, defaults', () => {
  it('1024-wide conditioning is SD 2.x; v_prediction comes from the scheduler config', async () => {
    const m = await modelFor('sd21', { generation: 'optimum-old', family: 'sd2', prediction: 'v_prediction', sampleSize: 12 });
    expect(m).toMatchObject({ family: 'sd2', predictionType: 'v_prediction', nativeWidth: 96, nativeHeight: 96 });
    expect(m).toMatchObject({ defaultSampler: 'DPM++ 2M Karras', defaultSteps: 20, defaultGuidance: 7 });
  });

  it('Euler with trailing spacing and 1024 conditioning is SD-Turbo, with turbo defaults', async () => {
    const m = await modelFor('fast', { generation: 'optimum-new', family: 'sd-turbo' });
    expect(m).toMatchObject({ family: 'sd-turbo', defaultSampler: 'Turbo', defaultSteps: 1, defaultGuidance: 0 });
  });

  it('a folder named turbo is SD-Turbo even with another scheduler', async () => {
    const m = await modelFor('my-sd-turbo', { generation: 'optimum-new', family: 'sd2' });
    expect(m.family).toBe('sd-turbo');
  });

  it('without unet/config.json: 512 for SD 1.x and SD 2 epsilon, 768 for SD 2 v_prediction', async () => {
    const omit = ['unet/config.json'];
    expect((await modelFor('sd15-nocfg', { generation: 'diffusers-legacy', omit })).nativeWidth).toBe(512);
    expect((await modelFor('sd2base-nocfg', { generation: 'diffusers-legacy', family: 'sd2', omit })).nativeWidth).toBe(512);
    const v = await modelFor('sd2v-nocfg', { generation: 'diffusers-legacy', family: 'sd2', prediction: 'v_prediction', omit });
    expect([v.nativeWidth, v.nativeHeight]).toEqual([768, 768]);
  });

  it('Optimum SDXL exports (text_encoder_2/, tokenizer_2/, a UNet with text_embeds and time_ids) are SDXL', async () => {
    for (const generation of ['optimum-old', 'optimum-new', 'diffusers-legacy'] as const) {
      const m = await modelFor(`sdxl-${generation}`, { generation, pipeline: 'sdxl', hiddenDim: 2048, omit: ['unet/config.json'] });
      expect(m).toMatchObject({ family: 'sdxl', nativeWidth: 1024, nativeHeight: 1024, defaultSampler: 'DPM++ 2M Karras', defaultGuidance: 7 });
    }
  });

  it('SDXL Turbo/Lightning fine-tunes: by name, or by the folder\'s defaults.json', async () => {
    expect(await modelFor('sdxl-turbo', { generation: 'optimum-new', pipeline: 'sdxl', hiddenDim: 2048 })).toMatchObject({
      family: 'sdxl', defaultSampler: 'Turbo', defaultSteps: 1, defaultGuidance: 0,
    });
    expect(await modelFor('juggernaut-xl-lightning', { generation: 'optimum-new', pipeline: 'sdxl', hiddenDim: 2048 })).toMatchObject({
      family: 'sdxl', defaultSampler: 'Turbo', defaultSteps: 4, defaultGuidance: 0,
    });
    expect(await modelFor('hyperrealism-xl', { generation: 'optimum-new', pipeline: 'sdxl', hiddenDim: 2048 })).toMatchObject({ defaultSampler: 'DPM++ 2M Karras' });
    // An SD 1.x folder keeps its usual defaults whatever its name (SD-Turbo is an SD 2.x model).
    expect(await modelFor('sd15-turbo-merge', { generation: 'optimum-new' })).toMatchObject({ family: 'sd1', defaultSampler: 'DPM++ 2M Karras' });
    const modelsDir = path.join(root, 'settings-file');
    const dir = await writeTinyModel(path.join(modelsDir, 'my-finetune'), { generation: 'optimum-new', pipeline: 'sdxl', hiddenDim: 2048 });
    await writeFile(path.join(dir, 'defaults.json'), JSON.stringify({ sampler: 'Euler a', steps: 6, guidance: 1.5, size: 512 }));
    expect((await scanModels(modelsDir)).models[0]).toMatchObject({ defaultSampler: 'Euler a', defaultSteps: 6, defaultGuidance: 1.5, nativeWidth: 512, nativeHeight: 512 });
    await writeFile(path.join(dir, 'defaults.json'), JSON.stringify({ sampler: 'LCM' }));
    expect((await scanModels(modelsDir)).problems[0]!.reason).toBe(
      'defaults.json: "sampler" "LCM" is not allowed; use Euler, Euler a, DPM++ 2M Karras, DDIM, Turbo',
    );
    await writeFile(path.join(dir, 'defaults.json'), JSON.stringify({ cfg: 2 }));
    expect((await scanModels(modelsDir)).problems[0]!.reason).toBe('defaults.json: unknown key "cfg"; the keys are sampler, steps, guidance, size');
  });

  it('notes a missing vae_encoder instead of refusing the model', async () => {
    expect((await modelFor('no-encoder', { generation: 'optimum-old', vaeEncoder: false })).hasVaeEncoder).toBe(false);
  });
});

describe('scanModels: refusals and broken folders name the reason and the file', () => {
  it('refuses LCM with a clear message', async () => {
    expect(await problemFor('lcm', { generation: 'optimum-new', pipeline: 'lcm' })).toMatch(/^LCM \(latent consistency\) models are not supported yet/);
  });

  it('an SDXL UNet without text_encoder_2/ (an SDXL refiner layout) is refused, naming what is missing', async () => {
    const dir = path.join(root, 'sneaky', 'xl-unet');
    await writeTinyModel(dir, { generation: 'optimum-old', pipeline: 'sdxl', hiddenDim: 2048 });
    await rm(path.join(dir, 'text_encoder_2'), { recursive: true });
    await writeFile(path.join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'ORTStableDiffusionPipeline' }));
    const r = (await inspectModelFolder(dir)) as ModelProblem;
    expect(r.reason).toBe('unet/model.onnx takes text_embeds and time_ids (SDXL) but the folder has no text_encoder_2/; SDXL refiners are not supported');
  });

  it('an SDXL folder whose UNet lacks the added inputs, or without tokenizer_2/, is refused', async () => {
    const dir = path.join(root, 'sneaky', 'xl-no-tok2');
    await writeTinyModel(dir, { generation: 'optimum-new', pipeline: 'sdxl', hiddenDim: 2048, omit: ['tokenizer_2/merges.txt'] });
    expect(((await inspectModelFolder(dir)) as ModelProblem).reason).toBe('tokenizer_2/merges.txt is missing');
    const plain = path.join(root, 'sneaky', 'xl-plain-unet');
    await writeTinyModel(plain, { generation: 'optimum-new' });
    await cp(path.join(dir, 'text_encoder'), path.join(plain, 'text_encoder_2'), { recursive: true });
    await cp(path.join(plain, 'tokenizer'), path.join(plain, 'tokenizer_2'), { recursive: true });
    expect(((await inspectModelFolder(plain)) as ModelProblem).reason).toBe(
      'the folder is SDXL (text_encoder_2/) but unet/model.onnx does not take text_embeds and time_ids',
    );
  });

  it('missing unet/model.onnx', async () => {
    expect(await problemFor('no-unet', { generation: 'optimum-old', omit: ['unet/model.onnx'] })).toBe('unet/model.onnx is missing');
  });

  it('missing tokenizer/merges.txt', async () => {
    expect(await problemFor('no-merges', { generation: 'diffusers-legacy', omit: ['tokenizer/merges.txt'] })).toBe('tokenizer/merges.txt is missing');
  });

  it('missing external weights are named (model.onnx_data, weights.pb)', async () => {
    expect(await problemFor('no-data', { generation: 'optimum-new', omit: ['unet/model.onnx_data'] })).toMatch(/^unet\/model\.onnx_data is missing/);
    expect(await problemFor('no-pb', { generation: 'diffusers-legacy', omit: ['unet/weights.pb'] })).toMatch(/^unet\/weights\.pb is missing/);
  });

  it('weights cut short by a stopped download are named at scan time', async () => {
    const modelsDir = path.join(root, 'cut-weights');
    const dir = await writeTinyModel(path.join(modelsDir, 'cut'), { generation: 'optimum-old' });
    const data = path.join(dir, 'unet/model.onnx_data');
    const full = (await stat(data)).size;
    await truncate(data, Math.floor(full / 2));
    const scan = await scanModels(modelsDir);
    expect(scan.models).toEqual([]);
    expect(scan.problems[0]!.reason).toMatch(/^unet\/model\.onnx_data is truncated \(\d+ bytes; unet\/model\.onnx needs at least \d+\)/);
    await truncate(data, 0);
    expect((await scanModels(modelsDir)).problems[0]!.reason).toMatch(/^unet\/model\.onnx_data is truncated \(0 bytes/);
  });

  it('corrupt model_index.json', async () => {
    const modelsDir = path.join(root, 'corrupt-index');
    const dir = await writeTinyModel(path.join(modelsDir, 'broken'), { generation: 'optimum-old' });
    await writeFile(path.join(dir, 'model_index.json'), '{ "_class_name": "ORTStableDiffusionPipeline", ');
    const scan = await scanModels(modelsDir);
    expect(scan.problems).toHaveLength(1);
    expect(scan.problems[0]!.reason).toMatch(/^model_index\.json is not valid JSON/);
  });

  it('a truncated or garbage unet/model.onnx', async () => {
    const modelsDir = path.join(root, 'garbage-unet');
    const dir = await writeTinyModel(path.join(modelsDir, 'broken'), { generation: 'optimum-old' });
    await writeFile(path.join(dir, 'unet/model.onnx'), Buffer.from('<html>404 not found</html>'));
    const scan = await scanModels(modelsDir);
    expect(scan.problems[0]!.reason).toMatch(/^unet\/model\.onnx is not a readable ONNX model/);
  });

  it('a corrupt scheduler config is named', async () => {
    const modelsDir = path.join(root, 'bad-scheduler');
    const dir = await writeTinyModel(path.join(modelsDir, 'broken'), { generation: 'optimum-old' });
    await writeFile(path.join(dir, 'scheduler/scheduler_config.json'), '[1, 2]');
    const scan = await scanModels(modelsDir);
    expect(scan.problems[0]!.reason).toMatch(/^scheduler\/scheduler_config\.json should hold a JSON object/);
  });

  it('a folder with model parts but no model_index.json is reported; good models beside it still load', async () => {
    const modelsDir = path.join(root, 'mixed');
    await writeTinyModel(path.join(modelsDir, 'good'), { generation: 'optimum-new' });
    await writeTinyModel(path.join(modelsDir, 'half'), { generation: 'optimum-new', omit: ['model_index.json'] });
    const scan = await scanModels(modelsDir);
    expect(scan.models.map((m) => m.name)).toEqual(['good']);
    expect(scan.problems).toEqual([{ name: 'half', dir: path.join(modelsDir, 'half'), reason: 'model_index.json is missing' }]);
  });
});

describe('scanModels: the models directory itself', () => {
  it('an empty directory gives an empty scan', async () => {
    const empty = path.join(root, 'empty');
    await mkdir(empty);
    expect(await scanModels(empty)).toEqual({ models: [], problems: [] });
  });

  it('a missing directory gives one clear problem and does not throw', async () => {
    const missing = path.join(root, 'nope');
    const scan = await scanModels(missing);
    expect(scan.models).toEqual([]);
    expect(scan.problems).toHaveLength(1);
    expect(scan.problems[0]!.reason).toContain(`${missing} does not exist`);
  });

  it('a file instead of a directory', async () => {
    const file = path.join(root, 'file.txt');
    await writeFile(file, 'x');
    expect((await scanModels(file)).problems[0]!.reason).toContain('is not a directory');
  });
});

describe('scanModels: configs as real exports write them', () => {
  // runwayml/stable-diffusion-v1-5 (onnx revision) model_index.json and scheduler config, with
  // the components the engine does not use (safety checker, feature extractor).
  const sd15Index = {
    _class_name: 'OnnxStableDiffusionPipeline',
    _diffusers_version: '0.24.0',
    feature_extractor: ['transformers', 'CLIPFeatureExtractor'],
    requires_safety_checker: true,
    safety_checker: ['diffusers', 'OnnxRuntimeModel'],
    scheduler: ['diffusers', 'PNDMScheduler'],
    text_encoder: ['diffusers', 'OnnxRuntimeModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'OnnxRuntimeModel'],
    vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
    vae_encoder: ['diffusers', 'OnnxRuntimeModel'],
  };
  const sd15Scheduler = {
    _class_name: 'PNDMScheduler',
    _diffusers_version: '0.24.0',
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    beta_start: 0.00085,
    clip_sample: false,
    num_train_timesteps: 1000,
    prediction_type: 'epsilon',
    set_alpha_to_one: false,
    skip_prk_steps: true,
    steps_offset: 1,
    timestep_spacing: 'leading',
    trained_betas: null,
  };

  async function withConfigs(name: string, index: Record<string, unknown>, scheduler: Record<string, unknown>): Promise<ModelScan> {
    const modelsDir = path.join(root, `configs-${name}`);
    const dir = await writeTinyModel(path.join(modelsDir, name), { generation: 'diffusers-legacy', omit: ['unet/config.json'] });
    await writeFile(path.join(dir, 'model_index.json'), JSON.stringify(index));
    await writeFile(path.join(dir, 'scheduler/scheduler_config.json'), JSON.stringify(scheduler));
    return scanModels(modelsDir);
  }

  it('the SD 1.5 onnx-revision configs, extra components included', async () => {
    const scan = await withConfigs('sd15', sd15Index, sd15Scheduler);
    expect(scan.problems).toEqual([]);
    expect(scan.models[0]).toMatchObject({ family: 'sd1', predictionType: 'epsilon', nativeWidth: 512, nativeHeight: 512 });
  });

  it("diffusers ≤ 0.5's StableDiffusionOnnxPipeline class name (no vae_encoder) is the same legacy layout", async () => {
    const { vae_encoder: _unused, ...index } = sd15Index;
    const scan = await withConfigs('sd14-old', { ...index, _class_name: 'StableDiffusionOnnxPipeline', _diffusers_version: '0.3.0' }, sd15Scheduler);
    expect(scan.problems).toEqual([]);
    expect(scan.models[0]!.family).toBe('sd1');
  });

  it('a scheduler config the samplers cannot use is a scan problem naming the file and key', async () => {
    for (const [name, patch, key] of [
      ['sigmoid', { beta_schedule: 'sigmoid' }, /beta_schedule is "sigmoid"/],
      ['short-betas', { trained_betas: [0.1, 0.2] }, /trained_betas/],
      ['sample', { prediction_type: 'sample' }, /prediction_type/],
    ] as const) {
      const scan = await withConfigs(name, sd15Index, { ...sd15Scheduler, ...patch });
      expect(scan.models).toEqual([]);
      expect(scan.problems[0]!.reason).toMatch(/^scheduler\/scheduler_config\.json: /);
      expect(scan.problems[0]!.reason).toMatch(key);
    }
  });
});
