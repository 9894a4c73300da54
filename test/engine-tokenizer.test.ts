import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer } from '../engine/tokenizer.js';
import { sharedTokenizerDir } from './helpers/shared-fixtures.js';

const TOKENIZER_DIR = sharedTokenizerDir();
const HAVE_FILES = existsSync(join(TOKENIZER_DIR, 'vocab.json')) && existsSync(join(TOKENIZER_DIR, 'merges.txt'));
if (!HAVE_FILES) {
  console.warn(`engine-tokenizer: real CLIP tokenizer files not found in ${TOKENIZER_DIR}; set SD_TOKENIZER_DIR to run these tests`);
}

// Expected ids were computed with an independent Python port of OpenAI CLIP's simple_tokenizer.py
// (the `regex` module for \p{L}/\p{N}, whitespace_clean + lower, no ftfy) over the same files.
const REFERENCE: [string, number[]][] = [
  ['a photo of a cat', [320, 1125, 539, 320, 2368]],
  ['A Photo   of a CAT!!', [320, 1125, 539, 320, 2368, 748]],
  ["it's a dog's life, isn't it? we'll see; they'd've", [585, 568, 320, 1929, 568, 970, 267, 2923, 713, 585, 286, 649, 1342, 862, 282, 889, 1896, 1200]],
  ['in 1984, 3.14159 cats (x2) at 12:30pm', [530, 272, 280, 279, 275, 267, 274, 269, 272, 275, 272, 276, 280, 3989, 263, 343, 273, 264, 536, 272, 273, 281, 274, 271, 990]],
  ['héllo wörld, naïve café', [71, 3459, 19293, 86, 31762, 730, 267, 1097, 35689, 563, 15304]],
  ['🦊 fox 🦊🦊 and 👨‍👩‍👧 family', [6040, 488, 3240, 6040, 232, 6040, 488, 537, 25023, 26304, 964, 356, 1315]],
  ['東京の夜景 и москва ночью', [48338, 21078, 105, 21575, 23170, 250, 48132, 363, 140, 372, 38018, 13506, 23669, 27152, 39813, 27080, 22705, 13506, 141, 229, 141, 234, 141, 492]],
  ['masterpiece, best quality, (detailed:1.2), [lowres], {sharp}, cyberpunk_city--ar', [12066, 267, 949, 3027, 267, 263, 12609, 281, 272, 269, 273, 2361, 314, 1049, 934, 34067, 346, 8157, 92, 267, 36896, 318, 1305, 2432, 625]],
  ['anti-aliasing isn\'t ultra-hyperrealistic photorealism', [3564, 268, 835, 4194, 2923, 713, 8118, 268, 7997, 16157, 1153, 20024]],
];

