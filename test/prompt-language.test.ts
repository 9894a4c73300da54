import { describe, expect, it, beforeAll } from 'vitest';
import {
  applyEmphasis,
  chunkPrompt,
  encodeChunks,
  extractExtraNetworks,
  padToLength,
  parsePrompt,
  parsePromptAttention,
  type AttentionPiece,
  type PromptTokenizer,
} from '../engine/prompt/index.js';
import { ClipTokenizer } from '../engine/tokenizer.js';
import { hasSharedTokenizer, sharedTokenizerDir } from './helpers/shared-fixtures.js';

const plain = (pieces: AttentionPiece[]) => pieces.map((p) => [p.text, p.weight] as const);

describe('parsePromptAttention: A1111 prompt_parser doctests', () => {
  it('normal text', () => {
    expect(plain(parsePromptAttention('normal text'))).toEqual([['normal text', 1]]);
  });
  it('an (important) word', () => {
    expect(plain(parsePromptAttention('an (important) word'))).toEqual([
      ['an ', 1],
      ['important', 1.1],
      [' word', 1],
    ]);
  });
  it('(unbalanced) applies to the end', () => {
    expect(plain(parsePromptAttention('(unbalanced'))).toEqual([['unbalanced', 1.1]]);
  });
  it('escapes are literal', () => {
    expect(plain(parsePromptAttention('\\(literal\\]'))).toEqual([['(literal]', 1]]);
  });
  it('(unnecessary)(parens) merges equal weights', () => {
    expect(plain(parsePromptAttention('(unnecessary)(parens)'))).toEqual([['unnecessaryparens', 1.1]]);
  });
  it('the nested example, with its float values', () => {
    const got = parsePromptAttention('a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).');
    const want: [string, number][] = [
      ['a ', 1.0],
      ['house', 1.5730000000000004],
      [' ', 1.1],
      ['on', 1.0],
      [' a ', 1.1],
      ['hill', 0.55],
      [', sun, ', 1.1],
      ['sky', 1.4641000000000006],
      ['.', 1.1],
    ];
    expect(got.map((p) => p.text)).toEqual(want.map((w) => w[0]));
    // Same multiplication order as Python, so the doubles agree to the last bit.
    expect(got.map((p) => p.weight)).toEqual(want.map((w) => w[1]));
  });
});

describe('parsePromptAttention: edge cases as A1111 treats them', () => {
  it('[a] divides by 1.1; ((a)) is 1.21; explicit weights tolerate spaces', () => {
    expect(parsePromptAttention('[a]')[0]!.weight).toBeCloseTo(1 / 1.1, 15);
    expect(parsePromptAttention('((a))')[0]!.weight).toBeCloseTo(1.21, 15);
    expect(plain(parsePromptAttention('(a : 1.3 )'))).toEqual([['a ', 1.3]]);
    expect(plain(parsePromptAttention('([a]:1.5)'))).toEqual([['a', 1.5 / 1.1]]);
  });
  it('a closing bracket with nothing open is text; a lone colon is text', () => {
    expect(plain(parsePromptAttention('a) b] c:d'))).toEqual([['a) b] c:d', 1]]);
    expect(plain(parsePromptAttention('time 12:30'))).toEqual([['time 12:30', 1]]);
  });
  it('":1.2)" without an open bracket stays as typed', () => {
    expect(plain(parsePromptAttention('cat:1.2)'))).toEqual([['cat:1.2)', 1]]);
  });
  it('\\\\ is one backslash; a lone backslash disappears', () => {
    expect(plain(parsePromptAttention('a\\\\b'))).toEqual([['a\\b', 1]]);
    expect(plain(parsePromptAttention('a\\b'))).toEqual([['ab', 1]]);
  });
  it('an unreadable number (A1111 raises) stays text instead', () => {
    expect(plain(parsePromptAttention('(a:1.2.3)'))).toEqual([['a:1.2.3)', 1.1]]);
  });
  it('BREAK as a whole word separates pieces; BREAKFAST does not', () => {
    const got = parsePromptAttention('a cat BREAK (a dog) BREAKFAST');
    expect(got).toEqual([
      { text: 'a cat', weight: 1 },
      { text: 'BREAK', weight: -1, break: true },
      { text: '', weight: 1 },
      { text: 'a dog', weight: 1.1 },
      { text: ' BREAKFAST', weight: 1 },
    ]);
  });
  it('an empty prompt is one empty piece', () => {
    expect(plain(parsePromptAttention(''))).toEqual([['', 1]]);
  });
});

