/**
 * The job service: intake (caps, idempotency, durable acknowledgement), the fair queue, the
 * engine run loop, result files, ETAs and events, recovery after a restart, retention, and a
 * graceful stop.
 *
 * Execution: p-queue with concurrency 1 (one GPU) runs the work; the FairQueue decides WHICH job
 * runs. Every queued job adds one p-queue task, and the task body pops whatever job is at the head
 * of the fair queue when it gets its turn — not necessarily "its" job. Why: p-queue priorities are
 * fixed when a task is added, while the fair order changes with every arrival and cancel. Keeping
 * the order in the pure FairQueue and using p-queue only as the single-slot runner gives both: a
 * tested fairness policy and p-queue's serialisation, pause() and drain. A cancelled job leaves
 * its task behind; that task finds the job gone (or pops the next one) — nothing is ever
 * clear()ed, whose waiting promises would never settle.
 *
 * Every state change is written to the store before its event is emitted, so an adapter never
 * tells a member something the store does not know.
 */
import { mkdir, open, readdir, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import sharp from 'sharp';
import {
  EngineError,
  type Engine,
  type GenerateRequest,
  type GenerateResult,
  type InitImage,
  type StepProgress,
} from '../../engine/types.js';
import type { Config } from '../config/schema.js';
import { makeGrid, pngWithParameters } from '../render/index.js';
import { cumulativeEtas, EtaModel, REFERENCE_UNET_PARAMETERS, stepsToRun, type JobEstimate } from './eta.js';
import { FairQueue } from './fair-queue.js';
import { newJobId } from './ids.js';
import type {
  CancelOutcome,
  Job,
  JobEvent,
  JobEventListener,
  JobImage,
  JobService,
  PictureRange,
  Platform,
  QueuePosition,
  QueueSnapshot,
  Requester,
  Store,
  SubmitInput,
  SubmitOutcome,
} from './types.js';

export interface JobServiceDeps {
  config: Config;
  store: Store;
  engine: Engine;
  log: Logger;
  /** Clock for timestamps, image folders and retention (tests inject one). */
  now?: () => number;
}

/** JobService plus hooks that main.ts does not need but tests and tools do. */
export interface JobServiceWithMaintenance extends JobService {
  /** Deletes finished jobs older than retention.days with their files; returns how many. */
  sweepExpired(): Promise<number>;
}

const DAY_MS = 86_400_000;
/** After the grace period the running job is aborted; this is how long it may take to stop. */
const ABORT_WAIT_MS = 10_000;
/** cancel() of a running job waits this long for the engine to stop before answering. */
const CANCEL_WAIT_MS = 5_000;
/** Queue movements within this window are announced together (see scheduleMoves). */
const MOVES_COALESCE_MS = 20;
/** The smallest UNet cost relative to SD 1.5 that first ETAs assume. */
const MIN_MODEL_SCALE = 0.005;
/** While a model is unmeasured, the running job's pace updates waiting ETAs every this many steps. */
const PACE_EVERY_STEPS = 4;
/** Preview images are shrunk to this long side before PNG encoding (chat thumbnails). */
const PREVIEW_SIDE = 256;

/** `/srv/bot/models/sd15/unet/model.onnx` → `…/sd15/unet/model.onnx`: enough to name the file. */
export function withoutServerPaths(text: string): string {
  return text.replace(/(?:\/[^/\s"'`()]+)+/g, (path) => {
    const parts = path.split('/').filter(Boolean);
    return parts.length > 3 ? `…/${parts.slice(-3).join('/')}` : path;
  });
}

const MESSAGES = {
  restarting: 'The bot is restarting — try again in a minute.',
  notSaved: 'Could not save your request — please try again.',
  resultNotSaved: 'Your picture was drawn but could not be saved — please try again.',
  engineFailed: 'The picture engine failed on this request; an admin has been notified.',
  initGone: 'The picture to start from is gone (it was deleted or has expired).',
  notYours: 'That job belongs to someone else — only they or an admin can cancel it.',
  memberCap: (cap: number) =>
    `You already have ${cap} ${cap === 1 ? 'picture' : 'pictures'} waiting — this club's limit per member. Cancel one with /cancel or wait.`,
  globalCap: (cap: number) => `The queue is full (${cap} jobs) — try again in a few minutes.`,
  crashed: (n: number) => `This request crashed the picture engine ${n} ${n === 1 ? 'time' : 'times'}; it was dropped.`,
  interrupted: (n: number) =>
    `The bot stopped unexpectedly ${n} times while drawing this request, so it was dropped in case it is the cause. Try again, perhaps smaller.`,
  unknownJob: (id: string) => `There is no job ${id}.`,
  alreadyOver: (job: Job) =>
    `That job is already ${job.status === 'done' || job.status === 'delivered' ? 'finished' : job.status}.`,
} as const;

/** An error whose message is meant for the member (anything else is logged and replaced). */
class MemberFacingError extends Error {}

interface RunningJob {
  job: Job;
  controller: AbortController;
  /** Steps done and to do over the whole job, all batches counted (for the ETA). */
  step: number;
  total: number;
  /** The last progress as a member counts it (see JobEvent 'progress'). */
  shown?: MemberProgress;
  /** Resolves when the run loop is completely done with this job. */
  settled: Promise<void>;
  cancelledBy?: string;
  /** Aborted by stop(): goes back to the queue, not to "cancelled". */
  shutdown?: boolean;
  /** stop() gave up waiting and wrote the job back itself; the run loop must not write again. */
  abandoned?: boolean;
}

interface MemberProgress {
  step: number;
  total: number;
  pictures?: PictureRange;
}

/** The engine counts steps over all batches of a job; a member counts the job's own steps. */
function memberProgress(progress: StepProgress): MemberProgress {
  const b = progress.batch;
  if (!b) return { step: progress.step, total: progress.total };
  const pictures = b.size < b.count ? { first: b.first + 1, last: b.first + b.size, count: b.count } : undefined;
  return { step: b.step, total: b.steps, ...(pictures ? { pictures } : {}) };
}

/** A QueuePosition's ETA fields: `approximate` only when it is. */
function etaOf(estimate: JobEstimate | undefined): Pick<QueuePosition, 'etaSeconds' | 'approximate'> {
  if (!estimate) return { etaSeconds: 0 };
  return { etaSeconds: Math.ceil(estimate.seconds - 1e-9), ...(estimate.approximate ? { approximate: true } : {}) };
}

function memberKeyOf(r: Pick<Requester, 'platform' | 'userId'>): string {
  return `${r.platform}:${r.userId}`;
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

/**
 * Freezes the parts of a job that never change after submit (what to draw, who asked, where to
 * answer, notes). Events and answers can then carry a cheap shallow copy — a queue move with
 * thousands of waiting jobs emits thousands of events — and a consumer that tries to edit, say,
 * `event.job.spec` gets a TypeError instead of silently changing a queued job.
 */
function freezeParts(job: Job): Job {
  deepFreeze(job.spec);
  deepFreeze(job.requester);
  deepFreeze(job.target);
  deepFreeze(job.notes);
  if (job.result) deepFreeze(job.result);
  if (job.delivery) deepFreeze(job.delivery);
  return job;
}

/** A snapshot of a live job for events and answers: top-level fields copied, the rest frozen. */
function view(job: Job): Job {
  return { ...job };
}

function isoDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function delay(ms: number): Promise<'timeout'> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), ms);
    t.unref?.();
  });
}

