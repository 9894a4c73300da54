// From a listed model and a job's LoRAs to the ONNX folder the loader opens. An ONNX export is
// its own folder. A single-file checkpoint (or a diffusers folder, ./checkpoint/diffusers-folder.ts)
// is built into `<cacheDir>/<hash><form>-g<version>/` on first use, in the graph form the engine's
// providers get (./checkpoint/prepare.ts, graph-form.ts; a half-written entry left by a kill is
// found by its missing manifest and built again); with LoRAs, into a variant folder beside it
// (./checkpoint/lora-variants.ts), so a job without LoRAs always draws with the plain folder. The
// key of the result is the folder itself, which is what the pipeline keeps loaded models by.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkpointName, WEIGHTS_FILE } from './checkpoint-models.js';
import { CheckpointError } from './checkpoint/errors.js';
import { prepareLoraVariant } from './checkpoint/lora-variants.js';
import { copyTokenizer, FOLDER_PARTS, OPENCLIP_PAD, SDXL_TOKENIZER_2_PAD, type FolderProgress } from './checkpoint/model-folder.js';
import { openWeightsFile } from './checkpoint/pickle-guard.js';
import { prepareCheckpoint, type PrepareOptions, type PrepareProgress } from './checkpoint/prepare.js';
import { openDiffusersWeights, partWeights, prepareDiffusersFolder } from './checkpoint/diffusers-folder.js';
import { nearNames } from './near-names.js';
import { inspectModelFolder } from './registry.js';
import { EngineError, type ExecutionProviderName, type LoraRequest, type ModelInfo, type ModelStage } from './types.js';

export interface ResolveOptions {
  modelsDir: string;
  cacheDir: string;
  /** A CLIP tokenizer folder to copy into built folders (see EngineOptions.tokenizerDir). */
  tokenizerDir?: string;
  /** Bytes LoRA variants may take on disk together. */
  loraCacheBytes: number;
  /** The engine's providers in order (EngineOptions.providers): they choose the graph form built (checkpoint/graph-form.ts). */
  providers?: readonly ExecutionProviderName[];
}

export interface ResolveHooks {
  onStage?: (stage: ModelStage) => void;
  signal?: AbortSignal;
  /** Models installed now; their tokenizers are candidates for checkpoints. */
  installed?: readonly ModelInfo[];
}

export interface ResolvedModel {
  /** The folder to load; also the key loaded models are kept by. */
  key: string;
  /** Reads the folder's description (ONNX headers) when the model must be loaded. */
  describe(): Promise<ModelInfo>;
  /** LoRAs merged in: name → A1111's short hash. */
  loraHashes?: Record<string, string>;
}

export const DEFAULT_LORA_CACHE_MB = 20_000;
/** Where A1111 and ComfyUI users keep LoRAs, under the models directory. */
const LORA_FOLDERS = ['loras', 'Lora'];
/** CLIP's vocabulary, shipped with the engine (assets/tokenizers/clip/README.md): the last resort. */
export const BUNDLED_CLIP_TOKENIZER = fileURLToPath(new URL('../assets/tokenizers/clip/', import.meta.url));
/** Tensors whose first dimension is the text encoder's vocabulary (SD 1.x, SD 2.x, SGM layout). */
const TOKEN_EMBEDDINGS = [
  'cond_stage_model.transformer.text_model.embeddings.token_embedding.weight',
  'cond_stage_model.transformer.embeddings.token_embedding.weight',
  'cond_stage_model.model.token_embedding.weight',
  'conditioner.embedders.0.model.token_embedding.weight',
  'conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight',
  // A diffusers folder's text_encoder/ (Hugging Face CLIPTextModel names).
  'text_model.embeddings.token_embedding.weight',
];
/** Building a folder reports per tensor; members need a percent, not a thousand messages. */
const PERCENT = 100;
type Part = FolderProgress['part'];
/** Each part's [start, share] of the whole build from its share alone: a part starts where the one built before it ends. */
function partShares(share: Record<Part, number>): Record<Part, [start: number, share: number]> {
  let start = 0;
  const out = {} as Record<Part, [number, number]>;
  for (const part of FOLDER_PARTS) {
    out[part] = [start, share[part]];
    start += share[part];
  }
  return out;
}

