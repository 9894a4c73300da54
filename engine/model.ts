// Loads one model folder into onnxruntime sessions (created once and kept: onnxruntime-node
// grows memory on every create/release) and exposes typed calls that feed each session exactly
// what its inputMetadata declares — int32 or int64 ids, timestep as int64 [n], float [batch] or
// a float scalar, float32 or float16 tensors — so every export generation runs unconverted.
// All latent math stays float32; float16 exists only at the session boundary.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { float16BitsToFloat32, float32ToFloat16Bits } from './fp16.js';
import { guideFloats, guideHalves } from './guidance.js';
import { UnetInput } from './unet-input.js';
import { createSession } from './providers.js';
import { parseSchedulerConfig, type SchedulerConfig } from './schedulers.js';
import { ClipTokenizer } from './tokenizer.js';
import { EngineError, type EngineLog, type ExecutionProviderName, type MemoryMode, type ModelInfo } from './types.js';

/** diffusers' AutoencoderKL default for SD 1.x/2.x when vae_decoder/config.json does not say. */
export const DEFAULT_VAE_SCALING_FACTOR = 0.18215;
const LATENT_CHANNELS = 4;
const UNET_FILE = 'unet/model.onnx';

/** Textual-inversion vectors for a batch of rows: [rows × 77 × width] where `mask` [rows × 77] is 1. */
export interface TextOverrides {
  vectors: Float32Array;
  mask: Float32Array;
}

/** SDXL's vector conditioning for one UNet batch: pooled text [B, P] and size/crop ids [B, 6]. */
export interface AddedConditioning {
  textEmbeds: Float32Array;
  timeIds: Float32Array;
}

/** Classifier-free guidance applied where the UNet's output is read (see UnetOptions). */
export interface UnetGuidance {
  scale: number;
  /** Receives ε_u + scale·(ε_c − ε_u) for the batch's pictures. */
  into: Float32Array;
}

/** What a UNet call may add to its sample and conditioning. */
export interface UnetOptions {
  /** SDXL's pooled text and time ids for the UNet batch (required by SDXL UNets; kept converted like `cond`). */
  added?: AddedConditioning | undefined;
  /** The UNet runs at batch 2B on [sample, sample] with `cond` (and `added`) laid out
   * [uncond × B, cond × B]; the guided output is written into `guidance.into` and returned. */
  guidance?: UnetGuidance | undefined;
  /** The sampler's input scaling: the UNet sees sample × sampleScale (default 1). */
  sampleScale?: number;
}

/** SDXL's second tokenizer and the two encoders together. */
export interface SdxlText {
  /** tokenizer_2: CLIP's vocabulary, padding with "!" (id 0). */
  tokenizer2: ClipTokenizer;
  /** model_index.json force_zeros_for_empty_prompt (diffusers' default for SDXL: true). */
  forceZerosForEmptyPrompt: boolean;
  /** Width of the pooled text_embeds (1280 for SDXL). */
  pooledDim: number;
  /** Hidden widths of encoder 1 (CLIP ViT-L, 768) and encoder 2 (OpenCLIP bigG, 1280). */
  widths: readonly [number, number];
  /** Both encoders have the embedding override inputs (graphs this engine builds). */
  acceptsEmbeddings: boolean;
  /**
   * Rows of 77 ids for each tokenizer → hidden states [B,77,D1+D2] (the penultimate layer of each
   * encoder, concatenated on the channel axis) and encoder 2's pooled text_embeds [B,P].
   */
  encode(ids1: Int32Array[], ids2: Int32Array[], overrides?: readonly [TextOverrides | undefined, TextOverrides | undefined]): Promise<{ hidden: Float32Array; pooled: Float32Array }>;
}

