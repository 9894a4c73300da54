// Same seed, same picture: the engine's output for fixed seeds must not change when its
// internals are made faster. The hashes below were recorded with the engine as it was before
// the per-step work of issue 12 (commit 32d90d1), so any change to noise order, buffer reuse,
// fp16 conversion or conditioning feeding that moves a single bit fails here.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pipeline } from '../engine/pipeline.js';
import { SAMPLERS, type GenerateRequest, type SamplerName } from '../engine/types.js';
import { writeTinyModel, type TinyModelOptions } from './fixtures/tiny-models.js';

const MODELS: Record<string, TinyModelOptions> = {
  fp32: { generation: 'optimum-new', unet: 'oracle', vaeEncoder: true },
  fp16: { generation: 'optimum-new', unet: 'oracle', dtype: 'float16', vaeEncoder: true },
  smooth: { generation: 'optimum-old', unet: 'smooth' },
};

/** What each case draws; each is run at UNet batch 1 and batch 2 (the same pictures either way). */
const CASES: Record<string, Partial<GenerateRequest>> = {
  plain: { guidance: 7, count: 2 },
  noCfg: { guidance: 1, count: 2 },
  variation: { guidance: 5, count: 2, variation: { seed: 99, strength: 0.3 } },
};

let root: string;
let oneByOne: Pipeline;
let batched: Pipeline;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'engine-bitexact-'));
  for (const [name, opts] of Object.entries(MODELS)) await writeTinyModel(path.join(root, name), opts);
  oneByOne = new Pipeline({ modelsDir: root, providers: ['cpu'], threads: 1, imagesPerBatch: 1 });
  batched = new Pipeline({ modelsDir: root, providers: ['cpu'], threads: 1, imagesPerBatch: 2 });
});

