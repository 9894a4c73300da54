import { describe, expect, it } from 'vitest';
import {
  alphasCumprod,
  createSampler,
  img2imgStart,
  parseSchedulerConfig,
  sigmaTable,
  type Sampler,
  type SchedulerConfig,
} from '../engine/schedulers.js';
import { TorchCpuGenerator } from '../engine/rng.js';
import type { SamplerName } from '../engine/types.js';

// runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json as first published (no
// timestep_spacing key: swapping in Euler then gives diffusers' default, linspace).
const SD15_SCHEDULER_JSON = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};
const SD15 = parseSchedulerConfig(SD15_SCHEDULER_JSON);

/** Reference tables (notes §3.5) are numpy float32 re-derivations; torch float32 differs in the 6th–7th digit. */
function expectSigmas(actual: readonly number[], expected: number[], tol = 2e-5): void {
  expect(actual.length).toBe(expected.length);
  expected.forEach((e, i) => {
    if (Math.abs(actual[i]! - e) > tol * Math.max(1, Math.abs(e))) throw new Error(`σ[${i}] = ${actual[i]}, expected ${e}`);
  });
}

describe('parseSchedulerConfig', () => {
  it('reads snake_case keys and keeps the class name', () => {
    expect(SD15).toMatchObject({
      numTrainTimesteps: 1000,
      betaStart: 0.00085,
      betaEnd: 0.012,
      betaSchedule: 'scaled_linear',
      predictionType: 'epsilon',
      timestepSpacing: undefined,
      stepsOffset: 1,
      setAlphaToOne: false,
      className: 'PNDMScheduler',
    });
  });

  it('fills diffusers defaults for missing keys', () => {
    expect(parseSchedulerConfig({})).toMatchObject({
      numTrainTimesteps: 1000,
      betaStart: 0.0001,
      betaEnd: 0.02,
      betaSchedule: 'linear',
      predictionType: 'epsilon',
      timestepSpacing: undefined,
      stepsOffset: 0,
      className: '',
    });
  });

  it('reads v_prediction, trailing spacing and zero-SNR rescaling', () => {
    const cfg = parseSchedulerConfig({ prediction_type: 'v_prediction', timestep_spacing: 'trailing', rescale_betas_zero_snr: true });
    expect(cfg.predictionType).toBe('v_prediction');
    expect(cfg.timestepSpacing).toBe('trailing');
    expect(cfg.rescaleBetasZeroSnr).toBe(true);
  });

  it.each([
    [[], /not a JSON object/],
    [{ beta_schedule: 'cosine' }, /beta_schedule is "cosine"; expected one of scaled_linear, linear, squaredcos_cap_v2/],
    [{ prediction_type: 'sample' }, /prediction_type.*not supported/],
    [{ prediction_type: 'flow' }, /prediction_type is "flow"/],
    [{ timestep_spacing: 'uniform' }, /timestep_spacing is "uniform"/],
    [{ num_train_timesteps: 0 }, /num_train_timesteps is 0/],
    [{ num_train_timesteps: '1000' }, /num_train_timesteps is "1000"/],
    [{ beta_start: 0.02, beta_end: 0.01 }, /beta_end is 0.01; expected a value ≥ beta_start/],
    [{ beta_end: 1.5 }, /beta_end is 1.5/],
    [{ steps_offset: -1 }, /steps_offset is -1/],
    [{ trained_betas: [0.1, 0.2] }, /trained_betas.*1000 numbers/],
    [{ set_alpha_to_one: 'yes' }, /set_alpha_to_one is "yes"; expected true or false/],
  ])('rejects nonsense: %j', (json, message) => {
    expect(() => parseSchedulerConfig(json)).toThrow(message);
  });
});

