// The building blocks the architectures share (PyTorch layer → ONNX ops), each reading its
// weights by canonical name from a WeightSource. Weights are checked against the expected rank
// as the graph is built, so a checkpoint that does not fit fails before anything is written.
//
// The graph's form (GraphForm) is chosen here once for every architecture:
//   precision 'fp32'          float32 weights and arithmetic (the reference form);
//             'fp16-storage'  float16 weights, each followed by a Cast to float32: half the disk,
//                             and onnxruntime folds the Casts at load, so the arithmetic — and
//                             every output — is the fp32 graph's of the same (fp16) weights;
//             'fp16-resident' float16 weights that stay float16 in memory: each is an overridable
//                             initializer (graph.ts), so onnxruntime cannot fold its Cast, and the
//                             Cast to float32 runs at every use — half the weight memory, float32
//                             arithmetic (outputs within rounding of the fp32 graph's), a cast per step;
//             'fp16'          float16 weights and arithmetic (what GPU providers run fast), with
//                             float32 islands where half precision loses accuracy: GroupNorm and
//                             LayerNorm statistics, plain attention's scores and softmax, the sinusoidal
//                             timestep embedding. Graph inputs and outputs stay float32 in every
//                             form, so the loader and pipeline do not change.
//   attention 'plain'         MatMul/Softmax/MatMul (every provider);
//             'fused'         com.microsoft MultiHeadAttention (onnxruntime's fused kernel: flash /
//                             memory-efficient attention on CUDA, one op on CPU).
import { float32ToFloat16Bits } from '../fp16.js';
import type { GraphBuilder } from './graph.js';
import { float32Bytes, requireShape, transpose2d, type WeightSource } from './weights.js';

const count = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

export type GraphPrecision = 'fp32' | 'fp16-storage' | 'fp16-resident' | 'fp16';
export type AttentionForm = 'plain' | 'fused';

export interface GraphForm {
  precision: GraphPrecision;
  attention: AttentionForm;
}

export const REFERENCE_FORM: GraphForm = { precision: 'fp32', attention: 'plain' };

/** TensorProto.DataType codes for Cast's `to`. */
const CAST_TO: Record<'float32' | 'float16', number> = { float32: 1, float16: 10 };

/** The most negative finite value of each compute type (an additive mask that softmax turns into 0). */
const LOWEST: Record<'float32' | 'float16', number> = { float32: -3.4028234663852886e38, float16: -65504 };

function float16Bytes(a: Float32Array): Uint8Array {
  const bits = float32ToFloat16Bits(a);
  return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
}

export class Layers {
  private readonly constants = new Map<string, string>();

  /** The element type activations flow in. */
  readonly compute: 'float32' | 'float16';

  constructor(
    readonly g: GraphBuilder,
    readonly source: WeightSource,
    readonly form: GraphForm = REFERENCE_FORM,
  ) {
    this.compute = form.precision === 'fp16' ? 'float16' : 'float32';
    if (form.attention === 'fused') g.useOpset('com.microsoft', 1);
  }

  /** Casts `x` to `to` (no node when it already is). */
  cast(x: string, from: 'float32' | 'float16', to: 'float32' | 'float16'): string {
    return from === to ? x : this.g.op('Cast', [x], { to: { i: CAST_TO[to] } });
  }

  /** A float32 value into the compute type. */
  toCompute(x: string): string {
    return this.cast(x, 'float32', this.compute);
  }

  /** A compute-typed value to float32. */
  toFloat32(x: string): string {
    return this.cast(x, this.compute, 'float32');
  }

  /** A float32 graph input, returned in the compute type. */
  input(name: string, dims: Parameters<GraphBuilder['input']>[2]): string {
    return this.toCompute(this.g.input(name, 'float32', dims));
  }

  /** A compute-typed value declared as a float32 graph output. */
  output(value: string, name: string, dims: Parameters<GraphBuilder['output']>[3]): void {
    this.g.output(this.toFloat32(value), name, 'float32', dims);
  }

  /**
   * The initializer `name` holding `produce()`'s values, as the form stores it; returns the value
   * in the compute type (fp16-storage: a Cast after the float16 initializer).
   */
  private stored(name: string, dims: readonly number[], produce: () => Promise<Float32Array>, keepFloat32 = false): string {
    if (this.form.precision === 'fp32' || keepFloat32) {
      return this.g.initializer(name, 'float32', dims, async () => float32Bytes(await produce()));
    }
    const resident = this.form.precision === 'fp16-resident';
    const half = this.g.initializer(name, 'float16', dims, async () => float16Bytes(await produce()), { overridable: resident });
    return this.form.precision === 'fp16' ? half : this.cast(half, 'float16', 'float32');
  }

