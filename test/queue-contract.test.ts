// One contract, two queue backends: the same scenarios run against queue.backend "local" (the
// in-process engine) and "redis" (BullMQ on a real redis-server, with an engine worker in this
// process). Whatever a member sees must not depend on the backend.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig, type DeepPartial } from '../src/config/load.js';
import type { Config, FileConfig } from '../src/config/schema.js';
import { createJobService, type ComposedJobService } from '../src/jobs/service.js';
import { createRedisJobService, type RedisJobService } from '../src/jobs/backend.js';
import type { Job, JobEvent, Store } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { durabilityInput, ScriptedEngine } from './fixtures/durability-engine.js';
import { startInProcessWorker } from './helpers/cluster.js';
import { HAVE_REDIS, startRedis, type TestRedis } from './helpers/redis-server.js';

if (!HAVE_REDIS) console.warn('queue-contract: no redis-server on PATH (apt-get install redis-server); the Redis backend half is skipped');

const silent = pino({ level: 'silent' });

interface Rig {
  jobs: ComposedJobService;
  engine: ScriptedEngine;
  store: Store;
  events: JobEvent[];
  /** Stops the service (grace 0) and starts a new one on the same store and queue. */
  restart(): Promise<Rig>;
  close(): Promise<void>;
}

interface BackendUnderTest {
  name: 'local' | 'redis';
  rig(opts: { hold?: boolean; previews?: boolean; config?: DeepPartial<FileConfig>; start?: boolean }): Promise<Rig>;
}

let redis: TestRedis | undefined;
let prefixCount = 0;
const cleanups: (() => Promise<void>)[] = [];

function configFor(dataDir: string, backend: 'local' | 'redis', extra: DeepPartial<FileConfig> = {}): Config {
  return defaultConfig({
    dataDir,
    storage: { url: `sqlite://${path.join(dataDir, 'bot.sqlite')}` },
    engine: { previews: false },
    ...extra,
    queue: {
      perMemberPending: 10,
      globalPending: 100,
      maxAttempts: 3,
      ...(extra.queue ?? {}),
      backend,
      redis: {
        url: redis?.url ?? 'redis://127.0.0.1:1',
        prefix: `contract${++prefixCount}`,
        lockSeconds: 2,
        stalledCheckSeconds: 1,
        maxStalls: 5,
        resultTtlHours: 1,
        maxResultMegabytes: 16,
      },
    },
  });
}

function record(jobs: ComposedJobService): JobEvent[] {
  const events: JobEvent[] = [];
  jobs.on((e) => events.push(e));
  return events;
}

/** A started (or not) service with its events recorded; restart() builds the next life the same way. */
async function rigOf(build: () => Promise<ComposedJobService>, engine: ScriptedEngine, store: Store, start: boolean): Promise<Rig> {
  const jobs = await build();
  const events = record(jobs);
  if (start) await jobs.start();
  return {
    jobs,
    engine,
    store,
    events,
    restart: async () => {
      await jobs.stop(0);
      const next = await rigOf(build, engine, store, start);
      await next.jobs.start();
      return next;
    },
    close: () => jobs.stop(0),
  };
}

const local: BackendUnderTest = {
  name: 'local',
  async rig({ hold, previews, config: extra, start = true }) {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'contract-local-'));
    const config = configFor(dataDir, 'local', extra);
    const store = await createStore(config);
    const engine = new ScriptedEngine({ hold: hold ?? false, previews: previews ?? false });
    const make = () => rigOf(() => Promise.resolve(createJobService({ config, store, engine, log: silent })), engine, store, start);
    cleanups.push(async () => {
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    });
    return make();
  },
};

const remote: BackendUnderTest = {
  name: 'redis',
  async rig({ hold, previews, config: extra, start = true }) {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'contract-redis-'));
    const config = configFor(dataDir, 'redis', extra);
    const store = await createStore(config);
    const engine = new ScriptedEngine({ hold: hold ?? false, previews: previews ?? false });
    const stopWorker = await startInProcessWorker(config, engine, 'w1');
    const make = () =>
      rigOf(
        async () => {
          const jobs: RedisJobService = await createRedisJobService({ config, store, engine, log: silent });
          await jobs.refreshWorkers();
          return jobs;
        },
        engine,
        store,
        start,
      );
    cleanups.push(async () => {
      await stopWorker();
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    });
    return make();
  },
};

function ended(events: JobEvent[], id: string): Promise<JobEvent> {
  return new Promise((resolve) => {
    const check = () => {
      const hit = events.find((e) => e.job.id === id && (e.type === 'done' || e.type === 'failed' || e.type === 'cancelled'));
      if (hit) resolve(hit);
      else setTimeout(check, 10);
    };
    check();
  });
}

async function submit(rig: Rig, prompt: string, member: string): Promise<Job> {
  const out = await rig.jobs.submit(durabilityInput(prompt, member));
  if (!out.ok) throw new Error(out.reason);
  return out.job;
}

beforeAll(async () => {
  if (HAVE_REDIS) redis = await startRedis();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await redis?.stop();
});

const backends = HAVE_REDIS ? [local, remote] : [local];

