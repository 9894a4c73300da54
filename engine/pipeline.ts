// The diffusion loop: text encoder → sampler × UNet → VAE decoder, with seeds that mean
// something. It owns the loaded models (sessions are created once per model and kept while the
// memory budget allows, because onnxruntime-node grows memory on every create/release; low memory
// mode trades that for the memory of the text encoder and VAE) and runs wherever it is
// constructed: inside the engine's worker thread in production, in-process in tests. Calls are
// expected one at a time (the worker's owner chains them): loading a model may release another.
import { totalmem } from 'node:os';
import path from 'node:path';
import { DEFAULT_MAX_PROMPT_CHUNKS, encodePrompts, type PromptEncoder } from './conditioning.js';
import { EmbeddingLibrary, embeddingFamily } from './embedding-library.js';
import { formatInfoText, type InfoTextParams } from './infotext.js';
import { jobLoras, loadKey } from './job-loras.js';
import { loadModel, type AddedConditioning, type LoadedModel, type UnetOptions } from './model.js';
import { estimateResidentBytes, ModelCache } from './model-cache.js';
import { DEFAULT_LORA_CACHE_MB, ModelResolver, type ResolvedModel } from './model-resolve.js';
import { drawHere, NoiseAhead } from './noise-ahead.js';
import { decodeTiled, VAE_TILE } from './vae-tiles.js';
import { scanModels } from './registry.js';
import { CHUNK_LENGTH } from './prompt/chunks.js';
import { TorchCpuGenerator, slerp } from './rng.js';
import { createSampler, type Sampler } from './schedulers.js';
import { sdxlPromptEncoder, sdxlTimeIds, zeroEmptyNegative } from './sdxl-conditioning.js';
import {
  EngineError,
  SAMPLERS,
  type EngineImage,
  type EngineLog,
  type ExecutionProviderName,
  type GenerateRequest,
  type GenerateResult,
  type MemoryMode,
  type ModelInfo,
  type ModelScan,
  type ModelStage,
  type StepProgress,
} from './types.js';

export interface PipelineOptions {
  modelsDir: string;
  /** Scanned when `modelsDir` holds no usable model (see scanModels). */
  fallbackModelsDir?: string;
  /** See EngineOptions.modelCacheDir, tokenizerDir and loraCacheMB. */
  modelCacheDir?: string;
  tokenizerDir?: string;
  loraCacheMB?: number;
  providers: ExecutionProviderName[];
  threads?: number;
  /** See EngineOptions.warmup, warmupOnCpu and warmupImages. */
  warmup?: boolean;
  warmupOnCpu?: boolean;
  warmupImages?: number;
  log?: EngineLog;
  /** See EngineOptions.memoryBudgetMB: absent, loaded models are never evicted. */
  memoryBudgetMB?: number;
  /** See MemoryMode (default "normal"). */
  memory?: MemoryMode;
  /** See EngineOptions.optimizedCacheDir. */
  optimizedCacheDir?: string;
  /** Tells the engine's owner which models are resident after each load or eviction. */
  onLoadedModels?: (names: string[]) => void;
  /**
   * How many pictures of a job share one UNet call (each picture still has its own noise
   * stream, so the pictures do not depend on this). Default: one by one on the CPU provider
   * (up to 4 for pictures of 256×256 or less: see CPU_SMALL_LATENT_AREA), up to 4 per call on
   * GPU providers, never more latent area per call than 4 pictures of
   * 512×512 under guidance. Why (bench/engine.ts compares both): on the synthetic model a
   * 4-picture batch took 0.62× the one-by-one time on CPU, because its small ops are
   * overhead-bound; a real SD UNet on CPU is compute-bound, so the gain shrinks while its
   * attention memory grows with the batch (several GB at batch 8). GPUs gain from batching.
   * On CPU the batched and one-by-one pictures were bit-identical in our checks.
   */
  imagesPerBatch?: number;
  /**
   * Benchmark hook: cumulative milliseconds spent inside onnxruntime's session.run so far (the
   * worker can provide one). When given, the step counters split UNet time into onnxruntime's
   * own share and the boundary work around it (tensor creation, fp16 conversion).
   */
  sessionClock?: () => number;
  /** Prompt chunks of 75 tokens read before the rest is cut and reported (default
   * DEFAULT_MAX_PROMPT_CHUNKS; see there). */
  maxPromptChunks?: number;
}

export interface PipelineRunOptions {
  signal?: AbortSignal;
  onStep?: (progress: StepProgress) => void;
  /** Preparing a checkpoint on first use, creating a model's sessions. */
  onStage?: (stage: ModelStage) => void;
  /** Test and bench hook: the final diffusion latents of each UNet batch, before VAE decoding. */
  onLatents?: (latents: Float32Array, firstImage: number, images: number) => void;
}

