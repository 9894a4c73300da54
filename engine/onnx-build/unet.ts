// The LDM UNet (model.diffusion_model.* of SD 1.x/2.x checkpoints) as an ONNX graph, written
// against the original names. IO as the ONNX exports the engine already runs:
//   sample [batch, 4, h, w], timestep [batch] (float32: fractional timesteps are allowed),
//   encoder_hidden_states [batch, tokens, context] → out_sample [batch, 4, h, w];
//   SDXL-style UNets (with label_emb) also take text_embeds [batch, pooled] (the second text
//   encoder's projected pooled output) and time_ids [batch, 6] (original h, w, crop top, left,
//   target h, w), each id embedded like a timestep and concatenated after the pooled text.
//
// The structure is walked from the weights, not assumed: input_blocks.N holds a ResBlock (or a
// strided-conv Downsample) and maybe a SpatialTransformer; output_blocks.N a ResBlock over the
// concatenated skip, maybe a transformer, maybe an Upsample; transformer depth is the number of
// transformer_blocks present; proj_in/proj_out are 1×1 convs (SD 1.x) or Linear (SD 2.x). What
// the weights cannot show is the attention head layout: SD 1.x uses 8 heads at every width, SD 2.x
// and SDXL 64 channels per head — the caller says which (`UNET_HEADS`).
import { GraphBuilder } from './graph.js';
import { Layers, REFERENCE_FORM, type GraphForm } from './layers.js';
import { upsampleNearest2x } from './vae.js';
import type { WeightSource } from './weights.js';

export interface UnetConfig {
  /** Attention heads: a fixed count at every width (SD 1.x: 8) or a fixed width per head (SD 2.x/SDXL: 64). */
  heads: { count: number } | { channels: number };
  /** GroupNorm groups (32 in every SD UNet). */
  groups: number;
  /** Width of each time id's sinusoidal embedding in SDXL's added conditioning (256). */
  timeIdDim?: number;
}

export const UNET_HEADS = {
  sd1: { heads: { count: 8 }, groups: 32 },
  sd2: { heads: { channels: 64 }, groups: 32 },
  sdxl: { heads: { channels: 64 }, groups: 32, timeIdDim: 256 },
} as const satisfies Record<string, UnetConfig>;

/** LDM's sinusoidal embedding of `x` [N] → [N, dim]: cos then sin of x·exp(−ln(10000)·i/half), i < half. */
function sinusoid(g: GraphBuilder, L: Layers, x: string, dim: number): string {
  const half = dim / 2;
  const freqs = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const args = g.op('Mul', [g.op('Unsqueeze', [x, L.ints([1])]), g.float32s(freqs, [half], 'sinusoid_freqs')]);
  return g.op('Concat', [g.op('Cos', [args]), g.op('Sin', [args])], { axis: { i: -1 } });
}

