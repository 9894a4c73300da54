// Noise schedules and samplers with diffusers' semantics (EulerDiscrete, EulerAncestralDiscrete,
// DPMSolverMultistep "dpmsolver++" order 2 with Karras sigmas, DDIM η=0), under the names
// AUTOMATIC1111 users know. Formulas and reference numbers: ../shared/notes/engine.md §3.
//
// Tables are computed the way diffusers computes them (float32 tensors, cumprod accumulated in
// double, numpy float64 interpolation), so sigmas and timesteps agree with diffusers to float32
// precision. Latent math in step() runs in double over Float32Array buffers.

import type { SamplerName } from './types.js';

export type BetaSchedule = 'scaled_linear' | 'linear' | 'squaredcos_cap_v2';
export type PredictionType = 'epsilon' | 'v_prediction';
export type TimestepSpacing = 'linspace' | 'leading' | 'trailing';

export interface SchedulerConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: BetaSchedule;
  predictionType: PredictionType;
  /** undefined: each sampler's diffusers default (Euler family and DPM: linspace; DDIM: leading). */
  timestepSpacing: TimestepSpacing | undefined;
  stepsOffset: number;
  /** DDIM's final ᾱ: 1 when true, ᾱ₀ when false; undefined → diffusers' DDIM default (true). */
  setAlphaToOne?: boolean;
  /** `_class_name` of the scheduler config the model shipped with (informational). */
  className: string;
  /** Explicit betas from the config (overrides the schedule). */
  trainedBetas?: number[];
  /** "Common Diffusion Noise Schedules are Flawed": rescale so the last step has zero SNR. */
  rescaleBetasZeroSnr?: boolean;
}

/** diffusers' defaults for keys missing from scheduler_config.json. */
const DEFAULTS = {
  numTrainTimesteps: 1000,
  betaStart: 0.0001,
  betaEnd: 0.02,
  betaSchedule: 'linear' as BetaSchedule,
  predictionType: 'epsilon' as PredictionType,
  stepsOffset: 0,
};

const BETA_SCHEDULES: readonly BetaSchedule[] = ['scaled_linear', 'linear', 'squaredcos_cap_v2'];
const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction'];
const SPACINGS: readonly TimestepSpacing[] = ['linspace', 'leading', 'trailing'];

function configError(key: string, value: unknown, expected: string): Error {
  return new Error(`scheduler config: ${key} is ${JSON.stringify(value)}; expected ${expected}`);
}