  private checkedDims(name: string, dims?: readonly number[]): readonly number[] {
    const stored = this.shape(name);
    const declared = dims ?? stored;
    if (count(stored) !== count(declared)) {
      throw new Error(`tensor "${name}" has shape [${stored.join(', ')}]; expected [${declared.join(', ')}]`);
    }
    return declared;
  }

  has(name: string): boolean {
    return this.source.shape(name) !== undefined;
  }

  shape(name: string, rank?: number): readonly number[] {
    return requireShape(this.source, name, rank);
  }

  /** A weight as stored, or declared with `dims` when the element count agrees (e.g. [C] as [C, 1, 1]). */
  weight(name: string, dims?: readonly number[]): string {
    return this.stored(name, this.checkedDims(name, dims), () => this.source.float32(name));
  }

  /** A weight kept float32 in every form (normalisation parameters used inside float32 islands). */
  weight32(name: string, dims?: readonly number[]): string {
    return this.stored(name, this.checkedDims(name, dims), () => this.source.float32(name), true);
  }

  /** A scalar constant in `type` (default: the compute type), shared by every use. */
  scalar(value: number, type: 'float32' | 'float16' = this.compute): string {
    const key = `${type}:${value}`;
    let name = this.constants.get(key);
    if (name === undefined) {
      name = type === 'float16' ? this.g.float16s(Float32Array.of(value), [], 'scalar') : this.g.float32s(Float32Array.of(value), [], 'scalar');
      this.constants.set(key, name);
    }
    return name;
  }

  ints(values: readonly number[]): string {
    const key = `i${values.join(',')}`;
    let name = this.constants.get(key);
    if (name === undefined) {
      name = this.g.int64s(values, 'shape');
      this.constants.set(key, name);
    }
    return name;
  }

  /** nn.Linear over the last axis: weight [out, in] is transposed once to [in, out] for MatMul. */
  linear(x: string, prefix: string): string {
    const [out, inF] = this.shape(`${prefix}.weight`, 2) as [number, number];
    const w = this.stored(`${prefix}.weight`, [inF, out], async () => transpose2d(await this.source.float32(`${prefix}.weight`), out, inF));
    const y = this.g.op('MatMul', [x, w]);
    return this.has(`${prefix}.bias`) ? this.g.op('Add', [y, this.weight(`${prefix}.bias`, [out])]) : y;
  }

  /**
   * nn.Conv2d, optionally strided; a [out, in] weight is a 1×1 conv. Padding is "same" (kernel // 2
   * on every side) unless `pads` ([top, left, bottom, right], ONNX order) says otherwise.
   */
  conv(x: string, prefix: string, stride = 1, pads?: readonly [number, number, number, number]): string {
    const stored = this.shape(`${prefix}.weight`);
    const dims = stored.length === 2 ? [stored[0]!, stored[1]!, 1, 1] : stored;
    const k = dims[2]!;
    const pad = Math.floor(k / 2);
    const inputs = [x, this.weight(`${prefix}.weight`, dims)];
    if (this.has(`${prefix}.bias`)) inputs.push(this.weight(`${prefix}.bias`, [dims[0]!]));
    return this.g.op('Conv', inputs, {
      kernel_shape: { ints: [k, dims[3]!] },
      pads: { ints: pads ?? [pad, pad, pad, pad] },
      strides: { ints: [stride, stride] },
    });
  }

  /** nn.GroupNorm on [B, C, ...]: Reshape → InstanceNormalization per group → Reshape → per-channel affine. */
  groupNorm(x: string, prefix: string, groups: number, eps: number): string {
    const [C] = this.shape(`${prefix}.weight`, 1) as [number];
    if (C % groups !== 0) throw new Error(`GroupNorm "${prefix}" has ${C} channels, not divisible into ${groups} groups`);
    const key = `gn${groups}`;
    let ones = this.constants.get(`${key}-scale`);
    let zeros = this.constants.get(`${key}-bias`);
    if (ones === undefined || zeros === undefined) {
      ones = this.g.float32s(new Float32Array(groups).fill(1), [groups], 'group_scale');
      zeros = this.g.float32s(new Float32Array(groups), [groups], 'group_bias');
      this.constants.set(`${key}-scale`, ones);
      this.constants.set(`${key}-bias`, zeros);
    }
    // Statistics in float32 whatever the compute type: a half-precision variance over a
    // 64×64×10-channel group loses most of its digits.
    const grouped = this.g.op('Reshape', [this.toFloat32(x), this.ints([0, groups, -1])]);
    const normed = this.g.op('InstanceNormalization', [grouped, ones, zeros], { epsilon: { f: eps } });
    const back = this.toCompute(this.g.op('Reshape', [normed, this.g.op('Shape', [x])]));
    const affine = [C, 1, 1];
    return this.g.op('Add', [this.g.op('Mul', [back, this.weight(`${prefix}.weight`, affine)]), this.weight(`${prefix}.bias`, affine)]);
  }

