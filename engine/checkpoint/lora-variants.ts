// A prepared model with LoRAs merged in, as its own model folder in the cache. Keyed by the
// model's content hash and the sorted (LoRA content hash, text-encoder weight, UNet weight)
// list, so the same set in any order reuses one folder, a job without LoRAs keeps using the plain
// folder (never touched here), and switching back to a set used before is a cache hit. Parts no
// LoRA changes (always the VAE; the text encoder when only the UNet is changed) are hard links to
// the plain folder's files. Variants are evicted oldest-use first beyond a byte budget.
import { createHash } from 'node:crypto';
import { readFile, readdir, rm, stat, utimes } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { cachedBuild } from './cache.js';
import type { CheckpointInfo, Family, TensorShapes } from './detect.js';
import { CheckpointError } from './errors.js';
import { OPENCLIP_PREFIXES } from './ldm-names.js';
import type { LoraTarget } from './lora-names.js';
import { assertLoraFits, loraFamily, mergedWeights, planLoras, type LoraInput } from './lora.js';
import { FOLDER_PARTS, writeModelFolder, type FolderPlan, type FolderProgress } from './model-folder.js';
import { openWeightsFile } from './pickle-guard.js';
import { GRAPH_VERSION, memoizedSha256 } from './prepare.js';
import { formKey } from './graph-form.js';
import { REFERENCE_FORM, type GraphForm } from '../onnx-build/layers.js';
import type { SafetensorsFile } from './safetensors.js';
import type { TensorReader } from '../onnx-build/weights.js';

export interface LoraChoice {
  /** Path of the LoRA's .safetensors file; its name without extension is the name members type. */
  path: string;
  textEncoderWeight: number;
  unetWeight: number;
}

export interface VariantOptions {
  cacheDir: string;
  /** Bytes the LoRA variants may take together (the plain folders are not counted or evicted). */
  maxVariantBytes: number;
  tokenizerDir?: string;
  onProgress?: (p: FolderProgress) => void;
  signal?: AbortSignal;
  /** Reduced-width test models only: their LoRAs' widths match no real family. */
  familyOf?: (name: string, tensors: TensorShapes) => Family;
}

export interface PreparedVariant {
  dir: string;
  reused: boolean;
  /** Variant folders deleted to stay within the budget. */
  evicted: string[];
  /** Each LoRA file's whole-file sha256, which the variant's key is made from (the info text's "Lora hashes" are AddNet hashes: model-resolve.ts). */
  loraHashes: { name: string; sha256: string }[];
}

const VARIANT = /-lora-[0-9a-f]{16}-g\d+$/;

export const loraName = (path: string): string => basename(path, extname(path));

async function entryBytes(dir: string): Promise<number> {
  try {
    const manifest = JSON.parse(await readFile(join(dir, 'complete.json'), 'utf8')) as { files: Record<string, number> };
    return Object.values(manifest.files).reduce((a, b) => a + b, 0);
  } catch {
    return 0;
  }
}

/** Deletes the least recently used variants until the rest fit `maxBytes`; `keep` is never deleted. */
export async function evictVariants(cacheDir: string, maxBytes: number, keep: string): Promise<string[]> {
  const entries: { dir: string; bytes: number; used: number }[] = [];
  for (const name of await readdir(cacheDir)) {
    if (!VARIANT.test(name)) continue;
    const dir = join(cacheDir, name);
    entries.push({ dir, bytes: await entryBytes(dir), used: (await stat(dir)).mtimeMs });
  }
  entries.sort((a, b) => b.used - a.used);
  let total = 0;
  const evicted: string[] = [];
  for (const e of entries) {
    total += e.bytes;
    if (total > maxBytes && e.dir !== keep) {
      await rm(e.dir, { recursive: true, force: true });
      evicted.push(e.dir);
      total -= e.bytes;
    }
  }
  return evicted;
}

