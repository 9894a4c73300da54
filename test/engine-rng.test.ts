import { describe, expect, it } from 'vitest';
import { slerp, TorchCpuGenerator } from '../engine/rng.js';

// Reference values marked "torch" were produced with Debian's python3-torch 1.13 on x86-64:
//   g = torch.Generator().manual_seed(SEED); torch.randn(SHAPE, generator=g)
// (script kept in the H1 report). The others are the widely quoted PyTorch outputs from
// ../shared/notes/engine.md §4.1. Tests never need torch at run time.

function expectClose(actual: ArrayLike<number>, expected: number[], tol = 1e-6): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i]! - expected[i]!);
    if (diff > tol) throw new Error(`index ${i}: got ${actual[i]}, expected ${expected[i]} (diff ${diff})`);
  }
}

describe('TorchCpuGenerator (MT19937)', () => {
  it('reproduces the MT19937 stream of manual_seed(137)', () => {
    const g = new TorchCpuGenerator(137);
    const got = Array.from({ length: 5 }, () => g.nextU32());
    expect(got).toEqual([4053805790, 2173880614, 380293709, 1237255315, 2986595568]);
  });

  it('matches std::mt19937 with the default seed after many twists', () => {
    // The C++ standard fixes the 10000th output of mt19937 seeded with 5489.
    const g = new TorchCpuGenerator(5489);
    let v = 0;
    for (let i = 0; i < 10000; i++) v = g.nextU32();
    expect(v).toBe(4123659995);
  });

  it('keeps only the low 32 bits of the seed, like manual_seed', () => {
    const a = new TorchCpuGenerator(2 ** 32 + 7).randn(16);
    const b = new TorchCpuGenerator(7).randn(16);
    expect(Array.from(a)).toEqual(Array.from(b));
  });
});

describe('TorchCpuGenerator.randn float path (numel ≥ 16)', () => {
  it('seed 0, 1×4×64×64: start, middle and end', () => {
    const d = new TorchCpuGenerator(0).randn(16384);
    expectClose(d.subarray(0, 6), [-1.1258398, -1.1523602, -0.2505786, -0.4338788, 0.8487104, 0.6920092]);
    // torch
    expectClose(d.subarray(8190, 8194), [-1.0686759948730469, -0.18562829494476318, 0.2651572823524475, -0.7908123731613159]);
    expectClose(d.subarray(16381), [0.0907839, -1.3664708, -1.078208]);
  });

  it('seed 42, 1×4×64×64', () => {
    const d = new TorchCpuGenerator(42).randn(16384);
    expectClose(d.subarray(0, 6), [1.926915, 1.4872842, 0.9007172, -2.1055214, 0.6784185, -1.234545]);
  });

  it('seed 2^32−1, 1×4×8×8 (torch)', () => {
    const d = new TorchCpuGenerator(2 ** 32 - 1).randn(256);
    expectClose(d.subarray(0, 4), [-2.664297580718994, -1.0910485982894897, 0.45144742727279663, 0.22836069762706757]);
    expectClose(d.subarray(254), [0.4424837529659271, 0.750249445438385]);
  });

  it('redraws the tail block when numel is not a multiple of 16 (n = 20, torch)', () => {
    const d = new TorchCpuGenerator(0).randn(20);
    expectClose(d, [
      -1.1258398294448853, -1.152360200881958, -0.2505785822868347, -0.4338788092136383, 0.5988394618034363,
      -1.5550950765609741, -0.3413603901863098, 1.85300612449646, 0.46809640526771545, -0.1577124446630478,
      1.4436601400375366, 0.26604941487312317, 1.3893661499023438, 1.586334228515625, 0.946298360824585,
      -0.843676745891571, 0.9318265914916992, 1.2590092420578003, 2.0049805641174316, 0.05373690277338028,
    ]);
  });

  it('n = 17 (one value past a block, torch)', () => {
    const d = new TorchCpuGenerator(7).randn(17);
    expectClose(d, [
      -0.8201345205307007, -0.32456663250923157, 1.9263681173324585, -0.3300117254257202, 0.19844505190849304,
      0.7820726633071899, 1.0391076803207397, -0.7245107293128967, -0.8489086031913757, -0.21534152328968048,
      -1.8157286643981934, -0.3452419638633728, -2.0614778995513916, 0.6741006970405579, -1.3233457803726196,
      -1.3597689867019653, -0.866701602935791,
    ]);
  });

  it('successive calls continue the same stream (per-step ancestral noise, torch)', () => {
    const g = new TorchCpuGenerator(123);
    g.randn(32);
    const second = g.randn(32);
    expectClose(second.subarray(0, 4), [-1.3249573707580566, 0.17842844128608704, -2.1337530612945557, 1.052357792854309]);
    expectClose(second.subarray(30), [0.18383125960826874, 0.22934740781784058]);
  });

  it('fills a caller-supplied buffer and rejects a wrong-sized one', () => {
    const buf = new Float32Array(16384);
    const out = new TorchCpuGenerator(0).randn(16384, buf);
    expect(out).toBe(buf);
    expect(buf[0]).toBeCloseTo(-1.1258398, 6);
    expect(() => new TorchCpuGenerator(0).randn(10, new Float32Array(11))).toThrow(/expected 10/);
  });
});

