"""A small byte-level BPE tokenizer learned from the captions, written in CLIP's file format
(vocab.json, merges.txt with `</w>` word ends, <|startoftext|> / <|endoftext|>, 77 ids), so the
engine's CLIP tokenizer (engine/tokenizer.ts) reads it unchanged."""
import collections
import json
import os
import re

BOS, EOS, EOW = '<|startoftext|>', '<|endoftext|>', '</w>'
SEQ = 77
# CLIP's pre-tokenizer (\p{L}+ | \p{N} | [^\s\p{L}\p{N}]+) in Python's re: [^\W\d_] is a letter.
WORD = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+", re.IGNORECASE)


def bytes_to_unicode():
    bs = list(range(0x21, 0x7f)) + list(range(0xa1, 0xad)) + list(range(0xae, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_CHARS = bytes_to_unicode()


def pre_tokenize(text):
    text = re.sub(r'\s+', ' ', text).strip().lower()
    return WORD.findall(text)


def word_symbols(word):
    chars = [BYTE_CHARS[b] for b in word.encode('utf-8')]
    chars[-1] += EOW
    return tuple(chars)


def merge_pair(sym, a, b):
    """Every occurrence of the pair (a, b) merged, left to right, as CLIP's BPE does."""
    out, i = [], 0
    while i < len(sym):
        if i < len(sym) - 1 and sym[i] == a and sym[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(sym[i])
            i += 1
    return tuple(out)


def learn(texts, merges_wanted=1200, min_count=2):
    counts = collections.Counter(w for t in texts for w in pre_tokenize(t))
    words = {word_symbols(w): c for w, c in counts.items()}
    merges = []
    for _ in range(merges_wanted):
        pairs = collections.Counter()
        for sym, c in words.items():
            for a, b in zip(sym, sym[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        # Ties broken by the pair itself, so the result does not depend on dict order.
        (a, b), c = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if c < min_count:
            break
        merges.append((a, b))
        merged = {}
        for sym, cnt in words.items():
            out = merge_pair(sym, a, b)
            merged[out] = merged.get(out, 0) + cnt
        words = merged
    return Tokenizer.from_merges(merges)


class Tokenizer:
    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.merges = merges
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.bos, self.eos = vocab[BOS], vocab[EOS]

    @staticmethod
    def from_merges(merges):
        byte_tokens = list(BYTE_CHARS.values())
        tokens = byte_tokens + [t + EOW for t in byte_tokens] + [a + b for a, b in merges] + [BOS, EOS]
        vocab = {}
        for t in tokens:
            vocab.setdefault(t, len(vocab))
        return Tokenizer(vocab, merges)

    @staticmethod
    def load(folder):
        vocab = json.load(open(os.path.join(folder, 'vocab.json'), encoding='utf-8'))
        lines = open(os.path.join(folder, 'merges.txt'), encoding='utf-8').read().split('\n')[1:]
        return Tokenizer(vocab, [tuple(l.split(' ')) for l in lines if l])

    def save(self, folder):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, 'vocab.json'), 'w', encoding='utf-8') as f:
            json.dump(self.vocab, f, ensure_ascii=False)
        with open(os.path.join(folder, 'merges.txt'), 'w', encoding='utf-8') as f:
            f.write('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in self.merges))
        special = {'bos_token': BOS, 'eos_token': EOS, 'unk_token': EOS, 'pad_token': EOS}
        with open(os.path.join(folder, 'special_tokens_map.json'), 'w') as f:
            json.dump(special, f, indent=2)
        with open(os.path.join(folder, 'tokenizer_config.json'), 'w') as f:
            json.dump({**special, 'model_max_length': SEQ, 'do_lower_case': True,
                       'tokenizer_class': 'CLIPTokenizer'}, f, indent=2)

    def bpe(self, word):
        sym = list(word_symbols(word))
        while len(sym) > 1:
            pairs = [(self.ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(sym, sym[1:]))]
            pairs = [p for p in pairs if p[0] is not None]
            if not pairs:
                break
            a, b = self.merges[min(pairs)[0]]
            sym = list(merge_pair(sym, a, b))
        return [self.vocab.get(s, self.eos) for s in sym]

    def encode(self, text):
        ids = [i for w in pre_tokenize(text) for i in self.bpe(w)][:SEQ - 2]
        ids = [self.bos] + ids + [self.eos]
        return ids + [self.eos] * (SEQ - len(ids))
