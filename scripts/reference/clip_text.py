#!/usr/bin/python3
"""Reference numbers for the engine's CLIP text encoder graph (engine/onnx-build/clip-text.ts).

Builds OpenAI CLIP's text transformer (as SD 1.x uses it) in PyTorch from torch.nn building
blocks -- nn.MultiheadAttention with a causal mask, nn.LayerNorm, quick_gelu -- loads it from a
state dict in the original LDM key layout (cond_stage_model.transformer.text_model.*) filled by
synthetic.py's deterministic generator, and writes sums and a strided slice of each output to
test/fixtures/reference/clip_text_<name>.json. The vitest test builds the same weights in
TypeScript, writes them into a .safetensors file, builds the ONNX graph from that file and
compares on onnxruntime.

Run with Debian's interpreter, which has torch:  /usr/bin/python3 scripts/reference/clip_text.py
"""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from summary import summary, write_reference  # noqa: E402
from synthetic import synthetic_tensor  # noqa: E402

PREFIX = "cond_stage_model.transformer.text_model."
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

# Reduced width for CI; the full SD 1.x encoder is width 768, 12 heads, 12 layers, 3072.
CONFIGS = {
    "tiny": dict(vocab=49408, width=32, positions=77, layers=3, heads=4, intermediate=128, seed=0),
}

# Two prompts as the SD 1.x tokenizer lays them out: start token, a few words, end token, padded
# with the end token to 77.
PROMPTS = [
    [49406, 320, 1929, 539, 518, 2117, 49407],
    [49406, 1125, 268, 49407],
]


def ldm_state_dict(cfg, prefix=PREFIX):
    """The text encoder's tensors under their LDM names (SD 1.x's prefix unless told), in file order."""
    d, i = cfg["width"], cfg["intermediate"]
    shapes = [
        ("embeddings.token_embedding.weight", [cfg["vocab"], d]),
        ("embeddings.position_embedding.weight", [cfg["positions"], d]),
    ]
    for layer in range(cfg["layers"]):
        p = f"encoder.layers.{layer}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes += [(p + f"self_attn.{proj}.weight", [d, d]), (p + f"self_attn.{proj}.bias", [d])]
        shapes += [(p + "layer_norm1.weight", [d]), (p + "layer_norm1.bias", [d])]
        shapes += [(p + "mlp.fc1.weight", [i, d]), (p + "mlp.fc1.bias", [i])]
        shapes += [(p + "mlp.fc2.weight", [d, i]), (p + "mlp.fc2.bias", [d])]
        shapes += [(p + "layer_norm2.weight", [d]), (p + "layer_norm2.bias", [d])]
    shapes += [("final_layer_norm.weight", [d]), ("final_layer_norm.bias", [d])]
    return {prefix + n: synthetic_tensor(prefix + n, s, cfg["seed"]) for n, s in shapes}


class Layer(nn.Module):
    def __init__(self, d, heads, inter):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, inter)
        self.fc2 = nn.Linear(inter, d)

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        f = self.fc1(self.ln2(x))
        return x + self.fc2(f * torch.sigmoid(1.702 * f))


class TextEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["width"]
        self.tok = nn.Embedding(cfg["vocab"], d)
        self.pos = nn.Parameter(torch.zeros(cfg["positions"], d))
        self.layers = nn.ModuleList(Layer(d, cfg["heads"], cfg["intermediate"]) for _ in range(cfg["layers"]))
        self.final = nn.LayerNorm(d, eps=1e-5)

    def load_ldm(self, sd, prefix=PREFIX):
        g = lambda n: sd[prefix + n]  # noqa: E731
        with torch.no_grad():
            self.tok.weight.copy_(g("embeddings.token_embedding.weight"))
            self.pos.copy_(g("embeddings.position_embedding.weight"))
            for n, layer in enumerate(self.layers):
                p = f"encoder.layers.{n}."
                qkv_w = torch.cat([g(p + f"self_attn.{x}_proj.weight") for x in "qkv"])
                qkv_b = torch.cat([g(p + f"self_attn.{x}_proj.bias") for x in "qkv"])
                layer.attn.in_proj_weight.copy_(qkv_w)
                layer.attn.in_proj_bias.copy_(qkv_b)
                layer.attn.out_proj.weight.copy_(g(p + "self_attn.out_proj.weight"))
                layer.attn.out_proj.bias.copy_(g(p + "self_attn.out_proj.bias"))
                for mine, theirs in ((layer.ln1, "layer_norm1"), (layer.ln2, "layer_norm2"), (layer.fc1, "mlp.fc1"), (layer.fc2, "mlp.fc2")):
                    mine.weight.copy_(g(p + theirs + ".weight"))
                    mine.bias.copy_(g(p + theirs + ".bias"))
            self.final.weight.copy_(g("final_layer_norm.weight"))
            self.final.bias.copy_(g("final_layer_norm.bias"))

    def forward(self, ids):
        t = ids.shape[1]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)  # True = may not attend
        x = self.tok(ids) + self.pos[:t]
        states = [x]
        for layer in self.layers:
            x = layer(x, mask)
            states.append(x)
        last = self.final(x)
        eos = ids.argmax(dim=-1)
        pooled = last[torch.arange(ids.shape[0]), eos]
        return last, states[-2], pooled



def main():
    torch.manual_seed(0)
    for name, cfg in CONFIGS.items():
        model = TextEncoder(cfg).eval()
        sd = ldm_state_dict(cfg)
        model.load_ldm(sd)
        ids = torch.tensor([p + [49407] * (cfg["positions"] - len(p)) for p in PROMPTS], dtype=torch.long)
        with torch.no_grad():
            last, penultimate, pooled = model(ids)
        out = {
            "generator": "scripts/reference/clip_text.py",
            "torch": torch.__version__,
            "ldm_prefix": PREFIX,
            "config": cfg,
            # Lets the test check its generator against this one before comparing outputs.
            "weights_check": {
                n: {"first": sd[n].flatten()[:4].tolist(), "sum": sd[n].double().sum().item()}
                for n in (PREFIX + "embeddings.token_embedding.weight", PREFIX + "encoder.layers.0.layer_norm1.weight")
            },
            "input_ids": ids.tolist(),
            "last_hidden_state": summary(last),
            "penultimate_hidden_state": summary(penultimate),
            "pooler_output": summary(pooled, stride=1),
        }
        path = write_reference(ROOT, f"clip_text_{name}.json", out)
        print(f"wrote {path}: last sum {out['last_hidden_state']['sum']:.6f}")


if __name__ == "__main__":
    main()
