// CLIP's byte-level BPE tokenizer, as Stable Diffusion's text encoders expect it.
// Algorithm (not code) from OpenAI CLIP's simple_tokenizer.py and transformers'
// tokenization_clip.py; see ../shared/notes/engine.md §2.6.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Sequence length every SD text encoder is exported with. */
export const CLIP_SEQUENCE_LENGTH = 77;
/** Room left for prompt tokens between BOS and EOS. */
export const CLIP_MAX_PROMPT_TOKENS = CLIP_SEQUENCE_LENGTH - 2;

const BOS_TOKEN = '<|startoftext|>';
const EOS_TOKEN = '<|endoftext|>';
const END_OF_WORD = '</w>';
/** CLIP uses merges.txt lines 1 … 49152−256−2 (line 0 is the "#version" header). */
const MERGE_COUNT = 49152 - 256 - 2;
/** Bounded so a long-running bot fed arbitrary words cannot grow without limit. */
const BPE_CACHE_LIMIT = 50_000;
/** Longer words are not cached (a few huge keys could hold a lot of memory). */
const CACHE_WORD_MAX = 100;
/**
 * BPE is quadratic in word length: a 20,000-letter "word" takes seconds. Only 75 tokens reach the
 * model, so a word is cut to this many characters before BPE; its kept ids can then differ from
 * the reference tokenizer only for words this long, which are cut off anyway.
 */
const BPE_WORD_MAX = 1000;

/**
 * CLIP's pre-tokenizer pattern without its `<|startoftext|>`/`<|endoftext|>` alternatives: a member
 * typing those strings must not inject special tokens, so they are tokenized as ordinary text.
 */
const WORD_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;

/** Curly quotes become straight ones, as ftfy (which CLIP pipelines run when installed) does. */
const CURLY_QUOTES: Record<string, string> = {
  '\u2018': "'",
  '\u2019': "'",
  '\u201a': "'",
  '\u201b': "'",
  '\u201c': '"',
  '\u201d': '"',
  '\u201e': '"',
  '\u201f': '"',
};

export interface TokenizerTruncation {
  /** The start of the prompt that reached the model (whole words, original spelling). */
  kept: string;
  /** The words that were cut off. */
  dropped: string;
}

export interface EncodedPrompt {
  /** BOS, up to 75 prompt tokens, EOS, then padding: always 77 ids. */
  ids: Int32Array;
  truncation?: TokenizerTruncation;
}

/** GPT-2/CLIP's reversible byte → printable-character map, so BPE can work on strings. */
function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array<string>(256);
  for (const b of printable) table[b] = String.fromCharCode(b);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCharCode(256 + extra++);
  }
  return table;
}

const BYTE_CHARS = bytesToUnicode();
const utf8 = new TextEncoder();

interface Word {
  /** Lowercased text the BPE sees. */
  text: string;
  /** Span in the whitespace-cleaned original (for reporting truncation in the member's spelling). */
  start: number;
  end: number;
}

/**
 * Whitespace cleanup and lowercase, keeping a map from the lowercased string back to the
 * cleaned original: lowercasing can change lengths (e.g. "İ" → "i̇"), and members should see the
 * dropped words as they typed them.
 */
function normalize(text: string): { cleaned: string; lower: string; toCleaned: number[] } {
  let s = text.normalize('NFC').replace(/[\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f]/g, (c) => CURLY_QUOTES[c] ?? c);
  // Control characters other than whitespace carry no meaning in a prompt (format characters such
  // as the zero-width joiner stay: emoji sequences need them).
  s = s.replace(/\p{Cc}/gu, (c) => (/\s/.test(c) ? c : ''));
  const cleaned = s.replace(/\s+/g, ' ').trim();
  let lower = '';
  const toCleaned: number[] = [];
  let i = 0;
  for (const ch of cleaned) {
    const l = ch.toLowerCase();
    for (let k = 0; k < l.length; k++) toCleaned.push(i);
    lower += l;
    i += ch.length;
  }
  toCleaned.push(cleaned.length);
  return { cleaned, lower, toCleaned };
}

function splitWords(text: string): { words: Word[]; cleaned: string } {
  const { cleaned, lower, toCleaned } = normalize(text);
  const words: Word[] = [];
  for (const m of lower.matchAll(WORD_PATTERN)) {
    const startLower = m.index;
    const endLower = startLower + m[0].length;
    words.push({ text: m[0], start: toCleaned[startLower]!, end: toCleaned[endLower]! });
  }
  return { words, cleaned };
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`tokenizer: cannot read ${what} ${path}${code === 'ENOENT' ? ' (file is missing)' : code ? ` (${code})` : ''}`);
  }
}

async function readOptionalJson(path: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const v: unknown = JSON.parse(text);
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through to the error below
  }
  throw new Error(`tokenizer: ${path} is not a valid JSON object`);
}

