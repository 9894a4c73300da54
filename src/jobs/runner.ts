/**
 * Execution: takes the job the schedule says is next, has an engine draw it, saves the pictures
 * and records how it ended.
 *
 * p-queue runs the work with one slot per engine (one for the local engine worker, one per idle
 * remote worker with Redis); the FairQueue decides WHICH job runs. Every queued job adds one
 * p-queue task, and the task body pops whatever job is at the head of the fair queue when it gets
 * its turn — not necessarily "its" job. Why: p-queue priorities are fixed when a task is added,
 * while the fair order changes with every arrival and cancel. Keeping the order in the pure
 * FairQueue and using p-queue only as the slot runner gives both: a tested fairness policy and
 * p-queue's serialisation, pause() and drain. A cancelled job leaves its task behind; that task
 * finds the job gone (or pops the next one) — nothing is ever clear()ed, whose waiting promises
 * would never settle.
 *
 * Every state change is written to the store before its event is emitted, so an adapter never
 * tells a member something the store does not know.
 */
import { performance } from 'node:perf_hooks';
import PQueue from 'p-queue';
import {
  EngineError,
  type GenerateRequest,
  type GenerateResult,
  type InitImage,
  type ModelStage,
  type StepProgress,
} from '../../engine/types.js';
import { rgbToPng } from '../render/index.js';
import { jobLog, type JobsContext } from './context.js';
import { BackendUnavailableError, SHUTDOWN_REASON, type Drawer } from './drawer.js';
import { stepsToRun } from './eta.js';
import { deepFreeze, delay, errorMessage, view } from './job-copies.js';
import { MemberFacingError, MESSAGES, withoutServerPaths } from './messages.js';
import { filesOf } from './result-files.js';
import type { MemberProgress, RunningJob } from './scheduling.js';
import type { Job, JobImage } from './types.js';

/** After the grace period the running job is aborted; this is how long it may take to stop. */
const ABORT_WAIT_MS = 10_000;
/** cancel() of a running job waits this long for the engine to stop before answering. */
const CANCEL_WAIT_MS = 5_000;
/** While a model is unmeasured, the running job's pace updates waiting ETAs every this many steps. */
const PACE_EVERY_STEPS = 4;
/** While the drawing service is away, a job is tried again after this pause. */
const BACKEND_RETRY_MS = 2_000;
/** While no free engine worker has the model of any waiting job, the run loop looks again after this pause. */
const CHOOSE_RETRY_MS = 250;
/** Preview images are shrunk to this long side before PNG encoding (chat thumbnails). */
const PREVIEW_SIDE = 256;

/** The engine counts steps over all batches of a job; a member counts the job's own steps. */
function memberProgress(progress: StepProgress): MemberProgress {
  const b = progress.batch;
  if (!b) return { step: progress.step, total: progress.total };
  const pictures = b.size < b.count ? { first: b.first + 1, last: b.first + b.size, count: b.count } : undefined;
  return { step: b.step, total: b.steps, ...(pictures ? { pictures } : {}) };
}

export class Runner {
  private readonly queue: PQueue;
  private stopping = false;

