// A diffusers-format folder (unet/ + config.json, text_encoder/, vae/, tokenizer/, scheduler/, all
// weights as .safetensors) prepared into the same cached ONNX model folder a single-file
// checkpoint gets: its three weight files are presented under the checkpoint's LDM names
// (diffusers-names.ts) and written by the same builders. Detection comes from the folder's
// configs (inspect.ts) and is checked against the weights' own names and shapes (detect.ts);
// folder names mean nothing. Pickled `.bin` weights are refused, never opened.
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { GraphForm } from '../onnx-build/layers.js';
import type { TensorReader } from '../onnx-build/weights.js';
import { cachedBuild } from './cache.js';
import { detectWeights, storedDtype, type StoredDtype, type TensorShape } from './detect.js';
import { unetDiffusersToLdm, vaeDecoderLevels, vaeDiffusersToLdm } from './diffusers-names.js';
import { CheckpointError } from './errors.js';
import { formKey, graphFormFor } from './graph-form.js';
import { inspectDiffusersFolder, type DiffusersInfo } from './inspect.js';
import { writeModelFolder, type FolderPlan } from './model-folder.js';
import { openWeightsFile } from './pickle-guard.js';
import { GRAPH_VERSION, memoizedSha256, type PrepareOptions } from './prepare.js';
import type { SafetensorsFile } from './safetensors.js';

export interface PreparedDiffusers {
  dir: string;
  reused: boolean;
  /** sha256 over the three weight files' hashes and the prediction type: the cache key's source. */
  sha256: string;
  info: DiffusersInfo;
  form: GraphForm;
}

/** Where each part's weights lie, relative to the folder: safetensors names, newest convention first. */
const PART_FILES = {
  text_encoder: ['model.safetensors', 'model.fp16.safetensors'],
  vae: ['diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.fp16.safetensors'],
} as const;

async function listDir(path: string): Promise<string[] | undefined> {
  try {
    return await readdir(path);
  } catch {
    return undefined;
  }
}

/** The part's .safetensors file; a part with only pickles is refused as one, a missing part by name. */
export async function partWeights(dir: string, part: keyof typeof PART_FILES): Promise<string> {
  const label = `${basename(dir)}/${part}`;
  const files = await listDir(join(dir, part));
  if (files === undefined) throw new CheckpointError('missing-tensor', `${basename(dir)} has no ${part}/ folder; a diffusers model needs unet/, text_encoder/ and vae/.`);
  const found = PART_FILES[part].find((f) => files.includes(f));
  if (found !== undefined) return join(dir, part, found);
  const pickle = files.find((f) => /\.(bin|pt|pth|ckpt)$/.test(f));
  if (pickle !== undefined) {
    // The guard refuses it by name, with the reason and what to download instead.
    await openWeightsFile(join(dir, part, pickle)).catch((err: unknown) => {
      throw err instanceof CheckpointError ? new CheckpointError(err.reason, `${label}: ${err.message}`) : err;
    });
  }
  throw new CheckpointError('missing-tensor', `${label} has no ${PART_FILES[part][0]}.`);
}

interface Source {
  file: SafetensorsFile;
  name: string;
  shape: readonly number[];
  dtype: string;
}

/** The folder's three weight files seen as one single-file checkpoint in the LDM layout. */
export interface DiffusersWeights extends TensorReader {
  readonly header: { readonly tensors: ReadonlyMap<string, TensorShape> };
  close(): Promise<void>;
}

/**
 * Opens unet/, text_encoder/ and vae/ weights and presents them under LDM names
 * (model.diffusion_model.*, cond_stage_model.transformer.*, first_stage_model.*). Every tensor must
 * find its LDM name: one that does not is refused by name rather than silently dropped.
 */
export async function openDiffusersWeights(dir: string, info: Pick<DiffusersInfo, 'unetWeights'>): Promise<DiffusersWeights> {
  const paths = {
    unet: join(dir, info.unetWeights),
    text_encoder: await partWeights(dir, 'text_encoder'),
    vae: await partWeights(dir, 'vae'),
  };
  const opened: SafetensorsFile[] = [];
  try {
    const open = async (path: string) => {
      const file = await openWeightsFile(path);
      opened.push(file);
      return file;
    };
    const [unet, text, vae] = [await open(paths.unet), await open(paths.text_encoder), await open(paths.vae)];
    const table = new Map<string, Source>();
    const add = (file: SafetensorsFile, name: string, ldm: string) => {
      const t = file.header.tensors.get(name)!;
      table.set(ldm, { file, name, shape: t.shape, dtype: t.dtype });
    };

    const unetNames = [...unet.header.tensors.keys()];
    const { map, unmapped } = unetDiffusersToLdm(unetNames);
    if (unmapped.length > 0) {
      throw new CheckpointError(
        'unknown-family',
        `${basename(dir)}/unet has tensors no SD 1.x/2.x UNet has (${unmapped.slice(0, 3).join(', ')}${unmapped.length > 3 ? ', …' : ''}).`,
      );
    }
    for (const [name, ldm] of map) add(unet, name, `model.diffusion_model.${ldm}`);
    // HF CLIPTextModel names: text_model.* (the loader accepts both with and without the prefix).
    for (const name of text.header.tensors.keys()) add(text, name, `cond_stage_model.transformer.${name}`);
    const vaeNames = [...vae.header.tensors.keys()];
    const levels = vaeDecoderLevels(vaeNames);
    for (const name of vaeNames) {
      const ldm = vaeDiffusersToLdm(name, levels);
      if (ldm === undefined) throw new CheckpointError('unknown-family', `${basename(dir)}/vae has a tensor no SD VAE has (${name}).`);
      add(vae, name, `first_stage_model.${ldm}`);
    }
    const tensors: ReadonlyMap<string, TensorShape> = new Map([...table].map(([k, s]) => [k, { shape: s.shape, dtype: s.dtype }]));
    return {
      header: { tensors },
      readFloat32: (name) => {
        const s = table.get(name);
        if (s === undefined) return Promise.reject(new CheckpointError('missing-tensor', `${basename(dir)} has no tensor for "${name}".`));
        return s.file.readFloat32(s.name);
      },
      close: async () => {
        for (const f of opened) await f.close();
      },
    };
  } catch (err) {
    for (const f of opened) await f.close();
    throw err;
  }
}

