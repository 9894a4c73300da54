import { describe, expect, it } from 'vitest';
import { float16BitsToFloat32 } from '../engine/fp16.js';
import { guideFloats, guideHalves } from '../engine/guidance.js';

/** Halves worth checking as either operand: signed zeros, subnormals, the normal limits, a
 * rounding neighbourhood of 1, infinities and NaNs (quiet and signalling, both signs). */
const EDGES = [
  0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x83ff, 0x0400, 0x8400, 0x3bff, 0x3c00, 0x3c01, 0xbc00, 0x7bff, 0xfbff,
  0x7c00, 0xfc00, 0x7c01, 0x7e00, 0xfe00, 0xfdff,
];

const bytes = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('guidance', () => {
  it('guideFloats computes ε_u + g·(ε_c − ε_u) per value from the [uncond, cond] halves', () => {
    const dest = new Float32Array(2);
    guideFloats(Float32Array.of(1, -2, 3, 0.5), 7.5, dest);
    expect(Array.from(dest)).toEqual([1 + 7.5 * 2, -2 + 7.5 * 2.5]);
  });

  it('guideHalves equals converting to float32 then guideFloats, bit for bit, on every pair of edge halves', () => {
    const n = EDGES.length * EDGES.length;
    const halves = new Uint16Array(2 * n);
    EDGES.forEach((u, i) => EDGES.forEach((c, j) => {
      halves[i * EDGES.length + j] = u;
      halves[n + i * EDGES.length + j] = c;
    }));
    for (const g of [7, 7.5, 1 / 3, 0, -1]) {
      const want = new Float32Array(n);
      guideFloats(float16BitsToFloat32(halves), g, want);
      const got = new Float32Array(n);
      guideHalves(halves, g, got);
      expect(bytes(got).equals(bytes(want))).toBe(true);
    }
  });

  it('guideHalves equals the float32 route on every half as uncond and as cond', () => {
    const n = 65536;
    const halves = new Uint16Array(2 * n);
    for (let h = 0; h < n; h++) {
      halves[h] = h;
      halves[n + h] = (h * 40503) & 0xffff; // a permutation: every half meets a different partner
    }
    const want = new Float32Array(n);
    guideFloats(float16BitsToFloat32(halves), 7.5, want);
    const got = new Float32Array(n);
    guideHalves(halves, 7.5, got);
    expect(bytes(got).equals(bytes(want))).toBe(true);
  });

  it('refuses an output that is not twice the destination', () => {
    expect(() => guideHalves(new Uint16Array(5), 7, new Float32Array(2))).toThrow(/5 values, expected 2 × 2/);
    expect(() => guideFloats(new Float32Array(3), 7, new Float32Array(2))).toThrow(/3 values/);
  });
});