/** Share of the whole build per part, roughly by parameter count (SD 1.5: 123 M, 860 M, 49 M, 34 M). */
const PART_SHARE = partShares({ text_encoder: 0.12, text_encoder_2: 0, unet: 0.75, vae_decoder: 0.07, vae_encoder: 0.06 });
/** SDXL: 123 M CLIP-L, 695 M bigG, 2567 M UNet, 84 M VAE. */
const PART_SHARE_SDXL = partShares({ text_encoder: 0.04, text_encoder_2: 0.2, unet: 0.74, vae_decoder: 0.01, vae_encoder: 0.01 });
/** Hashing the file (first use only) counts as this share before the build. */
const HASH_SHARE = 0.1;

/** A LoRA variant rebuilds only what LoRAs touch (text encoder, UNet); the VAE is linked. */
const VARIANT_SHARE = partShares({ text_encoder: 0.14, text_encoder_2: 0, unet: 0.86, vae_decoder: 0, vae_encoder: 0 });

function buildFraction(p: FolderProgress, shares = PART_SHARE): number {
  const [start, share] = shares[p.part];
  return start + share * (p.tensorsTotal === 0 ? 1 : p.tensorsDone / p.tensorsTotal);
}

function prepareFraction(p: PrepareProgress, sdxl: boolean): number {
  if (p.stage === 'hashing') return HASH_SHARE * (p.bytesTotal === 0 ? 1 : p.bytesDone / p.bytesTotal);
  return HASH_SHARE + (1 - HASH_SHARE) * buildFraction(p, sdxl ? PART_SHARE_SDXL : PART_SHARE);
}

/** Calls `emit` only when the whole percent changes. */
function percentStages(emit: ((s: ModelStage) => void) | undefined, base: Omit<ModelStage, 'fraction'>): (fraction: number) => void {
  let last = -1;
  return (fraction) => {
    const percent = Math.floor(Math.min(1, Math.max(0, fraction)) * PERCENT);
    if (percent === last) return;
    last = percent;
    emit?.({ ...base, fraction: percent / PERCENT });
  };
}

/**
 * A1111's LoRA hash for .safetensors files (the "AddNet" hash that Civitai indexes too): sha256 of
 * everything after the JSON header, so editing only the metadata keeps it.
 */