/** Every file a result points at: its pictures and, for several, the grid (paths relative to dataDir). */
function filesOf(result: { images: JobImage[]; grid?: string | undefined } | undefined): string[] {
  if (!result) return [];
  return [...result.images.map((i) => i.file), ...(result.grid ? [result.grid] : [])];
}

/** Writes a file and flushes it to disk: the job record that points at it is written next. */
async function writeDurably(file: string, data: Buffer): Promise<void> {
  const handle = await open(file, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function createJobService(deps: JobServiceDeps): JobServiceWithMaintenance {
  return new FairJobService(deps);
}

class FairJobService implements JobServiceWithMaintenance {
  private readonly config: Config;
  private readonly store: Store;
  private readonly engine: Engine;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly dataDir: string;

  private readonly runner = new PQueue({ concurrency: 1, autoStart: false });
  private readonly fair = new FairQueue();
  private readonly eta: EtaModel;
  /** Queued and running jobs (the store has the same; this is the working copy). */
  private readonly live = new Map<string, Job>();
  /** Estimated seconds per live job; cleared whenever the seconds-per-step figures change. */
  private readonly costs = new Map<string, JobEstimate>();
  private readonly listeners = new Set<JobEventListener>();
  /** Last position/ETA told to adapters per waiting job: `moved` only fires on a change. */
  private readonly published = new Map<string, QueuePosition>();
  /** Slots taken by submits that are still writing to the store (caps must count them). */
  private readonly reserved = new Map<string, number>();
  private reservedTotal = 0;
  private readonly inflightKeys = new Map<string, Promise<SubmitOutcome>>();

  private running: RunningJob | undefined;
  private started = false;
  private stopping = false;
  private movesScheduled = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;

  constructor(deps: JobServiceDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.engine = deps.engine;
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
    this.dataDir = path.resolve(deps.config.dataDir);
    const fixedPrior = deps.config.queue.initialSecondsPerStep;
    this.eta = new EtaModel({
      ...(fixedPrior !== undefined ? { fixedPrior } : {}),
      provider: () => this.engine.provider() ?? deps.config.engine.providers[0] ?? 'cpu',
    });
  }

  // ---- events --------------------------------------------------------------------------------

  on(listener: JobEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: JobEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.log.error({ err, jobId: event.job.id, event: event.type }, 'job event listener threw');
      }
    }
  }

  // ---- intake --------------------------------------------------------------------------------

  submit(input: SubmitInput): Promise<SubmitOutcome> {
    const key = input.idempotencyKey;
    if (!key) return this.submitOnce(input);
    // Two copies of one platform update arriving together must not both pass the store lookup.
    const pending = this.inflightKeys.get(key);
    if (pending) return pending.then((outcome) => (outcome.ok ? { ...outcome, duplicate: true } : outcome));
    const attempt = this.submitOnce(input).finally(() => this.inflightKeys.delete(key));
    this.inflightKeys.set(key, attempt);
    return attempt;
  }

  private async submitOnce(input: SubmitInput): Promise<SubmitOutcome> {
    if (this.stopping) return { ok: false, reason: MESSAGES.restarting };
    if (input.idempotencyKey) {
      let existing: Job | undefined;
      try {
        existing = await this.store.jobs.byIdempotencyKey(input.idempotencyKey);
      } catch (err) {
        this.log.error({ err }, 'idempotency lookup failed');
        return { ok: false, reason: MESSAGES.notSaved };
      }
      if (existing) {
        const where = this.position(existing.id) ?? { position: 0, etaSeconds: 0 };
        return { ok: true, job: view(this.live.get(existing.id) ?? existing), ...where, duplicate: true };
      }
    }

    const member = memberKeyOf(input.requester);
    const { perMemberPending, globalPending } = this.config.queue;
    if (this.pendingOfMember(member) >= perMemberPending) return { ok: false, reason: MESSAGES.memberCap(perMemberPending) };
    if (this.pendingTotal() >= globalPending) return { ok: false, reason: MESSAGES.globalCap(globalPending) };

    this.reserve(member, 1);
    let job: Job;
    try {
      const seq = await this.store.jobs.nextSeq();
      job = {
        id: await this.freshId(),
        seq,
        kind: input.kind,
        spec: clone(input.spec),
        requester: clone(input.requester),
        target: clone(input.target),
        tier: this.tierOf(input.requester),
        status: 'queued',
        createdAt: this.now(),
        attempts: 0,
        notes: [...input.notes],
      };
      if (input.parentId) job.parentId = input.parentId;
      if (input.idempotencyKey) job.idempotencyKey = input.idempotencyKey;
      freezeParts(job);
      // Saved before it is acknowledged: a member is never told "queued" about a job the store lacks.
      await this.store.jobs.put(job);
    } catch (err) {
      this.log.error({ err, member }, 'could not save a new job');
      return { ok: false, reason: MESSAGES.notSaved };
    } finally {
      this.reserve(member, -1);
    }
    if (this.stopping) {
      // stop() began while this job was being written: it stays queued in the store and resumes
      // after the restart, which is what the member is told.
      return { ok: true, job: view(job), position: this.fair.size + 1, etaSeconds: 0, duplicate: false };
    }

    this.enqueue(job);
    const where = this.position(job.id) ?? { position: 1, etaSeconds: 0 };
    this.published.set(job.id, where);
    this.jobLog(job).info({ position: where.position, etaSeconds: where.etaSeconds, kind: job.kind }, 'job queued');
    this.emit({ type: 'queued', job: view(job), ...where });
    this.scheduleMoves();
    // Added after the event: p-queue may start the task synchronously, and "queued" comes first.
    this.runner.add(() => this.runNext()).catch((err: unknown) => this.log.error({ err }, 'run loop task failed'));
    return { ok: true, job: view(job), ...where, duplicate: false };
  }

  private enqueue(job: Job): void {
    freezeParts(job);
    this.live.set(job.id, job);
    this.fair.add({ jobId: job.id, memberKey: memberKeyOf(job.requester), weight: this.weightOf(job.tier), seq: job.seq });
  }

  private reserve(member: string, delta: number): void {
    const next = (this.reserved.get(member) ?? 0) + delta;
    if (next > 0) this.reserved.set(member, next);
    else this.reserved.delete(member);
    this.reservedTotal += delta;
  }

  private pendingOfMember(member: string): number {
    const running = this.running && memberKeyOf(this.running.job.requester) === member ? 1 : 0;
    return this.fair.pendingOf(member) + running + (this.reserved.get(member) ?? 0);
  }

  private pendingTotal(): number {
    return this.fair.size + (this.running ? 1 : 0) + this.reservedTotal;
  }

  private async freshId(): Promise<string> {
    for (;;) {
      const id = newJobId();
      if (!this.live.has(id) && !(await this.store.jobs.get(id))) return id;
    }
  }

  /** Tier index (1-based into config.queue.tiers; 0 = default). Highest weight wins. */
  private tierOf(requester: Requester): number {
    let best = 0;
    let bestWeight = 1;
    this.config.queue.tiers.forEach((tier, i) => {
      const member =
        tier.users.includes(requester.userId) || tier.roles.some((role) => requester.roles.includes(role));
      if (member && tier.weight > bestWeight) {
        best = i + 1;
        bestWeight = tier.weight;
      }
    });
    return best;
  }

  private weightOf(tier: number): number {
    // A tier removed from the config since the job was queued counts as normal.
    return tier > 0 ? (this.config.queue.tiers[tier - 1]?.weight ?? 1) : 1;
  }

  // ---- positions and ETAs ----------------------------------------------------------------------

  private costOf(job: Job): JobEstimate {
    let estimate = this.costs.get(job.id);
    if (estimate === undefined) {
      estimate = this.eta.job(job.spec);
      this.costs.set(job.id, estimate);
    }
    return estimate;
  }

  private runningRemaining(): JobEstimate {
    const r = this.running;
    if (!r) return { seconds: 0, approximate: false };
    const seconds = this.eta.remainingSeconds(r.job.spec, r.step, r.total || stepsToRun(r.job.spec));
    return { seconds, approximate: !this.eta.isMeasured(r.job.spec.model) };
  }

  /** Waiting jobs in run order with their positions and ETAs. */
  private waitingList(): ({ job: Job } & QueuePosition)[] {
    const jobs: Job[] = [];
    this.fair.forEach((entry) => {
      const job = this.live.get(entry.jobId);
      if (job) jobs.push(job);
    });
    const etas = cumulativeEtas(
      this.runningRemaining(),
      jobs.map((j) => this.costOf(j)),
    );
    return jobs.map((job, i) => ({ job, position: i + 1, ...etaOf(etas[i]) }));
  }

  position(jobId: string): QueuePosition | undefined {
    if (this.running?.job.id === jobId) {
      const left = this.runningRemaining();
      return { position: 0, ...etaOf({ ...left, seconds: Math.ceil(left.seconds) }) };
    }
    const place = this.fair.positionOf(jobId);
    if (place === undefined) return undefined;
    // Jobs ahead plus the job itself (the first `place` entries).
    const upTo: JobEstimate[] = [];
    this.fair.forEach((entry) => {
      const job = this.live.get(entry.jobId);
      if (job) upTo.push(this.costOf(job));
    }, place);
    const etas = cumulativeEtas(this.runningRemaining(), upTo);
    return { position: place, ...etaOf(etas[etas.length - 1] ?? this.runningRemaining()) };
  }

  snapshot(): QueueSnapshot {
    const r = this.running;
    const waiting = this.waitingList().map((w) => ({ ...w, job: view(w.job) }));
    if (!r) return { waiting };
    const shown = r.shown ?? { step: 0, total: stepsToRun(r.job.spec) };
    return { running: { job: view(r.job), ...shown }, waiting };
  }

  /**
   * Coalesces queue movements into one pass of `moved` events. The short window also swallows the
   * gap between one job's end and the next one's start, where every ETA would dip by the
   * finished job's time only to come back a moment later.
   */
  private scheduleMoves(): void {
    if (this.movesScheduled) return;
    this.movesScheduled = true;
    const timer = setTimeout(() => {
      this.movesScheduled = false;
      this.publishMoves();
    }, MOVES_COALESCE_MS);
    timer.unref?.();
  }

  private publishMoves(): void {
    const waiting = this.waitingList();
    const still = new Set<string>();
    for (const w of waiting) {
      still.add(w.job.id);
      const before = this.published.get(w.job.id);
      if (before && before.position === w.position && before.etaSeconds === w.etaSeconds && before.approximate === w.approximate) continue;
      const { job, ...where } = w;
      this.published.set(job.id, where);
      // The first number a job gets is announced by `queued`/`resumed`, not `moved`.
      if (before) this.emit({ type: 'moved', job: view(job), ...where });
    }
    for (const id of this.published.keys()) if (!still.has(id)) this.published.delete(id);
  }

  // ---- the run loop ----------------------------------------------------------------------------

  /** One p-queue task: runs whatever job the fair queue says is next. */
  private async runNext(): Promise<void> {
    if (this.stopping) return;
    const entry = this.fair.next();
    if (!entry) return;
    const job = this.live.get(entry.jobId);
    if (!job) return;
    await this.execute(job);
  }

  private async execute(job: Job): Promise<void> {
    const log = this.jobLog(job);
    let release: () => void = () => undefined;
    const settled = new Promise<void>((resolve) => {
      release = resolve;
    });
    const run: RunningJob = { job, controller: new AbortController(), step: 0, total: stepsToRun(job.spec), settled };
    this.running = run;
    this.published.delete(job.id);
    try {
      job.status = 'running';
      job.startedAt = this.now();
      try {
        await this.store.jobs.put(job);
      } catch (err) {
        log.error({ err }, 'could not record the start of a job');
        await this.finishFailed(run, MESSAGES.notSaved);
        return;
      }
      log.info({ crashes: job.attempts, interruptions: job.interruptions ?? 0 }, 'job started');
      this.emit({ type: 'started', job: view(job) });
      this.scheduleMoves();
      await this.render(run);
    } finally {
      // A job put back after an engine crash is waiting again and stays live.
      if (!this.fair.has(job.id)) {
        this.live.delete(job.id);
        this.costs.delete(job.id);
      }
      if (this.running === run) this.running = undefined;
      this.scheduleMoves();
      release();
    }
  }

  private async render(run: RunningJob): Promise<void> {
    const { job } = run;
    const log = this.jobLog(job);
    const clock = performance.now();
    // Progress events go out in step order even when preview encoding is slow.
    let progressChain: Promise<void> = Promise.resolve();
    let paceFrom: { step: number; at: number } | undefined;
    const onStep = (progress: StepProgress) => {
      run.step = progress.step;
      run.total = progress.total;
      run.shown = memberProgress(progress);
      // Until a model has finished a job, the steps it is drawing now beat any prior for the
      // jobs waiting behind it (measured from the first step: model loading is over by then).
      if (!this.eta.isMeasured(job.spec.model)) {
        const at = performance.now();
        if (!paceFrom) paceFrom = { step: progress.step, at };
        else if ((progress.step - paceFrom.step) % PACE_EVERY_STEPS === 0) {
          const secondsPerStep = (at - paceFrom.at) / 1000 / (progress.step - paceFrom.step);
          this.eta.observePace(job.spec, secondsPerStep, progress.batch?.size ?? job.spec.count);
          this.costs.clear();
          this.scheduleMoves();
        }
      }
      progressChain = progressChain.then(() => this.emitProgress(run, progress)).catch((err: unknown) => {
        log.warn({ err }, 'could not encode a step preview');
      });
    };

    let result: GenerateResult;
    let images: JobImage[];
    let grid: string | undefined;
    try {
      const request = await this.requestFor(job);
      result = await this.engine.generate(request, { signal: run.controller.signal, onStep });
      await progressChain;
      // A result that arrives despite a stop() abort is kept (finished work is never thrown
      // away); one that arrives despite a member's cancel is not.
      if (run.cancelledBy !== undefined) throw new EngineError('cancelled', 'cancelled');
      ({ images, grid } = await this.saveImages(job, result));
    } catch (err) {
      await progressChain;
      await this.handleRunError(run, err);
      return;
    }
    if (run.abandoned) return;
    if (run.cancelledBy !== undefined) {
      // Cancelled while the files were being written: honour it, and leave no orphan files.
      await Promise.all(filesOf({ images, grid }).map((f) => rm(this.filePath(f), { force: true })));
      await this.handleRunError(run, new EngineError('cancelled', 'cancelled'));
      return;
    }

    const durationMs = Math.round(performance.now() - clock);
    this.eta.record({ ...job.spec, count: images.length }, durationMs, result.timing.stepsRun || stepsToRun(job.spec));
    this.costs.clear();
    job.status = 'done';
    job.finishedAt = this.now();
    job.result = deepFreeze({
      images,
      ...(grid ? { grid } : {}),
      model: result.model,
      provider: result.provider,
      durationMs,
      truncation: result.truncation,
    });
    try {
      await this.store.jobs.put(job);
    } catch (err) {
      // The pictures exist but the record still says running, so nothing can deliver them now.
      // The member hears so (never a status left "drawing"); if the store comes back, the job
      // runs again after a restart.
      log.error({ err }, 'could not record a finished job');
      this.emit({ type: 'failed', job: view({ ...job, status: 'failed', error: MESSAGES.resultNotSaved }), reason: MESSAGES.resultNotSaved });
      return;
    }
    log.info({ durationMs, images: images.length, provider: result.provider }, 'job done');
    this.emit({ type: 'done', job: view(job) });
  }

  private async emitProgress(run: RunningJob, progress: StepProgress): Promise<void> {
    if (this.running !== run) return;
    let preview: { png: Buffer; width: number; height: number } | undefined;
    if (progress.preview) {
      const { rgb, width, height } = progress.preview;
      const scale = Math.min(1, PREVIEW_SIDE / Math.max(width, height));
      const w = Math.max(1, Math.round(width * scale));
      const h = Math.max(1, Math.round(height * scale));
      const png = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width, height, channels: 3 } })
        .resize(w, h)
        .png({ compressionLevel: 3 })
        .toBuffer();
      preview = { png, width: w, height: h };
    }
    if (this.running !== run) return;
    this.emit({ type: 'progress', job: view(run.job), ...memberProgress(progress), ...(preview ? { preview } : {}) });
  }

  private async requestFor(job: Job): Promise<GenerateRequest> {
    const s = job.spec;
    const request: GenerateRequest = {
      model: s.model,
      prompt: s.prompt,
      negativePrompt: s.negativePrompt,
      width: s.width,
      height: s.height,
      steps: s.steps,
      guidance: s.guidance,
      sampler: s.sampler,
      seed: s.seed,
      count: s.count,
      previews: this.config.engine.previews,
    };
    if (s.variation) request.variation = { ...s.variation };
    if (s.init) request.init = await this.loadInitImage(job);
    return request;
  }

  /** The stored picture an img2img job starts from, resized to the job's size as packed RGB. */
  private async loadInitImage(job: Job): Promise<InitImage> {
    const init = job.spec.init!;
    const parent = init.file ? undefined : (this.live.get(init.jobId) ?? (await this.store.jobs.get(init.jobId)));
    const picture = init.file ? { file: init.file } : parent?.result?.images[init.index];
    if (!picture) throw new MemberFacingError(MESSAGES.initGone);
    let rgb: Buffer;
    try {
      rgb = await sharp(this.filePath(picture.file))
        .removeAlpha()
        .toColourspace('srgb')
        // An upload has its own aspect: crop it to the job's (a job's own picture already fits).
        .resize(job.spec.width, job.spec.height, { fit: init.file ? 'cover' : 'fill' })
        .raw()
        .toBuffer();
    } catch (err) {
      this.jobLog(job).warn({ err, file: picture.file }, 'init image unreadable');
      throw new MemberFacingError(MESSAGES.initGone);
    }
    return { rgb: new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength), width: job.spec.width, height: job.spec.height, strength: init.strength };
  }

  /** Writes every picture (PNG + parameters) and, for several, the grid; paths relative to dataDir. */
  private async saveImages(job: Job, result: GenerateResult): Promise<{ images: JobImage[]; grid?: string }> {
    const folder = path.posix.join('images', isoDay(this.now()));
    await mkdir(path.join(this.dataDir, folder), { recursive: true });
    const images: JobImage[] = [];
    const pngs: Buffer[] = [];
    for (const [i, image] of result.images.entries()) {
      const png = await pngWithParameters(image.rgb, image.width, image.height, image.infoText);
      const file = path.posix.join(folder, `${job.id}-${i}.png`);
      await writeDurably(path.join(this.dataDir, file), png);
      pngs.push(png);
      images.push({ file, seed: image.seed, width: image.width, height: image.height, infoText: image.infoText });
    }
    if (images.length === 0) throw new Error('the engine returned no pictures');
    if (pngs.length === 1) return { images };
    const gridFile = path.posix.join(folder, `${job.id}-grid.png`);
    const { png } = await makeGrid(pngs);
    await writeDurably(path.join(this.dataDir, gridFile), png);
    return { images, grid: gridFile };
  }

  private async handleRunError(run: RunningJob, err: unknown): Promise<void> {
    const { job } = run;
    const log = this.jobLog(job);
    if (run.abandoned) return;
    if (run.shutdown) {
      await this.putBack(run);
      return;
    }
    if (run.cancelledBy !== undefined) {
      job.status = 'cancelled';
      job.cancelledBy = run.cancelledBy;
      job.finishedAt = this.now();
      try {
        await this.store.jobs.put(job);
      } catch (storeErr) {
        log.error({ err: storeErr }, 'could not record a cancelled job');
      }
      log.info({ by: run.cancelledBy }, 'running job cancelled');
      this.emit({ type: 'cancelled', job: view(job), by: run.cancelledBy });
      return;
    }
    if (err instanceof EngineError && err.code === 'worker_crashed') {
      await this.afterWorkerCrash(run, err);
      return;
    }
    let reason: string;
    if (err instanceof MemberFacingError) {
      reason = err.message;
      log.warn({ reason }, 'job failed');
    } else if (err instanceof EngineError && err.code === 'bad_request') {
      reason = err.message;
      log.warn({ code: err.code, reason }, 'engine refused the job');
    } else if (err instanceof EngineError && err.code === 'model') {
      // The member learns which part of the model is wrong; where it lives on the server stays in the log.
      reason = withoutServerPaths(err.message);
      log.error({ code: err.code, detail: err.message }, 'the model could not be used');
    } else {
      reason = MESSAGES.engineFailed;
      log.error({ err, detail: errorMessage(err) }, 'job failed in the engine or while saving');
    }
    await this.finishFailed(run, reason);
  }

  /**
   * The engine worker died while drawing this job: the one case that counts against the request.
   * Below queue.maxAttempts the job waits again in its old place (the engine starts a fresh
   * worker on the next call); at the limit it is failed so it cannot crash the engine forever.
   */
  private async afterWorkerCrash(run: RunningJob, err: EngineError): Promise<void> {
    const { job } = run;
    const log = this.jobLog(job);
    job.attempts += 1;
    if (job.attempts >= this.config.queue.maxAttempts) {
      log.error({ crashes: job.attempts, detail: err.message }, 'job dropped: it crashed the engine worker repeatedly');
      await this.finishFailed(run, MESSAGES.crashed(job.attempts));
      return;
    }
    job.status = 'queued';
    delete job.startedAt;
    try {
      await this.store.jobs.put(job);
    } catch (storeErr) {
      log.error({ err: storeErr }, 'could not record an engine crash');
      await this.finishFailed(run, MESSAGES.engineFailed);
      return;
    }
    log.warn({ crashes: job.attempts, detail: err.message }, 'the engine worker crashed on this job; it waits for another try');
    // No longer the running job, so positions and caps see it as waiting.
    if (this.running === run) this.running = undefined;
    this.enqueue(job);
    const where = this.position(job.id) ?? { position: 1, etaSeconds: 0 };
    this.published.set(job.id, where);
    this.emit({ type: 'resumed', job: view(job), ...where, cause: 'engine-crash' });
    this.runner.add(() => this.runNext()).catch((e: unknown) => this.log.error({ err: e }, 'run loop task failed'));
  }

  private async finishFailed(run: RunningJob, reason: string): Promise<void> {
    const { job } = run;
    job.status = 'failed';
    job.error = reason;
    job.finishedAt = this.now();
    try {
      await this.store.jobs.put(job);
    } catch (err) {
      this.jobLog(job).error({ err }, 'could not record a failed job');
    }
    this.emit({ type: 'failed', job: view(job), reason });
  }

  /** A job interrupted by stop() goes back to "queued"; a planned restart is not the request's fault. */
  private async putBack(run: RunningJob): Promise<void> {
    const { job } = run;
    job.status = 'queued';
    delete job.startedAt;
    try {
      await this.store.jobs.put(job);
      this.jobLog(job).info('running job put back in the queue for the restart');
    } catch (err) {
      this.jobLog(job).error({ err }, 'could not put the running job back; it resumes as interrupted');
    }
    // The adapters are still up: the member's "Drawing…" turns into a truthful waiting note.
    this.emit({ type: 'resumed', job: view(job), position: 0, etaSeconds: 0, cause: 'shutdown' });
  }

  // ---- cancel ----------------------------------------------------------------------------------

  async cancel(jobId: string, by: Requester, asAdmin: boolean): Promise<CancelOutcome> {
    const job = this.live.get(jobId) ?? (await this.store.jobs.get(jobId).catch(() => undefined));
    if (!job) return { ok: false, reason: MESSAGES.unknownJob(jobId) };
    const owner = job.requester.platform === by.platform && job.requester.userId === by.userId;
    if (!owner && !asAdmin) return { ok: false, reason: MESSAGES.notYours };
    const who = by.name || by.userId;

    const run = this.running;
    if (run && run.job.id === jobId) {
      if (run.cancelledBy === undefined) {
        run.cancelledBy = who;
        run.controller.abort(new EngineError('cancelled', 'cancelled'));
      }
      await Promise.race([run.settled, delay(CANCEL_WAIT_MS)]);
      return { ok: true, job: view(run.job), wasRunning: true };
    }

    if (job.status === 'queued' && this.fair.has(jobId)) {
      const entry = this.fair.remove(jobId)!;
      this.live.delete(jobId);
      this.costs.delete(jobId);
      this.published.delete(jobId);
      const before = clone(job);
      job.status = 'cancelled';
      job.cancelledBy = who;
      job.finishedAt = this.now();
      try {
        await this.store.jobs.put(job);
      } catch (err) {
        this.jobLog(job).error({ err }, 'could not record a cancel; the job stays queued');
        Object.assign(job, before);
        delete job.cancelledBy;
        delete job.finishedAt;
        freezeParts(job);
        this.live.set(jobId, job);
        this.fair.add(entry);
        return { ok: false, reason: 'Could not cancel right now — please try again.' };
      }
      this.jobLog(job).info({ by: who }, 'queued job cancelled');
      this.emit({ type: 'cancelled', job: view(job), by: who });
      this.scheduleMoves();
      return { ok: true, job: view(job), wasRunning: false };
    }
    if (job.status === 'queued') {
      // Stored as queued but not in this process's queue: submitted while the bot was stopping,
      // or before start(). Cancelling it in the store is enough; it will never be picked up.
      job.status = 'cancelled';
      job.cancelledBy = who;
      job.finishedAt = this.now();
      try {
        await this.store.jobs.put(job);
      } catch (err) {
        this.jobLog(job).error({ err }, 'could not record a cancel');
        return { ok: false, reason: 'Could not cancel right now — please try again.' };
      }
      this.emit({ type: 'cancelled', job: view(job), by: who });
      return { ok: true, job: view(job), wasRunning: false };
    }
    if (job.status === 'running') return { ok: false, reason: MESSAGES.restarting };
    return { ok: false, reason: MESSAGES.alreadyOver(job) };
  }

  // ---- lookups and delivery --------------------------------------------------------------------

  async get(jobId: string): Promise<Job | undefined> {
    const live = this.live.get(jobId);
    if (live) return view(live);
    return this.store.jobs.get(jobId);
  }

  async markDelivered(jobId: string, ref?: Record<string, string>): Promise<void> {
    const job = await this.store.jobs.get(jobId);
    if (!job) {
      this.log.warn({ jobId }, 'markDelivered: no such job');
      return;
    }
    if (job.status === 'delivered') return;
    if (job.status === 'done') job.status = 'delivered';
    job.delivery = { at: this.now(), ...(ref ? { ref: { ...ref } } : {}) };
    await this.store.jobs.put(job);
    this.jobLog(job).info({ ref }, 'job delivered');
  }

  async markUndeliverable(jobId: string, reason: string): Promise<void> {
    const job = await this.store.jobs.get(jobId);
    if (!job) return;
    // The status stays "done" (the pictures exist); the delivery note takes it off pendingDeliveries.
    job.delivery = { at: this.now(), undeliverable: reason };
    await this.store.jobs.put(job);
    this.jobLog(job).warn({ reason }, 'job undeliverable');
    this.emit({ type: 'undeliverable', job: view(job), reason });
  }

  findByMessage(platform: Platform, chatId: string, messageId: string): Promise<Job | undefined> {
    return this.store.jobs.byMessage(platform, chatId, messageId);
  }

  async pendingDeliveries(platform: Platform): Promise<Job[]> {
    const active = await this.store.jobs.active();
    return active.filter((j) => j.status === 'done' && !j.delivery && j.target.platform === platform);
  }

  filePath(relative: string): string {
    const full = path.resolve(this.dataDir, relative);
    const inside = path.relative(this.dataDir, full);
    if (!inside || inside.startsWith('..') || path.isAbsolute(inside)) {
      throw new Error(`refusing a path outside the data directory: ${relative}`);
    }
    return full;
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.loadModelScales();
    const active = await this.store.jobs.active();
    const resumed: Job[] = [];
    for (const stored of active) {
      if (this.live.has(stored.id)) continue;
      if (stored.status === 'done') continue; // delivered again by its adapter, never rendered again
      const job = stored;
      const log = this.jobLog(job);
      if (job.status === 'running') {
        // The process died while this job was drawing: a kill or a power cut is not the
        // request's fault, but a native engine crash that takes the whole process down looks
        // the same from here. So these get their own, higher bound (queue.maxInterruptions).
        job.interruptions = (job.interruptions ?? 0) + 1;
        if (job.interruptions >= this.config.queue.maxInterruptions) {
          const reason = MESSAGES.interrupted(job.interruptions);
          job.status = 'failed';
          job.error = reason;
          job.finishedAt = this.now();
          await this.store.jobs.put(job);
          log.warn({ interruptions: job.interruptions }, 'job dropped: the process died while drawing it too often');
          this.emit({ type: 'failed', job: view(job), reason });
          continue;
        }
        job.status = 'queued';
        delete job.startedAt;
        await this.store.jobs.put(job);
      }
      this.enqueue(job);
      resumed.push(job);
    }
    for (const job of resumed) {
      const where = this.position(job.id) ?? { position: 0, etaSeconds: 0 };
      this.published.set(job.id, where);
      this.jobLog(job).info({ ...where, crashes: job.attempts, interruptions: job.interruptions ?? 0 }, 'job resumed after restart');
      this.emit({ type: 'resumed', job: view(job), ...where });
    }
    for (let i = 0; i < resumed.length; i++) {
      this.runner.add(() => this.runNext()).catch((err: unknown) => this.log.error({ err }, 'run loop task failed'));
    }
    if (resumed.length > 0 || active.length > 0) {
      this.log.info({ resumed: resumed.length, undelivered: active.filter((j) => j.status === 'done').length }, 'queue recovered');
    }

    await this.sweepExpired().catch((err: unknown) => this.log.error({ err }, 'retention sweep failed'));
    if (this.config.retention.days > 0) {
      this.sweepTimer = setInterval(() => {
        this.sweepExpired().catch((err: unknown) => this.log.error({ err }, 'retention sweep failed'));
      }, this.config.retention.sweepMinutes * 60_000);
      this.sweepTimer.unref();
    }
    if (!this.stopping) this.runner.start();
  }

  /**
   * First-estimate ETAs scale with each model's UNet size (its weight files' bytes over the bytes
   * per weight): a tiny demo model and SDXL differ by a factor of thousands.
   */
  private async loadModelScales(): Promise<void> {
    try {
      const { models } = await this.engine.scanModels();
      for (const model of models) {
        const unet = path.join(model.dir, 'unet');
        const files = await readdir(unet).catch(() => [] as string[]);
        let bytes = 0;
        for (const file of files) bytes += (await stat(path.join(unet, file)).catch(() => undefined))?.size ?? 0;
        // A per-step floor: even a tiny model pays for the loop and the sampler.
        const scale = Math.max(MIN_MODEL_SCALE, bytes / (model.dtype === 'float16' ? 2 : 4) / REFERENCE_UNET_PARAMETERS);
        if (bytes > 0) this.eta.setModelScale(model.name, scale);
      }
    } catch (err) {
      this.log.warn({ err }, 'could not size the models for first ETAs; using typical figures');
    }
  }

  async stop(graceMs: number): Promise<void> {
    if (this.stopping) {
      await this.running?.settled;
      return;
    }
    this.stopping = true;
    this.runner.pause();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.sweeping?.catch(() => undefined);
    const run = this.running;
    if (!run) return;
    const finished = graceMs > 0 ? await Promise.race([run.settled.then(() => 'done' as const), delay(graceMs)]) : 'timeout';
    if (finished === 'done') return;
    run.shutdown = true;
    run.controller.abort(new EngineError('cancelled', 'the bot is restarting'));
    const stopped = await Promise.race([run.settled.then(() => 'done' as const), delay(ABORT_WAIT_MS)]);
    if (stopped === 'done') return;
    // The engine did not stop in time: write the job back ourselves and ignore what it does next.
    run.abandoned = true;
    this.jobLog(run.job).warn('the engine did not stop within the abort wait; putting the job back anyway');
    await this.putBack(run);
  }

  sweepExpired(): Promise<number> {
    this.sweeping ??= this.sweepOnce().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private async sweepOnce(): Promise<number> {
    const days = this.config.retention.days;
    if (days <= 0) return 0;
    const expired = await this.store.jobs.finishedBefore(this.now() - days * DAY_MS);
    let removed = 0;
    for (const job of expired) {
      // Files first: if we stop halfway, the record is still there and the next sweep retries.
      for (const file of filesOf(job.result)) {
        try {
          const full = this.filePath(file);
          await rm(full, { force: true });
          await rmdir(path.dirname(full)).catch(() => undefined); // only succeeds once the day's folder is empty
        } catch (err) {
          this.jobLog(job).warn({ err, file }, 'could not delete an expired file');
        }
      }
      await this.store.jobs.delete(job.id);
      removed += 1;
    }
    if (removed > 0) this.log.info({ removed, days }, 'retention: expired jobs deleted');
    return removed;
  }

  private jobLog(job: Job): Logger {
    return this.log.child({ jobId: job.id, platform: job.requester.platform, memberId: job.requester.userId });
  }
}