export interface LoadedModel {
  info: ModelInfo;
  /** The provider the UNet (the part that matters for speed) runs on. */
  provider: ExecutionProviderName;
  tokenizer: ClipTokenizer;
  scheduler: SchedulerConfig;
  /** vae_decoder/config.json scaling_factor, or 0.18215. */
  vaeScalingFactor: number;
  hiddenDim: number;
  /** Sequence length the UNet's `encoder_hidden_states` is fixed to, when the export fixes it
   * (undefined: any length, so prompts longer than 75 tokens are encoded in several chunks). */
  fixedConditioningTokens?: number;
  /** The text encoder has the `embedding_override`/`override_mask` inputs (graphs this engine builds). */
  acceptsEmbeddings: boolean;
  /** Token ids (77 each) → last_hidden_state [B,77,D] as float32; `overrides` replace token
   * embeddings where their mask is 1 (only when `acceptsEmbeddings`). */
  encodeText(ids: Int32Array[], overrides?: TextOverrides): Promise<Float32Array>;
  /** Present for SDXL models, whose conditioning comes from two encoders (encodeText is encoder 1's last layer). */
  sdxl?: SdxlText;
  /** One UNet call on latents [B,4,h,w] of `batch` pictures at `timestep` (a float from the sampler; cast as the model declares).
   * `cond` is read once per array and kept converted: pass a new array, never an edited one, for new conditioning.
   * For float16 exports the returned array is reused by the next call: read it before calling again.
   * Input scaling and guidance (`options`) are done here, at the session boundary, because that
   * is where a float16 export converts: it then converts its input once, in the scaling pass's
   * wake, and combines its output straight from the half bits (./unet-input.ts, ./guidance.ts). */
  unet(
    sample: Float32Array,
    batch: number,
    latentH: number,
    latentW: number,
    timestep: number,
    cond: Float32Array,
    options?: UnetOptions,
  ): Promise<Float32Array>;
  /** Diffusion latents (scaled, as the sampler produces them) → image [B,3,8h,8w], roughly in [-1,1]; divides by the scaling factor itself. */
  vaeDecode(latent: Float32Array, batch: number, latentH: number, latentW: number): Promise<Float32Array>;
  /**
   * Image [B,3,H,W] in [-1,1] → scaled diffusion latents [B,4,H/8,W/8]. For `latent_parameters`
   * exports the posterior is sampled with `noise()` (unit noise for the whole batch, [B,4,h,w]);
   * `latent_sample` exports sample inside the graph and `noise` is not called.
   */
  vaeEncode?(image: Float32Array, batch: number, height: number, width: number, noise: () => Float32Array): Promise<Float32Array>;
  /** Runs `fn` with the text encoder's or VAE decoder's session kept (low memory mode creates it
   * once for all the calls `fn` makes instead of once per call). */
  holding<T>(part: 'text' | 'decoder', fn: () => Promise<T>): Promise<T>;
  release(): Promise<void>;
}

export interface LoadModelOptions {
  providers: ExecutionProviderName[];
  threads?: number;
  log?: EngineLog;
  /** "low": only the UNet session stays resident; the text encoder and VAE are created for each call and released after it. */
  memory?: MemoryMode;
  /** Where optimised graphs are cached between starts (see optimized-cache.ts); absent: no cache. */
  optimizedCacheDir?: string;
}

type TensorMeta = ort.InferenceSession.TensorValueMetadata;

interface Part {
  rel: string;
  /** The resident session; undefined for a part created per call (low memory mode). */
  session: ort.InferenceSession | undefined;
  /** Creates the part's session again (parts that are not resident). */
  reopen: () => Promise<ort.InferenceSession>;
  inputs: Map<string, TensorMeta>;
  outputs: string[];
  /** Kept from the first session: a part created per call has none between calls. */
  outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
}

function modelError(info: ModelInfo, message: string): EngineError {
  return new EngineError('model', `model "${info.name}": ${message}`);
}

function describeError(err: unknown): string {
  return ((err as Error)?.message ?? String(err)).split('\n')[0]!.slice(0, 500);
}

function toPart(rel: string, session: ort.InferenceSession, reopen: () => Promise<ort.InferenceSession>): Part {
  const inputs = new Map<string, TensorMeta>();
  for (const m of session.inputMetadata) if (m.isTensor) inputs.set(m.name, m);
  return { rel, session, reopen, inputs, outputs: session.outputMetadata.map((m) => m.name), outputMetadata: session.outputMetadata };
}