export async function addnetHash(file: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(file, 'r');
  const head = Buffer.alloc(8);
  try {
    await handle.read(head, 0, 8, 0);
  } finally {
    await handle.close();
  }
  const start = 8 + Number(head.readBigUInt64LE(0));
  for await (const chunk of createReadStream(file, { start, highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const exists = (p: string): Promise<boolean> => stat(p).then(
  () => true,
  () => false,
);

export class ModelResolver {
  private readonly described = new Map<string, ModelInfo>();
  private readonly vocabSizes = new Map<string, number | undefined>();
  private readonly loraHashMemo = new Map<string, { size: number; mtimeMs: number; hash: string }>();

  constructor(private readonly options: ResolveOptions) {}

  async resolve(info: ModelInfo, loras: readonly LoraRequest[] | undefined, hooks: ResolveHooks = {}): Promise<ResolvedModel> {
    const wanted = loras ?? [];
    const source = info.source ?? 'onnx';
    if (source === 'onnx') {
      if (wanted.length > 0) {
        throw new EngineError('bad_request', `LoRAs work with checkpoint and diffusers models only; "${info.name}" is an ONNX export (put its .safetensors checkpoint in models/ to use LoRAs)`);
      }
      return { key: info.dir, describe: async () => info };
    }
    // Resolve LoRA names before any building, so a typo is answered at once.
    const loraFiles = wanted.length > 0 ? await this.findLoras(wanted) : [];
    const tokenizerDir = await this.guard(info.name, hooks.signal, () => this.tokenizerFor(info, hooks.installed ?? []));
    const reportPrepare = percentStages(hooks.onStage, { stage: 'preparing', model: info.name });
    const options: PrepareOptions = {
      cacheDir: this.options.cacheDir,
      tokenizerDir,
      onProgress: (p: PrepareProgress) => reportPrepare(prepareFraction(p, info.family === 'sdxl')),
      ...(this.options.providers ? { providers: this.options.providers } : {}),
      ...(hooks.signal ? { signal: hooks.signal } : {}),
    };
    const prepared = await this.guard(info.name, hooks.signal, async () => {
      if (source === 'checkpoint') return { ...(await prepareCheckpoint(info.dir, options)), open: undefined };
      const p = await prepareDiffusersFolder(info.dir, options);
      // LoRAs merge into the folder's weights presented under LDM names, as a checkpoint's would be.
      return { ...p, open: () => openDiffusersWeights(info.dir, p.info) };
    });
    if (loraFiles.length === 0) return { key: prepared.dir, describe: () => this.describe(prepared.dir, info, prepared.sha256, tokenizerDir) };
    const family = prepared.info.family;
    if (family !== 'sd1' && family !== 'sd2' && family !== 'sdxl') throw new EngineError('model', `model "${info.name}" cannot take LoRAs (${family})`);
    const reportVariant = percentStages(hooks.onStage, { stage: 'preparing', model: info.name, loras: loraFiles.map((l) => l.name) });
    const variant = await this.guard(info.name, hooks.signal, () =>
      prepareLoraVariant(
        {
          path: info.dir,
          sha256: prepared.sha256,
          info: { family, prediction: prepared.info.prediction },
          plainDir: prepared.dir,
          form: prepared.form,
          ...(prepared.open ? { open: prepared.open } : {}),
        },
        loraFiles.map((l) => ({ path: l.path, textEncoderWeight: l.request.textEncoderWeight, unetWeight: l.request.unetWeight })),
        {
          cacheDir: this.options.cacheDir,
          maxVariantBytes: this.options.loraCacheBytes,
          tokenizerDir,
          onProgress: (p) => reportVariant(buildFraction(p, VARIANT_SHARE)),
          ...(hooks.signal ? { signal: hooks.signal } : {}),
        },
      ),
    );
    const loraHashes: Record<string, string> = {};
    for (const l of loraFiles) loraHashes[l.name] = (await this.loraHash(l.path)).slice(0, 12);
    return { key: variant.dir, describe: () => this.describe(variant.dir, info, prepared.sha256, tokenizerDir), loraHashes };
  }

  /** CheckpointErrors (a LoRA that does not fit, a damaged file) are answers for the member, in one line. */
  private async guard<T>(model: string, signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (signal?.aborted) throw new EngineError('cancelled', 'cancelled');
      if (err instanceof CheckpointError) {
        const code = /^LoRA /.test(err.message) ? 'bad_request' : 'model';
        throw new EngineError(code, `model "${model}": ${err.message}`);
      }
      throw err;
    }
  }

  /** The built folder as the loader sees it, with the checkpoint's hash (A1111's "Model hash"). */
  private async describe(dir: string, checkpoint: ModelInfo, sha256: string, tokenizerDir: string): Promise<ModelInfo> {
    const known = this.described.get(dir);
    if (known) return known;
    const name = checkpoint.name;
    // A folder prepared ahead of time (`npm run models -- prepare` without --tokenizer) has none.
    if (!(await exists(path.join(dir, 'tokenizer', 'vocab.json')))) {
      await copyTokenizer(tokenizerDir, path.join(dir, 'tokenizer'), checkpoint.family === 'sd2' ? OPENCLIP_PAD : undefined);
    }
    if ((await exists(path.join(dir, 'text_encoder_2'))) && !(await exists(path.join(dir, 'tokenizer_2', 'vocab.json')))) {
      await copyTokenizer(tokenizerDir, path.join(dir, 'tokenizer_2'), SDXL_TOKENIZER_2_PAD);
    }
    const info = await inspectModelFolder(dir, name);
    if ('reason' in info) throw new EngineError('model', `model "${name}" was prepared but its folder cannot be used: ${info.reason}`);
    const described: ModelInfo = { ...info, source: checkpoint.source ?? 'checkpoint', sha256 };
    this.described.set(dir, described);
    return described;
  }

  /** Each requested LoRA's file under models/loras/ (name without extension, any case). */
  private async findLoras(requests: readonly LoraRequest[]): Promise<{ name: string; path: string; request: LoraRequest }[]> {
    const files: string[] = [];
    for (const folder of LORA_FOLDERS) {
      const dir = path.join(this.options.modelsDir, folder);
      const entries = await readdir(dir).catch(() => [] as string[]);
      for (const e of entries.sort()) if (!e.startsWith('.') && WEIGHTS_FILE.test(e)) files.push(path.join(dir, e));
    }
    return requests.map((request) => {
      const found = files.find((f) => checkpointName(f).toLowerCase() === request.name.toLowerCase());
      if (found) return { name: checkpointName(found), path: found, request };
      const names = [...new Set(files.map(checkpointName))];
      const near = nearNames(request.name, names);
      const hint = near.length > 0 ? `; did you mean ${near.join(', ')}?` : names.length > 0 ? `; installed: ${names.join(', ')}` : `; ${path.join(this.options.modelsDir, 'loras')} holds none`;
      throw new EngineError('bad_request', `unknown LoRA "${request.name}"${hint}`);
    });
  }

  private async loraHash(file: string): Promise<string> {
    const s = await stat(file);
    const known = this.loraHashMemo.get(file);
    if (known && known.size === s.size && known.mtimeMs === s.mtimeMs) return known.hash;
    const hash = await addnetHash(file);
    this.loraHashMemo.set(file, { size: s.size, mtimeMs: s.mtimeMs, hash });
    return hash;
  }

  /**
   * The tokenizer copied into a built folder: a diffusers folder's own tokenizer/; else the
   * configured one; else models/tokenizer/; else that of an installed ONNX model whose vocabulary
   * has as many entries as the model's token embedding has rows (every SD 1.x/2.x model shares
   * CLIP's 49,408-entry BPE vocabulary); else the bundled CLIP tokenizer.
   */
  private async tokenizerFor(info: ModelInfo, installed: readonly ModelInfo[]): Promise<string> {
    const diffusers = info.source === 'diffusers';
    const own = path.join(info.dir, 'tokenizer');
    if (diffusers && (await this.vocabSize(own)) !== undefined) return own;
    if (this.options.tokenizerDir !== undefined) return this.options.tokenizerDir;
    const rows = await this.vocabRows(diffusers ? await partWeights(info.dir, 'text_encoder') : info.dir);
    const candidates = [
      path.join(this.options.modelsDir, 'tokenizer'),
      ...installed.filter((m) => (m.source ?? 'onnx') === 'onnx').map((m) => path.join(m.dir, 'tokenizer')),
      BUNDLED_CLIP_TOKENIZER,
    ];
    for (const dir of candidates) {
      const size = await this.vocabSize(dir);
      if (size !== undefined && (rows === undefined || size === rows)) return dir;
    }
    throw new EngineError(
      'model',
      `model "${info.name}" needs a CLIP tokenizer, which checkpoint files do not carry: copy vocab.json and merges.txt from the tokenizer/ folder of any SD 1.x or 2.x download into ${path.join(this.options.modelsDir, 'tokenizer')}`,
    );
  }

  private async vocabRows(file: string): Promise<number | undefined> {
    const weights = await openWeightsFile(file);
    try {
      for (const name of TOKEN_EMBEDDINGS) {
        const t = weights.header.tensors.get(name);
        if (t) return t.shape[0];
      }
      return undefined;
    } finally {
      await weights.close();
    }
  }

  private async vocabSize(dir: string): Promise<number | undefined> {
    if (this.vocabSizes.has(dir)) return this.vocabSizes.get(dir);
    let size: number | undefined;
    try {
      await stat(path.join(dir, 'merges.txt'));
      const vocab = JSON.parse(await readFile(path.join(dir, 'vocab.json'), 'utf8')) as Record<string, number>;
      size = Object.keys(vocab).length;
    } catch {
      size = undefined;
    }
    this.vocabSizes.set(dir, size);
    return size;
  }
}
