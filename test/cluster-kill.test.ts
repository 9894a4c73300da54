// Several engine worker processes (the real `npm run worker` entry on tiny models) behind the
// Redis backend, and workers SIGKILLed at random moments while they draw: every accepted job is
// still drawn to the end and delivered exactly once.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config/load.js';
import { createRedisJobService, type RedisJobService } from '../src/jobs/backend.js';
import type { JobEvent, Store } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { durabilityInput, ScriptedEngine } from './fixtures/durability-engine.js';
import { prepareWorkerHost, spawnWorker, type WorkerProcess } from './helpers/cluster.js';
import { HAVE_REDIS, startRedis, type TestRedis } from './helpers/redis-server.js';

if (!HAVE_REDIS) console.warn('cluster-kill: no redis-server on PATH (apt-get install redis-server); skipped');

const JOBS = 30;
const MEMBERS = 5;
const KILLS = 10;
const WORKERS = 3;

let redis: TestRedis;
let root: string;
let workerConfig: string;
let store: Store;
let jobs: RedisJobService;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  if (!HAVE_REDIS) return;
  redis = await startRedis();
  root = await mkdtemp(path.join(tmpdir(), 'cluster-kill-'));
  workerConfig = await prepareWorkerHost(root, { url: redis.url, prefix: 'killtest' });
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await jobs?.stop(0);
  await store?.close();
  await redis?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!HAVE_REDIS)('cluster: engine workers SIGKILLed mid-job', () => {
  it(`delivers each of ${JOBS} jobs from ${MEMBERS} members exactly once through ${KILLS} worker kills`, async () => {
    for (let i = 0; i < WORKERS; i++) workers.push(spawnWorker(workerConfig));
    await Promise.all(workers.map((w) => w.ready));

    const config = defaultConfig({
      dataDir: path.join(root, 'bot-data'),
      storage: { url: `sqlite://${path.join(root, 'bot-data', 'bot.sqlite')}` },
      engine: { previews: false },
      queue: {
        perMemberPending: JOBS,
        globalPending: 200,
        backend: 'redis',
        redis: { url: redis.url, prefix: 'killtest', lockSeconds: 6, stalledCheckSeconds: 1, maxStalls: 20, resultTtlHours: 1, maxResultMegabytes: 16 },
      },
    });
    store = await createStore(config);
    jobs = await createRedisJobService({ config, store, engine: new ScriptedEngine(), log: pino({ level: 'silent' }) });
    const events: JobEvent[] = [];
    const deliveries = new Map<string, number>();
    jobs.on((e) => {
      events.push(e);
      if (e.type === 'done') {
        // What an adapter does once the platform accepted the upload.
        deliveries.set(e.job.id, (deliveries.get(e.job.id) ?? 0) + 1);
        void jobs.markDelivered(e.job.id, { chatId: e.job.target.chatId, messageId: `m-${e.job.id}` });
      }
    });
    await jobs.refreshWorkers();
    await jobs.start();

    const accepted: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const input = durabilityInput(`job ${i}`, `member${i % MEMBERS}`);
      const out = await jobs.submit({ ...input, spec: { ...input.spec, steps: 60, count: 1, seed: i } });
      expect(out.ok).toBe(true);
      if (out.ok) accepted.push(out.job.id);
    }

    // Kill a worker that is drawing, at a random moment, and start a replacement, KILLS times.
    let kills = 0;
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const finished = () => events.filter((e) => e.type === 'done' || e.type === 'failed').length >= accepted.length;
    while (kills < KILLS && !finished()) {
      await sleep(150 + random() * 600);
      await jobs.refreshWorkers();
      const drawing = jobs.workers().filter((w) => w.current);
      if (drawing.length === 0) continue;
      const victimId = drawing[Math.floor(random() * drawing.length)]!.id;
      const pid = Number(victimId.split('-').pop());
      const victim = workers.find((w) => w.child.pid === pid && w.child.exitCode === null && w.child.signalCode === null);
      if (!victim) continue;
      await victim.kill('SIGKILL');
      kills += 1;
      const replacement = spawnWorker(workerConfig);
      workers.push(replacement);
    }
    expect(kills).toBe(KILLS);

    for (let i = 0; i < 1200 && !finished(); i++) await sleep(100);
    await sleep(500); // a second completion, if there were one, would arrive now

    const failed = events.filter((e) => e.type === 'failed');
    expect(failed.map((e) => (e as { reason: string }).reason)).toEqual([]);
    for (const id of accepted) {
      expect(deliveries.get(id), `deliveries of ${id}`).toBe(1);
      const job = await jobs.get(id);
      expect(job?.status).toBe('delivered');
      expect(job?.result?.images.every((img) => existsSync(jobs.filePath(img.file)))).toBe(true);
    }
    // Killed mid-job means drawn again elsewhere: the workers together started more draws than jobs.
    const draws = workers.flatMap((w) => w.lines.filter((l) => l.includes('"msg":"drawing"'))).length;
    expect(draws).toBeGreaterThan(accepted.length);
    // …and only those: a live worker's job is never taken for stalled and drawn a second time.
    expect(draws).toBeLessThanOrEqual(accepted.length + kills);
  }, 300_000);
});
