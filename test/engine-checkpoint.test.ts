// A single-file checkpoint dropped into models/ through the real engine (worker thread,
// onnxruntime): listed with family, size, dtype and source; prepared on first use with 'preparing'
// stages, then drawn; not prepared again (same process or after a restart); a half-written cache
// entry left by a kill is built again; LoRAs per job change the picture and leave the next job
// without them exactly as before; bad LoRA names, wrong-family LoRAs, pickles and truncated files
// get one clear line each.
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type WorkerEngine } from '../engine/index.js';
import { BUNDLED_CLIP_TOKENIZER } from '../engine/model-resolve.js';
import { EngineError, type GenerateRequest, type GenerateResult, type ModelStage } from '../engine/types.js';
import { DEMO_TOKENIZER_DIR, writeTinyCheckpoint, writeTinyLora } from './fixtures/tiny-checkpoint.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

/** Entries in CLIP's BPE vocabulary (every SD 1.x/2.x/SDXL text encoder's token rows). */
const CLIP_VOCAB_SIZE = 49_408;

let root: string;
let modelsDir: string;
let cacheDir: string;
let engine: WorkerEngine;

const PICKLE = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('cos\nsystem\n', 'latin1'), Buffer.from([0x85, 0x52, 0x2e])]);

const start = (): WorkerEngine => createEngine({ modelsDir, modelCacheDir: cacheDir, providers: ['cpu'], threads: 1 });

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'engine-checkpoint-'));
  modelsDir = path.join(root, 'models');
  cacheDir = path.join(root, 'data', 'model-cache');
  await mkdir(path.join(modelsDir, 'checkpoints'), { recursive: true });
  await mkdir(path.join(modelsDir, 'loras'), { recursive: true });
  await writeTinyCheckpoint(path.join(modelsDir, 'tinyck.safetensors'));
  await writeTinyCheckpoint(path.join(modelsDir, 'checkpoints', 'half.safetensors'), { seed: 3, dtype: 'F16' });
  // Checkpoints carry no tokenizer: the one a club copies into models/tokenizer/ is used.
  await cp(DEMO_TOKENIZER_DIR, path.join(modelsDir, 'tokenizer'), { recursive: true });
  await writeTinyLora(path.join(modelsDir, 'loras', 'Fox-Style.safetensors'));
  await writeTinyLora(path.join(modelsDir, 'loras', 'sd2thing.safetensors'), { context: 1024 });
  await writeFile(path.join(modelsDir, 'evil.ckpt'), PICKLE);
  await writeTinyCheckpoint(path.join(modelsDir, 'broken.safetensors'));
  // A download that stopped early: the header is whole, the last tensors are not.
  const broken = path.join(modelsDir, 'broken.safetensors');
  await truncate(broken, (await stat(broken)).size - 1000);
  await writeTinyModel(path.join(modelsDir, 'onnxtiny'), { generation: 'optimum-new', unet: 'smooth' });
  const diffusers = path.join(modelsDir, 'diffusers-sd15');
  await mkdir(path.join(diffusers, 'unet'), { recursive: true });
  await writeFile(path.join(diffusers, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionPipeline' }));
  await writeFile(path.join(diffusers, 'unet', 'config.json'), JSON.stringify({ cross_attention_dim: 768, sample_size: 64 }));
  await writeFile(path.join(diffusers, 'unet', 'diffusion_pytorch_model.safetensors'), '');
  engine = start();
});

