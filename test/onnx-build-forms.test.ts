// The graph forms of engine/onnx-build/layers.ts on the tiny SD 1.x model, drawn through model
// folders with generateTiny (CLIP → 4 Euler steps with guidance → VAE):
//   - fused attention (com.microsoft MultiHeadAttention, which the CPU provider implements) still
//     matches the PyTorch reference to 1e-4, text encoder (causal) included;
//   - fp16-storage (float16 weights + Cast) is the fp32 graph of the same fp16 weights, exactly,
//     in about half the bytes;
//   - fp16-resident (float16 weights as overridable initializers) computes in float32 within 1e-4;
//   - fp16 compute stays within one 8-bit pixel level of the fp32 graph of the same weights.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formKey, graphFormFor } from '../engine/checkpoint/graph-form.js';
import { writeModelFolder } from '../engine/checkpoint/model-folder.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { float32ToFloat16Bits } from '../engine/fp16.js';
import { REFERENCE_FORM, type GraphForm } from '../engine/onnx-build/layers.js';
import { expectMatchesReference } from './fixtures/reference/harness.js';
import { generateTiny, tinyE2EReference as reference, tinyFolderPlan } from './fixtures/reference/tiny-generation.js';

let dir: string;
const files = { F32: '', F16: '' };
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'graph-forms-'));
  for (const dtype of ['F32', 'F16'] as const) {
    files[dtype] = path.join(dir, `tiny-${dtype}.safetensors`);
    await writeSafetensors(
      files[dtype],
      Object.entries(reference.tensors).map(([name, shape]) => ({
        name,
        dtype,
        shape,
        data: () => {
          const values = syntheticTensor(name, shape, 0);
          return bytesOf(dtype === 'F16' ? float32ToFloat16Bits(values) : values);
        },
      })),
    );
  }
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Drawn {
  image: Float32Array;
  folder: string;
}

async function draw(dtype: keyof typeof files, form: GraphForm): Promise<Drawn> {
  const folder = path.join(dir, `${dtype}-${form.precision}-${form.attention}`);
  const weights = await openWeightsFile(files[dtype]);
  try {
    await writeModelFolder(weights, { ...tinyFolderPlan, form }, folder);
  } finally {
    await weights.close();
  }
  const open = (part: string) => ort.InferenceSession.create(path.join(folder, part, 'model.onnx'), { logSeverityLevel: 3 });
  const sessions = { text: await open('text_encoder'), unet: await open('unet'), vae: await open('vae_decoder') };
  try {
    const { image } = await generateTiny(sessions);
    if (form === REFERENCE_FORM && dtype === 'F32') expectMatchesReference(image, reference.image, 1e-4);
    return { image: image.data as Float32Array, folder };
  } finally {
    for (const s of Object.values(sessions)) await s.release();
  }
}

const worstDifference = (a: Float32Array, b: Float32Array): number => a.reduce((w, v, i) => Math.max(w, Math.abs(v - b[i]!)), 0);
const dataBytes = async (folder: string): Promise<number> => {
  let total = 0;
  for (const part of ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder']) total += (await stat(path.join(folder, part, 'model.onnx_data'))).size;
  return total;
};

describe('graph forms on the tiny SD 1.x model', () => {
  it('fused attention (MultiHeadAttention) draws the PyTorch reference picture to 1e-4, and replaces every Softmax', async () => {
    const fused = await draw('F32', { precision: 'fp32', attention: 'fused' });
    expectMatchesReference(new ort.Tensor('float32', fused.image, reference.image.shape), reference.image, 1e-4);
    for (const part of ['text_encoder', 'unet', 'vae_decoder']) {
      const model = await readFile(path.join(fused.folder, part, 'model.onnx'), 'latin1');
      expect(model).toContain('MultiHeadAttention');
      expect(model).not.toContain('Softmax');
    }
    const plain = await draw('F32', REFERENCE_FORM);
    expect(worstDifference(fused.image, plain.image)).toBeLessThan(1e-4);
  });

  it('fp16-storage is the fp32 graph of the same fp16 weights, bit for bit, in about half the bytes', async () => {
    const fp32 = await draw('F16', REFERENCE_FORM);
    const stored = await draw('F16', { precision: 'fp16-storage', attention: 'plain' });
    expect(stored.image).toEqual(fp32.image);
    const ratio = (await dataBytes(stored.folder)) / (await dataBytes(fp32.folder));
    expect(ratio).toBeGreaterThan(0.45);
    expect(ratio).toBeLessThan(0.55);
  });

  it('fp16-resident (weights kept float16, cast at each use) is float32 arithmetic on the same weights: within 1e-4, same inputs, half the bytes', async () => {
    const fp32 = await draw('F16', REFERENCE_FORM);
    const resident = await draw('F16', { precision: 'fp16-resident', attention: 'plain' });
    // Not bit-identical: unfolded weights are not pre-packed, so onnxruntime picks other GEMM paths.
    expect(worstDifference(resident.image, fp32.image)).toBeLessThan(1e-4);
    expect((await dataBytes(resident.folder)) / (await dataBytes(fp32.folder))).toBeLessThan(0.55);
    // The weights are graph inputs with defaults, which onnxruntime does not list (nor require).
    const unet = await ort.InferenceSession.create(path.join(resident.folder, 'unet', 'model.onnx'), { logSeverityLevel: 3 });
    expect(unet.inputNames).toEqual(['sample', 'timestep', 'encoder_hidden_states']);
    await unet.release();
  });

  it('fp16 compute stays within one 8-bit level (2/255) of the fp32 graph of the same weights, and is not that graph', async () => {
    const fp32 = await draw('F16', REFERENCE_FORM);
    for (const attention of ['fused', 'plain'] as const) {
      const half = await draw('F16', { precision: 'fp16', attention });
      const worst = worstDifference(half.image, fp32.image);
      expect(worst, attention).toBeLessThan(2 / 255);
      expect(worst, attention).toBeGreaterThan(0); // really computed in half precision
      const ratio = (await dataBytes(half.folder)) / (await dataBytes(fp32.folder));
      expect(ratio).toBeLessThan(0.55);
    }
  });
});

describe('graph form choice', () => {
  it('chooses by provider and stored dtype', () => {
    expect(graphFormFor(['cpu'], 'fp16')).toEqual({ precision: 'fp16-resident', attention: 'fused' });
    expect(graphFormFor(['cuda', 'cpu'], 'fp16')).toEqual({ precision: 'fp16', attention: 'fused' });
    expect(graphFormFor(['webgpu'], 'fp16')).toEqual({ precision: 'fp16', attention: 'plain' });
    // bf16 and fp32 files keep float32 weights (bf16's range does not fit in fp16).
    expect(graphFormFor(['cuda'], 'bf16').precision).toBe('fp32');
    expect(graphFormFor(['cpu'], 'fp32').precision).toBe('fp32');
  });

  it('gives every form its own cache key, and the reference form the key it had before forms existed', () => {
    expect(formKey(REFERENCE_FORM)).toBe('');
    const keys = new Set(
      (['fp32', 'fp16-storage', 'fp16-resident', 'fp16'] as const).flatMap((precision) => (['plain', 'fused'] as const).map((attention) => formKey({ precision, attention }))),
    );
    expect(keys.size).toBe(8);
  });
});