/** Counters for the benchmark: where the time of a denoising step goes. */
export interface PipelineStats {
  generations: number;
  steps: number;
  /** Wall time of whole denoising steps (UNet call + guidance + sampler update + progress). */
  stepMs: number;
  /** Time spent inside LoadedModel.unet (onnxruntime run plus tensor/fp16 boundary work). */
  unetMs: number;
  /** Time inside session.run during those steps; only counted when a sessionClock is set. */
  ortMs: number;
  /** Time steps spent waiting for noise drawn ahead on the helper thread (part of stepMs). */
  noiseWaitMs: number;
  /** With a sessionClock: each recent step's time outside session.run, oldest first (at most
   * RECENT_STEPS), so a benchmark can take a median or minimum instead of a mean. */
  recentOutsideMs?: number[];
}

const RECENT_STEPS = 2000;

const LATENT_CHANNELS = 4;
const MB = 1024 * 1024;
/** The folders whose weights a loaded model holds (what its memory footprint is estimated from). */
const MODEL_PARTS = ['unet', 'text_encoder', 'vae_decoder', 'vae_encoder'] as const;
/** memoryBudgetMB 0: this share of the machine's memory. */
const AUTO_BUDGET_SHARE = 0.6;
/** Three 2× downsamplings in the SD UNet: latent sides must divide by 8, pixels by 64. */
const SIZE_MULTIPLE = 64;
const MAX_SIDE = 4096;
const MAX_COUNT = 16;
const MAX_STEPS = 500;
const DEFAULT_GPU_BATCH = 4;
/**
 * Latent area per picture (guidance halves counted) up to which the CPU provider also batches
 * pictures: 256×256 under guidance. Calls that small are overhead-bound, so 4 pictures in one
 * call cost far less than 4 calls (the demo model's 2×2 grid: 80 calls of ~23 ms → 20 of ~60 ms).
 */
const CPU_SMALL_LATENT_AREA = 2 * 32 * 32;
/** UNet batch × latent height × width per call: 4 pictures of 512×512 under guidance. */
const MAX_LATENT_AREA_PER_CALL = 8 * 64 * 64;
const NO_VAE_ENCODER = 'this model folder has no vae_encoder/, so variations from a picture and upscaling are unavailable';
/** A preview is cheap but still a message across threads; one every few steps is plenty. */
const PREVIEW_EVERY = 4;

/**
 * AUTOMATIC1111's "cheap approximation" latent → RGB matrix for SD 1.x latents
 * (modules/sd_vae_approx.py): rgb = Σ_c latent_c · C[c]; close enough for SD 2.x previews.
 */
const LATENT_RGB: readonly (readonly [number, number, number])[] = [
  [0.298, 0.207, 0.208],
  [0.187, 0.286, 0.173],
  [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473],
];
/** The same approximation for SDXL's latent space (A1111's sd_samplers_common.py coefficients). */
const LATENT_RGB_SDXL: readonly (readonly [number, number, number])[] = [
  [0.3448, 0.4168, 0.4395],
  [-0.1953, -0.029, 0.025],
  [0.1074, 0.0886, -0.0163],
  [-0.373, -0.2499, -0.2088],
];

/** One UNet batch's denoising loop: what denoise() needs. */
interface DenoiseJob {
  model: LoadedModel;
  sampler: Sampler;
  /** Starting latents of the k pictures, [k,4,h,w]. */
  latents: Float32Array;
  /** UNet conditioning for the batch: [u×k, c×k] under guidance, [c×k] without. */
  cond: Float32Array;
  /** SDXL: pooled text and time ids in the same row order as `cond`. */
  added: AddedConditioning | undefined;
  k: number;
  /** Index of this batch's first picture, and the job's picture count (for progress). */
  first: number;
  count: number;
  lh: number;
  lw: number;
  /** The guidance scale, or undefined when guidance is off (UNet batch k instead of 2k). */
  guidance: number | undefined;
  previews: boolean;
  /** The pictures' generators, positioned after the draws made before denoising. */
  generators: TorchCpuGenerator[];
  run: PipelineRunOptions;
  totalSteps: number;
  countStats: boolean;
  /** Called after each step with its wall time; returns the job-wide step number. */
  stepFinished: (ms: number) => number;
}

export class Pipeline {
  private readonly options: PipelineOptions;
  private readonly models: ModelCache<LoadedModel>;
  /** Loads in progress, by model folder. */
  private readonly loading = new Map<string, Promise<LoadedModel>>();
  private scan: ModelScan | undefined;
  private lastProvider: ExecutionProviderName | undefined;
  private readonly counters: PipelineStats = { generations: 0, steps: 0, stepMs: 0, unetMs: 0, ortMs: 0, noiseWaitMs: 0 };
  private readonly noiseAhead: NoiseAhead;
  private readonly recentOutside: number[] = [];
  private readonly embeddings: EmbeddingLibrary;
  private readonly resolver: ModelResolver;

