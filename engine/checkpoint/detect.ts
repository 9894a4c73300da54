// Tells what a .safetensors file holds from its tensor names and shapes alone — never from the
// file name, which members choose freely ("realistic_v6_FINAL.safetensors" says nothing). The
// rules are pure functions over a header so they can be tested with headers only.
//
// Markers (original LDM / SGM layouts, as every single-file checkpoint on model sites uses):
//   UNet            model.diffusion_model.*  — input_blocks.0.0.weight [ch, in, 3, 3] gives the
//                   input channels (4 plain, 9 inpainting, 8 instruct-pix2pix); any attn2.to_k
//                   weight [ch, ctx] gives the cross-attention context width; label_emb.0.0.weight
//                   [*, adm] exists only on SDXL-style UNets (adm 2816 base, 2560 refiner).
//   SD 1.x          cond_stage_model.transformer.(text_model.)* (OpenAI CLIP ViT-L, HF layout), ctx 768
//   SD 2.x          cond_stage_model.model.* (OpenCLIP ViT-H), ctx 1024; the SGM layout of the same
//                   model puts it under conditioner.embedders.0.model.*
//   SDXL base       conditioner.embedders.0.transformer.* (CLIP-L) + conditioner.embedders.1.model.*
//                   (OpenCLIP bigG), ctx 2048
//   SDXL refiner    conditioner.embedders.0.model.* (bigG only), ctx 1280
//   VAE             first_stage_model.*; a VAE-only file has encoder.*/decoder.* at the top level
//
// Prediction type (ε or v) is not visible in a UNet's shapes. The rule, in order:
//   1. the file's own metadata: `modelspec.prediction_type` (Stability's ModelSpec) — "v…" or "epsilon";
//   2. a sidecar `<same name>.yaml` (AUTOMATIC1111's convention): `parameterization: "v"` means v,
//      a sidecar without it means ε;
//   3. a `v_pred` tensor in the file (ComfyUI's marker for v-prediction SDXL fine-tunes);
//   4. SD 2.x non-inpainting only: ComfyUI's weight heuristic — the population standard deviation
//      of model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias above 0.09 means
//      v (768-v models), otherwise ε (512-base). It reads one 320-value tensor (`probe`);
//   5. otherwise ε.

export type Family = 'sd1' | 'sd2' | 'sdxl';
export type Prediction = 'epsilon' | 'v';
export type StoredDtype = 'fp32' | 'fp16' | 'bf16' | 'mixed';

/** What detection needs of a tensor: its shape (dtype for reporting). */
export interface TensorShape {
  readonly shape: readonly number[];
  readonly dtype?: string;
}
export type TensorShapes = ReadonlyMap<string, TensorShape>;

interface Verdict {
  /** False when the engine recognises the file but cannot use it (yet); `reason` says why. */
  supported: boolean;
  reason?: string;
}

export interface CheckpointInfo extends Verdict {
  kind: 'checkpoint';
  family: Family | 'sdxl-refiner' | 'sd2-unclip';
  variant: 'txt2img' | 'inpainting' | 'instruct-pix2pix';
  unetInChannels: number;
  contextDim: number;
  prediction: Prediction;
  /** Which rule decided `prediction` (see the list at the top of this file). */
  predictionSource: 'metadata' | 'sidecar-yaml' | 'v_pred-key' | 'norm-bias-heuristic' | 'default';
  nativeSize: number;
  dtype: StoredDtype;
  /** Parts present in the file; a checkpoint without its VAE needs a separate VAE file. */
  parts: { unet: boolean; textEncoders: number; vae: boolean };
}

export interface VaeInfo extends Verdict {
  kind: 'vae';
  layout: 'ldm' | 'diffusers';
  latentChannels: number;
  dtype: StoredDtype;
}

export interface LoraInfo extends Verdict {
  kind: 'lora';
  layout: 'kohya' | 'peft' | 'diffusers' | 'lycoris';
  /** The family the LoRA was trained for, from its cross-attention or text-encoder widths. */
  family: Family | 'unknown';
  parts: { unet: boolean; textEncoder: boolean };
}

