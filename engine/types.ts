// The engine's public contract. Nothing here knows about chats, queues or the bot:
// the engine can be used alone (CLI, benchmark, a worker on another machine).

/** Sampler names as AUTOMATIC1111 users know them. */
export const SAMPLERS = ['Euler', 'Euler a', 'DPM++ 2M Karras', 'DDIM', 'Turbo'] as const;
export type SamplerName = (typeof SAMPLERS)[number];

export type ExecutionProviderName = 'cuda' | 'webgpu' | 'cpu';

/** "normal": every session of a loaded model stays resident. "low" (8 GB machines): only the
 * UNet stays; the text encoder and VAE are created around it for each job, large pictures are
 * decoded in tiles, and sessions run without onnxruntime's memory arena. */
export type MemoryMode = 'normal' | 'low';

/** sd1: 768-dim conditioning; sd2: 1024-dim; sd-turbo: 1024-dim with trailing Euler in its scheduler config;
 * sdxl: two text encoders (768 + 1280), pooled text and size/crop ids, 1024² native (a Turbo or
 * Lightning fine-tune is still 'sdxl', with turbo defaults). */
export type ModelFamily = 'sd1' | 'sd2' | 'sd-turbo' | 'sdxl';

/** Which exporter wrote the folder; decides input dtypes and the VAE encoder output. */
export type ExportGeneration = 'diffusers-legacy' | 'optimum-old' | 'optimum-new';

export interface ModelInfo {
  /** Folder name under the models directory; what members type after --model. */
  name: string;
  dir: string;
  family: ModelFamily;
  predictionType: 'epsilon' | 'v_prediction';
  nativeWidth: number;
  nativeHeight: number;
  /** Suggested defaults for this model (Turbo: 1–4 steps, guidance off). */
  defaultSampler: SamplerName;
  defaultSteps: number;
  defaultGuidance: number;
  hasVaeEncoder: boolean;
  generation: ExportGeneration;
  dtype: 'float32' | 'float16';
  /** sha256 (hex) of the checkpoint file the model was built from; A1111's "Model hash" is its first 10 hex. */
  sha256?: string;
  /**
   * Where the model comes from: an ONNX export folder (absent means 'onnx'), a single-file
   * checkpoint (`dir` is then the .safetensors file; its folder is built on first use) or a
   * diffusers folder.
   */
  source?: ModelSource;
  /** How a checkpoint stores its weights (fp32, fp16, bf16, mixed), for listing. */
  storedDtype?: string;
  /** Installed LoRAs and textual-inversion embeddings made for this model's family (names). */
  loras?: string[];
  embeddings?: string[];
}

export type ModelSource = 'onnx' | 'checkpoint' | 'diffusers';

/** A folder that looked like a model but cannot be used, with a reason that names the file. */
export interface ModelProblem {
  name: string;
  dir: string;
  reason: string;
}

export interface ModelScan {
  models: ModelInfo[];
  problems: ModelProblem[];
  /** Set when the models offered are the bundled demo model (no other is installed): say it once. */
  notice?: string;
}

/** An init image for img2img, already sized to the requested width and height. */
export interface InitImage {
  /** Packed RGB, 8 bits per channel, row-major, width*height*3 bytes. */
  rgb: Uint8Array;
  width: number;
  height: number;
  /** 0..1, diffusers semantics: the share of the schedule that is re-run. */
  strength: number;
}

export interface GenerateRequest {
  model: string;
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  /** Classifier-free guidance scale; ≤ 1 turns guidance off (UNet batch 1). */
  guidance: number;
  sampler: SamplerName;
  /** uint32. Image i of the batch uses seed + i (mod 2^32). */
  seed: number;
  count: number;
  /** AUTOMATIC1111's "variation seed": noise = slerp(noise(seed+i), noise(variation.seed+i), strength). */
  variation?: { seed: number; strength: number };
  init?: InitImage;
  /** Ask for cheap preview images in step progress. */
  previews?: boolean;
  /**
   * LoRAs to apply. The engine adds the prompt's `<lora:…>` tags to these before loading the model
   * (the tags stay in the prompt text, which is what the info text shows).
   */
  loras?: LoraRequest[];
}

/** One LoRA a job asks for: `<lora:name:te:unet>` in the prompt or `--lora name:weight`. */
export interface LoraRequest { name: string; textEncoderWeight: number; unetWeight: number }

export interface PromptTruncation {
  /** The text that reached the model (only where it can be told word for word). */
  kept?: string;
  /** The words that were cut off, from the word where the cut starts. */
  dropped: string;
  /** Prompt tokens the model read (75 per chunk); absent in reports from before chunking. */
  tokenLimit?: number;
}


export interface EngineImage {
  rgb: Uint8Array;
  width: number;
  height: number;
  seed: number;
  /** AUTOMATIC1111-style info text for this picture (what goes into the PNG `parameters` chunk). */
  infoText: string;
}

