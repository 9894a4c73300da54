// The full-size SDXL base layout (2513 tensors, names and shapes from
// scripts/reference/sdxl_layout.py; parameter counts 123,060,480 CLIP-L / 694,659,840 bigG /
// 2,567,463,684 UNet / 83,653,863 VAE — SDXL base's own): detection calls it SDXL at 1024², and
// the graph builders consume every tensor of CLIP-L, the UNet and the VAE exactly once and build
// bigG at its real size. Shapes only — no weights are read.
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectWeights } from '../engine/checkpoint/detect.js';
import { clipLTextEncoderWeights, openClipTextEncoderWeights, unetWeights, vaeWeights } from '../engine/checkpoint/ldm-names.js';
import { buildClipTextGraph, clipTextConfig } from '../engine/onnx-build/clip-text.js';
import type { GraphBuilder } from '../engine/onnx-build/graph.js';
import { buildUnetGraph, UNET_HEADS } from '../engine/onnx-build/unet.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from '../engine/onnx-build/vae.js';
import { encodeSafetensorsHeader } from '../engine/checkpoint/safetensors-write.js';
import { scanModels } from '../engine/registry.js';
import layout from './fixtures/reference/sdxl_layout.json' with { type: 'json' };

const tensors = new Map(Object.entries(layout.tensors).map(([name, shape]) => [name, { shape, dtype: 'F16' }]));
const reader = {
  header: { tensors },
  readFloat32: (): Promise<Float32Array> => Promise.reject(new Error('shapes only')),
};

const weightNames = (g: GraphBuilder, prefix: string): string[] => g.initializerList.map((i) => prefix + i.name).filter((n) => tensors.has(n));
const partNames = (prefix: string): string[] => [...tensors.keys()].filter((k) => k.startsWith(prefix));

describe('full-size SDXL base layout', () => {
  it('is detected as SDXL at 1024², fp16, with both text encoders and a VAE', () => {
    expect(layout.parameters).toEqual({
      'conditioner.embedders.0': 123060480,
      'conditioner.embedders.1': 694659840,
      'model.diffusion_model': 2567463684,
      first_stage_model: 83653863,
    });
    expect(detectWeights(tensors)).toMatchObject({
      kind: 'checkpoint',
      family: 'sdxl',
      contextDim: 2048,
      nativeSize: 1024,
      dtype: 'fp16',
      parts: { unet: true, textEncoders: 2, vae: true },
      supported: true,
    });
  });

  it('CLIP-L, UNet and VAE tensors are each used exactly once; bigG builds at 1280 wide, 32 layers, 20 heads, with text_embeds', () => {
    const clipL = clipLTextEncoderWeights(reader);
    const parts: [GraphBuilder[], string][] = [
      [[buildClipTextGraph(clipL, clipTextConfig(clipL))], 'conditioner.embedders.0.transformer.text_model.'],
      [[buildUnetGraph(unetWeights(reader), UNET_HEADS.sdxl)], 'model.diffusion_model.'],
      [[buildVaeDecoderGraph(vaeWeights(reader)), buildVaeEncoderGraph(vaeWeights(reader))], 'first_stage_model.'],
    ];
    for (const [graphs, prefix] of parts) {
      const used = graphs.flatMap((g) => weightNames(g, prefix));
      expect(new Set(used).size).toBe(used.length);
      expect(used.sort()).toEqual(partNames(prefix).sort());
    }
    const bigG = openClipTextEncoderWeights(reader, 'sdxl');
    const config = clipTextConfig(bigG, { activation: 'gelu' });
    expect(config).toMatchObject({ width: 1280, layers: 32, heads: 20, intermediate: 5120 });
    const graph = buildClipTextGraph(bigG, config);
    // Per layer: q, k, v, out (weight + bias), two LayerNorms, fc1, fc2 = 16; plus embeddings, final LN, projection.
    const named = graph.initializerList.filter((i) => bigG.shape(i.name) !== undefined).length;
    expect(named).toBe(32 * 16 + 2 + 2 + 1);
  });
});

describe('full-size SDXL checkpoints in models/', () => {
  /** Real header, zero weights: a sparse file that takes no disk. */
  async function sparseSdxl(file: string): Promise<void> {
    const list = Object.entries(layout.tensors as Record<string, number[]>).map(([name, shape]) => ({ name, dtype: 'F16' as const, shape, data: () => new Uint8Array(0) }));
    const header = encodeSafetensorsHeader(list);
    await writeFile(file, header);
    await truncate(file, header.length + list.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1) * 2, 0));
  }

  it('are listed as SDXL at 1024²; a Lightning fine-tune, told by its name, gets 4 Turbo steps without guidance', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sdxl-models-'));
    try {
      await sparseSdxl(path.join(dir, 'base-xl.safetensors'));
      await sparseSdxl(path.join(dir, 'dreamshaper-xl-lightning.safetensors'));
      const scan = await scanModels(dir);
      expect(scan.problems).toEqual([]);
      const byName = new Map(scan.models.map((m) => [m.name, m]));
      expect(byName.get('base-xl')).toMatchObject({ family: 'sdxl', nativeWidth: 1024, nativeHeight: 1024, defaultSampler: 'DPM++ 2M Karras', defaultSteps: 20, defaultGuidance: 7, source: 'checkpoint' });
      expect(byName.get('dreamshaper-xl-lightning')).toMatchObject({ family: 'sdxl', defaultSampler: 'Turbo', defaultSteps: 4, defaultGuidance: 0 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
