import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer } from '../engine/tokenizer.js';
import { ProtoWriter } from './fixtures/onnx/proto.js';
import { halfBitsToFloat, toHalfBits } from './fixtures/onnx/onnx.js';
import {
  describeTinyModel,
  tinyTextHidden,
  tinyVaeDecode,
  tinyVaeEncodeMean,
  writeTinyModel,
  type TinyModelOptions,
} from './fixtures/tiny-models.js';

const GENERATIONS = ['diffusers-legacy', 'optimum-old', 'optimum-new'] as const;
const DTYPES = ['float32', 'float16'] as const;

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'fixtures-onnx-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function metadata(file: string): Promise<{ inputs: ort.InferenceSession.ValueMetadata[]; outputs: string[] }> {
  const session = await ort.InferenceSession.create(file);
  try {
    return { inputs: [...session.inputMetadata], outputs: session.outputMetadata.map((m) => m.name) };
  } finally {
    await session.release();
  }
}

function shapeOf(inputs: ort.InferenceSession.ValueMetadata[], name: string): { type: string; shape: readonly (number | string)[] } {
  const m = inputs.find((i) => i.name === name);
  if (!m || !m.isTensor) throw new Error(`no tensor input ${name}`);
  return { type: m.type, shape: m.shape };
}

describe('protobuf writer', () => {
  it('encodes varints, negatives as ten bytes, and nested messages with their length', () => {
    expect([...new ProtoWriter().varint(300).finish()]).toEqual([0xac, 0x02]);
    expect(new ProtoWriter().varint(-1).finish().length).toBe(10);
    const nested = new ProtoWriter().message(7, (w) => w.int(1, 5)).finish();
    expect([...nested]).toEqual([(7 << 3) | 2, 2, 0x08, 5]);
  });

  it('rounds float16 to nearest even like IEEE half', () => {
    expect(toHalfBits(2)).toBe(0x4000);
    expect(toHalfBits(65504)).toBe(0x7bff);
    expect(halfBitsToFloat(toHalfBits(1 + 2 ** -11))).toBe(1); // tie → even
    expect(halfBitsToFloat(toHalfBits(2 ** -24))).toBe(2 ** -24);
  });
});

describe.each(GENERATIONS)('tiny model, %s', (generation) => {
  describe.each(DTYPES)('%s', (dtype) => {
    const f = dtype;
    let dir: string;
    beforeAll(async () => {
      dir = await writeTinyModel(path.join(root, `${generation}-${dtype}`), { generation, dtype });
    });

    it('text encoder declares input_ids with the exporter’s int type and names', async () => {
      const { inputs, outputs } = await metadata(path.join(dir, 'text_encoder/model.onnx'));
      const ids = shapeOf(inputs, 'input_ids');
      expect(ids.type).toBe(generation === 'optimum-new' ? 'int64' : 'int32');
      expect(ids.shape).toEqual(generation === 'diffusers-legacy' ? ['batch', 'sequence'] : ['batch_size', 'sequence_length']);
      expect(outputs).toEqual(['last_hidden_state', 'pooler_output']);
    });

    it('unet declares sample, timestep and encoder_hidden_states as the real export does', async () => {
      const { inputs, outputs } = await metadata(path.join(dir, 'unet/model.onnx'));
      expect(inputs.map((i) => i.name)).toEqual(['sample', 'timestep', 'encoder_hidden_states']);
      const sample = shapeOf(inputs, 'sample');
      expect(sample.type).toBe(f);
      expect(sample.shape).toEqual(
        generation === 'diffusers-legacy' ? ['batch', 'channels', 'height', 'width'] : ['batch_size', 'num_channels', 'height', 'width'],
      );
      const timestep = shapeOf(inputs, 'timestep');
      if (generation === 'diffusers-legacy') expect(timestep).toEqual({ type: f, shape: ['batch'] });
      if (generation === 'optimum-old') expect(timestep).toEqual({ type: 'int64', shape: ['steps'] });
      if (generation === 'optimum-new') expect(timestep).toEqual({ type: f, shape: [] });
      const cond = shapeOf(inputs, 'encoder_hidden_states');
      expect(cond.type).toBe(f);
      expect(cond.shape[2]).toBe(768);
      expect(outputs).toEqual(['out_sample']);
    });

    it('unet keeps its weights in the exporter’s external data file', async () => {
      const dataFile = generation === 'diffusers-legacy' ? 'unet/weights.pb' : 'unet/model.onnx_data';
      expect((await stat(path.join(dir, dataFile))).size).toBeGreaterThanOrEqual(4000);
      const modelText = (await readFile(path.join(dir, 'unet/model.onnx'))).toString('latin1');
      expect(modelText).toContain(path.basename(dataFile));
    });

    it('VAE decoder and encoder declare the generation’s names', async () => {
      const dec = await metadata(path.join(dir, 'vae_decoder/model.onnx'));
      expect(shapeOf(dec.inputs, 'latent_sample').type).toBe(f);
      expect(dec.outputs).toEqual(['sample']);
      const enc = await metadata(path.join(dir, 'vae_encoder/model.onnx'));
      expect(shapeOf(enc.inputs, 'sample').shape).toHaveLength(4);
      expect(enc.outputs).toEqual([generation === 'optimum-new' ? 'latent_parameters' : 'latent_sample']);
    });
  });
});