export function buildUnetGraph(source: WeightSource, config: UnetConfig, form: GraphForm = REFERENCE_FORM): GraphBuilder {
  const g = new GraphBuilder('unet');
  const L = new Layers(g, source, form);

  const [modelChannels, inChannels] = L.shape('input_blocks.0.0.weight', 4) as [number, number];
  const [outChannels] = L.shape('out.2.weight', 4) as [number];
  const contextDim = findContextDim(L);

  const sample = L.input('sample', ['batch', inChannels, 'height', 'width']);
  const timestep = g.input('timestep', 'float32', ['batch']);
  const context = L.input('encoder_hidden_states', ['batch', 'tokens', contextDim]);

  // Timestep embedding → time_embed MLP → emb [B, 4·mc], plus SDXL's added conditioning.
  // The sinusoids are computed in float32 (timesteps up to 1000 times frequencies): cast after.
  let emb = L.linear(L.silu(L.linear(L.toCompute(sinusoid(g, L, timestep, modelChannels)), 'time_embed.0')), 'time_embed.2');
  if (L.has('label_emb.0.0.weight')) {
    const [, admIn] = L.shape('label_emb.0.0.weight', 2) as [number, number];
    const timeIdDim = config.timeIdDim ?? 256;
    const pooledDim = admIn - 6 * timeIdDim;
    if (pooledDim <= 0) throw new Error(`label_emb takes ${admIn} inputs, too few for 6 time ids of ${timeIdDim}`);
    const textEmbeds = L.input('text_embeds', ['batch', pooledDim]);
    const timeIds = g.input('time_ids', 'float32', ['batch', 6]);
    const ids = L.toCompute(g.op('Reshape', [sinusoid(g, L, g.op('Reshape', [timeIds, L.ints([-1])]), timeIdDim), L.ints([-1, 6 * timeIdDim])]));
    const y = g.op('Concat', [textEmbeds, ids], { axis: { i: -1 } });
    emb = g.op('Add', [emb, L.linear(L.silu(L.linear(y, 'label_emb.0.0')), 'label_emb.0.2')]);
  }
  const embSilu = L.silu(emb);

  const resBlock = (x: string, p: string): string => {
    let h = L.conv(L.silu(L.groupNorm(x, `${p}.in_layers.0`, config.groups, 1e-5)), `${p}.in_layers.2`);
    const e = g.op('Unsqueeze', [L.linear(embSilu, `${p}.emb_layers.1`), L.ints([2, 3])]);
    h = g.op('Add', [h, e]);
    h = L.conv(L.silu(L.groupNorm(h, `${p}.out_layers.0`, config.groups, 1e-5)), `${p}.out_layers.3`);
    return g.op('Add', [L.has(`${p}.skip_connection.weight`) ? L.conv(x, `${p}.skip_connection`) : x, h]);
  };

  const crossAttention = (x: string, p: string, kv: string, channels: number): string => {
    const heads = 'count' in config.heads ? config.heads.count : channels / config.heads.channels;
    if (!Number.isInteger(heads) || channels % heads !== 0) throw new Error(`${p}: ${channels} channels do not split into ${heads} heads`);
    const out = L.attention(L.linear(x, `${p}.to_q`), L.linear(kv, `${p}.to_k`), L.linear(kv, `${p}.to_v`), channels, heads);
    return L.linear(out, `${p}.to_out.0`);
  };

  const spatialTransformer = (x: string, p: string): string => {
    const [channels] = L.shape(`${p}.norm.weight`, 1) as [number];
    const linearProj = L.shape(`${p}.proj_in.weight`).length === 2;
    const normed = L.groupNorm(x, `${p}.norm`, config.groups, 1e-6);
    let t = linearProj ? L.linear(L.toTokens(normed), `${p}.proj_in`) : L.toTokens(L.conv(normed, `${p}.proj_in`));
    for (let k = 0; L.has(`${p}.transformer_blocks.${k}.norm1.weight`); k++) {
      const b = `${p}.transformer_blocks.${k}`;
      const n1 = L.layerNorm(t, `${b}.norm1`, 1e-5);
      t = g.op('Add', [t, crossAttention(n1, `${b}.attn1`, n1, channels)]);
      t = g.op('Add', [t, crossAttention(L.layerNorm(t, `${b}.norm2`, 1e-5), `${b}.attn2`, context, channels)]);
      // GEGLU: one projection to twice the inner width, split into value and gate.
      const [twice] = L.shape(`${b}.ff.net.0.proj.weight`, 2) as [number];
      const [value, gate] = g.opN('Split', [L.linear(L.layerNorm(t, `${b}.norm3`, 1e-5), `${b}.ff.net.0.proj`), L.ints([twice / 2, twice / 2])], 2, {
        axis: { i: -1 },
      }) as [string, string];
      t = g.op('Add', [t, L.linear(g.op('Mul', [value, L.gelu(gate)]), `${b}.ff.net.2`)]);
    }
    const out = linearProj ? L.fromTokens(L.linear(t, `${p}.proj_out`), x) : L.conv(L.fromTokens(t, x), `${p}.proj_out`);
    return g.op('Add', [out, x]);
  };

  const isTransformer = (p: string): boolean => L.has(`${p}.proj_in.weight`);

  let x = L.conv(sample, 'input_blocks.0.0');
  const skips = [x];
  for (let n = 1; L.has(`input_blocks.${n}.0.op.weight`) || L.has(`input_blocks.${n}.0.in_layers.0.weight`); n++) {
    const p = `input_blocks.${n}`;
    if (L.has(`${p}.0.op.weight`)) {
      x = L.conv(x, `${p}.0.op`, 2);
    } else {
      x = resBlock(x, `${p}.0`);
      if (isTransformer(`${p}.1`)) x = spatialTransformer(x, `${p}.1`);
    }
    skips.push(x);
  }

  x = resBlock(x, 'middle_block.0');
  if (isTransformer('middle_block.1')) {
    x = spatialTransformer(x, 'middle_block.1');
    x = resBlock(x, 'middle_block.2');
  } else {
    x = resBlock(x, 'middle_block.1');
  }

  for (let n = 0; L.has(`output_blocks.${n}.0.in_layers.0.weight`); n++) {
    const p = `output_blocks.${n}`;
    const skip = skips.pop();
    if (skip === undefined) throw new Error(`${p} has no skip connection left to take: the UNet's blocks do not pair up`);
    x = resBlock(g.op('Concat', [x, skip], { axis: { i: 1 } }), `${p}.0`);
    let m = 1;
    if (isTransformer(`${p}.1`)) x = spatialTransformer(x, `${p}.${m++}`);
    if (L.has(`${p}.${m}.conv.weight`)) x = L.conv(upsampleNearest2x(g, x), `${p}.${m}.conv`);
  }
  if (skips.length !== 0) throw new Error(`${skips.length} skip connections are left unused: the UNet's blocks do not pair up`);

  x = L.conv(L.silu(L.groupNorm(x, 'out.0', config.groups, 1e-5)), 'out.2');
  L.output(x, 'out_sample', ['batch', outChannels, 'height', 'width']);
  return g;
}

function findContextDim(L: Layers): number {
  for (let n = 1; n < 64; n++) {
    for (const p of [`input_blocks.${n}.1`, 'middle_block.1']) {
      const name = `${p}.transformer_blocks.0.attn2.to_k.weight`;
      if (L.has(name)) return L.shape(name, 2)[1]!;
    }
  }
  throw new Error('the UNet has no cross-attention (attn2.to_k) weights');
}
