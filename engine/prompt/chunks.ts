// Prompt pieces → 77-token chunks, the way A1111's sd_hijack_clip.tokenize_line builds them
// (behaviour, not code): 75 prompt tokens per chunk between BOS and EOS, padded with EOS; BREAK
// closes the current chunk; when a chunk is full and the last comma is at most
// `commaBacktrack` tokens back, the tokens after that comma move to the next chunk; an embedding's
// trigger words become as many placeholder positions as it has vectors, never split across chunks.
// Each chunk is encoded on its own and the hidden states are concatenated, so nothing is cut until
// the chunk limit; only then is a truncation reported.
import type { AttentionPiece } from './attention.js';

export const CHUNK_TOKENS = 75;
export const CHUNK_LENGTH = CHUNK_TOKENS + 2;
/** A1111's default for "comma padding backtrack". */
export const DEFAULT_COMMA_BACKTRACK = 20;

/** What the chunker needs from a CLIP tokenizer (engine/tokenizer.ts's ClipTokenizer has it). */
export interface PromptTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  /** SD 1.x pads with EOS; SD 2.x's OpenCLIP with "!" (0), placed after the first EOS. */
  readonly padId: number;
  tokenize(text: string): number[];
}

/** An embedding the prompt can name: its trigger's token ids and how many vectors it has. */
export interface PromptEmbedding {
  name: string;
  vectors: number;
}

/** Where an embedding's vectors replace the token embeddings inside one chunk. */
export interface EmbeddingPlacement {
  name: string;
  /** Position in the chunk's 77 ids (BOS is position 0). */
  position: number;
  vectors: number;
}

export interface PromptChunk {
  /** 77 ids: BOS, 75 prompt/padding ids, EOS (padding after the first EOS is `padId`). */
  ids: Int32Array;
  /** One weight per id; 1 for BOS, EOS and padding. */
  multipliers: Float32Array;
  embeddings: EmbeddingPlacement[];
}

export interface ChunkTruncation {
  /** Chunks the model was given. */
  keptChunks: number;
  /** Prompt tokens beyond the limit (embedding vectors count one each). */
  droppedTokens: number;
  /** The prompt text from the piece where cutting began (as parsed, brackets removed). */
  droppedFrom: string;
}

export interface ChunkedPrompt {
  chunks: PromptChunk[];
  /** A1111's token count (what its UI shows as "n/75"): full chunks count 75, the last its length. */
  tokenCount: number;
  /** Names of the embeddings the prompt used, in order of first use. */
  embeddingsUsed: string[];
  truncation?: ChunkTruncation;
}

export interface ChunkOptions {
  embeddings?: readonly PromptEmbedding[];
  commaBacktrack?: number;
  /** Chunks beyond this are cut and reported (default: no limit). */
  maxChunks?: number;
}

interface Slot {
  id: number;
  weight: number;
  /** Set on the first placeholder of an embedding. */
  embedding?: PromptEmbedding;
  piece: number;
  /** Index of the slot's token among its piece's tokens (for naming where a cut starts). */
  at: number;
}

interface TriggerEntry {
  ids: number[];
  embedding: PromptEmbedding;
}

/** Trigger token sequences by first token, longest first (A1111 matches the longest). */
function triggerTable(tokenizer: PromptTokenizer, embeddings: readonly PromptEmbedding[]): Map<number, TriggerEntry[]> {
  const table = new Map<number, TriggerEntry[]>();
  for (const embedding of embeddings) {
    const ids = tokenizer.tokenize(embedding.name);
    if (ids.length === 0) continue;
    const list = table.get(ids[0]!) ?? [];
    list.push({ ids, embedding });
    list.sort((a, b) => b.ids.length - a.ids.length);
    table.set(ids[0]!, list);
  }
  return table;
}

function triggerAt(table: Map<number, TriggerEntry[]>, tokens: number[], at: number): TriggerEntry | undefined {
  for (const entry of table.get(tokens[at]!) ?? []) {
    if (entry.ids.every((id, k) => tokens[at + k] === id)) return entry;
  }
  return undefined;
}