/** Reads a diffusers scheduler_config.json (snake_case keys); missing keys get diffusers' defaults. */
export function parseSchedulerConfig(json: unknown): SchedulerConfig {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Error('scheduler config: not a JSON object');
  const o = json as Record<string, unknown>;
  const present = (k: string): boolean => o[k] !== undefined && o[k] !== null;

  const num = (k: string, dflt: number, ok: (v: number) => boolean, expected: string): number => {
    if (!present(k)) return dflt;
    const v = o[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw configError(k, v, expected);
    return v;
  };
  const oneOf = <T extends string>(k: string, allowed: readonly T[], dflt: T | undefined): T | undefined => {
    if (!present(k)) return dflt;
    const v = o[k];
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) throw configError(k, v, `one of ${allowed.join(', ')}`);
    return v as T;
  };
  const bool = (k: string): boolean | undefined => {
    if (!present(k)) return undefined;
    if (typeof o[k] !== 'boolean') throw configError(k, o[k], 'true or false');
    return o[k] as boolean;
  };

  const numTrainTimesteps = num('num_train_timesteps', DEFAULTS.numTrainTimesteps, (v) => Number.isInteger(v) && v >= 2 && v <= 100_000, 'an integer from 2 to 100000');
  const betaStart = num('beta_start', DEFAULTS.betaStart, (v) => v > 0 && v < 1, 'a number between 0 and 1');
  const betaEnd = num('beta_end', DEFAULTS.betaEnd, (v) => v > 0 && v < 1, 'a number between 0 and 1');
  if (betaEnd < betaStart) throw configError('beta_end', betaEnd, `a value ≥ beta_start (${betaStart})`);
  const betaSchedule = oneOf('beta_schedule', BETA_SCHEDULES, DEFAULTS.betaSchedule)!;
  if (present('prediction_type') && o.prediction_type === 'sample') {
    throw configError('prediction_type', 'sample', 'epsilon or v_prediction (models predicting the sample are not supported)');
  }
  const predictionType = oneOf('prediction_type', PREDICTION_TYPES, DEFAULTS.predictionType)!;
  const timestepSpacing = oneOf('timestep_spacing', SPACINGS, undefined);
  const stepsOffset = num('steps_offset', DEFAULTS.stepsOffset, (v) => Number.isInteger(v) && v >= 0 && v < numTrainTimesteps, `an integer from 0 to ${numTrainTimesteps - 1}`);
  const setAlphaToOne = bool('set_alpha_to_one');
  const rescaleBetasZeroSnr = bool('rescale_betas_zero_snr');
  const className = typeof o._class_name === 'string' ? o._class_name : '';

  let trainedBetas: number[] | undefined;
  if (present('trained_betas')) {
    const tb = o.trained_betas;
    if (!Array.isArray(tb) || tb.length !== numTrainTimesteps || !tb.every((b) => typeof b === 'number' && b > 0 && b < 1)) {
      throw configError('trained_betas', Array.isArray(tb) ? `[${tb.length} values]` : tb, `${numTrainTimesteps} numbers between 0 and 1`);
    }
    trainedBetas = tb as number[];
  }

  const cfg: SchedulerConfig = { numTrainTimesteps, betaStart, betaEnd, betaSchedule, predictionType, timestepSpacing, stepsOffset, className };
  if (setAlphaToOne !== undefined) cfg.setAlphaToOne = setAlphaToOne;
  if (rescaleBetasZeroSnr !== undefined) cfg.rescaleBetasZeroSnr = rescaleBetasZeroSnr;
  if (trainedBetas) cfg.trainedBetas = trainedBetas;
  return cfg;
}

const f32 = Math.fround;

/** torch.linspace(start, end, n, dtype=float32): float arithmetic, filled from both ends. */
function torchLinspaceF32(start: number, end: number, n: number): Float64Array {
  const out = new Float64Array(n);
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) out[i] = i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (n - i - 1)));
  return out;
}

function betas(cfg: SchedulerConfig): Float64Array {
  const n = cfg.numTrainTimesteps;
  if (cfg.trainedBetas) return Float64Array.from(cfg.trainedBetas, f32);
  switch (cfg.betaSchedule) {
    case 'linear':
      return torchLinspaceF32(cfg.betaStart, cfg.betaEnd, n);
    case 'scaled_linear':
      return torchLinspaceF32(Math.sqrt(cfg.betaStart), Math.sqrt(cfg.betaEnd), n).map((b) => f32(b * b));
    case 'squaredcos_cap_v2': {
      // Nichol & Dhariwal's cosine schedule, computed in double then stored as float32.
      const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = f32(Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999));
      return out;
    }
  }
}

/** ᾱ_t for t = 0 … N−1 (float32 values, as diffusers holds them). */
export function alphasCumprod(cfg: SchedulerConfig): Float64Array {
  const b = betas(cfg);
  const out = new Float64Array(b.length);
  // torch's CPU cumprod accumulates in double and stores each prefix as float.
  let acc = 1;
  for (let i = 0; i < b.length; i++) {
    acc *= f32(1 - b[i]!);
    out[i] = f32(acc);
  }
  if (cfg.rescaleBetasZeroSnr) {
    const sqrtAc = out.map(Math.sqrt);
    const first = sqrtAc[0]!;
    const last = sqrtAc[sqrtAc.length - 1]!;
    for (let i = 0; i < out.length; i++) {
      const v = (sqrtAc[i]! - last) * (first / (first - last));
      out[i] = f32(v * v);
    }
    // Zero SNR makes σ infinite at the last step; diffusers clamps ᾱ there to 2^-24.
    out[out.length - 1] = 2 ** -24;
  }
  return out;
}

