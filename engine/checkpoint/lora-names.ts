// Which checkpoint tensor a LoRA module modifies. LoRA files name modules three ways:
//   kohya/A1111   lora_unet_<module with . → _>, lora_te_ / lora_te1_ / lora_te2_<module>
//                 (SD 1.x/2.x: diffusers module names; SDXL: the LDM names themselves)
//   PEFT          unet.<diffusers module>.lora_A/B.weight, text_encoder(_2).<HF module>.lora_A/B.weight
//   old diffusers unet.<module>.processor.to_q_lora.down/up.weight
// kohya's underscores cannot be split back into dots unambiguously, so the table goes the other
// way: every 2-D/4-D weight of the checkpoint is given its diffusers/HF module name and each of
// the names a LoRA could use for it.
import { OPENCLIP_PREFIXES } from './ldm-names.js';

/** A LoRA module's target: a checkpoint tensor, or a row block of one (OpenCLIP's fused q/k/v). */
export interface LoraTarget {
  tensor: string;
  part: 'unet' | 'text_encoder';
  /** First row of the block this module changes (0 unless the tensor is fused). */
  rowOffset: number;
  /** Rows of the block; undefined = the whole tensor. */
  rows?: number;
}

const RESNET_LAYER: Record<string, string> = {
  'in_layers.0': 'norm1',
  'in_layers.2': 'conv1',
  'out_layers.0': 'norm2',
  'emb_layers.1': 'time_emb_proj',
  'out_layers.3': 'conv2',
  skip_connection: 'conv_shortcut',
};

/**
 * The diffusers module name of an LDM UNet module (a tensor name without `.weight`/`.bias`), for
 * SD 1.x/2.x's two resnets per level. Used both for LoRA names and, inverted, to read diffusers folders.
 */
export function diffusersUnetModule(ldm: string, tensors: ReadonlySet<string>): string | undefined {
  const resnet = (rest: string) => {
    for (const [from, to] of Object.entries(RESNET_LAYER)) if (rest === from) return to;
    return undefined;
  };
  let m = /^input_blocks\.(\d+)\.(\d)\.(.+)$/.exec(ldm);
  if (m) {
    const n = Number(m[1]);
    if (n === 0) return undefined;
    const level = Math.floor((n - 1) / 3);
    const j = (n - 1) % 3;
    if (j === 2 && m[2] === '0' && m[3] === 'op') return `down_blocks.${level}.downsamplers.0.conv`;
    if (m[2] === '0') {
      const r = resnet(m[3]!);
      return r && `down_blocks.${level}.resnets.${j}.${r}`;
    }
    return `down_blocks.${level}.attentions.${j}.${m[3]}`;
  }
  if (ldm === 'input_blocks.0.0') return 'conv_in';
  m = /^middle_block\.(\d)\.(.+)$/.exec(ldm);
  if (m) {
    if (m[1] === '1') return `mid_block.attentions.0.${m[2]}`;
    const r = resnet(m[2]!);
    return r && `mid_block.resnets.${m[1] === '0' ? 0 : 1}.${r}`;
  }
  m = /^output_blocks\.(\d+)\.(\d)\.(.+)$/.exec(ldm);
  if (m) {
    const n = Number(m[1]);
    const level = Math.floor(n / 3);
    const j = n % 3;
    if (m[3] === 'conv' && m[2] !== '0') return `up_blocks.${level}.upsamplers.0.conv`;
    if (m[2] === '0') {
      const r = resnet(m[3]!);
      return r && `up_blocks.${level}.resnets.${j}.${r}`;
    }
    // output_blocks.N.1 is an attention when the level has one (a conv upsampler was handled above).
    if (m[2] === '1' && tensors.has(`output_blocks.${n}.1.proj_in.weight`)) return `up_blocks.${level}.attentions.${j}.${m[3]}`;
    return undefined;
  }
  const fixed: Record<string, string> = {
    'time_embed.0': 'time_embedding.linear_1',
    'time_embed.2': 'time_embedding.linear_2',
    'out.0': 'conv_norm_out',
    'out.2': 'conv_out',
  };
  return fixed[ldm];
}

const UNET = 'model.diffusion_model.';
const CLIP_L = ['cond_stage_model.transformer.text_model.', 'cond_stage_model.transformer.', 'conditioner.embedders.0.transformer.text_model.'];

const OPENCLIP_MODULE: [RegExp, (l: string) => string][] = [
  [/^attn\.out_proj$/, (l) => `encoder.layers.${l}.self_attn.out_proj`],
  [/^mlp\.c_fc$/, (l) => `encoder.layers.${l}.mlp.fc1`],
  [/^mlp\.c_proj$/, (l) => `encoder.layers.${l}.mlp.fc2`],
];

const kohya = (prefix: string, module: string) => `${prefix}${module.replace(/\./g, '_')}`;

/**
 * Every name a LoRA may give a module of this checkpoint → its target. Built once per model from
 * the tensor names (no data is read).
 */