export function chunkPrompt(pieces: readonly AttentionPiece[], tokenizer: PromptTokenizer, options: ChunkOptions = {}): ChunkedPrompt {
  const backtrack = options.commaBacktrack ?? DEFAULT_COMMA_BACKTRACK;
  const commaIds = tokenizer.tokenize(',');
  const comma = commaIds.length === 1 ? commaIds[0] : undefined;
  const triggers = triggerTable(tokenizer, options.embeddings ?? []);

  const closed: Slot[][] = [];
  let chunk: Slot[] = [];
  let tokenCount = 0;
  let lastComma = -1;
  const nextChunk = (isLast = false) => {
    tokenCount += isLast ? chunk.length : CHUNK_TOKENS;
    closed.push(chunk);
    chunk = [];
    lastComma = -1;
  };

  pieces.forEach((piece, pieceIndex) => {
    if (piece.break) {
      nextChunk();
      return;
    }
    const tokens = tokenizer.tokenize(piece.text);
    let position = 0;
    while (position < tokens.length) {
      const token = tokens[position]!;
      if (token === comma) lastComma = chunk.length;
      else if (backtrack !== 0 && chunk.length === CHUNK_TOKENS && lastComma !== -1 && chunk.length - lastComma <= backtrack) {
        const moved = chunk.slice(lastComma + 1);
        chunk = chunk.slice(0, lastComma + 1);
        nextChunk();
        chunk = moved;
      }
      if (chunk.length === CHUNK_TOKENS) nextChunk();

      const trigger = triggerAt(triggers, tokens, position);
      if (!trigger) {
        chunk.push({ id: token, weight: piece.weight, piece: pieceIndex, at: position });
        position++;
        continue;
      }
      const n = trigger.embedding.vectors;
      if (chunk.length + n > CHUNK_TOKENS) nextChunk();
      for (let k = 0; k < n; k++) {
        chunk.push({ id: 0, weight: piece.weight, piece: pieceIndex, at: position, ...(k === 0 ? { embedding: trigger.embedding } : {}) });
      }
      position += trigger.ids.length;
    }
  });
  if (chunk.length > 0 || closed.length === 0) nextChunk(true);

  let kept = closed;
  let truncation: ChunkTruncation | undefined;
  const limit = options.maxChunks;
  if (limit !== undefined && closed.length > limit) {
    kept = closed.slice(0, Math.max(0, limit));
    const cut = closed.slice(kept.length);
    const firstCut = cut.flat()[0];
    const droppedTokens = cut.reduce((n, c) => n + c.length, 0);
    // A chunk closed by BREAK may be empty; then nothing of the text is lost.
    if (droppedTokens > 0 && firstCut) {
      truncation = {
        keptChunks: kept.length,
        droppedTokens,
        droppedFrom: [cutWithin(pieces[firstCut.piece]!.text, firstCut.at, tokenizer), ...pieces.slice(firstCut.piece + 1).map((p) => (p.break ? ' BREAK ' : p.text))]
          .join('')
          .trim(),
      };
    }
  }

  const embeddingsUsed: string[] = [];
  const chunks = kept.map((slots) => toChunk(slots, tokenizer, embeddingsUsed));
  return truncation ? { chunks, tokenCount, embeddingsUsed, truncation } : { chunks, tokenCount, embeddingsUsed };
}

/**
 * The text of a piece from the whitespace-separated word that holds its token `at` on: the longest
 * word prefix with at most `at` tokens is kept (token counts only grow with more words, so a
 * binary search finds it). A word cut in half is reported whole, as the member typed it.
 */
function cutWithin(text: string, at: number, tokenizer: PromptTokenizer): string {
  const starts = [...text.matchAll(/\S+/g)].map((m) => m.index);
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (tokenizer.tokenize(text.slice(0, starts[mid])).length <= at) lo = mid;
    else hi = mid - 1;
  }
  return starts.length === 0 ? text : text.slice(starts[lo]);
}

function toChunk(slots: readonly Slot[], tokenizer: PromptTokenizer, used: string[]): PromptChunk {
  const ids = new Int32Array(CHUNK_LENGTH).fill(tokenizer.eosId);
  const multipliers = new Float32Array(CHUNK_LENGTH).fill(1);
  const embeddings: EmbeddingPlacement[] = [];
  ids[0] = tokenizer.bosId;
  slots.forEach((slot, i) => {
    ids[i + 1] = slot.id;
    multipliers[i + 1] = slot.weight;
    if (slot.embedding) {
      embeddings.push({ name: slot.embedding.name, position: i + 1, vectors: slot.embedding.vectors });
      if (!used.includes(slot.embedding.name)) used.push(slot.embedding.name);
    }
  });
  if (tokenizer.padId !== tokenizer.eosId) {
    const firstEos = ids.indexOf(tokenizer.eosId);
    ids.fill(tokenizer.padId, firstEos + 1);
  }
  return { ids, multipliers, embeddings };
}
