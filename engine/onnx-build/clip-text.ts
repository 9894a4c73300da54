// The CLIP text encoder as an ONNX graph, written against Hugging Face's CLIPTextModel names
// (text_model.* without the prefix): token + position embeddings, N pre-LayerNorm transformer
// layers with causal self-attention, then the final LayerNorm.
//
// Outputs:
//   last_hidden_state         [batch, T, D]  after the final LayerNorm (what SD 1.x conditions on)
//   penultimate_hidden_state  [batch, T, D]  the input of the last layer, *without* the final
//                             LayerNorm (HF hidden_states[-2]). SDXL conditions on it as is;
//                             A1111's "clip skip 2" applies final_layer_norm to it first.
//   pooler_output             [batch, D]     last_hidden_state at the first end-of-text token
//                             (the largest id, 49407), as HF picks it; SDXL's second encoder
//                             multiplies it by its text projection.
//
// Choices: plain ONNX ops (opset 17, LayerNormalization) so every execution provider runs it;
// Linear weights are transposed once at build time to [in, out] so each projection is one
// MatMul + Add; the causal mask is a constant added to the scores (float32 lowest, as HF does).
import { GraphBuilder } from './graph.js';
import { float32Bytes, requireShape, transpose2d, type WeightSource } from './weights.js';

export interface ClipTextConfig {
  vocab: number;
  width: number;
  positions: number;
  layers: number;
  heads: number;
  intermediate: number;
  /** OpenAI CLIP (SD 1.x, SDXL's first encoder) uses quick_gelu; OpenCLIP uses exact gelu. */
  activation: 'quick_gelu' | 'gelu';
  eps: number;
}

/** Reads the architecture from the weights' shapes; `heads` is not visible in them (real CLIPs use 64-wide heads). */
export function clipTextConfig(source: WeightSource, overrides: Partial<Pick<ClipTextConfig, 'heads' | 'activation' | 'layers'>> = {}): ClipTextConfig {
  const [vocab, width] = requireShape(source, 'embeddings.token_embedding.weight', 2) as [number, number];
  const [positions] = requireShape(source, 'embeddings.position_embedding.weight', 2) as [number, number];
  const [intermediate] = requireShape(source, 'encoder.layers.0.mlp.fc1.weight', 2) as [number, number];
  let layers = 0;
  while (source.shape(`encoder.layers.${layers}.layer_norm1.weight`) !== undefined) layers++;
  const heads = overrides.heads ?? width / 64;
  if (!Number.isInteger(heads) || width % heads !== 0) throw new Error(`a ${width}-wide encoder cannot have ${heads} heads`);
  return { vocab, width, positions, layers: overrides.layers ?? layers, heads, intermediate, activation: overrides.activation ?? 'quick_gelu', eps: 1e-5 };
}

export interface ClipTextGraphOptions {
  penultimate?: boolean;
  pooled?: boolean;
}

