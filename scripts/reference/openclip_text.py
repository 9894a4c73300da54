#!/usr/bin/python3
"""Reference numbers for the engine's CLIP text graph fed from OpenCLIP weights (SD 2.x's ViT-H
under cond_stage_model.model.*, SDXL's bigG under conditioner.embedders.1.model.*).

OpenCLIP's text tower built from torch.nn parts with OpenCLIP's own module names
(transformer.resblocks.N.{ln_1, attn (nn.MultiheadAttention: in_proj_weight), ln_2, mlp.c_fc,
mlp.c_proj}, token_embedding, positional_embedding, ln_final, text_projection), exact GELU,
causal mask. Records what SD 2.x conditions on (ln_final of the penultimate layer's output) and
what SDXL takes (the raw penultimate states, and ln_final(last) at the end token times
text_projection). Writes test/fixtures/reference/openclip_text_<name>.json.

Run:  /usr/bin/python3 scripts/reference/openclip_text.py
"""
import os
import sys
from collections import OrderedDict

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from summary import summary, write_reference  # noqa: E402
from synthetic import synthetic_tensor  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

# ViT-H (SD 2.x): width 1024, 16 heads, 24 layers; bigG (SDXL): 1280, 20 heads, 32 layers, projection 1280.
TINY = dict(vocab=49408, width=32, positions=77, layers=3, heads=4, intermediate=128, projection=24, seed=0)
CONFIGS = {
    "sd2_tiny": dict(TINY, prefix="cond_stage_model.model."),
    "sdxl_g_tiny": dict(TINY, prefix="conditioner.embedders.1.model."),
}

# OpenCLIP's tokenizer pads with 0 after the end token.
PROMPTS = [
    [49406, 320, 1929, 539, 518, 2117, 49407],
    [49406, 1125, 268, 49407],
]


class ResBlock(nn.Module):
    def __init__(self, d, heads, inter):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d, inter)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(inter, d))]))

    def forward(self, x, mask):  # x: [T, B, D], as OpenCLIP runs it
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.resblocks = nn.ModuleList(ResBlock(cfg["width"], cfg["heads"], cfg["intermediate"]) for _ in range(cfg["layers"]))


class TextTower(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["width"]
        self.token_embedding = nn.Embedding(cfg["vocab"], d)
        self.positional_embedding = nn.Parameter(torch.zeros(cfg["positions"], d))
        self.transformer = Transformer(cfg)
        self.ln_final = nn.LayerNorm(d)
        self.text_projection = nn.Parameter(torch.zeros(d, cfg["projection"]))

    def forward(self, ids):
        t = ids.shape[1]
        mask = torch.full((t, t), float("-inf")).triu_(1)
        x = (self.token_embedding(ids) + self.positional_embedding).permute(1, 0, 2)
        states = []
        for block in self.transformer.resblocks:
            states.append(x)
            x = block(x, mask)
        last = self.ln_final(x.permute(1, 0, 2))
        penultimate = states[-1].permute(1, 0, 2)
        pooled = last[torch.arange(ids.shape[0]), ids.argmax(dim=-1)]
        return last, penultimate, self.ln_final(penultimate), pooled, pooled @ self.text_projection


def main():
    for name, cfg in CONFIGS.items():
        model = TextTower(cfg).eval()
        prefix = cfg["prefix"]
        sd = {prefix + k: synthetic_tensor(prefix + k, list(v.shape), cfg["seed"]) for k, v in model.state_dict().items()}
        model.load_state_dict({k[len(prefix):]: v for k, v in sd.items()})
        ids = torch.tensor([p + [0] * (cfg["positions"] - len(p)) for p in PROMPTS], dtype=torch.long)
        with torch.no_grad():
            last, penultimate, sd2_condition, pooled, text_embeds = model(ids)
        out = {
            "generator": "scripts/reference/openclip_text.py",
            "torch": torch.__version__,
            "config": cfg,
            "tensors": {k: list(v.shape) for k, v in sd.items()},
            "input_ids": ids.tolist(),
            "last_hidden_state": summary(last),
            "penultimate_hidden_state": summary(penultimate),
            "sd2_condition": summary(sd2_condition),
            "pooler_output": summary(pooled, stride=1),
            "text_embeds": summary(text_embeds, stride=1),
        }
        path = write_reference(ROOT, f"openclip_text_{name}.json", out)
        print(f"wrote {path}: last sum {out['last_hidden_state']['sum']:.6f}")


if __name__ == "__main__":
    main()