/** special_tokens_map.json / tokenizer_config.json write a token as "x" or { "content": "x" }. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return undefined;
}

export class ClipTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  private readonly cache = new Map<string, number[]>();

  private constructor(
    private readonly vocab: Map<string, number>,
    private readonly ranks: Map<string, number>,
    ids: { bos: number; eos: number; pad: number },
  ) {
    this.bosId = ids.bos;
    this.eosId = ids.eos;
    this.padId = ids.pad;
  }

  /** Reads vocab.json, merges.txt and (optionally) special_tokens_map.json / tokenizer_config.json. */
  static async load(dir: string): Promise<ClipTokenizer> {
    const vocabPath = join(dir, 'vocab.json');
    const mergesPath = join(dir, 'merges.txt');
    const vocabText = await readText(vocabPath, 'vocabulary');
    const mergesText = await readText(mergesPath, 'merge list');

    let raw: unknown;
    try {
      raw = JSON.parse(vocabText);
    } catch {
      throw new Error(`tokenizer: ${vocabPath} is not valid JSON`);
    }
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`tokenizer: ${vocabPath} is not a token → id object`);
    const vocab = new Map<string, number>();
    for (const [token, id] of Object.entries(raw as Record<string, unknown>)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
        throw new Error(`tokenizer: ${vocabPath} maps ${JSON.stringify(token)} to ${JSON.stringify(id)}, not a token id`);
      }
      vocab.set(token, id);
    }
    for (const b of BYTE_CHARS) {
      if (!vocab.has(b) || !vocab.has(b + END_OF_WORD)) {
        throw new Error(`tokenizer: ${vocabPath} lacks the byte token ${JSON.stringify(b)}; is this a CLIP vocabulary?`);
      }
    }

    const lines = mergesText.split(/\r?\n/);
    const ranks = new Map<string, number>();
    const end = Math.min(lines.length, MERGE_COUNT + 1);
    for (let i = 1; i < end; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      const parts = line.split(' ');
      if (parts.length !== 2) throw new Error(`tokenizer: ${mergesPath} line ${i + 1} is not "a b": ${JSON.stringify(line.slice(0, 40))}`);
      ranks.set(line, i - 1);
    }
    if (ranks.size === 0) throw new Error(`tokenizer: ${mergesPath} holds no merges`);

    const specialPath = join(dir, 'special_tokens_map.json');
    const configPath = join(dir, 'tokenizer_config.json');
    const special = await readOptionalJson(specialPath);
    const config = await readOptionalJson(configPath);
    // SD 2.x folders say pad "!" in special_tokens_map.json but "<|endoftext|>" in
    // tokenizer_config.json; transformers applies the former, and the text encoder was trained so.
    const padToken = tokenContent(special?.pad_token) ?? tokenContent(config?.pad_token) ?? EOS_TOKEN;
    const padSource = special?.pad_token !== undefined ? specialPath : config?.pad_token !== undefined ? configPath : vocabPath;

    const idOf = (token: string, source: string): number => {
      const id = vocab.get(token);
      if (id === undefined) throw new Error(`tokenizer: token ${JSON.stringify(token)} named in ${source} is not in ${vocabPath}`);
      return id;
    };
    return new ClipTokenizer(vocab, ranks, {
      bos: idOf(BOS_TOKEN, vocabPath),
      eos: idOf(EOS_TOKEN, vocabPath),
      pad: idOf(padToken, padSource),
    });
  }

  /** Ids for one pre-tokenized word (cached). */
  private wordIds(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    let mapped = '';
    for (const byte of utf8.encode(word.length > BPE_WORD_MAX ? word.slice(0, BPE_WORD_MAX) : word)) mapped += BYTE_CHARS[byte]!;
    const ids = this.bpe(mapped).map((piece) => {
      const id = this.vocab.get(piece);
      // Unreachable with a real CLIP vocabulary (every merge result is in it); EOS is CLIP's unk.
      return id ?? this.eosId;
    });
    if (word.length <= CACHE_WORD_MAX) {
      if (this.cache.size >= BPE_CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, ids);
    }
    return ids;
  }

  /** Greedy lowest-rank pair merging; the last symbol carries the end-of-word marker. */
  private bpe(mapped: string): string[] {
    const symbols = Array.from(mapped);
    if (symbols.length === 0) return [];
    symbols[symbols.length - 1] += END_OF_WORD;
    while (symbols.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < symbols.length - 1; i++) {
        const rank = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      // Merge every occurrence of this pair, left to right, as the reference implementation does.
      const first = symbols[best]!;
      const second = symbols[best + 1]!;
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; ) {
        if (i < symbols.length - 1 && symbols[i] === first && symbols[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(symbols[i]!);
          i += 1;
        }
      }
      symbols.splice(0, symbols.length, ...merged);
    }
    return symbols;
  }

  /** Prompt tokens without BOS/EOS/padding (for counting and tests). */
  tokenize(text: string): number[] {
    const out: number[] = [];
    for (const w of splitWords(text).words) out.push(...this.wordIds(w.text));
    return out;
  }

  encode(text: string): EncodedPrompt {
    const { words, cleaned } = splitWords(text);
    const ids = new Int32Array(CLIP_SEQUENCE_LENGTH).fill(this.padId);
    ids[0] = this.bosId;
    let n = 0;
    let truncation: TokenizerTruncation | undefined;
    for (let w = 0; w < words.length; w++) {
      const word = words[w]!;
      const wordIds = this.wordIds(word.text);
      const room = CLIP_MAX_PROMPT_TOKENS - n;
      if (wordIds.length > room) {
        // The model still gets the word's first pieces (as every CLIP pipeline does), but the
        // member is told the whole word was cut, since a half word means little to them.
        for (let k = 0; k < room; k++) ids[1 + n++] = wordIds[k]!;
        truncation = { kept: cleaned.slice(0, word.start).trim(), dropped: cleaned.slice(word.start).trim() };
        break;
      }
      for (const id of wordIds) ids[1 + n++] = id;
    }
    ids[1 + n] = this.eosId;
    return truncation ? { ids, truncation } : { ids };
  }
}
