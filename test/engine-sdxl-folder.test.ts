// SDXL ONNX exports in Optimum's layout (text_encoder_2/, tokenizer_2/, encoders listing every
// hidden_states.N, a UNet taking text_embeds and time_ids), fp32 and fp16: the loader reads the
// penultimate layer of each encoder and encoder 2's text_embeds, and the pipeline draws with them,
// feeding time_ids = (h, w, 0, 0, h, w) to both halves of guidance. The fixture's encoders are
// closed-form (tinyTextHidden), so the expected conditioning is computed here, not recorded.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { float16BitsToFloat32 } from '../engine/fp16.js';
import { encodePrompts } from '../engine/conditioning.js';
import { applyEmphasis } from '../engine/prompt/emphasis.js';
import { loadModel, type LoadedModel } from '../engine/model.js';
import { sdxlPromptEncoder } from '../engine/sdxl-conditioning.js';
import { Pipeline } from '../engine/pipeline.js';
import { scanModels } from '../engine/registry.js';
import { tinyTextHidden, writeTinyModel } from './fixtures/tiny-models.js';

let root: string;
const loaded: LoadedModel[] = [];
beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'engine-sdxl-'));
  await writeTinyModel(path.join(root, 'xl32'), { generation: 'optimum-new', pipeline: 'sdxl', hiddenDim: 2048 });
  await writeTinyModel(path.join(root, 'xl16'), { generation: 'optimum-old', pipeline: 'sdxl', hiddenDim: 2048, dtype: 'float16' });
});
afterAll(async () => {
  for (const m of loaded) await m.release();
  await rm(root, { recursive: true, force: true });
});