function requireInput(info: ModelInfo, part: Part, name: string): TensorMeta {
  const meta = part.inputs.get(name);
  if (!meta) throw modelError(info, `${part.rel} has no "${name}" input (it declares ${[...part.inputs.keys()].join(', ')})`);
  return meta;
}

function pickOutput(info: ModelInfo, part: Part, preferred: readonly string[]): string {
  const found = preferred.find((n) => part.outputs.includes(n)) ?? (preferred.length === 0 ? part.outputs[0] : undefined);
  if (!found) throw modelError(info, `${part.rel} has none of the outputs ${preferred.join(', ')} (it declares ${part.outputs.join(', ')})`);
  return found;
}

function checkFloat(info: ModelInfo, part: Part, meta: TensorMeta): 'float32' | 'float16' {
  if (meta.type === 'float32' || meta.type === 'float16') return meta.type;
  throw modelError(info, `${part.rel} input "${meta.name}" is ${meta.type}; expected float32 or float16`);
}

/**
 * floatTensor for inputs passed again unchanged on every step: the tensor is made once per array
 * and shape and reused. Callers pass a new array for new values, never an edited one.
 */
function perArrayTensor(type: 'float32' | 'float16'): (data: Float32Array, dims: number[]) => ort.Tensor {
  const made = new WeakMap<Float32Array, { shape: string; tensor: ort.Tensor }>();
  return (data, dims) => {
    const shape = dims.join(',');
    const cached = made.get(data);
    if (cached && cached.shape === shape) return cached.tensor;
    const tensor = floatTensor(type, data, dims);
    made.set(data, { shape, tensor });
    return tensor;
  };
}

/** A float32 array as a tensor of the declared float type (float16 as raw half bits). */
function floatTensor(type: 'float32' | 'float16', data: Float32Array, dims: number[]): ort.Tensor {
  if (type === 'float32') return new ort.Tensor('float32', data, dims);
  return new ort.Tensor('float16', float32ToFloat16Bits(data), dims);
}

/** A float32 buffer reused across calls of the same shape (a float16 UNet's output, every step). */
class ReusedFloats {
  private floats = new Float32Array(0);
  get(length: number): Float32Array {
    if (this.floats.length !== length) this.floats = new Float32Array(length);
    return this.floats;
  }
}

/** A float output as float32, whatever the export's float type. */
function readFloat(info: ModelInfo, part: Part, value: ort.OnnxValue | undefined, name: string, scratch?: ReusedFloats): Float32Array {
  const data = floatData(info, part, value, name);
  if (data instanceof Uint16Array) return float16BitsToFloat32(data, scratch?.get(data.length));
  return data;
}

/** The UNet output guided into `guidance.into` (see LoadedModel.unet). */
function readGuided(info: ModelInfo, part: Part, value: ort.OnnxValue | undefined, name: string, guidance: UnetGuidance): Float32Array {
  const data = floatData(info, part, value, name);
  if (data instanceof Uint16Array) guideHalves(data, guidance.scale, guidance.into);
  else guideFloats(data, guidance.scale, guidance.into);
  return guidance.into;
}

/** A float output's data: float32 values, or float16 as half bits. */
function floatData(info: ModelInfo, part: Part, value: ort.OnnxValue | undefined, name: string): Float32Array | Uint16Array {
  if (!(value instanceof ort.Tensor)) throw modelError(info, `${part.rel} returned no "${name}"`);
  const data = value.data;
  if (value.type === 'float32' && data instanceof Float32Array) return data;
  if (value.type === 'float16') {
    if (data instanceof Uint16Array) return data;
    // Node ≥ 24 has Float16Array, and onnxruntime returns it there.
    return Float32Array.from(data as ArrayLike<number>);
  }
  throw modelError(info, `${part.rel} output "${name}" is ${value.type}; expected float32 or float16`);
}

