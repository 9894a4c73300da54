// The model registry: finds Stable Diffusion ONNX folders (and, through ./checkpoint-models.ts,
// single-file checkpoints and diffusers folders in models/ and models/checkpoints/) under the
// models directory and describes each one (family, export generation, dtype, native size, suggested defaults) — or
// says exactly which file is wrong. It never creates a session and never throws for a bad
// folder.
//
// Generation and dtype are detected here, at scan time, from the UNet's declared graph inputs
// (read straight from unet/model.onnx by ./onnx-header.ts, skipping the weights):
//   timestep int64 → 'optimum-old' (Optimum ≤ 1.23), float rank 0 → 'optimum-new' (≥ 1.24),
//   float [batch] → 'diffusers-legacy'; `sample` float16 → dtype float16.
// The loader (./model.ts) does not depend on this label: it feeds whatever each session's
// inputMetadata declares, so a mislabelled folder still runs.
import { constants as fsConstants } from 'node:fs';
import { access, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { attachAddons, CHECKPOINT_SUBFOLDERS, inspectCheckpointFile, inspectDiffusersModel, WEIGHTS_FILE } from './checkpoint-models.js';
import { OnnxElemType, readOnnxSignature, type OnnxSignature, type OnnxValueDecl } from './onnx-header.js';
import { defaultsFor, isTurbo, type ModelDefaults } from './model-defaults.js';
import { parseSchedulerConfig, type SchedulerConfig } from './schedulers.js';
import { SAMPLERS, type ExportGeneration, type ModelFamily, type ModelInfo, type ModelProblem, type ModelScan, type SamplerName } from './types.js';

/** Files every usable folder needs, relative to the model folder. */
const REQUIRED_FILES = [
  'model_index.json',
  'scheduler/scheduler_config.json',
  'tokenizer/vocab.json',
  'tokenizer/merges.txt',
  'text_encoder/model.onnx',
  'unet/model.onnx',
  'vae_decoder/model.onnx',
] as const;

const SD_PIPELINE_CLASSES = new Set([
  'OnnxStableDiffusionPipeline',
  // The name diffusers ≤ 0.5's conversion script saved (deprecated alias, same layout).
  'StableDiffusionOnnxPipeline',
  'OnnxStableDiffusionImg2ImgPipeline',
  'ORTStableDiffusionPipeline',
  'ORTStableDiffusionImg2ImgPipeline',
  'StableDiffusionPipeline',
  'StableDiffusionImg2ImgPipeline',
]);

/** SDXL pipelines (diffusers, Optimum, and what engine/checkpoint/model-folder.ts writes). */
const SDXL_PIPELINE_CLASSES = new Set([
  'StableDiffusionXLPipeline',
  'StableDiffusionXLImg2ImgPipeline',
  'ORTStableDiffusionXLPipeline',
  'ORTStableDiffusionXLImg2ImgPipeline',
  'OnnxStableDiffusionXLPipeline',
]);

/** Files an SDXL folder needs beyond REQUIRED_FILES (Optimum's SDXL layout). */
const SDXL_FILES = ['text_encoder_2/model.onnx', 'tokenizer_2/vocab.json', 'tokenizer_2/merges.txt'] as const;

class FolderProblem extends Error {}

function problem(reason: string): never {
  throw new FolderProblem(reason);
}

async function isReadable(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.R_OK);
    return true;
  } catch {
    return false;
  }
}