describe('SDXL ONNX folders (Optimum layout)', () => {
  it('hidden states = hidden_states.{n−2} of each encoder side by side; pooled = text_embeds of encoder 2', async () => {
    const scan = await scanModels(root);
    expect(scan.problems).toEqual([]);
    for (const info of scan.models) {
      expect(info.family).toBe('sdxl');
      const model = await loadModel(info, { providers: ['cpu'], threads: 1 });
      loaded.push(model);
      const sdxl = model.sdxl!;
      expect(sdxl).toBeDefined();
      expect([sdxl.pooledDim, sdxl.forceZerosForEmptyPrompt, model.hiddenDim]).toEqual([1280, true, 2048]);
      const ids1 = model.tokenizer.encode('a fox').ids;
      const ids2 = sdxl.tokenizer2.encode('a fox').ids;
      expect(ids2[ids2.indexOf(model.tokenizer.eosId) + 1]).toBe(0); // tokenizer_2 pads with "!"
      const { hidden, pooled } = await sdxl.encode([ids1], [ids2]);
      expect(hidden.length).toBe(77 * 2048);
      expect(pooled.length).toBe(1280);
      // The fixture's layer i is hidden·(i+1): encoder 1 lists 3 layers (penultimate ×2), encoder 2 lists 4 (×3).
      const h1 = tinyTextHidden(ids1, 768);
      const h2 = tinyTextHidden(ids2, 1280);
      const tol = info.dtype === 'float16' ? 1e-2 : 1e-5;
      let worst = 0;
      for (let t = 0; t < 77; t++) {
        for (let d = 0; d < 768; d++) worst = Math.max(worst, Math.abs(hidden[t * 2048 + d]! - 2 * h1[t * 768 + d]!));
        for (let d = 0; d < 1280; d++) worst = Math.max(worst, Math.abs(hidden[t * 2048 + 768 + d]! - 3 * h2[t * 1280 + d]!));
      }
      expect(worst, info.name).toBeLessThan(tol);
      // text_embeds is the fixture's pooled output: the mean over positions of encoder 2's hidden states.
      for (const d of [0, 640, 1279]) {
        let mean = 0;
        for (let t = 0; t < 77; t++) mean += h2[t * 1280 + d]! / 77;
        expect(Math.abs(pooled[d]! - mean), `${info.name} text_embeds[${d}]`).toBeLessThan(tol);
      }
    }
  });

  it('long prompts: each 75-token chunk through both encoders (encoder 2 padded with "!"), pooled text from the first chunk', async () => {
    const model = loaded.find((m) => m.info.dtype === 'float32')!;
    const sdxl = model.sdxl!;
    const prompt = 'a fox '.repeat(60).trim(); // 120 tokens: two chunks
    const c = await encodePrompts(prompt, 'blurry', {
      tokenizer: model.tokenizer,
      encoder: sdxlPromptEncoder(sdxl, model.tokenizer.eosId),
      guidance: true,
      maxChunks: 8,
      modelName: model.info.name,
    });
    expect([c.tokens, c.width, c.pooled?.length]).toEqual([154, 2048, 2 * 1280]);
    const words = model.tokenizer.tokenize(prompt);
    const eos = model.tokenizer.eosId;
    const first = [model.tokenizer.bosId, ...words.slice(0, 75), eos];
    const second = [model.tokenizer.bosId, ...words.slice(75), eos];
    const ids2 = [...second, ...new Array<number>(77 - second.length).fill(0)];
    // Pooled (the prompt's half): the fixture's text_embeds is the mean over positions of encoder 2's states of the first chunk.
    const h1 = tinyTextHidden(first, 1280);
    for (const d of [0, 1279]) {
      let mean = 0;
      for (let t = 0; t < 77; t++) mean += h1[t * 1280 + d]! / 77;
      expect(Math.abs(c.pooled![1280 + d]! - mean)).toBeLessThan(1e-5);
    }
    // The second chunk's encoder-2 half (×3: the penultimate of 4 listed layers) sees "!" padding after its end token.
    const h2 = tinyTextHidden(ids2, 1280);
    const base = 154 * 2048 + 77 * 2048; // the prompt's half, second chunk
    for (const t of [0, second.length, 76]) {
      expect(Math.abs(c.hidden[base + t * 2048 + 768]! - 3 * h2[t * 1280]!)).toBeLessThan(1e-5);
    }
  });

  it('emphasis as A1111 weights SDXL: each encoder\'s states scaled and mean-restored on their own', async () => {
    const model = loaded.find((m) => m.info.dtype === 'float32')!;
    const c = await encodePrompts('(a fox:1.5) in snow', '', {
      tokenizer: model.tokenizer,
      encoder: sdxlPromptEncoder(model.sdxl!, model.tokenizer.eosId),
      guidance: false,
      maxChunks: 8,
      modelName: model.info.name,
    });
    const ids = model.tokenizer.encode('a fox in snow').ids;
    const ids2 = model.sdxl!.tokenizer2.encode('a fox in snow').ids;
    const weights = new Float32Array(77).fill(1);
    weights[1] = weights[2] = 1.5; // "a fox"
    const scaled = (h: Float32Array, factor: number) => h.map((v) => v * factor);
    const part1 = applyEmphasis(scaled(tinyTextHidden(ids, 768), 2), weights, 768);
    const part2 = applyEmphasis(scaled(tinyTextHidden(ids2, 1280), 3), weights, 1280);
    let worst = 0;
    for (let t = 0; t < 77; t++) {
      for (let d = 0; d < 768; d++) worst = Math.max(worst, Math.abs(c.hidden[t * 2048 + d]! - part1[t * 768 + d]!));
      for (let d = 0; d < 1280; d++) worst = Math.max(worst, Math.abs(c.hidden[t * 2048 + 768 + d]! - part2[t * 1280 + d]!));
    }
    expect(worst).toBeLessThan(1e-5);
    // Mean-restoring over the 2048 channels together gives another answer, so the check above tells them apart.
    const raw = new Float32Array(77 * 2048);
    const [h1, h2] = [scaled(tinyTextHidden(ids, 768), 2), scaled(tinyTextHidden(ids2, 1280), 3)];
    for (let t = 0; t < 77; t++) {
      raw.set(h1.subarray(t * 768, (t + 1) * 768), t * 2048);
      raw.set(h2.subarray(t * 1280, (t + 1) * 1280), t * 2048 + 768);
    }
    const joint = applyEmphasis(raw, weights, 2048);
    expect(joint.reduce((m, v, i) => Math.max(m, Math.abs(v - c.hidden[i]!)), 0)).toBeGreaterThan(1e-3);
  });

  it('draws with guidance: every UNet call gets text_embeds [2k, 1280] and time_ids (h, w, 0, 0, h, w)', async () => {
    const pipeline = new Pipeline({ modelsDir: root, providers: ['cpu'], threads: 1 });
    const proto = (ort.InferenceSession as unknown as { prototype: ort.InferenceSession }).prototype;
    const realRun = proto.run;
    const seen: { batch: number; textEmbeds: number[]; timeIds: number[] }[] = [];
    proto.run = function (this: ort.InferenceSession, ...args: Parameters<typeof realRun>) {
      const feeds = args[0] as Record<string, ort.Tensor>;
      const timeIds = feeds['time_ids'];
      if (timeIds) {
        // fp16 exports get half bits.
        const values = timeIds.type === 'float16' ? float16BitsToFloat32(timeIds.data as Uint16Array) : (timeIds.data as Float32Array);
        seen.push({ batch: feeds['sample']!.dims[0]!, textEmbeds: [...feeds['text_embeds']!.dims], timeIds: [...values] });
      }
      return realRun.apply(this, args);
    } as typeof realRun;
    try {
      for (const model of ['xl32', 'xl16']) {
        seen.length = 0;
        const result = await pipeline.generate({
          model, prompt: 'a fox', negativePrompt: 'blurry', width: 128, height: 64, steps: 2, guidance: 6, sampler: 'Euler', seed: 1, count: 2,
        });
        expect(result.images.map((i) => [i.width, i.height])).toEqual([[128, 64], [128, 64]]);
        // Pictures this small share one UNet call on the CPU provider: 2 steps, each call holding
        // both pictures' two guidance halves.
        expect(seen.length).toBe(2);
        const ids = [64, 128, 0, 0, 64, 128];
        for (const call of seen) {
          expect(call.batch).toBe(4);
          expect(call.textEmbeds).toEqual([4, 1280]);
          expect(call.timeIds).toEqual([...ids, ...ids, ...ids, ...ids]);
        }
      }
    } finally {
      proto.run = realRun;
      await pipeline.close();
    }
  });
});
