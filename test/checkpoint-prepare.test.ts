// Turning a checkpoint into a cached model folder: the folder's parts (written with external data,
// tensor by tensor) draw the same picture as the reference generation; the cache reuses complete
// entries, rebuilds damaged ones and never leaves a half-written entry behind; prepareCheckpoint
// refuses what it cannot build with the reason.
import { mkdir, mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedBuild, isCompleteEntry } from '../engine/checkpoint/cache.js';
import { writeModelFolder, type FolderPlan, type FolderProgress } from '../engine/checkpoint/model-folder.js';
import { BUNDLED_CLIP_TOKENIZER } from '../engine/model-resolve.js';
import { ClipTokenizer } from '../engine/tokenizer.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { memoizedSha256, prepareCheckpoint, sha256File } from '../engine/checkpoint/prepare.js';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { expectMatchesReference, textEncoderFeeds, writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import { generateTiny, tinyE2EReference as reference, tinyFolderPlan } from './fixtures/reference/tiny-generation.js';
import openclipSd2 from './fixtures/reference/openclip_text_sd2_tiny.json' with { type: 'json' };
import unetSd2 from './fixtures/reference/unet_sd2_tiny.json' with { type: 'json' };
import vaeTiny from './fixtures/reference/vae_decoder_tiny.json' with { type: 'json' };

let dir: string;
let checkpoint: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ckpt-prepare-'));
  checkpoint = path.join(dir, 'tiny-sd1.safetensors');
  await writeSyntheticCheckpoint(checkpoint, reference.tensors, 0);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const tinyPlan: FolderPlan = tinyFolderPlan;

async function buildTinyFolder(
  out: string,
  onProgress?: (p: FolderProgress) => void,
  signal?: AbortSignal,
  tokenizerDir?: string,
): Promise<void> {
  const weights = await openWeightsFile(checkpoint);
  try {
    await writeModelFolder(weights, tinyPlan, out, {
      ...(onProgress === undefined ? {} : { onProgress }),
      ...(signal === undefined ? {} : { signal }),
      ...(tokenizerDir === undefined ? {} : { tokenizerDir }),
    });
  } finally {
    await weights.close();
  }
}

describe('model folder from a checkpoint', () => {
  it('writes the layout the engine loads, and its parts draw the reference picture', async () => {
    const out = path.join(dir, 'folder');
    const tokenizer = path.join(dir, 'tokenizer-source');
    await mkdir(path.join(tokenizer, 'nested'), { recursive: true });
    await writeFile(path.join(tokenizer, 'vocab.json'), '{}');
    await writeFile(path.join(tokenizer, 'merges.txt'), '#version: 0.2\n');
    const seen = new Set<string>();
    await buildTinyFolder(
      out,
      (p) => {
        if (p.tensorsDone === p.tensorsTotal) seen.add(p.part);
      },
      undefined,
      tokenizer,
    );
    expect([...seen]).toEqual(['text_encoder', 'unet', 'vae_decoder', 'vae_encoder']);
    expect((await readdir(out)).sort()).toEqual(['model_index.json', 'scheduler', 'text_encoder', 'tokenizer', 'unet', 'vae_decoder', 'vae_encoder']);
    expect((await readdir(path.join(out, 'tokenizer'))).sort()).toEqual(['merges.txt', 'vocab.json']);
    expect((await readdir(path.join(out, 'unet'))).sort()).toEqual(['model.onnx', 'model.onnx_data']);
    const open = (part: string) => ort.InferenceSession.create(path.join(out, part, 'model.onnx'));
    const sessions = { text: await open('text_encoder'), unet: await open('unet'), vae: await open('vae_decoder') };
    try {
      expect(sessions.unet.inputNames).toEqual(['sample', 'timestep', 'encoder_hidden_states']);
      const { image } = await generateTiny(sessions);
      expectMatchesReference(image, reference.image, 1e-4);
    } finally {
      for (const s of Object.values(sessions)) await s.release();
    }
  });
});

