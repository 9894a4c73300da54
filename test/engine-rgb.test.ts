// The decoded picture → RGB bytes conversion runs once per picture on the engine thread; its fast
// rounding must give exactly what diffusers' formula gives, Math.round((x/2 + 0.5)·255) clamped.
import { describe, expect, it } from 'vitest';
import { modelOutputToRgb } from '../engine/pipeline.js';

function reference(x: number): number {
  const v = Math.min(1, Math.max(0, x / 2 + 0.5));
  return Number.isNaN(v) ? 0 : Math.round(v * 255);
}

describe('modelOutputToRgb', () => {
  it('rounds every float32 in [-1.05, 1.05] (a sweep of bit patterns) exactly as Math.round does', () => {
    const bits = new Uint32Array(1);
    const asFloat = new Float32Array(bits.buffer);
    const values: number[] = [];
    // Positive and negative float32 up to 1.05 (bit pattern 0x3f866666), every 211th pattern, plus
    // the values whose byte lies exactly halfway between two integers before float32 rounding.
    for (const sign of [0, 0x80000000]) {
      for (let b = 0; b <= 0x3f866666; b += 211) {
        bits[0] = (sign | b) >>> 0;
        values.push(asFloat[0]!);
      }
    }
    for (let k = 0; k < 255; k++) {
      const x = Math.fround((2 * (k + 0.5)) / 255 - 1);
      values.push(x, Math.fround(x + 1e-7), Math.fround(x - 1e-7));
    }
    values.push(Number.NaN, -Infinity, Infinity);
    // Pictures of one row: red plane holds the values, green and blue their negations and zero.
    const n = values.length;
    const decoded = new Float32Array(3 * n);
    for (let i = 0; i < n; i++) {
      decoded[i] = values[i]!;
      decoded[n + i] = -values[i]!;
    }
    const rgb = modelOutputToRgb(decoded, 0, n, 1);
    let mismatches = 0;
    for (let i = 0; i < n; i++) {
      const f = decoded[i]!;
      if (rgb[3 * i] !== reference(f) || rgb[3 * i + 1] !== reference(decoded[n + i]!) || rgb[3 * i + 2] !== 128) mismatches += 1;
    }
    expect(n).toBeGreaterThan(10_000_000);
    expect(mismatches).toBe(0);
  });

  it('takes picture j of a batch', () => {
    const decoded = new Float32Array(2 * 3 * 4);
    decoded.fill(1, 12); // picture 1 is white, picture 0 mid-grey
    expect([...modelOutputToRgb(decoded, 0, 2, 2)]).toEqual(new Array(12).fill(128));
    expect([...modelOutputToRgb(decoded, 1, 2, 2)]).toEqual(new Array(12).fill(255));
  });
});
