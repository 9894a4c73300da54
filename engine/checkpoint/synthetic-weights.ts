// Deterministic stand-in weights, generated identically here and in the Python reference scripts
// (scripts/reference/synthetic.py), so reference numbers can be checked without committing
// weights. Every step is exact in 32-bit integer and float32 arithmetic, so both sides produce
// bit-identical tensors:
//
//   seed(name)   = FNV-1a 32 over the UTF-8 bytes of the tensor name, xor `seed`
//   x_i          = fmix32(seed(name) + (i + 1) · 0x9E3779B1  mod 2^32)     (MurmurHash3's finaliser)
//   u_i          = (x_i >>> 8) / 2^23 − 1                                   (exact float32 in [−1, 1))
//   value_i      = centre + u_i · scale                                      (scale a power of two)
//
// The centre and scale depend only on the tensor's name and shape (`syntheticScale`), chosen so
// activations stay in a sane range through many layers: norms' weights near 1, biases small,
// matrices ~ 1/sqrt(fan_in).

function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function fmix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b) >>> 0;
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** Largest power of two not above `v` (so multiplying by it is exact). */
function powerOfTwoBelow(v: number): number {
  return 2 ** Math.floor(Math.log2(v));
}

export function syntheticScale(name: string, shape: readonly number[]): { centre: number; scale: number } {
  const leaf = name.split('.').at(-1) ?? name;
  // A one-dimensional `weight` is a norm's scale in these models (GroupNorm/LayerNorm; LDM names
  // such as in_layers.0 do not say "norm"): keep it near 1 so signals neither vanish nor explode.
  if (leaf === 'weight' && shape.length === 1) return { centre: 1, scale: 0.125 };
  if (leaf === 'bias' || leaf.endsWith('_bias') || shape.length <= 1) return { centre: 0, scale: 0.0625 };
  if (/embedding/.test(name)) return { centre: 0, scale: 0.5 };
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  return { centre: 0, scale: powerOfTwoBelow(1 / Math.sqrt(fanIn)) * 2 };
}

/** The tensor `name` of `shape`, as float32. */
export function syntheticTensor(name: string, shape: readonly number[], seed = 0): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const { centre, scale } = syntheticScale(name, shape);
  const base = (fnv1a32(name) ^ seed) >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = fmix32((base + Math.imul(i + 1, 0x9e3779b1)) >>> 0);
    out[i] = centre + ((x >>> 8) / 8388608 - 1) * scale;
  }
  return out;
}
