// The platform-neutral commands' decisions, against a small in-memory job service and settings
// store (the real service has its own tests; here only what each command decides matters).
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { ChatNotice } from '../commands/chat-notice.js';
import { encodeAction } from '../commands/codec.js';
import { pictureSpec } from '../commands/format.js';
import { runCommand, SOMETHING_WENT_WRONG } from '../commands/index.js';
import { isAdmin, mayAct } from '../commands/permissions.js';
import { resultView } from '../commands/result.js';
import { statusText } from '../commands/status.js';
import type { Action, CommandContext, CommandName, CommandRequest } from '../commands/types.js';
import { SAMPLERS } from '../engine/types.js';
import { defaultConfig, type DeepPartial } from '../src/config/load.js';
import type { FileConfig } from '../src/config/schema.js';
import { parseJobRequest } from '../src/jobs/parse.js';
import type {
  CancelOutcome,
  Job,
  JobEventListener,
  JobService,
  JobSpec,
  MemberSettings,
  Platform,
  QueuePosition,
  QueueSnapshot,
  Requester,
  SettingsRepo,
  SubmitInput,
  SubmitOutcome,
} from '../src/jobs/types.js';
import { modelInfo as model } from './fixtures/model-info.js';
import { createHarness, type Harness } from './helpers/harness.js';

// ---- doubles ----------------------------------------------------------------------------------

const DATA = path.join(path.sep, 'data');

class MemoryJobs implements JobService {
  readonly jobs = new Map<string, Job>();
  readonly submitted: SubmitInput[] = [];
  readonly cancels: { id: string; by: Requester; asAdmin: boolean }[] = [];
  refuseWith?: string;
  runningStep = { step: 5, total: 20 };
  private seq = 0;

  add(job: Job): Job {
    this.jobs.set(job.id, job);
    this.seq = Math.max(this.seq, job.seq);
    return job;
  }
  async submit(input: SubmitInput): Promise<SubmitOutcome> {
    if (this.refuseWith) return { ok: false, reason: this.refuseWith };
    this.submitted.push(input);
    const job = this.add({
      id: `j${++this.seq}`,
      seq: this.seq,
      kind: input.kind,
      ...(input.parentId ? { parentId: input.parentId } : {}),
      spec: input.spec,
      requester: input.requester,
      target: input.target,
      tier: 0,
      status: 'queued',
      createdAt: 0,
      attempts: 0,
      notes: input.notes,
    });
    const position = this.snapshot().waiting.length;
    return { ok: true, job, position, etaSeconds: 40 * position, duplicate: false };
  }
  async cancel(jobId: string, by: Requester, asAdmin: boolean): Promise<CancelOutcome> {
    this.cancels.push({ id: jobId, by, asAdmin });
    const job = this.jobs.get(jobId);
    if (!job) return { ok: false, reason: 'no such job' };
    if (!asAdmin && job.requester.userId !== by.userId) return { ok: false, reason: 'not yours' };
    const wasRunning = job.status === 'running';
    job.status = 'cancelled';
    return { ok: true, job, wasRunning };
  }
  async get(jobId: string): Promise<Job | undefined> {
    return this.jobs.get(jobId);
  }
  position(): QueuePosition | undefined {
    return undefined;
  }
  snapshot(): QueueSnapshot {
    const all = [...this.jobs.values()].sort((a, b) => a.seq - b.seq);
    const running = all.find((j) => j.status === 'running');
    const waiting = all.filter((j) => j.status === 'queued').map((job, i) => ({ job, position: i + 1, etaSeconds: 40 * (i + 1) }));
    return { ...(running ? { running: { job: running, ...this.runningStep } } : {}), waiting };
  }
  on(_listener: JobEventListener): () => void {
    return () => {};
  }
  async markDelivered(): Promise<void> {}
  async findByMessage(): Promise<Job | undefined> {
    return undefined;
  }
  async markUndeliverable(): Promise<void> {}
  async markDeleted(): Promise<void> {}
  async pendingDeliveries(): Promise<Job[]> {
    return [];
  }
  filePath(relative: string): string {
    return path.join(DATA, relative);
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

class MemorySettings implements SettingsRepo {
  readonly saved = new Map<string, MemberSettings>();
  async get(platform: Platform, userId: string): Promise<MemberSettings> {
    return { ...(this.saved.get(`${platform}:${userId}`) ?? {}) };
  }
  async set(platform: Platform, userId: string, settings: MemberSettings): Promise<void> {
    this.saved.set(`${platform}:${userId}`, { ...settings });
  }
}

const MODELS = [model('tiny'), model('noenc', { hasVaeEncoder: false })];

interface Setup {
  ctx: CommandContext;
  jobs: MemoryJobs;
  settings: MemorySettings;
  logLines: string[];
}

function setup(overrides: DeepPartial<FileConfig> = {}): Setup {
  const config = defaultConfig({
    dataDir: DATA,
    models: { dir: '/models', default: 'tiny' },
    ...overrides,
    permissions: { admins: { users: ['boss'], roles: ['mods'] }, ...overrides.permissions },
  });
  const logLines: string[] = [];
  const log = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(chunk.toString('utf8'));
        done();
      },
    }),
  );
  const jobs = new MemoryJobs();
  const settings = new MemorySettings();
  return { ctx: { config, jobs, settings, models: () => MODELS, log }, jobs, settings, logLines };
}

const ada: Requester = { platform: 'discord', userId: 'ada', name: 'Ada', roles: [] };
const bob: Requester = { platform: 'discord', userId: 'bob', name: 'Bob', roles: [] };
const boss: Requester = { platform: 'discord', userId: 'boss', name: 'Boss', roles: [] };
const mod: Requester = { platform: 'discord', userId: 'mia', name: 'Mia', roles: ['mods'] };
const target = { platform: 'discord' as const, chatId: 'chan', handle: {} };

function req(command: CommandName, who: Requester, extra: Partial<CommandRequest> = {}): CommandRequest {
  return { command, requester: who, target, via: 'slash', ...extra };
}