export interface EmbeddingInfo extends Verdict {
  kind: 'embedding';
  layout: 'a1111' | 'sdxl';
  family: Family | 'unknown';
  vectors: number;
}

export interface Unrecognised extends Verdict {
  kind: 'unknown';
  supported: false;
  reason: string;
}

export type Detection = CheckpointInfo | VaeInfo | LoraInfo | EmbeddingInfo | Unrecognised;

export interface DetectOptions {
  /** The file's `__metadata__`. */
  metadata?: Readonly<Record<string, string>>;
  /** Text of a sidecar `<name>.yaml`, when one sits next to the file. */
  sidecarYaml?: string;
  /** Values of V_PROBE_TENSOR, for rule 4 (read only when `needsProbe` says so). */
  probe?: Float32Array;
}

const UNET = 'model.diffusion_model.';
export const V_PROBE_TENSOR = `${UNET}output_blocks.11.1.transformer_blocks.0.norm1.bias`;
const V_PROBE_STD = 0.09;

const CLIP_L_SD1 = ['cond_stage_model.transformer.text_model.', 'cond_stage_model.transformer.'];
const OPENCLIP_SD2 = ['cond_stage_model.model.', 'conditioner.embedders.0.model.'];
const CLIP_L_SDXL = 'conditioner.embedders.0.transformer.';
const OPENCLIP_G_SDXL = 'conditioner.embedders.1.model.';

function anyKeyStartsWith(tensors: TensorShapes, prefix: string): boolean {
  for (const k of tensors.keys()) if (k.startsWith(prefix)) return true;
  return false;
}

function firstMatch(tensors: TensorShapes, pattern: RegExp): TensorShape | undefined {
  for (const [k, t] of tensors) if (pattern.test(k)) return t;
  return undefined;
}

/** The dtype most weights under `prefix` are stored in ('mixed' when no dtype holds 90 %). */
export function storedDtype(tensors: TensorShapes, prefix = ''): StoredDtype {
  const counts = new Map<string, number>();
  let total = 0;
  for (const [k, t] of tensors) {
    if (!k.startsWith(prefix) || t.dtype === undefined) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    counts.set(t.dtype, (counts.get(t.dtype) ?? 0) + n);
    total += n;
  }
  for (const [dtype, n] of counts) {
    if (n >= 0.9 * total) {
      if (dtype === 'F16') return 'fp16';
      if (dtype === 'BF16') return 'bf16';
      if (dtype === 'F32') return 'fp32';
    }
  }
  return 'mixed';
}

function populationStd(values: Float32Array): number {
  let mean = 0;
  for (const v of values) mean += v;
  mean /= values.length || 1;
  let sq = 0;
  for (const v of values) sq += (v - mean) ** 2;
  return Math.sqrt(sq / (values.length || 1));
}

/** True when rule 4 applies and its tensor has not been supplied: read V_PROBE_TENSOR and detect again. */
export function needsProbe(tensors: TensorShapes, options: DetectOptions = {}): boolean {
  const d = detectWeights(tensors, options);
  return d.kind === 'checkpoint' && d.family === 'sd2' && d.predictionSource === 'default' && tensors.has(V_PROBE_TENSOR) && options.probe === undefined;
}

