// The routing rule on its own (src/jobs/redis/routing.ts) and the fair queue's take(), which
// serves a job further down the order as if it were next.
import { describe, expect, it } from 'vitest';
import { FairQueue } from '../src/jobs/fair-queue.js';
import { modelsWithoutWorker, PREFER_WITHIN, route } from '../src/jobs/redis/routing.js';
import type { WorkerBeat } from '../src/jobs/redis/protocol.js';

const worker = (id: string, models: string[], loaded?: string): WorkerBeat => ({ id, host: 'h', models, done: 0, since: 0, at: 0, ...(loaded ? { loaded } : {}) });
const job = (id: string, model: string) => ({ id, spec: { model } });

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

  it('names the models no live worker has', () => {
    expect(modelsWithoutWorker(['alpha', 'gamma', 'gamma'], [worker('w1', ['alpha'])])).toEqual(['gamma']);
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