function press(who: Requester, action: Action, via: CommandRequest['via'] = 'button'): CommandRequest {
  const command: CommandName = action.action === 'vary-strong' ? 'vary' : action.action;
  return { command, requester: who, target, via, action };
}

const BASE_SPEC: JobSpec = {
  prompt: 'a red fox in the snow, detailed',
  negativePrompt: 'blurry',
  width: 512,
  height: 768,
  steps: 20,
  guidance: 6.5,
  sampler: 'DPM++ 2M Karras',
  seed: 1000,
  count: 4,
  model: 'tiny',
};

let nextId = 100;
function doneJob(owner: Requester, spec: Partial<JobSpec> = {}, extra: Partial<Job> = {}): Job {
  const full: JobSpec = { ...BASE_SPEC, ...spec };
  const id = `d${nextId++}`;
  const images = Array.from({ length: full.count }, (_, i) => ({
    file: `jobs/${id}/${i}.png`,
    seed: full.variation ? full.seed : full.seed + i,
    width: full.width,
    height: full.height,
    infoText: `${full.prompt}\nNegative prompt: ${full.negativePrompt}\nSteps: ${full.steps}, Seed: ${full.seed + i}`,
  }));
  return {
    id,
    seq: nextId,
    kind: 'imagine',
    spec: full,
    requester: owner,
    target,
    tier: 0,
    status: 'delivered',
    createdAt: 0,
    finishedAt: 1,
    attempts: 1,
    notes: [],
    result: { images, grid: `jobs/${id}/grid.png`, model: full.model, provider: 'cpu', durationMs: 12_345, truncation: {} },
    ...extra,
  };
}

function pendingJob(owner: Requester, status: 'queued' | 'running', seq: number, prompt = 'a cat'): Job {
  return {
    id: `p${seq}`,
    seq,
    kind: 'imagine',
    spec: { ...BASE_SPEC, prompt },
    requester: owner,
    target,
    tier: 0,
    status,
    createdAt: 0,
    attempts: 0,
    notes: [],
  };
}

// ---- imagine ----------------------------------------------------------------------------------

