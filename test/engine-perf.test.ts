// The per-step shortcuts of issue 12 must not change a single number: noise drawn ahead on the
// helper thread equals noise drawn in place, across jobs, when a job stops early, and when the
// helper is gone (the stream continues on the calling thread where it left off).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { float16BitsToFloat32, float16BitToFloat32BitsReference } from '../engine/fp16.js';
import { drawHere, NoiseAhead } from '../engine/noise-ahead.js';
import { Pipeline, type PipelineOptions } from '../engine/pipeline.js';
import { TorchCpuGenerator } from '../engine/rng.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

const BLOCK = 4 * 8 * 8;

function generators(seeds: number[], preDraw = 1): TorchCpuGenerator[] {
  return seeds.map((seed) => {
    const g = new TorchCpuGenerator(seed);
    for (let d = 0; d < preDraw; d++) g.randn(BLOCK); // the starting latent, as the pipeline draws it
    return g;
  });
}

function expected(seeds: number[], blocks: number): Float32Array[] {
  const here = drawHere(generators(seeds), BLOCK);
  return Array.from({ length: blocks }, () => here.next().slice());
}

let ahead: NoiseAhead | undefined;
afterEach(async () => {
  await ahead?.close();
  ahead = undefined;
});

describe('noise drawn ahead on the helper thread', () => {
  it('gives exactly the blocks drawn in place, for one picture and for a batch', () => {
    ahead = new NoiseAhead();
    for (const seeds of [[7], [7, 8, 9, 10]]) {
      const want = expected(seeds, 12);
      const stream = ahead.stream(generators(seeds), BLOCK, 12);
      for (let b = 0; b < 12; b++) expect(stream.next()).toEqual(want[b]);
      expect(stream.ahead).toBe(true);
      stream.close();
    }
  });

  it('serves the next job correctly after a job stopped early (cancelled)', () => {
    ahead = new NoiseAhead();
    const first = ahead.stream(generators([1]), BLOCK, 50);
    first.next();
    first.close();
    const want = expected([2], 5);
    const second = ahead.stream(generators([2]), BLOCK, 5);
    for (let b = 0; b < 5; b++) expect(second.next()).toEqual(want[b]);
    second.close();
  });

  it('starts a fresh helper for the next job after close()', async () => {
    ahead = new NoiseAhead();
    const warm = ahead.stream(generators([5]), BLOCK, 1);
    warm.next();
    warm.close();
    await ahead.close();
    const want = expected([3, 4], 6);
    const stream = ahead.stream(generators([3, 4]), BLOCK, 6);
    for (let b = 0; b < 6; b++) expect(stream.next()).toEqual(want[b]);
    stream.close();
  });

  it('continues on the calling thread, in the same order, when the helper stalls', () => {
    const warnings: string[] = [];
    // A helper cannot boot in 0 ms, so the first block already finds it stalled.
    ahead = new NoiseAhead({ info: () => undefined, warn: (_o, msg) => warnings.push(msg) }, 0);
    const want = expected([3, 4], 6);
    const stream = ahead.stream(generators([3, 4]), BLOCK, 6);
    for (let b = 0; b < 6; b++) expect(stream.next()).toEqual(want[b]);
    stream.close();
    expect(stream.ahead).toBe(false);
    expect(warnings).toHaveLength(1);
    // Once given up on, later jobs draw in place from the start.
    const next = ahead.stream(generators([6]), BLOCK, 2);
    expect(next.ahead).toBe(false);
    expect(next.next()).toEqual(expected([6], 1)[0]);
  });

  it('a generator snapshot continues the same stream', () => {
    const g = new TorchCpuGenerator(42);
    g.randn(100);
    const copy = TorchCpuGenerator.fromSnapshot(g.snapshot());
    expect(copy.randn(1000)).toEqual(g.randn(1000));
    expect(() => TorchCpuGenerator.fromSnapshot({ state: new Uint32Array(3), index: 0, cachedNormal: undefined })).toThrow(RangeError);
  });
});

describe('float16 → float32 through small tables', () => {
  it('gives the same bits as the field-by-field conversion for all 65,536 halves', () => {
    const all = Uint16Array.from({ length: 0x10000 }, (_, h) => h);
    const out = new Uint32Array(float16BitsToFloat32(all).buffer);
    let mismatches = 0;
    for (let h = 0; h < 0x10000; h++) if (out[h] !== float16BitToFloat32BitsReference(h)) mismatches++;
    expect(mismatches).toBe(0);
    expect(float16BitsToFloat32(Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x7c00))).toEqual(Float32Array.of(1, -2, 2 ** -24, Infinity));
  });
});

describe('warm-up at the shapes jobs use', () => {
  async function warmUpLogs(options: Partial<PipelineOptions>): Promise<Record<string, unknown>[]> {
    const root = await mkdtemp(path.join(tmpdir(), 'engine-warmup-'));
    const logs: Record<string, unknown>[] = [];
    const pipeline = new Pipeline({
      modelsDir: root,
      providers: ['cpu'],
      threads: 1,
      warmup: true,
      log: { info: (obj, msg) => (msg === 'model warmed up' ? logs.push(obj) : undefined), warn: () => undefined },
      ...options,
    });
    try {
      await writeTinyModel(path.join(root, 'm'), { generation: 'optimum-new', unet: 'oracle', tokenizer: 'synthetic' });
      await pipeline.generate({
        model: 'm', prompt: 'a cat', negativePrompt: '', width: 64, height: 64, steps: 2, guidance: 7, sampler: 'Euler', seed: 1, count: 1,
      });
      // The warm-up's steps are not the member's: only the real job's 2 steps are counted.
      expect(pipeline.stats().steps).toBe(2);
    } finally {
      await pipeline.close();
      await rm(root, { recursive: true, force: true });
    }
    return logs;
  }

  it('is skipped on the CPU provider unless asked for', async () => {
    expect(await warmUpLogs({})).toEqual([]);
  });

  it("draws the default job's pictures in one UNet batch under guidance at the native size", async () => {
    const logs = await warmUpLogs({ warmupOnCpu: true, warmupImages: 4, imagesPerBatch: 4 });
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatchObject({ model: 'm', images: 4, width: 64, height: 64, unetBatch: 8 });
  });

  it('without a picture count, warms up as many pictures as one UNet call takes', async () => {
    const logs = await warmUpLogs({ warmupOnCpu: true });
    // The tiny model's pictures are small enough for the CPU provider to draw 4 per call.
    expect(logs[0]).toMatchObject({ images: 4, unetBatch: 8 });
  });
});
