// LoRA variants of a prepared model: a merged UNet, untouched parts linked to the plain folder,
// one cache entry per LoRA set (order-free), reuse on switching back, eviction beyond the budget,
// refusals by name.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareLoraVariant, type LoraChoice, type VariantOptions } from '../engine/checkpoint/lora-variants.js';
import { writeModelFolder, type FolderPlan } from '../engine/checkpoint/model-folder.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import { tinyE2EReference as reference, tinyFolderPlan } from './fixtures/reference/tiny-generation.js';
import { tinySdxlPlan, tinySdxlReference } from './fixtures/reference/tiny-sdxl.js';

const tinyPlan: FolderPlan = tinyFolderPlan;

let dir: string;
let cacheDir: string;
let checkpointPath: string;
let plainDir: string;
const loraA = () => path.join(dir, 'fox-style.safetensors');
const loraB = () => path.join(dir, 'snow.safetensors');

async function writeLora(file: string, modules: Record<string, { down: number[]; up: number[]; alpha?: number }>, layout: 'kohya' | 'peft', seed: number) {
  const [d, u] = layout === 'kohya' ? ['.lora_down.weight', '.lora_up.weight'] : ['.lora_A.weight', '.lora_B.weight'];
  await writeSafetensors(
    file,
    Object.entries(modules).flatMap(([m, s]) => [
      { name: m + d, dtype: 'F32' as const, shape: s.down, data: () => bytesOf(syntheticTensor(m + d, s.down, seed)) },
      { name: m + u, dtype: 'F32' as const, shape: s.up, data: () => bytesOf(syntheticTensor(m + u, s.up, seed)) },
      ...(s.alpha === undefined ? [] : [{ name: `${m}.alpha`, dtype: 'F32' as const, shape: [], data: () => bytesOf(Float32Array.of(s.alpha!)) }]),
    ]),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'lora-variants-'));
  cacheDir = path.join(dir, 'cache');
  checkpointPath = path.join(dir, 'tiny.safetensors');
  await writeSyntheticCheckpoint(checkpointPath, reference.tensors, 0);
  plainDir = path.join(dir, 'plain');
  const weights = await openWeightsFile(checkpointPath);
  try {
    await writeModelFolder(weights, tinyPlan, plainDir);
  } finally {
    await weights.close();
  }
  await writeLora(
    loraA(),
    {
      lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q: { down: [4, 32], up: [32, 4], alpha: 4 },
      lora_unet_down_blocks_0_resnets_0_conv1: { down: [4, 32, 3, 3], up: [32, 4, 1, 1], alpha: 2 },
    },
    'kohya',
    1,
  );
  await writeLora(loraB(), { 'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k': { down: [2, 32], up: [32, 2] } }, 'peft', 2);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const checkpoint = () => ({ path: checkpointPath, sha256: 'ab'.repeat(32), info: { family: 'sd1' as const, prediction: 'epsilon' as const }, plainDir, plan: tinyPlan });
const opts = (maxVariantBytes = 1e12): VariantOptions => ({ cacheDir, maxVariantBytes, familyOf: () => 'sd1' });
const choice = (p: string, w = 0.8): LoraChoice => ({ path: p, textEncoderWeight: w, unetWeight: w });

