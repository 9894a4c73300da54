// Model switching: the engine keeps loaded models in an LRU bounded by a memory budget, so
// alternating two models that fit does not reload them; one that does not fit pushes the least
// recently used out, and its sessions are released.
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { estimateResidentBytes, ModelCache } from '../engine/model-cache.js';
import { Pipeline } from '../engine/pipeline.js';
import type { GenerateRequest } from '../engine/types.js';
import { isLoadedFor } from '../src/jobs/model-preference.js';
import { DEMO_TOKENIZER_DIR, writeTinyCheckpoint, writeTinyLora } from './fixtures/tiny-checkpoint.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

const MB = 1024 * 1024;
let root: string;
let oneModelBytes: number;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'engine-model-cache-'));
  await writeTinyModel(path.join(root, 'alpha'), { generation: 'optimum-new', unet: 'smooth', vaeEncoder: false });
  await cp(path.join(root, 'alpha'), path.join(root, 'beta'), { recursive: true });
  oneModelBytes = await estimateResidentBytes(path.join(root, 'alpha'), ['unet', 'text_encoder', 'vae_decoder']);
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

function request(model: string): GenerateRequest {
  return { model, prompt: 'a fox', negativePrompt: '', width: 64, height: 64, steps: 1, guidance: 1, sampler: 'Euler', seed: 1, count: 1 };
}

/** Draws alpha, beta, alpha, beta and returns which models were loaded, in order, and the loaded set after. */
async function alternate(memoryBudgetMB: number): Promise<{ loads: string[]; evictions: number; loaded: string[] }> {
  const loads: string[] = [];
  let evictions = 0;
  const reported: string[][] = [];
  const pipeline = new Pipeline({
    modelsDir: root,
    providers: ['cpu'],
    threads: 1,
    memoryBudgetMB,
    onLoadedModels: (names) => reported.push(names),
    log: {
      info: (obj, msg) => {
        if (msg === 'model loaded') loads.push(String(obj['model']));
        if (msg === 'models released to make room') evictions += 1;
      },
      warn: () => undefined,
    },
  });
  try {
    for (const model of ['alpha', 'beta', 'alpha', 'beta']) await pipeline.generate(request(model));
    expect(reported.at(-1)).toEqual(pipeline.loadedModels());
    return { loads, evictions, loaded: pipeline.loadedModels() };
  } finally {
    await pipeline.close();
  }
}

describe('loaded models within a memory budget', () => {
  it('loads each of two models once when the budget fits both', async () => {
    const { loads, evictions, loaded } = await alternate((2.5 * oneModelBytes) / MB);
    expect(loads).toEqual(['alpha', 'beta']);
    expect(evictions).toBe(0);
    expect(loaded).toEqual(['alpha', 'beta']);
  });

  it('reloads on every switch when the budget fits only one', async () => {
    const { loads, evictions, loaded } = await alternate((1.5 * oneModelBytes) / MB);
    expect(loads).toEqual(['alpha', 'beta', 'alpha', 'beta']);
    expect(evictions).toBe(3);
    expect(loaded).toEqual(['beta']);
  });
});

describe('ModelCache', () => {
  class Counted {
    released = 0;
    async release(): Promise<void> {
      this.released += 1;
    }
  }

  it('releases the least recently used model first, and only as many as needed', async () => {
    const cache = new ModelCache<Counted>(300);
    const [a, b, c] = [new Counted(), new Counted(), new Counted()];
    cache.add('/a', a, 100, 'a');
    cache.add('/b', b, 100, 'b');
    cache.add('/c', c, 100, 'c');
    cache.get('/a'); // a is now the most recently used: b goes first
    expect(await cache.makeRoom(100)).toEqual(['/b']);
    expect([a.released, b.released, c.released]).toEqual([0, 1, 0]);
    expect(cache.names()).toEqual(['c', 'a']);
    expect(cache.residentBytes()).toBe(200);
    // A model larger than the whole budget empties the cache and still loads alone.
    expect(await cache.makeRoom(1000)).toEqual(['/c', '/a']);
    expect(cache.residentBytes()).toBe(0);
  });

  it('keys by folder: two names for one folder share one entry', () => {
    const cache = new ModelCache<Counted>(Number.POSITIVE_INFINITY);
    const model = new Counted();
    cache.add('/models/x', model, 10, 'x');
    expect(cache.get('/models/x', 'x-alias')).toBe(model);
    expect(cache.names()).toEqual(['x', 'x-alias']);
  });
});

// The engine reports loaded models by load key, and the scheduler derives a waiting job's key from
// its spec with the same function: a LoRA job counts as loaded only where its variant is.
describe('loaded models with LoRAs, as the scheduler sees them', () => {
  it('reports a LoRA variant as its own loaded model, matching the key a queued job derives', async () => {
    const modelsDir = path.join(root, 'lora-models');
    await mkdir(path.join(modelsDir, 'loras'), { recursive: true });
    await writeTinyCheckpoint(path.join(modelsDir, 'ck.safetensors'));
    await cp(DEMO_TOKENIZER_DIR, path.join(modelsDir, 'tokenizer'), { recursive: true });
    await writeTinyLora(path.join(modelsDir, 'loras', 'Fox-Style.safetensors'));
    await writeTinyLora(path.join(modelsDir, 'loras', 'ink.safetensors'), { seed: 5 });
    const loads: string[] = [];
    const pipeline = new Pipeline({
      modelsDir,
      modelCacheDir: path.join(root, 'lora-cache'),
      providers: ['cpu'],
      threads: 1,
      log: {
        info: (obj, msg) => {
          if (msg === 'model loaded') loads.push(String(obj['model']));
        },
        warn: () => undefined,
      },
    });
    const spec = (prompt: string) => ({ model: 'ck', prompt, negativePrompt: '' });
    const plain = spec('a fox');
    const tagged = spec('a fox <lora:Fox-Style:1> <lora:ink:0.5>');
    const reordered = spec('a fox <lora:INK:0.5> <lora:fox-style:1>');
    const otherWeight = spec('a fox <lora:Fox-Style:1> <lora:ink:0.8>');
    try {
      await pipeline.generate({ ...request('ck'), prompt: tagged.prompt });
      expect(isLoadedFor(tagged, pipeline.loadedModels())).toBe(true);
      expect(isLoadedFor(reordered, pipeline.loadedModels())).toBe(true);
      expect(isLoadedFor(plain, pipeline.loadedModels())).toBe(false);
      expect(isLoadedFor(otherWeight, pipeline.loadedModels())).toBe(false);
      // What the key promises holds: the same set in another order and case loads nothing new.
      await pipeline.generate({ ...request('ck'), prompt: reordered.prompt });
      expect(loads).toEqual(['ck']);
      await pipeline.generate(request('ck'));
      expect(loads).toEqual(['ck', 'ck']);
      expect(isLoadedFor(plain, pipeline.loadedModels())).toBe(true);
      expect(isLoadedFor(tagged, pipeline.loadedModels())).toBe(true);
    } finally {
      await pipeline.close();
    }
  }, 120_000);
});
