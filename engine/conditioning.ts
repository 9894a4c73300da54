// Prompt and negative prompt → the UNet's `encoder_hidden_states`, the way AUTOMATIC1111 builds
// them: the prompt language (emphasis, BREAK, embedding trigger words, `<lora:…>` tags removed) is
// parsed, every 75-token chunk is encoded on its own, weighted ("Original" emphasis) and the chunks
// are concatenated; the shorter of prompt and negative is padded with the empty prompt's chunk so
// both share one UNet batch. Nothing is cut until `maxChunks`; only then is a truncation reported.
//
// The text encoder is reached through `PromptEncoder`, so a model with a second encoder (SDXL)
// runs the same chunks through each and joins the results along the width; its pooled text is
// taken from each prompt's first chunk, as A1111 does.
import type { EncoderSlot, TextualInversion } from './checkpoint/embeddings.js';
import { embeddingOverride } from './checkpoint/embeddings.js';
import {
  applyEmphasis,
  CHUNK_LENGTH,
  encodeChunks,
  padToLength,
  parsePrompt,
  type Conditioning,
  type ParsedPrompt,
  type PromptChunk,
  type PromptTokenizer,
} from './prompt/index.js';
import type { TextOverrides } from './model.js';
import { EngineError, type PromptTruncation } from './types.js';

/**
 * Chunks a prompt may use before the rest is cut (75 tokens each). A1111 sets no limit; ours guards
 * the bot against a pasted essay while leaving every real prompt whole: the long quality-tag
 * prompts and negative-prompt lists in common use stay within 300 tokens. Each chunk costs two
 * more text-encoder rows once per job and widens the UNet's cross-attention by 77 keys: at 8
 * chunks SD 1.5's UNet does 22.8 GMAC more per call at 512², 6.7 % of its 339 GMAC (README,
 * Measuring: `npm run bench:prompt`).
 */
export const DEFAULT_MAX_PROMPT_CHUNKS = 8;

/** One encoder whose hidden states the conditioning holds: the embedding vector set it takes, and its width. */
export interface EncoderPart {
  slot: EncoderSlot;
  width: number;
}

/** The text encoder(s) as the conditioning needs them. */
export interface PromptEncoder {
  /** One 'text' part for SD 1.x/2.x; SDXL's 'clip_l' (768) and 'clip_g' (1280), side by side. */
  parts: readonly EncoderPart[];
  /** False for exports without the override inputs: a prompt naming an embedding is refused. */
  acceptsEmbeddings: boolean;
  /** Rows of 77 ids → hidden states [rows × 77 × Σ width] (`overrides`: one per part), and for
   * SDXL each row's pooled text [rows × P]. */
  encode(ids: Int32Array[], overrides?: readonly TextOverrides[]): Promise<{ hidden: Float32Array; pooled?: Float32Array }>;
}

export interface ConditioningOptions {
  tokenizer: PromptTokenizer;
  encoder: PromptEncoder;
  /** Under guidance the negative prompt is encoded too, as the batch's first half. */
  guidance: boolean;
  maxChunks: number;
  /** The UNet takes exactly this many chunks (an export with a fixed sequence length): fewer
   * are padded with the empty prompt's chunk, more are cut and reported. */
  fixedChunks?: number;
  /** Usable embeddings by trigger word. */
  embeddings?: ReadonlyMap<string, TextualInversion>;
  /** Embeddings that could not be loaded for this model, by trigger word → why. */
  refusedEmbeddings?: ReadonlyMap<string, string>;
  /** The model's name, for the one-line refusals. */
  modelName: string;
}

export interface PromptConditioning {
  /** [negative, prompt] under guidance, [prompt] without; each `tokens × width`. */
  hidden: Float32Array;
  /** SDXL: the pooled text of each prompt's first chunk, in the same [negative, prompt] order. */
  pooled?: Float32Array;
  tokens: number;
  width: number;
  truncation: { prompt?: PromptTruncation; negativePrompt?: PromptTruncation };
  /** Embeddings the prompt or negative used, in order of first use. */
  embeddingsUsed: string[];
}