describe('noise tables', () => {
  it('SD 1.5 ᾱ and σ ends (notes §3.5; torch float32 gives σ_max 14.614645)', () => {
    const ac = alphasCumprod(SD15);
    expect(ac.length).toBe(1000);
    expect(ac[0]).toBeCloseTo(0.99915, 5);
    expect(ac[999]).toBeCloseTo(0.0046601, 6);
    const s = sigmaTable(SD15);
    expect(s[0]).toBeCloseTo(0.0291675, 6);
    expect(Math.abs(s[999]! - 14.614645)).toBeLessThan(1e-5);
  });

  it('linear and cosine schedules are monotone and within (0, 1)', () => {
    for (const beta_schedule of ['linear', 'squaredcos_cap_v2']) {
      const ac = alphasCumprod(parseSchedulerConfig({ beta_schedule }));
      for (let i = 1; i < ac.length; i++) expect(ac[i]!).toBeLessThan(ac[i - 1]!);
      expect(ac[999]!).toBeGreaterThan(0);
    }
    // DDPM's linear schedule: ᾱ_999 ≈ 4.04e-5.
    expect(alphasCumprod(parseSchedulerConfig({}))[999]).toBeCloseTo(4.04e-5, 6);
  });

  it('zero-SNR rescaling ends at ᾱ = 2^-24 and keeps ᾱ_0', () => {
    const plain = alphasCumprod(SD15);
    const ac = alphasCumprod({ ...SD15, rescaleBetasZeroSnr: true });
    expect(ac[999]).toBe(2 ** -24);
    expect(ac[0]).toBeCloseTo(plain[0]!, 6);
  });
});

