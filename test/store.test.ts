import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config/load.js';
import type { Job, JobStatus, Store } from '../src/jobs/types.js';
import { createStore, KeyvJobRepo, openKeyv } from '../src/store/index.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'store-test-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function configFor(file: string) {
  return defaultConfig({ dataDir: root, storage: { url: `sqlite://${file}` } });
}

function job(id: string, seq: number, status: JobStatus = 'queued', extra: Partial<Job> = {}): Job {
  return {
    id,
    seq,
    kind: 'imagine',
    spec: {
      prompt: 'a fox',
      negativePrompt: '',
      width: 512,
      height: 512,
      steps: 4,
      guidance: 7,
      sampler: 'Euler',
      seed: 1,
      count: 1,
      model: 'tiny',
    },
    requester: { platform: 'discord', userId: 'u1', name: 'Ann', roles: [] },
    target: { platform: 'discord', chatId: 'c1', handle: { token: 'x' } },
    tier: 0,
    status,
    createdAt: 1_000,
    attempts: 0,
    notes: [],
    ...extra,
  };
}

async function withStore<T>(file: string, work: (store: Store) => Promise<T>): Promise<T> {
  const store = await createStore(configFor(file));
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

describe('SQLite store', () => {
  it('creates the parent directory, switches to WAL and keeps jobs across reopen', async () => {
    const file = path.join(root, 'nested', 'dir', 'bot.sqlite');
    await withStore(file, async (store) => {
      await store.jobs.put(job('aaaaaaa1', 1));
      await store.jobs.put(job('aaaaaaa2', 2, 'running', { attempts: 1 }));
    });
    const kv = await openKeyv(`sqlite://${file}`);
    const adapter = kv.store as { query(sql: string): Promise<{ journal_mode: string }[]> };
    expect((await adapter.query('PRAGMA journal_mode'))[0]?.journal_mode).toBe('wal');
    await kv.disconnect();

    await withStore(file, async (store) => {
      expect((await store.jobs.get('aaaaaaa2'))?.status).toBe('running');
      expect((await store.jobs.active()).map((j) => j.id)).toEqual(['aaaaaaa1', 'aaaaaaa2']);
    });
  });

  it('hands out seq numbers that keep rising across restarts', async () => {
    const file = path.join(root, 'bot.sqlite');
    const first = await withStore(file, (s) => Promise.all([s.jobs.nextSeq(), s.jobs.nextSeq(), s.jobs.nextSeq()]));
    expect([...first].sort((a, b) => a - b)).toEqual([1, 2, 3]);
    const second = await withStore(file, (s) => s.jobs.nextSeq());
    expect(second).toBe(4);
  });

  it('returns active jobs in seq order, including done-but-undelivered, and drops finished ones', async () => {
    const file = path.join(root, 'bot.sqlite');
    await withStore(file, async (store) => {
      // Written out of order on purpose: active() sorts by seq, not by write order.
      await store.jobs.put(job('bbbbbbb3', 3000));
      await store.jobs.put(job('bbbbbbb1', 1, 'done', { finishedAt: 5_000 }));
      await store.jobs.put(job('bbbbbbb2', 2));
      await store.jobs.put(job('bbbbbbb4', 4, 'failed', { finishedAt: 5_000, error: 'x' }));
      expect((await store.jobs.active()).map((j) => j.id)).toEqual(['bbbbbbb1', 'bbbbbbb2', 'bbbbbbb3']);

      await store.jobs.put(job('bbbbbbb1', 1, 'delivered', { finishedAt: 5_000, delivery: { at: 6_000 } }));
      await store.jobs.put(job('bbbbbbb3', 3000, 'cancelled', { finishedAt: 7_000 }));
      expect((await store.jobs.active()).map((j) => j.id)).toEqual(['bbbbbbb2']);
    });
  });

  it('finds jobs by idempotency key and by delivered message, also after a restart', async () => {
    const file = path.join(root, 'bot.sqlite');
    await withStore(file, async (store) => {
      await store.jobs.put(job('ccccccc1', 1, 'queued', { idempotencyKey: 'discord:interaction:99' }));
      await store.jobs.put(
        job('ccccccc1', 1, 'delivered', {
          idempotencyKey: 'discord:interaction:99',
          finishedAt: 2_000,
          delivery: { at: 2_000, ref: { chatId: 'c1', messageId: 'm77' } },
        }),
      );
    });
    await withStore(file, async (store) => {
      expect((await store.jobs.byIdempotencyKey('discord:interaction:99'))?.id).toBe('ccccccc1');
      expect(await store.jobs.byIdempotencyKey('discord:interaction:100')).toBeUndefined();
      expect((await store.jobs.byMessage('discord', 'c1', 'm77'))?.id).toBe('ccccccc1');
      expect(await store.jobs.byMessage('telegram', 'c1', 'm77')).toBeUndefined();
    });
  });

  it('lists finished jobs by age for retention and deletes records with their indexes', async () => {
    const file = path.join(root, 'bot.sqlite');
    const hour = 3_600_000;
    await withStore(file, async (store) => {
      await store.jobs.put(job('ddddddd1', 1, 'delivered', { finishedAt: 10 * hour, delivery: { at: 10 * hour, ref: { chatId: 'c', messageId: 'm1' } }, idempotencyKey: 'k1' }));
      await store.jobs.put(job('ddddddd2', 2, 'failed', { finishedAt: 20 * hour }));
      await store.jobs.put(job('ddddddd3', 3, 'cancelled', { finishedAt: 10 * hour + 5 }));
      await store.jobs.put(job('ddddddd4', 4, 'queued'));
      await store.jobs.put(job('ddddddd5', 5, 'done', { finishedAt: 1 }));

      const old = await store.jobs.finishedBefore(10 * hour + 10);
      expect(old.map((j) => j.id)).toEqual(['ddddddd1', 'ddddddd3']);

      await store.jobs.delete('ddddddd1');
      expect(await store.jobs.get('ddddddd1')).toBeUndefined();
      expect(await store.jobs.byMessage('discord', 'c', 'm1')).toBeUndefined();
      expect(await store.jobs.byIdempotencyKey('k1')).toBeUndefined();
      expect((await store.jobs.finishedBefore(100 * hour)).map((j) => j.id)).toEqual(['ddddddd3', 'ddddddd2']);
      expect((await store.jobs.active()).map((j) => j.id)).toEqual(['ddddddd4', 'ddddddd5']);
    });
  });

  it('rejects a write after the store is closed instead of pretending it landed', async () => {
    const file = path.join(root, 'bot.sqlite');
    const store = await createStore(configFor(file));
    await store.close();
    await expect(store.jobs.put(job('eeeeeee1', 1))).rejects.toThrow();
    await expect(store.jobs.nextSeq()).rejects.toThrow();
  });

  it('keeps member settings per platform and user, ignoring fields of the wrong type', async () => {
    const file = path.join(root, 'bot.sqlite');
    await withStore(file, async (store) => {
      await store.settings.set('telegram', '42', { aspect: '3:2', steps: 30, sampler: 'Euler a' });
      await store.settings.set('discord', '42', { images: 1 });
      // Wrong types (as a hand-edited record would have) are dropped, not passed on.
      await store.settings.set('discord', '43', { steps: 'ten' as unknown as number, sampler: 'Nope' as 'Euler' });
    });
    await withStore(file, async (store) => {
      expect(await store.settings.get('telegram', '42')).toEqual({ aspect: '3:2', steps: 30, sampler: 'Euler a' });
      expect(await store.settings.get('discord', '42')).toEqual({ images: 1 });
      expect(await store.settings.get('discord', '43')).toEqual({});
      expect(await store.settings.get('discord', 'nobody')).toEqual({});
    });
  });
});

/**
 * A stop between any two writes: the keyv below the repo dies after `budget` writes, the
 * process "restarts" with a fresh repo on the same file, and the invariants must hold.
 */
describe('a stop between any two writes', () => {
  const ref = { chatId: 'c9', messageId: 'm9' };
  const lifecycle: Job[] = [
    job('fffffff1', 1, 'queued', { idempotencyKey: 'tg:1:1' }),
    job('fffffff1', 1, 'running', { idempotencyKey: 'tg:1:1', attempts: 1, startedAt: 2_000 }),
    job('fffffff1', 1, 'done', { idempotencyKey: 'tg:1:1', attempts: 1, startedAt: 2_000, finishedAt: 3_000 }),
    job('fffffff1', 1, 'delivered', {
      idempotencyKey: 'tg:1:1',
      attempts: 1,
      startedAt: 2_000,
      finishedAt: 3_000,
      delivery: { at: 4_000, ref },
    }),
  ];

  async function runUntilDeath(file: string, budget: number): Promise<{ acknowledged: number; died: boolean }> {
    const kv = await openKeyv(`sqlite://${file}`);
    let writes = 0;
    const dying = new Proxy(kv, {
      get(target, prop, receiver) {
        const value: unknown = Reflect.get(target, prop, receiver);
        if ((prop === 'set' || prop === 'delete') && typeof value === 'function') {
          return (...args: unknown[]) => {
            if (writes >= budget) return Promise.reject(new Error('killed'));
            writes += 1;
            return (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          };
        }
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const repo = new KeyvJobRepo(dying);
    let acknowledged = 0;
    let died = false;
    try {
      for (const state of lifecycle) {
        await repo.put(state);
        acknowledged += 1;
      }
    } catch {
      died = true;
    }
    await kv.disconnect();
    return { acknowledged, died };
  }

  it('never loses an acknowledged state, never resurrects a delivered job, and leaves no stray index entry', async () => {
    let budget = 0;
    for (;;) {
      const file = path.join(root, `crash-${budget}.sqlite`);
      const { acknowledged, died } = await runUntilDeath(file, budget);
      await withStore(file, async (store) => {
        const record = await store.jobs.get('fffffff1');
        const active = await store.jobs.active();
        const finished = await store.jobs.finishedBefore(Number.MAX_SAFE_INTEGER);
        const statuses = lifecycle.map((j) => j.status);
        if (acknowledged > 0) {
          // The record is at least as far along as the last put that returned.
          expect(record).toBeDefined();
          expect(statuses.indexOf(record!.status)).toBeGreaterThanOrEqual(acknowledged - 1);
        }
        if (!record) {
          expect(active).toEqual([]);
          expect(await store.jobs.byIdempotencyKey('tg:1:1')).toBeUndefined();
        } else if (record.status === 'delivered') {
          expect(active).toEqual([]);
          expect(finished.map((j) => j.id)).toEqual(['fffffff1']);
          expect((await store.jobs.byMessage('discord', ref.chatId, ref.messageId))?.id).toBe('fffffff1');
        } else {
          expect(active.map((j) => j.id)).toEqual(['fffffff1']);
          expect(active[0]!.status).toBe(record.status);
          expect((await store.jobs.byIdempotencyKey('tg:1:1'))?.id).toBe('fffffff1');
        }
      });
      if (!died) break;
      budget += 1;
    }
    // Every write of the lifecycle was a possible stop point.
    expect(budget).toBeGreaterThan(6);
  });
});
