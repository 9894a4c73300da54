import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { statusText } from '../commands/status.js';
import { readTextChunks } from '../engine/png.js';
import {
  EngineError,
  type GenerateOptions,
  type GenerateRequest,
  type GenerateResult,
  type ModelInfo,
  type ModelScan,
} from '../engine/types.js';
import { defaultConfig, type DeepPartial } from '../src/config/load.js';
import type { FileConfig } from '../src/config/schema.js';
import { createJobService, withoutServerPaths, type JobServiceWithMaintenance } from '../src/jobs/service.js';
import type { Job, JobEvent, JobSpec, Requester, Store, SubmitInput } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { ScriptedEngine } from './fixtures/durability-engine.js';
import { until } from './helpers/wait.js';

const silent = pino({ level: 'silent' });
let root: string;
const open: { jobs: JobServiceWithMaintenance; store: Store }[] = [];

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'service-test-'));
});
afterEach(async () => {
  for (const { jobs, store } of open.splice(0)) {
    await jobs.stop(0);
    await store.close();
  }
  await rm(root, { recursive: true, force: true });
});

function member(userId: string, extra: Partial<Requester> = {}): Requester {
  return { platform: 'discord', userId, name: `user-${userId}`, roles: [], ...extra };
}

function spec(prompt: string, extra: Partial<JobSpec> = {}): JobSpec {
  return {
    prompt,
    negativePrompt: '',
    width: 64,
    height: 64,
    steps: 4,
    guidance: 7,
    sampler: 'Euler',
    seed: 1000,
    count: 1,
    model: 'tiny',
    ...extra,
  };
}

function input(prompt: string, who: Requester, extra: Partial<SubmitInput> = {}, specExtra: Partial<JobSpec> = {}): SubmitInput {
  return {
    kind: 'imagine',
    spec: spec(prompt, specExtra),
    requester: who,
    target: { platform: who.platform, chatId: 'chan-1', handle: { interaction: 'i1' } },
    notes: [],
    ...extra,
  };
}

interface Setup {
  jobs: JobServiceWithMaintenance;
  store: Store;
  engine: ScriptedEngine;
  events: JobEvent[];
}

async function setup(
  opts: { config?: DeepPartial<FileConfig>; engine?: ScriptedEngine; now?: () => number; start?: boolean; store?: Store } = {},
): Promise<Setup> {
  const config = defaultConfig({
    dataDir: path.join(root, 'data'),
    storage: { url: `sqlite://${path.join(root, 'data', 'bot.sqlite')}` },
    engine: { previews: false },
    ...opts.config,
    queue: { perMemberPending: 3, globalPending: 50, initialSecondsPerStep: 1, maxAttempts: 2, ...opts.config?.queue },
  });
  const store = opts.store ?? (await createStore(config));
  const engine = opts.engine ?? new ScriptedEngine();
  const jobs = createJobService({ config, store, engine, log: silent, ...(opts.now ? { now: opts.now } : {}) });
  const events: JobEvent[] = [];
  jobs.on((e) => events.push(e));
  open.push({ jobs, store });
  if (opts.start !== false) await jobs.start();
  return { jobs, store, engine, events };
}

// Longer than the service's window for coalescing queue moves.
const tick = () => new Promise((r) => setTimeout(r, 60));
const ofType = <T extends JobEvent['type']>(events: JobEvent[], type: T) =>
  events.filter((e): e is Extract<JobEvent, { type: T }> => e.type === type);

