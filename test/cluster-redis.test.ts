// The queue's Redis itself failing: restarted (AOF on) in the middle of a run, nothing accepted
// is lost; unreachable, members hear "unavailable" and the bot recovers by itself; set up
// without noeviction, the bot refuses to start and says why.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createRedisJobService, type RedisJobService } from '../src/jobs/backend.js';
import type { JobEvent, Store } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { durabilityInput, ScriptedEngine } from './fixtures/durability-engine.js';
import { clusterBotConfig, startInProcessWorker } from './helpers/cluster.js';
import { until as waitUntil, type Check } from './helpers/wait.js';
import { HAVE_REDIS, startRedis, type TestRedis } from './helpers/redis-server.js';

if (!HAVE_REDIS) console.warn('cluster-redis: no redis-server on PATH (apt-get install redis-server); skipped');

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

interface Rig {
  redis: TestRedis;
  jobs: RedisJobService;
  events: JobEvent[];
  store: Store;
}

async function rig(prefix: string): Promise<Rig> {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const root = await mkdtemp(path.join(tmpdir(), 'cluster-redis-'));
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  const config = clusterBotConfig(root, redis.url, prefix);
  cleanups.push(await startInProcessWorker(config, new ScriptedEngine({ stepMs: 80 }), 'w1'));
  const store = await createStore(config);
  cleanups.push(() => store.close());
  const jobs = await createRedisJobService({ config, store, engine: new ScriptedEngine(), log: silent });
  cleanups.push(() => jobs.stop(0));
  const events: JobEvent[] = [];
  jobs.on((e) => events.push(e));
  await jobs.refreshWorkers();
  await jobs.start();
  return { redis, jobs, events, store };
}

const count = (events: JobEvent[], type: JobEvent['type'], id: string) => events.filter((e) => e.type === type && e.job.id === id).length;

// Polls every 50 ms (Redis round trips), 30 s by default.
const until = (check: Check, what: string, tries = 600) => waitUntil(check, what, tries, 50);

describe.skipIf(!HAVE_REDIS)('cluster: the queue Redis fails', () => {
  it('loses nothing accepted when Redis is killed and restarted on its AOF mid-run', async () => {
    const { redis, jobs, events } = await rig('aof');
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const out = await jobs.submit(durabilityInput(`job ${i}`, `m${i % 3}`));
      if (!out.ok) throw new Error(out.reason);
      ids.push(out.job.id);
    }
    await until(() => events.some((e) => e.type === 'done'), 'a first result');
    const notYetDone = ids.filter((id) => count(events, 'done', id) === 0);
    await redis.restart('SIGKILL');
    expect(notYetDone.length).toBeGreaterThanOrEqual(3);
    await until(() => ids.every((id) => count(events, 'done', id) + count(events, 'failed', id) > 0), 'every job to end', 1200);
    for (const id of ids) {
      expect(count(events, 'done', id), `done events of ${id}`).toBe(1);
      expect(count(events, 'failed', id)).toBe(0);
    }
  }, 120_000);

  it('answers "unavailable" while Redis is away and takes requests again by itself once it is back', async () => {
    const { redis, jobs, events } = await rig('away');
    await redis.kill();
    let refused: string | undefined;
    await until(async () => {
      const out = await jobs.submit(durabilityInput('while away', 'ann'));
      if (!out.ok) refused = out.reason;
      return !out.ok;
    }, 'a refusal');
    expect(refused).toBe('The drawing service is unavailable — try again in a minute.');
    await redis.restart();
    let accepted: string | undefined;
    await until(async () => {
      const out = await jobs.submit(durabilityInput('after', 'bob'));
      if (out.ok) accepted = out.job.id;
      return out.ok;
    }, 'an acceptance after the restart');
    await until(() => count(events, 'done', accepted!) === 1, 'the job to be drawn');
  }, 120_000);

  it('refuses to start on a Redis that may evict keys, and says which setting to change', async () => {
    const redis = await startRedis(['--maxmemory-policy', 'allkeys-lru']);
    cleanups.push(() => redis.stop());
    const root = await mkdtemp(path.join(tmpdir(), 'cluster-redis-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    const config = clusterBotConfig(root, redis.url, 'evict');
    const store = await createStore(config);
    cleanups.push(() => store.close());
    await expect(createRedisJobService({ config, store, engine: new ScriptedEngine(), log: silent })).rejects.toThrow(
      /maxmemory-policy allkeys-lru.*maxmemory-policy noeviction/,
    );
  });
});
