import type { JobSpec } from './types.js';

/**
 * Seconds-per-step bookkeeping for queue ETAs.
 *
 * The unit is one UNet step for one picture: a finished job contributes
 * durationMs / (stepsRun × count), so its VAE, encoding and saving time are spread over its
 * steps and an ETA covers the whole job, not only denoising. Each model has its own
 * exponential moving average (new samples weigh ALPHA), because a turbo model at 512² and a
 * big model at 1024² differ by an order of magnitude. Before the first measurement of a model
 * the configured guess is used.
 */
const ALPHA = 0.3;

/** UNet steps a spec runs per picture: img2img skips the first (1 - strength) of the schedule. */
export function stepsToRun(spec: Pick<JobSpec, 'steps' | 'init'>): number {
  if (!spec.init) return spec.steps;
  return Math.max(1, Math.floor(spec.steps * spec.init.strength));
}

export class EtaModel {
  private readonly perModel = new Map<string, number>();

  constructor(private readonly initialSecondsPerStep: number) {}

  secondsPerStep(model: string): number {
    return this.perModel.get(model) ?? this.initialSecondsPerStep;
  }

  /** Feeds one finished job; ignores samples that cannot be right (no steps, no time). */
  record(model: string, durationMs: number, stepsRun: number, count: number): void {
    const units = stepsRun * Math.max(1, count);
    if (!(durationMs > 0) || !(units > 0)) return;
    const sample = durationMs / 1000 / units;
    const previous = this.perModel.get(model);
    this.perModel.set(model, previous === undefined ? sample : previous + ALPHA * (sample - previous));
  }

  /** Whole-job estimate in seconds. */
  jobSeconds(spec: Pick<JobSpec, 'steps' | 'init' | 'count' | 'model'>): number {
    return this.secondsPerStep(spec.model) * stepsToRun(spec) * Math.max(1, spec.count);
  }

  /**
   * What is left of the running job, from its reported step (not the wall clock, so that an
   * ETA only changes when the queue really moves, and tests need no clock).
   */
  remainingSeconds(spec: Pick<JobSpec, 'steps' | 'init' | 'count' | 'model'>, step: number, total: number): number {
    const done = total > 0 ? Math.min(1, Math.max(0, step / total)) : 0;
    return this.jobSeconds(spec) * (1 - done);
  }
}

/**
 * ETAs (seconds until each waiting job is finished) for jobs in run order: the running job's
 * remaining time, plus every job ahead, plus the job itself. Whole seconds, rounded up.
 */
export function cumulativeEtas(runningRemaining: number, jobSeconds: number[]): number[] {
  const out: number[] = [];
  let total = runningRemaining;
  for (const seconds of jobSeconds) {
    total += seconds;
    out.push(Math.ceil(total - 1e-9));
  }
  return out;
}