export interface GenerateResult {
  images: EngineImage[];
  model: string;
  provider: ExecutionProviderName;
  truncation: { prompt?: PromptTruncation; negativePrompt?: PromptTruncation };
  /** LoRA name → A1111's short hash (first 12 hex of its hash), for the info text's `Lora hashes`. */
  loraHashes?: Record<string, string>;
  timing: {
    totalMs: number;
    /** Wall time spent in the denoising loop, summed over steps. */
    denoiseMs: number;
    /** UNet steps actually run (img2img runs fewer than `steps`). */
    stepsRun: number;
  };
}

export interface StepProgress {
  /** UNet steps done over the whole job, every batch of pictures counted (for fractions and ETAs). */
  step: number;
  total: number;
  /**
   * The same moment as a member counts it: step `step` of the job's own `steps`, in the batch that
   * draws pictures first+1 … first+size of `count` (batches run one after another when the
   * pictures do not fit one UNet call).
   */
  batch?: { step: number; steps: number; first: number; size: number; count: number };
  preview?: { rgb: Uint8Array; width: number; height: number };
}

/**
 * Work before the first step that can take a while: 'preparing' builds a checkpoint's (or LoRA
 * variant's) ONNX folder on its first use, `fraction` 0..1; 'loading' creates a model's sessions.
 */
export interface ModelStage {
  stage: 'preparing' | 'loading';
  model: string;
  /** Preparing a LoRA variant: the LoRAs being merged in. */
  loras?: string[];
  fraction?: number;
}

export interface GenerateOptions {
  signal?: AbortSignal;
  onStep?: (progress: StepProgress) => void;
  onStage?: (stage: ModelStage) => void;
}

/** `worker_crashed`: the worker thread died while drawing (a crash the request may have caused). */
export type EngineErrorCode = 'cancelled' | 'bad_request' | 'model' | 'internal' | 'worker_crashed';

/** Errors the engine reports. `message` is safe to show to a member. */
export class EngineError extends Error {
  readonly code: EngineErrorCode;
  constructor(code: EngineErrorCode, message: string) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
  }
}

export interface EngineOptions {
  modelsDir: string;
  /** Offered when `modelsDir` holds no usable model (the bundled demo model's folder). */
  fallbackModelsDir?: string;
  /** Tried in order; one that cannot load falls back to the next with one warning. */
  providers: ExecutionProviderName[];
  /** onnxruntime intra-op threads for the CPU provider; 0 lets onnxruntime decide. */
  threads?: number;
  /**
   * Draw one 1-step job when a model is first loaded, at the shapes jobs will use (the native
   * size, `warmupImages` pictures under guidance), so the first member's job does not pay for
   * kernel selection and memory planning at new shapes. GPU providers only unless `warmupOnCpu`:
   * on the CPU provider it only costs time.
   */
  warmup?: boolean;
  /** Also warm up on the CPU provider (default false). */
  warmupOnCpu?: boolean;
  /** Pictures of the warm-up job: the default job's count (default: as many as one UNet call
   * takes on the provider, i.e. 4 on GPU providers). */
  warmupImages?: number;
  /**
   * The most memory (MB) the loaded models may take together, estimated from their weight files;
   * the least recently used is released to make room for another. 0: 60 % of the machine's memory.
   * Absent: models are never released (one-model tools).
   */
  memoryBudgetMB?: number;
  /** See MemoryMode (default "normal"). */
  memory?: MemoryMode;
  /** A folder where the graphs onnxruntime optimises are kept between starts (engine/optimized-cache.ts);
   * absent: every start optimises again. */
  optimizedCacheDir?: string;
  /** Where warnings and info go (the bot passes a pino logger's methods). */
  log?: EngineLog;
  /**
   * Where checkpoints' built ONNX folders and LoRA variants are cached (the bot passes
   * `<dataDir>/model-cache`). Default: `./data/model-cache`, as `npm run models -- prepare` uses.
   */
  modelCacheDir?: string;
  /**
   * A CLIP tokenizer folder (vocab.json + merges.txt) for checkpoints, which carry none. Default:
   * `<modelsDir>/tokenizer/`, else the tokenizer of an installed ONNX model with the same vocabulary.
   */
  tokenizerDir?: string;
  /** Disk the LoRA variants may take together, in MB (default 20000); oldest-used go first. */
  loraCacheMB?: number;
  /** Prompt chunks of 75 tokens read before the rest is cut and reported (default 8; see
   * engine/conditioning.ts DEFAULT_MAX_PROMPT_CHUNKS). */
  maxPromptChunks?: number;
}

export interface EngineLog {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface Engine {
  /** Scan the models directory (cheap; no sessions are created). */
  scanModels(): Promise<ModelScan>;
  /** The provider in use, once a model has been loaded. */
  provider(): ExecutionProviderName | undefined;
  generate(request: GenerateRequest, options?: GenerateOptions): Promise<GenerateResult>;
  /** Models loaded now, by load key (./job-loras.ts loadKey: the model, with its LoRA set if any), least
   * recently used first; a request with one of these keys needs no load. */
  loadedModels?(): readonly string[];
  close(): Promise<void>;
}