/** The model-folder part a LoRA target's tensor is built into (SDXL's OpenCLIP bigG is text_encoder_2). */
function folderPart(target: LoraTarget): FolderProgress['part'] {
  if (target.part === 'unet') return 'unet';
  return target.tensor.startsWith(OPENCLIP_PREFIXES.sdxl[0]) ? 'text_encoder_2' : 'text_encoder';
}

/**
 * The folder of `checkpoint` with `loras` merged. `plainDir` is the checkpoint's prepared folder
 * (from prepareCheckpoint), whose untouched parts are linked.
 */
export async function prepareLoraVariant(
  checkpoint: {
    path: string;
    sha256: string;
    info: Pick<CheckpointInfo, 'prediction'> & { family: 'sd1' | 'sd2' | 'sdxl' };
    plainDir: string;
    /** The plan the plain folder was built with, when not the family's defaults (reduced-width test models). */
    plan?: FolderPlan;
    /** The graph form the plain folder was built in (PreparedCheckpoint.form): variants are built alike. */
    form?: GraphForm;
    /** Opens the weights under LDM names when `path` is not a single file (a diffusers folder: openDiffusersWeights). */
    open?: () => Promise<TensorReader & { close(): Promise<void> }>;
  },
  loras: readonly LoraChoice[],
  opts: VariantOptions,
): Promise<PreparedVariant> {
  if (loras.length === 0) throw new Error('prepareLoraVariant needs at least one LoRA; a job without LoRAs uses the plain folder');
  const opened: SafetensorsFile[] = [];
  try {
    const inputs: LoraInput[] = [];
    const hashes: { name: string; sha256: string }[] = [];
    for (const choice of loras) {
      const name = loraName(choice.path);
      const file = await openWeightsFile(choice.path).catch((err: unknown) => {
        throw err instanceof CheckpointError ? new CheckpointError(err.reason, `LoRA "${name}": ${err.message}`) : err;
      });
      opened.push(file);
      assertLoraFits(name, (opts.familyOf ?? loraFamily)(name, file.header.tensors), checkpoint.info.family);
      hashes.push({ name, sha256: await memoizedSha256(choice.path, opts.cacheDir) });
      inputs.push({ name, file, textEncoderWeight: choice.textEncoderWeight, unetWeight: choice.unetWeight });
    }
    const identity = hashes
      .map((h, i) => `${h.sha256}:${loras[i]!.textEncoderWeight}:${loras[i]!.unetWeight}`)
      .sort()
      .join('|');
    const form = checkpoint.form ?? checkpoint.plan?.form ?? REFERENCE_FORM;
    const key = `${checkpoint.sha256.slice(0, 16)}-lora-${createHash('sha256').update(identity).digest('hex').slice(0, 16)}${formKey(form)}-g${GRAPH_VERSION}`;

    const { dir, reused } = await cachedBuild(opts.cacheDir, key, async (tmp) => {
      const weights = await (checkpoint.open ?? (() => openWeightsFile(checkpoint.path)))();
      try {
        const plan = planLoras(weights, inputs);
        const touched = new Set([...plan.byTensor.values()].flat().map((m) => folderPart(m.target)));
        const parts = new Set(FOLDER_PARTS.filter((p) => !touched.has(p)));
        await writeModelFolder(mergedWeights(weights, plan), { ...(checkpoint.plan ?? { family: checkpoint.info.family, prediction: checkpoint.info.prediction }), form }, tmp, {
          reuse: { dir: checkpoint.plainDir, parts },
          ...(opts.tokenizerDir === undefined ? {} : { tokenizerDir: opts.tokenizerDir }),
          ...(opts.signal === undefined ? {} : { signal: opts.signal }),
          ...(opts.onProgress === undefined ? {} : { onProgress: opts.onProgress }),
        });
      } finally {
        await weights.close();
      }
    });
    const now = new Date();
    await utimes(dir, now, now);
    const evicted = await evictVariants(opts.cacheDir, opts.maxVariantBytes, dir);
    return { dir, reused, evicted, loraHashes: hashes };
  } finally {
    for (const f of opened) await f.close();
  }
}