  /** nn.LayerNorm over the last axis. */
  layerNorm(x: string, prefix: string, eps: number): string {
    const [D] = this.shape(`${prefix}.weight`, 1) as [number];
    const normed = this.g.op('LayerNormalization', [this.toFloat32(x), this.weight32(`${prefix}.weight`, [D]), this.weight32(`${prefix}.bias`, [D])], {
      axis: { i: -1 },
      epsilon: { f: eps },
    });
    return this.toCompute(normed);
  }

  silu(x: string): string {
    return this.g.op('Mul', [x, this.g.op('Sigmoid', [x])]);
  }

  /** Exact (erf) GELU. */
  gelu(x: string): string {
    const erf = this.g.op('Erf', [this.g.op('Mul', [x, this.scalar(Math.SQRT1_2)])]);
    return this.g.op('Mul', [this.g.op('Mul', [x, this.scalar(0.5)]), this.g.op('Add', [erf, this.scalar(1)])]);
  }

  /**
   * Scaled dot-product attention on [B, T, C] projections split into `heads`: softmax(q·kᵀ/√d + mask)·v,
   * returned as [B, Tq, C]. `causal` (the sequence length) masks each position's view of later
   * ones, as CLIP's text encoder does.
   */
  attention(q: string, k: string, v: string, channels: number, heads: number, causal?: number): string {
    const headDim = channels / heads;
    if (this.form.attention === 'fused') {
      // MultiHeadAttention(query, key, value, bias, key_padding_mask, attention_bias [1, 1, T, T]).
      const inputs = causal === undefined ? [q, k, v] : [q, k, v, '', '', this.causalMask(causal, this.compute, [1, 1, causal, causal])];
      return this.g.op('MultiHeadAttention', inputs, { num_heads: { i: heads }, scale: { f: 1 / Math.sqrt(headDim) } }, { domain: 'com.microsoft' });
    }
    const split = this.ints([0, 0, heads, headDim]);
    const qh = this.g.op('Transpose', [this.g.op('Reshape', [q, split])], { perm: { ints: [0, 2, 1, 3] } });
    const kT = this.g.op('Transpose', [this.g.op('Reshape', [k, split])], { perm: { ints: [0, 2, 3, 1] } });
    const vh = this.g.op('Transpose', [this.g.op('Reshape', [v, split])], { perm: { ints: [0, 2, 1, 3] } });
    // Scores, mask and softmax in float32 (diffusers' upcast_attention): q·k can pass fp16's
    // 65504 (SD 2.1 does), and half-precision exp over thousands of scores underflows.
    let scores = this.g.op('Mul', [this.g.op('MatMul', [this.toFloat32(qh), this.toFloat32(kT)]), this.scalar(1 / Math.sqrt(headDim), 'float32')]);
    if (causal !== undefined) scores = this.g.op('Add', [scores, this.causalMask(causal, 'float32', [causal, causal])]);
    const mixed = this.g.op('MatMul', [this.toCompute(this.g.op('Softmax', [scores], { axis: { i: -1 } })), vh]);
    return this.g.op('Reshape', [this.g.op('Transpose', [mixed], { perm: { ints: [0, 2, 1, 3] } }), this.ints([0, 0, channels])]);
  }

  /** The additive causal mask (0 on and below the diagonal, the type's lowest value above), shared. */
  private causalMask(T: number, type: 'float32' | 'float16', dims: readonly number[]): string {
    const key = `causal:${type}:${dims.join('x')}`;
    let name = this.constants.get(key);
    if (name === undefined) {
      const mask = new Float32Array(T * T);
      for (let r = 0; r < T; r++) for (let c = r + 1; c < T; c++) mask[r * T + c] = LOWEST[type];
      name = type === 'float16' ? this.g.float16s(mask, dims, 'causal_mask') : this.g.float32s(mask, dims, 'causal_mask');
      this.constants.set(key, name);
    }
    return name;
  }

  /** [B, C, H, W] → [B, H·W, C] (tokens), and back given the original tensor for its shape. */
  toTokens(x: string): string {
    return this.g.op('Transpose', [this.g.op('Reshape', [x, this.ints([0, 0, -1])])], { perm: { ints: [0, 2, 1] } });
  }

  fromTokens(tokens: string, like: string): string {
    return this.g.op('Reshape', [this.g.op('Transpose', [tokens], { perm: { ints: [0, 2, 1] } }), this.g.op('Shape', [like])]);
  }
}