describe('SD 2.x model folder', () => {
  it('conditions on ln_final of the penultimate OpenCLIP layer; UNet, VAE decoder and encoder as their references', async () => {
    // One checkpoint holding the three SD 2.x-form reference parts under their LDM names.
    const file = path.join(dir, 'tiny-sd2.safetensors');
    await writeSyntheticCheckpoint(file, { ...openclipSd2.tensors, ...unetSd2.tensors, ...vaeTiny.tensors }, 0);
    const out = path.join(dir, 'folder-sd2');
    const weights = await openWeightsFile(file);
    try {
      await writeModelFolder(
        weights,
        {
          family: 'sd2',
          prediction: 'v',
          textHeads: openclipSd2.config.heads,
          unet: { heads: { channels: unetSd2.config.head_channels }, groups: unetSd2.config.groups },
          vae: { groups: vaeTiny.config.groups, eps: 1e-6 },
        },
        out,
        { tokenizerDir: BUNDLED_CLIP_TOKENIZER },
      );
    } finally {
      await weights.close();
    }
    const open = (part: string) => ort.InferenceSession.create(path.join(out, part, 'model.onnx'));
    const text = await open('text_encoder');
    const condition = (await text.run(textEncoderFeeds(text, openclipSd2.input_ids)))['last_hidden_state']!;
    expectMatchesReference(condition, openclipSd2.sd2_condition, 1e-4);
    await text.release();

    const unet = await open('unet');
    const c = unetSd2.config;
    const batch = c.sample[0]!;
    const input = (name: string, factor: number, shape: number[]) =>
      new ort.Tensor('float32', syntheticTensor(name, shape, c.seed).map((v) => v * factor), shape);
    const eps = await unet.run({
      sample: input('sample', 8, c.sample),
      timestep: new ort.Tensor('float32', Float32Array.from(c.timesteps), [batch]),
      encoder_hidden_states: input('context', 4, [batch, c.tokens, c.context_dim]),
    });
    expectMatchesReference(eps['out_sample']!, unetSd2.out_sample, 1e-4);
    await unet.release();

    const vae = await open('vae_decoder');
    const image = await vae.run({ latent_sample: input(vaeTiny.latent_name, 1, vaeTiny.config.latent) });
    expectMatchesReference(image['sample']!, vaeTiny.sample, 1e-4);
    await vae.release();

    const encoder = await open('vae_encoder');
    const [imageName, imageFactor, imageShape] = vaeTiny.image_input as [string, number, number[]];
    const moments = await encoder.run({ sample: input(imageName, imageFactor, imageShape) });
    expectMatchesReference(moments['latent_parameters']!, vaeTiny.latent_parameters, 1e-4);
    await encoder.release();

    const scheduler = JSON.parse(await readFile(path.join(out, 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
    expect(scheduler['prediction_type']).toBe('v_prediction');

    // OpenCLIP pads with "!" (id 0) where CLIP pads with its end token.
    const tokenizer = await ClipTokenizer.load(path.join(out, 'tokenizer'));
    expect(tokenizer.padId).toBe(0);
    expect((await ClipTokenizer.load(BUNDLED_CLIP_TOKENIZER)).padId).toBe(49_407);
  });
});

describe('model cache', () => {
  it('builds once, then reuses the complete entry', async () => {
    const cache = path.join(dir, 'cache-reuse');
    let builds = 0;
    const build = async (tmp: string) => {
      builds++;
      await writeFile(path.join(tmp, 'part.bin'), 'weights');
    };
    const [a, b] = await Promise.all([cachedBuild(cache, 'k1', build), cachedBuild(cache, 'k1', build)]);
    expect(a).toEqual(b);
    expect(a.reused).toBe(false);
    expect(await cachedBuild(cache, 'k1', build)).toMatchObject({ reused: true, dir: path.join(cache, 'k1') });
    expect(builds).toBe(1);
  });

  it('leaves nothing behind when a build fails or is cancelled half-way', async () => {
    const cache = path.join(dir, 'cache-abort');
    const controller = new AbortController();
    const failing = cachedBuild(cache, 'tiny', (tmp) =>
      buildTinyFolder(tmp, (p) => {
        if (p.part === 'unet' && p.tensorsDone === 10) controller.abort(new Error('member cancelled'));
      }, controller.signal),
    );
    await expect(failing).rejects.toThrow(/member cancelled/);
    expect(await readdir(cache)).toEqual([]);
  });

  it('clears a half-written entry left by a crash, and rebuilds an entry whose files were damaged', async () => {
    const cache = path.join(dir, 'cache-crash');
    await mkdir(path.join(cache, 'tiny.partial-99999-deadbeef', 'unet'), { recursive: true });
    await writeFile(path.join(cache, 'tiny.partial-99999-deadbeef', 'unet', 'model.onnx'), 'half');
    const first = await cachedBuild(cache, 'tiny', (tmp) => buildTinyFolder(tmp));
    expect(first.reused).toBe(false);
    expect(await readdir(cache)).toEqual(['tiny']);
    expect(await isCompleteEntry(first.dir, 'tiny')).toBe(true);

    await truncate(path.join(first.dir, 'unet', 'model.onnx_data'), 1000);
    expect(await isCompleteEntry(first.dir, 'tiny')).toBe(false);
    const second = await cachedBuild(cache, 'tiny', (tmp) => buildTinyFolder(tmp));
    expect(second.reused).toBe(false);
    expect(await isCompleteEntry(second.dir, 'tiny')).toBe(true);
  });

  it('refuses keys that are not plain names', () => {
    expect(() => cachedBuild(path.join(dir, 'c'), '../escape', async () => {})).toThrow(/plain file name/);
  });
});

describe('prepareCheckpoint refusals', () => {
  it('names why a file is not a buildable checkpoint', async () => {
    // The tiny checkpoint's 32-wide conditioning matches no real family: refused with that reason.
    await expect(prepareCheckpoint(checkpoint, { cacheDir: path.join(dir, 'p') })).rejects.toMatchObject({
      reason: 'unknown-family',
      message: /tiny-sd1\.safetensors is not a Stable Diffusion checkpoint: its UNet has a 32-wide cross-attention/,
    });
    const lora = path.join(dir, 'style.safetensors');
    await writeSafetensors(lora, [
      { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', dtype: 'F32', shape: [1, 2], data: () => bytesOf(Float32Array.of(1, 2)) },
    ]);
    await expect(prepareCheckpoint(lora, { cacheDir: path.join(dir, 'p') })).rejects.toMatchObject({ message: /is not a Stable Diffusion checkpoint: a LoRA file/ });
    const pickle = path.join(dir, 'old.ckpt');
    await writeFile(pickle, Buffer.from([0x80, 0x02, 0x7d, 0x2e]));
    await expect(prepareCheckpoint(pickle, { cacheDir: path.join(dir, 'p') })).rejects.toMatchObject({ reason: 'pickle' });
  });

  it('hashes the file content (the cache key), streaming', async () => {
    const file = path.join(dir, 'hello.bin.safetensors');
    await writeFile(file, 'hello');
    expect(await sha256File(file)).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
  });

  it('remembers hashes of unchanged files, and hashes again when a file changes', async () => {
    const cacheDir = path.join(dir, 'memo');
    const file = path.join(dir, 'memo.safetensors');
    await writeFile(file, 'hello');
    let reads = 0;
    const count = () => {
      reads++;
    };
    const first = await memoizedSha256(file, cacheDir, count);
    expect(first).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    const before = reads;
    expect(await memoizedSha256(file, cacheDir, count)).toBe(first);
    expect(reads).toBe(before); // nothing read the second time
    await writeFile(file, 'hello, world');
    expect(await memoizedSha256(file, cacheDir, count)).toBe('09ca7e4eaa6e8ae9c7d261167129184883644d07dfba7cbfbc4c8a2e08360d5b');
    expect(reads).toBeGreaterThan(before);
  });
});
