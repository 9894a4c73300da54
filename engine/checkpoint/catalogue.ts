// What is under the models directory, for `npm run models -- list` (and later the registry's
// listing): checkpoints, diffusers folders and ONNX export folders with family, native size,
// dtype and source; LoRAs and embeddings with the family they fit; everything that cannot be used
// with one line saying why. Reads headers and config files only, never weights (except the one
// probe tensor detection may need).
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { inspectModelFolder, isDirectory } from '../registry.js';
import type { Family } from './detect.js';
import { checkDiffusersFolder } from './diffusers-folder.js';
import { CheckpointError } from './errors.js';
import { inspectWeightsFile, isDiffusersFolder } from './inspect.js';

export interface CatalogueModel {
  name: string;
  path: string;
  source: 'checkpoint' | 'diffusers' | 'onnx';
  family: string;
  nativeSize: string;
  dtype: string;
}

export interface CatalogueAddon {
  name: string;
  path: string;
  family: Family;
  /** Embeddings: how many vectors. */
  vectors?: number;
}

export interface Catalogue {
  models: CatalogueModel[];
  loras: CatalogueAddon[];
  embeddings: CatalogueAddon[];
  vaes: { name: string; path: string }[];
  refused: { name: string; path: string; reason: string }[];
}

const WEIGHT_FILE = /\.(safetensors|ckpt|pt|pth|bin|pkl)$/i;
/** Subfolders searched besides the top level (A1111's and ComfyUI's usual names). */
const SUBFOLDERS = ['checkpoints', 'Stable-diffusion', 'loras', 'Lora', 'embeddings', 'vae', 'VAE'];

const FAMILY_LABEL: Record<string, string> = { sd1: 'SD 1.x', sd2: 'SD 2.x', sdxl: 'SDXL', 'sd-turbo': 'SD 2.x Turbo' };
export const familyLabel = (f: string): string => FAMILY_LABEL[f] ?? f;

async function entries(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((e) => !e.startsWith('.')).sort();
  } catch {
    return [];
  }
}

async function addFile(cat: Catalogue, path: string): Promise<void> {
  const name = basename(path, extname(path));
  let info;
  try {
    info = await inspectWeightsFile(path);
  } catch (err) {
    cat.refused.push({ name, path, reason: err instanceof CheckpointError ? err.message : `cannot be read (${(err as Error).message})` });
    return;
  }
  if (info.kind === 'unknown' || !info.supported) {
    cat.refused.push({ name, path, reason: info.reason ?? 'not supported' });
    return;
  }
  if (info.kind === 'checkpoint') {
    cat.models.push({ name, path, source: 'checkpoint', family: familyLabel(info.family), nativeSize: `${info.nativeSize}²`, dtype: info.dtype });
  } else if (info.kind === 'lora' && info.family !== 'unknown') cat.loras.push({ name, path, family: info.family });
  else if (info.kind === 'embedding' && info.family !== 'unknown') cat.embeddings.push({ name, path, family: info.family, vectors: info.vectors });
  else if (info.kind === 'vae') cat.vaes.push({ name, path });
}

async function addFolder(cat: Catalogue, dir: string): Promise<void> {
  const name = basename(dir);
  if (await stat(join(dir, 'unet', 'model.onnx')).then(() => true, () => false)) {
    const m = await inspectModelFolder(dir, name);
    if ('reason' in m) cat.refused.push({ name, path: dir, reason: m.reason });
    else cat.models.push({ name, path: dir, source: 'onnx', family: familyLabel(m.family), nativeSize: `${m.nativeWidth}×${m.nativeHeight}`, dtype: m.dtype === 'float16' ? 'fp16' : 'fp32' });
    return;
  }
  // Other folders are not listed; checkDiffusersFolder reads the configs once.
  if (!(await isDiffusersFolder(dir))) return;
  try {
    // The registry's check (configs, parts, weights' names): what is listed here can be prepared.
    const { info, dtype } = await checkDiffusersFolder(dir);
    cat.models.push({ name, path: dir, source: 'diffusers', family: familyLabel(info.family), nativeSize: `${info.nativeSize}²`, dtype });
  } catch (err) {
    cat.refused.push({ name, path: dir, reason: err instanceof CheckpointError ? err.message : (err as Error).message });
  }
}

/**
 * `addonsOnly` skips model folders (diffusers and ONNX folders hold no add-ons): the registry,
 * which has already read those folders' headers, asks only for LoRAs and embeddings.
 */
export async function scanCatalogue(modelsDir: string, opts: { addonsOnly?: boolean } = {}): Promise<Catalogue> {
  const cat: Catalogue = { models: [], loras: [], embeddings: [], vaes: [], refused: [] };
  const visit = async (dir: string, depth: number): Promise<void> => {
    for (const e of await entries(dir)) {
      const p = join(dir, e);
      if (await isDirectory(p)) {
        if (depth === 0 && SUBFOLDERS.includes(e)) await visit(p, 1);
        else if (opts.addonsOnly !== true) await addFolder(cat, p);
      } else if (WEIGHT_FILE.test(e)) await addFile(cat, p);
    }
  };
  await visit(modelsDir, 0);
  return cat;
}

/** The family key of a listed model, for matching LoRAs and embeddings. */
export function modelFamilyKey(m: CatalogueModel): Family | undefined {
  return m.family === 'SD 1.x' ? 'sd1' : m.family.startsWith('SD 2.x') ? 'sd2' : m.family === 'SDXL' ? 'sdxl' : undefined;
}
