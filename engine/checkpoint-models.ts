// The registry's view of weights files and diffusers folders under the models directory: a
// single-file checkpoint or diffusers folder the engine can build a folder from becomes a
// ModelInfo (source 'checkpoint' or 'diffusers'; its ONNX folder is built on first use, see
// ./model-resolve.ts); one that cannot be used becomes a ModelProblem with the reason (a pickle,
// an unknown family, a truncated file, an SDXL diffusers folder, …). LoRA, embedding and VAE
// files are add-ons, not models: they are skipped here and listed by ./checkpoint/catalogue.ts. Detection is by tensor names and shapes, never by name.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { familyLabel, scanCatalogue } from './checkpoint/catalogue.js';
import type { CheckpointInfo } from './checkpoint/detect.js';
import { CheckpointError } from './checkpoint/errors.js';
import { checkDiffusersFolder } from './checkpoint/diffusers-folder.js';
import { inspectWeightsFile } from './checkpoint/inspect.js';
import { assertBuildable } from './checkpoint/prepare.js';
import { defaultsForName } from './model-defaults.js';
import type { ModelFamily, ModelInfo, ModelProblem } from './types.js';

/** Files worth a look: safetensors, and the pickle extensions (refused with the reason). */
export const WEIGHTS_FILE = /\.(safetensors|ckpt|pt|pth|bin|pkl|pickle)$/i;
/** Subfolders of the models directory that hold checkpoints (A1111's and ComfyUI's names). */
export const CHECKPOINT_SUBFOLDERS = ['checkpoints', 'Stable-diffusion'];

export const checkpointName = (file: string): string => path.basename(file, path.extname(file));

/** What a checkpoint file or diffusers folder becomes once built: the defaults every SD 1.x/2.x/SDXL model gets. */
function preparableModel(
  name: string,
  dir: string,
  source: 'checkpoint' | 'diffusers',
  info: Pick<CheckpointInfo, 'prediction' | 'nativeSize' | 'dtype'> & { family: 'sd1' | 'sd2' | 'sdxl' },
): ModelInfo {
  const family: ModelFamily = info.family;
  return {
    name,
    dir,
    family,
    predictionType: info.prediction === 'v' ? 'v_prediction' : 'epsilon',
    nativeWidth: info.nativeSize,
    nativeHeight: info.nativeSize,
    // A Turbo/Lightning fine-tune is told by its name only (its weights look like any SDXL's).
    ...defaultsForName(family, name),
    // The folder builder writes a VAE encoder whenever the model has one (both checks made sure of the VAE).
    hasVaeEncoder: true,
    // The builders write plain float32 graphs in the newest Optimum layout (float timestep [batch]).
    generation: 'diffusers-legacy',
    dtype: 'float32',
    source,
    storedDtype: info.dtype,
  };
}

/**
 * A weights file as the registry sees it: a model, a problem, or undefined for add-ons (LoRA,
 * embedding, VAE files), which are not models. Never throws.
 */
export async function inspectCheckpointFile(file: string): Promise<ModelInfo | ModelProblem | undefined> {
  const name = checkpointName(file);
  const label = path.basename(file);
  try {
    const info = await inspectWeightsFile(file);
    if (info.kind === 'lora' || info.kind === 'embedding' || info.kind === 'vae') return undefined;
    assertBuildable(info, label);
    return preparableModel(name, file, 'checkpoint', info);
  } catch (err) {
    const reason = err instanceof CheckpointError ? err.message : `${label} cannot be read (${(err as Error).message})`;
    return { name, dir: file, reason };
  }
}

/**
 * A folder holding diffusers weights (unet/diffusion_pytorch_model.*) and no ONNX UNet: a model
 * (source 'diffusers', built on first use like a checkpoint) when the builders can take it, else
 * a problem with the reason (pickled `.bin` parts, a missing part, SDXL, …). Undefined when the
 * folder has no diffusers UNet weights, so the ONNX checks give their own reason. Reads headers
 * and configs only. Never throws.
 */
export async function inspectDiffusersModel(dir: string, name: string): Promise<ModelInfo | ModelProblem | undefined> {
  // An ONNX export with its model.onnx missing has unet/config.json too; diffusers weights decide.
  const unetFiles = await readdir(path.join(dir, 'unet')).catch(() => [] as string[]);
  if (!unetFiles.some((f) => f.startsWith('diffusion_pytorch_model.'))) return undefined;
  try {
    const { info, dtype } = await checkDiffusersFolder(dir);
    return preparableModel(name, dir, 'diffusers', { ...info, dtype });
  } catch (err) {
    return { name, dir, reason: err instanceof CheckpointError ? err.message : `could not read the folder (${(err as Error).message})` };
  }
}

/** The family key LoRAs and embeddings are matched by (SD 2.x Turbo takes SD 2.x add-ons). */
const addonFamily = (m: ModelInfo): string => (m.family === 'sd-turbo' ? 'sd2' : m.family);

/** Fills each model's `loras` and `embeddings` with the installed add-ons made for its family. */
export async function attachAddons(models: ModelInfo[], modelsDir: string): Promise<void> {
  const cat = await scanCatalogue(modelsDir, { addonsOnly: true });
  for (const m of models) {
    m.loras = cat.loras.filter((l) => l.family === addonFamily(m)).map((l) => l.name);
    m.embeddings = cat.embeddings.filter((e) => e.family === addonFamily(m)).map((e) => e.name);
  }
}

/** "SD 1.x, 512×512, fp16, checkpoint": what a member needs to know about a model, in one line. */
export function modelSummary(m: ModelInfo): string {
  const dtype = m.storedDtype ?? (m.dtype === 'float16' ? 'fp16' : 'fp32');
  return [familyLabel(m.family), `${m.nativeWidth}×${m.nativeHeight}`, dtype, m.source ?? 'onnx'].join(', ');
}
