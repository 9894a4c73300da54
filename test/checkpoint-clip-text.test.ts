// The engine's own CLIP text encoder graph, built from a .safetensors checkpoint in the LDM key
// layout, against numbers from an independent PyTorch model (scripts/reference/clip_text.py,
// committed output in test/fixtures/reference/). Both sides generate the same weights from
// engine/checkpoint/synthetic-weights.ts's formula, so no weights are committed.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clipLTextEncoderWeights } from '../engine/checkpoint/ldm-names.js';
import { detectWeights } from '../engine/checkpoint/detect.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { bytesOf, writeSafetensors, type TensorToWrite } from '../engine/checkpoint/safetensors-write.js';
import type { SafetensorsDtype } from '../engine/checkpoint/safetensors.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { buildClipTextGraph, clipTextConfig, clipTextWeightNames } from '../engine/onnx-build/clip-text.js';
import { float32ToFloat16Bits } from '../engine/fp16.js';
import { expectMatchesReference, idsTensor, runOnce } from './fixtures/reference/harness.js';
import reference from './fixtures/reference/clip_text_tiny.json' with { type: 'json' };

const cfg = reference.config;
const PREFIX = reference.ldm_prefix;

function canonicalShape(name: string): number[] {
  const d = cfg.width;
  if (name === 'embeddings.token_embedding.weight') return [cfg.vocab, d];
  if (name === 'embeddings.position_embedding.weight') return [cfg.positions, d];
  if (name.endsWith('fc1.weight')) return [cfg.intermediate, d];
  if (name.endsWith('fc1.bias')) return [cfg.intermediate];
  if (name.endsWith('fc2.weight')) return [d, cfg.intermediate];
  if (name.endsWith('.weight') && name.includes('proj')) return [d, d];
  return [d];
}

/** The reference's state dict, written as a checkpoint file in `dtype`, with the I64 position_ids real files carry. */
async function writeCheckpoint(file: string, dtype: SafetensorsDtype): Promise<void> {
  const tensors: TensorToWrite[] = clipTextWeightNames(cfg).map((canonical) => {
    const name = PREFIX + canonical;
    const shape = canonicalShape(canonical);
    return {
      name,
      dtype,
      shape,
      data: () => {
        const values = syntheticTensor(name, shape, cfg.seed);
        return bytesOf(dtype === 'F16' ? float32ToFloat16Bits(values) : values);
      },
    };
  });
  tensors.push({
    name: `${PREFIX}embeddings.position_ids`,
    dtype: 'I64',
    shape: [1, cfg.positions],
    data: () => bytesOf(BigInt64Array.from({ length: cfg.positions }, (_, i) => BigInt(i))),
  });
  await writeSafetensors(file, tensors);
}

async function runGraph(file: string): Promise<Record<string, ort.Tensor>> {
  const weights = await openWeightsFile(file);
  try {
    const source = clipLTextEncoderWeights(weights);
    return await runOnce(buildClipTextGraph(source, clipTextConfig(source, { heads: cfg.heads })), { input_ids: idsTensor(reference.input_ids) });
  } finally {
    await weights.close();
  }
}

describe('CLIP text encoder graph built from a checkpoint', () => {
  let dir: string;
  let fp32: Record<string, ort.Tensor>;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ckpt-clip-'));
    const file = path.join(dir, 'clip-f32.safetensors');
    await writeCheckpoint(file, 'F32');
    fp32 = await runGraph(file);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('generates the same weights as the Python reference, bit for bit', () => {
    for (const [name, check] of Object.entries(reference.weights_check)) {
      const canonical = name.slice(PREFIX.length);
      const values = syntheticTensor(name, canonicalShape(canonical), cfg.seed);
      expect([...values.subarray(0, 4)]).toEqual(check.first);
      expect(values.reduce((a, b) => a + b, 0)).toBeCloseTo(check.sum, 6);
    }
  });

  it('matches PyTorch to 1e-4: last_hidden_state, penultimate_hidden_state, pooler_output', () => {
    expectMatchesReference(fp32['last_hidden_state']!, reference.last_hidden_state, 1e-4);
    expectMatchesReference(fp32['penultimate_hidden_state']!, reference.penultimate_hidden_state, 1e-4);
    expectMatchesReference(fp32['pooler_output']!, reference.pooler_output, 1e-4);
  });

  it('the causal mask holds: a token after the end does not change the states before it', async () => {
    // Position 3 of prompt 2 is its end token; everything from there on is padding. Prompt 1's
    // first tokens differ from prompt 2's, but token 0 (the start token) sees only itself.
    const last = fp32['last_hidden_state']!.data as Float32Array;
    const row = (b: number, t: number) => last.subarray((b * cfg.positions + t) * cfg.width, (b * cfg.positions + t + 1) * cfg.width);
    const start1 = row(0, 0);
    const start2 = row(1, 0);
    for (let i = 0; i < cfg.width; i++) expect(start2[i]).toBeCloseTo(start1[i]!, 6);
    expect(Math.abs(row(0, 1)[0]! - row(1, 1)[0]!)).toBeGreaterThan(1e-4);
  });

  it('reads an fp16 checkpoint of the same weights (converted to float32 while building)', async () => {
    const file = path.join(dir, 'clip-f16.safetensors');
    await writeCheckpoint(file, 'F16');
    const weights = await openWeightsFile(file);
    expect(detectWeights(weights.header.tensors)).toMatchObject({ kind: 'unknown' }); // a text encoder alone is no checkpoint
    await weights.close();
    const fp16 = await runGraph(file);
    const a = fp32['last_hidden_state']!.data as Float32Array;
    const b = fp16['last_hidden_state']!.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    // fp16 weights carry ~3 significant digits; the outputs move by about that much, no more.
    expect(worst).toBeGreaterThan(0);
    expect(worst).toBeLessThan(0.05);
  });

  it('refuses a file without a CLIP text encoder by name', async () => {
    const file = path.join(dir, 'none.safetensors');
    await writeSafetensors(file, [{ name: 'emb_params', dtype: 'F32', shape: [1, 4], data: () => new Uint8Array(16) }]);
    const weights = await openWeightsFile(file);
    expect(() => clipLTextEncoderWeights(weights, 'none.safetensors')).toThrow(/none\.safetensors has no CLIP text encoder/);
    await weights.close();
  });

  it('writes the same model with weights in an external data file, which onnxruntime loads', async () => {
    const file = path.join(dir, 'clip-f32.safetensors');
    const weights = await openWeightsFile(file);
    const source = clipLTextEncoderWeights(weights);
    const graph = buildClipTextGraph(source, clipTextConfig(source, { heads: cfg.heads }));
    const modelPath = path.join(dir, 'model.onnx');
    const dataBytes = await graph.writeWithExternalData(modelPath, path.join(dir, 'model.onnx_data'), 'model.onnx_data');
    await weights.close();
    expect((await readFile(modelPath)).length).toBeLessThan(64 * 1024); // weights are outside
    expect(dataBytes).toBeGreaterThan(cfg.vocab * cfg.width * 4);
    const session = await ort.InferenceSession.create(modelPath);
    const ids = Int32Array.from(reference.input_ids.flat());
    const out = await session.run({ input_ids: new ort.Tensor('int32', ids, [2, cfg.positions]) });
    await session.release();
    expect(out['last_hidden_state']!.data).toEqual(fp32['last_hidden_state']!.data);
  });
});
