// The routing rule on its own (src/jobs/redis/routing.ts) and the fair queue's take(), which
// serves a job further down the order as if it were next.
import { describe, expect, it } from 'vitest';
import { FairQueue } from '../src/jobs/fair-queue.js';
import { loadKey } from '../engine/job-loras.js';
import { loadedForBeat, MAX_LOADED_KEY_CHARS, MAX_LOADED_REPORTED, type WorkerBeat } from '../src/jobs/redis/protocol.js';
import { modelsWithoutWorker, PREFER_WITHIN, route } from '../src/jobs/redis/routing.js';

/** A worker of an earlier version: it reports only the model it drew last, as `loaded`. */
const worker = (id: string, models: string[], loaded?: string): WorkerBeat => ({ id, host: 'h', models, done: 0, since: 0, at: 0, ...(loaded ? { loaded } : {}) });
/** A worker that reports its engine's whole LRU of loaded models (load keys). */
const lruWorker = (id: string, models: string[], loadedModels: string[], loaded?: string): WorkerBeat => ({ ...worker(id, models, loaded), loadedModels });
const job = (id: string, model: string, prompt = 'a fox') => ({ id, spec: { model, prompt, negativePrompt: '' } });

describe('route', () => {
  it('gives a job only to a worker that has its model, skipping jobs no free worker can run', () => {
    const free = [worker('w1', ['alpha'])];
    expect(route([job('g', 'gamma'), job('a', 'alpha')], free)).toMatchObject({ job: { id: 'a' }, worker: { id: 'w1' }, loaded: false });
    expect(route([job('g', 'gamma')], free)).toBeUndefined();
    expect(route([job('a', 'alpha')], [])).toBeUndefined();
  });

  it('prefers a job whose model a free worker has loaded, within the first PREFER_WITHIN jobs only', () => {
    const free = [worker('w1', ['alpha', 'beta'], 'beta')];
    const near = [job('a1', 'alpha'), job('b1', 'beta')];
    expect(route(near, free)).toMatchObject({ job: { id: 'b1' }, loaded: true });
    const far = [...Array.from({ length: PREFER_WITHIN }, (_, i) => job(`a${i}`, 'alpha')), job('b1', 'beta')];
    expect(route(far, free)).toMatchObject({ job: { id: 'a0' }, loaded: false });
  });

  it('picks, for a job, the free worker with its model loaded over one that would switch', () => {
    const free = [worker('w1', ['alpha', 'beta'], 'beta'), worker('w2', ['alpha'], 'alpha')];
    expect(route([job('a', 'alpha')], free)).toMatchObject({ worker: { id: 'w2' }, loaded: true });
  });

  it('counts every model in a worker’s loaded list as loaded, not only the one it drew last', () => {
    // w1 drew beta last but still holds alpha in its LRU; w2 holds nothing.
    const free = [lruWorker('w1', ['alpha', 'beta', 'gamma'], ['alpha', 'beta'], 'beta'), lruWorker('w2', ['alpha', 'beta', 'gamma'], [])];
    expect(route([job('g1', 'gamma'), job('a1', 'alpha')], free)).toMatchObject({ job: { id: 'a1' }, worker: { id: 'w1' }, loaded: true });
    // The list is what counts: a model evicted since (beta, drawn last) is loaded no more.
    const evicted = [lruWorker('w1', ['alpha', 'beta'], ['alpha'], 'beta')];
    expect(route([job('b1', 'beta'), job('a1', 'alpha')], evicted)).toMatchObject({ job: { id: 'a1' }, loaded: true });
  });

  it('still understands a worker of an earlier version that reports one loaded model', () => {
    const free = [worker('old', ['alpha', 'beta'], 'beta')];
    expect(route([job('a1', 'alpha'), job('b1', 'beta')], free)).toMatchObject({ job: { id: 'b1' }, worker: { id: 'old' }, loaded: true });
  });

  it('counts a job with LoRAs as loaded only where its LoRA variant is, whatever the order and case of its tags', () => {
    const variant = loadKey('beta', [
      { name: 'ink', textEncoderWeight: 0.8, unetWeight: 0.8 },
      { name: 'fox-style', textEncoderWeight: 1, unetWeight: 0.5 },
    ]);
    const plain = [lruWorker('w1', ['alpha', 'beta'], ['beta'])];
    const withLora = job('b-lora', 'beta', 'a fox <lora:Fox-Style:1:0.5> <lora:ink:0.8>');
    // Only the plain beta is loaded: the LoRA job would switch, the plain alpha job neither; fair order stands.
    expect(route([job('a1', 'alpha'), withLora], plain)).toMatchObject({ job: { id: 'a1' }, loaded: false });
    expect(route([withLora, job('b1', 'beta')], plain)).toMatchObject({ job: { id: 'b1' }, loaded: true });
    // Its variant is loaded: the LoRA job counts as loaded, a plain beta job does not.
    const onVariant = [lruWorker('w1', ['alpha', 'beta'], [variant])];
    expect(route([job('b1', 'beta'), withLora], onVariant)).toMatchObject({ job: { id: 'b-lora' }, loaded: true });
  });

  it('names the models no live worker has', () => {
    expect(modelsWithoutWorker(['alpha', 'gamma', 'gamma'], [worker('w1', ['alpha'])])).toEqual(['gamma']);
  });
});

describe('loadedForBeat', () => {
  it('keeps the heartbeat small: the most recently used keys, none longer than the bound', () => {
    const keys = Array.from({ length: MAX_LOADED_REPORTED + 3 }, (_, i) => `m${i}`);
    const tooLong = `x ${'<lora:l:1> '.repeat(MAX_LOADED_KEY_CHARS / 10)}`;
    const reported = loadedForBeat([...keys.slice(0, -1), tooLong, keys.at(-1)!]);
    expect(reported).toEqual(keys.slice(-MAX_LOADED_REPORTED));
  });
});

describe('FairQueue.take', () => {
  it('serves a later job as if it were next: its member used this round’s turn', () => {
    const q = new FairQueue();
    q.add({ jobId: 'a1', memberKey: 'a', weight: 1, seq: 1 });
    q.add({ jobId: 'b1', memberKey: 'b', weight: 1, seq: 2 });
    q.add({ jobId: 'b2', memberKey: 'b', weight: 1, seq: 3 });
    q.add({ jobId: 'c1', memberKey: 'c', weight: 1, seq: 4 });
    expect(q.take('b1')?.jobId).toBe('b1');
    expect(q.take('zz')).toBeUndefined();
    expect(q.order().map((e) => e.jobId)).toEqual(['a1', 'c1', 'b2']);
  });
});
