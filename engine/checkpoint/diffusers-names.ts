// Tensor names of a diffusers folder (unet/, text_encoder/, vae/) → the single-file LDM names the
// graph builders read, so a diffusers folder goes through the same builders as a checkpoint.
//   UNet          the inverse of lora-names.ts's diffusersUnetModule (LDM → diffusers), taken over
//                 every LDM module the folder's block count allows; SD 1.x/2.x layout (two resnets
//                 per down level, three per up level), under model.diffusion_model.
//   text encoder  HF CLIPTextModel names (text_model.*), under cond_stage_model.transformer.
//   VAE           diffusers AutoencoderKL (down_blocks/up_blocks/mid_block; attention as to_q… or
//                 the older query/key/value/proj_attn, Linear [C, C] where LDM has 1×1 convs — the
//                 builders take either) → encoder.down.N / decoder.up.N (the decoder's levels in
//                 reverse order), under first_stage_model.
import { diffusersUnetModule } from './lora-names.js';

const RESNET_LAYERS = ['in_layers.0', 'in_layers.2', 'emb_layers.1', 'out_layers.0', 'out_layers.3', 'skip_connection'];
/** Stands for "the rest of the name" inside an attention block, whose inner names both layouts share. */
const REST = '@';

function maxIndex(names: readonly string[], pattern: RegExp): number {
  let max = -1;
  for (const n of names) {
    const m = pattern.exec(n);
    if (m !== null) max = Math.max(max, Number(m[1]));
  }
  return max;
}

function splitLeaf(name: string): [module: string, leaf: string] {
  const dot = name.lastIndexOf('.');
  return [name.slice(0, dot), name.slice(dot + 1)];
}

/**
 * diffusers UNet tensor name → LDM name (without model.diffusion_model.), for every name of the
 * folder's UNet; names that fit no LDM module are returned in `unmapped`.
 */
export function unetDiffusersToLdm(diffusersNames: readonly string[]): { map: Map<string, string>; unmapped: string[] } {
  const levels = maxIndex(diffusersNames, /^down_blocks\.(\d+)\./) + 1;
  const hasUpAttention = (n: number) => diffusersNames.some((d) => d.startsWith(`up_blocks.${Math.floor(n / 3)}.attentions.${n % 3}.`));
  // diffusersUnetModule asks whether output_blocks.N.1 is an attention by its proj_in weight.
  const ldmHints = new Set<string>();
  for (let n = 0; n < 3 * levels; n++) if (hasUpAttention(n)) ldmHints.add(`output_blocks.${n}.1.proj_in.weight`);

  const candidates = ['input_blocks.0.0', 'time_embed.0', 'time_embed.2', 'out.0', 'out.2', `middle_block.1.${REST}`];
  for (const block of ['middle_block.0', 'middle_block.2']) for (const l of RESNET_LAYERS) candidates.push(`${block}.${l}`);
  for (let n = 1; n <= 3 * levels; n++) {
    for (const l of [...RESNET_LAYERS, 'op']) candidates.push(`input_blocks.${n}.0.${l}`);
    candidates.push(`input_blocks.${n}.1.${REST}`);
  }
  for (let n = 0; n < 3 * levels; n++) {
    for (const l of RESNET_LAYERS) candidates.push(`output_blocks.${n}.0.${l}`);
    candidates.push(`output_blocks.${n}.1.${REST}`);
    // The upsampler follows the attention when the level has one.
    candidates.push(`output_blocks.${n}.${hasUpAttention(n) ? 2 : 1}.conv`);
  }

  const exact = new Map<string, string>();
  const prefixes: [diffusers: string, ldm: string][] = [];
  for (const ldm of candidates) {
    const diffusers = diffusersUnetModule(ldm, ldmHints);
    if (diffusers === undefined) continue;
    if (ldm.endsWith(REST)) prefixes.push([diffusers.slice(0, -REST.length), ldm.slice(0, -REST.length)]);
    else exact.set(diffusers, ldm);
  }
  const map = new Map<string, string>();
  const unmapped: string[] = [];
  for (const name of diffusersNames) {
    const [module, leaf] = splitLeaf(name);
    const direct = exact.get(module);
    if (direct !== undefined) {
      map.set(name, `${direct}.${leaf}`);
      continue;
    }
    const prefix = prefixes.find(([d]) => name.startsWith(d));
    if (prefix !== undefined) map.set(name, prefix[1] + name.slice(prefix[0].length));
    else unmapped.push(name);
  }
  return { map, unmapped };
}

const VAE_ATTENTION: Record<string, string> = {
  group_norm: 'norm',
  to_q: 'q',
  query: 'q',
  to_k: 'k',
  key: 'k',
  to_v: 'v',
  value: 'v',
  'to_out.0': 'proj_out',
  proj_attn: 'proj_out',
};

/** diffusers AutoencoderKL tensor name → LDM name (without first_stage_model.); undefined when it fits none. */
export function vaeDiffusersToLdm(name: string, decoderLevels: number): string | undefined {
  if (/^(quant_conv|post_quant_conv|(encoder|decoder)\.conv_(in|out))\.(weight|bias)$/.test(name)) return name;
  const [module, leaf] = splitLeaf(name);
  let m = /^(encoder|decoder)\.conv_norm_out$/.exec(module);
  if (m) return `${m[1]}.norm_out.${leaf}`;
  const resnet = (rest: string) => rest.replace(/^conv_shortcut$/, 'nin_shortcut');
  m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(norm1|conv1|norm2|conv2|conv_shortcut)$/.exec(module);
  if (m) return `encoder.down.${m[1]}.block.${m[2]}.${resnet(m[3]!)}.${leaf}`;
  m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv$/.exec(module);
  if (m) return `encoder.down.${m[1]}.downsample.conv.${leaf}`;
  m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(norm1|conv1|norm2|conv2|conv_shortcut)$/.exec(module);
  if (m) return `decoder.up.${decoderLevels - 1 - Number(m[1])}.block.${m[2]}.${resnet(m[3]!)}.${leaf}`;
  m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv$/.exec(module);
  if (m) return `decoder.up.${decoderLevels - 1 - Number(m[1])}.upsample.conv.${leaf}`;
  m = /^(encoder|decoder)\.mid_block\.resnets\.([01])\.(norm1|conv1|norm2|conv2|conv_shortcut)$/.exec(module);
  if (m) return `${m[1]}.mid.block_${Number(m[2]) + 1}.${resnet(m[3]!)}.${leaf}`;
  m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(.+)$/.exec(module);
  if (m && VAE_ATTENTION[m[2]!] !== undefined) return `${m[1]}.mid.attn_1.${VAE_ATTENTION[m[2]!]}.${leaf}`;
  return undefined;
}

/** The number of decoder levels of a diffusers VAE (up_blocks.N). */
export function vaeDecoderLevels(names: readonly string[]): number {
  return maxIndex(names, /^decoder\.up_blocks\.(\d+)\./) + 1;
}