describe.skipIf(!HAVE_FILES)('ClipTokenizer on the real SD 1.5 files', () => {
  let tok: ClipTokenizer;
  beforeAll(async () => {
    tok = await ClipTokenizer.load(TOKENIZER_DIR);
  });

  it('encodes "a photo of a cat" exactly, padded with EOS to 77', () => {
    const { ids, truncation } = tok.encode('a photo of a cat');
    expect(ids).toBeInstanceOf(Int32Array);
    expect(ids.length).toBe(77);
    expect(Array.from(ids.subarray(0, 7))).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
    expect(Array.from(ids.subarray(7)).every((v) => v === 49407)).toBe(true);
    expect(tok.padId).toBe(49407);
    expect(truncation).toBeUndefined();
  });

  it.each(REFERENCE)('matches the reference tokenizer: %s', (text, expected) => {
    expect(tok.tokenize(text)).toEqual(expected);
    const { ids } = tok.encode(text);
    expect(Array.from(ids.subarray(0, expected.length + 2))).toEqual([49406, ...expected, 49407]);
  });

  it('an empty or blank prompt is BOS, EOS and padding', () => {
    expect(Array.from(tok.encode('   \n\t ').ids.subarray(0, 3))).toEqual([49406, 49407, 49407]);
  });

  it('treats typed special-token strings as plain text (no injected EOS)', () => {
    const ids = tok.tokenize('a <|endoftext|> b');
    expect(ids).not.toContain(49407);
    expect(ids).not.toContain(49406);
  });

  it('straightens curly quotes like ftfy, so "it’s" reads as "it\'s"', () => {
    expect(tok.tokenize('it\u2019s')).toEqual(tok.tokenize("it's"));
  });

  it('cuts after 75 tokens and names the dropped words in the member’s spelling', () => {
    const words = Array.from({ length: 80 }, (_, i) => (i % 2 ? 'Cat' : 'dog'));
    const { ids, truncation } = tok.encode(words.join('  '));
    expect(ids.length).toBe(77);
    expect(ids[0]).toBe(49406);
    expect(ids[76]).toBe(49407);
    expect(Array.from(ids.subarray(1, 76)).every((v) => v !== 49407)).toBe(true);
    expect(truncation).toEqual({ kept: words.slice(0, 75).join(' '), dropped: words.slice(75).join(' ') });
  });

  it('a word straddling the limit is reported dropped as a whole while its first pieces fill the sequence', () => {
    const prefix = Array.from({ length: 74 }, () => 'cat').join(' ');
    const { ids, truncation } = tok.encode(`${prefix} photorealism tail`);
    // "photorealism" is two tokens (1153 20024 per the reference above); only its first fits.
    expect(ids[75]).toBe(tok.tokenize('photorealism')[0]);
    expect(ids[76]).toBe(49407);
    expect(truncation).toEqual({ kept: prefix, dropped: 'photorealism tail' });
  });

  it('a giant single word is cut and reported whole (BPE only sees its first 1000 characters)', () => {
    let word = '';
    let seed = 7;
    for (let i = 0; i < 20000; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      word += String.fromCharCode(97 + ((seed >>> 16) % 26));
    }
    const { ids, truncation } = tok.encode(`a ${word}`);
    expect(ids.length).toBe(77);
    expect(ids[1]).toBe(320);
    expect(ids[76]).toBe(49407);
    expect(truncation).toEqual({ kept: 'a', dropped: word });
  });

  it('exactly 75 tokens are not truncated', () => {
    const text = Array.from({ length: 75 }, () => 'cat').join(' ');
    const { ids, truncation } = tok.encode(text);
    expect(truncation).toBeUndefined();
    expect(ids[76]).toBe(49407);
    expect(ids[75]).toBe(2368);
  });

  describe('pad token from special_tokens_map.json', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'tok-pad-'));
      await cp(join(TOKENIZER_DIR, 'vocab.json'), join(dir, 'vocab.json'));
      await cp(join(TOKENIZER_DIR, 'merges.txt'), join(dir, 'merges.txt'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('uses "!" (id 0) as SD 2.x folders declare, preferring it over tokenizer_config.json', async () => {
      await writeFile(join(dir, 'special_tokens_map.json'), JSON.stringify({ pad_token: '!' }));
      await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ pad_token: '<|endoftext|>' }));
      const t = await ClipTokenizer.load(dir);
      expect(t.padId).toBe(0);
      const { ids } = t.encode('a photo of a cat');
      expect(Array.from(ids.subarray(0, 8))).toEqual([49406, 320, 1125, 539, 320, 2368, 49407, 0]);
      expect(Array.from(ids.subarray(7)).every((v) => v === 0)).toBe(true);
    });

    it('accepts the { content } form and falls back to tokenizer_config.json', async () => {
      await writeFile(join(dir, 'special_tokens_map.json'), JSON.stringify({ pad_token: { content: '!' } }));
      expect((await ClipTokenizer.load(dir)).padId).toBe(0);
      await rm(join(dir, 'special_tokens_map.json'));
      await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ pad_token: '!' }));
      expect((await ClipTokenizer.load(dir)).padId).toBe(0);
      await rm(join(dir, 'tokenizer_config.json'));
      expect((await ClipTokenizer.load(dir)).padId).toBe(49407);
    });

    it('names the file when the pad token is unknown or the JSON is corrupt', async () => {
      await writeFile(join(dir, 'special_tokens_map.json'), JSON.stringify({ pad_token: '<|nope|>' }));
      await expect(ClipTokenizer.load(dir)).rejects.toThrow(/special_tokens_map\.json/);
      await writeFile(join(dir, 'special_tokens_map.json'), '{ broken');
      await expect(ClipTokenizer.load(dir)).rejects.toThrow(/special_tokens_map\.json is not a valid JSON object/);
      await rm(join(dir, 'special_tokens_map.json'));
    });
  });
});

describe('ClipTokenizer file errors', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tok-bad-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a missing vocab.json is named', async () => {
    await expect(ClipTokenizer.load(dir)).rejects.toThrow(/vocab\.json.*missing/);
  });

  it('a corrupt vocab.json is named', async () => {
    await writeFile(join(dir, 'vocab.json'), '{"a": 1,');
    await writeFile(join(dir, 'merges.txt'), '#version: 0.2\na b\n');
    await expect(ClipTokenizer.load(dir)).rejects.toThrow(/vocab\.json is not valid JSON/);
  });

  it('a vocabulary without CLIP byte tokens is refused, naming the file', async () => {
    await writeFile(join(dir, 'vocab.json'), JSON.stringify({ a: 0, '<|startoftext|>': 1, '<|endoftext|>': 2 }));
    await expect(ClipTokenizer.load(dir)).rejects.toThrow(/vocab\.json lacks the byte token/);
  });

  it('a missing merges.txt is named', async () => {
    await rm(join(dir, 'merges.txt'));
    await expect(ClipTokenizer.load(dir)).rejects.toThrow(/merges\.txt.*missing/);
  });
});