describe('LoRA variants', () => {
  it('builds a variant whose UNet differs and whose untouched parts are links to the plain folder', async () => {
    const v = await prepareLoraVariant(checkpoint(), [choice(loraA())], opts());
    expect(v.reused).toBe(false);
    expect(v.loraHashes.map((h) => h.name)).toEqual(['fox-style']);
    const [plainUnet, variantUnet] = await Promise.all([readFile(path.join(plainDir, 'unet/model.onnx_data')), readFile(path.join(v.dir, 'unet/model.onnx_data'))]);
    expect(variantUnet.length).toBe(plainUnet.length);
    expect(variantUnet.equals(plainUnet)).toBe(false);
    for (const part of ['text_encoder', 'vae_decoder', 'vae_encoder']) {
      const [a, b] = await Promise.all([stat(path.join(plainDir, part, 'model.onnx_data')), stat(path.join(v.dir, part, 'model.onnx_data'))]);
      expect(b.ino).toBe(a.ino);
    }
    // The plain folder is untouched: a job without LoRAs draws what it drew before.
    const again = await readFile(path.join(plainDir, 'unet/model.onnx_data'));
    expect(again.equals(plainUnet)).toBe(true);
  });

  it('switching back to a LoRA set is a cache hit, whatever the order', async () => {
    const ab = await prepareLoraVariant(checkpoint(), [choice(loraA()), choice(loraB(), 0.5)], opts());
    expect(ab.reused).toBe(false);
    const ba = await prepareLoraVariant(checkpoint(), [choice(loraB(), 0.5), choice(loraA())], opts());
    expect(ba).toMatchObject({ dir: ab.dir, reused: true });
    const a = await prepareLoraVariant(checkpoint(), [choice(loraA())], opts());
    expect(a.reused).toBe(true);
  });

  it('a different weight is a different variant; beyond the budget the least recently used go', async () => {
    const keep = await prepareLoraVariant(checkpoint(), [choice(loraA())], opts());
    const unetBytes = (await stat(path.join(keep.dir, 'unet/model.onnx_data'))).size;
    // Room for about one variant: building another evicts every older one but the new.
    const v = await prepareLoraVariant(checkpoint(), [choice(loraA(), 0.3)], opts(unetBytes * 1.5 + 4 * 1024 * 1024));
    expect(v.reused).toBe(false);
    expect(v.evicted.length).toBeGreaterThanOrEqual(2);
    expect(v.evicted).not.toContain(v.dir);
    await expect(stat(keep.dir)).rejects.toThrow();
    await expect(stat(v.dir)).resolves.toBeDefined();
  });

  it('refuses a LoRA for another family, and a pickled LoRA, by name', async () => {
    const xl = path.join(dir, 'pixel-xl.safetensors');
    await writeLora(xl, { lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k: { down: [4, 2048], up: [640, 4] } }, 'kohya', 3);
    await expect(prepareLoraVariant(checkpoint(), [choice(xl)], { cacheDir, maxVariantBytes: 1e12 })).rejects.toThrow('LoRA "pixel-xl" is for SDXL models; this model is SD 1.x');
    const pt = path.join(dir, 'old.pt');
    await writeFile(pt, Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
    await expect(prepareLoraVariant(checkpoint(), [choice(pt)], opts())).rejects.toThrow(/LoRA "old": .*pickle/i);
  });
});

describe('LoRA variants of an SDXL checkpoint', () => {
  let xlPath: string;
  let xlPlain: string;
  const xl = () => ({ path: xlPath, sha256: 'cd'.repeat(32), info: { family: 'sdxl' as const, prediction: 'epsilon' as const }, plainDir: xlPlain, plan: tinySdxlPlan });
  beforeAll(async () => {
    xlPath = path.join(dir, 'tiny-xl.safetensors');
    await writeSyntheticCheckpoint(xlPath, tinySdxlReference.tensors, 0);
    xlPlain = path.join(dir, 'plain-xl');
    const weights = await openWeightsFile(xlPath);
    try {
      await writeModelFolder(weights, tinySdxlPlan, xlPlain);
    } finally {
      await weights.close();
    }
  });

  it('a kohya SDXL LoRA (LDM UNet names, lora_te2_) rebuilds the UNet and text_encoder_2 and links the rest', async () => {
    const file = path.join(dir, 'xl-style.safetensors');
    await writeLora(
      file,
      {
        // Level 1 of the tiny UNet is 64 wide with 48-wide context; the bigG tower is 32 wide.
        lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k: { down: [4, 48], up: [64, 4], alpha: 4 },
        lora_te2_text_model_encoder_layers_0_self_attn_q_proj: { down: [2, 32], up: [32, 2] },
      },
      'kohya',
      5,
    );
    const v = await prepareLoraVariant(xl(), [choice(file)], { cacheDir, maxVariantBytes: 1e12, familyOf: () => 'sdxl' });
    for (const part of ['unet', 'text_encoder_2']) {
      const [a, b] = await Promise.all([readFile(path.join(xlPlain, part, 'model.onnx_data')), readFile(path.join(v.dir, part, 'model.onnx_data'))]);
      expect(b.equals(a), part).toBe(false);
    }
    for (const part of ['text_encoder', 'vae_decoder', 'vae_encoder']) {
      const [a, b] = await Promise.all([stat(path.join(xlPlain, part, 'model.onnx_data')), stat(path.join(v.dir, part, 'model.onnx_data'))]);
      expect(b.ino, part).toBe(a.ino);
    }
  });

  it('refuses an SD 1.x LoRA by name', async () => {
    const sd1 = path.join(dir, 'anime-15.safetensors');
    await writeLora(sd1, { lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k: { down: [4, 768], up: [320, 4] } }, 'kohya', 6);
    await expect(prepareLoraVariant(xl(), [choice(sd1)], { cacheDir, maxVariantBytes: 1e12 })).rejects.toThrow('LoRA "anime-15" is for SD 1.x models; this model is SDXL');
  });
});
