// Model routing between engine workers (Redis backend): a job goes only to a worker that has its
// model, a job no worker can run waits (and runs once one joins), a free worker with the model
// loaded takes the job it can draw without a switch when fairness allows (every model its engine
// holds counts, not only the one drawn last), and a worker killed mid-job has its job drawn again
// by another worker with that model, delivered once.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { runCommand } from '../commands/index.js';
import { requestLoadKey } from '../engine/job-loras.js';
import type { GenerateOptions, GenerateRequest, GenerateResult } from '../engine/types.js';
import type { CommandContext } from '../commands/types.js';
import { createRedisJobService, MODEL_GONE_MS, type RedisJobService } from '../src/jobs/backend.js';
import type { JobEvent, Requester, SubmitInput } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { durabilityInput, ScriptedEngine } from './fixtures/durability-engine.js';
import { clusterBotConfig, prepareWorkerHost, spawnWorker, startInProcessWorker, type WorkerProcess } from './helpers/cluster.js';
import { sleep, until as waitUntil, type Check } from './helpers/wait.js';
import { HAVE_REDIS, startRedis } from './helpers/redis-server.js';

if (!HAVE_REDIS) console.warn('cluster-route: no redis-server on PATH (apt-get install redis-server); skipped');

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

// Polls every 50 ms (Redis round trips), 60 s by default.
const until = (check: Check, what: string, tries = 1200) => waitUntil(check, what, tries, 50);

function job(prompt: string, member: string, model: string, steps = 3): SubmitInput {
  const input = durabilityInput(prompt, member);
  return { ...input, spec: { ...input.spec, model, steps, count: 1 } };
}

/** Submits a job that must be accepted; returns its id. */
async function accepted(jobs: RedisJobService, input: SubmitInput): Promise<string> {
  const out = await jobs.submit(input);
  if (!out.ok) throw new Error(out.reason);
  return out.job.id;
}

interface Bot {
  jobs: RedisJobService;
  events: JobEvent[];
  root: string;
  url: string;
  ask: (member: string) => Promise<string>;
  ctx: CommandContext;
}

/** The bot's clock runs this far ahead of the real one (a jump past MODEL_GONE_MS without waiting). */
let clockAhead = 0;

async function bot(prefix: string): Promise<Bot> {
  clockAhead = 0;
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const root = await mkdtemp(path.join(tmpdir(), 'cluster-route-'));
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  const config = clusterBotConfig(root, redis.url, prefix);
  const store = await createStore(config);
  cleanups.push(() => store.close());
  const jobs = await createRedisJobService({ config, store, engine: new ScriptedEngine(), log: silent, now: () => Date.now() + clockAhead });
  cleanups.push(() => jobs.stop(0));
  const events: JobEvent[] = [];
  jobs.on((e) => events.push(e));
  const ctx: CommandContext = { config, jobs, settings: store.settings, models: () => [], log: silent };
  const ask = async (member: string) => {
    const requester: Requester = { platform: 'telegram', userId: member, name: member, roles: [] };
    return (await runCommand({ command: 'queue', requester, target: { platform: 'telegram', chatId: `chat-${member}`, handle: {} }, via: 'slash' }, ctx)).text;
  };
  return { jobs, events, root, url: redis.url, ask, ctx };
}

/** Keeps the models it drew loaded, up to `room` of them, least recently used first out (as the
 * engine's LRU does), and reports them by load key. */
class LruEngine extends ScriptedEngine {
  private loaded: string[] = [];
  constructor(
    private readonly room: number,
    options: ConstructorParameters<typeof ScriptedEngine>[0],
  ) {
    super(options);
  }
  loadedModels(): readonly string[] {
    return this.loaded;
  }
  override async generate(request: GenerateRequest, options?: GenerateOptions): Promise<GenerateResult> {
    const key = requestLoadKey(request);
    this.loaded = [...this.loaded.filter((k) => k !== key), key].slice(-this.room);
    return super.generate(request, options);
  }
}

