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
import type { GraphBuilder } from '../engine/onnx-build/graph.js';
import { buildUnetGraph } from '../engine/onnx-build/unet.js';
import { buildVaeDecoderGraph } from '../engine/onnx-build/vae.js';
import { expectMatchesReference, writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import { generateTiny, tinyE2EReference as reference } from './fixtures/reference/tiny-generation.js';

const { clip, unet, vae } = reference;

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

  async function session(graph: GraphBuilder): Promise<ort.InferenceSession> {
    const s = await ort.InferenceSession.create(await graph.encode());
    sessions.push(s);
    return s;
  }

  it('matches PyTorch: schedule, latents after every step and the decoded image', async () => {
    const textSource = clipLTextEncoderWeights(weights);
    const { image, sampler } = await generateTiny(
      {
        text: await session(buildClipTextGraph(textSource, clipTextConfig(textSource, { heads: clip.heads }))),
        unet: await session(buildUnetGraph(unetWeights(weights), { heads: { count: unet.heads }, groups: unet.groups })),
        vae: await session(buildVaeDecoderGraph(vaeWeights(weights), { groups: vae.groups, eps: 1e-6 })),
      },
      // Latents reach ~50 here (random weights are no denoiser), so 1e-3 is 2e-5 of their scale;
      // the measured worst is ~1.4e-4.
      (i, latents) => expectMatchesReference(latents, reference.latents_after_step[i]!, 1e-3),
    );
    expect(sampler.timesteps).toEqual(reference.timesteps);
    // The engine's σ table can differ from torch's float32 linspace by an ulp (1e-7 relative).
    reference.sigmas.forEach((s, i) => expect(Math.abs(sampler.sigmas[i]! - s)).toBeLessThan(2e-7 * Math.max(1, s)));
    // Measured worst ~3.8e-6.
    expectMatchesReference(image, reference.image, 1e-4);
  });
});