describe('schedules (diffusers reference numbers, notes §3.5)', () => {
  it('Euler, 20 steps, SD 1.5 config → linspace', () => {
    const s = createSampler('Euler', SD15, 20);
    expectSigmas(s.sigmas, [
      14.614655, 10.746857, 8.081541, 6.204954, 4.855667, 3.865386, 3.123769, 2.557169, 2.115662, 1.764825, 1.480582, 1.245815,
      1.048143, 0.87843, 0.729719, 0.596435, 0.473586, 0.355547, 0.232168, 0.029168, 0,
    ]);
    expect(s.timesteps[0]).toBe(999);
    expect(s.timesteps[1]).toBeCloseTo(946.42, 2);
    expect(s.timesteps[18]).toBeCloseTo(52.58, 2);
    expect(s.timesteps[19]).toBe(0);
    expect(s.initNoiseSigma).toBeCloseTo(14.61465, 4);
    expect(s.inputScale(0)).toBeCloseTo(1 / Math.sqrt(14.614647 ** 2 + 1), 7);
  });

  it('DPM++ 2M Karras, 20 steps', () => {
    const s = createSampler('DPM++ 2M Karras', SD15, 20);
    expectSigmas(s.sigmas, [
      14.61466, 11.72538, 9.34022, 7.38363, 5.78943, 4.49985, 3.46476, 2.64085, 1.99092, 1.48322, 1.09079, 0.79095, 0.56473,
      0.39639, 0.27304, 0.18417, 0.12134, 0.07786, 0.04848, 0.02917, 0,
    ], 3e-5);
    expect(s.timesteps).toEqual([999, 962, 921, 876, 827, 772, 710, 640, 561, 474, 380, 285, 197, 123, 69, 35, 15, 6, 2, 0]);
    expect(s.initNoiseSigma).toBe(1);
    expect(s.inputScale(3)).toBe(1);
  });

  it('trailing spacing (Turbo, or a config that asks for it): 999, 949, …, 49', () => {
    const s = createSampler('Turbo', SD15, 20);
    expect(s.timesteps).toEqual(Array.from({ length: 20 }, (_, k) => 999 - 50 * k));
    expect(s.sigmas[0]).toBeCloseTo(14.61465, 4);
    expect(s.sigmas[19]).toBeCloseTo(0.223004, 5);
    expect(s.initNoiseSigma).toBeCloseTo(14.61465, 4);
    const fromConfig = createSampler('Euler', { ...SD15, timestepSpacing: 'trailing' }, 20);
    expect(fromConfig.timesteps).toEqual(s.timesteps);
  });

  it('Turbo few-step timesteps: 1 → [999], 2 → [999, 499], 4 → [999, 749, 499, 249]', () => {
    expect(createSampler('Turbo', SD15, 1).timesteps).toEqual([999]);
    expect(createSampler('Turbo', SD15, 2).timesteps).toEqual([999, 499]);
    expect(createSampler('Turbo', SD15, 4).timesteps).toEqual([999, 749, 499, 249]);
    // One step: UNet input x·0.0682648, and with final σ = 0 the step returns x0 exactly.
    expect(createSampler('Turbo', SD15, 1).inputScale(0)).toBeCloseTo(0.0682648, 6);
  });

  it('trailing spacing always yields exactly n steps (numpy arange would give n+1 for n = 61)', () => {
    for (const n of [61, 103, 121, 122]) expect(createSampler('Turbo', SD15, n).timesteps.length).toBe(n);
  });

  it('leading spacing with steps_offset 1 (Euler from an SDXL-style config)', () => {
    const s = createSampler('Euler', { ...SD15, timestepSpacing: 'leading' }, 20);
    expect(s.timesteps).toEqual(Array.from({ length: 20 }, (_, k) => 951 - 50 * k));
    expect(s.sigmas[0]).toBeCloseTo(11.028342, 4);
    expect(s.sigmas[19]).toBeCloseTo(0.041314, 5);
    expect(s.initNoiseSigma).toBeCloseTo(11.0736, 4);
  });

  it('DDIM defaults to leading + offset: 20 → 951…1, 50 → 981, 961, …, 1', () => {
    const s20 = createSampler('DDIM', SD15, 20);
    expect(s20.timesteps).toEqual(Array.from({ length: 20 }, (_, k) => 951 - 50 * k));
    const s50 = createSampler('DDIM', SD15, 50);
    expect(s50.timesteps.slice(0, 3)).toEqual([981, 961, 941]);
    expect(s50.timesteps.at(-1)).toBe(1);
    expect(s50.initNoiseSigma).toBe(1);
  });

  it('Euler a, step 0: σ_up 7.28304, σ_down 7.90268 (checked through the update itself)', () => {
    const s = createSampler('Euler a', SD15, 20);
    const x = Float32Array.of(0);
    // With model output ε = 0, x0 = x = 0, so the new latent is exactly z·σ_up.
    let drawn = 0;
    const out = s.step(0, x, Float32Array.of(0), () => {
      drawn++;
      return Float32Array.of(1);
    });
    expect(drawn).toBe(1);
    expect(out[0]).toBeCloseTo(7.28304, 4);
    // With x = 1 and ε = 1 (x0 = 1 − σ), the deterministic part moves by d·(σ_down − σ) = σ_down − σ.
    const s2 = createSampler('Euler a', SD15, 20);
    const out2 = s2.step(0, Float32Array.of(1), Float32Array.of(1), () => Float32Array.of(0));
    expect(out2[0]! - 1 + s2.sigmas[0]!).toBeCloseTo(7.90268, 4);
  });

  it('img2img: n = 20, strength 0.75 → starts at step 5, σ 3.86539', () => {
    expect(img2imgStart(20, 0.75)).toBe(5);
    const s = createSampler('Euler', SD15, 20, { strength: 0.75 });
    expect(s.timesteps.length).toBe(15);
    expect(s.timesteps[0]).toBeCloseTo(736.105, 2);
    expect(s.sigmas[0]).toBeCloseTo(3.86539, 4);
    const noised = s.addNoise(Float32Array.of(1, -1), Float32Array.of(1, 2));
    expect(noised[0]).toBeCloseTo(1 + 3.86539, 4);
    expect(noised[1]).toBeCloseTo(-1 + 2 * 3.86539, 4);
  });

  it('img2img on VP samplers uses sqrt(ᾱ)·init + sqrt(1−ᾱ)·z at the first remaining step', () => {
    const ac = alphasCumprod(SD15);
    const ddim = createSampler('DDIM', SD15, 20, { strength: 0.5 });
    expect(ddim.timesteps[0]).toBe(451);
    const [a] = ddim.addNoise(Float32Array.of(2), Float32Array.of(3));
    expect(a).toBeCloseTo(Math.sqrt(ac[451]!) * 2 + Math.sqrt(1 - ac[451]!) * 3, 5);
    const dpm = createSampler('DPM++ 2M Karras', SD15, 20, { strength: 0.5 });
    expect(dpm.timesteps[0]).toBe(380);
    const sigma = dpm.sigmas[0]!;
    const [b] = dpm.addNoise(Float32Array.of(2), Float32Array.of(3));
    expect(b).toBeCloseTo((2 + sigma * 3) / Math.sqrt(sigma * sigma + 1), 5);
  });

  it('a strength too small for one step still runs one step; bad strengths are refused', () => {
    expect(img2imgStart(4, 0.1)).toBe(3);
    expect(createSampler('Turbo', SD15, 4, { strength: 0.1 }).timesteps).toEqual([249]);
    expect(img2imgStart(20, 1)).toBe(0);
    for (const bad of [0, -0.5, 1.5, Number.NaN]) expect(() => createSampler('Euler', SD15, 20, { strength: bad })).toThrow(/strength/);
  });

  it('refuses impossible step counts and mismatched buffers', () => {
    expect(() => createSampler('Euler', SD15, 0)).toThrow(/steps must be an integer/);
    expect(() => createSampler('Euler', SD15, 2.5)).toThrow(/steps must be an integer/);
    expect(() => createSampler('Euler', SD15, 1001)).toThrow(/steps must be an integer/);
    const s = createSampler('Euler', SD15, 4);
    expect(() => s.step(0, new Float32Array(4), new Float32Array(3), () => new Float32Array(4))).toThrow(/model output/);
    expect(() => s.step(4, new Float32Array(4), new Float32Array(4), () => new Float32Array(4))).toThrow(/out of range/);
  });
});

