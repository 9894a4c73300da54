// Family detection on headers in the real key layouts (names as the original LDM/SGM checkpoints,
// kohya and PEFT LoRAs and A1111 embeddings write them). No weights are needed for the pure rules;
// the file-level tests write small files whose decisive shapes are real.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectWeights, needsProbe, V_PROBE_TENSOR, type TensorShape } from '../engine/checkpoint/detect.js';
import { detectDiffusersFolder, inspectDiffusersFolder, inspectWeightsFile } from '../engine/checkpoint/inspect.js';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import type { SafetensorsDtype } from '../engine/checkpoint/safetensors.js';

type Layout = Record<string, readonly number[]>;
const header = (layout: Layout, dtype = 'F16'): Map<string, TensorShape> =>
  new Map(Object.entries(layout).map(([k, shape]) => [k, { shape, dtype: k.endsWith('position_ids') ? 'I64' : dtype }]));

const U = 'model.diffusion_model.';
const VAE: Layout = {
  'first_stage_model.decoder.conv_in.weight': [512, 4, 3, 3],
  'first_stage_model.decoder.up.0.block.0.conv1.weight': [128, 256, 3, 3],
  'first_stage_model.encoder.conv_in.weight': [128, 3, 3, 3],
  'first_stage_model.post_quant_conv.weight': [4, 4, 1, 1],
};
const SD1: Layout = {
  [`${U}input_blocks.0.0.weight`]: [320, 4, 3, 3],
  [`${U}input_blocks.1.1.proj_in.weight`]: [320, 320, 1, 1],
  [`${U}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight`]: [320, 768],
  [`${U}output_blocks.11.1.transformer_blocks.0.norm1.bias`]: [320],
  [`${U}time_embed.0.weight`]: [1280, 320],
  'cond_stage_model.transformer.text_model.embeddings.token_embedding.weight': [49408, 768],
  'cond_stage_model.transformer.text_model.embeddings.position_ids': [1, 77],
  'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight': [768, 768],
  'cond_stage_model.transformer.text_model.final_layer_norm.weight': [768],
  ...VAE,
};
const SD2: Layout = {
  [`${U}input_blocks.0.0.weight`]: [320, 4, 3, 3],
  [`${U}input_blocks.1.1.proj_in.weight`]: [320, 320],
  [`${U}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight`]: [320, 1024],
  [`${U}output_blocks.11.1.transformer_blocks.0.norm1.bias`]: [320],
  'cond_stage_model.model.token_embedding.weight': [49408, 1024],
  'cond_stage_model.model.positional_embedding': [77, 1024],
  'cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight': [3072, 1024],
  'cond_stage_model.model.ln_final.weight': [1024],
  ...VAE,
};
const SDXL: Layout = {
  [`${U}input_blocks.0.0.weight`]: [320, 4, 3, 3],
  [`${U}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight`]: [640, 2048],
  [`${U}label_emb.0.0.weight`]: [1280, 2816],
  'conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight': [49408, 768],
  'conditioner.embedders.1.model.token_embedding.weight': [49408, 1280],
  'conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias': [1280],
  'conditioner.embedders.1.model.text_projection': [1280, 1280],
  ...VAE,
};
const REFINER: Layout = {
  [`${U}input_blocks.0.0.weight`]: [384, 4, 3, 3],
  [`${U}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight`]: [768, 1280],
  [`${U}label_emb.0.0.weight`]: [1536, 2560],
  'conditioner.embedders.0.model.token_embedding.weight': [49408, 1280],
  'conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias': [1280],
  ...VAE,
};