async function run(info: ModelInfo, part: Part, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
  let session = part.session;
  if (!session) {
    try {
      session = await part.reopen();
    } catch (err) {
      throw modelError(info, `cannot load ${part.rel}: ${describeError(err)}`);
    }
  }
  try {
    return await session.run(feeds);
  } catch (err) {
    throw modelError(info, `${part.rel} failed to run: ${describeError(err)}`);
  } finally {
    if (!part.session) await session.release().catch(() => undefined);
  }
}

async function readScheduler(info: ModelInfo): Promise<SchedulerConfig> {
  const rel = 'scheduler/scheduler_config.json';
  try {
    return parseSchedulerConfig(JSON.parse(await readFile(path.join(info.dir, rel), 'utf8')));
  } catch (err) {
    throw modelError(info, `${rel}: ${describeError(err)}`);
  }
}

async function readScalingFactor(info: ModelInfo): Promise<number> {
  const rel = 'vae_decoder/config.json';
  let text: string;
  try {
    text = await readFile(path.join(info.dir, rel), 'utf8');
  } catch {
    return DEFAULT_VAE_SCALING_FACTOR; // the legacy script writes no per-part config
  }
  try {
    const value = (JSON.parse(text) as Record<string, unknown>)['scaling_factor'];
    if (value === undefined) return DEFAULT_VAE_SCALING_FACTOR;
    if (typeof value !== 'number' || !(value > 0)) throw new Error(`scaling_factor ${JSON.stringify(value)} is not a positive number`);
    return value;
  } catch (err) {
    throw modelError(info, `${rel}: ${describeError(err)}`);
  }
}

/**
 * Loads the tokenizer, scheduler config and the ONNX sessions of a scanned model. Every failure
 * is an EngineError('model') naming the part or file. Sessions are released again if a later
 * part fails, so a failed load leaves nothing behind.
 */
export async function loadModel(info: ModelInfo, opts: LoadModelOptions): Promise<LoadedModel> {
  let tokenizer: ClipTokenizer;
  let tokenizer2: ClipTokenizer | undefined;
  try {
    tokenizer = await ClipTokenizer.load(path.join(info.dir, 'tokenizer'));
    if (info.family === 'sdxl') tokenizer2 = await ClipTokenizer.load(path.join(info.dir, 'tokenizer_2'));
  } catch (err) {
    throw modelError(info, describeError(err));
  }
  const scheduler = await readScheduler(info);
  const vaeScalingFactor = await readScalingFactor(info);

  const parts: Part[] = [];
  let provider: ExecutionProviderName | undefined;
  const memory = opts.memory ?? 'normal';
  const create = async (rel: string): Promise<ort.InferenceSession> => {
    // After the UNet picked a provider, the other parts start from it: no point retrying a GPU
    // provider that already failed, and all parts should live on the same device.
    const order = provider ? opts.providers.slice(Math.max(0, opts.providers.indexOf(provider))) : opts.providers;
    const created = await createSession(path.join(info.dir, rel), order, {
      threads: opts.threads,
      log: opts.log,
      memory,
      ...(opts.optimizedCacheDir !== undefined ? { optimizedCacheDir: opts.optimizedCacheDir } : {}),
    });
    provider ??= created.provider;
    return created.session;
  };
  /** Creates a part's session; in low memory mode only the UNet's stays (the others were opened
   * once to check their inputs and outputs, and are created again for each call). */
  const open = async (rel: string): Promise<Part> => {
    let part: Part;
    try {
      part = toPart(rel, await create(rel), () => create(rel));
    } catch (err) {
      throw modelError(info, `cannot load ${rel}: ${describeError(err)}`);
    }
    if (memory === 'low' && rel !== UNET_FILE) {
      await part.session?.release();
      part.session = undefined;
    }
    parts.push(part);
    return part;
  };

  try {
    const unetPart = await open(UNET_FILE);
    const textPart = await open('text_encoder/model.onnx');
    const text2Part = tokenizer2 ? await open('text_encoder_2/model.onnx') : undefined;
    const decoderPart = await open('vae_decoder/model.onnx');
    const encoderPart = info.hasVaeEncoder ? await open('vae_encoder/model.onnx') : undefined;
    const model = assemble(info, { unetPart, textPart, decoderPart, encoderPart }, {
      provider: provider ?? 'cpu',
      tokenizer,
      scheduler,
      vaeScalingFactor,
    });
    if (tokenizer2 && text2Part) {
      const release = model.release;
      const holding = model.holding;
      model.sdxl = sdxlText(info, textPart, text2Part, tokenizer2, await readForceZeros(info));
      // SDXL's prompts go through both encoders: holding the text encoder holds encoder 2 as well.
      model.holding = (which, fn) => holding(which, which === 'text' ? () => holdSession(info, text2Part, fn) : fn);
      model.release = async () => {
        await Promise.allSettled([release(), text2Part.session?.release()]);
      };
    }
    return model;
  } catch (err) {
    await Promise.allSettled(parts.map((p) => p.session?.release()));
    throw err instanceof EngineError ? err : modelError(info, describeError(err));
  }
}