describe('extractExtraNetworks', () => {
  it('takes <lora:name:weight> out of the text with its weight', () => {
    const got = extractExtraNetworks('a fox <lora:foxy:0.8> in snow <lora:snowy>');
    expect(got.text).toBe('a fox  in snow ');
    expect(got.loras).toEqual([
      { name: 'foxy', textEncoderWeight: 0.8, unetWeight: 0.8 },
      { name: 'snowy', textEncoderWeight: 1, unetWeight: 1 },
    ]);
    expect(got.unsupported).toEqual([]);
  });
  it('separate UNet weight, positional or named', () => {
    expect(extractExtraNetworks('<lora:a:0.5:0.25>').loras).toEqual([{ name: 'a', textEncoderWeight: 0.5, unetWeight: 0.25 }]);
    expect(extractExtraNetworks('<lora:a:unet=0.3:te=0.7>').loras).toEqual([{ name: 'a', textEncoderWeight: 0.7, unetWeight: 0.3 }]);
  });
  it('other kinds are removed and named; unreadable weights are named', () => {
    const got = extractExtraNetworks('x <hypernet:h:1> <lora:b:heavy> y');
    expect(got.text).toBe('x   y');
    expect(got.unsupported).toEqual(['<hypernet:h:1>']);
    expect(got.invalid).toEqual(['<lora:b:heavy>']);
    expect(got.loras).toEqual([]);
  });
});

/** Each word is one token (ids from 10 up), "," and "." are their own tokens: chunk positions are easy to see. */
class WordTokenizer implements PromptTokenizer {
  readonly bosId = 1;
  readonly eosId = 2;
  private readonly ids = new Map<string, number>([[',', 5]]);
  constructor(readonly padId = 2) {}
  tokenize(text: string): number[] {
    const out: number[] = [];
    for (const w of text.toLowerCase().match(/[^\s,.]+|[,.]/g) ?? []) {
      if (!this.ids.has(w)) this.ids.set(w, 10 + this.ids.size);
      out.push(this.ids.get(w)!);
    }
    return out;
  }
}

const words = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `w${i + from}`).join(' ');