describe('checkpoint family from names and shapes', () => {
  it('recognises SD 1.x (OpenAI CLIP, context 768) with its parts and dtype', () => {
    expect(detectWeights(header(SD1))).toMatchObject({
      kind: 'checkpoint',
      family: 'sd1',
      variant: 'txt2img',
      contextDim: 768,
      prediction: 'epsilon',
      predictionSource: 'default',
      nativeSize: 512,
      dtype: 'fp16',
      parts: { unet: true, textEncoders: 1, vae: true },
      supported: true,
    });
    // Older SD 1.x files lack the text_model level in the CLIP names.
    const old = Object.fromEntries(Object.entries(SD1).map(([k, v]) => [k.replace('transformer.text_model.', 'transformer.'), v]));
    expect(detectWeights(header(old))).toMatchObject({ family: 'sd1', parts: { textEncoders: 1 } });
  });

  it('recognises SD 2.x (OpenCLIP, context 1024), also in the SGM layout', () => {
    expect(detectWeights(header(SD2, 'F32'))).toMatchObject({ family: 'sd2', contextDim: 1024, dtype: 'fp32', supported: true });
    const sgm = Object.fromEntries(Object.entries(SD2).map(([k, v]) => [k.replace('cond_stage_model.', 'conditioner.embedders.0.'), v]));
    expect(detectWeights(header(sgm))).toMatchObject({ family: 'sd2', parts: { textEncoders: 1 } });
  });

  it('recognises SDXL base (two encoders, added embedding 2816, context 2048) at 1024²', () => {
    expect(detectWeights(header(SDXL, 'BF16'))).toMatchObject({
      family: 'sdxl',
      contextDim: 2048,
      nativeSize: 1024,
      dtype: 'bf16',
      parts: { textEncoders: 2, vae: true },
      supported: true,
    });
  });

  it('reports the SDXL refiner, inpainting and instruct-pix2pix variants as recognised but unsupported', () => {
    expect(detectWeights(header(REFINER))).toMatchObject({ family: 'sdxl-refiner', supported: false, reason: /refiner/ });
    const inpaint = { ...SD1, [`${U}input_blocks.0.0.weight`]: [320, 9, 3, 3] };
    expect(detectWeights(header(inpaint))).toMatchObject({ family: 'sd1', variant: 'inpainting', supported: false, reason: /9 input channels/ });
    const sdxlInpaint = { ...SDXL, [`${U}input_blocks.0.0.weight`]: [320, 9, 3, 3] };
    expect(detectWeights(header(sdxlInpaint))).toMatchObject({ family: 'sdxl', variant: 'inpainting', supported: false });
    const p2p = { ...SD1, [`${U}input_blocks.0.0.weight`]: [320, 8, 3, 3] };
    expect(detectWeights(header(p2p))).toMatchObject({ variant: 'instruct-pix2pix', supported: false });
  });

  it('notices a checkpoint without its VAE, and refuses a UNet-only file', () => {
    const noVae = Object.fromEntries(Object.entries(SD1).filter(([k]) => !k.startsWith('first_stage_model.')));
    expect(detectWeights(header(noVae))).toMatchObject({ parts: { vae: false }, supported: true });
    const unetOnly = Object.fromEntries(Object.entries(SD1).filter(([k]) => k.startsWith(U)));
    expect(detectWeights(header(unetOnly))).toMatchObject({ supported: false, reason: /no text encoder/ });
  });

  it('reports what it cannot recognise, with the reason', () => {
    const odd = { ...SD1, [`${U}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight`]: [320, 4096] };
    expect(detectWeights(header(odd))).toMatchObject({ kind: 'unknown', reason: /4096-wide cross-attention/ });
    expect(detectWeights(header({ 'model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight': [4608, 1536] }))).toMatchObject({
      kind: 'unknown',
      reason: /Stable Diffusion 3/,
    });
    expect(detectWeights(header({ 'double_blocks.0.img_attn.qkv.weight': [9216, 3072] }))).toMatchObject({ reason: /Flux/ });
    expect(detectWeights(header({ 'foo.bar': [1], 'baz': [2] }))).toMatchObject({ kind: 'unknown', reason: /foo\.bar, baz/ });
    expect(detectWeights(header({}))).toMatchObject({ kind: 'unknown', reason: /no tensors/ });
    expect(detectWeights(header({ 'conv_in.weight': [320, 4, 3, 3], 'down_blocks.0.resnets.0.conv1.weight': [320, 320, 3, 3] }))).toMatchObject({
      reason: /diffusers-layout UNet/,
    });
  });
});

