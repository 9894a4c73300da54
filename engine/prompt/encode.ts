// Chunks → conditioning: each chunk goes through the text encoder on its own, gets its emphasis,
// and the results are concatenated along the sequence ([chunks × 77, width]), as A1111 does.
import { applyEmphasis } from './emphasis.js';
import { CHUNK_LENGTH, type PromptChunk } from './chunks.js';

/** Runs the text encoder on one chunk and returns its [77, width] hidden states. */
export type ChunkEncoder = (chunk: PromptChunk) => Promise<Float32Array>;

export interface Conditioning {
  /** [tokens, width] row-major, tokens = chunks × 77. */
  hidden: Float32Array;
  tokens: number;
  width: number;
}

export async function encodeChunks(chunks: readonly PromptChunk[], width: number, encode: ChunkEncoder): Promise<Conditioning> {
  const hidden = new Float32Array(chunks.length * CHUNK_LENGTH * width);
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i]!;
    const z = await encode(chunk);
    hidden.set(applyEmphasis(z, chunk.multipliers, width), i * CHUNK_LENGTH * width);
  }
  return { hidden, tokens: chunks.length * CHUNK_LENGTH, width };
}

/**
 * Prompt and negative prompt must have the same length to share a UNet batch. The shorter one is
 * extended with the encoding of the empty prompt, repeated: A1111 with its "Pad prompt/negative
 * prompt" option on. With it off (A1111's default) A1111 runs the two halves as separate UNet
 * calls at their own lengths instead; the extra keys of the padding shift the cross-attention a
 * little, so where the lengths differ the two settings draw slightly different pictures.
 */
export function padToLength(c: Conditioning, tokens: number, emptyChunk: Float32Array): Conditioning {
  if (c.tokens >= tokens) return c;
  if ((tokens - c.tokens) % CHUNK_LENGTH !== 0 || emptyChunk.length !== CHUNK_LENGTH * c.width) {
    throw new Error(`cannot pad ${c.tokens} tokens to ${tokens} with ${emptyChunk.length / c.width}-token chunks`);
  }
  const hidden = new Float32Array(tokens * c.width);
  hidden.set(c.hidden);
  for (let t = c.tokens; t < tokens; t += CHUNK_LENGTH) hidden.set(emptyChunk, t * c.width);
  return { hidden, tokens, width: c.width };
}