  constructor(options: PipelineOptions) {
    this.options = options;
    this.noiseAhead = new NoiseAhead(options.log);
    this.embeddings = new EmbeddingLibrary(path.join(options.modelsDir, 'embeddings'), options.log);
    this.resolver = new ModelResolver({
      modelsDir: options.modelsDir,
      cacheDir: options.modelCacheDir ?? 'data/model-cache',
      ...(options.tokenizerDir !== undefined ? { tokenizerDir: options.tokenizerDir } : {}),
      loraCacheBytes: (options.loraCacheMB ?? DEFAULT_LORA_CACHE_MB) * 1e6,
      providers: options.providers,
    });
    this.models = new ModelCache(memoryBudgetBytes(options.memoryBudgetMB));
  }

  /** Load keys (see loadKey) of the models resident now: the scheduler prefers their jobs among equals. */
  loadedModels(): string[] {
    return this.models.names();
  }

  provider(): ExecutionProviderName | undefined {
    return this.lastProvider;
  }

  stats(): PipelineStats {
    return { ...this.counters, ...(this.options.sessionClock ? { recentOutsideMs: [...this.recentOutside] } : {}) };
  }

  async scanModels(): Promise<ModelScan> {
    const fallback = this.options.fallbackModelsDir;
    this.scan = await scanModels(this.options.modelsDir, fallback !== undefined ? { fallbackDir: fallback } : {});
    return this.scan;
  }

  async close(): Promise<void> {
    await this.models.clear();
    await this.noiseAhead.close();
  }

