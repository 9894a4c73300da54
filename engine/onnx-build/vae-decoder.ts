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
import { float32Bytes, requireShape, type WeightSource } from './weights.js';

export interface VaeDecoderConfig {
  /** GroupNorm groups: 32 in every SD VAE. */
  groups: number;
  eps: number;
}

export const SD_VAE_DECODER: VaeDecoderConfig = { groups: 32, eps: 1e-6 };

export function buildVaeDecoderGraph(source: WeightSource, config: VaeDecoderConfig = SD_VAE_DECODER): GraphBuilder {
  const g = new GraphBuilder('vae_decoder');
  const G = config.groups;

  /** A weight declared with `dims`, which may differ from the stored shape when the element count agrees (e.g. [C] → [C,1,1]). */
  const weight = (name: string, dims: readonly number[]): string => {
    const stored = requireShape(source, name);
    const count = (d: readonly number[]) => d.reduce((a, b) => a * b, 1);
    if (count(stored) !== count(dims)) {
      throw new Error(`tensor "${name}" has shape [${stored.join(', ')}]; expected [${dims.join(', ')}]`);
    }
    return g.initializer(name, 'float32', dims, async () => float32Bytes(await source.float32(name)));
  };
  const conv = (x: string, prefix: string, kernel: 1 | 3): string => {
    const [out, inC] = requireShape(source, `${prefix}.weight`) as [number, number];
    const pad = kernel === 3 ? 1 : 0;
    return g.op('Conv', [x, weight(`${prefix}.weight`, [out, inC, kernel, kernel]), weight(`${prefix}.bias`, [out])], {
      kernel_shape: { ints: [kernel, kernel] },
      pads: { ints: [pad, pad, pad, pad] },
    });
  };

  const groupShape = g.int64s([0, G, -1], 'group_shape');
  const groupScale = g.float32s(new Float32Array(G).fill(1), [G], 'group_scale');
  const groupBias = g.float32s(new Float32Array(G), [G], 'group_bias');
  const groupNorm = (x: string, prefix: string): string => {
    const [C] = requireShape(source, `${prefix}.weight`, 1) as [number];
    if (C % G !== 0) throw new Error(`GroupNorm "${prefix}" has ${C} channels, not divisible into ${G} groups`);
    const grouped = g.op('Reshape', [x, groupShape]);
    const normed = g.op('InstanceNormalization', [grouped, groupScale, groupBias], { epsilon: { f: config.eps } });
    const back = g.op('Reshape', [normed, g.op('Shape', [x])]);
    return g.op('Add', [g.op('Mul', [back, weight(`${prefix}.weight`, [C, 1, 1])]), weight(`${prefix}.bias`, [C, 1, 1])]);
  };
  const swish = (x: string): string => g.op('Mul', [x, g.op('Sigmoid', [x])]);

  const resnet = (x: string, prefix: string): string => {
    let h = conv(swish(groupNorm(x, `${prefix}.norm1`)), `${prefix}.conv1`, 3);
    h = conv(swish(groupNorm(h, `${prefix}.norm2`)), `${prefix}.conv2`, 3);
    const skip = source.shape(`${prefix}.nin_shortcut.weight`) === undefined ? x : conv(x, `${prefix}.nin_shortcut`, 1);
    return g.op('Add', [skip, h]);
  };

  const flatten = g.int64s([0, 0, -1], 'flatten_hw');
  const attention = (x: string, prefix: string): string => {
    const [C] = requireShape(source, `${prefix}.norm.weight`, 1) as [number];
    const h = groupNorm(x, `${prefix}.norm`);
    const proj = (name: string) => g.op('Reshape', [conv(h, `${prefix}.${name}`, 1), flatten]); // [B, C, HW]
    const q = g.op('Transpose', [proj('q')], { perm: { ints: [0, 2, 1] } });
    const scores = g.op('Mul', [g.op('MatMul', [q, proj('k')]), g.float32s(Float32Array.of(1 / Math.sqrt(C)), [], 'attn_scale')]);
    const weights = g.op('Softmax', [scores], { axis: { i: -1 } }); // [B, HW(query), HW(key)]
    const mixed = g.op('MatMul', [proj('v'), g.op('Transpose', [weights], { perm: { ints: [0, 2, 1] } })]); // [B, C, HW]
    const out = conv(g.op('Reshape', [mixed, g.op('Shape', [x])]), `${prefix}.proj_out`, 1);
    return g.op('Add', [x, out]);
  };

  let levels = 0;
  while (source.shape(`decoder.up.${levels}.block.0.conv1.weight`) !== undefined) levels++;
  if (levels === 0) throw new Error('the weights have no decoder.up.0.block.0 (not an LDM VAE decoder)');

  const [, z] = requireShape(source, 'post_quant_conv.weight') as [number, number];
  const latent = g.input('latent_sample', 'float32', ['batch', z, 'height', 'width']);
  let x = conv(latent, 'post_quant_conv', 1);
  x = conv(x, 'decoder.conv_in', 3);
  x = resnet(x, 'decoder.mid.block_1');
  x = attention(x, 'decoder.mid.attn_1');
  x = resnet(x, 'decoder.mid.block_2');
  const scales = g.float32s(Float32Array.of(1, 1, 2, 2), [4], 'upsample_scales');
  for (let level = levels - 1; level >= 0; level--) {
    if (source.shape(`decoder.up.${level}.attn.0.norm.weight`) !== undefined) {
      throw new Error(`decoder level ${level} has attention blocks, which SD VAEs do not; this decoder is not supported`);
    }
    for (let j = 0; source.shape(`decoder.up.${level}.block.${j}.conv1.weight`) !== undefined; j++) {
      x = resnet(x, `decoder.up.${level}.block.${j}`);
    }
    if (source.shape(`decoder.up.${level}.upsample.conv.weight`) !== undefined) {
      const up = g.op('Resize', [x, '', scales], {
        mode: { s: 'nearest' },
        coordinate_transformation_mode: { s: 'asymmetric' },
        nearest_mode: { s: 'floor' },
      });
      x = conv(up, `decoder.up.${level}.upsample.conv`, 3);
    }
  }
  x = conv(swish(groupNorm(x, 'decoder.norm_out')), 'decoder.conv_out', 3);
  const [outChannels] = requireShape(source, 'decoder.conv_out.weight') as [number];
  g.output(x, 'sample', 'float32', ['batch', outChannels, 'image_height', 'image_width']);
  return g;
}
