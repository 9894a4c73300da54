// The engine's own VAE graphs (decoder and encoder), built from LDM-layout weights
// (first_stage_model.* in a checkpoint, top level in a VAE-only file), against the independent
// PyTorch autoencoder in scripts/reference/vae_decoder.py (committed numbers in
// test/fixtures/reference/).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectWeights } from '../engine/checkpoint/detect.js';
import { vaeWeights } from '../engine/checkpoint/ldm-names.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from '../engine/onnx-build/vae.js';
import { expectMatchesReference, runOnce, writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import reference from './fixtures/reference/vae_decoder_tiny.json' with { type: 'json' };

const cfg = reference.config;

async function writeVae(file: string, stripPrefix: boolean): Promise<void> {
  await writeSyntheticCheckpoint(file, reference.tensors, cfg.seed, (name) => (stripPrefix ? name.slice(reference.ldm_prefix.length) : name));
}

async function decode(file: string): Promise<ort.Tensor> {
  const weights = await openWeightsFile(file);
  try {
    const latent = syntheticTensor(reference.latent_name, cfg.latent, cfg.seed);
    const graph = buildVaeDecoderGraph(vaeWeights(weights), { groups: cfg.groups, eps: 1e-6 });
    return (await runOnce(graph, { latent_sample: new ort.Tensor('float32', latent, cfg.latent) }))['sample']!;
  } finally {
    await weights.close();
  }
}

describe('VAE graphs built from LDM weights', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ckpt-vae-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('matches PyTorch to 1e-4 (checkpoint layout, first_stage_model.*)', async () => {
    const file = path.join(dir, 'vae-in-checkpoint.safetensors');
    await writeVae(file, false);
    const sample = await decode(file);
    expectMatchesReference(sample, reference.sample, 1e-4);
  });

  it('reads a VAE-only file (top-level names) to the same result, and detection calls it a VAE', async () => {
    const file = path.join(dir, 'vae-only.safetensors');
    await writeVae(file, true);
    const weights = await openWeightsFile(file);
    expect(detectWeights(weights.header.tensors)).toMatchObject({ kind: 'vae', layout: 'ldm', latentChannels: 4 });
    await weights.close();
    const a = await decode(file);
    const b = await decode(path.join(dir, 'vae-in-checkpoint.safetensors'));
    expect(a.data).toEqual(b.data);
  });

  it('encoder matches PyTorch to 1e-4: mean ‖ log-variance at 1/4 size (tiny VAE: two downsamplings)', async () => {
    const weights = await openWeightsFile(path.join(dir, 'vae-in-checkpoint.safetensors'));
    try {
      const [name, factor, shape] = reference.image_input as [string, number, number[]];
      const image = syntheticTensor(name, shape, cfg.seed).map((v) => v * factor);
      const graph = buildVaeEncoderGraph(vaeWeights(weights), { groups: cfg.groups, eps: 1e-6 });
      const out = await runOnce(graph, { sample: new ort.Tensor('float32', image, shape) });
      expectMatchesReference(out['latent_parameters']!, reference.latent_parameters, 1e-4);
    } finally {
      await weights.close();
    }
  });

  it('refuses weights whose GroupNorm widths do not fit the groups', async () => {
    const weights = await openWeightsFile(path.join(dir, 'vae-only.safetensors'));
    expect(() => buildVaeDecoderGraph(vaeWeights(weights), { groups: 5, eps: 1e-6 })).toThrow(/not divisible into 5 groups/);
    await weights.close();
  });
});
