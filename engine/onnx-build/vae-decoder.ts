// The KL autoencoder's decoder (the "VAE" of SD 1.x/2.x/SDXL) as an ONNX graph, written against
// the original LDM names (decoder.*, post_quant_conv.* — under first_stage_model. in a checkpoint,
// at the top level in a VAE-only file). Its IO matches the ONNX exports the engine already runs:
// input `latent_sample` [batch, z, h, w] (already divided by the scaling factor), output `sample`
// [batch, 3, 8h, 8w] in about [-1, 1].
//
// The structure is read from the weights' shapes, not assumed: the number of levels, resnet
// blocks per level, which levels upsample and each block's widths. Choices: GroupNorm as
// Reshape → InstanceNormalization → Reshape → affine (the form every provider runs; opset 17 has
// no GroupNormalization with per-channel affine), nearest 2× upsampling as Resize, and the
// mid-block attention as plain MatMul/Softmax.
import { GraphBuilder } from './graph.js';
import { Layers } from './layers.js';
import type { WeightSource } from './weights.js';

export interface VaeDecoderConfig {
  /** GroupNorm groups: 32 in every SD VAE. */
  groups: number;
  eps: number;
}

export const SD_VAE_DECODER: VaeDecoderConfig = { groups: 32, eps: 1e-6 };

export function buildVaeDecoderGraph(source: WeightSource, config: VaeDecoderConfig = SD_VAE_DECODER): GraphBuilder {
  const g = new GraphBuilder('vae_decoder');
  const L = new Layers(g, source);
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

  let levels = 0;
  while (L.has(`decoder.up.${levels}.block.0.conv1.weight`)) levels++;
  if (levels === 0) throw new Error('the weights have no decoder.up.0.block.0 (not an LDM VAE decoder)');

  const [, z] = L.shape('post_quant_conv.weight') as [number, number];
  const latent = g.input('latent_sample', 'float32', ['batch', z, 'height', 'width']);
  let x = L.conv(latent, 'post_quant_conv');
  x = L.conv(x, 'decoder.conv_in');
  x = resnet(x, 'decoder.mid.block_1');
  x = attention(x, 'decoder.mid.attn_1');
  x = resnet(x, 'decoder.mid.block_2');
  for (let level = levels - 1; level >= 0; level--) {
    if (L.has(`decoder.up.${level}.attn.0.norm.weight`)) {
      throw new Error(`decoder level ${level} has attention blocks, which SD VAEs do not; this decoder is not supported`);
    }
    for (let j = 0; L.has(`decoder.up.${level}.block.${j}.conv1.weight`); j++) x = resnet(x, `decoder.up.${level}.block.${j}`);
    if (L.has(`decoder.up.${level}.upsample.conv.weight`)) x = L.conv(upsampleNearest2x(g, x), `decoder.up.${level}.upsample.conv`);
  }
  x = L.conv(L.silu(norm(x, 'decoder.norm_out')), 'decoder.conv_out');
  const [outChannels] = L.shape('decoder.conv_out.weight') as [number];
  g.output(x, 'sample', 'float32', ['batch', outChannels, 'image_height', 'image_width']);
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
