// Diffusers-format folders (unet/ + config.json, text_encoder/, vae/, tokenizer/, scheduler/) read
// through the checkpoint builders: the diffusers → LDM name maps invert an independent LDM →
// diffusers conversion on the full SD 1.5 layout, a tiny folder written from the synthetic weights
// draws exactly the picture of the same weights as a single-file checkpoint, and what cannot be
// used is refused with the reason.
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDiffusersWeights, prepareDiffusersFolder } from '../engine/checkpoint/diffusers-folder.js';
import { unetDiffusersToLdm, vaeDecoderLevels, vaeDiffusersToLdm } from '../engine/checkpoint/diffusers-names.js';
import { writeModelFolder } from '../engine/checkpoint/model-folder.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { bytesOf, writeSafetensors, type TensorToWrite } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import type { TensorReader } from '../engine/onnx-build/weights.js';
import { expectMatchesReference, writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import { generateTiny, tinyE2EReference as reference, tinyFolderPlan } from './fixtures/reference/tiny-generation.js';
import sd15 from './fixtures/reference/sd15_layout.json' with { type: 'json' };
import { ldmDecoderLevels, LDM_UNET, LDM_VAE, unetToDiffusers, vaeToDiffusers, writeDiffusersFolder, type DiffusersFolderOptions } from './fixtures/tiny-diffusers.js';

const UNET = LDM_UNET;
const VAE = LDM_VAE;

describe('diffusers → LDM names', () => {
  const names = Object.keys(sd15.tensors);
  it('invert the LDM → diffusers conversion for every SD 1.5 UNet tensor, giving the real diffusers names', () => {
    const ldm = names.filter((n) => n.startsWith(UNET)).map((n) => n.slice(UNET.length));
    const toDiffusers = unetToDiffusers(ldm);
    const diffusers = [...toDiffusers.values()];
    expect(new Set(diffusers).size).toBe(686);
    for (const real of [
      'conv_in.weight',
      'time_embedding.linear_1.weight',
      'down_blocks.0.resnets.0.norm1.weight',
      'down_blocks.1.resnets.0.conv_shortcut.weight',
      'down_blocks.2.downsamplers.0.conv.weight',
      'mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight',
      'up_blocks.0.upsamplers.0.conv.weight',
      'up_blocks.1.upsamplers.0.conv.weight',
      'up_blocks.3.attentions.2.proj_out.weight',
      'conv_norm_out.weight',
    ]) {
      expect(diffusers).toContain(real);
    }
    const { map, unmapped } = unetDiffusersToLdm(diffusers);
    expect(unmapped).toEqual([]);
    for (const [l, d] of toDiffusers) expect(map.get(d)).toBe(l);
  });

  it('invert it for every SD 1.5 VAE tensor (old query/key/value names too), reversing the decoder levels', () => {
    const ldm = names.filter((n) => n.startsWith(VAE)).map((n) => n.slice(VAE.length));
    const levels = ldmDecoderLevels(ldm);
    const diffusers = ldm.map((n) => vaeToDiffusers(n, levels));
    expect(new Set(diffusers).size).toBe(248);
    expect(diffusers).toContain('decoder.up_blocks.0.resnets.2.conv2.weight');
    expect(vaeDecoderLevels(diffusers)).toBe(4);
    diffusers.forEach((d, i) => expect(vaeDiffusersToLdm(d, 4)).toBe(ldm[i]));
    expect(vaeDiffusersToLdm('decoder.up_blocks.0.resnets.2.conv2.weight', 4)).toBe('decoder.up.3.block.2.conv2.weight');
    expect(vaeDiffusersToLdm('encoder.mid_block.attentions.0.query.weight', 4)).toBe('encoder.mid.attn_1.q.weight');
    expect(vaeDiffusersToLdm('encoder.mid_block.attentions.0.proj_attn.bias', 4)).toBe('encoder.mid.attn_1.proj_out.bias');
    expect(vaeDiffusersToLdm('decoder.up_blocks.0.attentions.0.to_q.weight', 4)).toBeUndefined();
  });
});

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'diffusers-folder-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * The tiny SD 1.x weights written as a diffusers folder (values generated under their LDM names).
 * Its config says SD 1.x (768-wide context) as a real one would; the tests that build it pass the
 * tiny plan, which stands in for the check of the weights against the config.
 */
const tinyTensors: TensorToWrite[] = Object.entries(reference.tensors as Record<string, number[]>).map(([name, shape]) => ({
  name,
  dtype: 'F32' as const,
  shape,
  data: () => bytesOf(syntheticTensor(name, shape, 0)),
}));
const writeTinyDiffusers = (folder: string, opts: Pick<DiffusersFolderOptions, 'skip'> = {}): Promise<void> => writeDiffusersFolder(folder, tinyTensors, opts);

async function drawFolder(folder: string): Promise<ort.Tensor> {
  const open = (part: string) => ort.InferenceSession.create(path.join(folder, part, 'model.onnx'));
  const sessions = { text: await open('text_encoder'), unet: await open('unet'), vae: await open('vae_decoder') };
  try {
    return (await generateTiny(sessions)).image;
  } finally {
    for (const s of Object.values(sessions)) await s.release();
  }
}

async function buildFrom(weights: TensorReader & { close(): Promise<void> }, out: string): Promise<void> {
  try {
    await writeModelFolder(weights, tinyFolderPlan, out);
  } finally {
    await weights.close();
  }
}

describe('a diffusers folder', () => {
  it('draws exactly the picture of the same weights given as an LDM checkpoint (and the PyTorch reference)', async () => {
    const folder = path.join(dir, 'tiny-diffusers');
    await writeTinyDiffusers(folder);
    const checkpoint = path.join(dir, 'tiny.safetensors');
    await writeSyntheticCheckpoint(checkpoint, reference.tensors, 0);

    await buildFrom(await openDiffusersWeights(folder, { unetWeights: 'unet/diffusion_pytorch_model.safetensors' }), path.join(dir, 'from-diffusers'));
    await buildFrom(await openWeightsFile(checkpoint), path.join(dir, 'from-checkpoint'));
    const a = await drawFolder(path.join(dir, 'from-diffusers'));
    const b = await drawFolder(path.join(dir, 'from-checkpoint'));
    expect(a.data).toEqual(b.data);
    expectMatchesReference(a, reference.image, 1e-4);
  });

  it('is prepared into the cache once, with its own tokenizer, and reused on the second call', async () => {
    const folder = path.join(dir, 'tiny-prepared');
    await writeTinyDiffusers(folder);
    const cacheDir = path.join(dir, 'cache');
    const stages = new Set<string>();
    const first = await prepareDiffusersFolder(folder, { cacheDir, plan: tinyFolderPlan, onProgress: (p) => stages.add(p.stage) });
    expect(first.reused).toBe(false);
    expect([...stages]).toEqual(['hashing', 'building']);
    expect(first.info).toMatchObject({ kind: 'diffusers', prediction: 'epsilon' });
    expect((await readdir(path.join(first.dir, 'tokenizer'))).sort()).toEqual(['merges.txt', 'vocab.json']);
    expectMatchesReference(await drawFolder(first.dir), reference.image, 1e-4);
    const again = await prepareDiffusersFolder(folder, { cacheDir, plan: tinyFolderPlan });
    expect(again).toMatchObject({ reused: true, dir: first.dir });
    const half = await prepareDiffusersFolder(folder, { cacheDir, plan: tinyFolderPlan, form: { precision: 'fp16-storage', attention: 'fused' } });
    expect(half.dir).not.toBe(first.dir);
  });

  it('refuses what it cannot use, with the reason', async () => {
    const cacheDir = path.join(dir, 'cache-refusals');
    const noVae = path.join(dir, 'no-vae');
    await writeTinyDiffusers(noVae, { skip: 'vae' });
    await expect(prepareDiffusersFolder(noVae, { cacheDir, plan: tinyFolderPlan })).rejects.toThrow(/no-vae has no vae\/ folder/);

    const pickled = path.join(dir, 'pickled');
    await writeTinyDiffusers(pickled, { skip: 'text_encoder' });
    await mkdir(path.join(pickled, 'text_encoder'));
    await writeFile(path.join(pickled, 'text_encoder', 'pytorch_model.bin'), Buffer.from([0x80, 0x02, 0x7d, 0x2e]));
    await expect(prepareDiffusersFolder(pickled, { cacheDir, plan: tinyFolderPlan })).rejects.toMatchObject({
      reason: 'pickle',
      message: /pickled\/text_encoder: pytorch_model\.bin .*pickle/,
    });

    await expect(prepareDiffusersFolder(path.join(dir, 'pickled', 'tokenizer'), { cacheDir })).rejects.toThrow(/is not a diffusers model folder: it has no unet\/config.json/);

    // The config claims SD 1.x, the weights are not (32-wide cross-attention): refused, naming both.
    const claims = path.join(dir, 'claims-sd1');
    await writeTinyDiffusers(claims);
    await expect(prepareDiffusersFolder(claims, { cacheDir })).rejects.toThrow(/describes an SD1 model, but its weights are .*32-wide cross-attention/);

    // A UNet tensor no SD 1.x/2.x UNet has is named, not dropped.
    const extra = path.join(dir, 'extra');
    await writeTinyDiffusers(extra, { skip: 'unet' });
    await mkdir(path.join(extra, 'unet'));
    await writeSafetensors(path.join(extra, 'unet', 'diffusion_pytorch_model.safetensors'), [
      { name: 'conv_in.weight', dtype: 'F32', shape: [1], data: () => bytesOf(Float32Array.of(0)) },
      { name: 'add_embedding.linear_1.weight', dtype: 'F32', shape: [1], data: () => bytesOf(Float32Array.of(0)) },
    ]);
    await writeFile(path.join(extra, 'unet', 'config.json'), JSON.stringify({ cross_attention_dim: 768 }));
    await expect(prepareDiffusersFolder(extra, { cacheDir })).rejects.toThrow(/extra\/unet has tensors no SD 1\.x\/2\.x UNet has \(add_embedding\.linear_1\.weight\)/);
  });
});