// ---------------------------------------------------------------------------------------------
// Oracle models: the exact denoiser for known data, written from the training definition
// x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε, independent of any sampler code. The oracle reads ᾱ for
// the timestep the sampler passes (σ interpolated linearly in t, as diffusers does for fractional
// timesteps) and recovers the VE latent from the *scaled* input, so a sampler whose timesteps,
// input scaling or σ disagree gets wrong predictions.

type Model = (xIn: Float32Array, t: number) => Float32Array;

function oracleSigma(table: Float64Array, t: number): number {
  const lo = Math.min(Math.max(Math.floor(t), 0), table.length - 1);
  const hi = Math.min(lo + 1, table.length - 1);
  return table[lo]! + (table[hi]! - table[lo]!) * (t - lo);
}

/** Data = N(μ, s²) per coordinate: D(x, σ) = μ + s²/(s²+σ²)·(x − μ). s = 0 is a single point x0 = μ. */
function gaussianOracle(cfg: SchedulerConfig, mu: Float32Array, s: number): Model {
  const table = sigmaTable(cfg);
  const v = cfg.predictionType === 'v_prediction';
  return (xIn, t) => {
    const sigma = oracleSigma(table, t);
    const abar = 1 / (1 + sigma * sigma);
    const sa = Math.sqrt(abar);
    const sb = Math.sqrt(1 - abar);
    const out = new Float32Array(xIn.length);
    for (let k = 0; k < xIn.length; k++) {
      const xve = xIn[k]! / sa;
      const d = mu[k]! + ((s * s) / (s * s + sigma * sigma)) * (xve - mu[k]!);
      const eps = (xve - d) / sigma;
      out[k] = v ? sa * eps - sb * d : eps;
    }
    return out;
  };
}

const VP_SAMPLERS = new Set<SamplerName>(['DPM++ 2M Karras', 'DDIM']);
const N = 512;

/** The denoising loop exactly as the pipeline runs it (txt2img). */
function denoise(
  sampler: Sampler & { sigmas: readonly number[] },
  name: SamplerName,
  model: Model,
  seed: number,
  onStep?: (i: number, s: Sampler) => void,
): { x: Float32Array; xStartVe: Float32Array; sigmaStart: number; noiseDraws: number } {
  const gen = new TorchCpuGenerator(seed);
  let x: Float32Array = gen.randn(N).map((z) => z * sampler.initNoiseSigma);
  const sigmaStart = sampler.sigmas[0]!;
  const toVe = VP_SAMPLERS.has(name) ? Math.sqrt(1 + sigmaStart * sigmaStart) : 1;
  const xStartVe = x.map((v) => v * toVe);
  let noiseDraws = 0;
  for (let i = 0; i < sampler.timesteps.length; i++) {
    const scale = sampler.inputScale(i);
    const out = model(x.map((v) => v * scale), sampler.timesteps[i]!);
    x = sampler.step(i, x, out, () => {
      noiseDraws++;
      return gen.randn(N);
    });
    onStep?.(i, sampler);
  }
  return { x: Float32Array.from(x), xStartVe, sigmaStart, noiseDraws };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]! - b[k]!));
  return m;
}

const X0 = new TorchCpuGenerator(2024).randn(N).map((v) => v * 0.8 + 0.1);
const DDIM_TO_ONE: SchedulerConfig = { ...SD15, setAlphaToOne: true };

