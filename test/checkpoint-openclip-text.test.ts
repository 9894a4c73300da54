// The CLIP text graph fed from OpenCLIP weights (SD 2.x ViT-H, SDXL bigG layouts: fused
// in_proj, c_fc/c_proj, text_projection), against scripts/reference/openclip_text.py.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openClipTextEncoderWeights } from '../engine/checkpoint/ldm-names.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { buildClipTextGraph, clipTextConfig } from '../engine/onnx-build/clip-text.js';
import { expectMatchesReference, idsTensor, runOnce, writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import sd2 from './fixtures/reference/openclip_text_sd2_tiny.json' with { type: 'json' };
import sdxl from './fixtures/reference/openclip_text_sdxl_g_tiny.json' with { type: 'json' };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ckpt-openclip-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Reference {
  config: { seed: number; heads: number; layers: number };
  tensors: Record<string, number[]>;
  input_ids: number[][];
}

async function encode(reference: Reference, family: 'sd2' | 'sdxl', layers?: number): Promise<Record<string, ort.Tensor>> {
  const cfg = reference.config;
  const file = path.join(dir, `${family}.safetensors`);
  await writeSyntheticCheckpoint(file, reference.tensors, cfg.seed);
  const weights = await openWeightsFile(file);
  try {
    const source = openClipTextEncoderWeights(weights, family);
    const config = clipTextConfig(source, { heads: cfg.heads, activation: 'gelu', ...(layers === undefined ? {} : { layers }) });
    return await runOnce(buildClipTextGraph(source, config), { input_ids: idsTensor(reference.input_ids) });
  } finally {
    await weights.close();
  }
}

describe('OpenCLIP text encoders through the CLIP graph', () => {
  it('SDXL bigG layout: penultimate states, pooled output and text_embeds match PyTorch to 1e-4', async () => {
    const out = await encode(sdxl, 'sdxl');
    expectMatchesReference(out['last_hidden_state']!, sdxl.last_hidden_state, 1e-4);
    expectMatchesReference(out['penultimate_hidden_state']!, sdxl.penultimate_hidden_state, 1e-4);
    expectMatchesReference(out['pooler_output']!, sdxl.pooler_output, 1e-4);
    expectMatchesReference(out['text_embeds']!, sdxl.text_embeds, 1e-4);
  });

  it('SD 2.x ViT-H layout: built one layer short, last_hidden_state is what SD 2.x conditions on', async () => {
    const full = await encode(sd2, 'sd2');
    expectMatchesReference(full['last_hidden_state']!, sd2.last_hidden_state, 1e-4);
    const short = await encode(sd2, 'sd2', sd2.config.layers - 1);
    expectMatchesReference(short['last_hidden_state']!, sd2.sd2_condition, 1e-4);
  });

  it('refuses a file without an OpenCLIP tower by name', async () => {
    const file = path.join(dir, 'empty.safetensors');
    await writeSafetensors(file, [{ name: 'emb_params', dtype: 'F32', shape: [1, 4], data: () => new Uint8Array(16) }]);
    const weights = await openWeightsFile(file);
    expect(() => openClipTextEncoderWeights(weights, 'sdxl', 'empty.safetensors')).toThrow(/empty\.safetensors has no OpenCLIP text encoder/);
    await weights.close();
  });
});