describe('tiny model graphs compute what the TypeScript reference says', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await writeTinyModel(path.join(root, 'reference'), { generation: 'optimum-new', hiddenDim: 32 });
  });

  it('text encoder', async () => {
    const session = await ort.InferenceSession.create(path.join(dir, 'text_encoder/model.onnx'));
    const ids = [49406, 320, 1125, 539, 320, 2368, 49407, 49407];
    const out = await session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]) });
    const got = out['last_hidden_state']!.data as Float32Array;
    const want = tinyTextHidden(ids, 32);
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 4);
    await session.release();
  });

  it('VAE decoder then encoder gives back the 8×8 block averages of the image', async () => {
    const dec = await ort.InferenceSession.create(path.join(dir, 'vae_decoder/model.onnx'));
    const enc = await ort.InferenceSession.create(path.join(dir, 'vae_encoder/model.onnx'));
    const latent = Float32Array.from({ length: 4 * 2 * 3 }, (_, i) => Math.sin(i) * 2);
    const image = (await dec.run({ latent_sample: new ort.Tensor('float32', latent, [1, 4, 2, 3]) }))['sample']!;
    expect(image.dims).toEqual([1, 3, 16, 24]);
    const want = tinyVaeDecode(latent, 1, 2, 3);
    const img = image.data as Float32Array;
    for (let i = 0; i < want.length; i++) expect(img[i]).toBeCloseTo(want[i]!, 5);
    const params = (await enc.run({ sample: image }))['latent_parameters']!;
    expect(params.dims).toEqual([1, 8, 2, 3]);
    const mean = tinyVaeEncodeMean(img, 1, 16, 24);
    const p = params.data as Float32Array;
    for (let i = 0; i < mean.length; i++) expect(p[i]).toBeCloseTo(mean[i]!, 4);
    expect(p[mean.length]).toBeCloseTo(-6, 5); // logvar channels
    await dec.release();
    await enc.release();
  });
});

describe('writeTinyModel options', () => {
  it('writes a synthetic tokenizer the CLIP BPE can use when real files are absent', async () => {
    const dir = await writeTinyModel(path.join(root, 'synthetic-tok'), { generation: 'optimum-old', tokenizer: 'synthetic', vaeEncoder: false });
    const tok = await ClipTokenizer.load(path.join(dir, 'tokenizer'));
    const { ids } = tok.encode('A cat');
    expect(ids[0]).toBe(49406);
    expect(ids.length).toBe(77);
    const eos = [...ids].indexOf(49407);
    expect(eos).toBeGreaterThan(1);
    await expect(stat(path.join(dir, 'vae_encoder'))).rejects.toThrow();
  });

  it('sd2 family writes 1024-wide conditioning and a "!" pad token', async () => {
    const opts: TinyModelOptions = { generation: 'diffusers-legacy', family: 'sd2', prediction: 'v_prediction' };
    const dir = await writeTinyModel(path.join(root, 'sd2'), opts);
    const { inputs } = await metadata(path.join(dir, 'unet/model.onnx'));
    expect(shapeOf(inputs, 'encoder_hidden_states').shape[2]).toBe(1024);
    const special = JSON.parse(await readFile(path.join(dir, 'tokenizer/special_tokens_map.json'), 'utf8')) as { pad_token: { content: string } };
    expect(special.pad_token.content).toBe('!');
    const scheduler = JSON.parse(await readFile(path.join(dir, 'scheduler/scheduler_config.json'), 'utf8')) as Record<string, unknown>;
    expect(scheduler['prediction_type']).toBe('v_prediction');
    expect(describeTinyModel(opts).padId).toBe(0);
  });

  it('SDXL and LCM variants declare their extra UNet inputs', async () => {
    const xl = await writeTinyModel(path.join(root, 'xl'), { generation: 'optimum-old', pipeline: 'sdxl', hiddenDim: 2048 });
    expect((await metadata(path.join(xl, 'unet/model.onnx'))).inputs.map((i) => i.name)).toContain('time_ids');
    const lcm = await writeTinyModel(path.join(root, 'lcm'), { generation: 'optimum-new', pipeline: 'lcm' });
    expect((await metadata(path.join(lcm, 'unet/model.onnx'))).inputs.map((i) => i.name)).toContain('timestep_cond');
  });

  it('a heavier smooth UNet with attention runs at SD-like shapes', async () => {
    const dir = await writeTinyModel(path.join(root, 'smooth'), {
      generation: 'optimum-new',
      unet: 'smooth',
      sampleSize: 16,
      unetBody: { channels: 16, layers: 2, attention: true },
    });
    const session = await ort.InferenceSession.create(path.join(dir, 'unet/model.onnx'));
    const sample = Float32Array.from({ length: 2 * 4 * 16 * 16 }, (_, i) => Math.cos(i));
    const out = await session.run({
      sample: new ort.Tensor('float32', sample, [2, 4, 16, 16]),
      timestep: new ort.Tensor('float32', Float32Array.of(500), []),
      encoder_hidden_states: new ort.Tensor('float32', new Float32Array(2 * 77 * 768).fill(0.1), [2, 77, 768]),
    });
    const data = out['out_sample']!.data as Float32Array;
    expect(data.length).toBe(sample.length);
    expect(data.every(Number.isFinite)).toBe(true);
    await session.release();
  });

  it('omit leaves the named files out', async () => {
    const dir = await writeTinyModel(path.join(root, 'omit'), { generation: 'optimum-new', omit: ['unet/model.onnx_data', 'tokenizer/merges.txt'] });
    await expect(stat(path.join(dir, 'unet/model.onnx_data'))).rejects.toThrow();
    await expect(stat(path.join(dir, 'tokenizer/merges.txt'))).rejects.toThrow();
    expect((await stat(path.join(dir, 'unet/model.onnx'))).isFile()).toBe(true);
  });
});