describe.each(['epsilon', 'v_prediction'] as const)('oracle for one known x0 (%s)', (predictionType) => {
  const cases: [SamplerName, string, SchedulerConfig, number][] = [
    ['Euler', 'linspace', SD15, 20],
    ['Euler', 'leading', { ...SD15, timestepSpacing: 'leading' }, 20],
    ['Euler a', 'linspace', SD15, 20],
    ['DPM++ 2M Karras', 'karras', SD15, 20],
    ['DPM++ 2M Karras', 'karras', SD15, 7],
    ['DDIM', 'leading, ᾱ_final = 1', DDIM_TO_ONE, 20],
    ['Turbo', 'trailing', SD15, 1],
    ['Turbo', 'trailing', SD15, 4],
  ];
  it.each(cases)('%s lands on x0 (%s, %i steps)', (name, _label, base, steps) => {
    const cfg = { ...base, predictionType };
    const sampler = createSampler(name, cfg, steps);
    const model = gaussianOracle(cfg, X0, 0);
    const exactDenoiser = name !== 'DPM++ 2M Karras'; // DPM rounds its timesteps, so σ ≠ σ(t) mid-way
    const { x, noiseDraws } = denoise(sampler, name, model, 1, (_i, s) => {
      if (exactDenoiser) expect(maxAbsDiff(s.lastDenoised()!, X0)).toBeLessThan(1e-3);
    });
    expect(maxAbsDiff(x, X0)).toBeLessThan(1e-4);
    // Only Euler a draws noise, once per step except the last (σ_up = 0 there).
    expect(noiseDraws).toBe(name === 'Euler a' ? steps - 1 : 0);
  });

  it('DDIM with set_alpha_to_one = false stops at ᾱ₀: sqrt(ᾱ₀)·x0 + sqrt(1−ᾱ₀)·ε', () => {
    const cfg = { ...SD15, predictionType };
    const sampler = createSampler('DDIM', cfg, 20);
    const { x } = denoise(sampler, 'DDIM', gaussianOracle(cfg, X0, 0), 1);
    const ac = alphasCumprod(cfg);
    const aT = ac[sampler.timesteps[0]!]!;
    const z = new TorchCpuGenerator(1).randn(N);
    // Along the exact path ε is constant: ε = (x_T − sqrt(ᾱ_T)·x0)/sqrt(1−ᾱ_T).
    const expected = z.map((zk, k) => {
      const eps = (zk - Math.sqrt(aT) * X0[k]!) / Math.sqrt(1 - aT);
      return Math.sqrt(ac[0]!) * X0[k]! + Math.sqrt(1 - ac[0]!) * eps;
    });
    expect(maxAbsDiff(x, expected)).toBeLessThan(1e-4);
    expect(maxAbsDiff(x, X0)).toBeGreaterThan(1e-2);
  });

  it('img2img from a noised init also lands on x0', () => {
    const cfg = { ...SD15, predictionType };
    for (const name of ['Euler', 'DPM++ 2M Karras', 'DDIM'] as SamplerName[]) {
      const sampler = createSampler(name, name === 'DDIM' ? { ...DDIM_TO_ONE, predictionType } : cfg, 20, { strength: 0.6 });
      const model = gaussianOracle(cfg, X0, 0);
      const init = X0.map((v) => v + 0.3);
      let x = sampler.addNoise(init, new TorchCpuGenerator(5).randn(N));
      for (let i = 0; i < sampler.timesteps.length; i++) {
        const scale = sampler.inputScale(i);
        x = sampler.step(i, x, model(x.map((v) => v * scale), sampler.timesteps[i]!), () => new Float32Array(N));
      }
      expect(sampler.timesteps.length).toBe(12);
      expect(maxAbsDiff(x, X0)).toBeLessThan(1e-4);
    }
  });
});

