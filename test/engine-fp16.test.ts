import { describe, expect, it } from 'vitest';
import { float16BitsToFloat32, float32ToFloat16Bits, halfValue } from '../engine/fp16.js';

const toHalf = (x: number): number => float32ToFloat16Bits(Float32Array.of(x))[0]!;
const fromHalf = (h: number): number => float16BitsToFloat32(Uint16Array.of(h))[0]!;

describe('float32ToFloat16Bits', () => {
  it('encodes exact values', () => {
    expect(toHalf(2)).toBe(0x4000);
    expect(toHalf(1)).toBe(0x3c00);
    expect(toHalf(-2)).toBe(0xc000);
    expect(toHalf(0.5)).toBe(0x3800);
    expect(toHalf(65504)).toBe(0x7bff);
    expect(toHalf(2 ** -14)).toBe(0x0400); // smallest normal
    expect(toHalf(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toHalf(1023 * 2 ** -24)).toBe(0x03ff); // largest subnormal
  });

  it('keeps signed zeros, infinities and NaN', () => {
    expect(toHalf(0)).toBe(0x0000);
    expect(toHalf(-0)).toBe(0x8000);
    expect(toHalf(Infinity)).toBe(0x7c00);
    expect(toHalf(-Infinity)).toBe(0xfc00);
    const nan = toHalf(NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x3ff).not.toBe(0);
  });

  it('quiets signalling NaNs whose payload lives only in the low bits (never turns them into Inf)', () => {
    const src = new Float32Array(1);
    new Uint32Array(src.buffer)[0] = 0x7f800001;
    const h = float32ToFloat16Bits(src)[0]!;
    expect(h & 0x7c00).toBe(0x7c00);
    expect(h & 0x3ff).not.toBe(0);
  });

  it('overflows to infinity exactly from 65520 (the tie rounds to even = Inf)', () => {
    expect(toHalf(65519.996)).toBe(0x7bff);
    expect(toHalf(65520)).toBe(0x7c00);
    expect(toHalf(-1e6)).toBe(0xfc00);
  });

  it('rounds ties to even, in normals and subnormals', () => {
    // Between 1 and 1+2^-10 the midpoint 1+2^-11 goes down to the even 1.
    expect(toHalf(1 + 2 ** -11)).toBe(0x3c00);
    // Between 1+2^-10 (odd) and 1+2^-9 (even) the midpoint goes up.
    expect(toHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(toHalf(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above a tie goes up
    // Subnormal ties: 2^-25 is halfway between 0 and the smallest subnormal → 0 (even).
    expect(toHalf(2 ** -25)).toBe(0x0000);
    expect(toHalf(3 * 2 ** -25)).toBe(0x0002);
    expect(toHalf(2 ** -25 * 1.0001)).toBe(0x0001);
    // A carry out of the mantissa bumps the exponent.
    expect(toHalf(2047.9)).toBe(toHalf(2048));
    // Rounding the largest subnormal up lands on the smallest normal.
    expect(toHalf(1023.75 * 2 ** -24)).toBe(0x0400);
  });

  it('flushes values far below the subnormal range to signed zero', () => {
    expect(toHalf(1e-30)).toBe(0x0000);
    expect(toHalf(-1e-30)).toBe(0x8000);
    expect(toHalf(1e-45)).toBe(0x0000); // a float32 subnormal
  });

  it('picks the nearest half for random floats (checked against its neighbours)', () => {
    let s = 12345;
    const rand = (): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 2 ** 32;
    };
    const n = 50000;
    const src = new Float32Array(n);
    for (let i = 0; i < n; i++) src[i] = (rand() - 0.5) * 2 ** (rand() * 44 - 28);
    const halves = float32ToFloat16Bits(src);
    for (let i = 0; i < n; i++) {
      const x = src[i]!;
      const h = halves[i]!;
      const err = Math.abs(fromHalf(h) - x);
      for (const nb of [h - 1, h + 1]) {
        if ((nb & 0x7fff) >= 0x7c00 || (nb & 0x7fff) === 0x7fff || nb < 0 || (nb & 0xffff) !== nb) continue;
        if (((nb ^ h) & 0x8000) !== 0) continue;
        const nbErr = Math.abs(fromHalf(nb) - x);
        if (nbErr < err || (nbErr === err && (h & 1) === 1)) {
          throw new Error(`x=${x}: got 0x${h.toString(16)}, neighbour 0x${nb.toString(16)} is nearer or even`);
        }
      }
    }
  });

  it('writes into a supplied buffer and rejects one that is too small', () => {
    const dst = new Uint16Array(3);
    expect(float32ToFloat16Bits(Float32Array.of(1, 2, 3), dst)).toBe(dst);
    expect(Array.from(dst)).toEqual([0x3c00, 0x4000, 0x4200]);
    expect(() => float32ToFloat16Bits(new Float32Array(4), new Uint16Array(3))).toThrow(/need 4/);
  });

  it('handles a Float32Array that is a view at an offset', () => {
    const backing = new Float32Array([9, 1, 2]);
    expect(Array.from(float32ToFloat16Bits(backing.subarray(1)))).toEqual([0x3c00, 0x4000]);
  });
});

describe('float16BitsToFloat32', () => {
  it('decodes edge values', () => {
    expect(fromHalf(0x4000)).toBe(2);
    expect(fromHalf(0x7bff)).toBe(65504);
    expect(fromHalf(0x0001)).toBe(2 ** -24);
    expect(fromHalf(0x03ff)).toBe(1023 * 2 ** -24);
    expect(fromHalf(0x0400)).toBe(2 ** -14);
    expect(Object.is(fromHalf(0x8000), -0)).toBe(true);
    expect(Object.is(fromHalf(0x0000), 0)).toBe(true);
    expect(fromHalf(0x8001)).toBe(-(2 ** -24));
    expect(fromHalf(0x7c00)).toBe(Infinity);
    expect(fromHalf(0xfc00)).toBe(-Infinity);
    expect(Number.isNaN(fromHalf(0x7e00))).toBe(true);
    expect(fromHalf(0xc000)).toBe(-2);
  });

  it('round-trips every non-NaN half exactly', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToFloat16Bits(float16BitsToFloat32(all));
    for (let i = 0; i < 65536; i++) {
      const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (isNaN) expect(back[i]! & 0x7e00).toBe(0x7e00);
      else if (back[i] !== i) throw new Error(`0x${i.toString(16)} came back as 0x${back[i]!.toString(16)}`);
    }
  });
});

/** A number's float32 bit pattern as a Float32Array store leaves it (how NaN payloads are compared). */
const f32Bits = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0]!;

describe('halfValue', () => {
  it('is the number a Float32Array read of float16BitsToFloat32 gives, for every half (zeros, subnormals, Inf and NaN payloads included)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const floats = float16BitsToFloat32(all);
    for (let h = 0; h < 65536; h++) {
      const got = halfValue(h);
      const want = floats[h]!;
      if (Number.isNaN(want) ? f32Bits(got) !== f32Bits(want) : !Object.is(got, want)) {
        throw new Error(`0x${h.toString(16)}: got ${got} (0x${f32Bits(got).toString(16)}), want ${want} (0x${f32Bits(want).toString(16)})`);
      }
    }
  });

  it('decodes edge values', () => {
    expect(Object.is(halfValue(0x8000), -0)).toBe(true);
    expect(Object.is(halfValue(0x0000), 0)).toBe(true);
    expect(halfValue(0x0001)).toBe(2 ** -24);
    expect(halfValue(0x83ff)).toBe(-1023 * 2 ** -24);
    expect(halfValue(0x0400)).toBe(2 ** -14);
    expect(halfValue(0x7bff)).toBe(65504);
    expect(halfValue(0x3c01)).toBe(1 + 2 ** -10);
    expect(halfValue(0xfc00)).toBe(-Infinity);
    expect(Number.isNaN(halfValue(0x7c01))).toBe(true);
    expect(Number.isNaN(halfValue(0xfe00))).toBe(true);
  });
});
