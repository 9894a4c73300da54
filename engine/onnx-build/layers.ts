// The building blocks the architectures share (PyTorch layer → ONNX ops), each reading its
// weights by canonical name from a WeightSource. Weights are checked against the expected rank
// as the graph is built, so a checkpoint that does not fit fails before anything is written.
import type { GraphBuilder } from './graph.js';
import { float32Bytes, requireShape, transpose2d, type WeightSource } from './weights.js';

const count = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

export class Layers {
  private readonly constants = new Map<string, string>();

  constructor(
    readonly g: GraphBuilder,
    readonly source: WeightSource,
  ) {}

  has(name: string): boolean {
    return this.source.shape(name) !== undefined;
  }

  shape(name: string, rank?: number): readonly number[] {
    return requireShape(this.source, name, rank);
  }

  /** A weight as stored, or declared with `dims` when the element count agrees (e.g. [C] as [C, 1, 1]). */
  weight(name: string, dims?: readonly number[]): string {
    const stored = this.shape(name);
    const declared = dims ?? stored;
    if (count(stored) !== count(declared)) {
      throw new Error(`tensor "${name}" has shape [${stored.join(', ')}]; expected [${declared.join(', ')}]`);
    }
    return this.g.initializer(name, 'float32', declared, async () => float32Bytes(await this.source.float32(name)));
  }

  /** A scalar or small float constant, shared by every use. */
  scalar(value: number): string {
    const key = String(value);
    let name = this.constants.get(key);
    if (name === undefined) {
      name = this.g.float32s(Float32Array.of(value), [], 'scalar');
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
    const w = this.g.initializer(`${prefix}.weight`, 'float32', [inF, out], async () =>
      float32Bytes(transpose2d(await this.source.float32(`${prefix}.weight`), out, inF)),
    );
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
    const grouped = this.g.op('Reshape', [x, this.ints([0, groups, -1])]);
    const normed = this.g.op('InstanceNormalization', [grouped, ones, zeros], { epsilon: { f: eps } });
    const back = this.g.op('Reshape', [normed, this.g.op('Shape', [x])]);
    const affine = [C, 1, 1];
    return this.g.op('Add', [this.g.op('Mul', [back, this.weight(`${prefix}.weight`, affine)]), this.weight(`${prefix}.bias`, affine)]);
  }

  /** nn.LayerNorm over the last axis. */
  layerNorm(x: string, prefix: string, eps: number): string {
    const [D] = this.shape(`${prefix}.weight`, 1) as [number];
    return this.g.op('LayerNormalization', [x, this.weight(`${prefix}.weight`, [D]), this.weight(`${prefix}.bias`, [D])], {
      axis: { i: -1 },
      epsilon: { f: eps },
    });
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
   * returned as [B, Tq, C]. `mask` is added to the scores ([Tq, Tk], e.g. a causal mask).
   */
  attention(q: string, k: string, v: string, channels: number, heads: number, mask?: string): string {
    const headDim = channels / heads;
    const split = this.ints([0, 0, heads, headDim]);
    const qh = this.g.op('Transpose', [this.g.op('Reshape', [q, split])], { perm: { ints: [0, 2, 1, 3] } });
    const kT = this.g.op('Transpose', [this.g.op('Reshape', [k, split])], { perm: { ints: [0, 2, 3, 1] } });
    const vh = this.g.op('Transpose', [this.g.op('Reshape', [v, split])], { perm: { ints: [0, 2, 1, 3] } });
    let scores = this.g.op('Mul', [this.g.op('MatMul', [qh, kT]), this.scalar(1 / Math.sqrt(headDim))]);
    if (mask !== undefined) scores = this.g.op('Add', [scores, mask]);
    const mixed = this.g.op('MatMul', [this.g.op('Softmax', [scores], { axis: { i: -1 } }), vh]);
    return this.g.op('Reshape', [this.g.op('Transpose', [mixed], { perm: { ints: [0, 2, 1, 3] } }), this.ints([0, 0, channels])]);
  }

  /** [B, C, H, W] → [B, H·W, C] (tokens), and back given the original tensor for its shape. */
  toTokens(x: string): string {
    return this.g.op('Transpose', [this.g.op('Reshape', [x, this.ints([0, 0, -1])])], { perm: { ints: [0, 2, 1] } });
  }

  fromTokens(tokens: string, like: string): string {
    return this.g.op('Reshape', [this.g.op('Transpose', [tokens], { perm: { ints: [0, 2, 1] } }), this.g.op('Shape', [like])]);
  }
}