export function buildClipTextGraph(source: WeightSource, config: ClipTextConfig, options: ClipTextGraphOptions = {}): GraphBuilder {
  const { width: D, positions: T, heads: H, intermediate: I } = config;
  const headDim = D / H;
  const g = new GraphBuilder('clip_text_encoder');

  const weight = (name: string, dims: readonly number[]): string => {
    requireShape(source, name, dims.length);
    return g.initializer(name, 'float32', dims, async () => float32Bytes(await source.float32(name)));
  };
  /** A Linear layer's weight, transposed to [in, out] while it is written. */
  const linear = (x: string, prefix: string, inF: number, outF: number): string => {
    const w = g.initializer(`${prefix}.weight`, 'float32', [inF, outF], async () =>
      float32Bytes(transpose2d(await source.float32(`${prefix}.weight`), outF, inF)),
    );
    requireShape(source, `${prefix}.weight`, 2);
    return g.op('Add', [g.op('MatMul', [x, w]), weight(`${prefix}.bias`, [outF])]);
  };
  const layerNorm = (x: string, prefix: string): string =>
    g.op('LayerNormalization', [x, weight(`${prefix}.weight`, [D]), weight(`${prefix}.bias`, [D])], { axis: { i: -1 }, epsilon: { f: config.eps } });

  const ids = g.input('input_ids', 'int32', ['batch', T]);
  const tokens = g.op('Gather', [weight('embeddings.token_embedding.weight', [config.vocab, D]), ids], { axis: { i: 0 } });
  let x = g.op('Add', [tokens, weight('embeddings.position_embedding.weight', [T, D])]);

  const mask = new Float32Array(T * T);
  for (let r = 0; r < T; r++) for (let c = r + 1; c < T; c++) mask[r * T + c] = -3.4028234663852886e38;
  const causal = g.float32s(mask, [T, T], 'causal_mask');
  const scale = g.float32s(Float32Array.of(1 / Math.sqrt(headDim)), [], 'attn_scale');
  const splitHeads = g.int64s([0, 0, H, headDim], 'split_heads');
  const mergeHeads = g.int64s([0, 0, D], 'merge_heads');

  let penultimate: string | undefined;
  for (let l = 0; l < config.layers; l++) {
    if (l === config.layers - 1) penultimate = x;
    const p = `encoder.layers.${l}`;
    const h = layerNorm(x, `${p}.layer_norm1`);
    const heads = (name: string): string => g.op('Reshape', [linear(h, `${p}.self_attn.${name}`, D, D), splitHeads]);
    const q = g.op('Transpose', [heads('q_proj')], { perm: { ints: [0, 2, 1, 3] } });
    const kT = g.op('Transpose', [heads('k_proj')], { perm: { ints: [0, 2, 3, 1] } });
    const v = g.op('Transpose', [heads('v_proj')], { perm: { ints: [0, 2, 1, 3] } });
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, kT]), scale]), causal]);
    const attn = g.op('MatMul', [g.op('Softmax', [scores], { axis: { i: -1 } }), v]);
    const merged = g.op('Reshape', [g.op('Transpose', [attn], { perm: { ints: [0, 2, 1, 3] } }), mergeHeads]);
    x = g.op('Add', [x, linear(merged, `${p}.self_attn.out_proj`, D, D)]);

    const f = linear(layerNorm(x, `${p}.layer_norm2`), `${p}.mlp.fc1`, D, I);
    x = g.op('Add', [x, linear(activation(g, f, config.activation), `${p}.mlp.fc2`, I, D)]);
  }
  const last = layerNorm(x, 'final_layer_norm');
  g.output(last, 'last_hidden_state', 'float32', ['batch', T, D]);
  if (options.penultimate !== false && penultimate !== undefined) {
    g.output(penultimate, 'penultimate_hidden_state', 'float32', ['batch', T, D]);
  }
  if (options.pooled !== false) {
    // ArgMax over float ids: exact for ids < 2^24, and float ArgMax is implemented by every provider.
    const eos = g.op('ArgMax', [g.op('Cast', [ids], { to: { i: 1 } })], { axis: { i: 1 }, keepdims: { i: 1 } });
    const pooled = g.op('GatherND', [last, eos], { batch_dims: { i: 1 } });
    g.output(pooled, 'pooler_output', 'float32', ['batch', D]);
  }
  return g;
}

function activation(g: GraphBuilder, x: string, kind: ClipTextConfig['activation']): string {
  if (kind === 'quick_gelu') {
    return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.float32s(Float32Array.of(1.702), [], 'quick_gelu_k')])])]);
  }
  const erf = g.op('Erf', [g.op('Mul', [x, g.float32s(Float32Array.of(Math.SQRT1_2), [], 'gelu_k')])]);
  const half = g.float32s(Float32Array.of(0.5), [], 'half');
  const one = g.float32s(Float32Array.of(1), [], 'one');
  return g.op('Mul', [g.op('Mul', [x, half]), g.op('Add', [erf, one])]);
}

/** Names of every weight the graph reads, for checking a checkpoint has them all before building. */
export function clipTextWeightNames(config: Pick<ClipTextConfig, 'layers'>): string[] {
  const names = ['embeddings.token_embedding.weight', 'embeddings.position_embedding.weight', 'final_layer_norm.weight', 'final_layer_norm.bias'];
  for (let l = 0; l < config.layers; l++) {
    const p = `encoder.layers.${l}`;
    for (const m of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'layer_norm1', 'layer_norm2', 'mlp.fc1', 'mlp.fc2']) {
      names.push(`${p}.${m}.weight`, `${p}.${m}.bias`);
    }
  }
  return names;
}
