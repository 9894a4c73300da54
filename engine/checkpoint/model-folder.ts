// Writes an SD 1.x/2.x checkpoint as a model folder in the layout the engine's loader already
// reads (text_encoder/, unet/, vae_decoder/, vae_encoder/ each with model.onnx + model.onnx_data, scheduler and
// pipeline configs), one part at a time and one tensor at a time, so peak memory stays near the
// largest single tensor rather than the model. The tokenizer is not in a checkpoint: the caller
// names a folder to copy tokenizer/ from (every SD 1.x/2.x model uses the same CLIP BPE files).
import { copyFile, link, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildClipTextGraph, clipTextConfig } from '../onnx-build/clip-text.js';
import type { GraphBuilder } from '../onnx-build/graph.js';
import { buildUnetGraph, UNET_HEADS, type UnetConfig } from '../onnx-build/unet.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph, SD_VAE, type VaeConfig } from '../onnx-build/vae.js';
import type { TensorReader } from '../onnx-build/weights.js';
import { clipLTextEncoderWeights, openClipTextEncoderWeights, unetWeights, vaeWeights } from './ldm-names.js';

export interface FolderPlan {
  family: 'sd1' | 'sd2';
  prediction: 'epsilon' | 'v';
  /** Overrides for reduced-width test models; real checkpoints use the family's defaults. */
  textHeads?: number;
  unet?: UnetConfig;
  vae?: VaeConfig;
}

export interface FolderProgress {
  part: 'text_encoder' | 'unet' | 'vae_decoder' | 'vae_encoder';
  tensorsDone: number;
  tensorsTotal: number;
}

/** SD 1.x/2.x's training schedule (the values every SD 1.x/2.x scheduler_config.json carries). */
function schedulerConfig(prediction: FolderPlan['prediction']): Record<string, unknown> {
  return {
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
  const TEXT_GRAPH = { embeddingOverride: true } as const;
  await part('text_encoder', () => {
    if (plan.family === 'sd1') {
      const source = clipLTextEncoderWeights(weights);
      return buildClipTextGraph(source, clipTextConfig(source, plan.textHeads === undefined ? {} : { heads: plan.textHeads }), TEXT_GRAPH);
    }
    // SD 2.x conditions on ln_final(penultimate layer): build the tower one layer short.
    const source = openClipTextEncoderWeights(weights, 'sd2');
    const full = clipTextConfig(source, { activation: 'gelu', ...(plan.textHeads === undefined ? {} : { heads: plan.textHeads }) });
    return buildClipTextGraph(source, { ...full, layers: full.layers - 1 }, TEXT_GRAPH);
  });
  await part('unet', () => buildUnetGraph(unetWeights(weights), plan.unet ?? UNET_HEADS[plan.family]));
  await part('vae_decoder', () => buildVaeDecoderGraph(vaeWeights(weights), plan.vae ?? SD_VAE));
  // The encoder (img2img, hires) is optional for the loader: written when the file has one.
  if (weights.header.tensors.has('first_stage_model.encoder.conv_in.weight')) {
    await part('vae_encoder', () => buildVaeEncoderGraph(vaeWeights(weights), plan.vae ?? SD_VAE));
  }

  await mkdir(join(dir, 'scheduler'), { recursive: true });
  await writeFile(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(schedulerConfig(plan.prediction), null, 2));
  await writeFile(join(dir, 'vae_decoder', 'config.json'), JSON.stringify({ scaling_factor: 0.18215 }, null, 2));
  await writeFile(join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'OnnxStableDiffusionPipeline', source: 'checkpoint' }, null, 2));
  if (opts.tokenizerDir !== undefined) {
    await mkdir(join(dir, 'tokenizer'), { recursive: true });
    for (const f of await readdir(opts.tokenizerDir, { withFileTypes: true })) {
      if (f.isFile()) await copyFile(join(opts.tokenizerDir, f.name), join(dir, 'tokenizer', f.name));
    }
  }
}