describe('chunkPrompt', () => {
  it('a short prompt is one chunk: BOS, tokens, EOS padding to 77, weights 1 on the specials', () => {
    const tok = new WordTokenizer();
    const { chunks, tokenCount } = chunkPrompt(parsePromptAttention('a (b) c'), tok);
    expect(chunks).toHaveLength(1);
    const [c] = chunks;
    expect(Array.from(c!.ids.subarray(0, 5))).toEqual([1, 10 + 1, 10 + 2, 10 + 3, 2]);
    expect(c!.ids.length).toBe(77);
    expect(Array.from(c!.ids.subarray(4)).every((v) => v === 2)).toBe(true);
    expect(Array.from(c!.multipliers.subarray(0, 5))).toEqual([1, 1, Math.fround(1.1), 1, 1]);
    expect(tokenCount).toBe(3);
  });

  it('the empty prompt is one chunk of BOS + 76 EOS', () => {
    const { chunks, tokenCount } = chunkPrompt(parsePromptAttention(''), new WordTokenizer());
    expect(chunks).toHaveLength(1);
    expect(Array.from(chunks[0]!.ids)).toEqual([1, ...new Array<number>(76).fill(2)]);
    expect(tokenCount).toBe(0);
  });

  it('80 tokens with no comma: 75 in the first chunk, 5 in the second, nothing cut', () => {
    const tok = new WordTokenizer();
    const got = chunkPrompt(parsePromptAttention(words(80)), tok);
    expect(got.chunks).toHaveLength(2);
    expect(got.chunks[0]!.ids[75]).not.toBe(2);
    expect(got.chunks[0]!.ids[76]).toBe(2);
    expect(Array.from(got.chunks[1]!.ids.subarray(0, 7))).toEqual([1, ...tok.tokenize(words(5, 75)), 2]);
    expect(got.tokenCount).toBe(80);
    expect(got.truncation).toBeUndefined();
  });

  it('overflow with a comma in the last 20 tokens breaks after the comma', () => {
    // 70 words, a comma (position 71 of the chunk), 10 more words: w70…w73 fill the chunk, w74
    // finds it full 4 tokens after the comma, so w70…w73 move to the second chunk.
    const tok = new WordTokenizer();
    const got = chunkPrompt(parsePromptAttention(`${words(70)}, ${words(10, 70)}`), tok);
    expect(got.chunks).toHaveLength(2);
    const first = Array.from(got.chunks[0]!.ids);
    expect(first[71]).toBe(5);
    expect(first.slice(72)).toEqual([2, 2, 2, 2, 2]);
    const second = Array.from(got.chunks[1]!.ids.subarray(0, 12));
    expect(second).toEqual([1, ...tok.tokenize(words(10, 70)), 2]);
    expect(got.tokenCount).toBe(85);
  });

  it('a comma more than 20 tokens back does not move anything; backtrack 0 turns it off', () => {
    const tok = new WordTokenizer();
    const text = `${words(50)}, ${words(40, 50)}`;
    const got = chunkPrompt(parsePromptAttention(text), tok);
    expect(got.chunks[0]!.ids[75]).toBe(tok.tokenize('w73')[0]);
    const near = `${words(70)}, ${words(10, 70)}`;
    expect(chunkPrompt(parsePromptAttention(near), tok, { commaBacktrack: 0 }).chunks[0]!.ids[75]).toBe(tok.tokenize('w73')[0]);
  });

  it('a comma arriving when the chunk is full opens the next chunk (as A1111 does)', () => {
    const tok = new WordTokenizer();
    const got = chunkPrompt(parsePromptAttention(`${words(75)}, w75`), tok);
    expect(got.chunks).toHaveLength(2);
    expect(Array.from(got.chunks[1]!.ids.subarray(0, 4))).toEqual([1, 5, tok.tokenize('w75')[0], 2]);
  });

  it('BREAK closes the chunk and pads it', () => {
    const got = chunkPrompt(parsePromptAttention('a b BREAK c'), new WordTokenizer());
    expect(got.chunks).toHaveLength(2);
    expect(Array.from(got.chunks[0]!.ids.subarray(0, 4))).toEqual([1, 10 + 1, 10 + 2, 2]);
    expect(got.chunks[1]!.ids[1]).toBe(10 + 3);
    expect(got.tokenCount).toBe(75 + 1);
  });

  it('an embedding trigger becomes one placeholder per vector with the piece weight, never split', () => {
    const tok = new WordTokenizer();
    const got = chunkPrompt(parsePromptAttention('a (badprompt:1.2) b'), tok, { embeddings: [{ name: 'badprompt', vectors: 3 }] });
    const c = got.chunks[0]!;
    expect(Array.from(c.ids.subarray(0, 7))).toEqual([1, tok.tokenize('a')[0], 0, 0, 0, tok.tokenize('b')[0], 2]);
    expect(Array.from(c.multipliers.subarray(2, 5))).toEqual([1.2, 1.2, 1.2].map(Math.fround));
    expect(c.embeddings).toEqual([{ name: 'badprompt', position: 2, vectors: 3 }]);
    expect(got.embeddingsUsed).toEqual(['badprompt']);

    const late = chunkPrompt(parsePromptAttention(`${words(74)} badprompt`), tok, { embeddings: [{ name: 'badprompt', vectors: 3 }], commaBacktrack: 0 });
    expect(late.chunks).toHaveLength(2);
    expect(late.chunks[1]!.embeddings).toEqual([{ name: 'badprompt', position: 1, vectors: 3 }]);
  });

  it('the longest matching trigger wins', () => {
    const tok = new WordTokenizer();
    const got = chunkPrompt(parsePromptAttention('x bad hands y'), tok, {
      embeddings: [
        { name: 'bad', vectors: 1 },
        { name: 'bad hands', vectors: 2 },
      ],
    });
    expect(got.chunks[0]!.embeddings).toEqual([{ name: 'bad hands', position: 2, vectors: 2 }]);
  });

  it('SD 2.x padding: ids after the first EOS are the pad id', () => {
    const got = chunkPrompt(parsePromptAttention('a b'), new WordTokenizer(0));
    expect(Array.from(got.chunks[0]!.ids.subarray(0, 6))).toEqual([1, 11, 12, 2, 0, 0]);
  });

  it('reports truncation only beyond the chunk limit, naming where the cut starts', () => {
    const tok = new WordTokenizer();
    expect(chunkPrompt(parsePromptAttention(words(150)), tok, { maxChunks: 2 }).truncation).toBeUndefined();
    const cut = chunkPrompt(parsePromptAttention(`${words(75)} (tail words)`), tok, { maxChunks: 1, commaBacktrack: 0 });
    expect(cut.chunks).toHaveLength(1);
    expect(cut.truncation).toEqual({ keptChunks: 1, droppedTokens: 2, droppedFrom: 'tail words' });
    // An empty chunk after a final BREAK costs nothing.
    expect(chunkPrompt(parsePromptAttention('a BREAK'), tok, { maxChunks: 1 }).truncation).toBeUndefined();
  });
});

