// The same store contract on Redis (storage.url = redis://…). Needs a redis-server binary
// (.ci/run installs Debian's); skipped with a message where there is none.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config/load.js';
import type { Job, JobStatus, Store } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { freePort } from './helpers/free-port.js';
import { HAVE_REDIS } from './helpers/redis-server.js';

if (!HAVE_REDIS) console.warn('store-redis: no redis-server on PATH (apt-get install redis-server); Redis store tests skipped');

function job(id: string, seq: number, status: JobStatus = 'queued', extra: Partial<Job> = {}): Job {
  return {
    id,
    seq,
    kind: 'imagine',
    spec: { prompt: 'a fox', negativePrompt: '', width: 512, height: 512, steps: 4, guidance: 7, sampler: 'Euler', seed: 1, count: 1, model: 'tiny' },
    requester: { platform: 'telegram', userId: 'u1', name: 'Ann', roles: [] },
    target: { platform: 'telegram', chatId: 'c1', handle: {} },
    tier: 0,
    status,
    createdAt: 1_000,
    attempts: 0,
    notes: [],
    ...extra,
  };
}

describe.skipIf(!HAVE_REDIS)('Redis store', () => {
  let redis: ChildProcess;
  let url: string;

  beforeAll(async () => {
    const port = await freePort();
    redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      redis.once('error', reject);
      redis.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('Ready to accept connections')) resolve();
      });
    });
    url = `redis://127.0.0.1:${port}`;
  });
  afterAll(() => {
    redis?.kill('SIGTERM');
  });

  async function withStore<T>(work: (store: Store) => Promise<T>): Promise<T> {
    const store = await createStore(defaultConfig({ storage: { url } }));
    try {
      return await work(store);
    } finally {
      await store.close();
    }
  }

  it('keeps jobs, their order, seq numbers and lookups across a reconnect', async () => {
    await withStore(async (store) => {
      expect(await store.jobs.nextSeq()).toBe(1);
      await store.jobs.put(job('rrrrrrr2', 2));
      await store.jobs.put(job('rrrrrrr1', 1, 'running', { attempts: 1, idempotencyKey: 'tg:1:2' }));
      await store.jobs.put(
        job('rrrrrrr3', 3, 'delivered', { finishedAt: 5_000, delivery: { at: 5_000, ref: { chatId: 'c1', messageId: 'm9' } } }),
      );
    });
    await withStore(async (store) => {
      expect(await store.jobs.nextSeq()).toBe(2);
      expect((await store.jobs.active()).map((j) => j.id)).toEqual(['rrrrrrr1', 'rrrrrrr2']);
      expect((await store.jobs.byIdempotencyKey('tg:1:2'))?.id).toBe('rrrrrrr1');
      expect((await store.jobs.byMessage('telegram', 'c1', 'm9'))?.id).toBe('rrrrrrr3');
      expect((await store.jobs.finishedBefore(6_000)).map((j) => j.id)).toEqual(['rrrrrrr3']);
      await store.jobs.delete('rrrrrrr3');
      expect(await store.jobs.byMessage('telegram', 'c1', 'm9')).toBeUndefined();
      await store.settings.set('telegram', 'u1', { steps: 30, aspect: '3:2' });
    });
    await withStore(async (store) => {
      expect(await store.settings.get('telegram', 'u1')).toEqual({ steps: 30, aspect: '3:2' });
    });
  });

  it('fails start-up with a clear message when Redis cannot be reached', async () => {
    const port = await freePort();
    await expect(createStore(defaultConfig({ storage: { url: `redis://127.0.0.1:${port}` } }))).rejects.toThrow(
      /cannot reach Redis/,
    );
  });
});