/** Runs `fn` with a part that is created per call (low memory mode) created once for all its calls. */
async function holdSession<T>(info: ModelInfo, part: Part, fn: () => Promise<T>): Promise<T> {
  if (part.session) return fn();
  let session: ort.InferenceSession;
  try {
    session = await part.reopen();
  } catch (err) {
    throw modelError(info, `cannot load ${part.rel}: ${describeError(err)}`);
  }
  part.session = session;
  try {
    return await fn();
  } finally {
    part.session = undefined;
    await session.release().catch(() => undefined);
  }
}

async function readForceZeros(info: ModelInfo): Promise<boolean> {
  try {
    const index = JSON.parse(await readFile(path.join(info.dir, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    return index['force_zeros_for_empty_prompt'] !== false;
  } catch {
    return true; // the registry read it already; diffusers' default for SDXL
  }
}

/** A text encoder session fed as it declares: int32 or int64 ids, and the override inputs when it has them. */
interface TextEncoderPart {
  part: Part;
  acceptsEmbeddings: boolean;
  /** Width of the override vectors (the encoder's hidden width). */
  width: number;
  run(ids: Int32Array[], overrides?: TextOverrides): Promise<ort.InferenceSession.ReturnType>;
}

function textEncoderPart(info: ModelInfo, part: Part, fallbackWidth: number): TextEncoderPart {
  const idsMeta = requireInput(info, part, 'input_ids');
  if (idsMeta.type !== 'int32' && idsMeta.type !== 'int64') {
    throw modelError(info, `${part.rel} input_ids is ${idsMeta.type}; expected int32 or int64`);
  }
  const overrideMeta = part.inputs.get('embedding_override');
  const maskMeta = part.inputs.get('override_mask');
  const overrideType = overrideMeta ? checkFloat(info, part, overrideMeta) : undefined;
  const maskType = maskMeta ? checkFloat(info, part, maskMeta) : undefined;
  const declared = overrideMeta?.shape[overrideMeta.shape.length - 1];
  const width = typeof declared === 'number' && declared > 0 ? declared : fallbackWidth;
  return {
    part,
    acceptsEmbeddings: overrideType !== undefined && maskType !== undefined,
    width,
    run(ids, overrides) {
      const batch = ids.length;
      const seq = ids[0]?.length ?? 0;
      let tensor: ort.Tensor;
      if (idsMeta.type === 'int64') {
        const data = new BigInt64Array(batch * seq);
        ids.forEach((row, b) => row.forEach((id, s) => (data[b * seq + s] = BigInt(id))));
        tensor = new ort.Tensor('int64', data, [batch, seq]);
      } else {
        const data = new Int32Array(batch * seq);
        ids.forEach((row, b) => data.set(row, b * seq));
        tensor = new ort.Tensor('int32', data, [batch, seq]);
      }
      const feeds: Record<string, ort.Tensor> = { input_ids: tensor };
      if (overrideType && maskType) {
        // Graphs built with the override inputs always need them: zeros (mask 0) change nothing.
        feeds['embedding_override'] = floatTensor(overrideType, overrides?.vectors ?? new Float32Array(batch * seq * width), [batch, seq, width]);
        feeds['override_mask'] = floatTensor(maskType, overrides?.mask ?? new Float32Array(batch * seq), [batch, seq, 1]);
      } else if (overrides) {
        throw new EngineError('internal', `model "${info.name}": ${part.rel} has no embedding inputs`);
      }
      return run(info, part, feeds);
    },
  };
}

/**
 * The layer before the last, without the final LayerNorm (what SDXL conditions on): the engine's
 * own graphs name it penultimate_hidden_state; Optimum's exports list hidden_states.0 … .N.
 */
function penultimateOutput(info: ModelInfo, part: Part): string {
  if (part.outputs.includes('penultimate_hidden_state')) return 'penultimate_hidden_state';
  const layers = part.outputs.map((n) => /^hidden_states\.(\d+)$/.exec(n)?.[1]).filter((n): n is string => n !== undefined).map(Number);
  if (layers.length < 2) {
    throw modelError(info, `${part.rel} has no penultimate_hidden_state or hidden_states.N outputs (it declares ${part.outputs.join(', ')})`);
  }
  return `hidden_states.${Math.max(...layers) - 1}`;
}

function lastDimOf(part: Part, output: string, fallback: number): number {
  const meta = part.outputMetadata.find((m) => m.name === output);
  const d = meta?.isTensor ? meta.shape[meta.shape.length - 1] : undefined;
  return typeof d === 'number' && d > 0 ? d : fallback;
}

function sdxlText(info: ModelInfo, text1: Part, text2: Part, tokenizer2: ClipTokenizer, forceZerosForEmptyPrompt: boolean): SdxlText {
  const hidden1 = penultimateOutput(info, text1);
  const hidden2 = penultimateOutput(info, text2);
  const pooledOut = pickOutput(info, text2, ['text_embeds']);
  const enc1 = textEncoderPart(info, text1, lastDimOf(text1, hidden1, 768));
  const enc2 = textEncoderPart(info, text2, lastDimOf(text2, hidden2, 1280));
  return {
    tokenizer2,
    forceZerosForEmptyPrompt,
    pooledDim: lastDimOf(text2, pooledOut, 1280),
    widths: [enc1.width, enc2.width],
    acceptsEmbeddings: enc1.acceptsEmbeddings && enc2.acceptsEmbeddings,
    async encode(rows1, rows2, overrides) {
      const [out1, out2] = await Promise.all([enc1.run(rows1, overrides?.[0]), enc2.run(rows2, overrides?.[1])]);
      const a = readFloat(info, text1, out1[hidden1], hidden1);
      const b = readFloat(info, text2, out2[hidden2], hidden2);
      const pooled = readFloat(info, text2, out2[pooledOut], pooledOut);
      // Concatenate per token: [.., D1] ‖ [.., D2].
      const tokens = rows1.length * (rows1[0]?.length ?? 0);
      const d1 = a.length / tokens;
      const d2 = b.length / tokens;
      const hidden = new Float32Array(tokens * (d1 + d2));
      for (let t = 0; t < tokens; t++) {
        hidden.set(a.subarray(t * d1, (t + 1) * d1), t * (d1 + d2));
        hidden.set(b.subarray(t * d2, (t + 1) * d2), t * (d1 + d2) + d1);
      }
      return { hidden, pooled: Float32Array.from(pooled) };
    },
  };
}

function assemble(
  info: ModelInfo,
  p: { unetPart: Part; textPart: Part; decoderPart: Part; encoderPart: Part | undefined },
  base: { provider: ExecutionProviderName; tokenizer: ClipTokenizer; scheduler: SchedulerConfig; vaeScalingFactor: number },
): LoadedModel {
  const { unetPart, textPart, decoderPart, encoderPart } = p;
  const hiddenOut = pickOutput(info, textPart, ['last_hidden_state']);

  const sampleMeta = requireInput(info, unetPart, 'sample');
  const timestepMeta = requireInput(info, unetPart, 'timestep');
  const condMeta = requireInput(info, unetPart, 'encoder_hidden_states');
  const sampleType = checkFloat(info, unetPart, sampleMeta);
  const condType = checkFloat(info, unetPart, condMeta);
  const timestepType = timestepMeta.type;
  if (!['int64', 'int32', 'float32', 'float16', 'float64'].includes(timestepType)) {
    throw modelError(info, `unet/model.onnx timestep is ${timestepType}; expected an integer or float type`);
  }
  const unetOut = pickOutput(info, unetPart, ['out_sample']);
  const declaredDim = condMeta.shape[condMeta.shape.length - 1];
  const declaredTokens = condMeta.shape.length === 3 ? condMeta.shape[1] : undefined;
  const hiddenDim =
    typeof declaredDim === 'number' && declaredDim > 0 ? declaredDim : info.family === 'sd1' ? 768 : info.family === 'sdxl' ? 2048 : 1024;
  const text = textEncoderPart(info, textPart, hiddenDim);
  const textEmbedsMeta = unetPart.inputs.get('text_embeds');
  const timeIdsMeta = unetPart.inputs.get('time_ids');
  const addedTypes =
    textEmbedsMeta && timeIdsMeta ? { textEmbeds: checkFloat(info, unetPart, textEmbedsMeta), timeIds: checkFloat(info, unetPart, timeIdsMeta) } : undefined;

  const latentMeta = requireInput(info, decoderPart, 'latent_sample');
  const latentType = checkFloat(info, decoderPart, latentMeta);
  const imageOut = pickOutput(info, decoderPart, ['sample']);

  const sf = base.vaeScalingFactor;
  let released = false;
  const live = (): void => {
    if (released) throw new EngineError('internal', `model "${info.name}" was released`);
  };

  /** Timestep as declared: rank 0 → scalar; rank 1 → one entry per batch item when the dim is the batch dim, else [1]. */
  const timestepTensor = (t: number, batch: number): ort.Tensor => {
    const shape = timestepMeta.shape;
    let dims: number[] = [];
    if (shape.length >= 1) {
      const d = shape[0];
      const batchDim = sampleMeta.shape[0];
      dims = [typeof d === 'number' && d > 0 ? d : d === batchDim ? batch : 1];
    }
    const n = dims.length === 0 ? 1 : dims[0]!;
    switch (timestepType) {
      case 'int64':
        // numpy astype semantics (what diffusers does): truncate toward zero.
        return new ort.Tensor('int64', new BigInt64Array(n).fill(BigInt(Math.trunc(t))), dims);
      case 'int32':
        return new ort.Tensor('int32', new Int32Array(n).fill(Math.trunc(t)), dims);
      case 'float64':
        return new ort.Tensor('float64', new Float64Array(n).fill(t), dims);
      default:
        return floatTensor(timestepType as 'float32' | 'float16', new Float32Array(n).fill(t), dims);
    }
  };

  // The conditioning (and SDXL's pooled text and time ids) is the same array on every step of a
  // UNet batch; converting it (to float16 bits for half exports) once per batch instead of once
  // per step keeps that off the step loop.
  const condTensor = perArrayTensor(condType);
  const addedTensors = addedTypes && { textEmbeds: perArrayTensor(addedTypes.textEmbeds), timeIds: perArrayTensor(addedTypes.timeIds) };

  // Every denoising step converts the same shapes: reuse the buffers instead of allocating two per step.
  const unetInput = new UnetInput();
  const unetOutput = new ReusedFloats();

  const model: LoadedModel = {
    info,
    ...base,
    hiddenDim,
    acceptsEmbeddings: text.acceptsEmbeddings,
    ...(typeof declaredTokens === 'number' && declaredTokens > 0 ? { fixedConditioningTokens: declaredTokens } : {}),

    async encodeText(ids, overrides) {
      live();
      const out = await text.run(ids, overrides);
      return readFloat(info, textPart, out[hiddenOut], hiddenOut);
    },

    async unet(sample, pictures, latentH, latentW, timestep, cond, { added, guidance, sampleScale = 1 } = {}) {
      live();
      const copies = guidance ? 2 : 1;
      const batch = copies * pictures;
      const dims = [batch, LATENT_CHANNELS, latentH, latentW];
      const data = unetInput.form(sampleType, sample, sampleScale, copies);
      const feeds: Record<string, ort.Tensor> = {
        sample: data instanceof Uint16Array ? new ort.Tensor('float16', data, dims) : new ort.Tensor('float32', data, dims),
        timestep: timestepTensor(timestep, batch),
        encoder_hidden_states: condTensor(cond, [batch, cond.length / (batch * hiddenDim), hiddenDim]),
      };
      if (addedTensors) {
        if (!added) throw new EngineError('internal', `model "${info.name}": the SDXL UNet needs text_embeds and time_ids`);
        feeds['text_embeds'] = addedTensors.textEmbeds(added.textEmbeds, [batch, added.textEmbeds.length / batch]);
        feeds['time_ids'] = addedTensors.timeIds(added.timeIds, [batch, 6]);
      }
      const out = await run(info, unetPart, feeds);
      return guidance
        ? readGuided(info, unetPart, out[unetOut], unetOut, guidance)
        : readFloat(info, unetPart, out[unetOut], unetOut, unetOutput);
    },

    async vaeDecode(latent, batch, latentH, latentW) {
      live();
      const scaled = new Float32Array(latent.length);
      for (let i = 0; i < latent.length; i++) scaled[i] = latent[i]! / sf;
      const out = await run(info, decoderPart, {
        latent_sample: floatTensor(latentType, scaled, [batch, LATENT_CHANNELS, latentH, latentW]),
      });
      return readFloat(info, decoderPart, out[imageOut], imageOut);
    },

    async holding(which, fn) {
      const part = which === 'text' ? textPart : decoderPart;
      if (part.session) return fn();
      live();
      return holdSession(info, part, fn);
    },

    async release() {
      if (released) return;
      released = true;
      const sessions = [unetPart, textPart, decoderPart, encoderPart].filter((x): x is Part => x !== undefined);
      await Promise.allSettled(sessions.map((s) => s.session?.release()));
    },
  };

  if (encoderPart) {
    const imageMeta = requireInput(info, encoderPart, 'sample');
    const imageType = checkFloat(info, encoderPart, imageMeta);
    const latentOut = pickOutput(info, encoderPart, ['latent_parameters', 'latent_sample']);
    model.vaeEncode = async (image, batch, height, width, noise) => {
      live();
      const out = await run(info, encoderPart, { sample: floatTensor(imageType, image, [batch, 3, height, width]) });
      const raw = readFloat(info, encoderPart, out[latentOut], latentOut);
      const plane = (height / 8) * (width / 8);
      const size = batch * LATENT_CHANNELS * plane;
      const latent = new Float32Array(size);
      if (latentOut === 'latent_sample') {
        for (let i = 0; i < size; i++) latent[i] = raw[i]! * sf;
        return latent;
      }
      // latent_parameters = mean ‖ logvar on the channel axis: sample the posterior like diffusers'
      // DiagonalGaussianDistribution (logvar clamped to [-30, 20]).
      if (raw.length !== 2 * size) throw modelError(info, `vae_encoder/model.onnx returned ${raw.length} values; expected ${2 * size}`);
      const z = noise();
      if (z.length !== size) throw new EngineError('internal', `vaeEncode noise has ${z.length} values; expected ${size}`);
      const perItem = LATENT_CHANNELS * plane;
      for (let b = 0; b < batch; b++) {
        const meanBase = b * 2 * perItem;
        for (let i = 0; i < perItem; i++) {
          const logvar = Math.min(20, Math.max(-30, raw[meanBase + perItem + i]!));
          latent[b * perItem + i] = (raw[meanBase + i]! + Math.exp(0.5 * logvar) * z[b * perItem + i]!) * sf;
        }
      }
      return latent;
    };
  }
  return model;
}