describe('imagine', () => {
  it('parses, queues and answers with the place, ETA and clamp notes', async () => {
    const { ctx, jobs } = setup();
    const reply = await runCommand(
      req('imagine', ada, { via: 'text', text: 'a fox --seed 42 --steps 999 --n 2', idempotencyKey: 'tg:77' }),
      ctx,
    );
    expect(reply.ok).toBe(true);
    expect(reply.visibility).toBe('public');
    expect(reply.text).toMatch(/^Queued #1 · about 40 s/);
    expect(reply.text).toContain(`steps 999 → ${ctx.config.limits.maxSteps}`);
    const input = jobs.submitted[0]!;
    expect(input.kind).toBe('imagine');
    expect(input.spec).toMatchObject({ prompt: 'a fox', seed: 42, steps: ctx.config.limits.maxSteps, count: 2, model: 'tiny' });
    expect(input.requester).toBe(ada);
    expect(input.idempotencyKey).toBe('tg:77');
    expect(reply.queued?.job.id).toBe('j1');
  });

  it("uses the member's saved settings", async () => {
    const { ctx, jobs, settings } = setup();
    await settings.set('discord', 'ada', { steps: 33, sampler: 'DDIM', negativePrompt: 'text' });
    await runCommand(req('imagine', ada, { options: { prompt: 'a fox' } }), ctx);
    expect(jobs.submitted[0]!.spec).toMatchObject({ steps: 33, sampler: 'DDIM', negativePrompt: 'text' });
  });

  it('refuses bad input and a full queue privately, queueing nothing', async () => {
    const { ctx, jobs } = setup();
    const bad = await runCommand(req('imagine', ada, { via: 'text', text: 'a fox --bogus 3' }), ctx);
    expect(bad).toMatchObject({ ok: false, visibility: 'private' });
    expect(bad.text).toMatch(/Unknown flag --bogus/);
    const empty = await runCommand(req('imagine', ada, { via: 'text', text: '   ' }), ctx);
    expect(empty.ok).toBe(false);
    expect(empty.text).toMatch(/what to draw/i);
    expect(jobs.submitted).toHaveLength(0);

    jobs.refuseWith = 'The queue is full (50 jobs); please try again in a few minutes.';
    const full = await runCommand(req('imagine', ada, { via: 'text', text: 'a fox' }), ctx);
    expect(full).toMatchObject({ ok: false, visibility: 'private', text: jobs.refuseWith });
  });
});

// ---- reroll -----------------------------------------------------------------------------------

describe('reroll', () => {
  it('queues the same spec with a new seed for whoever pressed', async () => {
    const { ctx, jobs } = setup();
    const job = jobs.add(doneJob(ada));
    const reply = await runCommand(press(bob, { action: 'reroll', jobId: job.id }), ctx);
    expect(reply.ok, reply.text).toBe(true);
    const input = jobs.submitted[0]!;
    expect(input.kind).toBe('reroll');
    expect(input.parentId).toBe(job.id);
    expect(input.requester).toBe(bob);
    const { seed, ...rest } = input.spec;
    const { seed: oldSeed, ...oldRest } = job.spec;
    expect(rest).toEqual(oldRest);
    expect(seed).not.toBe(oldSeed);
    expect(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32).toBe(true);
  });

  it('a reroll of variations keeps the base seed and draws a new variation seed', async () => {
    const { ctx, jobs } = setup();
    const job = jobs.add(doneJob(ada, { variation: { seed: 5, strength: 0.15 } }));
    await runCommand(press(ada, { action: 'reroll', jobId: job.id }), ctx);
    const spec = jobs.submitted[0]!.spec;
    expect(spec.seed).toBe(job.spec.seed);
    expect(spec.variation?.strength).toBe(0.15);
    expect(spec.variation?.seed).not.toBe(5);
  });

  it('says so when the result is gone', async () => {
    const { ctx } = setup();
    const reply = await runCommand(press(ada, { action: 'reroll', jobId: 'gone1234' }), ctx);
    expect(reply).toMatchObject({ ok: false, visibility: 'private', text: 'That result has expired or was deleted.' });
  });

  it('follows the owner policy: owner and admins (by user or role) yes, others no', async () => {
    const { ctx, jobs } = setup({ permissions: { reroll: 'owner' } });
    const job = jobs.add(doneJob(ada));
    const action = { action: 'reroll' as const, jobId: job.id };
    const refused = await runCommand(press(bob, action), ctx);
    expect(refused.ok).toBe(false);
    expect(refused.text).toMatch(/Only Ada or an admin may reroll/);
    for (const who of [ada, boss, mod]) {
      const reply = await runCommand(press(who, action), ctx);
      expect(reply.ok, `${who.name}: ${reply.text}`).toBe(true);
    }
    expect(jobs.submitted).toHaveLength(3);
  });

  it('a 🔁 reaction follows reactionReroll, not the button policy', async () => {
    const { ctx, jobs } = setup({ permissions: { reroll: 'anyone', reactionReroll: 'owner' } });
    const job = jobs.add(doneJob(ada));
    const action = { action: 'reroll' as const, jobId: job.id };
    expect((await runCommand(press(bob, action, 'button'), ctx)).ok).toBe(true);
    expect((await runCommand(press(bob, action, 'reaction'), ctx)).ok).toBe(false);
    expect((await runCommand(press(ada, action, 'reaction'), ctx)).ok).toBe(true);
    // The same user id on another platform is another member.
    expect(mayAct(ctx.config, 'reroll', job, { ...ada, platform: 'telegram' }, 'reaction')).toBe(false);
  });
});

// ---- vary -------------------------------------------------------------------------------------

describe('vary', () => {
  it("takes the chosen picture's seed and adds a subtle or strong variation", async () => {
    const { ctx, jobs } = setup();
    const job = jobs.add(doneJob(ada));
    const subtle = await runCommand(press(bob, { action: 'vary', jobId: job.id, index: 2 }), ctx);
    expect(subtle.ok, subtle.text).toBe(true);
    const a = jobs.submitted[0]!;
    expect(a.kind).toBe('vary');
    expect(a.parentId).toBe(job.id);
    expect(a.spec.seed).toBe(1002);
    expect(a.spec.count).toBe(4);
    expect(a.spec.variation?.strength).toBe(ctx.config.defaults.varySubtle);
    expect(a.spec.init).toBeUndefined();
    expect({ ...a.spec, seed: 0, variation: undefined }).toEqual({ ...job.spec, seed: 0, variation: undefined });

    await runCommand(press(bob, { action: 'vary-strong', jobId: job.id, index: 0 }), ctx);
    const b = jobs.submitted[1]!;
    expect(b.spec.seed).toBe(1000);
    expect(b.spec.variation?.strength).toBe(ctx.config.defaults.varyStrong);
    expect(b.spec.variation?.seed).not.toBe(a.spec.variation?.seed);
  });

  it('refuses a missing picture, an unfinished job and an upscale result clearly', async () => {
    const { ctx, jobs } = setup();
    const job = jobs.add(doneJob(ada, { count: 2 }));
    const missing = await runCommand(press(ada, { action: 'vary', jobId: job.id, index: 3 }), ctx);
    expect(missing).toMatchObject({ ok: false, text: 'That result has 2 pictures; there is no picture 4.' });
    const queued = jobs.add(pendingJob(ada, 'queued', 500));
    expect((await runCommand(press(ada, { action: 'vary', jobId: queued.id, index: 0 }), ctx)).text).toMatch(/no pictures yet/);
    const up = jobs.add(doneJob(ada, { count: 1, init: { jobId: job.id, index: 0, strength: 0.35 } }, { kind: 'upscale' }));
    expect((await runCommand(press(ada, { action: 'vary', jobId: up.id, index: 0 }), ctx)).text).toMatch(/not from an upscale/);
    expect(jobs.submitted).toHaveLength(0);
  });

  it('vary permission "owner" keeps others out', async () => {
    const { ctx, jobs } = setup({ permissions: { vary: 'owner' } });
    const job = jobs.add(doneJob(ada));
    expect((await runCommand(press(bob, { action: 'vary', jobId: job.id, index: 0 }), ctx)).ok).toBe(false);
    expect((await runCommand(press(ada, { action: 'vary', jobId: job.id, index: 0 }), ctx)).ok).toBe(true);
  });
});

// ---- upscale ----------------------------------------------------------------------------------

describe('upscale', () => {
  it('sends the picture at once and queues a 2× img2img pass of it', async () => {
    const { ctx, jobs } = setup();
    const job = jobs.add(doneJob(ada, { width: 512, height: 512 }));
    const reply = await runCommand(press(bob, { action: 'upscale', jobId: job.id, index: 1 }), ctx);
    expect(reply.ok, reply.text).toBe(true);
    expect(reply.files).toEqual([{ path: path.join(DATA, job.result!.images[1]!.file), name: 'a-red-fox-in-the-snow-detailed-1001.png' }]);
    const input = jobs.submitted[0]!;
    expect(input.kind).toBe('upscale');
    expect(input.spec).toMatchObject({ width: 1024, height: 1024, count: 1, seed: 1001 });
    expect(input.spec.init).toEqual({ jobId: job.id, index: 1, strength: ctx.config.defaults.upscaleStrength });
    expect(reply.queued?.job.kind).toBe('upscale');
    expect(reply.text).toMatch(/1024x1024/);
  });

  it("clamps the 2× size to the club's limits in multiples of 64 and says so", async () => {
    const { ctx, jobs } = setup({ limits: { maxPixels: 1024 * 1024, maxSide: 1536 } });
    const job = jobs.add(doneJob(ada, { width: 512, height: 768, count: 1 }));
    const reply = await runCommand(press(ada, { action: 'upscale', jobId: job.id, index: 0 }), ctx);
    const { width, height } = jobs.submitted[0]!.spec;
    expect(width % 64).toBe(0);
    expect(height % 64).toBe(0);
    expect(width * height).toBeLessThanOrEqual(1024 * 1024);
    expect(Math.max(width, height)).toBeLessThanOrEqual(1536);
    expect(width * height).toBeGreaterThan(512 * 768);
    expect(jobs.submitted[0]!.notes.join(' ')).toMatch(/2× would be 1024x1536/);
    expect(reply.text).toMatch(/2× would be 1024x1536/);
  });

  it('still sends the picture when the model cannot do img2img, or the queue refuses', async () => {
    const { ctx, jobs } = setup();
    const job = jobs.add(doneJob(ada, { model: 'noenc' }));
    const reply = await runCommand(press(ada, { action: 'upscale', jobId: job.id, index: 0 }), ctx);
    expect(reply.ok).toBe(true);
    expect(reply.files).toHaveLength(1);
    expect(reply.text).toMatch(/no VAE encoder/);
    expect(jobs.submitted).toHaveLength(0);

    const ok = jobs.add(doneJob(ada));
    jobs.refuseWith = 'You already have 3 jobs waiting.';
    const refused = await runCommand(press(ada, { action: 'upscale', jobId: ok.id, index: 0 }), ctx);
    expect(refused.files).toHaveLength(1);
    expect(refused.text).toContain('You already have 3 jobs waiting.');
  });

  it('does not queue a pass that the limits would not let grow', async () => {
    const { ctx, jobs } = setup({ limits: { maxPixels: 512 * 512, maxSide: 512 } });
    const job = jobs.add(doneJob(ada, { width: 512, height: 512 }));
    const reply = await runCommand(press(ada, { action: 'upscale', jobId: job.id, index: 0 }), ctx);
    expect(reply.files).toHaveLength(1);
    expect(reply.text).toMatch(/size limit/);
    expect(jobs.submitted).toHaveLength(0);
  });
});

// ---- info -------------------------------------------------------------------------------------

function commandText(reply: { text: string }): string {
  const line = reply.text.split('\n').find((l) => l.startsWith('/imagine '));
  if (!line) throw new Error(`no command in: ${reply.text}`);
  return line.replace(/^\/imagine (prompt: )?/, '');
}

describe('info', () => {
  it("answers privately with the picture's parameters, info text and an exact command", async () => {
    const { ctx, jobs, settings } = setup();
    const job = jobs.add(doneJob(ada, { negativePrompt: '' }));
    const reply = await runCommand(press(bob, { action: 'info', jobId: job.id, index: 2 }), ctx);
    expect(reply).toMatchObject({ ok: true, visibility: 'private' });
    expect(reply.text).toContain(job.result!.images[2]!.infoText);
    expect(reply.text).toContain('/imagine prompt: ');
    // Pasted by a member whose own defaults differ, it still parses to exactly that picture.
    await settings.set('discord', 'bob', { steps: 40, negativePrompt: 'ugly', sampler: 'Euler', images: 3, aspect: '16:9' });
    const parsed = parseJobRequest(
      { text: commandText(reply) },
      { config: ctx.config, models: MODELS, member: await settings.get('discord', 'bob') },
    );
    expect(parsed.ok && parsed.spec).toEqual(pictureSpec(job, 2, job.result!.images[2]));
    expect(parsed.ok && parsed.spec).toMatchObject({ seed: 1002, count: 1, negativePrompt: '' });
  });

  it('puts the info text and the command in verbatim parts, so markdown characters in a prompt copy as typed', async () => {
    const { ctx, jobs } = setup();
    const job = jobs.add(doneJob(ada, { prompt: 'a *bold* fox_in ~~snow~~ `tick`', negativePrompt: '' }));
    const reply = await runCommand(press(bob, { action: 'info', jobId: job.id, index: 0 }), ctx);
    const parts = reply.parts!;
    // The plain fallback holds the same text, blank lines between sections.
    const lines = (text: string) => text.split('\n').filter((l) => l !== '');
    expect(lines(reply.text)).toEqual(lines(parts.map((p) => p.text).join('\n')));
    const code = parts.filter((p) => p.code).map((p) => p.text);
    expect(code).toEqual([job.result!.images[0]!.infoText, `/imagine prompt: ${commandText(reply)}`]);
    expect(code[1]).toContain('a *bold* fox_in ~~snow~~ `tick`');
    // Prose parts hold the explanations only; nothing to copy is left outside a code part.
    expect(parts.filter((p) => !p.code).every((p) => !p.text.includes('/imagine'))).toBe(true);
    expect(parts[0]).toEqual({ text: expect.stringMatching(/^Picture 1 of job/) });

    const whole = await runCommand(press(bob, { action: 'info', jobId: job.id }), ctx);
    expect(whole.parts!.filter((p) => p.code)).toHaveLength(2);
    const up = jobs.add(doneJob(ada, { count: 1, init: { jobId: 'abc123', index: 2, strength: 0.35 } }, { kind: 'upscale' }));
    const upInfo = await runCommand(press(ada, { action: 'info', jobId: up.id, index: 0 }), ctx);
    expect(upInfo.parts!.filter((p) => p.code).map((p) => p.text)).toEqual([up.result!.images[0]!.infoText]);
  });

  it('reproduces a variation picture with its variation seed, and the whole job without an index', async () => {
    const { ctx, jobs } = setup();
    const job = jobs.add(doneJob({ ...ada, platform: 'telegram' }, { variation: { seed: 77, strength: 0.4 } }));
    const tg = { ...bob, platform: 'telegram' as const };
    const one = await runCommand(press(tg, { action: 'info', jobId: job.id, index: 1 }), ctx);
    expect(one.text).not.toContain('/imagine prompt:');
    const parsed = parseJobRequest({ text: commandText(one) }, { config: ctx.config, models: MODELS, member: {} });
    expect(parsed.ok && parsed.spec).toEqual({ ...job.spec, count: 1, variation: { seed: 78, strength: 0.4 } });

    const plain = jobs.add(doneJob(ada));
    const all = await runCommand(press(bob, { action: 'info', jobId: plain.id }), ctx);
    const whole = parseJobRequest({ text: commandText(all) }, { config: ctx.config, models: MODELS, member: {} });
    expect(whole.ok && whole.spec).toEqual(plain.spec);
    expect(all.text).toContain('seeds 1000, 1001, 1002, 1003');
  });

  it('explains that an upscale came from img2img of the parent picture', async () => {
    const { ctx, jobs } = setup();
    const up = jobs.add(
      doneJob(ada, { count: 1, width: 1024, height: 1024, init: { jobId: 'abc123', index: 2, strength: 0.35 } }, { kind: 'upscale' }),
    );
    const reply = await runCommand(press(ada, { action: 'info', jobId: up.id, index: 0 }), ctx);
    expect(reply.text).toMatch(/img2img .*job abc123 picture 3/);
    expect(reply.text).not.toContain('/imagine');
  });
});

// ---- cancel, delete ---------------------------------------------------------------------------

describe('cancel', () => {
  it("cancels the member's latest queued or running job when no id is given", async () => {
    const { ctx, jobs } = setup();
    jobs.add(pendingJob(ada, 'running', 1, 'first'));
    jobs.add(pendingJob(bob, 'queued', 2));
    jobs.add(pendingJob(ada, 'queued', 3, 'latest one'));
    const reply = await runCommand(req('cancel', ada), ctx);
    expect(reply.ok, reply.text).toBe(true);
    expect(reply.text).toMatch(/Cancelled “latest one” \(job p3\)/);
    expect(jobs.cancels).toEqual([{ id: 'p3', by: ada, asAdmin: false }]);
    const again = await runCommand(req('cancel', ada), ctx);
    expect(again.text).toMatch(/Stopped “first” .* while it was drawing/);
  });

  it('lets the owner and admins cancel a given job, not other members', async () => {
    const { ctx, jobs } = setup();
    jobs.add(pendingJob(ada, 'queued', 10));
    const other = await runCommand(req('cancel', bob, { options: { job: 'p10' } }), ctx);
    expect(other.ok).toBe(false);
    expect(other.text).toMatch(/Only Ada or an admin may cancel/);
    expect(jobs.cancels).toHaveLength(0);
    const admin = await runCommand(req('cancel', mod, { options: { job: 'p10' } }), ctx);
    expect(admin.ok, admin.text).toBe(true);
    expect(jobs.cancels[0]).toMatchObject({ id: 'p10', asAdmin: true });
  });

  it('explains when there is nothing to cancel', async () => {
    const { ctx, jobs } = setup();
    expect((await runCommand(req('cancel', ada), ctx)).text).toMatch(/nothing queued or drawing/);
    expect((await runCommand(req('cancel', ada, { options: { job: 'nope' } }), ctx)).text).toMatch(/No job nope/);
    const done = jobs.add(doneJob(ada));
    expect((await runCommand(req('cancel', ada, { options: { job: done.id } }), ctx)).text).toMatch(/already done/);
  });
});

describe('delete', () => {
  it('hands the job to the adapter for the owner and admins only', async () => {
    const { ctx, jobs } = setup();
    const job = jobs.add(doneJob(ada));
    const action = { action: 'delete' as const, jobId: job.id };
    const other = await runCommand(press(bob, action), ctx);
    expect(other.ok).toBe(false);
    expect(other.deleteJob).toBeUndefined();
    for (const who of [ada, boss]) {
      const reply = await runCommand(press(who, action), ctx);
      expect(reply.ok).toBe(true);
      expect(reply.deleteJob?.id).toBe(job.id);
    }
  });

  it('"anyone" opens delete to everyone', async () => {
    const { ctx, jobs } = setup({ permissions: { delete: 'anyone' } });
    const job = jobs.add(doneJob(ada));
    expect((await runCommand(press(bob, { action: 'delete', jobId: job.id }), ctx)).deleteJob?.id).toBe(job.id);
  });
});

// ---- queue, help ------------------------------------------------------------------------------

describe('queue', () => {
  it("shows what is drawing, who waits, the member's own jobs, and cuts long lists", async () => {
    const { ctx, jobs } = setup();
    jobs.add(pendingJob(bob, 'running', 1, 'a lighthouse at dusk'));
    for (let i = 0; i < 12; i++) jobs.add(pendingJob(i === 1 ? ada : bob, 'queued', 10 + i, `prompt number ${i}`));
    const reply = await runCommand(req('queue', ada), ctx);
    expect(reply.visibility).toBe('private');
    const lines = reply.text.split('\n');
    expect(lines[0]).toBe('Drawing: “a lighthouse at dusk” for Bob · step 5/20');
    expect(lines[1]).toBe('Waiting (12):');
    expect(lines).toContain('#2 “prompt number 1” · Ada · about 1 min ← yours');
    expect(lines.filter((l) => l.startsWith('#'))).toHaveLength(10);
    expect(reply.text).toContain('…and 2 more.');
    expect(reply.text).toContain('You have 1 waiting; the next is #2');
  });

  it("shows others' prompts and names only for jobs posted where /queue is asked; private chats never; admins also get ids", async () => {
    const { ctx, jobs } = setup();
    const carl: Requester = { platform: 'telegram', userId: '4242', name: 'Carl', roles: [] };
    const elsewhere = (job: Job, where: Job['target']): Job => ({ ...job, target: where });
    jobs.add(elsewhere(pendingJob(carl, 'running', 1, 'my secret dm prompt'), { platform: 'telegram', chatId: '4242', handle: {} }));
    jobs.add(pendingJob(bob, 'queued', 2, 'a lighthouse in this channel'));
    jobs.add(elsewhere(pendingJob(bob, 'queued', 3, 'a prompt from another channel'), { platform: 'discord', chatId: 'other', handle: {} }));
    jobs.add(pendingJob(ada, 'queued', 4, 'my own'));

    const asked = await runCommand(req('queue', ada), ctx);
    expect(asked.text.split('\n')).toEqual([
      'Drawing: a member’s picture · step 5/20',
      'Waiting (3):',
      '#1 “a lighthouse in this channel” · Bob · about 40 s',
      '#2 a member’s picture · about 1 min',
      '#3 “my own” · Ada · about 2 min ← yours',
      'You have 1 waiting; the next is #3 (about 2 min).',
    ]);
    // An admin can act on every job (ids) but sees prompts under the same rule.
    const admin = (await runCommand(req('queue', boss), ctx)).text;
    expect(admin).toContain('Drawing: a member’s picture (job p1)');
    expect(admin).toContain('#2 a member’s picture (job p3)');
    expect(admin).not.toMatch(/secret|another channel|Carl/);
    // The owner sees their own private-chat job from anywhere.
    const own = await runCommand({ ...req('queue', carl), target: { platform: 'telegram', chatId: '4242', handle: {} } }, ctx);
    expect(own.text.split('\n')[0]).toBe('Drawing: “my secret dm prompt” for Carl · step 5/20 ← yours');
    expect(own.text).not.toContain('lighthouse');
  });

  it('says when the queue is empty', async () => {
    const { ctx } = setup();
    expect((await runCommand(req('queue', ada), ctx)).text).toMatch(/queue is empty/);
  });
});

describe('help', () => {
  it('lists the models, samplers, limits and buttons', async () => {
    const { ctx } = setup();
    const reply = await runCommand(req('help', ada), ctx);
    expect(reply.visibility).toBe('private');
    for (const s of SAMPLERS) expect(reply.text).toContain(s);
    expect(reply.text).toContain('• tiny (default, SD 1.x, 512×512, fp32, onnx)');
    expect(reply.text).toContain('• noenc (SD 1.x, 512×512, fp32, onnx, no upscale)');
    expect(reply.text).toContain(`max ${ctx.config.limits.maxSteps}`);
    expect(reply.text).toContain('🔁');
  });
});

// ---- settings ---------------------------------------------------------------------------------

describe('settings', () => {
  it('shows the club defaults, then saves, clamps and resets', async () => {
    const { ctx, settings } = setup();
    const show = await runCommand(req('settings', ada), ctx);
    expect(show.ok).toBe(true);
    expect(show.text).toContain(`steps: ${ctx.config.defaults.steps} (club default)`);
    expect(show.text).toContain('model: tiny (club default)');

    const set = (change: string) => runCommand(req('settings', ada, { options: { change } }), ctx);
    expect((await set('steps 30')).text).toContain('steps: 30 (yours)');
    expect((await set('aspect 3:2')).ok).toBe(true);
    expect((await set('negative blurry, text')).ok).toBe(true);
    expect((await set('sampler dpm++ 2m karras')).ok).toBe(true);
    expect((await set('images 2')).ok).toBe(true);
    expect((await set('model TINY')).ok).toBe(true);
    expect((await set('guidance 6')).ok).toBe(true);
    expect(await settings.get('discord', 'ada')).toEqual({
      steps: 30,
      aspect: '3:2',
      negativePrompt: 'blurry, text',
      sampler: 'DPM++ 2M Karras',
      images: 2,
      model: 'tiny',
      guidance: 6,
    });

    const clamped = await set('steps 500');
    expect(clamped.ok).toBe(true);
    expect(clamped.text).toContain(`steps 500 → ${ctx.config.limits.maxSteps}, this club's maximum`);
    expect((await settings.get('discord', 'ada')).steps).toBe(ctx.config.limits.maxSteps);

    await set('reset steps');
    const afterOne = await settings.get('discord', 'ada');
    expect(afterOne.steps).toBeUndefined();
    expect(afterOne.aspect).toBe('3:2');
    await set('reset');
    expect(await settings.get('discord', 'ada')).toEqual({});
  });

  it('takes several --flags at once and "none" for no negative prompt', async () => {
    const { ctx, settings } = setup();
    const reply = await runCommand(req('settings', ada, { via: 'text', text: '--steps 12 --ar 16:9 --no none' }), ctx);
    expect(reply.ok, reply.text).toBe(true);
    expect(await settings.get('discord', 'ada')).toEqual({ steps: 12, aspect: '16:9', negativePrompt: '' });
  });

  it('refuses nonsense with the allowed values and saves nothing', async () => {
    const { ctx, settings } = setup();
    const set = (change: string) => runCommand(req('settings', ada, { options: { change } }), ctx);
    const cases: [string, RegExp][] = [
      ['aspect banana', /1:1, 3:2/],
      ['aspect 9:1', /too extreme/],
      ['sampler plms', /Samplers: Euler, Euler a/],
      ['model sdxl', /Models: tiny, noenc/],
      ['steps many', /whole number from 1 to/],
      ['images 2.5', /whole number/],
      ['colour blue', /Unknown setting "colour"/],
      ['reset colour', /Unknown setting/],
      ['steps', /Which steps/],
      ['constructor 5', /Unknown setting "constructor"/],
      ['reset constructor', /Unknown setting "constructor"/],
      ['steps 0x10', /whole number from 1 to/],
      ['guidance 1e1', /a number from 0 to/],
      [';;;', /Nothing to change/],
    ];
    for (const [change, expected] of cases) {
      const reply = await set(change);
      expect(reply.ok, change).toBe(false);
      expect(reply.text, change).toMatch(expected);
    }
    expect(settings.saved.size).toBe(0);
  });
});

// ---- views ------------------------------------------------------------------------------------

describe('resultView', () => {
  it('captions the prompt, seeds, model and time, with U, V and 🔁 ℹ️ 🗑 buttons', () => {
    const { ctx } = setup();
    const job = doneJob(ada, { prompt: `a very long prompt ${'word '.repeat(100)}` });
    job.result!.truncation = { prompt: { kept: 'a very long prompt', dropped: 'word word' } };
    job.notes = ['steps 999 → 50'];
    const view = resultView(job, ctx.config);
    expect(view.caption).toMatch(/^“a very long prompt word/);
    expect(view.caption.split('\n')[0]!.length).toBeLessThanOrEqual(203);
    expect(view.caption).toContain('Seeds 1000 · 1001 · 1002 · 1003 · tiny · 12.3 s');
    expect(view.details).toEqual(['steps 999 → 50', expect.stringMatching(/left out: word word/)]);
    expect(view.buttons.map((row) => row.map((b) => b.label))).toEqual([
      ['U1', 'U2', 'U3', 'U4'],
      ['V1', 'V2', 'V3', 'V4'],
      ['🔁', 'ℹ️', '🗑'],
    ]);
    expect(view.buttons[0]![3]!.action).toEqual({ action: 'upscale', jobId: job.id, index: 3 });
    expect(view.buttons[1]![0]!.action).toEqual({ action: 'vary', jobId: job.id, index: 0 });
    for (const b of view.buttons.flat()) expect(Buffer.byteLength(encodeAction(b.action))).toBeLessThanOrEqual(64);
  });

  it('shows variation seeds, and no U/V rows on an upscale', () => {
    const { ctx } = setup();
    const vary = resultView(doneJob(ada, { variation: { seed: 50, strength: 0.15 } }), ctx.config);
    expect(vary.caption).toContain('Seed 1000 · variation seeds 50–53 at 0.15');
    const up = resultView(
      doneJob(ada, { count: 1, width: 1024, height: 1024, init: { jobId: 'abc', index: 1, strength: 0.35 } }, { kind: 'upscale' }),
      ctx.config,
    );
    expect(up.caption).toContain('2× upscale of picture 2 of job abc · 1024x1024');
    expect(up.buttons.map((r) => r.map((b) => b.action.action))).toEqual([['reroll', 'info', 'delete']]);
  });
});

describe('statusText', () => {
  it('words each event', () => {
    const job = doneJob(ada);
    expect(statusText({ type: 'queued', job, position: 3, etaSeconds: 41 })).toBe('Queued #3 · about 40 s');
    expect(statusText({ type: 'moved', job, position: 1, etaSeconds: 7 })).toBe('Queued #1 · about 7 s');
    expect(statusText({ type: 'resumed', job, position: 2, etaSeconds: 30 })).toBe('Back in the queue after a restart: #2 · about 30 s');
    expect(statusText({ type: 'started', job })).toBe('Drawing…');
    expect(statusText({ type: 'progress', job, step: 5, total: 20 })).toBe('Drawing… step 5/20');
    expect(statusText({ type: 'cancelled', job, by: 'Ada' })).toBe('Cancelled by Ada');
    expect(statusText({ type: 'failed', job, reason: 'the model could not be loaded' })).toBe('Failed: the model could not be loaded');
    expect(statusText({ type: 'done', job })).toBe('Done in 12.3 s');
    expect(statusText({ type: 'queued', job, position: 9, etaSeconds: 150 })).toBe('Queued #9 · about 3 min');
    // A first estimate says so; batches drawn one after another name their pictures.
    expect(statusText({ type: 'queued', job, position: 1, etaSeconds: 22, approximate: true })).toBe('Queued #1 · about 20 s, first estimate');
    expect(statusText({ type: 'progress', job, step: 5, total: 20, pictures: { first: 3, last: 4, count: 4 } })).toBe(
      'Drawing… step 5/20 · pictures 3–4 of 4',
    );
    expect(statusText({ type: 'resumed', job, position: 1, etaSeconds: 4, cause: 'engine-crash' })).toBe(
      'The picture engine crashed; trying again: #1 · about 4 s',
    );
  });
});

// ---- never throws -----------------------------------------------------------------------------

describe('runCommand', () => {
  it('turns any failure into a friendly private answer and logs the error', async () => {
    const { ctx, jobs, logLines } = setup();
    jobs.get = async () => {
      throw new Error('disk on fire');
    };
    jobs.submit = async () => {
      throw new Error('store unavailable');
    };
    const requests: CommandRequest[] = [
      press(ada, { action: 'reroll', jobId: 'abc' }),
      press(ada, { action: 'info', jobId: 'abc', index: 0 }),
      req('imagine', ada, { via: 'text', text: 'a fox' }),
    ];
    for (const r of requests) {
      const reply = await runCommand(r, ctx);
      expect(reply).toEqual({ ok: false, visibility: 'private', text: SOMETHING_WENT_WRONG });
    }
    const logged = logLines.map((l) => JSON.parse(l) as { msg: string; err?: { message: string }; command: string });
    expect(logged.map((l) => [l.command, l.err?.message])).toEqual([
      ['reroll', 'disk on fire'],
      ['info', 'disk on fire'],
      ['imagine', 'store unavailable'],
    ]);
  });

  it('survives a failing settings store and an unknown command', async () => {
    const { ctx } = setup();
    ctx.settings.get = async () => {
      throw new Error('settings gone');
    };
    expect((await runCommand(req('settings', ada), ctx)).text).toBe(SOMETHING_WENT_WRONG);
    const unknown = await runCommand({ ...req('help', ada), command: 'explode' as CommandName }, ctx);
    expect(unknown).toMatchObject({ ok: false, visibility: 'private' });
    expect(unknown.text).toMatch(/Unknown command/);
  });

  it('answers a button without data', async () => {
    const { ctx } = setup();
    const reply = await runCommand(req('reroll', ada, { via: 'button' }), ctx);
    expect(reply.ok).toBe(false);
    expect(reply.text).toMatch(/lost its data/);
  });

  it('isAdmin reads user ids and role ids', () => {
    const { ctx } = setup();
    expect([ada, boss, mod].map((r) => isAdmin(ctx.config, r))).toEqual([false, true, true]);
  });
});

// ---- the same buttons on the real stack (store, queue, engine on the tiny model) ----------------

describe('on the real job service and engine', () => {
  const member: Requester = { platform: 'telegram', userId: 'u1', name: 'Ada', roles: [] };
  const tgTarget = { platform: 'telegram' as const, chatId: 'c1', handle: {} };

  function finished(h: Harness, id: string): Promise<Job> {
    return new Promise((resolve, reject) => {
      const off = h.jobs.on((e) => {
        if (e.job.id !== id) return;
        if (e.type === 'done') {
          off();
          resolve(e.job);
        } else if (e.type === 'failed' || e.type === 'cancelled') {
          off();
          reject(new Error(`job ${id} ${e.type}`));
        }
      });
    });
  }

  async function queued(h: Harness, r: CommandRequest): Promise<Job> {
    const reply = await runCommand(r, h.commands);
    expect(reply.ok, reply.text).toBe(true);
    return finished(h, reply.queued!.job.id);
  }

  it('vary and upscale produce pictures, and info reproduces a variation pixel for pixel', async () => {
    const h = await createHarness();
    try {
      const base = { requester: member, target: tgTarget };
      const job = await queued(h, { ...base, command: 'imagine', via: 'text', text: 'a fox --seed 5 --n 4 --steps 3' });
      const varied = await queued(h, { ...base, command: 'vary', via: 'button', action: { action: 'vary', jobId: job.id, index: 2 } });
      expect(varied.result!.images.map((i) => i.seed)).toEqual([7, 7, 7, 7]);

      const up = await runCommand({ ...base, command: 'upscale', via: 'button', action: { action: 'upscale', jobId: varied.id, index: 1 } }, h.commands);
      expect(up.files?.[0]?.path).toBe(h.jobs.filePath(varied.result!.images[1]!.file));
      const upJob = await finished(h, up.queued!.job.id);
      const upMeta = await sharp(await readFile(h.jobs.filePath(upJob.result!.images[0]!.file))).metadata();
      expect([upMeta.width, upMeta.height]).toEqual([varied.spec.width * 2, varied.spec.height * 2]);

      const info = await runCommand({ ...base, command: 'info', via: 'button', action: { action: 'info', jobId: varied.id, index: 1 } }, h.commands);
      const again = await queued(h, { ...base, command: 'imagine', via: 'text', text: commandText(info) });
      const pixels = async (file: string) => sharp(await readFile(h.jobs.filePath(file))).raw().toBuffer();
      expect(Buffer.compare(await pixels(again.result!.images[0]!.file), await pixels(varied.result!.images[1]!.file))).toBe(0);
      expect(again.result!.images[0]!.infoText).toBe(varied.result!.images[1]!.infoText);
    } finally {
      await h.close();
    }
  });
});

describe('/img2img strength', () => {
  it('takes plain decimals and refuses what Number() would bend (0x10, a blank, a boolean), queueing nothing', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'img2img-strength-'));
    await mkdir(path.join(dir, 'uploads'));
    await writeFile(path.join(dir, 'uploads', 'abcdefabcdef.png'), 'not read here');
    const { ctx, jobs } = setup({ dataDir: dir });
    const run = (strength: string | number | boolean | undefined) =>
      runCommand(req('img2img', ada, { text: 'a fox', options: { init: 'abcdefabcdef', ...(strength !== undefined ? { strength } : {}) } }), ctx);
    for (const bad of ['0x10', ' ', 'Infinity', 'half', true, Number.NaN]) {
      const reply = await run(bad);
      expect(reply.ok, String(bad)).toBe(false);
      expect(reply.text, String(bad)).toMatch(/^Strength must be a number from 0.05 to 1/);
    }
    expect(jobs.submitted).toHaveLength(0);
    const strengths: number[] = [];
    for (const good of ['0,4', ' .3 ', 0.5, undefined, '7']) {
      const reply = await run(good);
      expect(reply.ok, String(good)).toBe(true);
      strengths.push(jobs.submitted.at(-1)!.spec.init!.strength);
    }
    expect(strengths).toEqual([0.4, 0.3, 0.5, 0.6, 1]);
  });
});

