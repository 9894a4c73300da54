// The engine's own UNet graph (SD 1.x layout), built from a checkpoint's model.diffusion_model.*
// weights, against the independent PyTorch UNet in scripts/reference/unet.py (committed numbers
// in test/fixtures/reference/).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unetWeights } from '../engine/checkpoint/ldm-names.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import type { SafetensorsFile } from '../engine/checkpoint/safetensors.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { buildUnetGraph } from '../engine/onnx-build/unet.js';
import { expectMatchesReference, writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import reference from './fixtures/reference/unet_sd1_tiny.json' with { type: 'json' };

const cfg = reference.config;
const [batch] = cfg.sample as [number, number, number, number];

function scaled(name: string, shape: number[], factor: number): Float32Array {
  return syntheticTensor(name, shape, cfg.seed).map((v) => v * factor);
}

describe('UNet graph built from an SD 1.x-layout checkpoint', () => {
  let dir: string;
  let weights: SafetensorsFile;
  let session: ort.InferenceSession;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ckpt-unet-'));
    const file = path.join(dir, 'unet.safetensors');
    await writeSyntheticCheckpoint(file, reference.tensors, cfg.seed);
    weights = await openWeightsFile(file);
    const graph = buildUnetGraph(unetWeights(weights), { heads: { count: cfg.heads }, groups: cfg.groups });
    session = await ort.InferenceSession.create(await graph.encode());
  });
  afterAll(async () => {
    await session?.release();
    await weights?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function run(timesteps: number[]): Promise<ort.Tensor> {
    const [sampleName, sampleScale] = reference.inputs.sample as [string, number];
    const [contextName, contextScale] = reference.inputs.context as [string, number];
    const contextShape = [batch, cfg.tokens, cfg.context_dim];
    const out = await session.run({
      sample: new ort.Tensor('float32', scaled(sampleName, cfg.sample, sampleScale), cfg.sample),
      timestep: new ort.Tensor('float32', Float32Array.from(timesteps), [batch]),
      encoder_hidden_states: new ort.Tensor('float32', scaled(contextName, contextShape, contextScale), contextShape),
    });
    return out['out_sample']!;
  }

  it('matches PyTorch to 1e-4 (fractional timesteps included)', async () => {
    const worst = expectMatchesReference(await run(cfg.timesteps), reference.out_sample, 1e-4);
    expect(worst).toBeLessThan(1e-5);
  });

  it('the comparison is sensitive: another timestep moves the output far beyond the tolerance', async () => {
    const a = (await run(cfg.timesteps)).data as Float32Array;
    const b = (await run(cfg.timesteps.map((t) => t - 50))).data as Float32Array;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    expect(diff).toBeGreaterThan(100 * 1e-4);
  });

  it('refuses weights whose blocks do not pair up, naming the problem', () => {
    const tensors = new Map(weights.header.tensors);
    for (const k of [...tensors.keys()]) if (k.includes('output_blocks.8.')) tensors.delete(k);
    const partial = { header: { tensors }, readFloat32: (n: string) => weights.readFloat32(n) };
    expect(() => buildUnetGraph(unetWeights(partial), { heads: { count: cfg.heads }, groups: cfg.groups })).toThrow(
      /skip connections are left unused/,
    );
  });
});
