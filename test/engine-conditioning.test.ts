// The A1111 prompt language through the engine's real path (registry → model → conditioning →
// UNet → VAE) on tiny fixture models: emphasis as A1111's "Original" formula, prompts longer
// than 75 tokens in concatenated chunks, the negative padded with the empty prompt's chunk, and
// textual-inversion embeddings from models/embeddings/ in the prompt and the negative.
// The tiny text encoder's hidden states are a known function of each id (tinyTextHidden) and the
// oracle UNet lands on a known latent for a conditioning mean, so every expectation below is
// computed here from the formulas, independently of the engine's code.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeModelFolder } from '../engine/checkpoint/model-folder.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { encodePrompts } from '../engine/conditioning.js';
import { EmbeddingLibrary } from '../engine/embedding-library.js';
import { parseInfoText } from '../engine/infotext.js';
import { loadModel, type LoadedModel } from '../engine/model.js';
import { Pipeline, textEncoderOf } from '../engine/pipeline.js';
import { scanModels } from '../engine/registry.js';
import type { PromptTokenizer } from '../engine/prompt/index.js';
import { ClipTokenizer } from '../engine/tokenizer.js';
import { EngineError, type GenerateRequest } from '../engine/types.js';
import { expectMatchesReference, writeSyntheticCheckpoint } from './fixtures/reference/harness.js';
import weighting from './fixtures/reference/prompt_weighting_tiny.json' with { type: 'json' };
import { tinyE2EReference as reference, tinyFolderPlan } from './fixtures/reference/tiny-generation.js';
import { conditioningMeans, oracleTarget, tinyTextHidden, writeTinyModel } from './fixtures/tiny-models.js';

const D = 768;
const SIDE = 64;
const LATENT = SIDE / 8;
const CHUNK = 77;

let root: string;
let pipeline: Pipeline;
let tokenizer: ClipTokenizer;
/** The two vectors of the "sparkle" embedding, [2 × 768]. */
const sparkle = syntheticTensor('emb_params', [2, D], 7);

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'engine-conditioning-'));
  // Synthetic tokenizer: "a", "photo", "cat", "fox", … are one token each, other words one per letter.
  await writeTinyModel(path.join(root, 'ti'), { generation: 'optimum-new', unet: 'oracle', tokenizer: 'synthetic', embeddingInputs: true });
  await writeTinyModel(path.join(root, 'export'), { generation: 'optimum-new', unet: 'oracle', tokenizer: 'synthetic' });
  await writeTinyModel(path.join(root, 'fixed77'), { generation: 'diffusers-legacy', unet: 'oracle', tokenizer: 'synthetic', unetSequence: 77 });
  const embeddings = path.join(root, 'embeddings');
  await mkdir(path.join(embeddings, 'negatives'), { recursive: true });
  const write = (file: string, shape: number[], data: Float32Array) =>
    writeSafetensors(path.join(embeddings, file), [{ name: 'emb_params', dtype: 'F32', shape, data: () => bytesOf(data) }]);
  await write('sparkle.safetensors', [2, D], sparkle);
  await write('negatives/wide.safetensors', [1, 1024], syntheticTensor('emb_params', [1, 1024], 8));
  await writeFile(path.join(embeddings, 'old.pt'), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
  await writeFile(path.join(embeddings, 'sparkle.preview.png'), 'not weights, ignored');
  pipeline = new Pipeline({ modelsDir: root, providers: ['cpu'], threads: 1 });
  tokenizer = await ClipTokenizer.load(path.join(root, 'ti', 'tokenizer'));
});

