// The engine's own UNet graph, built from a checkpoint's model.diffusion_model.* weights, against
// the independent PyTorch UNet in scripts/reference/unet.py (committed numbers in
// test/fixtures/reference/): the SD 1.x form (conv proj, 8-style fixed heads), the SD 2.x form
// (linear proj, fixed head width) and the SDXL form (no attention at the first level, deeper
// transformers, label_emb over pooled text + time ids).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unetWeights } from '../engine/checkpoint/ldm-names.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import type { SafetensorsFile } from '../engine/checkpoint/safetensors.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { buildUnetGraph, type UnetConfig } from '../engine/onnx-build/unet.js';
import { expectMatchesReference, writeSyntheticCheckpoint, type ReferenceSummary } from './fixtures/reference/harness.js';
import sd1 from './fixtures/reference/unet_sd1_tiny.json' with { type: 'json' };
import sd2 from './fixtures/reference/unet_sd2_tiny.json' with { type: 'json' };
import sdxl from './fixtures/reference/unet_sdxl_tiny.json' with { type: 'json' };

interface UnetReference {
  config: {
    seed: number;
    groups: number;
    heads: number | null;
    head_channels: number | null;
    sample: number[];
    tokens: number;
    context_dim: number;
    timesteps: number[];
    adm: { pooled: number; time_dim: number } | null;
    time_ids?: number[][];
  };
  tensors: Record<string, number[]>;
  inputs: Record<'sample' | 'context' | 'pooled', (string | number)[]>;
  out_sample: ReferenceSummary;
}

function unetConfig(r: UnetReference): UnetConfig {
  const c = r.config;
  return {
    heads: c.heads !== null ? { count: c.heads } : { channels: c.head_channels ?? 64 },
    groups: c.groups,
    ...(c.adm === null ? {} : { timeIdDim: c.adm.time_dim }),
  };
}

/** The fixed inputs the reference used, as onnxruntime feeds. */
function feeds(r: UnetReference, timesteps: number[]): Record<string, ort.Tensor> {
  const c = r.config;
  const batch = c.sample[0]!;
  const input = (key: keyof UnetReference['inputs'], shape: number[]): ort.Tensor => {
    const [name, factor] = r.inputs[key] as [string, number];
    return new ort.Tensor('float32', syntheticTensor(name, shape, c.seed).map((v) => v * factor), shape);
  };
  const out: Record<string, ort.Tensor> = {
    sample: input('sample', c.sample),
    timestep: new ort.Tensor('float32', Float32Array.from(timesteps), [batch]),
    encoder_hidden_states: input('context', [batch, c.tokens, c.context_dim]),
  };
  if (c.adm !== null) {
    out['text_embeds'] = input('pooled', [batch, c.adm.pooled]);
    out['time_ids'] = new ort.Tensor('float32', Float32Array.from((c.time_ids ?? []).flat()), [batch, 6]);
  }
  return out;
}

const cases: [string, UnetReference][] = [
  ['SD 1.x', sd1],
  ['SD 2.x', sd2],
  ['SDXL', sdxl],
];

describe.each(cases)('%s UNet graph built from a checkpoint', (_family, reference) => {
  let dir: string;
  let weights: SafetensorsFile;
  let session: ort.InferenceSession;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ckpt-unet-'));
    const file = path.join(dir, 'unet.safetensors');
    await writeSyntheticCheckpoint(file, reference.tensors, reference.config.seed);
    weights = await openWeightsFile(file);
    session = await ort.InferenceSession.create(await buildUnetGraph(unetWeights(weights), unetConfig(reference)).encode());
  });
  afterAll(async () => {
    await session?.release();
    await weights?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const run = async (timesteps: number[]) => (await session.run(feeds(reference, timesteps)))['out_sample']!;

  it('matches PyTorch to 1e-4 (fractional timesteps included)', async () => {
    const worst = expectMatchesReference(await run(reference.config.timesteps), reference.out_sample, 1e-4);
    expect(worst).toBeLessThan(1e-5);
  });

  it('the comparison is sensitive: another timestep moves the output far beyond the tolerance', async () => {
    const a = (await run(reference.config.timesteps)).data as Float32Array;
    const b = (await run(reference.config.timesteps.map((t) => t - 50))).data as Float32Array;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    expect(diff).toBeGreaterThan(100 * 1e-4);
  });

  it('refuses weights whose blocks do not pair up, naming the problem', () => {
    const tensors = new Map(weights.header.tensors);
    for (const k of [...tensors.keys()]) if (k.includes('output_blocks.8.')) tensors.delete(k);
    const partial = { header: { tensors }, readFloat32: (n: string) => weights.readFloat32(n) };
    expect(() => buildUnetGraph(unetWeights(partial), unetConfig(reference))).toThrow(/skip connections are left unused/);
  });
});

describe('SDXL added conditioning', () => {
  it('declares text_embeds and time_ids inputs sized from label_emb', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ckpt-unet-xl-'));
    try {
      const file = path.join(dir, 'unet.safetensors');
      await writeSyntheticCheckpoint(file, sdxl.tensors, sdxl.config.seed);
      const weights = await openWeightsFile(file);
      const session = await ort.InferenceSession.create(await buildUnetGraph(unetWeights(weights), unetConfig(sdxl)).encode());
      expect(session.inputNames).toEqual(['sample', 'timestep', 'encoder_hidden_states', 'text_embeds', 'time_ids']);
      // Different size/crop ids are a different picture request: the output must move.
      const base = feeds(sdxl, sdxl.config.timesteps);
      const other = { ...base, time_ids: new ort.Tensor('float32', Float32Array.from([64, 64, 0, 0, 64, 64, 64, 64, 0, 0, 64, 64]), [2, 6]) };
      const a = (await session.run(base))['out_sample']!.data as Float32Array;
      const b = (await session.run(other))['out_sample']!.data as Float32Array;
      expect(a.subarray(0, 256)).toEqual(b.subarray(0, 256)); // first sample's ids are unchanged
      expect(Math.max(...a.subarray(256).map((v, i) => Math.abs(v - b[256 + i]!)))).toBeGreaterThan(1e-3);
      await session.release();
      await weights.close();
      // Time ids too wide for the added embedding are refused before anything is built.
      const w2 = await openWeightsFile(file);
      expect(() => buildUnetGraph(unetWeights(w2), { ...unetConfig(sdxl), timeIdDim: 256 })).toThrow(/too few for 6 time ids/);
      await w2.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
