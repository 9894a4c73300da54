// The full-size SD 1.5 layout (1130 tensors, names and shapes from scripts/reference/sd15_layout.py;
// parameter counts 123,060,480 text / 859,520,964 UNet / 83,653,863 VAE — SD 1.5's own):
// detection calls it SD 1.x, and each graph builder consumes every tensor of its part exactly
// once. Shapes only — no weights are read.
import { describe, expect, it } from 'vitest';
import { detectWeights } from '../engine/checkpoint/detect.js';
import { clipLTextEncoderWeights, unetWeights, vaeWeights } from '../engine/checkpoint/ldm-names.js';
import { buildClipTextGraph, clipTextConfig } from '../engine/onnx-build/clip-text.js';
import { buildUnetGraph, UNET_HEADS } from '../engine/onnx-build/unet.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from '../engine/onnx-build/vae.js';
import type { GraphBuilder } from '../engine/onnx-build/graph.js';
import layout from './fixtures/reference/sd15_layout.json' with { type: 'json' };

const tensors = new Map(Object.entries(layout.tensors).map(([name, shape]) => [name, { shape, dtype: 'F16' }]));
const reader = {
  header: { tensors },
  readFloat32: (): Promise<Float32Array> => Promise.reject(new Error('shapes only')),
};

function weightNames(g: GraphBuilder, prefix: string): string[] {
  // Constants the builders add themselves (masks, shapes, group-norm helpers) carry no checkpoint name.
  return g.initializerList.map((i) => prefix + i.name).filter((n) => tensors.has(n));
}

function partNames(prefix: string): string[] {
  return [...tensors.keys()].filter((k) => k.startsWith(prefix));
}

describe('full-size SD 1.5 layout', () => {
  it('is detected as SD 1.x at 512², fp16, with all its parts', () => {
    expect(detectWeights(tensors)).toMatchObject({
      kind: 'checkpoint',
      family: 'sd1',
      contextDim: 768,
      nativeSize: 512,
      dtype: 'fp16',
      parts: { unet: true, textEncoders: 1, vae: true },
      supported: true,
    });
  });

  it('every text encoder, UNet and VAE tensor is used exactly once by its graphs', () => {
    const text = clipLTextEncoderWeights(reader);
    const config = clipTextConfig(text);
    expect(config).toMatchObject({ width: 768, layers: 12, heads: 12, intermediate: 3072 });
    const parts: [GraphBuilder[], string][] = [
      [[buildClipTextGraph(text, config)], 'cond_stage_model.transformer.text_model.'],
      [[buildUnetGraph(unetWeights(reader), UNET_HEADS.sd1)], 'model.diffusion_model.'],
      [[buildVaeDecoderGraph(vaeWeights(reader)), buildVaeEncoderGraph(vaeWeights(reader))], 'first_stage_model.'],
    ];
    for (const [graphs, prefix] of parts) {
      const used = graphs.flatMap((g) => weightNames(g, prefix));
      expect(new Set(used).size).toBe(used.length);
      expect(used.sort()).toEqual(partNames(prefix).sort());
    }
  });
});
