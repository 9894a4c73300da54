// Classifier-free guidance, ε = ε_u + g·(ε_c − ε_u), over a UNet output laid out
// [uncond × k, cond × k]. It runs on every denoising step, so a float16 export's output is
// combined straight from the half bits onnxruntime returns: converting all 2n halves to float32
// first and then combining was two passes over the output for the one pass here. Both forms compute in double from the same float32 values, so they agree bit for bit.
import { halfValue } from './fp16.js';

// Small functions of their own on purpose: V8 optimises these loops far better than the same loop
// inlined in a long async function (measured ~20× on this loop).

/** Guidance from a float32 output into `dest` (the output's first half's length). */
export function guideFloats(out: Float32Array, g: number, dest: Float32Array): void {
  const n = dest.length;
  checkLength(out.length, n);
  for (let p = 0; p < n; p++) {
    const u = out[p]!;
    dest[p] = u + g * (out[n + p]! - u);
  }
}

/** Guidance from a float16 output given as half bits. */
export function guideHalves(out: Uint16Array, g: number, dest: Float32Array): void {
  const n = dest.length;
  checkLength(out.length, n);
  for (let p = 0; p < n; p++) {
    const u = halfValue(out[p]!);
    dest[p] = u + g * (halfValue(out[n + p]!) - u);
  }
}

function checkLength(outLength: number, n: number): void {
  if (outLength !== 2 * n) throw new RangeError(`guidance: the UNet output has ${outLength} values, expected 2 × ${n}`);
}