  constructor(
    private readonly ctx: JobsContext,
    private readonly drawer: Drawer,
    slots = 1,
  ) {
    this.queue = new PQueue({ concurrency: slots, autoStart: false });
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  /** False while the drawing service cannot be reached. */
  get isAvailable(): boolean {
    return this.drawer.available?.() ?? true;
  }

  /** How many jobs may draw at once (remote workers join and leave). */
  setSlots(slots: number): void {
    this.queue.concurrency = Math.max(1, slots);
  }

  /** One more turn of the run loop: call once per job that joined the queue. */
  kick(): void {
    this.queue.add(() => this.runNext()).catch((err: unknown) => this.ctx.log.error({ err }, 'run loop task failed'));
  }

  start(): void {
    if (!this.stopping) this.queue.start();
  }

  /** Cancels a running job and waits (a while) for the engine to stop. */
  async cancel(run: RunningJob, who: string): Promise<void> {
    if (run.cancelledBy === undefined) {
      run.cancelledBy = who;
      run.controller.abort(new EngineError('cancelled', 'cancelled'));
    }
    await Promise.race([run.settled, delay(CANCEL_WAIT_MS)]);
  }

  /** Stops taking jobs; lets running ones finish within graceMs, then puts them back. */
  async stop(graceMs: number, beforeWaiting: () => Promise<void>): Promise<void> {
    if (this.stopping) {
      await Promise.all([...this.ctx.schedule.running.values()].map((r) => r.settled));
      return;
    }
    this.stopping = true;
    this.queue.pause();
    await beforeWaiting();
    await Promise.all([...this.ctx.schedule.running.values()].map((run) => this.stopRun(run, graceMs)));
  }

  private async stopRun(run: RunningJob, graceMs: number): Promise<void> {
    const finished = graceMs > 0 ? await Promise.race([run.settled.then(() => 'done' as const), delay(graceMs)]) : 'timeout';
    if (finished === 'done') return;
    run.shutdown = true;
    run.controller.abort(new EngineError('cancelled', SHUTDOWN_REASON));
    const stopped = await Promise.race([run.settled.then(() => 'done' as const), delay(ABORT_WAIT_MS)]);
    if (stopped === 'done') return;
    // The engine did not stop in time: write the job back ourselves and ignore what it does next.
    run.abandoned = true;
    jobLog(this.ctx.log, run.job).warn('the engine did not stop within the abort wait; putting the job back anyway');
    await this.putBack(run);
  }

  /** One p-queue task: runs whatever job the fair queue says is next. */
  private async runNext(): Promise<void> {
    if (this.stopping) return;
    const { schedule } = this.ctx;
    const choose = this.drawer.choose?.bind(this.drawer);
    const job = choose ? schedule.takeNext(choose) : schedule.takeNextPreferring(this.drawer.loadedModels?.() ?? []);
    if (!job) {
      // Jobs wait that no free engine worker can run now: this turn comes back when one may.
      if (choose && schedule.fair.size > 0) setTimeout(() => this.kick(), CHOOSE_RETRY_MS).unref();
      return;
    }
    await this.execute(job);
  }

  /**
   * Runs a job; resolves as soon as the engine has drawn it (or failed), so the slot takes the
   * next job while this one's pictures are PNG-encoded and written: the next UNet overlaps the
   * encode. The rest finishes in the background and is tracked as the run's `settled`, which
   * stop() and cancel() wait for; the job stays "running" in the store until its files are
   * written and recorded, so a kill during the encode re-runs it (never loses or doubles it).
   */
  private async execute(job: Job): Promise<void> {
    let slotFree: () => void = () => undefined;
    const drawn = new Promise<void>((resolve) => {
      slotFree = resolve;
    });
    void this.executeWhole(job, slotFree);
    await drawn;
  }

  private async executeWhole(job: Job, slotFree: () => void): Promise<void> {
    const { schedule, store, events } = this.ctx;
    const log = jobLog(this.ctx.log, job);
    let release: () => void = () => undefined;
    const settled = new Promise<void>((resolve) => {
      release = resolve;
    });
    const run: RunningJob = { job, controller: new AbortController(), step: 0, total: stepsToRun(job.spec), settled };
    schedule.running.set(job.id, run);
    schedule.published.delete(job.id);
    try {
      job.status = 'running';
      job.startedAt = this.ctx.now();
      try {
        await store.jobs.put(job);
      } catch (err) {
        log.error({ err }, 'could not record the start of a job');
        await this.finishFailed(run, MESSAGES.notSaved);
        return;
      }
      log.info({ crashes: job.attempts, interruptions: job.interruptions ?? 0 }, 'job started');
      events.emit({ type: 'started', job: view(job) });
      schedule.scheduleMoves();
      await this.render(run, slotFree);
    } catch (err) {
      log.error({ err }, 'the run loop failed on a job');
    } finally {
      schedule.forget(job.id);
      if (schedule.running.get(job.id) === run) schedule.running.delete(job.id);
      schedule.scheduleMoves();
      release();
      slotFree();
    }
  }

  /** Draws the job, calls `drawn` once the engine is done with it, then saves and records the result. */
  private async render(run: RunningJob, drawn: () => void): Promise<void> {
    const { job } = run;
    const { schedule, files } = this.ctx;
    const log = jobLog(this.ctx.log, job);
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
      if (!schedule.eta.isMeasured(job.spec.model)) {
        const at = performance.now();
        if (!paceFrom) paceFrom = { step: progress.step, at };
        else if ((progress.step - paceFrom.step) % PACE_EVERY_STEPS === 0) {
          const secondsPerStep = (at - paceFrom.at) / 1000 / (progress.step - paceFrom.step);
          schedule.eta.observePace(job.spec, secondsPerStep, progress.batch?.size ?? job.spec.count);
          schedule.estimatesChanged();
          schedule.scheduleMoves();
        }
      }
      progressChain = progressChain.then(() => this.emitProgress(run, progress)).catch((err: unknown) => {
        log.warn({ err }, 'could not encode a step preview');
      });
    };

    // Before the first step: a checkpoint's first use builds its folder, any model's first job
    // creates its sessions. Members see it in the status instead of a job that looks stuck.
    const onStage = (stage: ModelStage) => {
      if (schedule.running.get(job.id) !== run) return;
      this.ctx.events.emit({ type: 'stage', job: view(job), ...stage });
    };

    let result: GenerateResult;
    let images: JobImage[];
    let grid: string | undefined;
    try {
      const request = await this.requestFor(job);
      result = await this.drawer.draw(job, request, { signal: run.controller.signal, onStep, onStage });
      drawn();
      await progressChain;
      // A result that arrives despite a stop() abort is kept (finished work is never thrown
      // away); one that arrives despite a member's cancel is not.
      if (run.cancelledBy !== undefined) throw new EngineError('cancelled', 'cancelled');
      ({ images, grid } = await files.save(job.id, result, this.ctx.now()));
    } catch (err) {
      await progressChain;
      await this.handleRunError(run, err);
      return;
    }
    if (run.abandoned) return;
    if (run.cancelledBy !== undefined) {
      // Cancelled while the files were being written: honour it, and leave no orphan files.
      await files.remove(filesOf({ images, grid }));
      await this.handleRunError(run, new EngineError('cancelled', 'cancelled'));
      return;
    }

    const durationMs = Math.round(performance.now() - clock);
    schedule.eta.record({ ...job.spec, count: images.length }, durationMs, result.timing.stepsRun || stepsToRun(job.spec));
    schedule.estimatesChanged();
    job.status = 'done';
    job.finishedAt = this.ctx.now();
    job.result = deepFreeze({
      images,
      ...(grid ? { grid } : {}),
      model: result.model,
      provider: result.provider,
      durationMs,
      truncation: result.truncation,
    });
    try {
      await this.ctx.store.jobs.put(job);
    } catch (err) {
      // The pictures exist but the record still says running, so nothing can deliver them now.
      // The member hears so (never a status left "drawing"); if the store comes back, the job
      // runs again after a restart.
      log.error({ err }, 'could not record a finished job');
      this.ctx.events.emit({
        type: 'failed',
        job: view({ ...job, status: 'failed', error: MESSAGES.resultNotSaved }),
        reason: MESSAGES.resultNotSaved,
      });
      return;
    }
    log.info({ durationMs, images: images.length, provider: result.provider }, 'job done');
    this.ctx.events.emit({ type: 'done', job: view(job) });
    await this.drawer.release?.(job).catch((err: unknown) => log.warn({ err }, 'could not release what the drawer kept for a job'));
  }

