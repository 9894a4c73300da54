// npm run bench:cluster [-- --jobs 24 --steps 30]
//
// The Redis queue backend against the local one, on a real redis-server (Debian's binary on
// PATH) and the real engine on a tiny SD-shaped model, CPU provider, one onnxruntime thread per
// engine:
//   1. pictures per minute: the local backend, then 1, 2 and 3 worker processes (`npm run
//      worker`'s entry), as ratios to the local figure (on a machine with fewer cores than
//      workers, the workers share them: read the ratios against `nproc`);
//   2. the Redis path's added latency per job: handed to BullMQ → a worker started it, and the
//      worker finished → the bot recorded it done (pictures fetched, decoded, saved);
//   3. Redis memory per queued job: a BullMQ draw job as the bot hands it over, and a job record
//      in the keyv store when storage.url is the same Redis;
//   4. model routing in a mixed-model run: jobs for two models (alternating, from the members) on
//      3 workers that have both; how many jobs started on a worker that had their model loaded,
//      how many times the workers drew a job of another model than the one before, and how many
//      model loads that took (from their own logs), with a memory budget that fits both models
//      (a worker's engine keeps both once loaded, so a change of model costs no load) and with one
//      that fits only one (every change of model is a load).
// `-- --mixed-only` runs part 4 alone.
import { cpus } from 'node:os';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Queue } from 'bullmq';
import pino from 'pino';
import { createEngine } from '../engine/index.js';
import { defaultConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { createRedisJobService } from '../src/jobs/backend.js';
import { bullIdOf, QUEUE_NAME } from '../src/jobs/redis/protocol.js';
import { createJobService, type ComposedJobService } from '../src/jobs/service.js';
import type { Job } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { openQueueConnection } from '../src/store/queue-connection.js';
import { durabilityInput } from '../test/fixtures/durability-engine.js';
import { prepareWorkerHost, spawnWorker, type WorkerProcess } from '../test/helpers/cluster.js';
import { HAVE_REDIS, startRedis } from '../test/helpers/redis-server.js';

function arg(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at >= 0 ? Number(process.argv[at + 1]) : NaN;
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

const JOBS = arg('jobs', 24);
const STEPS = arg('steps', 30);
const MEMBERS = 4;
const MEMORY_JOBS = 500;
const silent = pino({ level: 'silent' });

if (!HAVE_REDIS) {
  process.stderr.write('bench:cluster needs redis-server on PATH (apt-get install redis-server)\n');
  process.exit(1);
}

const redis = await startRedis();
const root = await mkdtemp(path.join(tmpdir(), 'bench-cluster-'));
const workerConfig = await prepareWorkerHost(root, { url: redis.url, prefix: 'bench', lockSeconds: 60, stalledCheckSeconds: 30 });
const modelsDir = path.join(root, 'models');

function botConfig(backend: 'local' | 'redis', run: string): Config {
  const dir = path.join(root, `bot-${run}`);
  return defaultConfig({
    dataDir: dir,
    storage: { url: `sqlite://${path.join(dir, 'bot.sqlite')}` },
    models: { dir: modelsDir, default: 'tiny' },
    engine: { providers: ['cpu'], threads: 1, warmup: false, previews: false },
    queue: { perMemberPending: 100, globalPending: 1000, backend, redis: { url: redis.url, prefix: 'bench' } },
  });
}

function spec(i: number) {
  const input = durabilityInput(`bench ${i}`, `m${i % MEMBERS}`);
  return { ...input, spec: { ...input.spec, steps: STEPS, count: 1, seed: i } };
}

interface RunResult {
  perMinute: number;
  toStart: number[];
  toDone: number[];
}

/** Submits JOBS jobs, waits for all, returns pictures per minute (first submit → last done). */
async function run(jobs: ComposedJobService, onDone?: (job: Job, at: number) => void): Promise<number> {
  let done = 0;
  let finished: () => void = () => undefined;
  const all = new Promise<void>((resolve) => {
    finished = resolve;
  });
  jobs.on((e) => {
    if (e.type === 'done') onDone?.(e.job, performance.now());
    if (e.type === 'done' || e.type === 'failed') {
      if (e.type === 'failed') process.stderr.write(`job failed: ${e.reason}\n`);
      done += 1;
      if (done === JOBS) finished();
    }
  });
  const t0 = performance.now();
  for (let i = 0; i < JOBS; i++) {
    const out = await jobs.submit(spec(i));
    if (!out.ok) throw new Error(out.reason);
  }
  await all;
  return (JOBS / ((performance.now() - t0) / 1000)) * 60;
}

async function local(): Promise<number> {
  const config = botConfig('local', 'local');
  const store = await createStore(config);
  const engine = createEngine({ modelsDir, providers: ['cpu'], threads: 1, warmup: false });
  // One job first, so model loading is not in the figure (the workers are warmed the same way).
  await engine.generate({ model: 'tiny', prompt: 'warm', negativePrompt: '', width: 64, height: 64, steps: STEPS, guidance: 7, sampler: 'Euler', seed: 0, count: 1, previews: false });
  const jobs = createJobService({ config, store, engine, log: silent });
  await jobs.start();
  const perMinute = await run(jobs);
  await jobs.stop(0);
  await engine.close();
  await store.close();
  return perMinute;
}

async function remote(workers: number): Promise<RunResult> {
  const procs: WorkerProcess[] = [];
  for (let i = 0; i < workers; i++) procs.push(spawnWorker(workerConfig));
  await Promise.all(procs.map((p) => p.ready));
  const config = botConfig('redis', `redis${workers}`);
  const store = await createStore(config);
  // The bot's own engine only names the models here; the workers draw.
  const botEngine = createEngine({ modelsDir, providers: ['cpu'] });
  const jobs = await createRedisJobService({ config, store, engine: botEngine, log: silent });
  await jobs.refreshWorkers();
  await jobs.start();
  // Warm every worker (model load) before timing: one job each, all at once.
  const warm = await Promise.all(Array.from({ length: workers }, (_, i) => jobs.submit({ ...spec(1000 + i), requester: { ...spec(0).requester, userId: `warm${i}` } })));
  await new Promise<void>((resolve) => {
    let left = warm.length;
    jobs.on((e) => {
      if ((e.type === 'done' || e.type === 'failed') && e.job.spec.prompt.startsWith('bench 10') && --left === 0) resolve();
    });
  });
  const toStart: number[] = [];
  const toDone: number[] = [];
  const perMinute = await run(jobs, (job, at) => {
    const t = jobs.dispatcher.timings.get(bullIdOf(job));
    if (t?.started !== undefined) toStart.push(t.started - t.added);
    if (t?.finished !== undefined) toDone.push(at - t.finished);
  });
  await jobs.stop(0);
  await Promise.all(procs.map((p) => p.kill('SIGTERM')));
  await botEngine.close();
  await store.close();
  return { perMinute, toStart, toDone };
}

const MIXED_WORKERS = 3;
const MIXED_MODELS = ['alpha', 'beta'];
/** engine.memoryBudgetMB for one tiny model of prepareWorkerHost (about 5 MB) but not two. */
const ONE_MODEL_BUDGET_MB = 7;

/** Switches a worker made: consecutive jobs of different models in its own "drawing" log lines. */
function switchesOf(lines: string[]): { jobs: number; switches: number } {
  const models = lines.filter((l) => l.includes('"msg":"drawing"')).map((l) => (JSON.parse(l) as { model: string }).model);
  let switches = 0;
  for (let i = 1; i < models.length; i++) if (models[i] !== models[i - 1]) switches += 1;
  return { jobs: models.length, switches };
}

/** Model loads a worker's engine made (its "model loaded" log lines), first loads included. */
function loadsOf(lines: string[]): number {
  return lines.filter((l) => l.includes('"msg":"model loaded"')).length;
}

async function mixed(preferWithin: number | undefined, memoryBudgetMB: number | undefined): Promise<{ jobs: number; loaded: number; switched: number; workerSwitches: number; loads: number }> {
  const prefix = `mixed${preferWithin ?? ''}-${memoryBudgetMB ?? 'default'}`;
  const host = await prepareWorkerHost(path.join(root, prefix), {
    url: redis.url,
    prefix,
    lockSeconds: 60,
    stalledCheckSeconds: 30,
    models: MIXED_MODELS,
    ...(memoryBudgetMB !== undefined ? { memoryBudgetMB } : {}),
  });
  const procs: WorkerProcess[] = [];
  for (let i = 0; i < MIXED_WORKERS; i++) procs.push(spawnWorker(host));
  await Promise.all(procs.map((p) => p.ready));
  const config = defaultConfig({ ...botConfig('redis', prefix), queue: { perMemberPending: 100, globalPending: 1000, backend: 'redis', redis: { url: redis.url, prefix } } });
  const store = await createStore(config);
  const engine = createEngine({ modelsDir: path.join(root, prefix, 'models'), providers: ['cpu'] });
  const jobs = await createRedisJobService({ config, store, engine, log: silent, ...(preferWithin !== undefined ? { preferWithin } : {}) });
  await jobs.refreshWorkers();
  await jobs.start();
  let ended = 0;
  const all = new Promise<void>((resolve) => {
    jobs.on((e) => {
      if (e.type === 'failed') process.stderr.write(`job failed: ${e.reason}\n`);
      if ((e.type === 'done' || e.type === 'failed') && ++ended === JOBS) resolve();
    });
  });
  for (let i = 0; i < JOBS; i++) {
    const s = spec(i);
    // Each round of the fair order alternates models, and each member changes model every round.
    const out = await jobs.submit({ ...s, spec: { ...s.spec, model: MIXED_MODELS[(i + Math.floor(i / MEMBERS)) % 2]! } });
    if (!out.ok) throw new Error(out.reason);
  }
  await all;
  const { loaded, switched } = jobs.dispatcher.routing;
  await jobs.stop(0);
  await Promise.all(procs.map((p) => p.kill('SIGTERM')));
  await store.close();
  await engine.close();
  const workerSwitches = procs.map((p) => switchesOf(p.lines)).reduce((sum, w) => sum + w.switches, 0);
  const loads = procs.map((p) => loadsOf(p.lines)).reduce((sum, n) => sum + n, 0);
  return { jobs: JOBS, loaded, switched, workerSwitches, loads };
}

async function usedMemory(conn: ReturnType<typeof openQueueConnection>): Promise<number> {
  const info = await conn.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
}

/** Bytes of Redis memory per waiting BullMQ draw job, and per job record in the keyv store. */
async function memoryPerJob(): Promise<{ bull: number; record: number }> {
  const conn = openQueueConnection(redis.url, 'producer');
  await new Promise((r) => setTimeout(r, 200));
  const queue = new Queue(QUEUE_NAME, { connection: conn, prefix: 'membench' });
  const before = await usedMemory(conn);
  for (let i = 0; i < MEMORY_JOBS; i++) {
    const s = spec(i).spec;
    await queue.add(QUEUE_NAME, { jobId: `j${i}`, request: { ...s, previews: false } }, { jobId: `j${i}.0` });
  }
  const bull = ((await usedMemory(conn)) - before) / MEMORY_JOBS;
  await queue.obliterate({ force: true });
  await queue.close();

  const config = defaultConfig({ dataDir: path.join(root, 'mem'), storage: { url: redis.url } });
  const store = await createStore(config);
  const before2 = await usedMemory(conn);
  for (let i = 0; i < MEMORY_JOBS; i++) {
    const s = spec(i);
    await store.jobs.put({ id: `r${i}`, seq: i + 1, kind: 'imagine', spec: s.spec, requester: s.requester, target: s.target, tier: 0, status: 'queued', createdAt: Date.now(), attempts: 0, notes: [] });
  }
  const record = ((await usedMemory(conn)) - before2) / MEMORY_JOBS;
  await store.close();
  conn.disconnect();
  return { bull, record };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};
const ms = (x: number) => `${x.toFixed(1)} ms`;

const MIXED_ONLY = process.argv.includes('--mixed-only');

try {
  if (MIXED_ONLY) await printMixed();
  else await everything();
} finally {
  await redis.stop();
  await rm(root, { recursive: true, force: true });
}

async function everything(): Promise<void> {
  console.log(`bench:cluster — ${JOBS} jobs of ${STEPS} steps, 64×64, 1 picture, from ${MEMBERS} members; CPU, 1 onnxruntime thread per engine; ${cpus().length} cores here`);
  const base = await local();
  console.log(`local backend: ${base.toFixed(1)} pictures/min`);
  const latencies: { toStart: number[]; toDone: number[] } = { toStart: [], toDone: [] };
  for (const workers of [1, 2, 3]) {
    const r = await remote(workers);
    latencies.toStart.push(...r.toStart);
    latencies.toDone.push(...r.toDone);
    console.log(`redis, ${workers} worker${workers > 1 ? 's' : ''}: ${r.perMinute.toFixed(1)} pictures/min = ${(r.perMinute / base).toFixed(2)} × local`);
  }
  console.log(`Redis path, handed to BullMQ → started by a worker: p50 ${ms(pct(latencies.toStart, 50))}, p95 ${ms(pct(latencies.toStart, 95))}`);
  console.log(`Redis path, worker finished → bot recorded done:    p50 ${ms(pct(latencies.toDone, 50))}, p95 ${ms(pct(latencies.toDone, 95))}`);
  const mem = await memoryPerJob();
  console.log(`Redis memory per queued job: ${Math.round(mem.bull)} B as a BullMQ draw job; ${Math.round(mem.record)} B as a job record when storage.url is Redis`);
  await printMixed();
}

async function printMixed(): Promise<void> {
  for (const [budget, memoryBudgetMB] of [['both models fit', undefined], ['one model fits', ONE_MODEL_BUDGET_MB]] as const) {
    for (const [label, preferWithin] of [['preferring the loaded model', undefined], ['baseline, fair head to any free worker', 0]] as const) {
      const m = await mixed(preferWithin, memoryBudgetMB);
      const pctOf = (x: number) => `${Math.round((100 * x) / m.jobs)} %`;
      console.log(
        `model routing (${budget}; ${label}), ${m.jobs} jobs alternating ${MIXED_MODELS.join('/')} on ${MIXED_WORKERS} workers with both: ` +
          `${m.loaded} routed to a worker with their model loaded (${pctOf(m.loaded)}); ` +
          `model changes in the workers' logs: ${m.workerSwitches} (first jobs not counted), model loads: ${m.loads} (first loads counted)`,
      );
    }
  }
}
