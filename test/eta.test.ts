// First ETAs come from a sane prior and say they are first estimates; measurements replace them.
import { describe, expect, it } from 'vitest';
import { formatEta } from '../commands/format.js';
import type { ExecutionProviderName } from '../engine/types.js';
import { cumulativeEtas, EtaModel } from '../src/jobs/eta.js';
import type { JobSpec } from '../src/jobs/types.js';

function spec(extra: Partial<JobSpec> = {}): JobSpec {
  return {
    prompt: 'a fox',
    negativePrompt: '',
    width: 512,
    height: 512,
    steps: 20,
    guidance: 7,
    sampler: 'Euler a',
    seed: 1,
    count: 1,
    model: 'sd15',
    ...extra,
  };
}

function model(provider: ExecutionProviderName = 'cuda', fixedPrior?: number): EtaModel {
  return new EtaModel({ provider: () => provider, ...(fixedPrior !== undefined ? { fixedPrior } : {}) });
}

describe('ETA prior', () => {
  it('before any measurement: a typical step time for the provider, scaled by pixels, guidance, pictures and UNet size', () => {
    const gpu = model('cuda');
    // 150 steps × 4 pictures of SD 1.5 at 512² on a GPU: about half a minute, not "about 5 min".
    expect(gpu.job(spec({ steps: 150, count: 4 }))).toEqual({ seconds: expect.closeTo(36, 6), approximate: true });
    expect(gpu.job(spec({ width: 1024, height: 1024 })).seconds).toBeCloseTo(4 * gpu.job(spec()).seconds, 6);
    expect(gpu.job(spec({ guidance: 1 })).seconds).toBeCloseTo(gpu.job(spec()).seconds / 2, 6);
    expect(gpu.job(spec({ sampler: 'Turbo', guidance: 7 })).seconds).toBeCloseTo(gpu.job(spec()).seconds / 2, 6);
    expect(model('cpu').job(spec()).seconds).toBeGreaterThan(20 * gpu.job(spec()).seconds);
    gpu.setModelScale('tiny', 0.01);
    expect(gpu.job(spec({ model: 'tiny' })).seconds).toBeCloseTo(gpu.job(spec()).seconds / 100, 6);
    // The configured figure wins over the typical one, whatever the size.
    expect(model('cpu', 0.5).job(spec({ steps: 10, count: 2, width: 1024 })).seconds).toBe(10);
  });

  it('is replaced by the running job\'s pace (still a first estimate), then by finished jobs, across sizes', () => {
    const eta = model('cpu');
    eta.observePace(spec(), 0.2, 1);
    expect(eta.job(spec({ steps: 10 }))).toEqual({ seconds: expect.closeTo(2, 6), approximate: true });
    // 20 steps × 2 pictures at 512² took 8 s: 0.2 s per step and picture, the VAE included.
    eta.record(spec({ count: 2 }), 8_000, 20);
    expect(eta.isMeasured('sd15')).toBe(true);
    expect(eta.job(spec({ steps: 10 }))).toEqual({ seconds: expect.closeTo(2, 6), approximate: false });
    expect(eta.job(spec({ steps: 10, width: 1024, height: 1024 })).seconds).toBeCloseTo(8, 6);
    // Another model is still unmeasured.
    expect(eta.job(spec({ model: 'other' })).approximate).toBe(true);
  });

  it('marks a queue ETA approximate when anything ahead of it is, and says so to the member', () => {
    const etas = cumulativeEtas({ seconds: 3, approximate: false }, [
      { seconds: 4, approximate: false },
      { seconds: 5, approximate: true },
      { seconds: 1, approximate: false },
    ]);
    expect(etas).toEqual([
      { seconds: 7, approximate: false },
      { seconds: 12, approximate: true },
      { seconds: 13, approximate: true },
    ]);
    expect(formatEta(36, true)).toBe('about 35 s, first estimate');
    expect(formatEta(36)).toBe('about 35 s');
    expect(formatEta(0.4, true)).toBe('in a moment (first estimate)');
  });
});