describe('prediction type (ε / v) rules', () => {
  it('1. modelspec metadata decides first', () => {
    expect(detectWeights(header(SD2), { metadata: { 'modelspec.prediction_type': 'v' } })).toMatchObject({
      prediction: 'v',
      predictionSource: 'metadata',
      nativeSize: 768,
    });
    expect(detectWeights(header(SDXL), { metadata: { 'modelspec.prediction_type': 'epsilon' } })).toMatchObject({ prediction: 'epsilon' });
  });

  it('2. a sidecar .yaml with parameterization "v" (A1111 convention)', () => {
    const yaml = 'model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    parameterization: "v"\n';
    expect(detectWeights(header(SD2), { sidecarYaml: yaml })).toMatchObject({ prediction: 'v', predictionSource: 'sidecar-yaml' });
    expect(detectWeights(header(SD2), { sidecarYaml: 'model:\n  params:\n    linear_start: 0.00085\n' })).toMatchObject({
      prediction: 'epsilon',
      predictionSource: 'sidecar-yaml',
    });
  });

  it('3. a v_pred marker tensor (SDXL v-prediction fine-tunes)', () => {
    expect(detectWeights(header({ ...SDXL, v_pred: [] }))).toMatchObject({ prediction: 'v', predictionSource: 'v_pred-key' });
  });

  it('4. SD 2.x only: the norm1.bias spread, read on demand', () => {
    const h = header(SD2);
    expect(needsProbe(h)).toBe(true);
    expect(needsProbe(header(SD1))).toBe(false);
    expect(needsProbe(h, { metadata: { 'modelspec.prediction_type': 'v' } })).toBe(false);
    const wide = Float32Array.from({ length: 320 }, (_, i) => (i % 2 ? 0.2 : -0.2));
    const narrow = Float32Array.from({ length: 320 }, (_, i) => (i % 2 ? 0.05 : -0.05));
    expect(detectWeights(h, { probe: wide })).toMatchObject({ prediction: 'v', predictionSource: 'norm-bias-heuristic', nativeSize: 768 });
    expect(detectWeights(h, { probe: narrow })).toMatchObject({ prediction: 'epsilon', nativeSize: 512 });
    // SD 2.x inpainting models are ε whatever the spread.
    const inpaint = header({ ...SD2, [`${U}input_blocks.0.0.weight`]: [320, 9, 3, 3] });
    expect(detectWeights(inpaint, { probe: wide })).toMatchObject({ prediction: 'epsilon' });
  });
});

describe('VAE, LoRA and embedding files', () => {
  it('recognises VAE-only files and their layout', () => {
    const ldm = Object.fromEntries(Object.entries(VAE).map(([k, v]) => [k.replace('first_stage_model.', ''), v]));
    expect(detectWeights(header(ldm, 'F32'))).toMatchObject({ kind: 'vae', layout: 'ldm', latentChannels: 4, supported: true });
    expect(detectWeights(header(VAE))).toMatchObject({ kind: 'vae', layout: 'ldm' });
    const diffusers = { 'decoder.conv_in.weight': [512, 4, 3, 3], 'decoder.up_blocks.0.resnets.0.conv1.weight': [512, 512, 3, 3] };
    expect(detectWeights(header(diffusers))).toMatchObject({ kind: 'vae', layout: 'diffusers', supported: false });
    expect(detectWeights(header({ 'decoder.conv_in.weight': [512, 16, 3, 3] }))).toMatchObject({ kind: 'vae', supported: false, reason: /16-channel/ });
  });

  it('recognises kohya LoRAs and their family (SD1 diffusers-style names, SDXL LDM-style names)', () => {
    const sd1 = {
      'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight': [8, 768],
      'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight': [320, 8],
      'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha': [],
      'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': [8, 768],
    };
    expect(detectWeights(header(sd1))).toMatchObject({ kind: 'lora', layout: 'kohya', family: 'sd1', parts: { unet: true, textEncoder: true } });
    const sdxl = {
      'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight': [16, 2048],
      'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight': [640, 16],
      'lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': [16, 1280],
    };
    expect(detectWeights(header(sdxl))).toMatchObject({ kind: 'lora', family: 'sdxl' });
    const sd2te = { 'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': [4, 1024] };
    expect(detectWeights(header(sd2te))).toMatchObject({ family: 'sd2', parts: { unet: false, textEncoder: true } });
    const loha = { 'lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a': [320, 4], 'lora_unet_down_blocks_0_attentions_0_proj_in.alpha': [] };
    expect(detectWeights(header(loha))).toMatchObject({ kind: 'lora', layout: 'lycoris', supported: false });
  });

  it('recognises PEFT and older diffusers LoRAs', () => {
    const peft = {
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight': [4, 1024],
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight': [320, 4],
    };
    expect(detectWeights(header(peft))).toMatchObject({ kind: 'lora', layout: 'peft', family: 'sd2', parts: { unet: true, textEncoder: false } });
    const old = {
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight': [4, 768],
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.up.weight': [320, 4],
    };
    expect(detectWeights(header(old))).toMatchObject({ kind: 'lora', layout: 'diffusers' });
  });

  it('recognises textual-inversion embeddings and their width', () => {
    expect(detectWeights(header({ emb_params: [8, 768] }))).toMatchObject({ kind: 'embedding', layout: 'a1111', family: 'sd1', vectors: 8 });
    expect(detectWeights(header({ emb_params: [2, 1024] }))).toMatchObject({ family: 'sd2', vectors: 2 });
    expect(detectWeights(header({ 'string_to_param.*': [3, 768] }))).toMatchObject({ kind: 'embedding', vectors: 3 });
    expect(detectWeights(header({ clip_l: [4, 768], clip_g: [4, 1280] }))).toMatchObject({ layout: 'sdxl', family: 'sdxl', vectors: 4, supported: true });
    expect(detectWeights(header({ clip_l: [4, 768], clip_g: [3, 1280] }))).toMatchObject({ supported: false });
    expect(detectWeights(header({ emb_params: [8, 512] }))).toMatchObject({ kind: 'embedding', supported: false, reason: /512 wide/ });
  });
});

