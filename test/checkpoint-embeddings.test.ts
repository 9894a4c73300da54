// Textual-inversion embeddings: files read and refused by name, and their vectors fed into the
// engine's CLIP graph through the embedding override, which equals the plain graph when unused and
// PyTorch (scripts/reference/embedding.py) when used.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddingOverride, loadEmbedding, type TextualInversion } from '../engine/checkpoint/embeddings.js';
import { clipLTextEncoderWeights } from '../engine/checkpoint/ldm-names.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { buildClipTextGraph, clipTextConfig, clipTextWeightNames } from '../engine/onnx-build/clip-text.js';
import { expectMatchesReference, idsTensor, runOnce, writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import reference from './fixtures/reference/embedding_tiny.json' with { type: 'json' };

const cfg = reference.config;
const PREFIX = 'cond_stage_model.transformer.text_model.';

let dir: string;
let closeWeights: (() => Promise<void>) | undefined;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'embeddings-'));
});
afterAll(async () => {
  await closeWeights?.();
  await rm(dir, { recursive: true, force: true });
});

/** The tiny CLIP's tensors (clip_text.py's layout) as name → shape. */
function tinyClipShapes(): Record<string, number[]> {
  const d = cfg.width;
  const shapes: Record<string, number[]> = {};
  for (const n of clipTextWeightNames(cfg)) {
    shapes[PREFIX + n] =
      n === 'embeddings.token_embedding.weight'
        ? [cfg.vocab, d]
        : n === 'embeddings.position_embedding.weight'
          ? [cfg.positions, d]
          : /fc1\.weight$/.test(n)
            ? [cfg.intermediate, d]
            : /fc1\.bias$/.test(n)
              ? [cfg.intermediate]
              : /fc2\.weight$/.test(n)
                ? [d, cfg.intermediate]
                : /proj\.weight$/.test(n)
                  ? [d, d]
                  : [d];
  }
  return shapes;
}

describe('CLIP graph with the embedding override', () => {
  let outputs: (feeds: Record<string, ort.Tensor>, override: boolean) => Promise<Record<string, ort.Tensor>>;
  beforeAll(async () => {
    const file = path.join(dir, 'clip.safetensors');
    await writeSyntheticCheckpoint(file, tinyClipShapes(), cfg.seed);
    const weights = await openWeightsFile(file);
    closeWeights = () => weights.close();
    const source = clipLTextEncoderWeights(weights);
    const config = clipTextConfig(source, { heads: cfg.heads });
    const plain = buildClipTextGraph(source, config);
    const withOverride = buildClipTextGraph(source, config, { embeddingOverride: true });
    outputs = (feeds, override) => runOnce(override ? withOverride : plain, feeds);
  });

  const ids = () => idsTensor(reference.input_ids);
  const T = reference.input_ids[0]!.length;

  it('with nothing overridden, equals the plain graph bit for bit', async () => {
    const plain = await outputs({ input_ids: ids() }, false);
    const over = await outputs(
      {
        input_ids: ids(),
        embedding_override: new ort.Tensor('float32', new Float32Array(T * cfg.width).fill(7), [1, T, cfg.width]),
        override_mask: new ort.Tensor('float32', new Float32Array(T), [1, T, 1]),
      },
      true,
    );
    for (const name of ['last_hidden_state', 'penultimate_hidden_state', 'pooler_output']) {
      expect(Array.from(over[name]!.data as Float32Array)).toEqual(Array.from(plain[name]!.data as Float32Array));
    }
  });

  it("with an embedding's vectors at its placeholders, matches PyTorch to 1e-4", async () => {
    const e = reference.embedding;
    const ti: TextualInversion = { name: 'tiny-emb', family: 'sd1', vectors: e.shape[0]!, parts: { text: { width: cfg.width, data: syntheticTensor(e.tensor, e.shape, e.seed) } } };
    const chunk = { ids: Int32Array.from(reference.input_ids[0]!), embeddings: [{ name: 'tiny-emb', position: e.position, vectors: e.shape[0]! }] };
    const { override, mask } = embeddingOverride(chunk, new Map([[ti.name, ti]]), 'text', cfg.width);
    expect(Array.from(mask.subarray(0, 6))).toEqual([0, 0, 1, 1, 1, 0]);
    const out = await outputs(
      { input_ids: ids(), embedding_override: new ort.Tensor('float32', override, [1, T, cfg.width]), override_mask: new ort.Tensor('float32', mask, [1, T, 1]) },
      true,
    );
    expectMatchesReference(out['last_hidden_state']!, reference.last_hidden_state, 1e-4);
  });
});

describe('embedding files', () => {
  const write = (name: string, tensors: Record<string, number[]>) =>
    writeSafetensors(
      path.join(dir, name),
      Object.entries(tensors).map(([n, shape]) => ({ name: n, dtype: 'F32' as const, shape, data: () => bytesOf(syntheticTensor(n, shape, 1)) })),
    ).then(() => path.join(dir, name));

  it('A1111 emb_params: the file name is the trigger, several vectors as the file says', async () => {
    const file = await write('bad-hands.safetensors', { emb_params: [4, 768] });
    const e = await loadEmbedding(file, 'sd1');
    expect(e).toMatchObject({ name: 'bad-hands', family: 'sd1', vectors: 4 });
    expect(e.parts.text?.width).toBe(768);
    expect(Array.from(e.parts.text!.data.subarray(0, 3))).toEqual(Array.from(syntheticTensor('emb_params', [4, 768], 1).subarray(0, 3)));
  });

  it('string_to_param.* and a single [width] vector', async () => {
    const file = await write('one-vector.safetensors', { 'string_to_param.*': [1024] });
    expect(await loadEmbedding(file, 'sd2')).toMatchObject({ name: 'one-vector', vectors: 1, family: 'sd2' });
  });

  it('SDXL clip_l + clip_g: both parts', async () => {
    const file = await write('xl-neg.safetensors', { clip_l: [2, 768], clip_g: [2, 1280] });
    const e = await loadEmbedding(file, 'sdxl');
    expect(e.vectors).toBe(2);
    expect([e.parts.clip_l?.width, e.parts.clip_g?.width]).toEqual([768, 1280]);
  });

  it('the wrong width for the model is refused by name', async () => {
    const file = await write('sd1-only.safetensors', { emb_params: [2, 768] });
    await expect(loadEmbedding(file, 'sd2')).rejects.toThrow('Embedding "sd1-only" has 768-wide vectors (SD 1.x); this model\'s text encoder takes 1024 (SD 2.x).');
    // SDXL's first encoder is 768 wide too, but an SD 1.x embedding has no clip_g half: refused, not half-applied.
    await expect(loadEmbedding(file, 'sdxl')).rejects.toThrow(/^Embedding "sd1-only" has 768-wide vectors \(SD 1\.x\); this model/);
    const odd = await write('odd.safetensors', { emb_params: [2, 512] });
    await expect(loadEmbedding(odd, 'sd1')).rejects.toThrow(/Embedding "odd" cannot be used: its vectors are 512 wide/);
  });

  it('a .pt embedding is refused as a pickle, by name; so is a LoRA given as an embedding', async () => {
    const pt = path.join(dir, 'old-style.pt');
    await writeFile(pt, Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
    await expect(loadEmbedding(pt, 'sd1')).rejects.toThrow(/Embedding "old-style": .*pickle/i);
    const lora = await write('not-emb.safetensors', { 'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': [4, 768], 'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': [768, 4] });
    await expect(loadEmbedding(lora, 'sd1')).rejects.toThrow('Embedding "not-emb" is not a textual-inversion embedding file.');
  });
});
