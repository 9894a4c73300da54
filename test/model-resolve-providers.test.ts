// The resolver builds a model in the graph form of the engine's providers (checkpoint/graph-form.ts),
// for single-file checkpoints and diffusers folders alike: a CUDA engine gets fp16 arithmetic with
// fused attention for an fp16 file, WebGPU fp16 with plain attention, the CPU fp16-resident
// weights. No GPU is needed: the folders are built (not run) and the form shows in the cache key.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GRAPH_VERSION } from '../engine/checkpoint/prepare.js';
import { ModelResolver } from '../engine/model-resolve.js';
import type { ExecutionProviderName, ModelInfo } from '../engine/types.js';
import { DEMO_TOKENIZER_DIR, writeTinyCheckpoint, writeTinyDiffusers } from './fixtures/tiny-checkpoint.js';

let root: string;
let checkpoint: string;
let diffusers: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'resolve-providers-'));
  await mkdir(path.join(root, 'models'));
  checkpoint = path.join(root, 'models', 'half.safetensors');
  await writeTinyCheckpoint(checkpoint, { dtype: 'F16' });
  diffusers = path.join(root, 'models', 'halfdiff');
  await writeTinyDiffusers(diffusers, { dtype: 'F16', tokenizer: DEMO_TOKENIZER_DIR });
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

function model(source: 'checkpoint' | 'diffusers'): ModelInfo {
  return {
    name: source,
    dir: source === 'checkpoint' ? checkpoint : diffusers,
    family: 'sd1',
    predictionType: 'epsilon',
    nativeWidth: 512,
    nativeHeight: 512,
    defaultSteps: 2,
    defaultGuidance: 5,
    defaultSampler: 'Euler',
    hasVaeEncoder: true,
    generation: 'diffusers-legacy',
    dtype: 'float32',
    source,
    storedDtype: 'fp16',
  };
}

async function keyFor(source: 'checkpoint' | 'diffusers', providers?: ExecutionProviderName[]): Promise<string> {
  const resolver = new ModelResolver({
    modelsDir: path.join(root, 'models'),
    cacheDir: path.join(root, 'cache'),
    tokenizerDir: DEMO_TOKENIZER_DIR,
    loraCacheBytes: 1e9,
    ...(providers ? { providers } : {}),
  });
  return path.basename((await resolver.resolve(model(source), undefined)).key);
}

describe("the resolver hands the engine's providers to prepare", () => {
  it.each(['checkpoint', 'diffusers'] as const)('%s: CUDA gets fp16 + fused attention, WebGPU fp16 + plain ops, the CPU fp16-resident', async (source) => {
    const d = source === 'diffusers' ? '-d' : '';
    expect(await keyFor(source, ['cuda', 'cpu'])).toMatch(new RegExp(`^[0-9a-f]{16}${d}-h16-mha-g${GRAPH_VERSION}$`));
    expect(await keyFor(source, ['webgpu', 'cpu'])).toMatch(new RegExp(`^[0-9a-f]{16}${d}-h16-g${GRAPH_VERSION}$`));
    expect(await keyFor(source, ['cpu'])).toMatch(new RegExp(`^[0-9a-f]{16}${d}-h16r-mha-g${GRAPH_VERSION}$`));
    // No providers given: the CPU's form, as before.
    expect(await keyFor(source)).toBe(await keyFor(source, ['cpu']));
  });

});
