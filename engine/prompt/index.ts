// The A1111 prompt language: extra-network tags, emphasis, BREAK, embeddings, 75-token chunks.
// Pure functions; the pipeline supplies the tokenizer and a chunk encoder.
import { parsePromptAttention } from './attention.js';
import { chunkPrompt, type ChunkOptions, type ChunkedPrompt, type PromptTokenizer } from './chunks.js';
import { extractExtraNetworks, type ExtraNetworks } from './extra-networks.js';

export * from './attention.js';
export * from './chunks.js';
export * from './emphasis.js';
export * from './encode.js';
export * from './extra-networks.js';

export interface ParsedPrompt extends ChunkedPrompt {
  networks: ExtraNetworks;
}

/** One prompt (or negative prompt), from the text a member typed to chunks ready to encode. */
export function parsePrompt(prompt: string, tokenizer: PromptTokenizer, options: ChunkOptions = {}): ParsedPrompt {
  const networks = extractExtraNetworks(prompt);
  const chunked = chunkPrompt(parsePromptAttention(networks.text), tokenizer, options);
  return { ...chunked, networks };
}