/** σ_t = sqrt((1 − ᾱ_t)/ᾱ_t): the VE noise level of every training step. */
export function sigmaTable(cfg: SchedulerConfig): Float64Array {
  return alphasCumprod(cfg).map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

export interface Sampler {
  /** Model timesteps for the steps that will run (after img2img trimming), as fed to the UNet (float; the loader casts). */
  readonly timesteps: number[];
  /** Multiply unit-variance noise by this to get the starting latent (txt2img). */
  readonly initNoiseSigma: number;
  /** Input scaling for step i (Euler family: 1/sqrt(σ²+1); VP samplers: 1). */
  inputScale(i: number): number;
  /** One update. `modelOutput` is the guided UNet output (ε or v). `noise()` returns fresh unit noise of the latent's size (Euler a draws it; others never call it). Returns the new latent (may reuse buffers). */
  step(i: number, x: Float32Array, modelOutput: Float32Array, noise: () => Float32Array): Float32Array;
  /** img2img: noise the clean init latent to the level of the first step that runs. */
  addNoise(init: Float32Array, noise: Float32Array): Float32Array;
  /** The x0 prediction of the last step() (for cheap previews). */
  lastDenoised(): Float32Array | undefined;
  /** How many times step() will call `noise()` over the whole run (so it can be drawn ahead). */
  noiseDraws(): number;
}

/** A Sampler plus its schedule, for logs, tests and previews. */
export interface ScheduledSampler extends Sampler {
  /**
   * VE noise level σ at each step that runs, followed by the level after the last step
   * (0 for Euler/DPM; DDIM's final ᾱ expressed as σ). Length timesteps.length + 1.
   */
  readonly sigmas: number[];
}

/** Round half to even, like numpy's round. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.interp over the integer grid 0 … N−1. */
function interpTable(table: Float64Array, t: number): number {
  if (t <= 0) return table[0]!;
  const last = table.length - 1;
  if (t >= last) return table[last]!;
  const lo = Math.floor(t);
  const w = t - lo;
  return table[lo]! + (table[lo + 1]! - table[lo]!) * w;
}

/** diffusers' timestep spacings (Euler/DDIM variant: n points). */
function spacedTimesteps(spacing: TimestepSpacing, n: number, numTrain: number, stepsOffset: number): number[] {
  const out: number[] = [];
  switch (spacing) {
    case 'linspace':
      // np.linspace(0, N−1, n, dtype=float32)[::-1]
      for (let k = n - 1; k >= 0; k--) out.push(n === 1 ? 0 : k === n - 1 ? numTrain - 1 : f32((k * (numTrain - 1)) / (n - 1)));
      return out;
    case 'leading': {
      const ratio = Math.floor(numTrain / n);
      for (let k = n - 1; k >= 0; k--) out.push(k * ratio + stepsOffset);
      return out;
    }
    case 'trailing': {
      // round(arange(N, 0, −N/n)) − 1, always exactly n values (numpy's arange can yield n+1
      // for a few n through float error; that extra near-zero step is a bug we do not copy).
      const ratio = numTrain / n;
      for (let k = 0; k < n; k++) out.push(roundHalfEven(numTrain - k * ratio) - 1);
      return out;
    }
  }
}

/** diffusers' img2img start: which step the schedule resumes from for a given strength. */
export function img2imgStart(steps: number, strength: number | undefined): number {
  if (strength === undefined) return 0;
  if (!Number.isFinite(strength) || strength <= 0 || strength > 1) throw new RangeError(`strength must be in (0, 1], got ${strength}`);
  // diffusers refuses a strength that leaves 0 steps; the bot would rather run one gentle step
  // than fail a member's request, so at least one step always runs.
  const initTimestep = Math.max(1, Math.min(Math.floor(steps * strength), steps));
  return Math.max(steps - initTimestep, 0);
}

/** Buffers that step() writes into, reused across steps so a generation allocates once. */
class Buffers {
  private pool: Float32Array[] = [];
  private next = 0;
  /** Two output buffers alternate, so the returned latent never aliases the input. */
  out(len: number, avoid: Float32Array): Float32Array {
    if (this.pool.length === 0 || this.pool[0]!.length !== len) this.pool = [new Float32Array(len), new Float32Array(len)];
    let b = this.pool[this.next]!;
    if (b === avoid) {
      this.next ^= 1;
      b = this.pool[this.next]!;
    }
    this.next ^= 1;
    return b;
  }
}

function checkLengths(x: Float32Array, m: Float32Array): void {
  if (x.length !== m.length) throw new RangeError(`sampler: latent has ${x.length} values but model output ${m.length}`);
}

function checkIndex(i: number, n: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`sampler: step ${i} out of range 0…${n - 1}`);
}

