// A whole txt2img generation from one tiny SD 1.x-layout checkpoint through the engine's own
// graphs — CLIP text encoder (prompt + empty negative), 4 Euler steps with guidance 7.5 using the
// engine's sampler and torch-exact noise, VAE decode — against the same generation in PyTorch
// (scripts/reference/e2e_sd1.py, diffusers' pipeline arithmetic).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clipLTextEncoderWeights, unetWeights, vaeWeights } from '../engine/checkpoint/ldm-names.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import type { SafetensorsFile } from '../engine/checkpoint/safetensors.js';
import { buildClipTextGraph, clipTextConfig } from '../engine/onnx-build/clip-text.js';
import { buildUnetGraph } from '../engine/onnx-build/unet.js';
import { buildVaeDecoderGraph } from '../engine/onnx-build/vae-decoder.js';
import { TorchCpuGenerator } from '../engine/rng.js';
import { createSampler, parseSchedulerConfig } from '../engine/schedulers.js';
import { expectMatchesReference, idsTensor, writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import reference from './fixtures/reference/e2e_sd1_tiny.json' with { type: 'json' };

const { clip, unet, vae, run } = reference;

describe('a 4-step Euler generation from a checkpoint, end to end', () => {
  let dir: string;
  let weights: SafetensorsFile;
  const sessions: ort.InferenceSession[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ckpt-e2e-'));
    const file = path.join(dir, 'tiny-sd1.safetensors');
    await writeSyntheticCheckpoint(file, reference.tensors, 0);
    weights = await openWeightsFile(file);
  });
  afterAll(async () => {
    for (const s of sessions) await s.release();
    await weights?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function session(graph: { encode(): Promise<Uint8Array> }): Promise<ort.InferenceSession> {
    const s = await ort.InferenceSession.create(await graph.encode());
    sessions.push(s);
    return s;
  }

  it('matches PyTorch: latents after every step and the decoded image', async () => {
    const textSource = clipLTextEncoderWeights(weights);
    const text = await session(buildClipTextGraph(textSource, clipTextConfig(textSource, { heads: clip.heads })));
    const denoiser = await session(buildUnetGraph(unetWeights(weights), { heads: { count: unet.heads }, groups: unet.groups }));
    const decoder = await session(buildVaeDecoderGraph(vaeWeights(weights), { groups: vae.groups, eps: 1e-6 }));

    const context = (await text.run({ input_ids: idsTensor(reference.input_ids) }))['last_hidden_state']!;
    const sampler = createSampler('Euler', parseSchedulerConfig(run.scheduler), run.steps);
    expect(sampler.timesteps).toEqual(reference.timesteps);
    // The engine's σ table can differ from torch's float32 linspace by an ulp (1e-7 relative).
    reference.sigmas.forEach((s, i) => expect(Math.abs(sampler.sigmas[i]! - s)).toBeLessThan(2e-7 * Math.max(1, s)));

    const latentShape = unet.sample;
    const n = latentShape.reduce((a, b) => a * b, 1);
    let latents = new TorchCpuGenerator(run.seed).randn(n).map((v) => v * sampler.initNoiseSigma);
    for (let i = 0; i < sampler.timesteps.length; i++) {
      const scale = sampler.inputScale(i);
      const doubled = new Float32Array(2 * n);
      for (let k = 0; k < n; k++) doubled[k] = doubled[n + k] = latents[k]! * scale;
      const t = sampler.timesteps[i]!;
      const out = await denoiser.run({
        sample: new ort.Tensor('float32', doubled, [2, ...latentShape.slice(1)]),
        timestep: new ort.Tensor('float32', Float32Array.of(t, t), [2]),
        encoder_hidden_states: context,
      });
      const eps = out['out_sample']!.data as Float32Array;
      const guided = new Float32Array(n);
      for (let k = 0; k < n; k++) guided[k] = eps[k]! + run.guidance * (eps[n + k]! - eps[k]!);
      latents = sampler.step(i, latents, guided, () => {
        throw new Error('Euler draws no noise');
      }).slice();
      // Latents reach ~50 here (random weights are no denoiser), so 1e-3 is 2e-5 of their scale;
      // the measured worst is ~1.4e-4.
      expectMatchesReference(new ort.Tensor('float32', latents, latentShape), reference.latents_after_step[i]!, 1e-3);
    }
    const image = await decoder.run({
      latent_sample: new ort.Tensor('float32', latents.map((v) => v / run.scaling_factor), latentShape),
    });
    // Measured worst ~3.8e-6.
    expectMatchesReference(image['sample']!, reference.image, 1e-4);
  });
});