  async generate(request: GenerateRequest, run: PipelineRunOptions = {}): Promise<GenerateResult> {
    const started = performance.now();
    validateShape(request);
    // The prompt's <lora:…> tags join request.loras before the model is chosen: a job with LoRAs
    // draws with that model's LoRA variant.
    const { request: job, infoPrompt } = jobLoras(request);
    throwIfCancelled(run.signal);
    const { model, loraHashes } = await this.model(job, run);
    validateForModel(job, model.info);
    throwIfCancelled(run.signal);
    const { result, info } = await this.draw(model, job, run);
    if (loraHashes) result.loraHashes = loraHashes;
    // Formatted last, so everything the result learned (the LoRAs' hashes) is in it.
    result.images.forEach((image, i) => {
      image.infoText = formatInfoText({ ...info[i]!, prompt: infoPrompt, ...(result.loraHashes ? { loraHashes: result.loraHashes } : {}) });
    });
    this.counters.generations++;
    result.timing.totalMs = performance.now() - started;
    if (this.options.memory === 'low') {
      // The figure low memory mode is for: what this process has needed at most so far.
      this.options.log?.info({ model: request.model, peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024) }, 'memory peak so far');
    }
    return result;
  }

  /**
   * The loaded model a request draws with, loading (and warming up) on first use. Models are kept
   * by folder: a checkpoint's built folder, or its LoRA variant's (see ./model-resolve.ts).
   */
  private async model(request: GenerateRequest, run: PipelineRunOptions): Promise<{ model: LoadedModel; loraHashes?: Record<string, string> }> {
    const info = await this.info(request.model);
    const resolved = await this.resolver.resolve(info, request.loras, {
      ...(run.onStage ? { onStage: run.onStage } : {}),
      ...(run.signal ? { signal: run.signal } : {}),
      installed: this.scan?.models ?? [],
    });
    const loraHashes = resolved.loraHashes ? { loraHashes: resolved.loraHashes } : {};
    const key = loadKey(info.name, request.loras);
    const ready = this.models.get(resolved.key, key);
    if (ready) return { model: ready, ...loraHashes };
    const pending = this.loading.get(resolved.key);
    if (pending) {
      const model = await pending;
      this.models.get(resolved.key, key); // this key answers to the folder too
      return { model, ...loraHashes };
    }
    const promise = this.load(resolved, info.name, key, run.onStage).finally(() => this.loading.delete(resolved.key));
    this.loading.set(resolved.key, promise);
    return { model: await promise, ...loraHashes };
  }

  /** The listed model of a name, scanning again when it is not (yet) known. */
  private async info(name: string): Promise<ModelInfo> {
    let info = this.scan?.models.find((m) => m.name === name);
    // A folder may have been added (or repaired) since the last scan: look again before refusing.
    if (!info) info = (await this.scanModels()).models.find((m) => m.name === name);
    if (!info) {
      const problem = this.scan?.problems.find((p) => p.name === name);
      if (problem) throw new EngineError('model', `model "${name}" cannot be used: ${problem.reason}`);
      const names = this.scan?.models.map((m) => m.name) ?? [];
      throw new EngineError(
        'bad_request',
        names.length
          ? `unknown model "${name}"; available: ${names.join(', ')}`
          : `unknown model "${name}"; no usable models were found in ${this.options.modelsDir}`,
      );
    }
    return info;
  }

  private async load(resolved: ResolvedModel, name: string, key: string, onStage: PipelineRunOptions['onStage']): Promise<LoadedModel> {
    const info = await resolved.describe();
    const bytes = await estimateResidentBytes(info.dir, MODEL_PARTS);
    const evicted = await this.models.makeRoom(bytes);
    if (evicted.length > 0) {
      this.options.log?.info({ model: name, evicted, budgetMB: this.options.memoryBudgetMB }, 'models released to make room');
      this.options.onLoadedModels?.(this.models.names());
    }
    onStage?.({ stage: 'loading', model: name });
    const model = await loadModel(info, {
      providers: this.options.providers,
      ...(this.options.threads !== undefined ? { threads: this.options.threads } : {}),
      ...(this.options.log ? { log: this.options.log } : {}),
      ...(this.options.memory ? { memory: this.options.memory } : {}),
      ...(this.options.optimizedCacheDir !== undefined ? { optimizedCacheDir: this.options.optimizedCacheDir } : {}),
    });
    this.lastProvider = model.provider;
    this.options.log?.info({ model: name, provider: model.provider, estimatedMB: Math.round(bytes / MB) }, 'model loaded');
    try {
      if (this.options.warmup && (model.provider !== 'cpu' || this.options.warmupOnCpu)) await this.warmUp(model);
    } catch (err) {
      await model.release();
      throw err;
    }
    this.models.add(resolved.key, model, bytes, key);
    this.options.onLoadedModels?.(this.models.names());
    return model;
  }

  /** One single-step job at the shapes a default job uses (native size, the UNet batch of its
   * pictures under guidance), so the first member's job does not pay for onnxruntime's lazy
   * kernel selection and memory planning at shapes it has not seen. */
  private async warmUp(model: LoadedModel): Promise<void> {
    const info = model.info;
    const t0 = performance.now();
    this.noiseAhead.start();
    const wanted = this.options.warmupImages ?? this.imagesPerCall(model, MAX_COUNT, 0);
    const count = Math.max(1, Math.min(MAX_COUNT, Math.trunc(wanted)));
    const useCfg = info.defaultGuidance > 1 && info.defaultSampler !== 'Turbo';
    const perCall = this.imagesPerCall(model, count, (info.nativeWidth / 8) * (info.nativeHeight / 8) * (useCfg ? 2 : 1));
    await this.draw(
      model,
      {
        model: info.name,
        prompt: '',
        negativePrompt: '',
        width: info.nativeWidth,
        height: info.nativeHeight,
        steps: 1,
        guidance: info.defaultGuidance,
        sampler: info.defaultSampler,
        seed: 0,
        count,
      },
      {},
      false,
    );
    this.options.log?.info(
      {
        model: info.name,
        ms: Math.round(performance.now() - t0),
        images: count,
        width: info.nativeWidth,
        height: info.nativeHeight,
        unetBatch: Math.min(perCall, count) * (useCfg ? 2 : 1),
      },
      'model warmed up',
    );
  }

  /** The pictures, and each one's info-text parameters (formatted by generate()). */
  private async draw(
    model: LoadedModel,
    req: GenerateRequest,
    run: PipelineRunOptions,
    countStats = true,
  ): Promise<{ result: GenerateResult; info: InfoTextParams[] }> {
    const lh = req.height / 8;
    const lw = req.width / 8;
    const latentSize = LATENT_CHANNELS * lh * lw;
    const useCfg = req.guidance > 1 && req.sampler !== 'Turbo';
    const variation = req.variation && req.variation.strength > 0 ? req.variation : undefined;

    // [uncond, cond] under guidance, [cond] without; 77 positions per 75-token chunk.
    const family = embeddingFamily(model.info.family);
    const embeddings = await this.embeddings.forModel(family, family === 'sdxl' ? undefined : model.hiddenDim);
    const fixed = model.fixedConditioningTokens;
    // Low memory mode creates the text encoder once for all the chunks' calls.
    const prompts = await model.holding('text', () =>
      encodePrompts(req.prompt, req.negativePrompt, {
        tokenizer: model.tokenizer,
        encoder: textEncoderOf(model),
        guidance: useCfg,
        maxChunks: this.options.maxPromptChunks ?? DEFAULT_MAX_PROMPT_CHUNKS,
        ...(fixed !== undefined ? { fixedChunks: Math.max(1, Math.floor(fixed / CHUNK_LENGTH)) } : {}),
        embeddings: embeddings.usable,
        refusedEmbeddings: embeddings.refused,
        modelName: model.info.name,
      }),
    );
    if (model.sdxl) zeroEmptyNegative(prompts, req.negativePrompt, useCfg, model.sdxl);
    const text = prompts.hidden;
    const tokenWidth = text.length / (useCfg ? 2 : 1);
    const pooled = prompts.pooled;
    const tiHashes = Object.fromEntries(prompts.embeddingsUsed.flatMap((name) => {
      const hash = embeddings.hashes.get(name);
      return hash ? [[name, hash]] : [];
    }));

    const perBatch = this.imagesPerCall(model, req.count, lh * lw * (useCfg ? 2 : 1));
    const chunks = Math.ceil(req.count / perBatch);
    const initImage = req.init ? rgbToModelInput(req.init.rgb, req.width, req.height) : undefined;
    const strength = req.init?.strength;

    // The step schedule is the same for every batch of the job; build one sampler to learn it.
    const probe = this.sampler(model, req, strength);
    const stepsRun = probe.timesteps.length;
    const totalSteps = stepsRun * chunks;

    const images: EngineImage[] = [];
    const info: InfoTextParams[] = [];
    let denoiseMs = 0;
    let stepDone = 0;
    const conditioning = new Map<number, { cond: Float32Array; added: AddedConditioning | undefined }>();

    for (let chunk = 0; chunk < chunks; chunk++) {
      const first = chunk * perBatch;
      const k = Math.min(perBatch, req.count - first);
      let batchConditioning = conditioning.get(k);
      if (!batchConditioning) {
        batchConditioning = {
          cond: repeatConditioning(text, tokenWidth, useCfg, k),
          added: pooled
            ? {
                textEmbeds: repeatConditioning(pooled, pooled.length / (useCfg ? 2 : 1), useCfg, k),
                timeIds: sdxlTimeIds(req.width, req.height, (useCfg ? 2 : 1) * k),
              }
            : undefined,
        };
        conditioning.set(k, batchConditioning);
      }

      // Per-image generators: image i's noise does not depend on how many images share a batch.
      const seeds: number[] = [];
      const generators: TorchCpuGenerator[] = [];
      const start = new Float32Array(k * latentSize);
      for (let j = 0; j < k; j++) {
        const i = first + j;
        const seed = variation ? req.seed >>> 0 : (req.seed + i) >>> 0;
        const generator = new TorchCpuGenerator(seed);
        let noise = generator.randn(latentSize);
        if (variation) {
          const other = new TorchCpuGenerator((variation.seed + i) >>> 0).randn(latentSize);
          // A1111's exact blend: per (channel, column) vectors along the height axis.
          noise = slerp(variation.strength, noise, other, { channels: LATENT_CHANNELS, height: lh, width: lw });
        }
        start.set(noise, j * latentSize);
        seeds.push(seed);
        generators.push(generator);
      }

      const sampler = chunk === 0 ? probe : this.sampler(model, req, strength);
      let x: Float32Array;
      if (initImage) {
        // Order of draws from each picture's generator: the starting noise first (the same noise
        // the seed gives in txt2img, so seeds and variation seeds mean the same thing here), then
        // the VAE encoder's posterior sample, then the ancestral steps. diffusers draws the
        // posterior sample before the noise; we keep the seed's noise first on purpose.
        // validateForModel refused this already; the check narrows the type.
        if (!model.vaeEncode) throw new EngineError('model', NO_VAE_ENCODER);
        const pixels = repeat(initImage, k);
        // Fresh unit noise in batch order, each image drawing from its own stream.
        const posterior = drawHere(generators, latentSize);
        const initLatent = await model.vaeEncode(pixels, k, req.height, req.width, () => posterior.next());
        x = sampler.addNoise(initLatent, start);
      } else {
        x = start;
        const sigma = sampler.initNoiseSigma;
        if (sigma !== 1) for (let n = 0; n < x.length; n++) x[n]! *= sigma;
      }

      x = await this.denoise({
        model,
        sampler,
        latents: x,
        cond: batchConditioning.cond,
        added: batchConditioning.added,
        k,
        first,
        count: req.count,
        lh,
        lw,
        guidance: useCfg ? req.guidance : undefined,
        previews: req.previews === true,
        generators,
        run,
        totalSteps,
        countStats,
        stepFinished: (ms) => {
          denoiseMs += ms;
          return ++stepDone;
        },
      });

      run.onLatents?.(x, first, k);
      throwIfCancelled(run.signal);
      const decoded = await this.decode(model, x, k, lh, lw);
      for (let j = 0; j < k; j++) {
        const i = first + j;
        images.push({
          rgb: modelOutputToRgb(decoded(j), 0, req.width, req.height),
          width: req.width,
          height: req.height,
          seed: seeds[j]!,
          infoText: '',
        });
        info.push({
          prompt: req.prompt,
          negativePrompt: req.negativePrompt,
          steps: req.steps,
          sampler: req.sampler,
          // Turbo runs guidance off whatever was asked: say what was drawn, so the info text reproduces it.
          guidance: req.sampler === 'Turbo' ? Math.min(req.guidance, 1) : req.guidance,
          seed: seeds[j]!,
          width: req.width,
          height: req.height,
          model: model.info.name,
          ...(model.info.sha256 ? { modelSha256: model.info.sha256 } : {}),
          ...(variation ? { variation: { seed: (variation.seed + i) >>> 0, strength: variation.strength } } : {}),
          ...(strength !== undefined ? { denoisingStrength: strength } : {}),
          ...(Object.keys(tiHashes).length > 0 ? { tiHashes } : {}),
        });
      }
    }

    return {
      result: {
        images,
        model: model.info.name,
        provider: model.provider,
        truncation: prompts.truncation,
        timing: { totalMs: 0, denoiseMs, stepsRun },
      },
      info,
    };
  }

  /**
   * Decodes a batch's latents; returns picture j's [1,3,H,W]. Low memory mode decodes picture by
   * picture, and in tiles beyond VAE_TILE latents a side: the decoder's activations grow with both.
   */
  private async decode(model: LoadedModel, x: Float32Array, k: number, lh: number, lw: number): Promise<(j: number) => Float32Array> {
    const plane = 3 * lh * 8 * lw * 8;
    if (this.options.memory !== 'low') {
      const decoded = await model.vaeDecode(x, k, lh, lw);
      return (j) => decoded.subarray(j * plane, (j + 1) * plane);
    }
    const decode = (latent: Float32Array, batch: number, h: number, w: number) => model.vaeDecode(latent, batch, h, w);
    const latentSize = LATENT_CHANNELS * lh * lw;
    const pictures = await model.holding('decoder', async () => {
      const out: Float32Array[] = [];
      for (let j = 0; j < k; j++) {
        const latent = x.subarray(j * latentSize, (j + 1) * latentSize);
        out.push(lh > VAE_TILE || lw > VAE_TILE ? await decodeTiled(decode, latent, 1, lh, lw) : await decode(latent, 1, lh, lw));
      }
      return out;
    });
    return (j) => pictures[j]!;
  }

  private imagesPerCall(model: LoadedModel, count: number, latentAreaPerImage: number): number {
    const wanted = this.options.imagesPerBatch ?? (model.provider !== 'cpu' || latentAreaPerImage <= CPU_SMALL_LATENT_AREA ? DEFAULT_GPU_BATCH : 1);
    const byArea = latentAreaPerImage > 0 ? Math.floor(MAX_LATENT_AREA_PER_CALL / latentAreaPerImage) : wanted;
    return Math.max(1, Math.min(wanted, count, byArea));
  }

  private sampler(model: LoadedModel, req: GenerateRequest, strength: number | undefined): Sampler {
    return createSampler(req.sampler, model.scheduler, req.steps, strength !== undefined ? { strength } : {});
  }

  /** The denoising loop for one UNet batch. Buffers are allocated once; per step the JS work is
   * two linear passes (input scaling and guidance, done by LoadedModel.unet) plus the sampler update. */
  private async denoise(job: DenoiseJob): Promise<Float32Array> {
    const { sampler, k, guidance } = job;
    let x = job.latents;
    const n = x.length;
    // One options object for the whole loop; each step only sets its input scale.
    const unetOptions: UnetOptions = {
      added: job.added,
      guidance: guidance !== undefined ? { scale: guidance, into: new Float32Array(n) } : undefined,
      sampleScale: 1,
    };
    // Ancestral steps' noise is drawn ahead on another thread while the UNet runs.
    const noise = this.noiseAhead.stream(job.generators, n / k, sampler.noiseDraws());
    const drawNoise = (): Float32Array => noise.next();
    try {
      for (let i = 0; i < sampler.timesteps.length; i++) x = await this.step(job, i, x, unetOptions, drawNoise);
    } finally {
      noise.close();
      if (job.countStats) this.counters.noiseWaitMs += noise.waitedMs;
    }
    return x;
  }

  /** Denoising step i of a UNet batch: the returned latent may be one of the sampler's buffers. */
  private async step(job: DenoiseJob, i: number, x: Float32Array, unetOptions: UnetOptions, drawNoise: () => Float32Array): Promise<Float32Array> {
    const { model, sampler, cond, k, lh, lw, run, totalSteps } = job;
    const steps = sampler.timesteps.length;
    throwIfCancelled(run.signal);
    const t0 = performance.now();
    unetOptions.sampleScale = sampler.inputScale(i);

    const clock = this.options.sessionClock;
    const o0 = clock ? clock() : 0;
    const u0 = performance.now();
    const modelOutput = await model.unet(x, k, lh, lw, sampler.timesteps[i]!, cond, unetOptions);
    const unetMs = performance.now() - u0;
    const ortMs = clock ? clock() - o0 : 0;

    const next = sampler.step(i, x, modelOutput, drawNoise);

    const stepMs = performance.now() - t0;
    if (job.countStats) {
      this.counters.steps++;
      this.counters.stepMs += stepMs;
      this.counters.unetMs += unetMs;
      this.counters.ortMs += ortMs;
      if (clock) {
        if (this.recentOutside.length === RECENT_STEPS) this.recentOutside.shift();
        this.recentOutside.push(stepMs - ortMs);
      }
    }
    const done = job.stepFinished(stepMs);
    if (run.onStep) {
      const progress: StepProgress = {
        step: done,
        total: totalSteps,
        batch: { step: i + 1, steps, first: job.first, size: k, count: job.count },
      };
      if (job.previews && i < steps - 1 && (i + 1) % PREVIEW_EVERY === 0) {
        const denoised = sampler.lastDenoised() ?? next;
        progress.preview = { rgb: latentPreview(denoised, lh, lw, model.info.family === 'sdxl' ? LATENT_RGB_SDXL : LATENT_RGB), width: lw, height: lh };
      }
      run.onStep(progress);
    }
    return next;
  }
}