/**
 * Encodes the prompt (and, under guidance, the negative prompt) for the UNet. All chunks go
 * through the text encoder in one call, so a plain prompt of up to 75 tokens runs exactly the
 * [negative, prompt] batch of two rows it always did and draws the same bits.
 */
export async function encodePrompts(prompt: string, negativePrompt: string, options: ConditioningOptions): Promise<PromptConditioning> {
  const { tokenizer, encoder } = options;
  const embeddings = options.embeddings ?? new Map<string, TextualInversion>();
  const chunkOptions = {
    embeddings: [...embeddings.values()].map((e) => ({ name: e.name, vectors: e.vectors })),
    maxChunks: options.fixedChunks ?? options.maxChunks,
  };
  const cond = parsePrompt(prompt, tokenizer, chunkOptions);
  const uncond = options.guidance ? parsePrompt(negativePrompt, tokenizer, chunkOptions) : undefined;
  const parsed = uncond ? [uncond, cond] : [cond];
  refuseUnusable(parsed, [prompt, ...(options.guidance ? [negativePrompt] : [])], options);

  const tokens = (options.fixedChunks ?? Math.max(...parsed.map((p) => p.chunks.length))) * CHUNK_LENGTH;
  const needsPadding = parsed.some((p) => p.chunks.length * CHUNK_LENGTH < tokens);
  const empty = needsPadding ? parsePrompt('', tokenizer).chunks[0]! : undefined;

  // One encoder call over every chunk of both prompts (and the empty chunk when padding needs it).
  const rows: PromptChunk[] = [...parsed.flatMap((p) => p.chunks), ...(empty ? [empty] : [])];
  const width = encoder.parts.reduce((sum, p) => sum + p.width, 0);
  const overrides = rows.some((r) => r.embeddings.length > 0) ? encoder.parts.map((part) => rowOverrides(rows, embeddings, part)) : undefined;
  const encoded = await encoder.encode(
    rows.map((r) => r.ids),
    overrides,
  );
  const states = encoded.hidden;
  const rowSize = CHUNK_LENGTH * width;
  if (states.length !== rows.length * rowSize) {
    throw new EngineError('model', `model "${options.modelName}": the text encoder returned ${states.length} values for ${rows.length} chunks of ${CHUNK_LENGTH}×${width}`);
  }
  const slices = new Map<PromptChunk, Float32Array>(rows.map((r, i) => [r, states.subarray(i * rowSize, (i + 1) * rowSize)]));
  const emptyChunk = empty ? slices.get(empty)! : undefined;

  const hidden = new Float32Array(parsed.length * tokens * width);
  for (const [i, p] of parsed.entries()) {
    // A1111 weights each encoder's states on their own (SDXL: CLIP-L and bigG each restore their
    // own mean), so with two parts the emphasis runs per part.
    let c =
      encoder.parts.length === 1
        ? await encodeChunks(p.chunks, width, (chunk) => Promise.resolve(slices.get(chunk)!))
        : perPartConditioning(p.chunks, slices, encoder.parts, width);
    if (emptyChunk) c = padToLength(c, tokens, emptyChunk);
    hidden.set(c.hidden, i * tokens * width);
  }

  let pooled: Float32Array | undefined;
  if (encoded.pooled) {
    const size = encoded.pooled.length / rows.length;
    pooled = new Float32Array(parsed.length * size);
    parsed.forEach((p, i) => {
      const row = rows.indexOf(p.chunks[0]!);
      pooled!.set(encoded.pooled!.subarray(row * size, (row + 1) * size), i * size);
    });
  }

  const truncation: PromptConditioning['truncation'] = {};
  if (cond.truncation) truncation.prompt = toTruncation(cond);
  if (uncond?.truncation) truncation.negativePrompt = toTruncation(uncond);
  const embeddingsUsed = [...new Set(parsed.flatMap((p) => p.embeddingsUsed))];
  return { hidden, ...(pooled ? { pooled } : {}), tokens, width, truncation, embeddingsUsed };
}

