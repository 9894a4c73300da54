// Where each part's weights sit in an original (LDM/SGM) single-file checkpoint, as name
// functions from the graph builders' canonical names to the file's names.
import { CheckpointError } from './errors.js';
import { prefixedSource, transpose2d, type TensorReader, type WeightSource } from '../onnx-build/weights.js';

/** Prefixes of OpenAI CLIP ViT-L in the HF layout, newest first (older SD 1.x files lack `text_model.`). */
const CLIP_L_PREFIXES = [
  'cond_stage_model.transformer.text_model.',
  'cond_stage_model.transformer.',
  'conditioner.embedders.0.transformer.text_model.',
];

/**
 * The CLIP-L text encoder of an SD 1.x checkpoint (or SDXL's first encoder), under the names of
 * HF's CLIPTextModel without `text_model.` — what buildClipTextGraph reads.
 */
export function clipLTextEncoderWeights(file: TensorReader, label = 'the checkpoint'): WeightSource {
  const prefix = CLIP_L_PREFIXES.find((p) => file.header.tensors.has(`${p}embeddings.token_embedding.weight`));
  if (prefix === undefined) {
    throw new CheckpointError('missing-tensor', `${label} has no CLIP text encoder (no *.embeddings.token_embedding.weight).`);
  }
  return prefixedSource(file, prefix);
}

/** The KL-VAE of a checkpoint (first_stage_model.*) or of a VAE-only file (top level), under LDM names. */
export function vaeWeights(file: TensorReader, label = 'the checkpoint'): WeightSource {
  const prefix = ['first_stage_model.', ''].find((p) => file.header.tensors.has(`${p}decoder.conv_in.weight`));
  if (prefix === undefined) throw new CheckpointError('missing-tensor', `${label} has no VAE decoder (no decoder.conv_in.weight).`);
  return prefixedSource(file, prefix);
}

/** The UNet of a checkpoint (model.diffusion_model.*), under LDM names. */
export function unetWeights(file: TensorReader, label = 'the checkpoint'): WeightSource {
  if (!file.header.tensors.has('model.diffusion_model.input_blocks.0.0.weight')) {
    throw new CheckpointError('missing-tensor', `${label} has no UNet (no model.diffusion_model.input_blocks.0.0.weight).`);
  }
  return prefixedSource(file, 'model.diffusion_model.');
}

/** Prefixes of OpenCLIP text towers: SD 2.x ViT-H (LDM and SGM layouts), SDXL's bigG. */
export const OPENCLIP_PREFIXES = {
  sd2: ['cond_stage_model.model.', 'conditioner.embedders.0.model.'],
  sdxl: ['conditioner.embedders.1.model.'],
} as const;

const OPENCLIP_LAYER = /^encoder\.layers\.(\d+)\.(.+)$/;
const QKV = { q_proj: 0, k_proj: 1, v_proj: 2 } as const;

/**
 * An OpenCLIP text tower (transformer.resblocks.N.*, fused attn.in_proj_weight, mlp.c_fc/c_proj,
 * positional_embedding, ln_final, text_projection [D, P]) seen under the HF CLIP names the graph
 * builder reads: q/k/v are row blocks of in_proj, and text_projection becomes a Linear [P, D].
 */
export function openClipTextEncoderWeights(file: TensorReader, family: keyof typeof OPENCLIP_PREFIXES, label = 'the checkpoint'): WeightSource {
  const tensors = file.header.tensors;
  const prefix = OPENCLIP_PREFIXES[family].find((p) => tensors.has(`${p}token_embedding.weight`));
  if (prefix === undefined) {
    throw new CheckpointError('missing-tensor', `${label} has no OpenCLIP text encoder (no *.model.token_embedding.weight).`);
  }
  type Mapped = { name: string; shape: readonly number[]; read: () => Promise<Float32Array> };
  const plain = (name: string): Mapped | undefined => {
    const t = tensors.get(prefix + name);
    return t === undefined ? undefined : { name, shape: t.shape, read: () => file.readFloat32(prefix + name) };
  };
  const resolve = (canonical: string): Mapped | undefined => {
    if (canonical === 'embeddings.token_embedding.weight') return plain('token_embedding.weight');
    if (canonical === 'embeddings.position_embedding.weight') return plain('positional_embedding');
    if (canonical.startsWith('final_layer_norm.')) return plain(canonical.replace('final_layer_norm.', 'ln_final.'));
    if (canonical === 'text_projection.weight') {
      const t = plain('text_projection');
      if (t === undefined || t.shape.length !== 2) return undefined;
      const [d, p] = t.shape as [number, number];
      return { ...t, shape: [p, d], read: async () => transpose2d(await t.read(), d, p) };
    }
    const m = OPENCLIP_LAYER.exec(canonical);
    if (m === null) return undefined;
    const block = `transformer.resblocks.${m[1]}.`;
    const [part, leaf] = [m[2]!.slice(0, m[2]!.lastIndexOf('.')), m[2]!.slice(m[2]!.lastIndexOf('.') + 1)];
    const qkv = /^self_attn\.(q_proj|k_proj|v_proj)$/.exec(part);
    if (qkv !== null) {
      const fused = plain(`${block}attn.in_proj_${leaf}`);
      if (fused === undefined) return undefined;
      const rows = fused.shape[0]! / 3;
      const index = QKV[qkv[1] as keyof typeof QKV];
      const width = fused.shape.length === 2 ? fused.shape[1]! : 1;
      return {
        ...fused,
        shape: fused.shape.length === 2 ? [rows, width] : [rows],
        read: async () => (await fused.read()).slice(index * rows * width, (index + 1) * rows * width),
      };
    }
    const renamed = { 'self_attn.out_proj': 'attn.out_proj', layer_norm1: 'ln_1', layer_norm2: 'ln_2', 'mlp.fc1': 'mlp.c_fc', 'mlp.fc2': 'mlp.c_proj' }[part];
    return renamed === undefined ? undefined : plain(`${block}${renamed}.${leaf}`);
  };
  return {
    shape: (name) => resolve(name)?.shape,
    float32: async (name) => {
      const t = resolve(name);
      if (t === undefined) throw new CheckpointError('missing-tensor', `${label} has no OpenCLIP tensor for "${name}".`);
      return t.read();
    },
  };
}
