// A remote engine worker preparing or loading a model: the bot hears the stages over Redis (the
// same progress channel as the steps) and members see them in the status, with the percent.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { statusText } from '../commands/status.js';
import type { GenerateOptions, GenerateRequest, GenerateResult } from '../engine/types.js';
import { createRedisJobService } from '../src/jobs/backend.js';
import type { JobEvent } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { durabilityInput, ScriptedEngine } from './fixtures/durability-engine.js';
import { clusterBotConfig, startInProcessWorker } from './helpers/cluster.js';
import { HAVE_REDIS, startRedis } from './helpers/redis-server.js';

/** The scripted engine, preparing and loading its model before each job as a first use would. */
class PreparingEngine extends ScriptedEngine {
  override async generate(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerateResult> {
    for (const fraction of [0, 0.5, 1]) options.onStage?.({ stage: 'preparing', model: request.model, fraction });
    options.onStage?.({ stage: 'loading', model: request.model });
    return super.generate(request, options);
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

describe.skipIf(!HAVE_REDIS)('cluster: model stages from a remote worker', () => {
  it('relays preparing (with its percent) and loading to the bot before the steps', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const root = await mkdtemp(path.join(tmpdir(), 'cluster-stage-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    const config = clusterBotConfig(root, redis.url, 'stage');
    cleanups.push(await startInProcessWorker(config, new PreparingEngine({ stepMs: 20 }), 'w1'));
    const store = await createStore(config);
    cleanups.push(() => store.close());
    const jobs = await createRedisJobService({ config, store, engine: new ScriptedEngine(), log: pino({ level: 'silent' }) });
    cleanups.push(() => jobs.stop(0));
    const events: JobEvent[] = [];
    const done = new Promise<void>((resolve) => jobs.on((e) => (events.push(e), e.type === 'done' && resolve())));
    await jobs.refreshWorkers();
    await jobs.start();
    const out = await jobs.submit(durabilityInput('a fox', 'ann'));
    if (!out.ok) throw new Error(out.reason);
    await done;
    const lines = events.filter((e) => e.job.id === out.job.id && (e.type === 'stage' || e.type === 'progress')).map(statusText);
    const model = out.job.spec.model;
    expect(lines.slice(0, 4)).toEqual([
      `Preparing model ${model} (first use only)… 0%`,
      `Preparing model ${model} (first use only)… 50%`,
      `Preparing model ${model} (first use only)… 100%`,
      `Loading model ${model}…`,
    ]);
    expect(lines[4]).toMatch(/^Drawing… step \d+\/3/);
  }, 60_000);
});