/** encodeChunks for side-by-side encoders: each chunk weighted per part, chunks concatenated. */
function perPartConditioning(chunks: readonly PromptChunk[], slices: ReadonlyMap<PromptChunk, Float32Array>, parts: readonly EncoderPart[], width: number): Conditioning {
  const hidden = new Float32Array(chunks.length * CHUNK_LENGTH * width);
  chunks.forEach((chunk, i) => hidden.set(emphasisPerPart(slices.get(chunk)!, chunk.multipliers, parts), i * CHUNK_LENGTH * width));
  return { hidden, tokens: chunks.length * CHUNK_LENGTH, width };
}

/** A1111's emphasis on each part's channels of a [77, Σ width] chunk separately. */
export function emphasisPerPart(z: Float32Array, multipliers: Float32Array, parts: readonly EncoderPart[]): Float32Array {
  const width = parts.reduce((sum, p) => sum + p.width, 0);
  const positions = multipliers.length;
  const out = new Float32Array(z.length);
  let offset = 0;
  for (const part of parts) {
    const piece = new Float32Array(positions * part.width);
    for (let t = 0; t < positions; t++) piece.set(z.subarray(t * width + offset, t * width + offset + part.width), t * part.width);
    const weighted = applyEmphasis(piece, multipliers, part.width);
    for (let t = 0; t < positions; t++) out.set(weighted.subarray(t * part.width, (t + 1) * part.width), t * width + offset);
    offset += part.width;
  }
  return out;
}

/** A member's one-line answer for trigger words this model cannot honour. */
function refuseUnusable(parsed: ParsedPrompt[], texts: string[], options: ConditioningOptions): void {
  const used = [...new Set(parsed.flatMap((p) => p.embeddingsUsed))];
  if (used.length > 0 && !options.encoder.acceptsEmbeddings) {
    throw new EngineError(
      'bad_request',
      `model "${options.modelName}" is an ONNX export whose text encoder cannot take embeddings, so ${quoteList(used)} cannot be used with it; remove the word or pick a model made from a checkpoint`,
    );
  }
  for (const [name, reason] of options.refusedEmbeddings ?? []) {
    if (texts.some((t) => mentions(t, name))) throw new EngineError('bad_request', reason);
  }
}

/** Whether `text` holds `word` as a whole word, case-insensitively (CLIP lowercases everything). */
export function mentions(text: string, word: string): boolean {
  const escaped = word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\p{L}\\p{N}_])${escaped}($|[^\\p{L}\\p{N}_])`, 'iu').test(text);
}

function quoteList(names: readonly string[]): string {
  return names.map((n) => `"${n}"`).join(', ');
}

/** One encoder's override inputs for every row: vectors where a row's chunk placed an embedding. */
function rowOverrides(rows: readonly PromptChunk[], embeddings: ReadonlyMap<string, TextualInversion>, encoder: EncoderPart): TextOverrides {
  const width = encoder.width;
  const vectors = new Float32Array(rows.length * CHUNK_LENGTH * width);
  const mask = new Float32Array(rows.length * CHUNK_LENGTH);
  rows.forEach((row, i) => {
    if (row.embeddings.length === 0) return;
    const one = embeddingOverride(row, embeddings, encoder.slot, width);
    vectors.set(one.override, i * CHUNK_LENGTH * width);
    mask.set(one.mask, i * CHUNK_LENGTH);
  });
  return { vectors, mask };
}

function toTruncation(p: ParsedPrompt): PromptTruncation {
  const t = p.truncation!;
  return { dropped: t.droppedFrom, tokenLimit: t.keptChunks * (CHUNK_LENGTH - 2) };
}
