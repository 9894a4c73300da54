// IEEE-754 half <-> single conversion for float16 ONNX sessions. Node 20 has no Float16Array,
// so onnxruntime hands float16 tensors over as Uint16Array bit patterns. This runs at the session
// boundary on every denoising step, hence bit twiddling on integer views instead of Math calls.

/** Single-precision bit patterns that bound the half-precision ranges (all on |x|). */
const F32_INF = 0x7f800000;
/** 65520: the tie between 65504 (largest half) and 65536 rounds to even, i.e. to infinity. */
const F32_HALF_OVERFLOW = 0x477ff000;
/** 2^-14: the smallest normal half. */
const F32_HALF_MIN_NORMAL = 0x38800000;
/** Rebias the exponent from 127 to 15: (127 − 15) << 23. */
const EXPONENT_REBIAS = 0x38000000;
const HALF_SUBNORMAL_UNIT = 2 ** -24;

function u32View(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Signed views keep every bit pattern a small integer for V8 (a Uint32 ≥ 2^31 becomes a heap
 * double), which makes the per-value loops several times faster. */
function i32View(a: Float32Array): Int32Array {
  return new Int32Array(a.buffer, a.byteOffset, a.length);
}

/** float32 → float16 bits, rounding to nearest even; overflow → ±Inf, NaN stays NaN (quiet). */
export function float32ToFloat16Bits(src: Float32Array, dst?: Uint16Array): Uint16Array {
  const out = dst ?? new Uint16Array(src.length);
  if (out.length < src.length) throw new RangeError(`float16 buffer holds ${out.length} values, need ${src.length}`);
  const bits = i32View(src);
  for (let i = 0; i < bits.length; i++) {
    const f = bits[i]!;
    const sign = (f >>> 16) & 0x8000;
    const abs = f & 0x7fffffff;
    let h: number;
    if (abs >= F32_HALF_OVERFLOW) {
      // NaN keeps its top payload bits and is forced quiet so it cannot turn into Inf.
      h = abs > F32_INF ? 0x7e00 | ((abs >>> 13) & 0x3ff) : 0x7c00;
    } else if (abs >= F32_HALF_MIN_NORMAL) {
      // Add just under half an ulp, plus one if the kept lsb is odd: ties go to even. A carry
      // into the exponent is the correct result (e.g. 2047.9 → 2048).
      h = (abs + 0xfff + ((abs >>> 13) & 1) - EXPONENT_REBIAS) >>> 13;
    } else {
      // Subnormal half (or zero): the value is q · 2^-24 with q = m >> shift, rounded to even.
      const exp = abs >>> 23;
      const shift = 126 - exp;
      if (shift > 24) {
        h = 0;
      } else {
        const m = (abs & 0x7fffff) | 0x800000;
        let q = m >>> shift;
        const rem = m & ((1 << shift) - 1);
        const halfway = 1 << (shift - 1);
        if (rem > halfway || (rem === halfway && q & 1)) q++;
        h = q;
      }
    }
    out[i] = sign | h;
  }
  return out;
}

/** float16 bits → float32 (exact: every half is representable as a float). */
export function float16BitsToFloat32(src: Uint16Array, dst?: Float32Array): Float32Array {
  const out = dst ?? new Float32Array(src.length);
  if (out.length < src.length) throw new RangeError(`float32 buffer holds ${out.length} values, need ${src.length}`);
  // A table of all 65,536 results (256 KB, built on first use) turns the per-value branches into
  // one load: this runs on every UNet output of a float16 export. (The classic three small tables
  // of 8 KB measured slower here: a latent's halves cluster in few exponents, so the big table's
  // hot lines stay cached anyway.)
  const table = (halfTable ??= buildHalfTable());
  const bits = i32View(out);
  for (let i = 0; i < src.length; i++) bits[i] = table[src[i]!]!;
  return out;
}

let halfTable: Int32Array | undefined;

// halfValue's tables, indexed by a half's sign and exponent bits (h >>> 10): its value is
// (mantissa + HALF_LEAD) · HALF_SCALE, exact in a double. 1 KB in all, so they stay in L1 where the
// 256 KB table above often does not once the UNet (or a neighbour on the core) has run: in the step
// loop, guidance through the big table was faster only while it stayed cached and slower at the
// median (0.115–0.126 vs 0.087–0.113 ms per 2 × 16,384 halves, fp16 DPM++ proxy, load average 6).
const HALF_LEAD = new Float64Array(64);
const HALF_SCALE = new Float64Array(64);
for (let e = 0; e < 64; e++) {
  const exp = e & 0x1f;
  const sign = e & 0x20 ? -1 : 1;
  // Subnormals have no implicit leading 1 and the exponent of the smallest normal.
  HALF_LEAD[e] = exp === 0 ? 0 : 1024;
  HALF_SCALE[e] = sign * 2 ** ((exp === 0 ? 1 : exp) - 25);
}
/** Reinterprets a float32 bit pattern for halfValue's Inf/NaN path. */
const BITS = new Int32Array(1);
const BITS_AS_FLOAT = new Float32Array(BITS.buffer);

/**
 * One half's value as a number: the same number that reading float16BitsToFloat32's output would
 * give (NaN included: its float32 pattern goes through a Float32Array load just the same), without
 * a table that needs the cache. For loops that use each value once, e.g. guidance on a UNet output.
 */
export function halfValue(h: number): number {
  const e = h >>> 10;
  if ((e & 0x1f) !== 0x1f) return ((h & 0x3ff) + HALF_LEAD[e]!) * HALF_SCALE[e]!;
  BITS[0] = ((h & 0x8000) << 16) | F32_INF | ((h & 0x3ff) << 13);
  return BITS_AS_FLOAT[0]!;
}

function buildHalfTable(): Int32Array {
  const table = new Int32Array(0x10000);
  for (let h = 0; h < 0x10000; h++) table[h] = float16BitToFloat32BitsReference(h) | 0;
  return table;
}

/** One half's float32 bit pattern, computed field by field (the tables are checked against it). */
export function float16BitToFloat32BitsReference(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) {
    const one = new Float32Array(1);
    one[0] = (sign ? -mant : mant) * HALF_SUBNORMAL_UNIT;
    return mant === 0 ? sign >>> 0 : u32View(one)[0]!;
  }
  if (exp === 0x1f) return (sign | F32_INF | (mant << 13)) >>> 0;
  return (sign | ((exp << 23) + EXPONENT_REBIAS) | (mant << 13)) >>> 0;
}