function decidePrediction(
  tensors: TensorShapes,
  family: CheckpointInfo['family'],
  inChannels: number,
  options: DetectOptions,
): Pick<CheckpointInfo, 'prediction' | 'predictionSource'> {
  const spec = options.metadata?.['modelspec.prediction_type'];
  if (spec !== undefined && spec.trim() !== '') {
    return { prediction: spec.trim().toLowerCase().startsWith('v') ? 'v' : 'epsilon', predictionSource: 'metadata' };
  }
  if (options.sidecarYaml !== undefined) {
    const v = /^\s*parameterization\s*:\s*["']?v["']?\s*(#.*)?$/m.test(options.sidecarYaml);
    return { prediction: v ? 'v' : 'epsilon', predictionSource: 'sidecar-yaml' };
  }
  if (tensors.has('v_pred')) return { prediction: 'v', predictionSource: 'v_pred-key' };
  if (family === 'sd2' && inChannels === 4 && options.probe !== undefined) {
    const v = populationStd(options.probe) > V_PROBE_STD;
    return { prediction: v ? 'v' : 'epsilon', predictionSource: 'norm-bias-heuristic' };
  }
  return { prediction: 'epsilon', predictionSource: 'default' };
}

function detectCheckpoint(tensors: TensorShapes, options: DetectOptions): CheckpointInfo | Unrecognised {
  const convIn = tensors.get(`${UNET}input_blocks.0.0.weight`);
  if (convIn === undefined || convIn.shape.length !== 4) {
    return unknown('it has model.diffusion_model.* tensors but no input_blocks.0.0.weight convolution, so it is not a Stable Diffusion UNet');
  }
  const inChannels = convIn.shape[1]!;
  const toK = firstMatch(tensors, /^model\.diffusion_model\..*\.attn2\.to_k\.weight$/);
  if (toK === undefined || toK.shape.length !== 2) {
    return unknown('its UNet has no cross-attention (attn2.to_k) weights, so it is not a text-to-image Stable Diffusion UNet');
  }
  const contextDim = toK.shape[1]!;
  const admIn = tensors.get(`${UNET}label_emb.0.0.weight`)?.shape[1];

  const hasSd1Clip = CLIP_L_SD1.some((p) => tensors.has(`${p}embeddings.token_embedding.weight`));
  const hasSd2Clip = OPENCLIP_SD2.some((p) => tensors.has(`${p}token_embedding.weight`));
  const hasSdxlClips =
    tensors.has(`${CLIP_L_SDXL}text_model.embeddings.token_embedding.weight`) && tensors.has(`${OPENCLIP_G_SDXL}token_embedding.weight`);
  const vae = anyKeyStartsWith(tensors, 'first_stage_model.decoder.');

  let family: CheckpointInfo['family'];
  let textEncoders = 0;
  if (contextDim === 768 && admIn === undefined) {
    family = 'sd1';
    textEncoders = hasSd1Clip ? 1 : 0;
  } else if (contextDim === 1024 && admIn === undefined) {
    family = 'sd2';
    textEncoders = hasSd2Clip ? 1 : 0;
  } else if (contextDim === 1024 && admIn !== undefined) {
    family = 'sd2-unclip';
  } else if (contextDim === 2048 && admIn === 2816) {
    family = 'sdxl';
    textEncoders = hasSdxlClips ? 2 : 0;
  } else if (contextDim === 1280 && admIn === 2560) {
    family = 'sdxl-refiner';
    textEncoders = tensors.has(`${OPENCLIP_SD2[1]}token_embedding.weight`) ? 1 : 0;
  } else {
    return unknown(
      `its UNet has a ${contextDim}-wide cross-attention${admIn === undefined ? '' : ` and a ${admIn}-wide added embedding`}, ` +
        'which matches no Stable Diffusion 1.x (768), 2.x (1024) or SDXL (2048 + 2816) model',
    );
  }

  const variant: CheckpointInfo['variant'] = inChannels === 9 ? 'inpainting' : inChannels === 8 ? 'instruct-pix2pix' : 'txt2img';
  const prediction = decidePrediction(tensors, family, inChannels, options);
  const nativeSize = family === 'sdxl' || family === 'sdxl-refiner' ? 1024 : family === 'sd2' && prediction.prediction === 'v' ? 768 : 512;
  const info: CheckpointInfo = {
    kind: 'checkpoint',
    family,
    variant,
    unetInChannels: inChannels,
    contextDim,
    ...prediction,
    nativeSize,
    dtype: storedDtype(tensors, UNET),
    parts: { unet: true, textEncoders, vae },
    supported: true,
  };
  const refuse = (reason: string): CheckpointInfo => ({ ...info, supported: false, reason });
  if (family === 'sdxl-refiner') {
    return refuse('it is an SDXL refiner, which only finishes another model\'s pictures; the engine has no refiner stage');
  }
  if (family === 'sd2-unclip') return refuse('it is an SD 2.x unCLIP (image-variation) model, which the engine does not run');
  if (variant === 'inpainting') return refuse('it is an inpainting model (9 input channels); the engine has no inpainting yet');
  if (variant === 'instruct-pix2pix') return refuse('it is an instruct-pix2pix model (8 input channels), which the engine does not run');
  if (inChannels !== 4) return refuse(`its UNet takes ${inChannels} input channels; text-to-image models take 4`);
  if (textEncoders === 0) return refuse('it has no text encoder weights (a UNet-only file); the engine needs a whole checkpoint');
  return info;
}

function detectVae(tensors: TensorShapes): VaeInfo | Unrecognised {
  const prefix = tensors.has('decoder.conv_in.weight') ? '' : 'first_stage_model.';
  const convIn = tensors.get(`${prefix}decoder.conv_in.weight`);
  if (convIn === undefined || convIn.shape.length !== 4) return unknown('it has encoder/decoder tensors but no decoder.conv_in convolution');
  const layout = anyKeyStartsWith(tensors, `${prefix}decoder.up_blocks.`) ? 'diffusers' : 'ldm';
  const latentChannels = convIn.shape[1]!;
  const info: VaeInfo = { kind: 'vae', layout, latentChannels, dtype: storedDtype(tensors), supported: true };
  if (latentChannels !== 4) {
    return { ...info, supported: false, reason: `it is a ${latentChannels}-channel VAE (SD3/Flux style); Stable Diffusion 1.x/2.x/SDXL use 4` };
  }
  if (layout === 'diffusers') return { ...info, supported: false, reason: 'diffusers-layout VAE files are not mapped yet; use the original (LDM) layout file' };
  return info;
}

const LORA_KOHYA = /^lora_(unet|te\d?)_/;
const LYCORIS_SUFFIX = /\.(hada_w1_a|hada_w2_a|lokr_w1|lokr_w1_a|oft_blocks|oft_diag|dora_scale)$/;

function detectLora(tensors: TensorShapes): LoraInfo | undefined {
  const keys = [...tensors.keys()];
  const kohya = keys.some((k) => LORA_KOHYA.test(k));
  const peft = keys.some((k) => /\.lora_[AB]\.weight$/.test(k));
  const diffusers = keys.some((k) => /(\.lora\.(up|down)\.weight|_lora\.(up|down)\.weight)$/.test(k));
  if (!kohya && !peft && !diffusers) return undefined;

  const unetPart = keys.some((k) => k.startsWith('lora_unet_') || k.startsWith('unet.'));
  const tePart = keys.some((k) => /^lora_te\d?_/.test(k) || /^text_encoder(_2)?\./.test(k));
  // The input width of the cross-attention key projection is the model's context width.
  const toKDown = firstMatch(tensors, /attn2[._]to_k(\.lora_down\.weight|\.lora_A\.weight|\.lora\.down\.weight|_lora\.down\.weight)$/);
  const teDown = firstMatch(tensors, /(lora_te1?_|text_encoder\.).*q_proj(\.lora_down\.weight|\.lora_A\.weight|\.lora\.down\.weight)$/);
  const sdxlTe2 = keys.some((k) => k.startsWith('lora_te2_') || k.startsWith('text_encoder_2.'));
  let family: LoraInfo['family'] = 'unknown';
  const ctx = toKDown?.shape[1];
  if (ctx === 2048 || sdxlTe2) family = 'sdxl';
  else if (ctx === 1024) family = 'sd2';
  else if (ctx === 768) family = 'sd1';
  else if (teDown?.shape[1] === 768) family = 'sd1';
  else if (teDown?.shape[1] === 1024) family = 'sd2';

  const layout: LoraInfo['layout'] = keys.some((k) => LYCORIS_SUFFIX.test(k)) ? 'lycoris' : kohya ? 'kohya' : peft ? 'peft' : 'diffusers';
  const info: LoraInfo = { kind: 'lora', layout, family, parts: { unet: unetPart, textEncoder: tePart }, supported: true };
  if (layout === 'lycoris') return { ...info, supported: false, reason: 'it is a LyCORIS (LoHa/LoKr/OFT/DoRA) network; only plain LoRA is supported' };
  if (family === 'unknown') return { ...info, supported: false, reason: 'its layer widths match no Stable Diffusion family' };
  return info;
}

function embeddingFamily(width: number | undefined): Family | 'unknown' {
  return width === 768 ? 'sd1' : width === 1024 ? 'sd2' : 'unknown';
}

function detectEmbedding(tensors: TensorShapes): EmbeddingInfo | undefined {
  const clipL = tensors.get('clip_l');
  const clipG = tensors.get('clip_g');
  if (clipL !== undefined || clipG !== undefined) {
    const vectors = clipL?.shape.length === 2 ? clipL.shape[0]! : 1;
    const ok = clipL?.shape.at(-1) === 768 && clipG?.shape.at(-1) === 1280 && (clipG.shape.length === 2 ? clipG.shape[0] : 1) === vectors;
    const info: EmbeddingInfo = { kind: 'embedding', layout: 'sdxl', family: 'sdxl', vectors, supported: true };
    return ok ? info : { ...info, supported: false, reason: 'an SDXL embedding needs clip_l [n, 768] and clip_g [n, 1280] with the same n' };
  }
  let vectorsTensor = tensors.get('emb_params');
  if (vectorsTensor === undefined) {
    const keys = [...tensors.keys()].filter((k) => k.startsWith('string_to_param.'));
    if (keys.length === 1) vectorsTensor = tensors.get(keys[0]!);
  }
  if (vectorsTensor === undefined || tensors.size > 2) return undefined;
  const { shape } = vectorsTensor;
  const vectors = shape.length === 2 ? shape[0]! : 1;
  const family = embeddingFamily(shape.at(-1));
  const info: EmbeddingInfo = { kind: 'embedding', layout: 'a1111', family, vectors, supported: true };
  if (family === 'unknown') {
    return { ...info, supported: false, reason: `its vectors are ${shape.at(-1)} wide, which matches no text encoder (768 for SD 1.x, 1024 for SD 2.x)` };
  }
  return info;
}

function unknown(reason: string): Unrecognised {
  return { kind: 'unknown', supported: false, reason };
}

/** Classifies a weights file from its tensor names and shapes (plus the hints in `options`). */
export function detectWeights(tensors: TensorShapes, options: DetectOptions = {}): Detection {
  if (tensors.size === 0) return unknown('it holds no tensors');
  const embedding = detectEmbedding(tensors);
  if (embedding !== undefined) return embedding;
  const lora = detectLora(tensors);
  if (lora !== undefined) return lora;
  if (anyKeyStartsWith(tensors, UNET)) {
    if (anyKeyStartsWith(tensors, `${UNET}joint_blocks.`)) return unknown('it is a Stable Diffusion 3 checkpoint, which the engine does not run');
    if (anyKeyStartsWith(tensors, `${UNET}double_blocks.`)) return unknown('it is a Flux checkpoint, which the engine does not run');
    return detectCheckpoint(tensors, options);
  }
  if (anyKeyStartsWith(tensors, 'double_blocks.')) return unknown('it is a Flux model, which the engine does not run');
  if (tensors.has('decoder.conv_in.weight') || (tensors.has('first_stage_model.decoder.conv_in.weight') && !anyKeyStartsWith(tensors, 'cond_stage_model.'))) {
    return detectVae(tensors);
  }
  if (tensors.has('conv_in.weight') && anyKeyStartsWith(tensors, 'down_blocks.')) {
    return unknown('it holds diffusers-layout UNet weights only; put it in a diffusers folder (unet/diffusion_pytorch_model.safetensors with its config.json) or use the single-file checkpoint');
  }
  if (anyKeyStartsWith(tensors, 'control_model.') || anyKeyStartsWith(tensors, 'controlnet_')) {
    return unknown('it is a ControlNet, which the engine does not run');
  }
  if (anyKeyStartsWith(tensors, 'text_model.') || anyKeyStartsWith(tensors, 'transformer.resblocks.')) {
    return unknown('it holds a text encoder only, not a whole checkpoint');
  }
  const sample = [...tensors.keys()].slice(0, 3).join(', ');
  return unknown(`its tensor names (${sample}, …) match no Stable Diffusion checkpoint, VAE, LoRA or embedding layout`);
}