afterAll(async () => {
  await engine?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

function request(overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return { model: 'tinyck', prompt: 'a fox in the snow', negativePrompt: '', width: 64, height: 64, steps: 2, guidance: 5, sampler: 'Euler', seed: 7, count: 1, ...overrides };
}

async function draw(e: WorkerEngine, overrides: Partial<GenerateRequest> = {}): Promise<{ result: GenerateResult; stages: ModelStage[] }> {
  const stages: ModelStage[] = [];
  const result = await e.generate(request(overrides), { onStage: (s) => stages.push(s) });
  return { result, stages };
}

const pixels = (r: GenerateResult): Buffer => Buffer.from(r.images[0]!.rgb);
const preparing = (stages: ModelStage[]) => stages.filter((s) => s.stage === 'preparing');

let plain: Buffer;

describe('checkpoints in the models folder', () => {
  it('lists checkpoints with family, size, dtype, source and fitting LoRAs; unusable files as problems with the reason', async () => {
    const scan = await engine.scanModels();
    const byName = new Map(scan.models.map((m) => [m.name, m]));
    expect([...byName.keys()].sort()).toEqual(['half', 'onnxtiny', 'tinyck']);
    expect(byName.get('tinyck')).toMatchObject({ source: 'checkpoint', family: 'sd1', nativeWidth: 512, storedDtype: 'fp32', loras: ['Fox-Style'] });
    expect(byName.get('half')).toMatchObject({ source: 'checkpoint', family: 'sd1', storedDtype: 'fp16' });
    const problems = new Map(scan.problems.map((p) => [p.name, p.reason]));
    expect(problems.get('evil')).toMatch(/pickle/);
    expect(problems.get('evil')).toMatch(/can run any code/);
    expect(problems.get('evil')).toMatch(/\.safetensors/);
    expect(problems.get('diffusers-sd15')).toMatch(/^diffusers-sd15 has no text_encoder\/ folder; a diffusers model needs unet\/, text_encoder\/ and vae\//);
    expect(problems.get('broken')).toMatch(/broken\.safetensors is cut short.*download the file again/);
    // The LoRA and the tokenizer folder are add-ons, not models or problems.
    expect(problems.has('Fox-Style')).toBe(false);
    expect(problems.has('sd2thing')).toBe(false);
  });

  it('prepares a checkpoint on first use with preparing stages, then loads and draws it', async () => {
    const { result, stages } = await draw(engine);
    const prep = preparing(stages);
    expect(prep.length).toBeGreaterThan(3);
    expect(prep.every((s) => s.model === 'tinyck')).toBe(true);
    const fractions = prep.map((s) => s.fraction!);
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
    expect(fractions.at(-1)).toBe(1);
    expect(stages.at(-1)).toEqual({ stage: 'loading', model: 'tinyck' });
    expect(result.images[0]!.width).toBe(64);
    expect(result.loraHashes).toBeUndefined();
    plain = pixels(result);
    expect(plain.some((v) => v !== plain[0])).toBe(true);
    const entries = await readdir(cacheDir);
    expect(entries.filter((e) => /-g\d+$/.test(e))).toHaveLength(1);
  });

  it('does not prepare or load again on the second job, and draws the same bytes', async () => {
    const { result, stages } = await draw(engine);
    expect(stages).toEqual([]);
    expect(pixels(result).equals(plain)).toBe(true);
  });

  it('after a restart, reuses the cached folder: loading only, same bytes', async () => {
    await engine.close();
    engine = start();
    const { result, stages } = await draw(engine);
    expect(stages).toEqual([{ stage: 'loading', model: 'tinyck' }]);
    expect(pixels(result).equals(plain)).toBe(true);
  });

  it('a cache entry half-written when the process was killed is detected and built again', async () => {
    await engine.close();
    const [entry] = (await readdir(cacheDir)).filter((e) => /-g\d+$/.test(e));
    // What a kill during the build leaves: a partial folder with some files, no manifest, no entry.
    const partial = path.join(cacheDir, `${entry}.partial-99999-deadbeef`);
    await rename(path.join(cacheDir, entry!), partial);
    await rm(path.join(partial, 'complete.json'));
    await rm(path.join(partial, 'unet'), { recursive: true });
    engine = start();
    const { result, stages } = await draw(engine);
    expect(preparing(stages).at(-1)?.fraction).toBe(1);
    expect(pixels(result).equals(plain)).toBe(true);
    const after = await readdir(cacheDir);
    expect(after).toContain(entry);
    expect(after.some((e) => e.includes('.partial-'))).toBe(false);
  });

  it('a job with a LoRA draws differently and reports its hash; the next job without it draws exactly as before', async () => {
    const withLora = await draw(engine, { loras: [{ name: 'fox-style', textEncoderWeight: 1, unetWeight: 1 }] });
    expect(preparing(withLora.stages).length).toBeGreaterThan(0);
    expect(preparing(withLora.stages)[0]!.loras).toEqual(['Fox-Style']);
    // Only the UNet is rebuilt (the LoRA touches nothing else), and the percent still ends at 100.
    expect(preparing(withLora.stages).at(-1)!.fraction).toBe(1);
    expect(pixels(withLora.result).equals(plain)).toBe(false);
    // A1111's LoRA hash: sha256 of the file after its JSON header, first 12 hex digits.
    const file = await readFile(path.join(modelsDir, 'loras', 'Fox-Style.safetensors'));
    const body = file.subarray(8 + Number(file.readBigUInt64LE(0)));
    const loraHash = createHash('sha256').update(body).digest('hex').slice(0, 12);
    expect(withLora.result.loraHashes).toEqual({ 'Fox-Style': loraHash });
    // The info text carries both, as A1111 writes them: the checkpoint's sha256 (10 hex) and the LoRA's.
    const modelHash = createHash('sha256').update(await readFile(path.join(modelsDir, 'tinyck.safetensors'))).digest('hex').slice(0, 10);
    expect(withLora.result.images[0]!.infoText).toContain(`Model hash: ${modelHash}, Model: tinyck`);
    expect(withLora.result.images[0]!.infoText).toContain(`Lora hashes: "Fox-Style: ${loraHash}"`);

    const after = await draw(engine);
    expect(after.stages).toEqual([]);
    expect(pixels(after.result).equals(plain)).toBe(true);
    expect(after.result.loraHashes).toBeUndefined();
    expect(after.result.images[0]!.infoText).not.toContain('Lora hashes');

    // The same LoRA set again: its variant is cached, nothing is prepared.
    const again = await draw(engine, { loras: [{ name: 'Fox-Style', textEncoderWeight: 1, unetWeight: 1 }] });
    expect(preparing(again.stages)).toEqual([]);
    expect(pixels(again.result).equals(pixels(withLora.result))).toBe(true);
    // Asked for by the prompt's tag instead: the same variant, the same picture.
    const tagged = await draw(engine, { prompt: 'a fox in the snow <lora:fox-style:1>' });
    expect(pixels(tagged.result).equals(pixels(withLora.result))).toBe(true);
  });

  it('refuses an unknown LoRA name with close matches, a wrong-family LoRA by name, and LoRAs on an ONNX export', async () => {
    const refusal = async (overrides: Partial<GenerateRequest>): Promise<EngineError> => {
      const err = await engine.generate(request(overrides)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).message).not.toContain('\n');
      return err as EngineError;
    };
    const unknown = await refusal({ loras: [{ name: 'fox-styl', textEncoderWeight: 1, unetWeight: 1 }] });
    expect(unknown.code).toBe('bad_request');
    expect(unknown.message).toMatch(/unknown LoRA "fox-styl".*Fox-Style/);

    const wrong = await refusal({ loras: [{ name: 'sd2thing', textEncoderWeight: 0.8, unetWeight: 0.8 }] });
    expect(wrong.code).toBe('bad_request');
    expect(wrong.message).toMatch(/LoRA "sd2thing" is for SD 2\.x models; this model is SD 1\.x/);

    const onnx = await refusal({ model: 'onnxtiny', loras: [{ name: 'Fox-Style', textEncoderWeight: 1, unetWeight: 1 }] });
    expect(onnx.code).toBe('bad_request');
    expect(onnx.message).toMatch(/"onnxtiny" is an ONNX export/);

    // None of it broke anything: the plain model still draws the same picture.
    expect(pixels((await draw(engine)).result).equals(plain)).toBe(true);
  });

  it('a folder prepared ahead of time without a tokenizer (npm run models -- prepare) gets one on first use', async () => {
    await engine.close();
    const [entry] = (await readdir(cacheDir)).filter((e) => /-g\d+$/.test(e) && !e.includes('-lora-'));
    // What such a build leaves: a complete entry whose manifest lists no tokenizer files.
    await rm(path.join(cacheDir, entry!, 'tokenizer'), { recursive: true });
    const manifestFile = path.join(cacheDir, entry!, 'complete.json');
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as { files: Record<string, number> };
    for (const f of Object.keys(manifest.files)) if (f.startsWith('tokenizer')) delete manifest.files[f];
    await writeFile(manifestFile, JSON.stringify(manifest));
    engine = start();
    const { result, stages } = await draw(engine);
    expect(preparing(stages)).toEqual([]);
    expect(pixels(result).equals(plain)).toBe(true);
  });

  it('a job cancelled while its checkpoint is prepared stops, leaves no half-built folder, and the next job prepares it', async () => {
    const controller = new AbortController();
    const stages: ModelStage[] = [];
    const err = await engine
      .generate(request({ model: 'half' }), {
        signal: controller.signal,
        onStage: (s) => {
          stages.push(s);
          if (s.stage === 'preparing' && (s.fraction ?? 0) > 0.2) controller.abort();
        },
      })
      .then(
        () => undefined,
        (e: unknown) => e as EngineError,
      );
    expect(err?.code).toBe('cancelled');
    expect(stages.some((s) => s.stage === 'loading')).toBe(false);
    expect((await readdir(cacheDir)).some((e) => e.includes('.partial-'))).toBe(false);
    const next = await draw(engine, { model: 'half' });
    expect(preparing(next.stages).at(-1)?.fraction).toBe(1);
    expect(pixels(next.result).equals(plain)).toBe(false);
  });

  it('a checkpoint with CLIP\'s vocabulary and no tokenizer installed draws with the bundled CLIP tokenizer', async () => {
    const bare = path.join(root, 'clip-vocab');
    await mkdir(bare);
    await writeTinyCheckpoint(path.join(bare, 'fullvocab.safetensors'), { vocab: CLIP_VOCAB_SIZE, dtype: 'F16' });
    const e = createEngine({ modelsDir: bare, modelCacheDir: path.join(root, 'clip-vocab-cache'), providers: ['cpu'], threads: 1 });
    try {
      const result = await e.generate(request({ model: 'fullvocab' }));
      expect(result.images).toHaveLength(1);
      const [entry] = (await readdir(path.join(root, 'clip-vocab-cache'))).filter((n) => !n.startsWith('.'));
      const copied = await readFile(path.join(root, 'clip-vocab-cache', entry!, 'tokenizer', 'vocab.json'));
      expect(copied.equals(await readFile(path.join(BUNDLED_CLIP_TOKENIZER, 'vocab.json')))).toBe(true);
    } finally {
      await e.close();
    }
  });

  it('says what to do when no tokenizer fits a checkpoint\'s vocabulary', async () => {
    const bare = path.join(root, 'bare');
    await mkdir(bare);
    await writeTinyCheckpoint(path.join(bare, 'lonely.safetensors'));
    const e = createEngine({ modelsDir: bare, modelCacheDir: path.join(root, 'bare-cache'), providers: ['cpu'], threads: 1 });
    try {
      const err = await e.generate(request({ model: 'lonely' })).then(
        () => undefined,
        (x: unknown) => x as EngineError,
      );
      expect(err?.code).toBe('model');
      expect(err?.message).toMatch(/needs a CLIP tokenizer.*vocab\.json and merges\.txt.*tokenizer/);
    } finally {
      await e.close();
    }
  });
});
