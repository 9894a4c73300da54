// Where each part's weights sit in an original (LDM/SGM) single-file checkpoint, as name
// functions from the graph builders' canonical names to the file's names.
import { CheckpointError } from './errors.js';
import { prefixedSource, type TensorReader, type WeightSource } from '../onnx-build/weights.js';

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
