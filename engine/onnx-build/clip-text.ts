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
//                             (the largest id, 49407), as HF picks it;
//   text_embeds               [batch, P]     pooler_output × text_projection, when the weights
//                             have one (SDXL's second encoder: the pooled text embedding).
//
// SD 2.x conditions on ln_final(output of the penultimate layer): build it with
// `layers: N − 1` and take last_hidden_state. OpenCLIP weights are read through
// openClipTextEncoderWeights (checkpoint/ldm-names.ts), which presents them under these names.
//
// Choices: plain ONNX ops (opset 17, LayerNormalization) so every execution provider runs it;
// Linear weights are transposed once at build time to [in, out] so each projection is one
// MatMul + Add; the causal mask is a constant added to the scores (float32 lowest, as HF does).
// Precision and attention form: layers.ts (GraphForm).
import { GraphBuilder } from './graph.js';
import { Layers, REFERENCE_FORM, type GraphForm } from './layers.js';
import { requireShape, type WeightSource } from './weights.js';

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
  /**
   * Adds inputs `embedding_override` [batch, T, D] and `override_mask` [batch, T, 1] (1 = use the
   * override): where the mask is 1 the token embedding is replaced by the override vector
   * (textual-inversion vectors), before the position embeddings are added. `input_ids` still
   * drives the pooled output. With an all-zero mask the outputs are those of the plain graph, bit
   * for bit (Where picks the gathered embedding unchanged).
   */
  embeddingOverride?: boolean;
  /** Precision and attention form (layers.ts); the fp32 plain-op graph when absent. */
  form?: GraphForm;
}

export function buildClipTextGraph(source: WeightSource, config: ClipTextConfig, options: ClipTextGraphOptions = {}): GraphBuilder {
  const { width: D, positions: T } = config;
  const g = new GraphBuilder('clip_text_encoder');
  const L = new Layers(g, source, options.form ?? REFERENCE_FORM);

  const ids = g.input('input_ids', 'int32', ['batch', T]);
  let tokens = g.op('Gather', [L.weight('embeddings.token_embedding.weight', [config.vocab, D]), ids], { axis: { i: 0 } });
  if (options.embeddingOverride === true) {
    const override = L.input('embedding_override', ['batch', T, D]);
    const mask = g.input('override_mask', 'float32', ['batch', T, 1]);
    // Cast to BOOL (9): nonzero = take the override.
    tokens = g.op('Where', [g.op('Cast', [mask], { to: { i: 9 } }), override, tokens]);
  }
  let x = g.op('Add', [tokens, L.weight('embeddings.position_embedding.weight', [T, D])]);

  let penultimate: string | undefined;
  for (let l = 0; l < config.layers; l++) {
    if (l === config.layers - 1) penultimate = x;
    const p = `encoder.layers.${l}`;
    const h = L.layerNorm(x, `${p}.layer_norm1`, config.eps);
    const proj = (name: string) => L.linear(h, `${p}.self_attn.${name}`);
    const attn = L.attention(proj('q_proj'), proj('k_proj'), proj('v_proj'), D, config.heads, T);
    x = g.op('Add', [x, L.linear(attn, `${p}.self_attn.out_proj`)]);

    const f = L.linear(L.layerNorm(x, `${p}.layer_norm2`, config.eps), `${p}.mlp.fc1`);
    const act = config.activation === 'quick_gelu' ? g.op('Mul', [f, g.op('Sigmoid', [g.op('Mul', [f, L.scalar(1.702)])])]) : L.gelu(f);
    x = g.op('Add', [x, L.linear(act, `${p}.mlp.fc2`)]);
  }
  const last = L.layerNorm(x, 'final_layer_norm', config.eps);
  L.output(last, 'last_hidden_state', ['batch', T, D]);
  if (options.penultimate !== false && penultimate !== undefined) {
    L.output(penultimate, 'penultimate_hidden_state', ['batch', T, D]);
  }
  if (options.pooled !== false) {
    // ArgMax over float ids: exact for ids < 2^24, and float ArgMax is implemented by every provider.
    const eos = g.op('ArgMax', [g.op('Cast', [ids], { to: { i: 1 } })], { axis: { i: 1 }, keepdims: { i: 1 } });
    const pooled = g.op('GatherND', [last, eos], { batch_dims: { i: 1 } });
    L.output(pooled, 'pooler_output', ['batch', D]);
    if (L.has('text_projection.weight')) {
      const [projection] = L.shape('text_projection.weight', 2) as [number];
      L.output(L.linear(pooled, 'text_projection'), 'text_embeds', ['batch', projection]);
    }
  }
  return g;
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
