// The KL autoencoder (the "VAE" of SD 1.x/2.x/SDXL) as ONNX graphs, written against the original
// LDM names (encoder.*, quant_conv.*, decoder.*, post_quant_conv.* — under first_stage_model. in a
// checkpoint, at the top level in a VAE-only file). IO matches the ONNX exports the engine already
// runs:
//   decoder: `latent_sample` [batch, z, h, w] (already divided by the scaling factor) → `sample`
//            [batch, 3, 8h, 8w] in about [-1, 1];
//   encoder: `sample` [batch, 3, H, W] in [-1, 1] → `latent_parameters` [batch, 2z, H/8, W/8]
//            (mean ‖ log-variance; the engine samples the posterior and applies the scaling factor).
//
// The structure is read from the weights' shapes, not assumed: the number of levels, resnet
// blocks per level, which levels resample and each block's widths. Choices: GroupNorm as
// Reshape → InstanceNormalization → Reshape → affine (the form every provider runs; opset 17 has
// no GroupNormalization with per-channel affine), nearest 2× upsampling as Resize, the encoder's
// downsampling as LDM does it (pad right/bottom by one, 3×3 conv with stride 2), and the
// mid-block attention as plain MatMul/Softmax.
import { GraphBuilder } from './graph.js';
import { Layers, REFERENCE_FORM, type GraphForm } from './layers.js';
import type { WeightSource } from './weights.js';

export interface VaeConfig {
  /** GroupNorm groups: 32 in every SD VAE. */
  groups: number;
  eps: number;
}

export const SD_VAE: VaeConfig = { groups: 32, eps: 1e-6 };

/** The blocks encoder and decoder share. */
function vaeBlocks(g: GraphBuilder, L: Layers, config: VaeConfig) {
  const norm = (x: string, prefix: string): string => L.groupNorm(x, prefix, config.groups, config.eps);
  const resnet = (x: string, prefix: string): string => {
    let h = L.conv(L.silu(norm(x, `${prefix}.norm1`)), `${prefix}.conv1`);
    h = L.conv(L.silu(norm(h, `${prefix}.norm2`)), `${prefix}.conv2`);
    return g.op('Add', [L.has(`${prefix}.nin_shortcut.weight`) ? L.conv(x, `${prefix}.nin_shortcut`) : x, h]);
  };
  // Single-head self-attention over the H·W positions, channels as features.
  const attention = (x: string, prefix: string): string => {
    const [C] = L.shape(`${prefix}.norm.weight`, 1) as [number];
    const h = norm(x, `${prefix}.norm`);
    const tokens = (name: string) => L.toTokens(L.conv(h, `${prefix}.${name}`));
    const mixed = L.attention(tokens('q'), tokens('k'), tokens('v'), C, 1);
    return g.op('Add', [x, L.conv(L.fromTokens(mixed, x), `${prefix}.proj_out`)]);
  };
  const mid = (x: string, part: string): string =>
    resnet(attention(resnet(x, `${part}.mid.block_1`), `${part}.mid.attn_1`), `${part}.mid.block_2`);
  const levels = (part: string, dir: 'up' | 'down'): number => {
    let n = 0;
    while (L.has(`${part}.${dir}.${n}.block.0.conv1.weight`)) n++;
    if (n === 0) throw new Error(`the weights have no ${part}.${dir}.0.block.0 (not an LDM VAE ${part})`);
    for (let level = 0; level < n; level++) {
      if (L.has(`${part}.${dir}.${level}.attn.0.norm.weight`)) {
        throw new Error(`${part} level ${level} has attention blocks, which SD VAEs do not; this VAE is not supported`);
      }
    }
    return n;
  };
  const out = (x: string, part: string): string => L.conv(L.silu(norm(x, `${part}.norm_out`)), `${part}.conv_out`);
  return { resnet, mid, levels, out };
}

export function buildVaeDecoderGraph(source: WeightSource, config: VaeConfig = SD_VAE, form: GraphForm = REFERENCE_FORM): GraphBuilder {
  const g = new GraphBuilder('vae_decoder');
  const L = new Layers(g, source, form);
  const { resnet, mid, levels, out } = vaeBlocks(g, L, config);
  const n = levels('decoder', 'up');

  const [, z] = L.shape('post_quant_conv.weight') as [number, number];
  const latent = L.input('latent_sample', ['batch', z, 'height', 'width']);
  let x = mid(L.conv(L.conv(latent, 'post_quant_conv'), 'decoder.conv_in'), 'decoder');
  for (let level = n - 1; level >= 0; level--) {
    for (let j = 0; L.has(`decoder.up.${level}.block.${j}.conv1.weight`); j++) x = resnet(x, `decoder.up.${level}.block.${j}`);
    if (L.has(`decoder.up.${level}.upsample.conv.weight`)) x = L.conv(upsampleNearest2x(g, x), `decoder.up.${level}.upsample.conv`);
  }
  const [outChannels] = L.shape('decoder.conv_out.weight') as [number];
  L.output(out(x, 'decoder'), 'sample', ['batch', outChannels, 'image_height', 'image_width']);
  return g;
}

export function buildVaeEncoderGraph(source: WeightSource, config: VaeConfig = SD_VAE, form: GraphForm = REFERENCE_FORM): GraphBuilder {
  const g = new GraphBuilder('vae_encoder');
  const L = new Layers(g, source, form);
  const { resnet, mid, levels, out } = vaeBlocks(g, L, config);
  const n = levels('encoder', 'down');

  const [, inChannels] = L.shape('encoder.conv_in.weight', 4) as [number, number];
  const image = L.input('sample', ['batch', inChannels, 'height', 'width']);
  let x = L.conv(image, 'encoder.conv_in');
  for (let level = 0; level < n; level++) {
    for (let j = 0; L.has(`encoder.down.${level}.block.${j}.conv1.weight`); j++) x = resnet(x, `encoder.down.${level}.block.${j}`);
    if (L.has(`encoder.down.${level}.downsample.conv.weight`)) {
      x = L.conv(x, `encoder.down.${level}.downsample.conv`, 2, [0, 0, 1, 1]);
    }
  }
  const moments = L.conv(out(mid(x, 'encoder'), 'encoder'), 'quant_conv');
  const [twoZ] = L.shape('quant_conv.weight') as [number];
  L.output(moments, 'latent_parameters', ['batch', twoZ, 'latent_height', 'latent_width']);
  return g;
}

/** Nearest-neighbour 2× upsampling of [B, C, H, W], as torch's F.interpolate(scale_factor=2, mode="nearest"). */
export function upsampleNearest2x(g: GraphBuilder, x: string): string {
  return g.op('Resize', [x, '', g.float32s(Float32Array.of(1, 1, 2, 2), [4], 'upsample_scales')], {
    mode: { s: 'nearest' },
    coordinate_transformation_mode: { s: 'asymmetric' },
    nearest_mode: { s: 'floor' },
  });
}