export async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function readJsonObject(dir: string, rel: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path.join(dir, rel), 'utf8');
  } catch {
    return problem(`${rel} is missing or unreadable`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return problem(`${rel} is not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return problem(`${rel} should hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** A JSON object that may legitimately be absent (per-part config.json); unreadable or invalid ones are problems. */
async function readOptionalJson(dir: string, rel: string): Promise<Record<string, unknown> | undefined> {
  if (!(await isReadable(path.join(dir, rel)))) return undefined;
  return readJsonObject(dir, rel);
}

async function readSignature(dir: string, rel: string): Promise<OnnxSignature> {
  let sig: OnnxSignature;
  try {
    sig = await readOnnxSignature(path.join(dir, rel));
  } catch (err) {
    return problem(`${rel} is not a readable ONNX model (${(err as Error).message})`);
  }
  const partDir = path.dirname(rel);
  for (const location of sig.externalFiles) {
    const relData = path.posix.join(partDir, location);
    const file = path.join(dir, relData);
    if (!(await isReadable(file))) problem(`${relData} is missing (${rel} keeps its weights there)`);
    // Multi-gigabyte weight files are the part of a download most likely to stop early; onnxruntime
    // would only say so at session creation, after the model was listed as usable.
    const needed = sig.externalBytesNeeded[location] ?? 0;
    const info = await stat(file);
    if (!info.isFile()) problem(`${relData} is not a file (${rel} keeps its weights there)`);
    const size = info.size;
    if (size < needed) {
      problem(`${relData} is truncated (${size} bytes; ${rel} needs at least ${needed}); download it again`);
    }
  }
  return sig;
}

function findInput(sig: OnnxSignature, name: string): OnnxValueDecl | undefined {
  return sig.inputs.find((v) => v.name === name);
}

function numberField(obj: Record<string, unknown> | undefined, key: string): number | undefined {
  const v = obj?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** Whether the folder says it is SDXL: by pipeline class, by model_index.json naming text_encoder_2, or by the folder itself. */
async function saysSdxl(dir: string, index: Record<string, unknown>, className: string): Promise<boolean> {
  return SDXL_PIPELINE_CLASSES.has(className) || 'text_encoder_2' in index || (await isDirectory(path.join(dir, 'text_encoder_2')));
}

function refuseUnsupportedPipelines(className: string, sdxl: boolean): void {
  if (/Refiner/i.test(className)) problem(`SDXL refiners only finish another model's pictures and are not supported (model_index.json says ${className})`);
  if (/LatentConsistency|LCM/i.test(className)) {
    problem(`LCM (latent consistency) models are not supported yet (model_index.json says ${className})`);
  }
  if (/Inpaint/i.test(className)) problem(`inpainting models are not supported (model_index.json says ${className})`);
  if (sdxl) {
    if (className !== '' && !SDXL_PIPELINE_CLASSES.has(className) && !SD_PIPELINE_CLASSES.has(className)) {
      problem(`model_index.json says ${className}; only Stable Diffusion 1.x/2.x/SDXL pipelines are supported`);
    }
    return;
  }
  if (!SD_PIPELINE_CLASSES.has(className)) {
    problem(`model_index.json says ${className || 'no _class_name'}; only Stable Diffusion 1.x/2.x ONNX pipelines are supported`);
  }
}

function detectGeneration(timestep: OnnxValueDecl): ExportGeneration {
  if (timestep.elemType === OnnxElemType.INT64 || timestep.elemType === OnnxElemType.INT32) return 'optimum-old';
  if (timestep.dims !== undefined && timestep.dims.length === 0) return 'optimum-new';
  return 'diffusers-legacy';
}

function floatDtype(decl: OnnxValueDecl, rel: string): 'float32' | 'float16' {
  if (decl.elemType === OnnxElemType.FLOAT) return 'float32';
  if (decl.elemType === OnnxElemType.FLOAT16) return 'float16';
  return problem(`${rel} input "${decl.name}" has element type ${decl.elemType}; only float32 and float16 models are supported`);
}

function lastDim(decl: OnnxValueDecl | undefined): number | undefined {
  const d = decl?.dims?.[decl.dims.length - 1];
  return typeof d === 'number' && d > 0 ? d : undefined;
}

/** The optional per-model settings file: a fine-tune's own defaults, which its weights cannot show. */
export const MODEL_SETTINGS_FILE = 'defaults.json';

/**
 * Reads `defaults.json` ({"sampler": "Turbo", "steps": 4, "guidance": 0, "size": 1024}; every key
 * optional) over the detected defaults. A bad value is a problem naming the key, not a silent default.
 */
async function applySettingsFile(dir: string, defaults: ModelDefaults): Promise<ModelDefaults & { size?: number }> {
  const settings = await readOptionalJson(dir, MODEL_SETTINGS_FILE);
  if (settings === undefined) return defaults;
  const out: ModelDefaults & { size?: number } = { ...defaults };
  const bad = (key: string, allowed: string): never => problem(`${MODEL_SETTINGS_FILE}: "${key}" ${JSON.stringify(settings[key])} is not allowed; use ${allowed}`);
  for (const key of Object.keys(settings)) {
    const v = settings[key];
    switch (key) {
      case 'sampler':
        if (typeof v !== 'string' || !(SAMPLERS as readonly string[]).includes(v)) bad(key, SAMPLERS.join(', '));
        out.defaultSampler = v as SamplerName;
        break;
      case 'steps':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 150) bad(key, 'a whole number from 1 to 150');
        out.defaultSteps = v as number;
        break;
      case 'guidance':
        if (typeof v !== 'number' || !(v >= 0 && v <= 30)) bad(key, 'a number from 0 to 30');
        out.defaultGuidance = v as number;
        break;
      case 'size':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 64 || v > 4096 || v % 64 !== 0) bad(key, 'a multiple of 64 from 64 to 4096');
        out.size = v as number;
        break;
      default:
        problem(`${MODEL_SETTINGS_FILE}: unknown key "${key}"; the keys are sampler, steps, guidance, size`);
    }
  }
  return out;
}

async function inspectModel(name: string, dir: string): Promise<ModelInfo> {
  const index = await readJsonObject(dir, 'model_index.json');
  const className = typeof index['_class_name'] === 'string' ? index['_class_name'] : '';
  const sdxl = await saysSdxl(dir, index, className);
  refuseUnsupportedPipelines(className, sdxl);
  const scheduler = await readJsonObject(dir, 'scheduler/scheduler_config.json');
  if (scheduler['_class_name'] === 'LCMScheduler') {
    problem('LCM (latent consistency) models are not supported yet (scheduler/scheduler_config.json says LCMScheduler)');
  }
  // Parsed here as the loader will parse it, so a config the samplers cannot use is reported at
  // scan time instead of listing a model whose every generation fails.
  let schedulerConfig: SchedulerConfig;
  try {
    schedulerConfig = parseSchedulerConfig(scheduler);
  } catch (err) {
    return problem(`scheduler/scheduler_config.json: ${(err as Error).message.replace(/^scheduler config: /, '')}`);
  }

  for (const rel of sdxl ? [...REQUIRED_FILES, ...SDXL_FILES] : REQUIRED_FILES) {
    if (!(await isReadable(path.join(dir, rel)))) problem(`${rel} is missing`);
  }
  const hasVaeEncoder = await isReadable(path.join(dir, 'vae_encoder/model.onnx'));

  const [unetSig] = await Promise.all([
    readSignature(dir, 'unet/model.onnx'),
    readSignature(dir, 'text_encoder/model.onnx'),
    readSignature(dir, 'vae_decoder/model.onnx'),
    hasVaeEncoder ? readSignature(dir, 'vae_encoder/model.onnx') : Promise.resolve(undefined),
    sdxl ? readSignature(dir, 'text_encoder_2/model.onnx') : Promise.resolve(undefined),
  ]);
  const sdxlUnet = findInput(unetSig, 'text_embeds') !== undefined && findInput(unetSig, 'time_ids') !== undefined;
  if (sdxlUnet !== sdxl) {
    problem(
      sdxl
        ? 'the folder is SDXL (text_encoder_2/) but unet/model.onnx does not take text_embeds and time_ids'
        : 'unet/model.onnx takes text_embeds and time_ids (SDXL) but the folder has no text_encoder_2/; SDXL refiners are not supported',
    );
  }
  if (findInput(unetSig, 'timestep_cond')) {
    problem('LCM (latent consistency) models are not supported yet (unet/model.onnx takes timestep_cond)');
  }
  const sample = findInput(unetSig, 'sample');
  const timestep = findInput(unetSig, 'timestep');
  const cond = findInput(unetSig, 'encoder_hidden_states');
  for (const [decl, inputName] of [[sample, 'sample'], [timestep, 'timestep'], [cond, 'encoder_hidden_states']] as const) {
    if (!decl) problem(`unet/model.onnx has no "${inputName}" input; this export layout is not supported`);
  }

  const unetConfig = await readOptionalJson(dir, 'unet/config.json');
  const textConfig = await readOptionalJson(dir, 'text_encoder/config.json');
  const hiddenDim =
    lastDim(cond) ?? numberField(unetConfig, 'cross_attention_dim') ?? numberField(textConfig, 'hidden_size');
  if (hiddenDim === undefined) {
    problem('cannot tell the conditioning width: unet/model.onnx declares no fixed encoder_hidden_states size and unet/config.json has no cross_attention_dim');
  }
  // SDXL's width is 768 + 1280 for real models; reduced-width test models differ, and the
  // pipeline reads the two encoders' widths from their outputs.
  if (!sdxl && hiddenDim !== 768 && hiddenDim !== 1024) {
    problem(`unet/model.onnx expects ${hiddenDim}-wide conditioning; only SD 1.x (768) and SD 2.x (1024) are supported`);
  }
  if (numberField(unetConfig, 'in_channels') === 9) problem('inpainting models are not supported (unet/config.json in_channels is 9)');

  const predictionType = schedulerConfig.predictionType;
  const turbo = isTurbo(name, scheduler);
  const family: ModelFamily = sdxl ? 'sdxl' : hiddenDim === 768 ? 'sd1' : turbo ? 'sd-turbo' : 'sd2';
  const { size: settingsSize, ...defaults } = await applySettingsFile(dir, defaultsFor(family, turbo, name));

  const staticSide = (i: number): number | undefined => {
    const d = sample?.dims?.[i];
    return typeof d === 'number' && d > 0 ? d * 8 : undefined;
  };
  const configSize = numberField(unetConfig, 'sample_size');
  const fallback = family === 'sdxl' ? 1024 : family === 'sd2' && predictionType === 'v_prediction' ? 768 : 512;
  const nativeHeight = settingsSize ?? (configSize !== undefined ? configSize * 8 : staticSide(2) ?? fallback);
  const nativeWidth = settingsSize ?? (configSize !== undefined ? configSize * 8 : staticSide(3) ?? fallback);

  return {
    name,
    dir,
    family,
    predictionType,
    nativeWidth,
    nativeHeight,
    ...defaults,
    hasVaeEncoder,
    generation: detectGeneration(timestep!),
    dtype: floatDtype(sample!, 'unet/model.onnx'),
  };
}

/** Describe one folder; a problem names the file at fault. Exported for the CLI's `--model DIR`. */
export async function inspectModelFolder(dir: string, name = path.basename(dir)): Promise<ModelInfo | ModelProblem> {
  try {
    return await inspectModel(name, dir);
  } catch (err) {
    const reason = err instanceof FolderProblem ? err.message : `could not read the folder (${(err as Error).message})`;
    return { name, dir, reason };
  }
}

/**
 * The small model trained in this repository (train/demo/), used when no other model is
 * installed, so a fresh clone draws something without a download.
 */
export const DEMO_MODELS_DIR = fileURLToPath(new URL('../assets/models/', import.meta.url));
export const DEMO_MODEL_NOTICE = 'demo model: small emoji-style pictures; install a Stable Diffusion model for real art — see README';

export interface ScanOptions {
  /** Scanned when `modelsDir` holds no usable model (the bot and the CLI pass DEMO_MODELS_DIR). */
  fallbackDir?: string;
}

function isProblem(x: ModelInfo | ModelProblem): x is ModelProblem {
  return 'reason' in x;
}

/**
 * Scans `modelsDir` for model folders (subfolders holding model_index.json) and checkpoint files
 * (there and in checkpoints/); when none is usable
 * and a fallback folder is given, its models are offered instead, with `notice` saying so. The
 * problems found in `modelsDir` are kept either way, so an admin still learns what is wrong there.
 * Never throws.
 */
export async function scanModels(modelsDir: string, options: ScanOptions = {}): Promise<ModelScan> {
  const scan = await scanFolder(modelsDir);
  if (scan.models.length > 0) await attachAddons(scan.models, modelsDir);
  if (scan.models.length > 0 || options.fallbackDir === undefined) return scan;
  const fallback = await scanFolder(options.fallbackDir);
  if (fallback.models.length === 0) return scan;
  return { models: fallback.models, problems: scan.problems, notice: DEMO_MODEL_NOTICE };
}

async function scanFolder(modelsDir: string): Promise<ModelScan> {
  const scan: ModelScan = { models: [], problems: [] };
  let entries: string[];
  try {
    entries = (await readdir(modelsDir)).sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? `the models directory ${modelsDir} does not exist; create it and put model folders inside`
        : code === 'ENOTDIR'
          ? `${modelsDir} is not a directory`
          : `the models directory ${modelsDir} cannot be read (${code ?? (err as Error).message})`;
    scan.problems.push({ name: path.basename(modelsDir), dir: modelsDir, reason });
    return scan;
  }
  const results = await Promise.all(
    entries.map(async (entry): Promise<ModelInfo | ModelProblem | undefined | (ModelInfo | ModelProblem | undefined)[]> => {
      const dir = path.join(modelsDir, entry);
      if (entry.startsWith('.')) return undefined;
      if (!(await isDirectory(dir))) return WEIGHTS_FILE.test(entry) ? inspectCheckpointFile(dir) : undefined;
      if (CHECKPOINT_SUBFOLDERS.includes(entry)) return scanCheckpointFolder(dir);
      if (!(await isReadable(path.join(dir, 'unet', 'model.onnx')))) {
        const diffusers = await inspectDiffusersModel(dir, entry);
        if (diffusers) return diffusers;
      }
      if (!(await isReadable(path.join(dir, 'model_index.json')))) {
        // Only folders that look like a model export deserve a complaint; others are ignored.
        const looksLikeModel = (await isDirectory(path.join(dir, 'unet'))) || (await isDirectory(path.join(dir, 'text_encoder')));
        return looksLikeModel ? { name: entry, dir, reason: 'model_index.json is missing' } : undefined;
      }
      return inspectModelFolder(dir, entry);
    }),
  );
  const byName = new Map<string, ModelInfo>();
  for (const r of results.flat()) {
    if (r === undefined) continue;
    const clash = isProblem(r) ? undefined : byName.get(r.name);
    if (clash) {
      scan.problems.push({ name: r.name, dir: r.dir, reason: `another model is already called "${r.name}" (${clash.dir}); rename one of them` });
    } else if (isProblem(r)) scan.problems.push(r);
    else {
      byName.set(r.name, r);
      scan.models.push(r);
    }
  }
  return scan;
}

/** Checkpoint files and diffusers folders in models/checkpoints/ (one level). */
async function scanCheckpointFolder(dir: string): Promise<(ModelInfo | ModelProblem | undefined)[]> {
  let entries: string[];
  try {
    entries = (await readdir(dir)).sort();
  } catch (err) {
    return [{ name: path.basename(dir), dir, reason: `${dir} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` }];
  }
  return Promise.all(
    entries
      .filter((e) => !e.startsWith('.'))
      .map(async (e) => {
        const p = path.join(dir, e);
        if (await isDirectory(p)) return inspectDiffusersModel(p, e);
        return WEIGHTS_FILE.test(e) ? inspectCheckpointFile(p) : undefined;
      }),
  );
}