describe('TorchCpuGenerator.randn double path (numel < 16)', () => {
  it('seed 0, randn(4)', () => {
    expectClose(new TorchCpuGenerator(0).randn(4), [1.5409961, -0.2934289, -2.1787894, 0.5684313]);
  });

  it('caches the second Box–Muller value across calls (torch)', () => {
    const g = new TorchCpuGenerator(5);
    expectClose(g.randn(3), [-0.4867807626724243, -0.6038215756416321, -0.5580962300300598]);
    expectClose(g.randn(3), [0.6675242781639099, -0.19741509854793549, 1.9427834749221802]);
  });

  it('the float path neither uses nor clears the cached value (torch)', () => {
    const g = new TorchCpuGenerator(5);
    g.randn(3);
    expectClose(g.randn(16).subarray(0, 2), [0.2582516372203827, -1.8833262920379639]);
    expectClose(g.randn(1), [0.6675242781639099]);
  });
});

describe('slerp (AUTOMATIC1111 variation seed)', () => {
  it('matches A1111 slerp on a C×H×W noise (torch reference, shape 4×8×6, t = 0.3)', () => {
    const a = new TorchCpuGenerator(1).randn(192);
    const b = new TorchCpuGenerator(2).randn(192);
    const r = slerp(0.3, a, b, { channels: 4, height: 8, width: 6 });
    expectClose(r.subarray(0, 3), [-1.6395906209945679, -0.24771910905838013, -1.3997224569320679], 2e-6);
    expectClose(r.subarray(100, 102), [1.5200445652008057, -0.980405330657959], 2e-6);
    expectClose(r.subarray(190), [-0.824907660484314, 1.2718689441680908], 2e-6);
  });

  it('returns the endpoints at t = 0 and t = 1 and keeps the norm of unit-norm inputs', () => {
    const a = new TorchCpuGenerator(10).randn(4096);
    const b = new TorchCpuGenerator(11).randn(4096);
    expectClose(slerp(0, a, b), Array.from(a), 1e-5);
    expectClose(slerp(1, a, b), Array.from(b), 1e-5);
    const na = Math.hypot(...a);
    const unitA = a.map((v) => v / na);
    const nb = Math.hypot(...b);
    const unitB = b.map((v) => v / nb);
    const mid = slerp(0.5, unitA, unitB);
    expect(Math.hypot(...mid)).toBeCloseTo(1, 5);
    // A plain lerp of two near-orthogonal unit vectors would shrink to about 0.707.
  });

  it('falls back to lerp for (nearly) parallel vectors instead of dividing by sin(0)', () => {
    const a = Float32Array.from([1, 2, 3, 4]);
    const r = slerp(0.25, a, a);
    expect(Array.from(r)).toEqual([1, 2, 3, 4]);
    expect(r.every(Number.isFinite)).toBe(true);
  });

  it('rejects mismatched inputs', () => {
    expect(() => slerp(0.5, new Float32Array(4), new Float32Array(5))).toThrow(/lengths differ/);
    expect(() => slerp(0.5, new Float32Array(10), new Float32Array(10), { channels: 4, height: 2, width: 2 })).toThrow(/shape/);
  });
});