afterAll(async () => {
  await pipeline?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

function request(overrides: Partial<GenerateRequest>): GenerateRequest {
  return {
    model: 'ti',
    prompt: 'a photo of a cat',
    negativePrompt: '',
    width: SIDE,
    height: SIDE,
    steps: 12,
    guidance: 1,
    sampler: 'Euler',
    seed: 99,
    count: 1,
    ...overrides,
  };
}

async function draw(req: GenerateRequest): Promise<{ latents: Float32Array; rgb: Uint8Array; infoText: string; truncation: object }> {
  let latents = new Float32Array(0);
  const result = await pipeline.generate(req, { onLatents: (x) => (latents = x.slice()) });
  return { latents, rgb: result.images[0]!.rgb, infoText: result.images[0]!.infoText, truncation: result.truncation };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/** One 77-id chunk as A1111 builds it: BOS, the tokens, EOS, EOS padding (SD 1.x). */
function chunkIds(tokens: readonly number[]): Int32Array {
  const ids = new Int32Array(CHUNK).fill(tokenizer.eosId);
  ids[0] = tokenizer.bosId;
  ids.set(tokens, 1);
  return ids;
}

/** The tiny encoder's states for chunks, concatenated; `vectors` replace rows (embedding placeholders). */
function hiddenOf(chunks: Int32Array[], vectors: { chunk: number; position: number; data: Float32Array }[] = []): Float32Array {
  const out = new Float32Array(chunks.length * CHUNK * D);
  chunks.forEach((ids, c) => out.set(tinyTextHidden(ids, D), c * CHUNK * D));
  for (const v of vectors) out.set(v.data, (v.chunk * CHUNK + v.position) * D);
  return out;
}

const mean = (hidden: Float32Array): number => conditioningMeans(hidden, 1)[0]!;

/** Where the oracle lands with guidance g: x0*(m_u + g·(m_c − m_u)). */
const target = (mc: number, mu: number, g: number): Float32Array => oracleTarget(LATENT, LATENT, g > 1 ? mu + g * (mc - mu) : mc);

async function loaded(name: string): Promise<LoadedModel> {
  const info = (await scanModels(root)).models.find((m) => m.name === name);
  if (!info) throw new Error(`fixture ${name} was not found`);
  return loadModel(info, { providers: ['cpu'], threads: 1 });
}

describe('emphasis', () => {
  it('(cat:1.3) scales the cat position by 1.3, then the chunk back to its mean (A1111 "Original")', async () => {
    const model = await loaded('export');
    try {
      const got = await encodePrompts('a photo of a (cat:1.3)', '', {
        tokenizer,
        encoder: textEncoderOf(model),
        guidance: false,
        maxChunks: 8,
        modelName: 'export',
      });
      const ids = chunkIds(tokenizer.tokenize('a photo of a cat'));
      const z = tinyTextHidden(ids, D);
      const catAt = tokenizer.tokenize('a photo of a').length + 1;
      // z·w per position, then × (Σz / Σz·w): computed in float64 from the formula.
      let before = 0;
      let after = 0;
      for (let i = 0; i < z.length; i++) {
        const w = Math.floor(i / D) === catAt ? 1.3 : 1;
        before += z[i]!;
        after += z[i]! * w;
      }
      const want = Float64Array.from(z, (v, i) => v * (Math.floor(i / D) === catAt ? 1.3 : 1) * (before / after));
      expect(got.tokens).toBe(CHUNK);
      expect(maxAbsDiff(got.hidden, want)).toBeLessThan(1e-6);
      // The weight really moved the cat row relative to the others (not a no-op that keeps the mean).
      const ratio = got.hidden[catAt * D + 5]! / got.hidden[(catAt - 1) * D + 5]!;
      expect(ratio / (z[catAt * D + 5]! / z[(catAt - 1) * D + 5]!)).toBeCloseTo(1.3, 5);
    } finally {
      await model.release();
    }
  });

  it('a plain prompt draws the same bits on a model with and without the embedding inputs', async () => {
    const withInputs = await draw(request({ guidance: 6, negativePrompt: 'red snow' }));
    const plainExport = await draw(request({ model: 'export', guidance: 6, negativePrompt: 'red snow' }));
    expect(Buffer.from(withInputs.latents.buffer).equals(Buffer.from(plainExport.latents.buffer))).toBe(true);
    expect(Buffer.from(withInputs.rgb).equals(Buffer.from(plainExport.rgb))).toBe(true);
  });
});

describe('prompts longer than 75 tokens', () => {
  const words = ['photo', 'cat', 'fox', 'snow', 'dog', 'red', 'the', 'in'];
  const long = Array.from({ length: 100 }, (_, i) => words[i % words.length]).join(' ');

  it('are read in two chunks, nothing reported, and the negative is padded with the empty chunk', async () => {
    const tokens = tokenizer.tokenize(long);
    expect(tokens).toHaveLength(100);
    const mc = mean(hiddenOf([chunkIds(tokens.slice(0, 75)), chunkIds(tokens.slice(75))]));
    const mu = mean(hiddenOf([chunkIds(tokenizer.tokenize('blurry')), chunkIds([])]));
    const got = await draw(request({ prompt: long, negativePrompt: 'blurry', guidance: 7 }));
    expect(got.truncation).toEqual({});
    expect(maxAbsDiff(got.latents, target(mc, mu, 7))).toBeLessThan(2e-4);
    // Padding the negative with its own chunk again instead would land elsewhere.
    const wrong = mean(hiddenOf([chunkIds(tokenizer.tokenize('blurry')), chunkIds(tokenizer.tokenize('blurry'))]));
    expect(maxAbsDiff(target(mc, wrong, 7), target(mc, mu, 7))).toBeGreaterThan(1e-2);
  });

  it('a UNet export that fixes 77 positions gets the first chunk, and the cut is reported', async () => {
    const tokens = tokenizer.tokenize(long);
    const mc = mean(hiddenOf([chunkIds(tokens.slice(0, 75))]));
    const mu = mean(hiddenOf([chunkIds(tokenizer.tokenize('blurry'))]));
    const got = await draw(request({ model: 'fixed77', prompt: long, negativePrompt: 'blurry', guidance: 7 }));
    expect(maxAbsDiff(got.latents, target(mc, mu, 7))).toBeLessThan(2e-4);
    expect(got.truncation).toEqual({ prompt: { dropped: long.split(' ').slice(75).join(' '), tokenLimit: 75 } });
  });

  it('BREAK starts a new chunk', async () => {
    const tokens = tokenizer.tokenize('a cat');
    const mc = mean(hiddenOf([chunkIds(tokenizer.tokenize('a photo')), chunkIds(tokens)]));
    const got = await draw(request({ prompt: 'a photo BREAK a cat' }));
    expect(maxAbsDiff(got.latents, target(mc, 0, 1))).toBeLessThan(2e-4);
  });
});

describe('embeddings from models/embeddings/', () => {
  it('a trigger word in the prompt and in the negative puts its vectors in, and the info text names it with its hash', async () => {
    const a = tokenizer.tokenize('a');
    const cat = tokenizer.tokenize('cat');
    // "a sparkle cat": BOS a [v0 v1] cat EOS…; the negative "sparkle": BOS [v0 v1] EOS…
    const vectors = (position: number) => [
      { chunk: 0, position, data: sparkle.subarray(0, D) },
      { chunk: 0, position: position + 1, data: sparkle.subarray(D, 2 * D) },
    ];
    const mc = mean(hiddenOf([chunkIds([...a, 0, 0, ...cat])], vectors(2)));
    const mu = mean(hiddenOf([chunkIds([0, 0])], vectors(1)));
    const got = await draw(request({ prompt: 'a sparkle cat', negativePrompt: 'Sparkle', guidance: 5 }));
    expect(maxAbsDiff(got.latents, target(mc, mu, 5))).toBeLessThan(2e-4);

    // Without the embedding the same words are letters: a different picture.
    const asText = mean(hiddenOf([chunkIds([...a, ...tokenizer.tokenize('sparkle'), ...cat])]));
    expect(Math.abs(asText - mc)).toBeGreaterThan(1e-3);

    const sha = createHash('sha256')
      .update(await readFile(path.join(root, 'embeddings', 'sparkle.safetensors')))
      .digest('hex');
    expect(parseInfoText(got.infoText)?.params['TI hashes']).toBe(`sparkle: ${sha.slice(0, 12)}`);
  });

  it('files that do not fit are refused by name when a prompt uses them, and break nothing else', async () => {
    const refusal = async (req: Partial<GenerateRequest>): Promise<EngineError> => {
      const err = await pipeline.generate(request(req)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(EngineError);
      return err as EngineError;
    };
    const wide = await refusal({ prompt: 'a wide cat' });
    expect(wide.code).toBe('bad_request');
    expect(wide.message).toBe('Embedding "wide" has 1024-wide vectors (SD 2.x); this model\'s text encoder takes 768 (SD 1.x).');
    const old = await refusal({ prompt: 'a cat', negativePrompt: 'old', guidance: 5 });
    expect(old.message).toMatch(/^Embedding "old": .*pickle/i);
    // The same words inside other words are not triggers; a prompt without them draws.
    const fine = await draw(request({ prompt: 'a widest cat, bold' }));
    expect(fine.latents.length).toBe(4 * LATENT * LATENT);
  });

  it('an ONNX export without the embedding inputs says so in one line instead of drawing without the vectors', async () => {
    const err = await pipeline.generate(request({ model: 'export', prompt: 'a sparkle cat' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).message).toBe(
      'model "export" is an ONNX export whose text encoder cannot take embeddings, so "sparkle" cannot be used with it; remove the word or pick a model made from a checkpoint',
    );
  });
});

describe('a model folder built from a checkpoint (the real CLIP graph with its override inputs)', () => {
  let model: LoadedModel;
  const tableName = 'cond_stage_model.transformer.text_model.embeddings.token_embedding.weight';
  const tableShape = reference.tensors[tableName as keyof typeof reference.tensors] as number[];
  const width = tableShape[1]!;

  beforeAll(async () => {
    const folder = path.join(root, 'built', 'tinyck');
    const file = path.join(root, 'built', 'tiny.safetensors');
    await mkdir(path.dirname(folder), { recursive: true });
    await writeSyntheticCheckpoint(file, reference.tensors, 0);
    const weights = await openWeightsFile(file);
    try {
      await writeModelFolder(weights, tinyFolderPlan, folder, { tokenizerDir: path.join(root, 'ti', 'tokenizer') });
    } finally {
      await weights.close();
    }
    // A 32-wide model is not one the registry offers (it lists SD 1.x/2.x widths), so it is described here.
    model = await loadModel(
      {
        name: 'tinyck',
        dir: folder,
        family: 'sd1',
        predictionType: 'epsilon',
        nativeWidth: 64,
        nativeHeight: 64,
        defaultSampler: 'Euler',
        defaultSteps: 4,
        defaultGuidance: 7.5,
        hasVaeEncoder: true,
        generation: 'optimum-new',
        dtype: 'float32',
      },
      { providers: ['cpu'], threads: 1 },
    );
  });
  afterAll(async () => {
    await model?.release();
  });

  it('a weighted prompt of two chunks and its padded negative match A1111\'s process in PyTorch (1e-4)', async () => {
    // One id per word "w<id>", so the prompt is the reference's tokens written in A1111 syntax.
    const words: PromptTokenizer = {
      bosId: 49406,
      eosId: 49407,
      padId: 49407,
      tokenize: (text) => [...text.matchAll(/\bw(\d+)\b/g)].map((m) => Number(m[1])),
    };
    const got = await encodePrompts(weighting.prompt, weighting.negative_prompt, {
      tokenizer: words,
      encoder: textEncoderOf(model),
      guidance: true,
      maxChunks: 8,
      modelName: 'tinyck',
    });
    expect(got.tokens).toBe(2 * CHUNK);
    const half = got.tokens * width;
    const tensor = (data: Float32Array) => new ort.Tensor('float32', data, [1, got.tokens, width]);
    expectMatchesReference(tensor(got.hidden.subarray(0, half)), weighting.uncond, 1e-4);
    expectMatchesReference(tensor(got.hidden.subarray(half)), weighting.cond, 1e-4);
  });

  it('an embedding holding a token\'s own embedding row encodes exactly as that token', async () => {
    // "twin" = the 32-wide token-embedding row of "fox" in this checkpoint.
    const [fox] = tokenizer.tokenize('fox');
    const row = syntheticTensor(tableName, tableShape, 0).slice(fox! * width, (fox! + 1) * width);
    const dir = path.join(root, 'built', 'embeddings');
    await mkdir(dir, { recursive: true });
    await writeSafetensors(path.join(dir, 'twin.safetensors'), [{ name: 'emb_params', dtype: 'F32', shape: [1, width], data: () => bytesOf(row) }]);
    const set = await new EmbeddingLibrary(dir).forModel('sd1', width);
    expect([...set.usable.keys()]).toEqual(['twin']);

    expect(model.acceptsEmbeddings).toBe(true);
    const encode = (prompt: string, negativePrompt: string) =>
      encodePrompts(prompt, negativePrompt, {
        tokenizer,
        encoder: textEncoderOf(model),
        guidance: true,
        maxChunks: 8,
        embeddings: set.usable,
        modelName: 'tinyck',
      });
    const viaEmbedding = await encode('a twin in the snow', 'twin');
    const viaToken = await encode('a fox in the snow', 'fox');
    expect(viaEmbedding.embeddingsUsed).toEqual(['twin']);
    expect(Buffer.from(viaEmbedding.hidden.buffer).equals(Buffer.from(viaToken.hidden.buffer))).toBe(true);
    const other = await encode('a dog in the snow', 'dog');
    expect(maxAbsDiff(other.hidden, viaToken.hidden)).toBeGreaterThan(1e-3);
  });
});

describe('EmbeddingLibrary', () => {
  it('reports a file that does not fit once, picks up changed files, and keeps the first of two same-named files', async () => {
    const dir = path.join(root, 'library');
    await mkdir(path.join(dir, 'sub'), { recursive: true });
    const write = (file: string, width: number, seed: number) =>
      writeSafetensors(path.join(dir, file), [{ name: 'emb_params', dtype: 'F32', shape: [1, width], data: () => bytesOf(syntheticTensor('emb_params', [1, width], seed)) }]);
    await write('glow.safetensors', 768, 1);
    await write('sub/Glow.safetensors', 768, 2);
    await write('tall.safetensors', 1024, 3);
    const warnings: string[] = [];
    const library = new EmbeddingLibrary(dir, { info: () => undefined, warn: (_o, msg) => warnings.push(msg) });

    const first = await library.forModel('sd1', 768);
    await library.forModel('sd1', 768);
    expect([...first.usable.keys()]).toEqual(['glow']);
    expect([...first.refused.keys()]).toEqual(['tall']);
    expect(warnings.filter((w) => w.startsWith('Embedding "tall"'))).toHaveLength(1);
    expect(warnings.filter((w) => /"Glow" is ignored/.test(w))).toHaveLength(1);

    // A new version of a file (here: two vectors instead of one) counts from the next call.
    await writeSafetensors(path.join(dir, 'glow.safetensors'), [
      { name: 'emb_params', dtype: 'F32', shape: [2, 768], data: () => bytesOf(syntheticTensor('emb_params', [2, 768], 4)) },
    ]);
    expect((await library.forModel('sd1', 768)).usable.get('glow')?.vectors).toBe(2);
    // The same files for an SD 2.x model: now the 1024-wide one fits and the others do not.
    const sd2 = await library.forModel('sd2', 1024);
    expect([...sd2.usable.keys()]).toEqual(['tall']);
  });
});