describe('applyEmphasis: A1111 "Original" weighting', () => {
  it('scales each position by its weight, then restores the mean (worked by hand)', () => {
    // hidden = [[1, 2], [3, 4]], weights [1, 2]: weighted [[1, 2], [6, 8]], mean 17/4 vs the
    // original 10/4, so every value is multiplied by 10/17.
    const got = applyEmphasis(new Float32Array([1, 2, 3, 4]), new Float32Array([1, 2]), 2);
    expect(Array.from(got)).toEqual([10 / 17, 20 / 17, 60 / 17, 80 / 17].map(Math.fround));
  });
  it('a negative-mean chunk keeps its sign; weights all 1 leave it untouched', () => {
    // [[-1, -3], [2, 0]] (sum −2), weights [1, 0.5]: [[-1, -3], [1, 0]] (sum −3); scale −2/−3 = 2/3.
    const got = applyEmphasis(new Float32Array([-1, -3, 2, 0]), new Float32Array([1, 0.5]), 2);
    expect(Array.from(got)).toEqual([-2 / 3, -2, 2 / 3, 0].map(Math.fround));
    const same = new Float32Array([1, 2, 3, 4]);
    expect(applyEmphasis(same, new Float32Array([1, 1]), 2)).toBe(same);
  });
});

describe('encodeChunks and padToLength', () => {
  it('encodes each chunk, weights it, and concatenates along the sequence', async () => {
    const tok = new WordTokenizer();
    const { chunks } = chunkPrompt(parsePromptAttention(`${words(75)} (x:2)`), tok, { commaBacktrack: 0 });
    const width = 2;
    // A stand-in encoder: position p of chunk k holds [k + 1, p].
    let k = 0;
    const seen: number[] = [];
    const c = await encodeChunks(chunks, width, async (chunk) => {
      seen.push(chunk.ids[1]!);
      k++;
      const z = new Float32Array(77 * width);
      for (let p = 0; p < 77; p++) z.set([k, p], p * width);
      return z;
    });
    expect(seen).toEqual([chunks[0]!.ids[1], chunks[1]!.ids[1]]);
    expect(c.tokens).toBe(154);
    expect(c.hidden[0]).toBe(1);
    expect(c.hidden[77 * width]).not.toBe(2); // the second chunk was weighted (x at position 1 ×2, mean restored)
    let before = 0;
    for (let p = 0; p < 77; p++) before += 2 + p;
    let after = 0;
    for (let i = 77 * width; i < 154 * width; i++) after += c.hidden[i]!;
    expect(after).toBeCloseTo(before, 3);

    const padded = padToLength({ hidden: new Float32Array(77 * width).fill(3), tokens: 77, width }, 154, new Float32Array(77 * width).fill(9));
    expect(padded.tokens).toBe(154);
    expect(padded.hidden[0]).toBe(3);
    expect(padded.hidden[77 * width]).toBe(9);
  });
});

