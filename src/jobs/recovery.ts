// Recovery after a restart: what was queued waits again in fair order; what was running when the
// process died is resumed (an interruption, bounded by queue.maxInterruptions); what was done is
// left for its adapter to deliver, never rendered again.
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Engine } from '../../engine/types.js';
import { jobLog, type JobsContext } from './context.js';
import { REFERENCE_UNET_PARAMETERS } from './eta.js';
import { view } from './job-copies.js';
import { MESSAGES } from './messages.js';
import type { Job } from './types.js';

/** The smallest UNet cost relative to SD 1.5 that first ETAs assume. */
const MIN_MODEL_SCALE = 0.005;

/** Puts the store's unfinished jobs back into the schedule; returns how many will run. */
export async function recoverJobs(ctx: JobsContext): Promise<number> {
  const { store, schedule, events, config } = ctx;
  const active = await store.jobs.active();
  const resumed: Job[] = [];
  for (const stored of active) {
    if (schedule.live.has(stored.id)) continue;
    if (stored.status === 'done') continue; // delivered again by its adapter, never rendered again
    const job = stored;
    const log = jobLog(ctx.log, job);
    if (job.status === 'running') {
      // The process died while this job was drawing: a kill or a power cut is not the
      // request's fault, but a native engine crash that takes the whole process down looks
      // the same from here. So these get their own, higher bound (queue.maxInterruptions).
      job.interruptions = (job.interruptions ?? 0) + 1;
      if (job.interruptions >= config.queue.maxInterruptions) {
        const reason = MESSAGES.interrupted(job.interruptions);
        job.status = 'failed';
        job.error = reason;
        job.finishedAt = ctx.now();
        await store.jobs.put(job);
        log.warn({ interruptions: job.interruptions }, 'job dropped: the process died while drawing it too often');
        events.emit({ type: 'failed', job: view(job), reason });
        continue;
      }
      job.status = 'queued';
      delete job.startedAt;
      await store.jobs.put(job);
    }
    schedule.enqueue(job);
    resumed.push(job);
  }
  for (const job of resumed) {
    const where = schedule.placeOf(job, { position: 0, etaSeconds: 0 });
    jobLog(ctx.log, job).info({ ...where, crashes: job.attempts, interruptions: job.interruptions ?? 0 }, 'job resumed after restart');
    events.emit({ type: 'resumed', job: view(job), ...where });
  }
  if (resumed.length > 0 || active.length > 0) {
    ctx.log.info({ resumed: resumed.length, undelivered: active.filter((j) => j.status === 'done').length }, 'queue recovered');
  }
  return resumed.length;
}

/**
 * First-estimate ETAs scale with each model's UNet size (its weight files' bytes over the bytes
 * per weight): a tiny demo model and SDXL differ by a factor of thousands.
 */
export async function loadModelScales(ctx: JobsContext, engine: Pick<Engine, 'scanModels'>): Promise<void> {
  try {
    const { models } = await engine.scanModels();
    for (const model of models) {
      const unet = path.join(model.dir, 'unet');
      const files = await readdir(unet).catch(() => [] as string[]);
      let bytes = 0;
      for (const file of files) bytes += (await stat(path.join(unet, file)).catch(() => undefined))?.size ?? 0;
      // A per-step floor: even a tiny model pays for the loop and the sampler.
      const scale = Math.max(MIN_MODEL_SCALE, bytes / (model.dtype === 'float16' ? 2 : 4) / REFERENCE_UNET_PARAMETERS);
      if (bytes > 0) ctx.schedule.eta.setModelScale(model.name, scale);
    }
  } catch (err) {
    ctx.log.warn({ err }, 'could not size the models for first ETAs; using typical figures');
  }
}
