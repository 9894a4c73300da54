#!/usr/bin/python3
"""Reference numbers for the engine's UNet graph (engine/onnx-build/unet.ts), SD 1.x layout.

The LDM UNetModel (openaimodel.py's structure: time embedding MLP, input blocks of ResBlock +
SpatialTransformer with strided-conv downsampling, middle block, output blocks over concatenated
skips with nearest-2x upsampling, GroupNorm + SiLU + conv out) written here from torch.nn parts,
with module names that reproduce the checkpoint's keys (model.diffusion_model.*). Weights come
from synthetic.py; outputs are summarised into test/fixtures/reference/unet_<name>.json.

Run:  /usr/bin/python3 scripts/reference/unet.py
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from summary import summary, write_reference  # noqa: E402
from synthetic import synthetic_tensor  # noqa: E402

PREFIX = "model.diffusion_model."
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

# SD 1.x: in 4, mc 320, mult (1, 2, 4, 4), 2 res blocks, attention at ds 1/2/4, 8 heads, context 768, 32 groups.
CONFIGS = {
    "sd1_tiny": dict(
        in_ch=4, out_ch=4, mc=32, mult=[1, 2, 2], num_res_blocks=2, attention_ds=[1, 2], heads=4, context_dim=24,
        groups=8, seed=0, sample=[2, 4, 8, 8], tokens=7, timesteps=[999.0, 250.5],
    ),
}


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, g):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(g, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, cout))
        self.out_layers = nn.Sequential(nn.GroupNorm(g, cout), nn.SiLU(), nn.Dropout(0), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb, context):
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class CrossAttention(nn.Module):
    def __init__(self, dim, ctx, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx, dim, bias=False)
        self.to_v = nn.Linear(ctx, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0))

    def forward(self, x, context):
        b, n, c = x.shape
        h = self.heads
        split = lambda t: t.reshape(b, t.shape[1], h, c // h).permute(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(c // h), dim=-1)
        out = torch.matmul(w, v).permute(0, 2, 1, 3).reshape(b, n, c)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, ctx, heads):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads)
        self.ff = nn.Module()
        self.ff.net = nn.Sequential(GEGLU(dim, dim * 4), nn.Dropout(0), nn.Linear(dim * 4, dim))
        self.attn2 = CrossAttention(dim, ctx, heads)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context):
        n1 = self.norm1(x)
        x = x + self.attn1(n1, n1)
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff.net(self.norm3(x))


class SpatialTransformer(nn.Module):
    def __init__(self, c, ctx, heads, g):
        super().__init__()
        self.norm = nn.GroupNorm(g, c, eps=1e-6)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(c, ctx, heads)])
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, emb, context):
        b, c, hh, ww = x.shape
        t = self.proj_in(self.norm(x)).reshape(b, c, hh * ww).permute(0, 2, 1)
        for block in self.transformer_blocks:
            t = block(t, context)
        return self.proj_out(t.permute(0, 2, 1).reshape(b, c, hh, ww)) + x


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.op = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x, emb, context):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, emb, context):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Conv(nn.Conv2d):
    def forward(self, x, emb, context):
        return super().forward(x)


class Step(nn.ModuleList):
    def forward(self, x, emb, context):
        for layer in self:
            x = layer(x, emb, context)
        return x


class UNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        mc, g, heads, ctx = cfg["mc"], cfg["groups"], cfg["heads"], cfg["context_dim"]
        emb = mc * 4
        self.mc = mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks = nn.ModuleList([Step([Conv(cfg["in_ch"], mc, 3, padding=1)])])
        chans, ch, ds = [mc], mc, 1
        for level, mult in enumerate(cfg["mult"]):
            for _ in range(cfg["num_res_blocks"]):
                layers = [ResBlock(ch, mult * mc, emb, g)]
                ch = mult * mc
                if ds in cfg["attention_ds"]:
                    layers.append(SpatialTransformer(ch, ctx, heads, g))
                self.input_blocks.append(Step(layers))
                chans.append(ch)
            if level != len(cfg["mult"]) - 1:
                self.input_blocks.append(Step([Downsample(ch)]))
                chans.append(ch)
                ds *= 2
        self.middle_block = Step([ResBlock(ch, ch, emb, g), SpatialTransformer(ch, ctx, heads, g), ResBlock(ch, ch, emb, g)])
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg["mult"]))[::-1]:
            for i in range(cfg["num_res_blocks"] + 1):
                layers = [ResBlock(ch + chans.pop(), mc * mult, emb, g)]
                ch = mc * mult
                if ds in cfg["attention_ds"]:
                    layers.append(SpatialTransformer(ch, ctx, heads, g))
                if level and i == cfg["num_res_blocks"]:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Step(layers))
        self.out = nn.Sequential(nn.GroupNorm(g, ch), nn.SiLU(), nn.Conv2d(ch, cfg["out_ch"], 3, padding=1))

    def forward(self, x, t, context):
        emb = self.time_embed(timestep_embedding(t, self.mc))
        hs = []
        for block in self.input_blocks:
            x = block(x, emb, context)
            hs.append(x)
        x = self.middle_block(x, emb, context)
        for block in self.output_blocks:
            x = block(torch.cat([x, hs.pop()], dim=1), emb, context)
        return self.out(x)


def main():
    for name, cfg in CONFIGS.items():
        model = UNet(cfg).eval()
        sd = {PREFIX + k: synthetic_tensor(PREFIX + k, list(v.shape), cfg["seed"]) for k, v in model.state_dict().items()}
        model.load_state_dict({k[len(PREFIX):]: v for k, v in sd.items()})
        sample = synthetic_tensor("sample", cfg["sample"], cfg["seed"]) * 8
        context = synthetic_tensor("context", [cfg["sample"][0], cfg["tokens"], cfg["context_dim"]], cfg["seed"]) * 4
        t = torch.tensor(cfg["timesteps"], dtype=torch.float32)
        with torch.no_grad():
            out_sample = model(sample, t, context)
        out = {
            "generator": "scripts/reference/unet.py",
            "torch": torch.__version__,
            "ldm_prefix": PREFIX,
            "config": cfg,
            "tensors": {k: list(v.shape) for k, v in sd.items()},
            "inputs": {"sample": ["sample", 8], "context": ["context", 4]},
            "out_sample": summary(out_sample),
        }
        path = write_reference(ROOT, f"unet_{name}.json", out)
        print(f"wrote {path}: out_sample {list(out_sample.shape)} sum {out['out_sample']['sum']:.6f}")


if __name__ == "__main__":
    main()