/** The budget in bytes: absent → unbounded; 0 → a share of the machine's memory. */
function memoryBudgetBytes(mb: number | undefined): number {
  if (mb === undefined) return Number.POSITIVE_INFINITY;
  if (mb === 0) return Math.round(totalmem() * AUTO_BUDGET_SHARE);
  return mb * MB;
}

function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new EngineError('cancelled', 'cancelled');
}

function isUint32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

/** Checks that need no model: each failure names the field and what is allowed. */
export function validateShape(req: GenerateRequest): void {
  const bad = (msg: string): never => {
    throw new EngineError('bad_request', msg);
  };
  if (typeof req.model !== 'string' || req.model === '') bad('no model was named');
  if (typeof req.prompt !== 'string') bad('the prompt must be text');
  if (typeof req.negativePrompt !== 'string') bad('the negative prompt must be text');
  for (const [name, v] of [
    ['width', req.width],
    ['height', req.height],
  ] as const) {
    if (!Number.isInteger(v) || v < SIZE_MULTIPLE || v > MAX_SIDE || v % SIZE_MULTIPLE !== 0) {
      bad(`${name} ${String(v)} is not allowed: use a multiple of ${SIZE_MULTIPLE} from ${SIZE_MULTIPLE} to ${MAX_SIDE}`);
    }
  }
  if (!Number.isInteger(req.steps) || req.steps < 1 || req.steps > MAX_STEPS) {
    bad(`steps ${String(req.steps)} is not allowed: use a whole number from 1 to ${MAX_STEPS}`);
  }
  if (!Number.isInteger(req.count) || req.count < 1 || req.count > MAX_COUNT) {
    bad(`count ${String(req.count)} is not allowed: use a whole number from 1 to ${MAX_COUNT}`);
  }
  if (typeof req.guidance !== 'number' || !Number.isFinite(req.guidance) || req.guidance < 0 || req.guidance > 100) {
    bad(`guidance ${String(req.guidance)} is not allowed: use a number from 0 to 100`);
  }
  if (!(SAMPLERS as readonly string[]).includes(req.sampler)) {
    bad(`unknown sampler "${String(req.sampler)}"; available: ${SAMPLERS.join(', ')}`);
  }
  if (!isUint32(req.seed)) bad(`seed ${String(req.seed)} is not allowed: use a whole number from 0 to 4294967295`);
  if (req.variation) {
    if (!isUint32(req.variation.seed)) {
      bad(`variation seed ${String(req.variation.seed)} is not allowed: use a whole number from 0 to 4294967295`);
    }
    const s = req.variation.strength;
    if (typeof s !== 'number' || !(s >= 0 && s <= 1)) {
      bad(`variation strength ${String(s)} is not allowed: use a number from 0 to 1`);
    }
  }
  if (req.init) {
    const { rgb, width, height, strength } = req.init;
    if (width !== req.width || height !== req.height) {
      bad(`the init picture is ${width}x${height} but ${req.width}x${req.height} was asked for; resize it first`);
    }
    if (!(rgb instanceof Uint8Array) || rgb.length !== width * height * 3) {
      bad(`the init picture must be packed RGB of ${width}x${height}x3 bytes`);
    }
    if (typeof strength !== 'number' || !(strength > 0 && strength <= 1)) {
      bad(`strength ${String(strength)} is not allowed: use a number above 0 and at most 1`);
    }
  }
}

