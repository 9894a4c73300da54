#!/usr/bin/python3
"""Reference conditioning for a weighted prompt longer than 75 tokens, built the way A1111's
sd_hijack_clip does it (FrozenCLIPEmbedderWithCustomWords.process_tokens with the "Original"
emphasis): every 75-token chunk between BOS and EOS (EOS padding) goes through the text encoder on
its own; z = z · multiplier per position; z = z · (mean before / mean after); the chunks are
concatenated along the sequence. The negative prompt (one chunk) is padded to the prompt's length
with the empty prompt's chunk (A1111's "Pad prompt/negative prompt").

The encoder is the tiny CLIP of e2e_sd1.py (same synthetic weights). Tokens are ids written as
words "w<id>" so the engine's test can type the same prompt in A1111 syntax with a one-word-one-id
tokenizer. Writes test/fixtures/reference/prompt_weighting_tiny.json.

Run:  /usr/bin/python3 scripts/reference/prompt_weighting.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import clip_text  # noqa: E402
from e2e_sd1 import CLIP  # noqa: E402
from summary import summary, write_reference  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BOS, EOS = 49406, 49407
CHUNK = 75


def ids(start, n):
    return [320 + (start + k) * 97 % 48000 for k in range(n)]


# (token ids, weight, how the weight is written in A1111 syntax)
PROMPT = [
    (ids(0, 30), 1.0, "{}"),
    (ids(30, 20), 1.3, "({}:1.3)"),
    (ids(50, 25), 1.0, "{}"),          # ends exactly at the chunk boundary
    (ids(75, 6), 1.1, "({})"),
    (ids(81, 4), 1 / 1.1, "[{}]"),
]
NEGATIVE = [
    (ids(200, 3), 0.8, "({}:0.8)"),
    (ids(203, 2), 1.0, "{}"),
]


def text_of(pieces):
    return " ".join(form.format(" ".join(f"w{i}" for i in toks)) for toks, _, form in pieces)


def chunks_of(pieces):
    flat = [(t, w) for toks, w, _ in pieces for t in toks]
    out = []
    for start in range(0, max(len(flat), 1), CHUNK):
        part = flat[start:start + CHUNK]
        row = [BOS] + [t for t, _ in part] + [EOS]
        mult = [1.0] + [w for _, w in part] + [1.0]
        pad = CLIP["positions"] - len(row)
        out.append((row + [EOS] * pad, mult + [1.0] * pad))
    return out


def encode(model, chunks):
    zs = []
    for row, mult in chunks:
        with torch.no_grad():
            z, _, _ = model(torch.tensor([row], dtype=torch.long))
        m = torch.tensor(mult, dtype=torch.float32)
        original_mean = z.mean()
        z = z * m.reshape(1, -1, 1)
        new_mean = z.mean()
        zs.append(z * (original_mean / new_mean))
    return torch.cat(zs, dim=1)


def main():
    model = clip_text.TextEncoder(CLIP).eval()
    model.load_ldm(clip_text.ldm_state_dict(CLIP))
    cond = encode(model, chunks_of(PROMPT))
    uncond = encode(model, chunks_of(NEGATIVE))
    empty = encode(model, chunks_of([]))
    while uncond.shape[1] < cond.shape[1]:
        uncond = torch.cat([uncond, empty], dim=1)
    out = {
        "generator": "scripts/reference/prompt_weighting.py",
        "torch": torch.__version__,
        "clip": CLIP,
        "prompt": text_of(PROMPT),
        "negative_prompt": text_of(NEGATIVE),
        "cond": summary(cond),
        "uncond": summary(uncond),
    }
    print(write_reference(ROOT, "prompt_weighting_tiny.json", out))


if __name__ == "__main__":
    main()
