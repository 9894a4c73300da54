// Writes an SD 1.x/2.x/SDXL checkpoint as a model folder in the layout the engine's loader already
// reads (text_encoder/, unet/, vae_decoder/, vae_encoder/ each with model.onnx + model.onnx_data, scheduler and
// pipeline configs; SDXL also text_encoder_2/ and tokenizer_2/, as Optimum's SDXL exports), one part
// at a time and one tensor at a time, so peak memory stays near the largest single tensor rather
// than the model. The tokenizer is not in a checkpoint: the caller names a folder to copy
// tokenizer/ from (every SD 1.x/2.x/SDXL model uses the same CLIP BPE files; SDXL's second
// tokenizer differs only in padding with "!").
import { copyFile, link, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildClipTextGraph, clipTextConfig } from '../onnx-build/clip-text.js';
import type { GraphBuilder } from '../onnx-build/graph.js';
import type { GraphForm } from '../onnx-build/layers.js';
import { buildUnetGraph, UNET_HEADS, type UnetConfig } from '../onnx-build/unet.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph, SD_VAE, type VaeConfig } from '../onnx-build/vae.js';
import type { TensorReader } from '../onnx-build/weights.js';
import { clipLTextEncoderWeights, OPENCLIP_PREFIXES, openClipTextEncoderWeights, unetWeights, vaeWeights } from './ldm-names.js';

export interface FolderPlan {
  family: 'sd1' | 'sd2' | 'sdxl';
  prediction: 'epsilon' | 'v';
  /** Overrides for reduced-width test models; real checkpoints use the family's defaults. */
  textHeads?: number;
  /** SDXL's second (OpenCLIP bigG) encoder. */
  textHeads2?: number;
  unet?: UnetConfig;
  vae?: VaeConfig;
  /** Precision and attention form of every part (onnx-build/layers.ts); fp32 plain ops when absent. */
  form?: GraphForm;
}

/** A model folder's parts, in the order writeModelFolder builds them. */
export const FOLDER_PARTS = ['text_encoder', 'text_encoder_2', 'unet', 'vae_decoder', 'vae_encoder'] as const;

export interface FolderProgress {
  part: (typeof FOLDER_PARTS)[number];
  tensorsDone: number;
  tensorsTotal: number;
}

/** The KL-VAE's latent scale: SDXL's VAE was trained to a different spread than SD 1.x/2.x's. */
export const VAE_SCALING_FACTOR = { sd1: 0.18215, sd2: 0.18215, sdxl: 0.13025 } as const;

/** SD 1.x/2.x/SDXL's training schedule (the values their scheduler_config.json files carry; SDXL base's says "leading"). */
function schedulerConfig(family: FolderPlan['family'], prediction: FolderPlan['prediction']): Record<string, unknown> {
  return {
    ...(family === 'sdxl' ? { timestep_spacing: 'leading' } : {}),
    _class_name: 'EulerDiscreteScheduler',
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    num_train_timesteps: 1000,
    prediction_type: prediction === 'v' ? 'v_prediction' : 'epsilon',
    steps_offset: 1,
    set_alpha_to_one: false,
  };
}