function validateForModel(req: GenerateRequest, info: ModelInfo): void {
  if (req.init && !info.hasVaeEncoder) throw new EngineError('model', NO_VAE_ENCODER);
}

/** The model's text encoder(s) as encodePrompts drives them (exported for tests). */
export function textEncoderOf(model: LoadedModel): PromptEncoder {
  if (model.sdxl) return sdxlPromptEncoder(model.sdxl, model.tokenizer.eosId);
  return {
    parts: [{ slot: 'text', width: model.hiddenDim }],
    acceptsEmbeddings: model.acceptsEmbeddings,
    encode: async (ids, overrides) => ({ hidden: await model.encodeText(ids, overrides?.[0]) }),
  };
}

/** [B,tokens,D] text states → the UNet's conditioning batch for k pictures: [u×k, c×k] or [c×k]. */
function repeatConditioning(text: Float32Array, tokenWidth: number, useCfg: boolean, k: number): Float32Array {
  const parts = useCfg ? 2 : 1;
  if (k === 1) return text;
  const out = new Float32Array(parts * k * tokenWidth);
  for (let part = 0; part < parts; part++) {
    const src = text.subarray(part * tokenWidth, (part + 1) * tokenWidth);
    for (let j = 0; j < k; j++) out.set(src, (part * k + j) * tokenWidth);
  }
  return out;
}