describe('demo model notice in the chats', () => {
  const NOTICE = 'demo model: small emoji-style pictures';
  const chat = (platform: 'discord' | 'telegram' | 'web', chatId: string) => ({ platform, chatId, handle: {} });

  it('the first /imagine queued from each chat carries it, in the answer and on the job; a refused one tells nobody; the web never', async () => {
    const { ctx, jobs } = setup();
    ctx.chatNotice = new ChatNotice(() => NOTICE);
    const draw = (target: ReturnType<typeof chat>) => runCommand(req('imagine', ada, { text: 'a fox', target }), ctx);

    jobs.refuseWith = 'The queue is full.';
    expect((await draw(chat('discord', 'c1'))).text).not.toContain(NOTICE);
    delete jobs.refuseWith;

    const first = await draw(chat('discord', 'c1'));
    expect(first.text).toContain(`Note: ${NOTICE}.`);
    expect(jobs.submitted.at(-1)!.notes).toContain(`Note: ${NOTICE}.`);
    expect((await draw(chat('discord', 'c1'))).text).not.toContain(NOTICE);
    expect(jobs.submitted.at(-1)!.notes).not.toContain(`Note: ${NOTICE}.`);
    expect((await draw(chat('telegram', 'c1'))).text).toContain(NOTICE);
    expect((await draw(chat('web', 'ada'))).text).not.toContain(NOTICE);
  });

  it('says nothing once a real model is installed, and forgets the oldest chats past its bound', () => {
    let notice: string | undefined = NOTICE;
    const notices = new ChatNotice(() => notice, 2);
    for (const id of ['a', 'b', 'c']) notices.markTold(chat('discord', id));
    expect(notices.pending(chat('discord', 'a'))).toBe(NOTICE);
    expect(notices.pending(chat('discord', 'c'))).toBeUndefined();
    notice = undefined;
    expect(notices.pending(chat('discord', 'a'))).toBeUndefined();
  });
});