export async function writeModelFolder(
  weights: TensorReader,
  plan: FolderPlan,
  dir: string,
  opts: {
    tokenizerDir?: string;
    onProgress?: (p: FolderProgress) => void;
    signal?: AbortSignal;
    /** Parts to take from a finished folder of the same checkpoint instead of building (a LoRA variant's untouched parts). */
    reuse?: { dir: string; parts: ReadonlySet<FolderProgress['part']> };
  } = {},
): Promise<void> {
  const part = async (name: FolderProgress['part'], graph: () => GraphBuilder): Promise<void> => {
    await mkdir(join(dir, name), { recursive: true });
    if (opts.reuse?.parts.has(name)) {
      // Hard links cost no disk and no time; a copy where the cache spans file systems.
      for (const f of ['model.onnx', 'model.onnx_data']) {
        await link(join(opts.reuse.dir, name, f), join(dir, name, f)).catch(() => copyFile(join(opts.reuse!.dir, name, f), join(dir, name, f)));
      }
      return;
    }
    await graph().writeWithExternalData(join(dir, name, 'model.onnx'), join(dir, name, 'model.onnx_data'), 'model.onnx_data', {
      ...(opts.signal === undefined ? {} : { signal: opts.signal }),
      onTensor: (done, total) => opts.onProgress?.({ part: name, tensorsDone: done, tensorsTotal: total }),
    });
  };

  // The embedding override inputs let textual-inversion vectors in (engine/conditioning.ts); with
  // a zero mask the outputs are the plain graph's, bit for bit.
  const TEXT_GRAPH = { embeddingOverride: true, ...(plan.form === undefined ? {} : { form: plan.form }) } as const;
  await part('text_encoder', () => {
    if (plan.family === 'sd1' || plan.family === 'sdxl') {
      // SDXL's first encoder is SD 1.x's CLIP ViT-L; SDXL reads its penultimate_hidden_state output.
      const source = clipLTextEncoderWeights(weights);
      return buildClipTextGraph(source, clipTextConfig(source, plan.textHeads === undefined ? {} : { heads: plan.textHeads }), TEXT_GRAPH);
    }
    // A diffusers SD 2.x folder holds the tower in HF's layout, already one layer short.
    if (!OPENCLIP_PREFIXES.sd2.some((p) => weights.header.tensors.has(`${p}token_embedding.weight`))) {
      const source = clipLTextEncoderWeights(weights);
      return buildClipTextGraph(source, clipTextConfig(source, { activation: 'gelu', ...(plan.textHeads === undefined ? {} : { heads: plan.textHeads }) }), TEXT_GRAPH);
    }
    // SD 2.x conditions on ln_final(penultimate layer): build the tower one layer short.
    const source = openClipTextEncoderWeights(weights, 'sd2');
    const full = clipTextConfig(source, { activation: 'gelu', ...(plan.textHeads === undefined ? {} : { heads: plan.textHeads }) });
    return buildClipTextGraph(source, { ...full, layers: full.layers - 1 }, TEXT_GRAPH);
  });
  if (plan.family === 'sdxl') {
    // OpenCLIP bigG: penultimate_hidden_state for the UNet's context, text_embeds for its pooled input.
    await part('text_encoder_2', () => {
      const source = openClipTextEncoderWeights(weights, 'sdxl');
      return buildClipTextGraph(source, clipTextConfig(source, { activation: 'gelu', ...(plan.textHeads2 === undefined ? {} : { heads: plan.textHeads2 }) }), TEXT_GRAPH);
    });
  }
  await part('unet', () => buildUnetGraph(unetWeights(weights), plan.unet ?? UNET_HEADS[plan.family], plan.form));
  // SDXL's VAE overflows in half precision (the reason for the "fp16-fix" VAEs): it keeps float32
  // arithmetic (fp16 weights cast at each use) when the rest of the model computes in fp16.
  const vaeForm = plan.family === 'sdxl' && plan.form?.precision === 'fp16' ? { ...plan.form, precision: 'fp16-resident' as const } : plan.form;
  await part('vae_decoder', () => buildVaeDecoderGraph(vaeWeights(weights), plan.vae ?? SD_VAE, vaeForm));
  // The encoder (img2img, hires) is optional for the loader: written when the file has one.
  if (weights.header.tensors.has('first_stage_model.encoder.conv_in.weight')) {
    await part('vae_encoder', () => buildVaeEncoderGraph(vaeWeights(weights), plan.vae ?? SD_VAE, vaeForm));
  }

  await mkdir(join(dir, 'scheduler'), { recursive: true });
  await writeFile(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(schedulerConfig(plan.family, plan.prediction), null, 2));
  await writeFile(join(dir, 'vae_decoder', 'config.json'), JSON.stringify({ scaling_factor: VAE_SCALING_FACTOR[plan.family] }, null, 2));
  const index =
    plan.family === 'sdxl'
      ? // diffusers' SDXL base default: an empty negative prompt conditions on zeros, not on "".
        { _class_name: 'StableDiffusionXLPipeline', force_zeros_for_empty_prompt: true, source: 'checkpoint' }
      : { _class_name: 'OnnxStableDiffusionPipeline', source: 'checkpoint' };
  await writeFile(join(dir, 'model_index.json'), JSON.stringify(index, null, 2));
  if (opts.tokenizerDir !== undefined) {
    await copyTokenizer(opts.tokenizerDir, join(dir, 'tokenizer'), plan.family === 'sd2' ? OPENCLIP_PAD : undefined);
    if (plan.family === 'sdxl') await copyTokenizer(opts.tokenizerDir, join(dir, 'tokenizer_2'), SDXL_TOKENIZER_2_PAD);
  }
}

/** OpenCLIP's text encoders (SD 2.x, SDXL's second) read CLIP's vocabulary padded with "!" (id 0). */
export const OPENCLIP_PAD = '!';
/** SDXL's second tokenizer is CLIP's, padding as OpenCLIP does. */
export const SDXL_TOKENIZER_2_PAD = OPENCLIP_PAD;

/** Copies a CLIP tokenizer folder; `pad` replaces its padding token (SDXL's tokenizer_2). */
export async function copyTokenizer(from: string, to: string, pad?: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const f of await readdir(from, { withFileTypes: true })) {
    if (f.isFile()) await copyFile(join(from, f.name), join(to, f.name));
  }
  if (pad === undefined) return;
  let special: Record<string, unknown> = {};
  try {
    special = JSON.parse(await readFile(join(to, 'special_tokens_map.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    // None or unreadable: the loader's defaults for the other tokens are CLIP's own.
  }
  await writeFile(join(to, 'special_tokens_map.json'), JSON.stringify({ ...special, pad_token: pad }, null, 2));
}