const ended = (events: JobEvent[], id: string) => events.some((e) => (e.type === 'done' || e.type === 'failed') && e.job.id === id);

describe.skipIf(!HAVE_REDIS)('cluster: model routing', () => {
  it('sends each job only to a worker with its model; a job no worker can run waits until one joins, a model long gone is refused', async () => {
    const { jobs, events, root, url, ask } = await bot('models');
    const config = clusterBotConfig(root, url, 'models');
    const alphaEngine = new ScriptedEngine({ stepMs: 5 });
    const betaEngine = new ScriptedEngine({ stepMs: 5 });
    cleanups.push(await startInProcessWorker(config, alphaEngine, 'w-alpha', ['alpha']));
    cleanups.push(await startInProcessWorker(config, betaEngine, 'w-beta', ['beta']));
    await jobs.refreshWorkers();
    await jobs.start();

    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const out = await jobs.submit(job(`job ${i}`, `m${i % 4}`, i % 2 === 0 ? 'alpha' : 'beta'));
      if (!out.ok) throw new Error(out.reason);
      ids.push(out.job.id);
    }
    const waiting = await jobs.submit(job('gamma job', 'm9', 'gamma'));
    if (!waiting.ok) throw new Error(waiting.reason);
    await until(() => ids.every((id) => ended(events, id)), 'the alpha and beta jobs');
    expect(events.filter((e) => e.type === 'failed')).toEqual([]);
    expect(alphaEngine.calls.map((c) => c.model)).toEqual(['alpha', 'alpha', 'alpha', 'alpha']);
    expect(betaEngine.calls.map((c) => c.model)).toEqual(['beta', 'beta', 'beta', 'beta']);
    // Nobody has gamma: the job waits in the queue rather than failing.
    expect((await jobs.get(waiting.job.id))?.status).toBe('queued');
    expect(jobs.position(waiting.job.id)?.position).toBe(1);
    expect(await ask('m9')).toMatch(/^#1 “gamma job” · m9 · .* · waiting for a worker that has model gamma ← yours$/m);
    // No worker has offered delta since the bot started, MODEL_GONE_MS ago: refused, and the member hears why.
    clockAhead = MODEL_GONE_MS;
    const refused = await jobs.submit(job('delta job', 'm5', 'delta'));
    expect(refused).toEqual({
      ok: false,
      reason: 'No drawing machine has the model “delta” (none for 10 minutes). Pick another model with --model, or ask an admin to start a worker that has it.',
    });
    const again = await jobs.submit(job('alpha again', 'm5', 'alpha'));
    if (!again.ok) throw new Error(again.reason);

    const gammaEngine = new ScriptedEngine({ stepMs: 5 });
    cleanups.push(await startInProcessWorker(config, gammaEngine, 'w-gamma', ['gamma']));
    await jobs.refreshWorkers();
    await until(() => ended(events, waiting.job.id), 'the gamma job once a gamma worker joined');
    expect((await jobs.get(waiting.job.id))?.status).toBe('done');
    expect(gammaEngine.calls.map((c) => c.model)).toEqual(['gamma']);
    await until(() => ended(events, again.job.id), 'the second alpha job');
    expect(alphaEngine.calls.map((c) => c.prompt)).toContain('alpha again');
  }, 60_000);

  it('lets a free worker take the job whose model it has loaded over the head of the queue, within the window', async () => {
    const { jobs, events, root, url } = await bot('prefer');
    const config = clusterBotConfig(root, url, 'prefer');
    const one = new ScriptedEngine({ hold: true });
    const two = new ScriptedEngine({ hold: true });
    cleanups.push(await startInProcessWorker(config, one, 'w1', ['alpha']));
    cleanups.push(await startInProcessWorker(config, two, 'w2', ['alpha', 'beta']));
    await jobs.refreshWorkers();
    await jobs.start();
    const started: string[] = [];
    jobs.on((e) => {
      if (e.type === 'started') started.push(e.job.spec.prompt);
    });
    const submit = (prompt: string, member: string, model: string) => accepted(jobs, job(prompt, member, model));
    const loadedOn = async (worker: string, model: string) =>
      until(async () => {
        await jobs.refreshWorkers();
        return jobs.workers().find((w) => w.id === worker)?.loaded === model;
      }, `${worker} to have ${model} loaded`);

    // w2 draws beta (only it has beta); then w1 takes alpha and keeps drawing it.
    const b0 = await submit('b0', 'm0', 'beta');
    expect(await two.release()).toBe('b0');
    await until(() => ended(events, b0), 'b0');
    await loadedOn('w2', 'beta');
    await submit('a0', 'm0', 'alpha');
    await one.whenHeld();
    // w2 busy too; then two jobs wait, alpha ahead of beta in fair order.
    await submit('b2', 'm8', 'beta');
    await two.whenHeld();
    await submit('a1', 'm1', 'alpha');
    await submit('b1', 'm2', 'beta');
    expect(jobs.snapshot().waiting.map((w) => w.job.spec.prompt)).toEqual(['a1', 'b1']);
    // w2 frees up with beta loaded: it takes b1 (no switch) before the head, a1.
    expect(await two.release()).toBe('b2');
    expect(await two.release()).toBe('b1');
    expect(await two.release()).toBe('a1');
    expect(started).toEqual(['b0', 'a0', 'b2', 'b1', 'a1']);
    await until(() => events.filter((e) => e.type === 'done').length === 4, 'b2, b1 and a1');
    expect(one.calls.map((c) => c.prompt)).toEqual(['a0']);
    expect(jobs.dispatcher.routing).toEqual({ loaded: 2, switched: 3 });

    // Beyond the window fairness wins: four alpha jobs ahead of a beta job, w2 switches to alpha.
    await submit('b3', 'm7', 'beta');
    await two.whenHeld();
    for (let i = 0; i < 4; i++) await submit(`x${i}`, `n${i}`, 'alpha');
    await submit('b4', 'm6', 'beta');
    expect(await two.release()).toBe('b3');
    expect(await two.release()).toBe('x0');

    one.hold = false;
    two.hold = false;
    expect(await one.release()).toBe('a0');
    await until(() => events.filter((e) => e.type === 'done').length === 11, 'the rest');
  }, 60_000);

  it('counts every model a worker’s engine holds as loaded, not only the one it drew last', async () => {
    const { jobs, events, root, url, ctx } = await bot('lru');
    const config = clusterBotConfig(root, url, 'lru');
    const engine = new LruEngine(3, { hold: true });
    cleanups.push(await startInProcessWorker(config, engine, 'w1', ['alpha', 'beta', 'gamma']));
    await jobs.refreshWorkers();
    await jobs.start();
    const submit = (prompt: string, member: string, model: string) => accepted(jobs, job(prompt, member, model));
    for (const [prompt, model] of [['a0', 'alpha'], ['b0', 'beta']] as const) {
      const id = await submit(prompt, 'm0', model);
      expect(await engine.release()).toBe(prompt);
      await until(() => ended(events, id), prompt);
    }
    // The heartbeat lists both; the model drawn last is beta.
    await until(async () => {
      await jobs.refreshWorkers();
      return jobs.workers()[0]?.loadedModels?.join() === 'alpha,beta';
    }, 'the heartbeat to list alpha and beta');
    expect(jobs.workers()[0]?.loaded).toBe('beta');
    const boss: Requester = { platform: 'telegram', userId: 'boss', name: 'boss', roles: [] };
    const asAdmin: CommandContext = { ...ctx, config: { ...ctx.config, permissions: { ...ctx.config.permissions, admins: { users: ['boss'], roles: [] } } } };
    const view = await runCommand({ command: 'queue', requester: boss, target: { platform: 'telegram', chatId: 'chat-boss', handle: {} }, via: 'slash' }, asAdmin);
    expect(view.text).toMatch(/^• w1 · idle · .* · models: alpha, beta, gamma · loaded: alpha, beta$/m);

    // While w1 draws beta again, gamma (nowhere loaded) and then alpha (in w1's LRU) wait.
    await submit('b1', 'm0', 'beta');
    await engine.whenHeld();
    await submit('g1', 'm1', 'gamma');
    await submit('a1', 'm2', 'alpha');
    expect(jobs.snapshot().waiting.map((w) => w.job.spec.prompt)).toEqual(['g1', 'a1']);
    expect(await engine.release()).toBe('b1');
    expect(await engine.release()).toBe('a1');
    expect(await engine.release()).toBe('g1');
    await until(() => events.filter((e) => e.type === 'done').length === 5, 'every job');
    expect(jobs.dispatcher.routing).toEqual({ loaded: 2, switched: 3 });
  }, 60_000);

  it('draws the job of a worker SIGKILLed mid-job again on another worker with its model, and delivers it once', async () => {
    const { jobs, events, root, url } = await bot('routekill');
    const alphaOnly = await prepareWorkerHost(path.join(root, 'host-a'), { url, prefix: 'routekill', models: ['alpha'] });
    const both = await prepareWorkerHost(path.join(root, 'host-ab'), { url, prefix: 'routekill', models: ['alpha', 'beta'] });
    const workers: WorkerProcess[] = [spawnWorker(alphaOnly), spawnWorker(both)];
    cleanups.push(() => Promise.all(workers.map((w) => w.kill())).then(() => undefined));
    await Promise.all(workers.map((w) => w.ready));
    const deliveries = new Map<string, number>();
    jobs.on((e) => {
      if (e.type !== 'done') return;
      deliveries.set(e.job.id, (deliveries.get(e.job.id) ?? 0) + 1);
      void jobs.markDelivered(e.job.id, { chatId: e.job.target.chatId, messageId: `m-${e.job.id}` });
    });
    await jobs.refreshWorkers();
    await jobs.start();

    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const out = await jobs.submit(job(`job ${i}`, `m${i % 3}`, i % 3 === 2 ? 'beta' : 'alpha', 100));
      if (!out.ok) throw new Error(out.reason);
      ids.push(out.job.id);
    }
    // Kill the alpha-only worker while it draws: only the other worker can draw that job again.
    const [alphaWorker, otherWorker] = workers as [WorkerProcess, WorkerProcess];
    const logged = (w: WorkerProcess, msg: string) =>
      w.lines.filter((l) => l.includes(`"msg":"${msg}"`)).map((l) => JSON.parse(l) as { jobId: string; model: string });
    let victim: string | undefined;
    await until(() => {
      const done = new Set(logged(alphaWorker, 'drawn').map((d) => d.jobId));
      victim = logged(alphaWorker, 'drawing').find((d) => !done.has(d.jobId))?.jobId;
      return victim !== undefined;
    }, 'the alpha-only worker to draw', 2400);
    await alphaWorker.kill('SIGKILL');
    await until(() => ids.every((id) => ended(events, id)), 'every job', 2400);
    await sleep(500); // a second completion, if there were one, would arrive now

    expect(events.filter((e) => e.type === 'failed')).toEqual([]);
    for (const id of ids) expect(deliveries.get(id), `deliveries of ${id}`).toBe(1);
    const drew = (w: WorkerProcess) => logged(w, 'drawing');
    expect(drew(otherWorker).map((d) => d.jobId)).toContain(victim);
    expect(drew(alphaWorker).every((d) => d.model === 'alpha')).toBe(true);
    expect(drew(alphaWorker).length + drew(otherWorker).length).toBe(ids.length + 1);
    // The real worker's heartbeat lists what its engine holds: both models it drew fit the budget.
    await until(async () => {
      await jobs.refreshWorkers();
      const loaded = jobs.workers().find((w) => w.models.includes('beta'))?.loadedModels ?? [];
      return loaded.includes('alpha') && loaded.includes('beta');
    }, 'the surviving worker to list alpha and beta as loaded');
  }, 180_000);
});