describe('the oracle catches broken samplers', () => {
  const cfg = SD15;
  const model = gaussianOracle(cfg, X0, 0);
  const mutants: [string, SamplerName, (s: Sampler & { sigmas: number[] }) => Sampler & { sigmas: number[] }][] = [
    ['timesteps off by one', 'Euler', (s) => withOverrides(s, { timesteps: s.timesteps.map((t) => t + 1) })],
    ['timesteps off by one', 'DPM++ 2M Karras', (s) => withOverrides(s, { timesteps: s.timesteps.map((t) => t + 1) })],
    ['timesteps off by one', 'DDIM', (s) => withOverrides(s, { timesteps: s.timesteps.map((t) => t + 1) })],
    ['timesteps shifted by one step', 'Euler', (s) => withOverrides(s, { timesteps: [s.timesteps[0]!, ...s.timesteps.slice(0, -1)] })],
    ['no input scaling', 'Euler', (s) => withOverrides(s, { inputScale: () => 1 })],
  ];
  it.each(mutants)('%s (%s) misses x0', (_what, name, mutate) => {
    const base = createSampler(name, name === 'DDIM' ? DDIM_TO_ONE : cfg, 20);
    const { x } = denoise(mutate(base), name, model, 1);
    expect(maxAbsDiff(x, X0)).toBeGreaterThan(1e-3);
  });
});

function withOverrides<S extends Sampler & { sigmas: number[] }>(s: S, o: { timesteps?: number[]; inputScale?: (i: number) => number }): S {
  return new Proxy(s, {
    get(target, prop, receiver) {
      if (prop === 'timesteps' && o.timesteps) return o.timesteps;
      if (prop === 'inputScale' && o.inputScale) return o.inputScale;
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...args: unknown[]) => unknown).bind(target) : v;
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Gaussian data (s > 0): the denoiser is no longer trivial and the probability-flow ODE has the
// closed form x(σ) − μ = (x_start − μ)·sqrt(s²+σ²)/sqrt(s²+σ_start²), so the solvers' accuracy
// and order show: first-order samplers halve their error when steps double, DPM++ 2M does better.

describe('solver accuracy on Gaussian data (closed-form probability-flow ODE)', () => {
  const s = 0.5;
  const mu = new TorchCpuGenerator(9).randn(N);
  function error(name: SamplerName, steps: number, predictionType: 'epsilon' | 'v_prediction' = 'epsilon'): number {
    const cfg = { ...(name === 'DDIM' ? DDIM_TO_ONE : SD15), predictionType };
    const { x, xStartVe, sigmaStart } = denoise(createSampler(name, cfg, steps), name, gaussianOracle(cfg, mu, s), 1);
    const factor = s / Math.sqrt(s * s + sigmaStart * sigmaStart);
    return maxAbsDiff(x, xStartVe.map((v, k) => mu[k]! + (v - mu[k]!) * factor));
  }

  it.each(['Euler', 'DDIM', 'Turbo'] as SamplerName[])('%s is first order: doubling the steps halves the error', (name) => {
    const e20 = error(name, 20);
    const e40 = error(name, 40);
    expect(e40).toBeLessThan(e20);
    expect(e20 / e40).toBeGreaterThan(1.6);
    expect(e20 / e40).toBeLessThan(2.4);
  });

  it.each(['epsilon', 'v_prediction'] as const)('DPM++ 2M Karras is second order and far ahead of Euler (%s)', (pred) => {
    const e10 = error('DPM++ 2M Karras', 10, pred);
    const e20 = error('DPM++ 2M Karras', 20, pred);
    expect(e10 / e20).toBeGreaterThan(3);
    expect(e20).toBeLessThan(error('Euler', 20, pred) / 5);
  });
});

describe('buffers', () => {
  it('step() never overwrites the latent it was given, and lastDenoised() follows the last step', () => {
    for (const name of ['Euler', 'Euler a', 'DPM++ 2M Karras', 'DDIM'] as SamplerName[]) {
      const sampler = createSampler(name, SD15, 5);
      expect(sampler.lastDenoised()).toBeUndefined();
      const model = gaussianOracle(SD15, X0, 0);
      let x: Float32Array = new TorchCpuGenerator(3).randn(N).map((v) => v * sampler.initNoiseSigma);
      for (let i = 0; i < 5; i++) {
        const before = Float32Array.from(x);
        const scale = sampler.inputScale(i);
        const next = sampler.step(i, x, model(x.map((v) => v * scale), sampler.timesteps[i]!), () => new Float32Array(N));
        expect(Array.from(x)).toEqual(Array.from(before));
        expect(next).not.toBe(x);
        x = next;
      }
      expect(sampler.lastDenoised()!.length).toBe(N);
    }
  });
});
