// The UNet's sample feed for one denoising step: the sampler's latents times its input scale,
// once per picture or twice under guidance (uncond and cond halves), as float32 or as float16
// bits. Formed here in as few passes as the export's type allows, into buffers reused across steps,
// because it runs on every step: float32 scales one half and block-copies it; float16 scales
// into float32 (the rounding the feed had always had) and converts one half, or converts the
// latents directly when the scale is 1 (DPM++, DDIM), where x·1 = x.
import { float32ToFloat16Bits } from './fp16.js';

export class UnetInput {
  private floats = new Float32Array(0);
  private halves = new Uint16Array(0);

  /** `latents`·`scale`, `copies` times over, as the feed of `type`. Valid until the next call. */
  form(type: 'float32' | 'float16', latents: Float32Array, scale: number, copies: 1 | 2): Float32Array | Uint16Array {
    const n = latents.length;
    if (type === 'float32') {
      if (this.floats.length !== copies * n) this.floats = new Float32Array(copies * n);
      const out = this.floats;
      scaleOnce(latents, scale, out);
      // Scale once, then block-copy (writing both halves in the scaling loop measured no faster).
      if (copies === 2) out.copyWithin(n, 0, n);
      return out;
    }
    if (this.halves.length !== copies * n) this.halves = new Uint16Array(copies * n);
    const halves = this.halves;
    if (scale === 1) {
      float32ToFloat16Bits(latents, halves);
    } else {
      if (this.floats.length !== n) this.floats = new Float32Array(n);
      const scaled = this.floats;
      scaleOnce(latents, scale, scaled);
      float32ToFloat16Bits(scaled, halves);
    }
    if (copies === 2) halves.copyWithin(n, 0, n);
    return halves;
  }
}

// The loops are small functions of their own: V8 optimises them far better that way than inside
// a larger async function (see ./guidance.ts).

function scaleOnce(x: Float32Array, scale: number, dest: Float32Array): void {
  const n = x.length;
  for (let p = 0; p < n; p++) dest[p] = x[p]! * scale;
}