function repeat(one: Float32Array, k: number): Float32Array {
  if (k === 1) return one;
  const out = new Float32Array(one.length * k);
  for (let j = 0; j < k; j++) out.set(one, j * one.length);
  return out;
}

/** Packed RGB bytes → [1,3,H,W] float in [-1,1], the VAE encoder's input range. */
export function rgbToModelInput(rgb: Uint8Array, width: number, height: number): Float32Array {
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    out[p] = rgb[3 * p]! / 127.5 - 1;
    out[plane + p] = rgb[3 * p + 1]! / 127.5 - 1;
    out[2 * plane + p] = rgb[3 * p + 2]! / 127.5 - 1;
  }
  return out;
}

/** Image j of a decoded [B,3,H,W] batch in [-1,1] → packed RGB bytes, as diffusers does:
 * (x/2 + 0.5) clamped to [0,1], × 255, rounded. One pass over the three planes with sequential
 * writes (half the time of a pass per channel with strided writes). */
export function modelOutputToRgb(decoded: Float32Array, j: number, width: number, height: number): Uint8Array {
  const plane = width * height;
  const base = j * 3 * plane;
  const r = decoded.subarray(base, base + plane);
  const g = decoded.subarray(base + plane, base + 2 * plane);
  const b = decoded.subarray(base + 2 * plane, base + 3 * plane);
  const rgb = new Uint8Array(3 * plane);
  for (let p = 0, o = 0; p < plane; p++, o += 3) {
    rgb[o] = unitToByte(r[p]!);
    rgb[o + 1] = unitToByte(g[p]!);
    rgb[o + 2] = unitToByte(b[p]!);
  }
  return rgb;
}

/** x in [-1,1] → byte. `(y + 0.5) | 0` equals Math.round(y) here: y = (x/2 + 0.5)·255 with x a
 * float32 has at most 33 significant bits and is below 255, so y + 0.5 is exact in a double.
 * NaN (a broken fp16 model) lands on 0 rather than poisoning the byte conversion. */
function unitToByte(x: number): number {
  const v = x / 2 + 0.5;
  return v > 0 ? (v < 1 ? (v * 255 + 0.5) | 0 : 255) : 0;
}

/** The first picture of a latent batch as a tiny RGB preview (one pixel per latent cell). */
export function latentPreview(latents: Float32Array, lh: number, lw: number, coefficients = LATENT_RGB): Uint8Array {
  const plane = lh * lw;
  const rgb = new Uint8Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let l = 0; l < LATENT_CHANNELS; l++) v += latents[l * plane + p]! * coefficients[l]![c]!;
      const unit = (v + 1) / 2;
      rgb[3 * p + c] = unit > 0 ? (unit < 1 ? Math.round(unit * 255) : 255) : 0;
    }
  }
  return rgb;
}