describe.skipIf(!hasSharedTokenizer())('with the real SD 1.5 tokenizer', () => {
  let tok: ClipTokenizer;
  beforeAll(async () => {
    tok = await ClipTokenizer.load(sharedTokenizerDir());
  });

  it('the doctest prompt: ids as the tokenizer gives them per piece, weights per token', () => {
    const got = parsePrompt('a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).', tok);
    const c = got.chunks[0]!;
    const pieces: [string, number][] = [
      ['a ', 1],
      ['house', 1.573],
      [' ', 1.1],
      ['on', 1],
      [' a ', 1.1],
      ['hill', 0.55],
      [', sun, ', 1.1],
      ['sky', 1.4641],
      ['.', 1.1],
    ];
    const ids: number[] = [];
    const weights: number[] = [];
    for (const [text, w] of pieces) for (const id of tok.tokenize(text)) ids.push(id), weights.push(w);
    expect(Array.from(c.ids.subarray(1, 1 + ids.length))).toEqual(ids);
    expect(ids).toContain(267); // ",</w>"
    Array.from(c.multipliers.subarray(1, 1 + ids.length)).forEach((m, i) => expect(m).toBeCloseTo(weights[i]!, 6));
    expect(c.ids[1 + ids.length]).toBe(tok.eosId);
  });

  it('a 100-token prompt of comma lists goes into two chunks, breaking after a comma, nothing cut', () => {
    // "tagN word," is 4 tokens; the leading "a" makes the 75th token fall inside a tag, so the
    // tokens after the last comma move to the second chunk.
    const prompt = `a ${Array.from({ length: 25 }, (_, i) => `tag${i % 10} word`).join(', ')}`;
    const n = tok.tokenize(prompt).length;
    expect(n).toBeGreaterThan(75);
    const got = parsePrompt(prompt, tok, { maxChunks: 3 });
    expect(got.chunks).toHaveLength(2);
    expect(got.truncation).toBeUndefined();
    const first = Array.from(got.chunks[0]!.ids);
    const firstPad = first.indexOf(tok.eosId);
    expect(firstPad).toBeLessThan(76);
    expect(first[firstPad - 1]).toBe(267);
    // Every token of the prompt is in the chunks, in order.
    const all = got.chunks.flatMap((ch) => Array.from(ch.ids).filter((id) => id !== tok.bosId && id !== tok.eosId));
    expect(all).toEqual(tok.tokenize(prompt));
  });

  it('LoRA tags leave the text; an embedding name is a trigger', () => {
    const got = parsePrompt('photo of a fox <lora:foxy:0.7>, badprompt', tok, { embeddings: [{ name: 'badprompt', vectors: 8 }] });
    expect(got.networks.loras).toEqual([{ name: 'foxy', textEncoderWeight: 0.7, unetWeight: 0.7 }]);
    expect(got.embeddingsUsed).toEqual(['badprompt']);
    const c = got.chunks[0]!;
    const prefix = tok.tokenize('photo of a fox ,');
    expect(Array.from(c.ids.subarray(1, 1 + prefix.length))).toEqual(prefix);
    expect(c.embeddings).toEqual([{ name: 'badprompt', position: 1 + prefix.length, vectors: 8 }]);
  });
});