  private async emitProgress(run: RunningJob, progress: StepProgress): Promise<void> {
    const { schedule } = this.ctx;
    if (schedule.running.get(run.job.id) !== run) return;
    let preview: { png: Buffer; width: number; height: number } | undefined;
    if (progress.preview) {
      const { rgb, width, height } = progress.preview;
      const scale = Math.min(1, PREVIEW_SIDE / Math.max(width, height));
      const w = Math.max(1, Math.round(width * scale));
      const h = Math.max(1, Math.round(height * scale));
      const png = await rgbToPng(rgb, width, height, { compressionLevel: 3, resize: { width: w, height: h } });
      preview = { png, width: w, height: h };
    }
    if (schedule.running.get(run.job.id) !== run) return;
    this.ctx.events.emit({ type: 'progress', job: view(run.job), ...memberProgress(progress), ...(preview ? { preview } : {}) });
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
      previews: this.ctx.config.engine.previews,
    };
    if (s.variation) request.variation = { ...s.variation };
    if (s.init) request.init = await this.loadInitImage(job);
    return request;
  }

  /** The stored picture an img2img job starts from, resized to the job's size as packed RGB. */
  private async loadInitImage(job: Job): Promise<InitImage> {
    const init = job.spec.init!;
    // An upload (web studio) names its own file; a U/hires job starts from its parent's picture.
    const parent = init.file ? undefined : (this.ctx.schedule.live.get(init.jobId) ?? (await this.ctx.store.jobs.get(init.jobId)));
    const picture = init.file ? { file: init.file } : parent?.result?.images[init.index];
    if (!picture) throw new MemberFacingError(MESSAGES.initGone);
    let rgb: Uint8Array;
    try {
      // An upload has its own aspect: crop it to the job's (a job's own picture already fits).
      rgb = await this.ctx.files.readRgb(picture.file, job.spec.width, job.spec.height, init.file ? 'cover' : 'fill');
    } catch (err) {
      jobLog(this.ctx.log, job).warn({ err, file: picture.file }, 'init image unreadable');
      throw new MemberFacingError(MESSAGES.initGone);
    }
    return { rgb, width: job.spec.width, height: job.spec.height, strength: init.strength };
  }

  private async handleRunError(run: RunningJob, err: unknown): Promise<void> {
    const { job } = run;
    const log = jobLog(this.ctx.log, job);
    if (run.abandoned) return;
    if (run.shutdown) {
      await this.putBack(run);
      return;
    }
    if (run.cancelledBy !== undefined) {
      job.status = 'cancelled';
      job.cancelledBy = run.cancelledBy;
      job.finishedAt = this.ctx.now();
      try {
        await this.ctx.store.jobs.put(job);
      } catch (storeErr) {
        log.error({ err: storeErr }, 'could not record a cancelled job');
      }
      log.info({ by: run.cancelledBy }, 'running job cancelled');
      this.ctx.events.emit({ type: 'cancelled', job: view(job), by: run.cancelledBy });
      return;
    }
    if (err instanceof EngineError && err.code === 'worker_crashed') {
      await this.afterWorkerCrash(run, err);
      return;
    }
    if (err instanceof BackendUnavailableError) {
      await this.waitForBackend(run, err);
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
    const log = jobLog(this.ctx.log, job);
    job.attempts += 1;
    if (job.attempts >= this.ctx.config.queue.maxAttempts) {
      log.error({ crashes: job.attempts, detail: err.message }, 'job dropped: it crashed the engine worker repeatedly');
      await this.finishFailed(run, MESSAGES.crashed(job.attempts));
      return;
    }
    const stored = await this.storeAsQueued(job);
    if (stored !== true) {
      log.error({ err: stored.err }, 'could not record an engine crash');
      await this.finishFailed(run, MESSAGES.engineFailed);
      return;
    }
    log.warn({ crashes: job.attempts, detail: err.message }, 'the engine worker crashed on this job; it waits for another try');
    this.waitAgain(run, 'engine-crash');
    this.kick();
  }

  /** A job that stopped running goes back to its place; positions and caps see it as waiting. */
  private waitAgain(run: RunningJob, cause?: 'engine-crash'): void {
    const { job } = run;
    const { schedule } = this.ctx;
    if (schedule.running.get(job.id) === run) schedule.running.delete(job.id);
    schedule.enqueue(job);
    const where = schedule.placeOf(job, { position: 1, etaSeconds: 0 });
    this.ctx.events.emit({ type: 'resumed', job: view(job), ...where, ...(cause ? { cause } : {}) });
  }

  /**
   * The job could not be handed to the drawing service (Redis away): it waits again in its old
   * place, nothing counts against it, and the run loop tries again after a pause.
   */
  private async waitForBackend(run: RunningJob, err: BackendUnavailableError): Promise<void> {
    const { job } = run;
    const log = jobLog(this.ctx.log, job);
    const stored = await this.storeAsQueued(job);
    if (stored !== true) log.error({ err: stored.err }, 'could not put a job back while the drawing service is away');
    log.warn({ detail: err.message }, 'the drawing service is unavailable; the job waits');
    this.waitAgain(run);
    const retry = setTimeout(() => this.kick(), BACKEND_RETRY_MS);
    retry.unref();
  }

  async finishFailed(run: RunningJob, reason: string): Promise<void> {
    const { job } = run;
    job.status = 'failed';
    job.error = reason;
    job.finishedAt = this.ctx.now();
    try {
      await this.ctx.store.jobs.put(job);
    } catch (err) {
      jobLog(this.ctx.log, job).error({ err }, 'could not record a failed job');
    }
    this.ctx.events.emit({ type: 'failed', job: view(job), reason });
  }

  /** A job interrupted by stop() goes back to "queued"; a planned restart is not the request's fault. */
  private async putBack(run: RunningJob): Promise<void> {
    const { job } = run;
    const log = jobLog(this.ctx.log, job);
    const stored = await this.storeAsQueued(job);
    if (stored === true) log.info('running job put back in the queue for the restart');
    else log.error({ err: stored.err }, 'could not put the running job back; it resumes as interrupted');
    // The adapters are still up: the member's "Drawing…" turns into a truthful waiting note.
    this.ctx.events.emit({ type: 'resumed', job: view(job), position: 0, etaSeconds: 0, cause: 'shutdown' });
  }

  private async storeAsQueued(job: Job): Promise<true | { err: unknown }> {
    job.status = 'queued';
    delete job.startedAt;
    try {
      await this.ctx.store.jobs.put(job);
      return true;
    } catch (err) {
      return { err };
    }
  }
}