describe.each(backends)('queue contract: $name backend', (backend) => {
  it('saves, draws and records a job: queued → started → progress → done, pictures and grid on disk, delivered once', async () => {
    const rig = await backend.rig({});
    const job = await submit(rig, 'a fox', 'ann');
    const end = await ended(rig.events, job.id);
    expect(end.type).toBe('done');
    const types = rig.events.filter((e) => e.job.id === job.id).map((e) => e.type);
    expect(types[0]).toBe('queued');
    expect(types).toContain('started');
    expect(types).toContain('progress');
    const done = (await rig.jobs.get(job.id))!;
    expect(done.status).toBe('done');
    expect(done.result?.images).toHaveLength(2);
    for (const file of [...done.result!.images.map((i) => i.file), done.result!.grid!]) {
      expect((await stat(rig.jobs.filePath(file))).size).toBeGreaterThan(0);
    }
    expect(await rig.jobs.pendingDeliveries('telegram')).toHaveLength(1);
    await rig.jobs.markDelivered(job.id, { chatId: 'c', messageId: 'm' });
    await rig.jobs.markDelivered(job.id, { chatId: 'c', messageId: 'm' });
    expect(await rig.jobs.pendingDeliveries('telegram')).toHaveLength(0);
    expect((await rig.jobs.get(job.id))?.status).toBe('delivered');
    await rig.close();
  });

  it('passes step progress with preview pictures to the adapters', async () => {
    const rig = await backend.rig({ previews: true, config: { engine: { previews: true } } });
    const job = await submit(rig, 'a fox', 'ann');
    expect((await ended(rig.events, job.id)).type).toBe('done');
    const progress = rig.events.filter((e): e is Extract<JobEvent, { type: 'progress' }> => e.type === 'progress' && e.job.id === job.id);
    expect(progress.at(-1)).toMatchObject({ step: 3, total: 3 });
    const preview = progress.find((e) => e.preview)?.preview;
    expect(preview).toMatchObject({ width: 8, height: 8 });
    expect(preview!.png.subarray(1, 4).toString('latin1')).toBe('PNG');
    await rig.close();
  });

  it('starts jobs in the fair order: A queues three, B and C one each → A, B, C, A, A', async () => {
    const rig = await backend.rig({ start: false });
    const ids = new Map<string, string>();
    for (const [prompt, member] of [['a1', 'A'], ['a2', 'A'], ['a3', 'A'], ['b1', 'B'], ['c1', 'C']] as const) {
      ids.set((await submit(rig, prompt, member)).id, prompt);
    }
    await rig.jobs.start();
    for (const id of ids.keys()) await ended(rig.events, id);
    const order = rig.events.filter((e) => e.type === 'started').map((e) => ids.get(e.job.id));
    expect(order).toEqual(['a1', 'b1', 'c1', 'a2', 'a3']);
    await rig.close();
  });

  it('cancels a waiting job at once and a running one within a step; neither is drawn to the end', async () => {
    const rig = await backend.rig({ hold: true });
    const running = await submit(rig, 'long one', 'ann');
    const waiting = await submit(rig, 'second', 'bob');
    await rig.engine.whenHeld();
    const by = { platform: 'telegram' as const, userId: 'bob', name: 'bob', roles: [] };
    const w = await rig.jobs.cancel(waiting.id, by, false);
    expect(w).toMatchObject({ ok: true, wasRunning: false });
    const r = await rig.jobs.cancel(running.id, { ...by, userId: 'ann', name: 'ann' }, false);
    expect(r).toMatchObject({ ok: true, wasRunning: true });
    expect((await ended(rig.events, running.id)).type).toBe('cancelled');
    expect((await ended(rig.events, waiting.id)).type).toBe('cancelled');
    expect((await rig.jobs.get(running.id))?.status).toBe('cancelled');
    expect(rig.engine.calls.map((c) => c.prompt)).toEqual(['long one']);
    await rig.close();
  });

  it("refuses a member's request over the per-member cap with the club's limit in words", async () => {
    const rig = await backend.rig({ hold: true, config: { queue: { perMemberPending: 2 } } });
    await submit(rig, 'one', 'ann');
    await submit(rig, 'two', 'ann');
    const third = await rig.jobs.submit(durabilityInput('three', 'ann'));
    expect(third).toEqual({ ok: false, reason: expect.stringContaining('2 pictures waiting') });
    // The first job may still be on its way to the worker: let it arrive and hold before the
    // release, or release() would wait for a hold that never comes.
    await rig.engine.whenHeld();
    rig.engine.hold = false;
    await rig.engine.release();
    await rig.close();
  });

  it("fails a request the engine refuses with the engine's own words", async () => {
    const rig = await backend.rig({});
    const job = await submit(rig, 'REFUSE this', 'ann');
    const end = await ended(rig.events, job.id);
    expect(end).toMatchObject({ type: 'failed', reason: 'That prompt is too long for this model.' });
    await rig.close();
  });

  it('retries a job whose engine worker crashed, in its place, and drops it at maxAttempts', async () => {
    const rig = await backend.rig({});
    const job = await submit(rig, 'WORKER-DIES', 'ann');
    const end = await ended(rig.events, job.id);
    expect(end.type).toBe('failed');
    expect((await rig.jobs.get(job.id))?.attempts).toBe(3);
    expect(rig.events.filter((e) => e.type === 'resumed' && e.job.id === job.id)).toHaveLength(2);
    await rig.close();
  });

  it('keeps waiting jobs across a stop and draws each exactly once after the restart', async () => {
    let rig = await backend.rig({ hold: true });
    const first = await submit(rig, 'first', 'ann');
    const rest = [await submit(rig, 'second', 'bob'), await submit(rig, 'third', 'cid')];
    await rig.engine.whenHeld();
    rig = await rig.restart();
    // The job that was drawing at the stop waits again and is drawn first after the restart.
    await rig.engine.whenHeld();
    rig.engine.hold = false;
    await rig.engine.release();
    for (const j of [first, ...rest]) expect((await ended(rig.events, j.id)).type).toBe('done');
    const drawn = rig.engine.calls.map((c) => c.prompt).filter((p) => p !== 'first');
    expect(drawn.sort()).toEqual(['second', 'third']);
    await rig.close();
  });
});
