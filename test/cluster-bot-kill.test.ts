// The bot SIGKILLed while engine workers draw: on restart every finished result is delivered once
// (none twice, none lost), and no job is drawn a second time — the restarted bot waits for the
// attempts the workers already hold instead of handing them out again.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createRedisJobService, type RedisJobService } from '../src/jobs/backend.js';
import type { Store } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { ScriptedEngine } from './fixtures/durability-engine.js';
import { clusterBotConfig, prepareWorkerHost, spawnWorker, type WorkerProcess } from './helpers/cluster.js';
import { HAVE_REDIS, startRedis, type TestRedis } from './helpers/redis-server.js';

if (!HAVE_REDIS) console.warn('cluster-bot-kill: no redis-server on PATH (apt-get install redis-server); skipped');

const JOBS = 12;
const PREFIX = 'botkill';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let redis: TestRedis | undefined;
let root: string | undefined;
let store: Store | undefined;
let jobs: RedisJobService | undefined;
const workers: WorkerProcess[] = [];

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await jobs?.stop(0);
  await store?.close();
  await redis?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

interface Line {
  type: string;
  id?: string;
}

/** Runs the bot's first life until `until` holds for its lines, then SIGKILLs it. */
function firstLife(dataDir: string, url: string, until: (lines: Line[]) => boolean): Promise<Line[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve(import.meta.dirname, 'fixtures/cluster-bot.ts'), dataDir, url, PREFIX, String(JOBS)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Line[] = [];
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  return new Promise((resolve, reject) => {
    let buffer = '';
    let killed = false;
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const part of parts) if (part.trim()) lines.push(JSON.parse(part) as Line);
      if (!killed && until(lines)) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.once('exit', (_code, signal) => {
      if (killed && signal === 'SIGKILL') resolve(lines);
      else reject(new Error(`bot ended without the planned kill (${signal ?? _code}): ${stderr.slice(-2000)}`));
    });
  });
}

describe.skipIf(!HAVE_REDIS)('cluster: the bot SIGKILLed while workers draw', () => {
  it('delivers every finished result once after the restart and draws no job twice', async () => {
    redis = await startRedis();
    root = await mkdtemp(path.join(tmpdir(), 'cluster-botkill-'));
    const workerConfig = await prepareWorkerHost(root, { url: redis.url, prefix: PREFIX });
    for (let i = 0; i < 2; i++) workers.push(spawnWorker(workerConfig));
    await Promise.all(workers.map((w) => w.ready));

    const dataDir = path.join(root, 'bot-data');
    const first = await firstLife(dataDir, redis.url, (lines) => lines.some((l) => l.type === 'all-submitted') && lines.filter((l) => l.type === 'delivered').length >= 2);
    const accepted = first.filter((l) => l.type === 'submitted').map((l) => l.id!);
    expect(accepted).toHaveLength(JOBS);

    // Second life, in this process, on the same store and queue.
    const config = clusterBotConfig(dataDir, redis.url, PREFIX);
    store = await createStore(config);
    const before = new Map((await Promise.all(accepted.map((id) => store!.jobs.get(id)))).map((j) => [j!.id, j!.status]));
    const deliveredBefore = accepted.filter((id) => before.get(id) === 'delivered');
    expect(deliveredBefore.length).toBeGreaterThanOrEqual(2);
    // Some were still being drawn or waiting when the bot died; the test means nothing otherwise.
    expect(accepted.some((id) => before.get(id) === 'running' || before.get(id) === 'queued')).toBe(true);

    jobs = await createRedisJobService({ config, store, engine: new ScriptedEngine(), log: pino({ level: 'silent' }) });
    const deliveredAfter: string[] = [];
    const deliver = async (id: string) => {
      deliveredAfter.push(id);
      await jobs!.markDelivered(id, { chatId: 'c', messageId: `m-${id}` });
    };
    jobs.on((e) => {
      if (e.type === 'done') void deliver(e.job.id);
    });
    await jobs.refreshWorkers();
    await jobs.start();
    // What an adapter does at start-up: deliver what finished while nobody was there to deliver it.
    for (const job of await jobs.pendingDeliveries('telegram')) await deliver(job.id);

    for (let i = 0; i < 600 && deliveredBefore.length + deliveredAfter.length < JOBS; i++) await sleep(100);
    await sleep(500);

    const all = [...deliveredBefore, ...deliveredAfter].sort();
    expect(all).toEqual([...accepted].sort());
    for (const id of accepted) expect((await jobs.get(id))?.status).toBe('delivered');
    // Every job was drawn by exactly one worker, exactly once.
    const drawn = workers.flatMap((w) => w.lines.filter((l) => l.includes('"msg":"drawn"')));
    expect(drawn).toHaveLength(JOBS);
  }, 240_000);
});
