import type { ExecutionProviderName } from '../../engine/types.js';
import type { JobSpec } from './types.js';

/**
 * Seconds-per-step bookkeeping for queue ETAs.
 *
 * The unit is one UNet step for one picture of 512×512 under guidance: a finished job contributes
 * durationMs / (stepsRun × count × size factor), so its VAE, encoding and saving time are spread
 * over its steps and an ETA covers the whole job, and a measurement at one size serves jobs of
 * another. Each model has its own exponential moving average (new samples weigh ALPHA), because
 * a turbo model and a big model differ by an order of magnitude.
 *
 * Before a model's first finished job the estimate is a prior, and says so (`approximate`):
 * the configured queue.initialSecondsPerStep when set, else a typical SD 1.5 step for the
 * provider, scaled by the model's UNet size and the picture's pixels. While the first job of a
 * model draws, its step pace replaces the prior (still approximate: it leaves out the VAE).
 */
const ALPHA = 0.3;

/** One 512×512 SD 1.5 UNet step with guidance (batch 2), per picture: typical figures, not promises. */
const TYPICAL_SECONDS_PER_STEP: Record<ExecutionProviderName, number> = {
  cuda: 0.06,
  webgpu: 0.4,
  cpu: 3,
};
const REFERENCE_PIXELS = 512 * 512;
/** SD 1.5's UNet has about 860 M parameters; other models scale from it. */
export const REFERENCE_UNET_PARAMETERS = 860e6;

type EtaSpec = Pick<JobSpec, 'steps' | 'init' | 'count' | 'model' | 'width' | 'height' | 'guidance' | 'sampler'>;

/** UNet steps a spec runs per picture: img2img skips the first (1 - strength) of the schedule. */
export function stepsToRun(spec: Pick<JobSpec, 'steps' | 'init'>): number {
  if (!spec.init) return spec.steps;
  return Math.max(1, Math.floor(spec.steps * spec.init.strength));
}

/** Cost of one step of one picture relative to 512×512 with guidance: pixels, and half without guidance (UNet batch 1). */
function sizeFactor(spec: Pick<EtaSpec, 'width' | 'height' | 'guidance' | 'sampler'>): number {
  const guided = spec.guidance > 1 && spec.sampler !== 'Turbo';
  return ((spec.width * spec.height) / REFERENCE_PIXELS) * (guided ? 1 : 0.5);
}

export interface EtaOptions {
  /** queue.initialSecondsPerStep: a fixed prior per step and picture, whatever the size. */
  fixedPrior?: number;
  /** The provider in use, or the first configured one before a model is loaded. */
  provider: () => ExecutionProviderName;
}

export interface JobEstimate {
  seconds: number;
  /** No job of this model has finished yet: the figure is a first estimate. */
  approximate: boolean;
}

export class EtaModel {
  private readonly measured = new Map<string, number>();
  private readonly pace = new Map<string, number>();
  /** Model → UNet cost relative to SD 1.5 (from its parameter count), when known. */
  private readonly scale = new Map<string, number>();

  constructor(private readonly options: EtaOptions) {}

  setModelScale(model: string, factor: number): void {
    if (Number.isFinite(factor) && factor > 0) this.scale.set(model, factor);
  }

  /** Feeds one finished job; ignores samples that cannot be right (no steps, no time). */
  record(spec: EtaSpec, durationMs: number, stepsRun: number): void {
    const units = stepsRun * Math.max(1, spec.count) * sizeFactor(spec);
    if (!(durationMs > 0) || !(units > 0)) return;
    const sample = durationMs / 1000 / units;
    const previous = this.measured.get(spec.model);
    this.measured.set(spec.model, previous === undefined ? sample : previous + ALPHA * (sample - previous));
  }

  /** The running job's pace: seconds for one step of `pictures` pictures at its size. */
  observePace(spec: EtaSpec, secondsPerStep: number, pictures: number): void {
    const units = Math.max(1, pictures) * sizeFactor(spec);
    if (secondsPerStep > 0 && units > 0) this.pace.set(spec.model, secondsPerStep / units);
  }

  isMeasured(model: string): boolean {
    return this.measured.has(model);
  }

  /** Seconds for one step of one picture of this spec. */
  secondsPerStep(spec: EtaSpec): number {
    const known = this.measured.get(spec.model) ?? this.pace.get(spec.model);
    if (known !== undefined) return known * sizeFactor(spec);
    const fixed = this.options.fixedPrior;
    if (fixed !== undefined) return fixed;
    const typical = TYPICAL_SECONDS_PER_STEP[this.options.provider()];
    return typical * (this.scale.get(spec.model) ?? 1) * sizeFactor(spec);
  }

  /** Whole-job estimate. */
  job(spec: EtaSpec): JobEstimate {
    return {
      seconds: this.secondsPerStep(spec) * stepsToRun(spec) * Math.max(1, spec.count),
      approximate: !this.measured.has(spec.model),
    };
  }

  /**
   * What is left of the running job, from its reported step (not the wall clock, so that an
   * ETA only changes when the queue really moves, and tests need no clock).
   */
  remainingSeconds(spec: EtaSpec, step: number, total: number): number {
    const done = total > 0 ? Math.min(1, Math.max(0, step / total)) : 0;
    return this.job(spec).seconds * (1 - done);
  }
}

/**
 * ETAs (seconds until each waiting job is finished) for jobs in run order: the running job's
 * remaining time, plus every job ahead, plus the job itself. Whole seconds, rounded up. An ETA
 * is approximate when any part of that sum is.
 */
export function cumulativeEtas(running: JobEstimate, jobs: JobEstimate[]): JobEstimate[] {
  const out: JobEstimate[] = [];
  let total = running.seconds;
  let approximate = running.approximate;
  for (const job of jobs) {
    total += job.seconds;
    approximate ||= job.approximate;
    out.push({ seconds: Math.ceil(total - 1e-9), approximate });
  }
  return out;
}