/**
 * Euler, Euler a and Turbo: sigma-space samplers (x = x0 + σ·ε). The UNet sees x/sqrt(σ²+1).
 */
class EulerSampler implements ScheduledSampler {
  readonly timesteps: number[];
  readonly sigmas: number[];
  readonly initNoiseSigma: number;
  private readonly buffers = new Buffers();
  private x0: Float32Array | undefined;
  private stepped = false;

  constructor(
    cfg: SchedulerConfig,
    steps: number,
    spacing: TimestepSpacing,
    private readonly ancestral: boolean,
    start: number,
    private readonly v: boolean,
  ) {
    const table = sigmaTable(cfg);
    const ts = spacedTimesteps(spacing, steps, cfg.numTrainTimesteps, cfg.stepsOffset);
    const sig = ts.map((t) => f32(interpTable(table, t)));
    sig.push(0);
    // Decided on the full schedule, before img2img trimming, as diffusers does.
    const maxSigma = Math.max(...sig);
    this.initNoiseSigma = spacing === 'leading' ? Math.sqrt(maxSigma * maxSigma + 1) : maxSigma;
    this.timesteps = ts.slice(start);
    this.sigmas = sig.slice(start);
  }

  inputScale(i: number): number {
    checkIndex(i, this.timesteps.length);
    const s = this.sigmas[i]!;
    return 1 / Math.sqrt(s * s + 1);
  }

  step(i: number, x: Float32Array, modelOutput: Float32Array, noise: () => Float32Array): Float32Array {
    checkIndex(i, this.timesteps.length);
    checkLengths(x, modelOutput);
    const sigma = this.sigmas[i]!;
    const sigmaNext = this.sigmas[i + 1]!;
    // x0 = a·x + b·out for both parameterisations.
    const a = this.v ? 1 / (sigma * sigma + 1) : 1;
    const b = this.v ? -sigma / Math.sqrt(sigma * sigma + 1) : -sigma;
    let target = sigmaNext;
    const sigmaUp = this.ancestral ? ancestralSigmaUp(sigma, sigmaNext) : 0;
    if (this.ancestral) target = Math.sqrt(Math.max(sigmaNext * sigmaNext - sigmaUp * sigmaUp, 0));
    // x' = x + d·(target − σ) with the derivative d = (x − x0)/σ.
    const dtOverSigma = (target - sigma) / sigma;
    if (!this.x0 || this.x0.length !== x.length) this.x0 = new Float32Array(x.length);
    const x0 = this.x0;
    const out = this.buffers.out(x.length, x);
    // diffusers draws noise on the last step too and multiplies it by σ_up = 0; skipping that
    // draw changes no image (the stream is not used afterwards).
    const z = sigmaUp > 0 ? noise() : undefined;
    if (z && z.length !== x.length) throw new RangeError(`sampler: noise has ${z.length} values, latent ${x.length}`);
    if (z) {
      // The noise is added in the same pass (this runs every step): the update is rounded to
      // float32 first, as storing it before a second pass did, so the sum is bit for bit the same.
      for (let k = 0; k < x.length; k++) {
        const xk = x[k]!;
        const d0 = a * xk + b * modelOutput[k]!;
        x0[k] = d0;
        out[k] = Math.fround(xk + (xk - d0) * dtOverSigma) + z[k]! * sigmaUp;
      }
    } else {
      for (let k = 0; k < x.length; k++) {
        const xk = x[k]!;
        const d0 = a * xk + b * modelOutput[k]!;
        x0[k] = d0;
        out[k] = xk + (xk - d0) * dtOverSigma;
      }
    }
    this.stepped = true;
    return out;
  }