describe('inspecting files and folders', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ckpt-detect-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Writes `layout` with small stand-ins for the huge tensors detection does not size-check. */
  async function write(name: string, layout: Layout, values: Record<string, Float32Array> = {}, metadata?: Record<string, string>) {
    const small = (k: string, s: readonly number[]) => (k.includes('token_embedding') || k.includes('positional') ? [4, s[1]!] : s);
    const file = path.join(dir, name);
    await writeSafetensors(
      file,
      Object.entries(layout).map(([k, s]) => {
        const shape = small(k, s);
        const dtype: SafetensorsDtype = 'F32';
        const n = shape.reduce((a, b) => a * b, 1);
        return { name: k, dtype, shape, data: () => bytesOf(values[k] ?? new Float32Array(n)) };
      }),
      metadata,
    );
    return file;
  }

  it('reads an SD 2.x file\'s probe tensor only when nothing else decides', async () => {
    const wide = Float32Array.from({ length: 320 }, (_, i) => (i % 2 ? 0.3 : -0.3));
    const file = await write('sd2v.safetensors', SD2, { [V_PROBE_TENSOR]: wide });
    expect(await inspectWeightsFile(file)).toMatchObject({ family: 'sd2', prediction: 'v', predictionSource: 'norm-bias-heuristic' });
    await writeFile(path.join(dir, 'sd2v.yaml'), 'model:\n  params:\n    parameterization: eps\n');
    expect(await inspectWeightsFile(file)).toMatchObject({ prediction: 'epsilon', predictionSource: 'sidecar-yaml' });
    const meta = await write('sd2meta.safetensors', SD2, { [V_PROBE_TENSOR]: wide }, { 'modelspec.prediction_type': 'epsilon' });
    expect(await inspectWeightsFile(meta)).toMatchObject({ prediction: 'epsilon', predictionSource: 'metadata' });
  });

  it('refuses a pickle before looking at names', async () => {
    const file = path.join(dir, 'model.ckpt');
    await writeFile(file, Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
    await expect(inspectWeightsFile(file)).rejects.toMatchObject({ reason: 'pickle' });
  });

  it('reads a diffusers folder: family from unet/config.json, prediction from the scheduler config', async () => {
    const folder = path.join(dir, 'my-sdxl');
    await mkdir(path.join(folder, 'unet'), { recursive: true });
    await mkdir(path.join(folder, 'scheduler'), { recursive: true });
    await writeFile(path.join(folder, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionXLPipeline' }));
    await writeFile(
      path.join(folder, 'unet', 'config.json'),
      JSON.stringify({ cross_attention_dim: 2048, addition_embed_type: 'text_time', in_channels: 4, sample_size: 128 }),
    );
    await writeFile(path.join(folder, 'scheduler', 'scheduler_config.json'), JSON.stringify({ prediction_type: 'v_prediction' }));
    await writeFile(path.join(folder, 'unet', 'diffusion_pytorch_model.fp16.safetensors'), '');
    expect(await inspectDiffusersFolder(folder)).toMatchObject({
      kind: 'diffusers',
      family: 'sdxl',
      prediction: 'v',
      nativeSize: 1024,
      unetWeights: path.join('unet', 'diffusion_pytorch_model.fp16.safetensors'),
    });
    expect(await inspectDiffusersFolder(dir)).toBeUndefined();
  });

  it('refuses a diffusers folder whose UNet is only a pickle, or whose config matches nothing', () => {
    const sd1 = { cross_attention_dim: 768, in_channels: 4 };
    expect(() => detectDiffusersFolder({ unetConfig: sd1, unetFiles: ['config.json', 'diffusion_pytorch_model.bin'] }, 'f')).toThrow(/pickle/);
    expect(() =>
      detectDiffusersFolder({ unetConfig: { cross_attention_dim: 4096 }, unetFiles: ['diffusion_pytorch_model.safetensors'] }, 'f'),
    ).toThrow(/matches no/);
    expect(detectDiffusersFolder({ unetConfig: sd1, unetFiles: ['diffusion_pytorch_model.safetensors'] }, 'f')).toMatchObject({
      family: 'sd1',
      prediction: 'epsilon',
      predictionSource: 'default',
      nativeSize: 512,
    });
  });
});