export function loraTargetTable(tensorNames: Iterable<string>, shapes: (name: string) => readonly number[] | undefined): Map<string, LoraTarget> {
  const table = new Map<string, LoraTarget>();
  const names = [...tensorNames];
  const unetNames = new Set(names.filter((n) => n.startsWith(UNET)).map((n) => n.slice(UNET.length)));
  const add = (keys: string[], target: LoraTarget) => {
    for (const k of keys) table.set(k, target);
  };

  for (const full of names) {
    if (!full.endsWith('.weight')) continue;
    const rank = shapes(full)?.length;
    if (rank !== 2 && rank !== 4) continue;
    const module = full.slice(0, -'.weight'.length);
    if (full.startsWith(UNET)) {
      const ldm = module.slice(UNET.length);
      const target: LoraTarget = { tensor: full, part: 'unet', rowOffset: 0 };
      const diffusers = diffusersUnetModule(ldm, unetNames);
      // SDXL kohya files use the LDM names; SD 1.x/2.x ones the diffusers names.
      add([kohya('lora_unet_', ldm)], target);
      if (diffusers !== undefined) add([kohya('lora_unet_', diffusers), `unet.${diffusers}`], target);
      continue;
    }
    const clip = CLIP_L.find((p) => full.startsWith(p));
    if (clip !== undefined) {
      const hf = module.slice(clip.length);
      const te1 = full.startsWith('conditioner.embedders.0.');
      const target: LoraTarget = { tensor: full, part: 'text_encoder', rowOffset: 0 };
      add([kohya(te1 ? 'lora_te1_text_model_' : 'lora_te_text_model_', hf), `text_encoder.text_model.${hf}`], target);
      continue;
    }
    for (const [family, prefixes] of Object.entries(OPENCLIP_PREFIXES)) {
      const prefix = prefixes.find((p) => full.startsWith(p));
      if (prefix === undefined) continue;
      const kohyaPrefix = family === 'sdxl' ? 'lora_te2_text_model_' : 'lora_te_text_model_';
      const peftPrefix = family === 'sdxl' ? 'text_encoder_2.text_model.' : 'text_encoder.text_model.';
      const rest = module.slice(prefix.length);
      const m = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(rest);
      if (m) {
        for (const [re, hfOf] of OPENCLIP_MODULE) {
          if (re.test(m[2]!)) {
            const hf = hfOf(m[1]!);
            add([kohya(kohyaPrefix, hf), peftPrefix + hf], { tensor: full, part: 'text_encoder', rowOffset: 0 });
          }
        }
      }
      break;
    }
  }
  // OpenCLIP fuses q/k/v into one in_proj_weight [3D, D]; a LoRA on q_proj changes its first D rows.
  for (const full of names) {
    for (const [family, prefixes] of Object.entries(OPENCLIP_PREFIXES)) {
      const prefix = prefixes.find((p) => full.startsWith(p));
      if (prefix === undefined) continue;
      const m = /^transformer\.resblocks\.(\d+)\.attn\.in_proj_weight$/.exec(full.slice(prefix.length));
      const width = shapes(full)?.[1];
      if (!m || width === undefined) continue;
      const kohyaPrefix = family === 'sdxl' ? 'lora_te2_text_model_' : 'lora_te_text_model_';
      const peftPrefix = family === 'sdxl' ? 'text_encoder_2.text_model.' : 'text_encoder.text_model.';
      (['q_proj', 'k_proj', 'v_proj'] as const).forEach((p, i) => {
        const hf = `encoder.layers.${m[1]}.self_attn.${p}`;
        add([kohya(kohyaPrefix, hf), peftPrefix + hf], { tensor: full, part: 'text_encoder', rowOffset: i * width, rows: width });
      });
    }
  }
  return table;
}

export interface LoraModule {
  /** The module name as the LoRA file spells it, without the down/up/alpha suffix. */
  key: string;
  down: string;
  up: string;
  alpha?: string;
}

const SUFFIXES: [RegExp, 'down' | 'up'][] = [
  [/\.lora_down\.weight$/, 'down'],
  [/\.lora_up\.weight$/, 'up'],
  [/\.lora_A\.weight$/, 'down'],
  [/\.lora_B\.weight$/, 'up'],
  [/\.lora\.down\.weight$/, 'down'],
  [/\.lora\.up\.weight$/, 'up'],
  [/_lora\.down\.weight$/, 'down'],
  [/_lora\.up\.weight$/, 'up'],
];

/** Groups a LoRA file's tensors into modules (down, up, optional alpha); `unpaired` lists halves without a partner. */
export function loraModules(names: Iterable<string>): { modules: LoraModule[]; unpaired: string[] } {
  const halves = new Map<string, { down?: string; up?: string }>();
  const all = new Set(names);
  for (const name of all) {
    for (const [re, which] of SUFFIXES) {
      if (!re.test(name)) continue;
      // Old diffusers: "...attn1.processor.to_q_lora.down.weight" → module "...attn1.to_q".
      let key = name.replace(re, '');
      if (re.source.startsWith('_lora')) key = key.replace(/\.processor\.(to_[qkv]|to_out)$/, '.$1').replace(/\.to_out$/, '.to_out.0');
      const h = halves.get(key) ?? {};
      h[which] = name;
      halves.set(key, h);
      break;
    }
  }
  const modules: LoraModule[] = [];
  const unpaired: string[] = [];
  for (const [key, h] of halves) {
    if (h.down === undefined || h.up === undefined) {
      unpaired.push(key);
      continue;
    }
    const stem = h.down.replace(/\.(lora_down|lora_A|lora\.down)\.weight$/, '');
    const alpha = [`${stem}.alpha`, `${key}.alpha`].find((a) => all.has(a));
    modules.push({ key, down: h.down, up: h.up, ...(alpha === undefined ? {} : { alpha }) });
  }
  return { modules, unpaired };
}
