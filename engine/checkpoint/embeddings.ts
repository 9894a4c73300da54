// Textual-inversion embeddings: A1111's .safetensors (`emb_params`, or one `string_to_param.*`
// tensor; [n, width] or [width]) and SDXL's two-part form (`clip_l` [n, 768] + `clip_g`
// [n, 1280]). The file name is the trigger word; `.pt`/`.bin` pickles are refused by the pickle
// guard. The vectors reach the text encoder through the graph's embedding override inputs
// (onnx-build/clip-text.ts, `embeddingOverride`), at the positions the prompt chunker reserved.
import { basename, extname } from 'node:path';
import type { EmbeddingPlacement, PromptChunk } from '../prompt/chunks.js';
import { detectWeights, type Family } from './detect.js';
import { CheckpointError } from './errors.js';
import { openWeightsFile } from './pickle-guard.js';

/** The text encoder a vector set is for: SD 1.x/2.x have one; SDXL's first is CLIP-L, its second bigG. */
export type EncoderSlot = 'text' | 'clip_l' | 'clip_g';

export interface TextualInversion {
  /** The trigger word: the file name without extension. */
  name: string;
  family: Family;
  vectors: number;
  /** [vectors × width] per encoder. */
  parts: Partial<Record<EncoderSlot, { width: number; data: Float32Array }>>;
}

const FAMILY_NAME: Record<Family, string> = { sd1: 'SD 1.x', sd2: 'SD 2.x', sdxl: 'SDXL' };
const WIDTH: Record<Family, string> = { sd1: '768', sd2: '1024', sdxl: '768 + 1280' };

export const embeddingName = (path: string): string => basename(path, extname(path));

export interface LoadEmbeddingOptions {
  /**
   * The width of the model's text encoder (SD 1.x/2.x). Vectors must have exactly this width; one
   * that matches no family's standard width is then accepted too (reduced-width test models).
   */
  width?: number;
}

/** Reads an embedding file for a model of `modelFamily`; refuses, naming the embedding, what does not fit. */
export async function loadEmbedding(path: string, modelFamily: Family, options: LoadEmbeddingOptions = {}): Promise<TextualInversion> {
  const name = embeddingName(path);
  const file = await openWeightsFile(path).catch((err: unknown) => {
    throw err instanceof CheckpointError ? new CheckpointError(err.reason, `Embedding "${name}": ${err.message}`) : err;
  });
  try {
    const tensors = file.header.tensors;
    const info = detectWeights(tensors);
    if (info.kind !== 'embedding') throw new CheckpointError('not-weights', `Embedding "${name}" is not a textual-inversion embedding file.`);
    const vectorsName = tensors.has('emb_params') ? 'emb_params' : [...tensors.keys()].find((k) => k.startsWith('string_to_param.'));
    const width = vectorsName === undefined ? undefined : tensors.get(vectorsName)!.shape.at(-1);
    // With the model's width known, the width decides (the family a width suggests does not matter).
    if (info.layout === 'a1111' && options.width !== undefined && modelFamily !== 'sdxl') {
      if (width !== options.width) {
        const what = info.family === 'unknown' ? `${String(width)}-wide vectors` : `${WIDTH[info.family]}-wide vectors (${FAMILY_NAME[info.family]})`;
        throw new CheckpointError('unsupported-family', `Embedding "${name}" has ${what}; this model's text encoder takes ${options.width} (${FAMILY_NAME[modelFamily]}).`);
      }
    } else if (!info.supported) throw new CheckpointError('unsupported-family', `Embedding "${name}" cannot be used: ${info.reason ?? 'unsupported'}.`);
    else if (info.family !== modelFamily) {
      const what = info.family === 'unknown' ? 'vectors of no known width' : `${WIDTH[info.family]}-wide vectors (${FAMILY_NAME[info.family]})`;
      throw new CheckpointError(
        'unsupported-family',
        `Embedding "${name}" has ${what}; this model's text encoder takes ${WIDTH[modelFamily]} (${FAMILY_NAME[modelFamily]}).`,
      );
    }
    const read = async (tensor: string) => {
      const shape = tensors.get(tensor)!.shape;
      return { width: shape.at(-1)!, data: await file.readFloat32(tensor) };
    };
    const parts: TextualInversion['parts'] = {};
    if (info.layout === 'sdxl') {
      parts.clip_l = await read('clip_l');
      parts.clip_g = await read('clip_g');
    } else {
      parts.text = await read(vectorsName!);
    }
    return { name, family: info.family === 'unknown' ? modelFamily : info.family, vectors: info.vectors, parts };
  } finally {
    await file.close();
  }
}

/**
 * The text encoder's `embedding_override` [77 × width] and `override_mask` [77] for one chunk
 * (batch 1): the embedding's vectors at the positions the chunker reserved, mask 1 there.
 */
export function embeddingOverride(
  chunk: Pick<PromptChunk, 'ids' | 'embeddings'>,
  embeddings: ReadonlyMap<string, TextualInversion>,
  slot: EncoderSlot,
  width: number,
): { override: Float32Array; mask: Float32Array } {
  const positions = chunk.ids.length;
  const override = new Float32Array(positions * width);
  const mask = new Float32Array(positions);
  const place = (p: EmbeddingPlacement) => {
    const part = embeddings.get(p.name)?.parts[slot];
    if (part === undefined || part.width !== width) throw new Error(`embedding "${p.name}" has no ${width}-wide vectors for the ${slot} encoder`);
    const n = Math.min(p.vectors, positions - p.position);
    override.set(part.data.subarray(0, n * width), p.position * width);
    mask.fill(1, p.position, p.position + n);
  };
  chunk.embeddings.forEach(place);
  return { override, mask };
}