  addNoise(init: Float32Array, noise: Float32Array): Float32Array {
    checkLengths(init, noise);
    const s = this.sigmas[0]!;
    const out = new Float32Array(init.length);
    for (let k = 0; k < init.length; k++) out[k] = init[k]! + s * noise[k]!;
    return out;
  }

  lastDenoised(): Float32Array | undefined {
    return this.stepped ? this.x0 : undefined;
  }

  noiseDraws(): number {
    if (!this.ancestral) return 0;
    let draws = 0;
    for (let i = 0; i < this.timesteps.length; i++) if (ancestralSigmaUp(this.sigmas[i]!, this.sigmas[i + 1]!) > 0) draws++;
    return draws;
  }
}

/** Euler a's noise level added back after the step from σ to σ_next (k-diffusion's get_ancestral_step, η = 1). */
function ancestralSigmaUp(sigma: number, sigmaNext: number): number {
  return Math.sqrt((sigmaNext * sigmaNext * (sigma * sigma - sigmaNext * sigmaNext)) / (sigma * sigma));
}

/** numpy-faithful diffusers `_sigma_to_t`: interpolation in log σ over the training table. */
function sigmaToT(sigma: number, logSigmas: Float64Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // Last index whose log σ is ≤ logSigma, clipped so that idx+1 exists.
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i]! >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low]!;
  const hi = logSigmas[low + 1]!;
  const w = Math.min(Math.max((lo - logSigma) / (lo - hi), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/** VP-space (α, s) for a VE σ: α = 1/sqrt(σ²+1), s = σ·α. */
function alphaSigma(sigma: number): [number, number] {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  return [alpha, sigma * alpha];
}

/**
 * DPM++ 2M Karras: DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
 * use_karras_sigmas=True, final_sigmas_type="zero"), in VP space.
 */
class DpmPp2mKarrasSampler implements ScheduledSampler {
  readonly timesteps: number[];
  readonly sigmas: number[];
  readonly initNoiseSigma = 1;
  private readonly buffers = new Buffers();
  /** x0 predictions of the current and previous step (swapped each step). */
  private x0: Float32Array | undefined;
  private x0Prev: Float32Array | undefined;
  private done = 0;

  constructor(
    cfg: SchedulerConfig,
    steps: number,
    start: number,
    private readonly v: boolean,
  ) {
    const table = sigmaTable(cfg);
    // np.log of a float32 array stays float32.
    const logSigmas = table.map((s) => f32(Math.log(s)));
    const sigmaMin = table[0]!;
    const sigmaMax = table[table.length - 1]!;
    const rho = 7;
    const minInv = sigmaMin ** (1 / rho);
    const maxInv = sigmaMax ** (1 / rho);
    const karras: number[] = [];
    for (let k = 0; k < steps; k++) {
      const ramp = steps === 1 ? 0 : k / (steps - 1);
      karras.push((maxInv + ramp * (minInv - maxInv)) ** rho);
    }
    const ts = karras.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
    const sig = karras.map(f32);
    sig.push(0);
    this.timesteps = ts.slice(start);
    this.sigmas = sig.slice(start);
  }

  inputScale(i: number): number {
    checkIndex(i, this.timesteps.length);
    return 1;
  }

  step(i: number, x: Float32Array, modelOutput: Float32Array): Float32Array {
    checkIndex(i, this.timesteps.length);
    checkLengths(x, modelOutput);
    const [alphaS, sigmaS] = alphaSigma(this.sigmas[i]!);
    const [alphaT, sigmaT] = alphaSigma(this.sigmas[i + 1]!);
    if (!this.x0 || this.x0.length !== x.length) {
      this.x0 = new Float32Array(x.length);
      this.x0Prev = new Float32Array(x.length);
    }
    [this.x0, this.x0Prev] = [this.x0Prev!, this.x0];
    const x0 = this.x0;
    const prev = this.x0Prev;
    // x0 = a·x + b·out: ε → (x − s·ε)/α ; v → α·x − s·v
    const a = this.v ? alphaS : 1 / alphaS;
    const b = this.v ? -sigmaS : -sigmaS / alphaS;
    for (let k = 0; k < x.length; k++) x0[k] = a * x[k]! + b * modelOutput[k]!;

    // λ = ln(α/s). At the final σ = 0, λ = +∞ and e^{−h} = 0: the update returns x0 exactly.
    const lambdaS = Math.log(alphaS) - Math.log(sigmaS);
    const lambdaT = sigmaT === 0 ? Infinity : Math.log(alphaT) - Math.log(sigmaT);
    const h = lambdaT - lambdaS;
    const ratio = sigmaT / sigmaS;
    const c = -alphaT * (Math.exp(-h) - 1);
    const isLast = i === this.timesteps.length - 1;
    const out = this.buffers.out(x.length, x);
    if (this.done === 0 || isLast) {
      // First order (DPM-Solver++ 1 = DDIM in λ): on the first step nothing to extrapolate from;
      // on the last (final σ = 0) diffusers also drops to first order.
      for (let k = 0; k < x.length; k++) out[k] = ratio * x[k]! + c * x0[k]!;
    } else {
      const [alphaP, sigmaP] = alphaSigma(this.sigmas[i - 1]!);
      const lambdaP = Math.log(alphaP) - Math.log(sigmaP);
      const r0 = (lambdaS - lambdaP) / h;
      // x' = ratio·x + c·D0 + 0.5·c·D1 with D1 = (x0 − x0_prev)/r0
      const half = (0.5 * c) / r0;
      for (let k = 0; k < x.length; k++) {
        const d0 = x0[k]!;
        out[k] = ratio * x[k]! + c * d0 + half * (d0 - prev![k]!);
      }
    }
    this.done++;
    return out;
  }

  addNoise(init: Float32Array, noise: Float32Array): Float32Array {
    checkLengths(init, noise);
    const [alpha, sigma] = alphaSigma(this.sigmas[0]!);
    const out = new Float32Array(init.length);
    for (let k = 0; k < init.length; k++) out[k] = alpha * init[k]! + sigma * noise[k]!;
    return out;
  }

  lastDenoised(): Float32Array | undefined {
    return this.done > 0 ? this.x0 : undefined;
  }

  noiseDraws(): number {
    return 0;
  }
}

// DDIM's update as two loops without a branch inside (one per parameterisation): per value
// x0 = predicted clean latent, ε = predicted noise, x' = √ᾱ_prev·x0 + √(1−ᾱ_prev)·ε.
function ddimStepEps(x: Float32Array, m: Float32Array, sa: number, sb: number, saPrev: number, sbPrev: number, x0: Float32Array, out: Float32Array): void {
  for (let k = 0; k < x.length; k++) {
    const eps = m[k]!;
    const pred0 = (x[k]! - sb * eps) / sa;
    x0[k] = pred0;
    out[k] = saPrev * pred0 + sbPrev * eps;
  }
}

function ddimStepV(x: Float32Array, m: Float32Array, sa: number, sb: number, saPrev: number, sbPrev: number, x0: Float32Array, out: Float32Array): void {
  for (let k = 0; k < x.length; k++) {
    const xk = x[k]!;
    const v = m[k]!;
    const pred0 = sa * xk - sb * v;
    x0[k] = pred0;
    out[k] = saPrev * pred0 + sbPrev * (sa * v + sb * xk);
  }
}

/** DDIM with η = 0 (deterministic), in VP space. */
class DdimSampler implements ScheduledSampler {
  readonly timesteps: number[];
  readonly sigmas: number[];
  readonly initNoiseSigma = 1;
  private readonly buffers = new Buffers();
  private readonly ac: Float64Array;
  private readonly finalAlphaCumprod: number;
  private readonly stride: number;
  private x0: Float32Array | undefined;

  constructor(
    cfg: SchedulerConfig,
    steps: number,
    spacing: TimestepSpacing,
    start: number,
    private readonly v: boolean,
  ) {
    this.ac = alphasCumprod(cfg);
    this.finalAlphaCumprod = (cfg.setAlphaToOne ?? true) ? 1 : this.ac[0]!;
    // diffusers steps back by N // n whatever the spacing.
    this.stride = Math.floor(cfg.numTrainTimesteps / steps);
    const ts = spacedTimesteps(spacing, steps, cfg.numTrainTimesteps, cfg.stepsOffset).map(roundHalfEven);
    this.timesteps = ts.slice(start);
    const toSigma = (a: number): number => Math.sqrt((1 - a) / a);
    this.sigmas = [...this.timesteps.map((t) => toSigma(this.alphaAt(t))), toSigma(this.alphaAt(this.timesteps[this.timesteps.length - 1]! - this.stride))];
  }

  private alphaAt(t: number): number {
    return t >= 0 ? this.ac[Math.min(t, this.ac.length - 1)]! : this.finalAlphaCumprod;
  }

  inputScale(i: number): number {
    checkIndex(i, this.timesteps.length);
    return 1;
  }

  step(i: number, x: Float32Array, modelOutput: Float32Array): Float32Array {
    checkIndex(i, this.timesteps.length);
    checkLengths(x, modelOutput);
    const t = this.timesteps[i]!;
    const a = this.alphaAt(t);
    const aPrev = this.alphaAt(t - this.stride);
    const sa = Math.sqrt(a);
    const sb = Math.sqrt(1 - a);
    const saPrev = Math.sqrt(aPrev);
    const sbPrev = Math.sqrt(1 - aPrev);
    if (!this.x0 || this.x0.length !== x.length) this.x0 = new Float32Array(x.length);
    const x0 = this.x0;
    const out = this.buffers.out(x.length, x);
    if (this.v) ddimStepV(x, modelOutput, sa, sb, saPrev, sbPrev, x0, out);
    else ddimStepEps(x, modelOutput, sa, sb, saPrev, sbPrev, x0, out);
    return out;
  }

  addNoise(init: Float32Array, noise: Float32Array): Float32Array {
    checkLengths(init, noise);
    const a = this.alphaAt(this.timesteps[0]!);
    const sa = Math.sqrt(a);
    const sb = Math.sqrt(1 - a);
    const out = new Float32Array(init.length);
    for (let k = 0; k < init.length; k++) out[k] = sa * init[k]! + sb * noise[k]!;
    return out;
  }

  lastDenoised(): Float32Array | undefined {
    return this.x0;
  }

  noiseDraws(): number {
    return 0;
  }
}

export function createSampler(name: SamplerName, cfg: SchedulerConfig, steps: number, opts?: { strength?: number }): ScheduledSampler {
  if (!Number.isInteger(steps) || steps < 1 || steps > cfg.numTrainTimesteps) {
    throw new RangeError(`steps must be an integer from 1 to ${cfg.numTrainTimesteps}, got ${steps}`);
  }
  const start = img2imgStart(steps, opts?.strength);
  const v = cfg.predictionType === 'v_prediction';
  switch (name) {
    case 'Euler':
      return new EulerSampler(cfg, steps, cfg.timestepSpacing ?? 'linspace', false, start, v);
    case 'Euler a':
      return new EulerSampler(cfg, steps, cfg.timestepSpacing ?? 'linspace', true, start, v);
    case 'Turbo':
      // Distilled few-step models are trained on trailing timesteps (t = 999 first) whatever
      // the folder's config says.
      return new EulerSampler(cfg, steps, 'trailing', false, start, v);
    case 'DPM++ 2M Karras':
      // Karras sigmas replace the spaced timesteps, so timestep_spacing has no effect here.
      return new DpmPp2mKarrasSampler(cfg, steps, start, v);
    case 'DDIM':
      return new DdimSampler(cfg, steps, cfg.timestepSpacing ?? 'leading', start, v);
    default: {
      const unknown: never = name;
      throw new RangeError(`unknown sampler ${JSON.stringify(unknown)}`);
    }
  }
}
