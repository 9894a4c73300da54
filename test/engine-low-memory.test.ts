// Low memory mode (engine.memory "low"): only the UNet session stays resident, the text encoder
// and VAE are created per use; pictures are decoded one by one and, beyond VAE_TILE latents a
// side, in blended tiles. The pictures must be the ones normal mode draws.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../engine/model.js';
import { Pipeline } from '../engine/pipeline.js';
import { scanModels } from '../engine/registry.js';
import type { GenerateRequest, MemoryMode } from '../engine/types.js';
import { decodeTiled, tileStarts, VAE_TILE } from '../engine/vae-tiles.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

let root: string;
let model: LoadedModel;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'engine-low-memory-'));
  await writeTinyModel(path.join(root, 'tiny'), { generation: 'optimum-new', unet: 'smooth', vaeEncoder: false });
  const info = (await scanModels(root)).models[0]!;
  model = await loadModel(info, { providers: ['cpu'], threads: 1, memory: 'low' });
});

afterAll(async () => {
  await model?.release();
  if (root) await rm(root, { recursive: true, force: true });
});

/** Latents with a different value in every cell and channel, so a misplaced tile shows. */
function latents(lh: number, lw: number): Float32Array {
  const x = new Float32Array(4 * lh * lw);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.731) * 2 + Math.cos(i * 0.017);
  return x;
}

describe('tiled VAE decode', () => {
  it('places tiles every tile − overlap, the last one flush with the end', () => {
    expect(tileStarts(64, 64, 16)).toEqual([0]);
    expect(tileStarts(80, 64, 16)).toEqual([0, 16]);
    expect(tileStarts(200, 64, 16)).toEqual([0, 48, 96, 136]);
  });

  it('matches the whole decode of the tiny VAE, which is local to each latent cell, to float rounding', async () => {
    // The tiny fixture VAE maps each latent cell to its 8×8 pixels, so every tile decodes its
    // pixels exactly as the whole decode does; what tiling can change is only where tiles land and
    // how the overlaps are averaged: Σ wᵢ·v / Σ wᵢ with float32 weights is v to a few ulp
    // (|Δ| ≤ 1e-6 for values of magnitude ≤ 4), while one misplaced tile or a missing weight would
    // be off by the size of the values themselves.
    const [lh, lw] = [20, 28];
    const x = latents(lh, lw);
    const whole = await model.holding('decoder', () => model.vaeDecode(x, 1, lh, lw));
    let calls = 0;
    const tiled = await model.holding('decoder', () =>
      decodeTiled(
        (latent, b, h, w) => {
          calls += 1;
          expect([h, w]).toEqual([8, 8]);
          return model.vaeDecode(latent, b, h, w);
        },
        x,
        1,
        lh,
        lw,
        8,
        3,
      ),
    );
    expect(calls).toBe(tileStarts(lh, 8, 3).length * tileStarts(lw, 8, 3).length);
    expect(tiled.length).toBe(whole.length);
    let worst = 0;
    for (let i = 0; i < whole.length; i++) worst = Math.max(worst, Math.abs(tiled[i]! - whole[i]!));
    expect(worst).toBeLessThan(1e-6);
    expect(Math.max(...whole.slice(0, 2000).map(Math.abs))).toBeGreaterThan(0.5);
  });
});

describe('low memory mode', () => {
  async function draw(memory: MemoryMode, request: GenerateRequest): Promise<{ rgb: Uint8Array[]; logs: string[] }> {
    const logs: string[] = [];
    const pipeline = new Pipeline({ modelsDir: root, providers: ['cpu'], threads: 1, memory, log: { info: (_o, msg) => logs.push(msg), warn: () => undefined } });
    try {
      const result = await pipeline.generate(request);
      return { rgb: result.images.map((i) => i.rgb), logs };
    } finally {
      await pipeline.close();
    }
  }

  const request = (side: number): GenerateRequest => ({
    model: 'tiny',
    prompt: 'a lighthouse at dusk',
    negativePrompt: 'blurry',
    width: side,
    height: side,
    steps: 3,
    guidance: 7,
    sampler: 'Euler a',
    seed: 7,
    count: 2,
  });

  it('draws the same pictures as normal mode and logs the memory peak', async () => {
    const normal = await draw('normal', request(64));
    const low = await draw('low', request(64));
    expect(low.rgb).toEqual(normal.rgb);
    expect(low.logs).toContain('memory peak so far');
    expect(normal.logs).not.toContain('memory peak so far');
  });

  it('decodes pictures larger than a tile in tiles, to the same bytes as a whole decode', async () => {
    const side = (VAE_TILE + 8) * 8; // two tiles a side
    const normal = await draw('normal', { ...request(side), steps: 1, count: 1 });
    const low = await draw('low', { ...request(side), steps: 1, count: 1 });
    expect(low.rgb[0]!.length).toBe(side * side * 3);
    let differing = 0;
    for (let i = 0; i < low.rgb[0]!.length; i++) if (Math.abs(low.rgb[0]![i]! - normal.rgb[0]![i]!) > 1) differing += 1;
    expect(differing).toBe(0);
  });
});
