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

// The synthetic tokenizer on purpose: the real CLIP files are optional beside the repository, and
// the fingerprints must not depend on whether a machine has them.
const MODELS: Record<string, TinyModelOptions> = {
  fp32: { generation: 'optimum-new', unet: 'oracle', vaeEncoder: true, tokenizer: 'synthetic' },
  fp16: { generation: 'optimum-new', unet: 'oracle', dtype: 'float16', vaeEncoder: true, tokenizer: 'synthetic' },
  smooth: { generation: 'optimum-old', unet: 'smooth', tokenizer: 'synthetic' },
  vpred: { generation: 'optimum-new', unet: 'oracle', prediction: 'v_prediction', family: 'sd2', vaeEncoder: true, tokenizer: 'synthetic' },
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
  "fp16/DDIM/img2img": '5c92730308a38087',
  "fp16/DDIM/noCfg": '1778030de96320bf',
  "fp16/DDIM/plain": 'a88ec426e4c77a4e',
  "fp16/DDIM/variation": 'e5c153344746c65e',
  "fp16/DPM++ 2M Karras/img2img": '4e28e08b7c920a71',
  "fp16/DPM++ 2M Karras/noCfg": '5155e111b6cac6fd',
  "fp16/DPM++ 2M Karras/plain": '5e023ed71f2723a3',
  "fp16/DPM++ 2M Karras/variation": 'a20072e30d527859',
  "fp16/Euler a/img2img": '7c5c8be22699631a',
  "fp16/Euler a/noCfg": '64db9f291b97c2c3',
  "fp16/Euler a/plain": '328ab5265ca2bf8c',
  "fp16/Euler a/variation": 'bac32e596361c633',
  "fp16/Euler/img2img": '679cc169bb82fbca',
  "fp16/Euler/noCfg": 'ccabeec43371a79d',
  "fp16/Euler/plain": 'af112f0356e0a2e3',
  "fp16/Euler/variation": '5634559abe6e8151',
  "fp16/Turbo/img2img": '635b46db56a13449',
  "fp16/Turbo/noCfg": '7cfa3e45e682d141',
  "fp16/Turbo/plain": '7cfa3e45e682d141',
  "fp16/Turbo/variation": '3b366de6461bb95c',
  "fp32/DDIM/img2img": '27f0b314eda5ea54',
  "fp32/DDIM/noCfg": '1b62acc9c25298c5',
  "fp32/DDIM/plain": '9d20c2a7c7c1c48c',
  "fp32/DDIM/variation": '1faa3086a1b1289e',
  "fp32/DPM++ 2M Karras/img2img": '7b1aec94c9581cd8',
  "fp32/DPM++ 2M Karras/noCfg": 'ec30e050a62f17bb',
  "fp32/DPM++ 2M Karras/plain": '1ac7058ccb31e860',
  "fp32/DPM++ 2M Karras/variation": '23e5dfd2ed5d8bf6',
  "fp32/Euler a/img2img": '09fd14603e4db843',
  "fp32/Euler a/noCfg": '7de7c666be66a60a',
  "fp32/Euler a/plain": '09a8d367576f710f',
  "fp32/Euler a/variation": '42c8168c97daaf85',
  "fp32/Euler/img2img": '3ce24555473f1d7a',
  "fp32/Euler/noCfg": 'e52215a51d362078',
  "fp32/Euler/plain": '2bfb135f87980df2',
  "fp32/Euler/variation": 'a51a8b0a2c583273',
  "fp32/Turbo/img2img": 'dfdf67d27aa807aa',
  "fp32/Turbo/noCfg": 'afa8e15265d19597',
  "fp32/Turbo/plain": 'afa8e15265d19597',
  "fp32/Turbo/variation": 'b8004158ee891388',
  "smooth/DDIM/img2img": 'b16f1652bb17c00a',
  "smooth/DDIM/noCfg": 'f16c549be30c3638',
  "smooth/DDIM/plain": 'c6e7a2cf8fd7cb2e',
  "smooth/DDIM/variation": 'cd80e0f98b4a22d5',
  "smooth/DPM++ 2M Karras/img2img": '723927ebf81a8c12',
  "smooth/DPM++ 2M Karras/noCfg": 'babd67975a284970',
  "smooth/DPM++ 2M Karras/plain": '7a1dcc78f35f3e82',
  "smooth/DPM++ 2M Karras/variation": 'fa3fcea6e66b99bf',
  "smooth/Euler a/img2img": '2b16607950cfcbc3',
  "smooth/Euler a/noCfg": '2edac1d26b56a582',
  "smooth/Euler a/plain": 'cdf94bc6bf271b63',
  "smooth/Euler a/variation": 'b42945d039a6d80c',
  "smooth/Euler/img2img": '97897f0d9c6bf837',
  "smooth/Euler/noCfg": 'e625179f7bce911c',
  "smooth/Euler/plain": '8fd7ebaaf843b0ba',
  "smooth/Euler/variation": '598c55a1bdaffc9f',
  "smooth/Turbo/img2img": '49f9b77b1d8b11be',
  "smooth/Turbo/noCfg": '3031e3ee79bea76d',
  "smooth/Turbo/plain": '3031e3ee79bea76d',
  "smooth/Turbo/variation": 'b154d3380ab15e6f',
  "vpred/DDIM/img2img": '1fa8c7b0638b1330',
  "vpred/DDIM/noCfg": '4b881376eb55e066',
  "vpred/DDIM/plain": 'eb41bf74417273f5',
  "vpred/DDIM/variation": 'c9b8c7f6ed51d57e',
  "vpred/DPM++ 2M Karras/img2img": 'b05cfa36cf203c3b',
  "vpred/DPM++ 2M Karras/noCfg": '2796824580e77e6e',
  "vpred/DPM++ 2M Karras/plain": 'c78ffecf62b7affa',
  "vpred/DPM++ 2M Karras/variation": 'ab01f345dfc83539',
  "vpred/Euler a/img2img": '14a6ca305a6c5e6a',
  "vpred/Euler a/noCfg": '68f8fa4cff364116',
  "vpred/Euler a/plain": '9af14822fffbee9d',
  "vpred/Euler a/variation": 'cfcd18a81888426e',
  "vpred/Euler/img2img": '7105bd40668052d4',
  "vpred/Euler/noCfg": '6b34507ebf283b5a',
  "vpred/Euler/plain": '999600111c921ac4',
  "vpred/Euler/variation": 'e32b2ac5dc0dbc3b',
  "vpred/Turbo/img2img": '3c250c2f6dd2cac7',
  "vpred/Turbo/noCfg": '6b0c85e86e7107ac',
  "vpred/Turbo/plain": '6b0c85e86e7107ac',
  "vpred/Turbo/variation": 'c137fe876af5a75f',
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