afterAll(async () => {
  await oneByOne?.close();
  await batched?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

/** sha256 over every picture's final latents and RGB bytes, in picture order. */
async function fingerprint(p: Pipeline, req: GenerateRequest): Promise<string> {
  const latents: Buffer[] = [];
  const result = await p.generate(req, {
    onLatents: (x, first) => {
      latents[first] = Buffer.from(new Uint8Array(x.buffer, x.byteOffset, x.byteLength).slice());
    },
  });
  const hash = createHash('sha256');
  for (const l of latents) if (l) hash.update(l);
  for (const img of result.images) {
    hash.update(String(img.seed));
    hash.update(img.rgb);
  }
  return hash.digest('hex').slice(0, 16);
}

function request(model: string, sampler: SamplerName, extra: Partial<GenerateRequest>): GenerateRequest {
  return {
    model,
    prompt: 'a lighthouse on a cliff',
    negativePrompt: 'blurry',
    width: 64,
    height: 64,
    steps: 6,
    guidance: 7,
    sampler,
    seed: 4242,
    count: 1,
    ...extra,
  };
}

/** Recorded before the change: model/sampler/case → fingerprint. */
const EXPECTED: Record<string, string> = {
  "fp16/DDIM/img2img": 'a50d54bccb6e92ef',
  "fp16/DDIM/noCfg": '56963eaa2f63fc9b',
  "fp16/DDIM/plain": 'ed7ceb8dee489ff9',
  "fp16/DDIM/variation": 'a9dc3f166a9ace71',
  "fp16/DPM++ 2M Karras/img2img": 'c317c33bb2ca7ac6',
  "fp16/DPM++ 2M Karras/noCfg": 'cd37a1391e94e52a',
  "fp16/DPM++ 2M Karras/plain": 'dd8b6c1a1a013df5',
  "fp16/DPM++ 2M Karras/variation": '6bf563ff67535e2a',
  "fp16/Euler a/img2img": '1759cb7f424b0064',
  "fp16/Euler a/noCfg": '7330a019d18be37f',
  "fp16/Euler a/plain": '5433dac01d654bfe',
  "fp16/Euler a/variation": 'e464b3bb1f013db6',
  "fp16/Euler/img2img": 'f3a6d9c2d90a5dcc',
  "fp16/Euler/noCfg": 'fb5d2adfe84a877f',
  "fp16/Euler/plain": 'cb90ede1eabdc89a',
  "fp16/Euler/variation": 'c955f998168c13a2',
  "fp16/Turbo/img2img": 'f5eb694b4a1616ce',
  "fp16/Turbo/noCfg": 'b6c05084a9b4a498',
  "fp16/Turbo/plain": 'b6c05084a9b4a498',
  "fp16/Turbo/variation": 'd90e10a04d204763',
  "fp32/DDIM/img2img": '0a7649d23f31c8e3',
  "fp32/DDIM/noCfg": '5dfa005ec7f707ce',
  "fp32/DDIM/plain": 'dabba5a8b9fb27a2',
  "fp32/DDIM/variation": '59fdd5f76667782f',
  "fp32/DPM++ 2M Karras/img2img": '09217f08e954ea28',
  "fp32/DPM++ 2M Karras/noCfg": 'e6384ab574bc9524',
  "fp32/DPM++ 2M Karras/plain": '9bc12f7b4279c676',
  "fp32/DPM++ 2M Karras/variation": '2a2c06dcd021b525',
  "fp32/Euler a/img2img": '1198b661b53fcd5b',
  "fp32/Euler a/noCfg": '3f95d5ccc9a1617c',
  "fp32/Euler a/plain": 'd3c2a137c2ea8c1d',
  "fp32/Euler a/variation": 'b0d39979ae071e4b',
  "fp32/Euler/img2img": '204b4c9abc0c78e7',
  "fp32/Euler/noCfg": 'e7d8014c5977520d',
  "fp32/Euler/plain": '1e80f476534e5848',
  "fp32/Euler/variation": 'f0553ce21cd3f104',
  "fp32/Turbo/img2img": 'f6ff87b53f4c85eb',
  "fp32/Turbo/noCfg": 'c102757a3c15c6bc',
  "fp32/Turbo/plain": 'c102757a3c15c6bc',
  "fp32/Turbo/variation": '6404bd3cda1fe71c',
  "smooth/DDIM/img2img": '4c005ecacd899e8d',
  "smooth/DDIM/noCfg": 'fa1a3a890b88b487',
  "smooth/DDIM/plain": 'fb326ab0ffea9e99',
  "smooth/DDIM/variation": '4b490d4c031c5462',
  "smooth/DPM++ 2M Karras/img2img": '04d5203899bab5d8',
  "smooth/DPM++ 2M Karras/noCfg": '44d63430b62b470f',
  "smooth/DPM++ 2M Karras/plain": '4fbfd9251f2dd9ed',
  "smooth/DPM++ 2M Karras/variation": '09167c884889c1c9',
  "smooth/Euler a/img2img": 'aea32ede0eb05d27',
  "smooth/Euler a/noCfg": '36edbf7da8e98790',
  "smooth/Euler a/plain": 'cd0124fba980285f',
  "smooth/Euler a/variation": '51d625ee61ad9bc4',
  "smooth/Euler/img2img": '4ae6107853e496ed',
  "smooth/Euler/noCfg": 'ada5563df1f2cef6',
  "smooth/Euler/plain": 'fc9c12a62e2c0b9b',
  "smooth/Euler/variation": '330adae0a2bd82d9',
  "smooth/Turbo/img2img": '12762f166741a614',
  "smooth/Turbo/noCfg": '767559f4af5c6706',
  "smooth/Turbo/plain": '767559f4af5c6706',
  "smooth/Turbo/variation": '7c4bd6e8bbc3a362',
};

describe('same seed, same picture', () => {
  for (const model of Object.keys(MODELS)) {
    for (const sampler of SAMPLERS) {
      for (const [caseName, extra] of Object.entries(CASES)) {
        const key = `${model}/${sampler}/${caseName}`;
        it(`${key} matches the recorded output, one by one and batched`, async () => {
          const req = request(model, sampler, extra);
          const single = await fingerprint(oneByOne, req);
          expect(await fingerprint(batched, req)).toBe(single);
          expect(single).toBe(EXPECTED[key]);
        });
      }
    }
    for (const sampler of SAMPLERS) {
      const key = `${model}/${sampler}/img2img`;
      it(`${key} matches the recorded output`, async () => {
        const rgb = new Uint8Array(64 * 64 * 3);
        for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) & 0xff;
        const req = request(model, sampler, { count: 2, init: { rgb, width: 64, height: 64, strength: 0.6 } });
        const got = await fingerprint(oneByOne, req);
        expect(got).toBe(EXPECTED[key]);
      });
    }
  }
});
