// Seeded noise that matches torch's CPU generator, so a seed here gives the same starting
// latent as diffusers with a CPU generator, ComfyUI, and AUTOMATIC1111 with RNG set to CPU.
// The algorithm (not the code) follows pytorch's MT19937RNGEngine.h, CPUGeneratorImpl.cpp and
// the CPU normal kernels; see ../shared/notes/engine.md §4.1.

const MT_N = 624;
const MT_M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

const TWO_POW_MINUS_24 = 2 ** -24;
const TWO_POW_32 = 2 ** 32;
const TWO_POW_MINUS_53 = 2 ** -53;
/** torch multiplies by 2π in double and stores θ as float on the float path. */
const TWO_PI = 2 * Math.PI;

/** Below this many values torch takes its scalar double-precision path. */
const FLOAT_PATH_MIN = 16;

const f32 = Math.fround;

/** A generator's state as plain data (structured-clone safe). */
export interface TorchGeneratorState {
  state: Uint32Array;
  index: number;
  cachedNormal: number | undefined;
}

/** torch.Generator('cpu').manual_seed(seed): an MT19937 stream plus torch's normal sampling. */
export class TorchCpuGenerator {
  private readonly state = new Uint32Array(MT_N);
  private index = MT_N;
  /** torch caches the sine half of a double Box–Muller pair for the next scalar draw. */
  private cachedNormal: number | undefined;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number, got ${seed}`);
    // manual_seed keeps the low 32 bits (uint64 seeds are truncated by init_genrand).
    const s = Number(BigInt.asUintN(32, BigInt(Math.trunc(seed))));
    const st = this.state;
    st[0] = s;
    for (let j = 1; j < MT_N; j++) {
      const prev = st[j - 1]!;
      // Math.imul keeps the product mod 2^32; a plain * would lose bits in a double.
      st[j] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + j) >>> 0;
    }
    this.index = MT_N;
  }

  /** The generator's whole state, to continue the same stream elsewhere (another thread). */
  snapshot(): TorchGeneratorState {
    return { state: this.state.slice(), index: this.index, cachedNormal: this.cachedNormal };
  }

  /** A generator that continues exactly where `snapshot()` left its source. */
  static fromSnapshot(s: TorchGeneratorState): TorchCpuGenerator {
    if (s.state.length !== MT_N || !Number.isInteger(s.index) || s.index < 0 || s.index > MT_N) {
      throw new RangeError('not a TorchCpuGenerator snapshot');
    }
    const g = new TorchCpuGenerator(0);
    g.state.set(s.state);
    g.index = s.index;
    g.cachedNormal = s.cachedNormal;
    return g;
  }

  private twist(): void {
    const st = this.state;
    // The textbook loop with indices taken mod N, split where the wrap-arounds fall: the same
    // recurrence without a division per word (this runs once per 624 values of every noise draw).
    let k = 0;
    for (; k < MT_N - MT_M; k++) st[k] = twistWord(st[k]!, st[k + 1]!, st[k + MT_M]!);
    for (; k < MT_N - 1; k++) st[k] = twistWord(st[k]!, st[k + 1]!, st[k + MT_M - MT_N]!);
    st[MT_N - 1] = twistWord(st[MT_N - 1]!, st[0]!, st[MT_M - 1]!);
    this.index = 0;
  }

  /** One tempered 32-bit output (torch's `random()`). */
  nextU32(): number {
    if (this.index >= MT_N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** uniform_real_distribution<double>: 53 bits of random64(), whose first draw is the high word. */
  private nextDoubleUniform(): number {
    const hi = this.nextU32();
    const lo = this.nextU32();
    return ((hi & 0x1fffff) * TWO_POW_32 + lo) * TWO_POW_MINUS_53;
  }

  /** normal_distribution<double>, including torch's cached second value. */
  private nextDoubleNormal(): number {
    if (this.cachedNormal !== undefined) {
      const v = this.cachedNormal;
      this.cachedNormal = undefined;
      return v;
    }
    const u1 = this.nextDoubleUniform();
    const u2 = this.nextDoubleUniform();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = TWO_PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /**
   * `torch.randn(numel, generator=g)` as float32, continuing this generator's stream, so
   * successive calls (ancestral samplers' per-step noise) match torch drawing in the same order.
   */
  randn(numel: number, out?: Float32Array): Float32Array {
    if (!Number.isInteger(numel) || numel < 0) throw new RangeError(`numel must be a non-negative integer, got ${numel}`);
    const d = out ?? new Float32Array(numel);
    if (d.length !== numel) throw new RangeError(`output buffer holds ${d.length} values, expected ${numel}`);
    if (numel < FLOAT_PATH_MIN) {
      for (let i = 0; i < numel; i++) d[i] = this.nextDoubleNormal();
      return d;
    }
    // All uniforms are drawn before any transform; the tail block is redrawn afterwards.
    for (let i = 0; i < numel; i++) d[i] = (this.nextU32() & 0xffffff) * TWO_POW_MINUS_24;
    for (let i = 0; i + FLOAT_PATH_MIN <= numel; i += FLOAT_PATH_MIN) boxMuller16(d, i);
    if (numel % FLOAT_PATH_MIN !== 0) {
      const start = numel - FLOAT_PATH_MIN;
      for (let i = start; i < numel; i++) d[i] = (this.nextU32() & 0xffffff) * TWO_POW_MINUS_24;
      boxMuller16(d, start);
    }
    return d;
  }
}

function twistWord(current: number, next: number, far: number): number {
  const y = (current & UPPER_MASK) | (next & LOWER_MASK);
  const v = far ^ (y >>> 1);
  return (y & 1 ? v ^ MATRIX_A : v) >>> 0;
}

/** torch's normal_fill_16 in float arithmetic (each intermediate rounded to float32 as C++ does). */
function boxMuller16(d: Float32Array, i: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f32(1 - d[i + j]!);
    const u2 = d[i + j + 8]!;
    const radius = f32(Math.sqrt(f32(-2 * f32(Math.log(u1)))));
    const theta = f32(TWO_PI * u2);
    d[i + j] = radius * f32(Math.cos(theta));
    d[i + j + 8] = radius * f32(Math.sin(theta));
  }
}

/** Above this cosine the two noises are (anti)parallel and slerp's sin(ω) would divide by ~0. */
const SLERP_PARALLEL_DOT = 0.9995;

/** Latent layout for `slerp`: channels × height × width of ONE image. */
export interface NoiseShape {
  channels: number;
  height: number;
  width: number;
}

/**
 * AUTOMATIC1111's variation-seed blend: `slerp(strength, noise(seed), noise(variationSeed))`.
 * t = 0 gives `a`, t = 1 gives `b`.
 *
 * With `shape`, it reproduces A1111 exactly: its `torch.norm(x, dim=1)` on a C×H×W tensor treats
 * every (channel, column) pair as its own vector along the height axis. Without `shape` the whole
 * buffer is one vector. Where a vector pair is nearly parallel it falls back to a plain lerp (A1111
 * swaps the lerp's weights there, a bug that only matters for near-identical noises; we do not copy it).
 */
export function slerp(t: number, a: Float32Array, b: Float32Array, shape?: NoiseShape): Float32Array {
  if (a.length !== b.length) throw new RangeError(`slerp: lengths differ (${a.length} vs ${b.length})`);
  const out = new Float32Array(a.length);
  if (!shape) {
    slerpStrided(t, a, b, out, 0, 1, a.length);
    return out;
  }
  const { channels, height, width } = shape;
  if (channels * height * width <= 0 || a.length % (channels * height * width) !== 0) {
    throw new RangeError(`slerp: ${a.length} values do not fit shape ${channels}×${height}×${width}`);
  }
  const plane = height * width;
  // A batch of images is laid out image after image; each (image, channel, column) is one vector.
  for (let base = 0; base < a.length; base += plane) {
    for (let col = 0; col < width; col++) slerpStrided(t, a, b, out, base + col, width, height);
  }
  return out;
}

function slerpStrided(t: number, a: Float32Array, b: Float32Array, out: Float32Array, start: number, stride: number, count: number): void {
  let aa = 0;
  let bb = 0;
  let ab = 0;
  for (let k = 0, i = start; k < count; k++, i += stride) {
    const x = a[i]!;
    const y = b[i]!;
    aa += x * x;
    bb += y * y;
    ab += x * y;
  }
  const norms = Math.sqrt(aa) * Math.sqrt(bb);
  const dot = norms > 0 ? ab / norms : 1;
  let wa: number;
  let wb: number;
  if (Math.abs(dot) > SLERP_PARALLEL_DOT) {
    wa = 1 - t;
    wb = t;
  } else {
    const omega = Math.acos(dot);
    const so = Math.sin(omega);
    wa = Math.sin((1 - t) * omega) / so;
    wb = Math.sin(t * omega) / so;
  }
  for (let k = 0, i = start; k < count; k++, i += stride) out[i] = wa * a[i]! + wb * b[i]!;
}
