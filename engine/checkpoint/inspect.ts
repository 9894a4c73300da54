// File-system side of detection: opens a weights file (through the pickle guard), reads a sidecar
// .yaml and, only when the rules need it, the one tensor that tells SD 2.x ε from v; and reads a
// diffusers folder's config files. The decisions themselves live in detect.ts.
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { CheckpointError } from './errors.js';
import { detectWeights, needsProbe, V_PROBE_TENSOR, type CheckpointInfo, type Detection, type Family } from './detect.js';
import { openWeightsFile } from './pickle-guard.js';

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** What `path` holds; throws CheckpointError when the file cannot be read safely at all. */
export async function inspectWeightsFile(path: string): Promise<Detection> {
  const file = await openWeightsFile(path);
  try {
    const stem = path.slice(0, path.length - extname(path).length);
    const sidecarYaml = await readIfExists(`${stem}.yaml`);
    const options = { metadata: file.header.metadata, ...(sidecarYaml === undefined ? {} : { sidecarYaml }) };
    const tensors = file.header.tensors;
    if (needsProbe(tensors, options)) return detectWeights(tensors, { ...options, probe: await file.readFloat32(V_PROBE_TENSOR) });
    return detectWeights(tensors, options);
  } finally {
    await file.close();
  }
}

export interface DiffusersFolderFiles {
  unetConfig?: unknown;
  schedulerConfig?: unknown;
  /** File names present in unet/. */
  unetFiles: readonly string[];
}

export interface DiffusersInfo extends Omit<CheckpointInfo, 'kind' | 'predictionSource' | 'dtype' | 'parts'> {
  kind: 'diffusers';
  predictionSource: 'scheduler-config' | 'default';
  /** The UNet weights file to read (relative to the folder). */
  unetWeights: string;
}

function num(obj: unknown, key: string): number | undefined {
  const v = (obj as Record<string, unknown> | undefined)?.[key];
  return typeof v === 'number' ? v : Array.isArray(v) && typeof v[0] === 'number' ? v[0] : undefined;
}

function str(obj: unknown, key: string): string | undefined {
  const v = (obj as Record<string, unknown> | undefined)?.[key];
  return typeof v === 'string' ? v : undefined;
}

/** Pure rules for a diffusers folder, from its parsed config files and the unet/ listing. */
export function detectDiffusersFolder(files: DiffusersFolderFiles, label: string): DiffusersInfo {
  const weights = ['diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.fp16.safetensors'].find((f) => files.unetFiles.includes(f));
  if (weights === undefined) {
    if (files.unetFiles.some((f) => f.endsWith('.bin'))) {
      throw new CheckpointError(
        'pickle',
        `${label}/unet holds only diffusion_pytorch_model.bin, a Python pickle. The engine never loads pickles: opening one can run ` +
          'any code hidden in it. Download the .safetensors weights of the same model instead.',
      );
    }
    throw new CheckpointError('unknown-family', `${label} has no unet/diffusion_pytorch_model.safetensors.`);
  }
  if (typeof files.unetConfig !== 'object' || files.unetConfig === null) {
    throw new CheckpointError('unknown-family', `${label} has no readable unet/config.json.`);
  }
  const ctx = num(files.unetConfig, 'cross_attention_dim');
  const inChannels = num(files.unetConfig, 'in_channels') ?? 4;
  const addition = str(files.unetConfig, 'addition_embed_type');
  const sampleSize = num(files.unetConfig, 'sample_size');
  let family: Family;
  if (ctx === 768 && addition === undefined) family = 'sd1';
  else if (ctx === 1024 && addition === undefined) family = 'sd2';
  else if (ctx === 2048 && addition === 'text_time') family = 'sdxl';
  else {
    throw new CheckpointError(
      'unknown-family',
      `${label}: its unet/config.json (cross_attention_dim ${String(ctx)}, addition_embed_type ${String(addition)}) matches no ` +
        'Stable Diffusion 1.x, 2.x or SDXL model.',
    );
  }
  const predictionType = str(files.schedulerConfig, 'prediction_type');
  const prediction = predictionType === 'v_prediction' ? 'v' : 'epsilon';
  const variant = inChannels === 9 ? 'inpainting' : inChannels === 8 ? 'instruct-pix2pix' : 'txt2img';
  const info: DiffusersInfo = {
    kind: 'diffusers',
    family,
    variant,
    unetInChannels: inChannels,
    contextDim: ctx,
    prediction,
    predictionSource: predictionType === undefined ? 'default' : 'scheduler-config',
    nativeSize: sampleSize === undefined ? (family === 'sdxl' ? 1024 : 512) : sampleSize * 8,
    unetWeights: join('unet', weights),
    supported: true,
  };
  if (variant !== 'txt2img') return { ...info, supported: false, reason: `it is an ${variant} model (${inChannels} input channels), which the engine does not run yet` };
  return info;
}

async function readJson(path: string): Promise<unknown> {
  const text = await readIfExists(path);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CheckpointError('bad-header', `${path} is not valid JSON.`);
  }
}

/** Whether `dir` is a diffusers folder at all: it has a unet/config.json. */
export const isDiffusersFolder = (dir: string): Promise<boolean> =>
  stat(join(dir, 'unet', 'config.json')).then(
    (s) => s.isFile(),
    () => false,
  );

/** Reads a diffusers folder's configs; undefined when `dir` is not one (no unet/config.json). */
export async function inspectDiffusersFolder(dir: string): Promise<DiffusersInfo | undefined> {
  if (!(await isDiffusersFolder(dir))) return undefined;
  return detectDiffusersFolder(
    {
      unetConfig: await readJson(join(dir, 'unet', 'config.json')),
      schedulerConfig: await readJson(join(dir, 'scheduler', 'scheduler_config.json')),
      unetFiles: await readdir(join(dir, 'unet')),
    },
    basename(dir),
  );
}
