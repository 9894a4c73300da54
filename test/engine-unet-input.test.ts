import { describe, expect, it } from 'vitest';
import { float32ToFloat16Bits } from '../engine/fp16.js';
import { UnetInput } from '../engine/unet-input.js';

/** float32 latents at the edges of float16: signed zeros, half subnormals and a rounding tie among
 * them, the overflow limit, infinities, and quiet and signalling NaNs (set by bit pattern). */
function edgeLatents(): Float32Array {
  const values = [0, -0, 2 ** -24, -(2 ** -25), 3 * 2 ** -25, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65520, -70000, Infinity, -Infinity, 1.7, -0.3];
  const x = new Float32Array(values.length + 3);
  x.set(values);
  const bits = new Uint32Array(x.buffer);
  bits[values.length] = 0x7fc00000; // quiet NaN
  bits[values.length + 1] = 0x7f800001; // signalling NaN, payload in the lowest bit
  bits[values.length + 2] = 0xff812345; // negative signalling NaN
  return x;
}

const scaledFirst = (x: Float32Array, s: number): Float32Array => Float32Array.from(x, (v) => v * s);

describe('UnetInput', () => {
  it('float16: the bits of converting x·scale, once or twice over, for scales 1 and not 1', () => {
    const x = edgeLatents();
    const input = new UnetInput();
    for (const scale of [1, 0.5, 0.0731]) {
      const want = float32ToFloat16Bits(scaledFirst(x, scale));
      const once = input.form('float16', x, scale, 1);
      expect(Array.from(once)).toEqual(Array.from(want));
      const twice = input.form('float16', x, scale, 2);
      expect(Array.from(twice)).toEqual([...want, ...want]);
    }
  });

  it('float32: x·scale rounded to float32, once or twice over', () => {
    const x = edgeLatents();
    const input = new UnetInput();
    const want = new Uint32Array(scaledFirst(x, 0.0731).buffer);
    const once = input.form('float32', x, 0.0731, 1);
    expect(Array.from(new Uint32Array(once.buffer, once.byteOffset, once.length))).toEqual(Array.from(want));
    const twice = input.form('float32', x, 0.0731, 2);
    expect(Array.from(new Uint32Array(twice.buffer, twice.byteOffset, twice.length))).toEqual([...want, ...want]);
  });

  it('never hands back the caller latents, and reuses its buffer for the same shape', () => {
    const x = Float32Array.of(1, 2, 3);
    const input = new UnetInput();
    const a = input.form('float32', x, 1, 1);
    expect(a).not.toBe(x);
    expect(input.form('float32', Float32Array.of(4, 5, 6), 1, 1)).toBe(a);
    expect(Array.from(a)).toEqual([4, 5, 6]);
  });
});
