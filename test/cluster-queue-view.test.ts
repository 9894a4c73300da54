// /queue with the Redis backend: every job being drawn is listed (one per worker), and admins
// also see the engine workers — their models, the loaded one, speed and current job.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { runCommand } from '../commands/index.js';
import type { CommandContext, CommandRequest } from '../commands/types.js';
import { defaultConfig } from '../src/config/load.js';
import { createRedisJobService } from '../src/jobs/backend.js';
import type { Requester } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { durabilityInput, ScriptedEngine } from './fixtures/durability-engine.js';
import { startInProcessWorker } from './helpers/cluster.js';
import { HAVE_REDIS, startRedis } from './helpers/redis-server.js';

if (!HAVE_REDIS) console.warn('cluster-queue-view: no redis-server on PATH (apt-get install redis-server); skipped');

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const boss: Requester = { platform: 'telegram', userId: 'boss', name: 'Boss', roles: [] };
const ann: Requester = { platform: 'telegram', userId: 'ann', name: 'ann', roles: [] };
const ask = (who: Requester): CommandRequest => ({ command: 'queue', requester: who, target: { platform: 'telegram', chatId: 'chat-ann', handle: {} }, via: 'slash' });

describe.skipIf(!HAVE_REDIS)('/queue with engine workers', () => {
  it('lists both jobs drawn by two workers, and shows admins each worker with its current job', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const root = await mkdtemp(path.join(tmpdir(), 'cluster-view-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    const config = defaultConfig({
      dataDir: root,
      storage: { url: `sqlite://${path.join(root, 'bot.sqlite')}` },
      permissions: { admins: { users: ['boss'], roles: [] } },
      queue: { backend: 'redis', redis: { url: redis.url, prefix: 'view' } },
    });
    const engines = [new ScriptedEngine({ hold: true }), new ScriptedEngine({ hold: true })];
    for (const [i, engine] of engines.entries()) {
      cleanups.push(await startInProcessWorker(config, engine, `gpu-${i + 1}`));
    }
    const store = await createStore(config);
    cleanups.push(() => store.close());
    const jobs = await createRedisJobService({ config, store, engine: new ScriptedEngine(), log: silent });
    cleanups.push(() => jobs.stop(0));
    await jobs.refreshWorkers();
    await jobs.start();
    const first = await jobs.submit(durabilityInput('a lighthouse', 'ann'));
    const second = await jobs.submit(durabilityInput('a harbour', 'bob'));
    if (!first.ok || !second.ok) throw new Error('not accepted');
    await Promise.all(engines.map((e) => e.whenHeld()));
    await jobs.refreshWorkers();
    // Heartbeats carry the current job once a worker's next beat went out.
    for (let i = 0; i < 100 && jobs.workers().filter((w) => w.current).length < 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      await jobs.refreshWorkers();
    }

    const ctx: CommandContext = { config, jobs, settings: store.settings, models: () => [], log: silent };
    const member = (await runCommand(ask(ann), ctx)).text.split('\n');
    expect(member.filter((l) => l.startsWith('Drawing:'))).toHaveLength(2);
    expect(member).not.toContainEqual(expect.stringMatching(/Engine workers/));

    const admin = (await runCommand(ask(boss), ctx)).text;
    expect(admin).toContain('Engine workers (2):');
    const drawing = new Set([first.job.id, second.job.id]);
    const workerLines = admin.split('\n').filter((l) => l.startsWith('• gpu-'));
    expect(workerLines).toHaveLength(2);
    for (const line of workerLines) {
      const id = /drawing job (\w+)/.exec(line)?.[1];
      expect(id && drawing.has(id)).toBe(true);
      expect(line).toMatch(/no job yet · 0 done · models: tiny/);
    }

    // An admin's cancel reaches the worker drawing the job and stops it within a step.
    for (const id of drawing) expect(await jobs.cancel(id, boss, true)).toMatchObject({ ok: true, wasRunning: true });
    for (const id of drawing) expect((await jobs.get(id))?.status).toBe('cancelled');
  }, 60_000);
});