/** The tokenizer folder to copy: the model's own when it has the BPE files, else the caller's. */
async function tokenizerFor(dir: string, fallback: string | undefined): Promise<string | undefined> {
  const files = await listDir(join(dir, 'tokenizer'));
  return files?.includes('vocab.json') && files.includes('merges.txt') ? join(dir, 'tokenizer') : fallback;
}

export interface PrepareDiffusersOptions extends PrepareOptions {
  /** Reduced-width test models only (no real family has their widths): the plan to build with. */
  plan?: Omit<FolderPlan, 'form'>;
}

/** What the registry needs to list a diffusers folder as a model: checked like prepareDiffusersFolder checks it. */
export interface CheckedDiffusers {
  info: DiffusersInfo & { family: 'sd1' | 'sd2' };
  dtype: StoredDtype;
}

/**
 * Refuses a folder the builders cannot use, with the reason (not a diffusers folder, an unsupported
 * variant or family, a missing or pickled part, a tensor no SD UNet has, config and weights
 * disagreeing); else its configs' description and the UNet's stored dtype. Reads headers only.
 * `trustConfig` skips the config-against-weights check (reduced-width test models match no family).
 */
export async function checkDiffusersFolder(dir: string, opts: { trustConfig?: boolean } = {}): Promise<CheckedDiffusers> {
  const label = basename(dir);
  const info = await inspectDiffusersFolder(dir);
  if (info === undefined) throw new CheckpointError('unknown-family', `${label} is not a diffusers model folder: it has no unet/config.json.`);
  if (!info.supported) throw new CheckpointError('unsupported-family', `${label} cannot be used: ${info.reason ?? 'unsupported'}.`);
  const family = info.family;
  if (family !== 'sd1' && family !== 'sd2') {
    throw new CheckpointError('unsupported-family', `${label} is an ${family.toUpperCase()} diffusers folder; the engine prepares SD 1.x/2.x diffusers folders so far (use the model's single-file .safetensors).`);
  }
  const weights = await openDiffusersWeights(dir, info);
  try {
    if (opts.trustConfig !== true) {
      // The configs said what the model is; its weights must say the same.
      const seen = detectWeights(weights.header.tensors);
      if (seen.kind !== 'checkpoint' || seen.family !== family) {
        const what = seen.kind === 'checkpoint' ? `an ${seen.family.toUpperCase()} model` : seen.kind === 'unknown' ? seen.reason : `a ${seen.kind} file`;
        throw new CheckpointError('unknown-family', `${label}: its unet/config.json describes an ${family.toUpperCase()} model, but its weights are ${what}.`);
      }
    }
    return { info: { ...info, family }, dtype: storedDtype(weights.header.tensors, 'model.diffusion_model.') };
  } finally {
    await weights.close();
  }
}

/** Same contract as prepareCheckpoint, for a diffusers folder: refusal with the reason, or the cached model folder. */
export async function prepareDiffusersFolder(dir: string, opts: PrepareDiffusersOptions): Promise<PreparedDiffusers> {
  const { info, dtype } = await checkDiffusersFolder(dir, { trustConfig: opts.plan !== undefined });
  const family = info.family;
  const files: string[] = [];
  files.push(join(dir, info.unetWeights), await partWeights(dir, 'text_encoder'), await partWeights(dir, 'vae'));

  const sizes = await Promise.all(files.map(async (f) => (await stat(f)).size));
  const total = sizes.reduce((a, b) => a + b, 0);
  let before = 0;
  const hashes: string[] = [];
  for (const [i, f] of files.entries()) {
    hashes.push(await memoizedSha256(f, opts.cacheDir, (done) => opts.onProgress?.({ stage: 'hashing', bytesDone: before + done, bytesTotal: total })));
    before += sizes[i]!;
  }
  const sha256 = createHash('sha256').update(`${hashes.join(':')}:${info.prediction}`).digest('hex');
  const form = opts.form ?? graphFormFor(opts.providers ?? ['cpu'], dtype);
  const key = `${sha256.slice(0, 16)}-d${formKey(form)}-g${GRAPH_VERSION}`;
  const tokenizerDir = await tokenizerFor(dir, opts.tokenizerDir);
  const { dir: built, reused } = await cachedBuild(opts.cacheDir, key, async (tmp) => {
    const source = await openDiffusersWeights(dir, info);
    try {
      await writeModelFolder(source, { ...(opts.plan ?? { family, prediction: info.prediction }), form }, tmp, {
        ...(tokenizerDir === undefined ? {} : { tokenizerDir }),
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
        onProgress: (p) => opts.onProgress?.({ stage: 'building', ...p }),
      });
    } finally {
      await source.close();
    }
  });
  return { dir: built, reused, sha256, info, form };
}
