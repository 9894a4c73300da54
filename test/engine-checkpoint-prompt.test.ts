// The prompt language on a checkpoint dropped into models/, end to end through the pipeline: the
// folder the engine prepares has the embedding inputs, so a textual-inversion file in
// models/embeddings/ works in the prompt and the negative; the info text carries A1111's Model
// hash, TI hashes and (with a LoRA tag) Lora hashes; a long weighted prompt draws without a cut.
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { parseInfoText } from '../engine/infotext.js';
import { Pipeline } from '../engine/pipeline.js';
import { ClipTokenizer } from '../engine/tokenizer.js';
import type { GenerateRequest, GenerateResult } from '../engine/types.js';
import { DEMO_TOKENIZER_DIR, demoVocabSize, writeTinyCheckpoint, writeTinyLora } from './fixtures/tiny-checkpoint.js';

const WIDTH = 768;
const TABLE = 'cond_stage_model.transformer.text_model.embeddings.token_embedding.weight';

let root: string;
let modelsDir: string;
let pipeline: Pipeline;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'engine-checkpoint-prompt-'));
  modelsDir = path.join(root, 'models');
  await mkdir(path.join(modelsDir, 'embeddings'), { recursive: true });
  await mkdir(path.join(modelsDir, 'loras'), { recursive: true });
  await writeTinyCheckpoint(path.join(modelsDir, 'tinyck.safetensors'));
  await cp(DEMO_TOKENIZER_DIR, path.join(modelsDir, 'tokenizer'), { recursive: true });
  await writeTinyLora(path.join(modelsDir, 'loras', 'ink.safetensors'));
  // "foxlike" holds the checkpoint's own embedding rows of the word "fox" (two tokens in the
  // demo tokenizer's small vocabulary), one vector per token.
  const tokenizer = await ClipTokenizer.load(path.join(modelsDir, 'tokenizer'));
  const fox = tokenizer.tokenize('fox');
  const table = syntheticTensor(TABLE, [await demoVocabSize(), WIDTH], 0);
  const rows = new Float32Array(fox.length * WIDTH);
  fox.forEach((id, k) => rows.set(table.subarray(id * WIDTH, (id + 1) * WIDTH), k * WIDTH));
  await writeSafetensors(path.join(modelsDir, 'embeddings', 'foxlike.safetensors'), [
    { name: 'emb_params', dtype: 'F32', shape: [fox.length, WIDTH], data: () => bytesOf(rows) },
  ]);
  pipeline = new Pipeline({ modelsDir, modelCacheDir: path.join(root, 'cache'), providers: ['cpu'], threads: 1 });
});

afterAll(async () => {
  await pipeline?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

function request(overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return { model: 'tinyck', prompt: 'a fox in the snow', negativePrompt: 'blurry fox', width: 64, height: 64, steps: 2, guidance: 5, sampler: 'Euler', seed: 7, count: 1, ...overrides };
}

const pixels = (r: GenerateResult): Buffer => Buffer.from(r.images[0]!.rgb);
const sha256 = async (file: string): Promise<string> => createHash('sha256').update(await readFile(file)).digest('hex');

describe('a checkpoint model with the prompt language', () => {
  it('an embedding in prompt and negative draws exactly what its token draws; the info text names model and embedding by hash', async () => {
    const viaToken = await pipeline.generate(request());
    const viaEmbedding = await pipeline.generate(request({ prompt: 'a foxlike in the snow', negativePrompt: 'blurry FoxLike' }));
    expect(pixels(viaEmbedding).equals(pixels(viaToken))).toBe(true);
    const other = await pipeline.generate(request({ prompt: 'a dog in the snow', negativePrompt: 'blurry dog' }));
    expect(pixels(other).equals(pixels(viaToken))).toBe(false);

    const params = parseInfoText(viaEmbedding.images[0]!.infoText)!.params;
    expect(params['Model hash']).toBe((await sha256(path.join(modelsDir, 'tinyck.safetensors'))).slice(0, 10));
    expect(params['TI hashes']).toBe(`foxlike: ${(await sha256(path.join(modelsDir, 'embeddings', 'foxlike.safetensors'))).slice(0, 12)}`);
    expect(parseInfoText(viaToken.images[0]!.infoText)!.params['TI hashes']).toBeUndefined();
  });

  it('a weighted prompt of more than 75 tokens with a LoRA tag draws whole; the info text keeps the tag and names its hash', async () => {
    const words = Array.from({ length: 90 }, (_, i) => ['fox', 'snow', 'forest', 'light'][i % 4]).join(' ');
    const result = await pipeline.generate(request({ prompt: `(${words}:1.2) <lora:ink:0.5>` }));
    expect(result.truncation).toEqual({});
    const info = parseInfoText(result.images[0]!.infoText)!;
    expect(info.prompt).toBe(`(${words}:1.2) <lora:ink:0.5>`);
    expect(info.params['Lora hashes']).toMatch(/^ink: [0-9a-f]{12}$/);
    // The same job again, from its own info text's prompt, draws the same picture.
    const again = await pipeline.generate(request({ prompt: info.prompt }));
    expect(pixels(again).equals(pixels(result))).toBe(true);
  });
});
