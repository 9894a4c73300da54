#!/usr/bin/python3
"""Reference numbers for textual-inversion embeddings fed into the CLIP text encoder.

The tiny encoder of clip_text.py (same synthetic weights), run the way A1111's EmbeddingsWithFixes
does it: token embeddings are looked up for the chunk's ids, then the embedding's vectors replace
the rows at its placeholder positions, then position embeddings, layers and the final LayerNorm.
The embedding's vectors are synthetic_tensor("emb_params", [3, width], seed 5), placed at
positions 2..4 of the prompt below (A1111 puts 0 ids there). Writes
test/fixtures/reference/embedding_tiny.json.

Run:  /usr/bin/python3 scripts/reference/embedding.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from clip_text import CONFIGS, TextEncoder, ldm_state_dict  # noqa: E402
from summary import summary, write_reference  # noqa: E402
from synthetic import synthetic_tensor  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
PROMPT = [49406, 320, 0, 0, 0, 2368, 49407]
POSITION = 2
VECTORS = 3


def main():
    cfg = CONFIGS["tiny"]
    model = TextEncoder(cfg).eval()
    model.load_ldm(ldm_state_dict(cfg))
    vectors = synthetic_tensor("emb_params", [VECTORS, cfg["width"]], 5)
    ids = torch.tensor([PROMPT + [49407] * (cfg["positions"] - len(PROMPT))], dtype=torch.long)
    with torch.no_grad():
        x = model.tok(ids)
        x[0, POSITION:POSITION + VECTORS] = vectors
        t = ids.shape[1]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        x = x + model.pos[:t]
        for layer in model.layers:
            x = layer(x, mask)
        last = model.final(x)
    out = {
        "generator": "scripts/reference/embedding.py",
        "torch": torch.__version__,
        "config": cfg,
        "input_ids": ids.tolist(),
        "embedding": {"tensor": "emb_params", "shape": [VECTORS, cfg["width"]], "seed": 5, "position": POSITION},
        "last_hidden_state": summary(last),
    }
    print(write_reference(ROOT, "embedding_tiny.json", out))


if __name__ == "__main__":
    main()