describe('job service', () => {
  it('saves a job before acknowledging it, renders PNGs with parameters and a grid, and reports done', async () => {
    const { jobs, store, events } = await setup({ engine: new ScriptedEngine({ previews: true }), config: { engine: { previews: true } } });
    const out = await jobs.submit(input('a fox in the snow', member('ann'), {}, { count: 4 }));
    expect(out.ok).toBe(true);
    if (!out.ok) return;
    // Acknowledged means stored.
    expect(await store.jobs.get(out.job.id)).toBeDefined();
    expect(out.job.id).toMatch(/^[0-9a-z]{8}$/);
    expect(out.position).toBe(1);

    await until(() => events.some((e) => e.type === 'done'), 'done');
    expect(events.map((e) => e.type)).toEqual(['queued', 'started', 'progress', 'progress', 'progress', 'progress', 'done']);
    const progress = ofType(events, 'progress');
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3, 4]);
    expect(progress[0]!.preview?.png.subarray(1, 4).toString()).toBe('PNG');

    const stored = (await store.jobs.get(out.job.id))!;
    expect(stored.status).toBe('done');
    expect(stored.attempts).toBe(0);
    const result = stored.result!;
    expect(result.images.map((i) => i.seed)).toEqual([1000, 1001, 1002, 1003]);
    expect(result.images[0]!.file).toMatch(new RegExp(`^images/\\d{4}-\\d{2}-\\d{2}/${out.job.id}-0\\.png$`));
    expect(result.grid).toMatch(new RegExp(`${out.job.id}-grid\\.png$`));
    const png = await readFile(jobs.filePath(result.images[2]!.file));
    expect(readTextChunks(png).find((c) => c.keyword === 'parameters')?.text).toContain('Seed: 1002');
    const grid = await sharp(jobs.filePath(result.grid!)).metadata();
    expect([grid.width, grid.height]).toEqual([128, 128]);
    expect(await jobs.pendingDeliveries('discord')).toHaveLength(1);
    expect(await jobs.pendingDeliveries('telegram')).toHaveLength(0);
  });

  it('runs members round-robin: A queues three, then B one, and B runs second', async () => {
    const engine = new ScriptedEngine({ hold: true });
    const { jobs, events } = await setup({ engine, config: { queue: { perMemberPending: 5 } } });
    const a = [];
    for (const p of ['a1', 'a2', 'a3']) a.push(await jobs.submit(input(p, member('A'))));
    await engine.whenHeld(); // a1 is running
    await tick();
    const seen = events.length;
    const b = await jobs.submit(input('b1', member('B')));
    expect(b.ok && b.position).toBe(1);
    await tick();
    // a2 and a3 were pushed back by one place each.
    const moved = ofType(events.slice(seen), 'moved');
    expect(moved.map((m) => [m.job.spec.prompt, m.position])).toEqual([
      ['a2', 2],
      ['a3', 3],
    ]);
    const order: string[] = [];
    for (let i = 0; i < 4; i++) order.push(await engine.release());
    expect(order).toEqual(['a1', 'b1', 'a2', 'a3']);
    await until(() => ofType(events, 'done').length === 4, 'four done');
  });

  it('gives ETAs from the configured seconds per step: running remainder + jobs ahead + own', async () => {
    const engine = new ScriptedEngine({ hold: true });
    const { jobs } = await setup({ engine, config: { queue: { initialSecondsPerStep: 0.5 } } });
    await jobs.submit(input('first', member('A'), {}, { steps: 10 })); // 5 s
    await engine.whenHeld();
    const second = await jobs.submit(input('second', member('B'), {}, { steps: 4, count: 2 })); // 4 s
    const third = await jobs.submit(input('third', member('C'), {}, { steps: 6 })); // 3 s
    // The running job has not finished a step yet: all of its 5 s are left.
    expect(second.ok && [second.position, second.etaSeconds]).toEqual([1, 5 + 4]);
    expect(third.ok && third.etaSeconds).toBe(5 + 4 + 3);
    const snap = jobs.snapshot();
    expect(snap.running?.job.spec.prompt).toBe('first');
    expect(snap.waiting.map((w) => [w.job.spec.prompt, w.position])).toEqual([
      ['second', 1],
      ['third', 2],
    ]);
    // No job of this model has finished yet: every figure is a first estimate.
    expect(jobs.position(third.ok ? third.job.id : '')).toEqual({ position: 2, etaSeconds: 12, approximate: true });
  });

  it('starts from a prior sized by the model\'s UNet weights and the picture, marked approximate until a job of the model finishes', async () => {
    const modelDir = path.join(root, 'models', 'small');
    await mkdir(path.join(modelDir, 'unet'), { recursive: true });
    // 8.6 M float32 weights: a hundredth of SD 1.5's UNet.
    await writeFile(path.join(modelDir, 'unet', 'model.onnx'), Buffer.alloc(4 * 8_600_000));
    class WithModel extends ScriptedEngine {
      override async scanModels(): Promise<ModelScan> {
        const info = { name: 'small', dir: modelDir, dtype: 'float32' } as ModelInfo;
        return { models: [info], problems: [] };
      }
    }
    const engine = new WithModel({ hold: true });
    const { jobs, events } = await setup({ engine, config: { queue: { initialSecondsPerStep: undefined } } });
    const first = await jobs.submit(input('first', member('A'), {}, { model: 'small', width: 512, height: 512, steps: 150, count: 4 }));
    // CPU's typical 3 s per SD 1.5 step, a hundredth of that for this UNet: 150 × 4 × 0.03 s = 18 s.
    expect(first.ok && [first.etaSeconds, first.approximate]).toEqual([18, true]);
    expect(statusText(ofType(events, 'queued')[0]!)).toBe('Queued #1 · about 20 s, first estimate');
    await engine.release();
    await until(() => ofType(events, 'done').length === 1, 'first done');
    engine.hold = false;
    const second = await jobs.submit(input('second', member('B'), {}, { model: 'small', width: 512, height: 512, steps: 150, count: 4 }));
    // Measured now: no longer a first estimate.
    expect(second.ok && second.approximate).toBeUndefined();
    await until(() => ofType(events, 'done').length === 2, 'second done');
  });

  it('replaces the prior with the pace of the first job of a model while it draws, still as a first estimate', async () => {
    // The prior says 1 s per step; the engine really takes a few milliseconds.
    const engine = new ScriptedEngine({ stepMs: 3 });
    const { jobs, events } = await setup({ engine, start: false });
    await jobs.submit(input('first', member('A'), {}, { steps: 40 }));
    const waiting = await jobs.submit(input('second', member('B'), {}, { steps: 40 }));
    if (!waiting.ok) throw new Error('submit failed');
    expect([waiting.etaSeconds, waiting.approximate]).toEqual([80, true]);
    await jobs.start();
    await until(() => ofType(events, 'done').length === 2, 'both done');
    const firstDone = events.findIndex((e) => e.type === 'done');
    const moves = ofType(events.slice(0, firstDone), 'moved').filter((e) => e.job.id === waiting.job.id);
    expect(moves.length).toBeGreaterThan(0);
    expect(moves.every((m) => m.approximate === true)).toBe(true);
    expect(Math.min(...moves.map((m) => m.etaSeconds))).toBeLessThan(10);
  });

  it('answers clearly at the per-member and global caps', async () => {
    const engine = new ScriptedEngine({ hold: true });
    const { jobs } = await setup({ engine, config: { queue: { perMemberPending: 2, globalPending: 3 } } });
    expect((await jobs.submit(input('1', member('A')))).ok).toBe(true);
    expect((await jobs.submit(input('2', member('A')))).ok).toBe(true);
    const third = await jobs.submit(input('3', member('A')));
    expect(third).toEqual({
      ok: false,
      reason: "You already have 2 pictures waiting — this club's limit per member. Cancel one with /cancel or wait.",
    });
    expect((await jobs.submit(input('4', member('B')))).ok).toBe(true);
    expect(await jobs.submit(input('5', member('C')))).toEqual({
      ok: false,
      reason: 'The queue is full (3 jobs) — try again in a few minutes.',
    });
  });

  it('counts concurrent submits of one member against the cap', async () => {
    const engine = new ScriptedEngine({ hold: true });
    const { jobs } = await setup({ engine, config: { queue: { perMemberPending: 2 } } });
    const outcomes = await Promise.all([1, 2, 3, 4].map((i) => jobs.submit(input(`p${i}`, member('A')))));
    expect(outcomes.filter((o) => o.ok)).toHaveLength(2);
  });

  it('returns the existing job for a repeated idempotency key, also after a restart', async () => {
    const engine = new ScriptedEngine({ hold: true });
    const first = await setup({ engine });
    const [x, y] = await Promise.all([
      first.jobs.submit(input('once', member('A'), { idempotencyKey: 'tg:5:77' })),
      first.jobs.submit(input('once', member('A'), { idempotencyKey: 'tg:5:77' })),
    ]);
    expect(x!.ok && y!.ok).toBe(true);
    if (!x!.ok || !y!.ok) return;
    expect(y!.job.id).toBe(x!.job.id);
    expect([x!.duplicate, y!.duplicate]).toEqual([false, true]);
    const again = await first.jobs.submit(input('once', member('A'), { idempotencyKey: 'tg:5:77' }));
    expect(again.ok && again.duplicate && again.job.id).toBe(x!.job.id);
    expect(ofType(first.events, 'queued')).toHaveLength(1);
  });

  it('refuses to acknowledge a job the store could not save, and queues nothing', async () => {
    const config = defaultConfig({ dataDir: path.join(root, 'data') });
    const real = await createStore(config);
    const failingJobs = Object.create(real.jobs) as Store['jobs'];
    failingJobs.put = () => Promise.reject(new Error('SQLITE_FULL: database or disk is full'));
    const broken: Store = { ...real, jobs: failingJobs };
    const engine = new ScriptedEngine();
    const { jobs, events } = await setup({ store: broken, engine });
    const out = await jobs.submit(input('lost?', member('A')));
    expect(out).toEqual({ ok: false, reason: 'Could not save your request — please try again.' });
    await tick();
    expect(events).toEqual([]);
    expect(engine.calls).toHaveLength(0);
    expect(jobs.snapshot()).toEqual({ waiting: [] });
  });

  it('lets the owner cancel a queued job, refuses others, lets an admin cancel, and keeps order', async () => {
    const engine = new ScriptedEngine({ hold: true });
    const { jobs, store, events } = await setup({ engine, config: { queue: { perMemberPending: 5 } } });
    await jobs.submit(input('running', member('A')));
    await engine.whenHeld();
    const q1 = await jobs.submit(input('q1', member('B')));
    const q2 = await jobs.submit(input('q2', member('C')));
    const q3 = await jobs.submit(input('q3', member('D')));
    if (!q1.ok || !q2.ok || !q3.ok) throw new Error('submit failed');

    expect(await jobs.cancel(q1.job.id, member('C'), false)).toEqual({
      ok: false,
      reason: 'That job belongs to someone else — only they or an admin can cancel it.',
    });
    const own = await jobs.cancel(q1.job.id, member('B'), false);
    expect(own.ok && [own.wasRunning, own.job.status]).toEqual([false, 'cancelled']);
    expect((await store.jobs.get(q1.job.id))?.status).toBe('cancelled');
    const byAdmin = await jobs.cancel(q2.job.id, member('admin'), true);
    expect(byAdmin.ok).toBe(true);
    expect(ofType(events, 'cancelled').map((e) => e.by)).toEqual(['user-B', 'user-admin']);
    expect(jobs.position(q3.job.id)?.position).toBe(1);
    await tick();
    expect(ofType(events, 'moved').filter((m) => m.job.id === q3.job.id).map((m) => m.position).at(-1)).toBe(1);

    expect(await jobs.cancel('zzzzzzzz', member('B'), true)).toEqual({ ok: false, reason: 'There is no job zzzzzzzz.' });
    expect(await jobs.cancel(q1.job.id, member('B'), false)).toEqual({ ok: false, reason: 'That job is already cancelled.' });

    await engine.release(); // "running"
    expect(await engine.release()).toBe('q3'); // the cancelled ones never reach the engine
    await until(() => ofType(events, 'done').length === 2, 'two done');
    expect(engine.calls.map((c) => c.prompt)).toEqual(['running', 'q3']);
  });

  it('cancels a running job between steps', async () => {
    const engine = new ScriptedEngine({ hold: true });
    const { jobs, store, events } = await setup({ engine });
    const out = await jobs.submit(input('long one', member('A')));
    if (!out.ok) throw new Error('submit failed');
    await engine.whenHeld();
    const next = await jobs.submit(input('next', member('B')));
    const res = await jobs.cancel(out.job.id, member('A'), false);
    expect(res.ok && [res.wasRunning, res.job.status]).toEqual([true, 'cancelled']);
    expect((await store.jobs.get(out.job.id))?.status).toBe('cancelled');
    expect(ofType(events, 'cancelled')).toHaveLength(1);
    // The queue moves on to the next job.
    expect(await engine.release()).toBe('next');
    await until(() => ofType(events, 'done').length === 1, 'next done');
    expect(next.ok && ofType(events, 'done')[0]!.job.id).toBe(next.ok && next.job.id);
  });

  it('fails with the engine message for refused requests and a generic one for crashes', async () => {
    const { jobs, store, events } = await setup();
    const refused = await jobs.submit(input('REFUSE this', member('A')));
    const crashed = await jobs.submit(input('CRASH this', member('B')));
    await until(() => ofType(events, 'failed').length === 2, 'two failed');
    const reasons = ofType(events, 'failed').map((e) => e.reason);
    expect(reasons).toEqual([
      'That prompt is too long for this model.',
      'The picture engine failed on this request; an admin has been notified.',
    ]);
    expect(reasons.join(' ')).not.toContain('onnxruntime');
    expect((await store.jobs.get(crashed.ok ? crashed.job.id : ''))?.error).toBe(reasons[1]);
    expect((await store.jobs.get(refused.ok ? refused.job.id : ''))?.status).toBe('failed');
  });

  it('counts an engine worker crash against the request: tries again in its place, then fails it at maxAttempts', async () => {
    /** The worker dies on the first try of "flaky", then draws it. */
    class FlakyWorker extends ScriptedEngine {
      private crashed = false;
      override async generate(request: GenerateRequest, options?: GenerateOptions): Promise<GenerateResult> {
        if (request.prompt === 'flaky' && !this.crashed) {
          this.crashed = true;
          this.calls.push(request);
          throw new EngineError('worker_crashed', 'the engine worker stopped unexpectedly (exit code 70)');
        }
        return super.generate(request, options);
      }
    }
    const engine = new FlakyWorker();
    const { jobs, store, events } = await setup({ engine, start: false });
    const flaky = await jobs.submit(input('flaky', member('A')));
    const poison = await jobs.submit(input('WORKER-DIES here', member('B')));
    await jobs.start();
    await until(() => ofType(events, 'done').length === 1 && ofType(events, 'failed').length === 1, 'flaky done, poison failed');
    if (!flaky.ok || !poison.ok) throw new Error('submit failed');

    const retried = ofType(events, 'resumed');
    expect(retried.map((e) => [e.job.id, e.cause])).toEqual([
      [flaky.job.id, 'engine-crash'],
      [poison.job.id, 'engine-crash'],
    ]);
    expect(ofType(events, 'failed')[0]!.reason).toBe('This request crashed the picture engine 2 times; it was dropped.');
    const [a, b] = [await store.jobs.get(flaky.job.id), await store.jobs.get(poison.job.id)];
    expect([a?.status, a?.attempts]).toEqual(['done', 1]);
    expect([b?.status, b?.attempts]).toEqual(['failed', 2]);
    expect(engine.calls.map((c) => c.prompt)).toEqual(['flaky', 'WORKER-DIES here', 'flaky', 'WORKER-DIES here']);
  });

  it('reports progress as step k of the job\'s own steps, and which picture, when the engine draws pictures one batch after another', async () => {
    /** Reports steps the way the pipeline does on CPU: one picture per UNet batch, job-wide totals. */
    class OnePictureAtATime extends ScriptedEngine {
      override async generate(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerateResult> {
        const result = await super.generate({ ...request, count: 1, steps: 1 });
        const total = request.steps * request.count;
        for (let i = 0; i < total; i++) {
          const batch = { step: (i % request.steps) + 1, steps: request.steps, first: Math.floor(i / request.steps), size: 1, count: request.count };
          options.onStep?.({ step: i + 1, total, batch });
        }
        return { ...result, images: Array.from({ length: request.count }, (_, i) => ({ ...result.images[0]!, seed: request.seed + i })) };
      }
    }
    const { jobs, events } = await setup({ engine: new OnePictureAtATime() });
    await jobs.submit(input('four pictures', member('A'), {}, { steps: 150, count: 4 }));
    await until(() => ofType(events, 'done').length === 1, 'done');
    const progress = ofType(events, 'progress');
    expect(progress).toHaveLength(600);
    expect(progress.every((p) => p.total === 150 && p.step >= 1 && p.step <= 150)).toBe(true);
    // The moment the issue saw as "step 376/600".
    expect(statusText(progress[375]!)).toBe('Drawing… step 76/150 · picture 3 of 4');
    expect(progress[375]!.pictures).toEqual({ first: 3, last: 3, count: 4 });
  });

  it('feeds an upscale job the stored picture of its parent at the new size', async () => {
    const { jobs, engine, events } = await setup();
    const parent = await jobs.submit(input('parent', member('A'), {}, { count: 2 }));
    await until(() => ofType(events, 'done').length === 1, 'parent done');
    if (!parent.ok) throw new Error('submit failed');
    const child = await jobs.submit(
      input('parent', member('A'), { kind: 'upscale', parentId: parent.job.id }, { width: 128, height: 128, init: { jobId: parent.job.id, index: 1, strength: 0.5 } }),
    );
    await until(() => ofType(events, 'done').length === 2, 'upscale done');
    const init = engine.calls[1]!.init!;
    expect([init.width, init.height, init.rgb.length, init.strength]).toEqual([128, 128, 128 * 128 * 3, 0.5]);
    // A missing parent picture is a clear failure, not a crash.
    const orphan = await jobs.submit(input('x', member('A'), {}, { init: { jobId: 'nosuchjb', index: 0, strength: 0.3 } }));
    await until(() => ofType(events, 'failed').length === 1, 'orphan failed');
    expect(ofType(events, 'failed')[0]!.reason).toBe('The picture to start from is gone (it was deleted or has expired).');
    expect(child.ok && orphan.ok).toBe(true);
  });

  it('records delivery, finds the job by its result message, and resolves files only inside the data dir', async () => {
    const { jobs, events } = await setup();
    const out = await jobs.submit(input('deliver me', member('A')));
    await until(() => ofType(events, 'done').length === 1, 'done');
    if (!out.ok) throw new Error('submit failed');
    await jobs.markDelivered(out.job.id, { chatId: 'chan-1', messageId: 'msg-9' });
    expect((await jobs.get(out.job.id))?.status).toBe('delivered');
    expect((await jobs.findByMessage('discord', 'chan-1', 'msg-9'))?.id).toBe(out.job.id);
    expect(await jobs.pendingDeliveries('discord')).toEqual([]);
    expect(() => jobs.filePath('../../etc/passwd')).toThrow(/outside the data directory/);
    expect(() => jobs.filePath('/etc/passwd')).toThrow(/outside the data directory/);
    expect(jobs.filePath('images/x.png')).toBe(path.join(root, 'data', 'images', 'x.png'));

    const other = await jobs.submit(input('blocked', member('B')));
    await until(() => ofType(events, 'done').length === 2, 'done');
    await jobs.markUndeliverable(other.ok ? other.job.id : '', 'the member blocked the bot');
    expect(await jobs.pendingDeliveries('discord')).toEqual([]);
  });

  it('stops intake on stop(), and puts a job that outlives the grace period back as queued without counting it', async () => {
    const engine = new ScriptedEngine({ hold: true });
    const { jobs, store, events } = await setup({ engine });
    const out = await jobs.submit(input('slow', member('A')));
    if (!out.ok) throw new Error('submit failed');
    await engine.whenHeld();
    await jobs.stop(20);
    const stored = (await store.jobs.get(out.job.id))!;
    expect([stored.status, stored.attempts, stored.startedAt]).toEqual(['queued', 0, undefined]);
    // The adapters hear it, so the member's "Drawing…" does not stay behind with live buttons.
    const putBack = ofType(events, 'resumed').at(-1)!;
    expect([putBack.job.id, putBack.cause]).toEqual([out.job.id, 'shutdown']);
    expect(statusText(putBack)).toBe('The bot is restarting: this picture will be drawn when it is back.');
    expect(await jobs.submit(input('late', member('B')))).toEqual({
      ok: false,
      reason: 'The bot is restarting — try again in a minute.',
    });
  });

  it('ends every job with an event adapters can settle on, even when the store refuses the final write', async () => {
    const config = defaultConfig({ dataDir: path.join(root, 'data'), storage: { url: `sqlite://${path.join(root, 'data', 'bot.sqlite')}` } });
    const real = await createStore(config);
    /** Refuses to record the end of jobs whose prompt says so, as a full disk would. */
    const failing: Store = {
      ...real,
      jobs: Object.assign(Object.create(real.jobs) as Store['jobs'], {
        put: async (job: Job) => {
          if (job.spec.prompt.includes('NO-DONE') && job.status === 'done') throw new Error('SQLITE_FULL');
          if (job.spec.prompt.includes('NO-REQUEUE') && job.status === 'queued' && job.attempts > 0) throw new Error('SQLITE_FULL');
          return real.jobs.put(job);
        },
      }),
    };
    const { jobs, events } = await setup({ store: failing });
    const a = await jobs.submit(input('NO-DONE drawn', member('A')));
    const b = await jobs.submit(input('NO-REQUEUE WORKER-DIES', member('B')));
    await until(() => ofType(events, 'failed').length === 2, 'both ends told');
    const reasons = new Map(ofType(events, 'failed').map((e) => [e.job.id, e.reason]));
    expect(reasons.get(a.ok ? a.job.id : '')).toBe('Your picture was drawn but could not be saved — please try again.');
    expect(reasons.get(b.ok ? b.job.id : '')).toBe('The picture engine failed on this request; an admin has been notified.');
  });

  it('lets the running job finish within the grace period', async () => {
    const engine = new ScriptedEngine({ stepMs: 5 });
    const { jobs, store, events } = await setup({ engine });
    const out = await jobs.submit(input('quick', member('A')));
    await until(() => ofType(events, 'started').length === 1, 'started');
    await jobs.stop(5_000);
    expect((await store.jobs.get(out.ok ? out.job.id : ''))?.status).toBe('done');
  });

  it('recovers after a restart: resumes queued and running jobs in order, drops a job the process died on too often, keeps done ones for delivery', async () => {
    const config = defaultConfig({ dataDir: path.join(root, 'data') });
    const store = await createStore(config);
    const mk = (id: string, seq: number, status: Job['status'], who: string, extra: Partial<Job> = {}): Job => ({
      id,
      seq,
      kind: 'imagine',
      spec: spec(id),
      requester: member(who),
      target: { platform: 'discord', chatId: 'c', handle: {} },
      tier: 0,
      status,
      createdAt: 1,
      attempts: 0,
      notes: [],
      ...extra,
    });
    await store.jobs.put(mk('delivrd1', 1, 'delivered', 'A', { finishedAt: 2, delivery: { at: 3 } }));
    await store.jobs.put(mk('undeliv1', 2, 'done', 'A', { finishedAt: 2 }));
    // running1 was interrupted by the kill before this start; an engine crash it caused earlier
    // stays counted, but the kills do not add to it.
    await store.jobs.put(mk('running1', 3, 'running', 'A', { attempts: 1, interruptions: 1, startedAt: 2 }));
    // poison01 was drawing each of the last 3 times the process died (maxInterruptions 3 here).
    await store.jobs.put(mk('poison01', 4, 'running', 'B', { interruptions: 2, startedAt: 2 }));
    await store.jobs.put(mk('queued01', 5, 'queued', 'A'));
    await store.jobs.put(mk('queued02', 6, 'queued', 'C'));

    const engine = new ScriptedEngine({ hold: true });
    const { jobs, events } = await setup({ store, engine, start: false, config: { queue: { maxInterruptions: 3 } } });
    await jobs.start();
    expect(ofType(events, 'resumed').map((e) => [e.job.id, e.position])).toEqual([
      ['running1', 1],
      ['queued01', 3],
      ['queued02', 2],
    ]);
    expect(ofType(events, 'failed').map((e) => [e.job.id, e.reason])).toEqual([
      ['poison01', 'The bot stopped unexpectedly 3 times while drawing this request, so it was dropped in case it is the cause. Try again, perhaps smaller.'],
    ]);
    expect((await jobs.pendingDeliveries('discord')).map((j) => j.id)).toEqual(['undeliv1']);
    const order = [await engine.release(), await engine.release(), await engine.release()];
    expect(order).toEqual(['running1', 'queued02', 'queued01']);
    await until(() => ofType(events, 'done').length === 3, 'all done');
    const survivor = await jobs.get('running1');
    expect([survivor?.status, survivor?.attempts, survivor?.interruptions]).toEqual(['done', 1, 2]);
    expect(engine.calls.map((c) => c.prompt)).not.toContain('undeliv1');
    expect(engine.calls.map((c) => c.prompt)).not.toContain('delivrd1');
  });

  it('deletes expired finished jobs and their files on the retention sweep, keeping recent and active ones', async () => {
    let clock = Date.UTC(2025, 0, 1);
    const { jobs, store, events } = await setup({ now: () => clock, config: { retention: { days: 2, sweepMinutes: 60 } } });
    const old = await jobs.submit(input('old', member('A'), {}, { count: 2 }));
    await until(() => ofType(events, 'done').length === 1, 'old done');
    await jobs.markDelivered(old.ok ? old.job.id : '');
    const oldJob = (await store.jobs.get(old.ok ? old.job.id : ''))!;
    const oldFiles = [...oldJob.result!.images.map((i) => i.file), oldJob.result!.grid!].map((f) => jobs.filePath(f));
    expect(oldFiles.every((f) => existsSync(f))).toBe(true);

    clock += 3 * 86_400_000;
    const fresh = await jobs.submit(input('fresh', member('A')));
    await until(() => ofType(events, 'done').length === 2, 'fresh done');
    await jobs.markDelivered(fresh.ok ? fresh.job.id : '');
    const undelivered = await jobs.submit(input('waiting for delivery', member('B')));
    await until(() => ofType(events, 'done').length === 3, 'third done');

    expect(await jobs.sweepExpired()).toBe(1);
    expect(await store.jobs.get(oldJob.id)).toBeUndefined();
    expect(oldFiles.some((f) => existsSync(f))).toBe(false);
    expect(existsSync(path.dirname(oldFiles[0]!))).toBe(false); // the emptied day folder is gone too
    expect((await store.jobs.get(fresh.ok ? fresh.job.id : ''))?.status).toBe('delivered');

    clock += 30 * 86_400_000;
    // Done but undelivered is not finished: the sweep leaves it for its adapter.
    expect(await jobs.sweepExpired()).toBe(1);
    expect((await store.jobs.get(undelivered.ok ? undelivered.job.id : ''))?.status).toBe('done');
  });

  it('gives tier members their weight: two turns for each turn of a normal member', async () => {
    const engine = new ScriptedEngine({ hold: true });
    const { jobs } = await setup({
      engine,
      config: { queue: { perMemberPending: 10, tiers: [{ name: 'patrons', roles: ['role-p'], users: [], weight: 2 }] } },
    });
    await jobs.submit(input('warmup', member('X')));
    await engine.whenHeld();
    for (let i = 0; i < 4; i++) await jobs.submit(input(`p${i}`, member('P', { roles: ['role-p'] })));
    for (let i = 0; i < 4; i++) await jobs.submit(input(`n${i}`, member('N')));
    const waiting = jobs.snapshot().waiting;
    expect(waiting[0]!.job.tier).toBe(1);
    expect(waiting.slice(0, 6).map((w) => w.job.spec.prompt[0]).join('')).toBe('ppnppn');
  });
});

describe('engine model errors shown to members', () => {
  it('name the broken file but not where the server keeps it', () => {
    const shown = withoutServerPaths(
      'model "sd15": unet/model.onnx could not be loaded from /srv/club/bot/models/sd15/unet/model.onnx',
    );
    expect(shown).toContain('unet/model.onnx');
    expect(shown).toContain('…/sd15/unet/model.onnx');
    expect(shown).not.toContain('/srv/club');
    expect(withoutServerPaths('no vae_encoder/ in this folder')).toBe('no vae_encoder/ in this folder');
  });
});
