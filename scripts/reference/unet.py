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

# SD 1.x: in 4, mc 320, mult (1, 2, 4, 4), 2 res blocks, transformer depth (1, 1, 1, 0), 8 heads,
#         conv proj_in/out, context 768.
# SD 2.x: the same with 64-channel heads, linear proj_in/out, context 1024.
# SDXL:   mc 320, mult (1, 2, 4), depth (0, 2, 10), middle 10, 64-channel heads, linear proj,
#         context 2048, label_emb over [pooled text 1280, 6 time ids x 256] = 2816.
# All with 32 GroupNorm groups; reduced here to stay fast on a CPU.
TINY = dict(in_ch=4, out_ch=4, mc=32, mult=[1, 2, 2], num_res_blocks=2, groups=8, seed=0, sample=[2, 4, 8, 8], tokens=7,
            timesteps=[999.0, 250.5])
CONFIGS = {
    "sd1_tiny": dict(TINY, depth=[1, 1, 0], middle_depth=1, heads=4, head_channels=None, linear_proj=False, context_dim=24, adm=None),
    "sd2_tiny": dict(TINY, depth=[1, 1, 0], middle_depth=1, heads=None, head_channels=8, linear_proj=True, context_dim=32, adm=None),
    "sdxl_tiny": dict(TINY, depth=[0, 2, 3], middle_depth=3, heads=None, head_channels=8, linear_proj=True, context_dim=48,
                      adm=dict(pooled=24, time_dim=8), time_ids=[[64, 64, 0, 0, 64, 64], [48, 80, 4, 8, 64, 64]]),
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
    def __init__(self, c, ctx, heads, g, depth, linear):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(g, c, eps=1e-6)
        self.proj_in = nn.Linear(c, c) if linear else nn.Conv2d(c, c, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(c, ctx, heads) for _ in range(depth)])
        self.proj_out = nn.Linear(c, c) if linear else nn.Conv2d(c, c, 1)

    def forward(self, x, emb, context):
        b, c, hh, ww = x.shape
        tokens = lambda t: t.reshape(b, c, hh * ww).permute(0, 2, 1)  # noqa: E731
        image = lambda t: t.permute(0, 2, 1).reshape(b, c, hh, ww)  # noqa: E731
        h = self.norm(x)
        t = self.proj_in(tokens(h)) if self.linear else tokens(self.proj_in(h))
        for block in self.transformer_blocks:
            t = block(t, context)
        return (image(self.proj_out(t)) if self.linear else self.proj_out(image(t))) + x


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
        mc, g, ctx = cfg["mc"], cfg["groups"], cfg["context_dim"]
        emb = mc * 4
        self.mc = mc
        self.cfg = cfg

        def transformer(c, depth):
            heads = cfg["heads"] or c // cfg["head_channels"]
            return SpatialTransformer(c, ctx, heads, g, depth, cfg["linear_proj"])

        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        if cfg["adm"]:
            adm = cfg["adm"]["pooled"] + 6 * cfg["adm"]["time_dim"]
            self.label_emb = nn.Sequential(nn.Sequential(nn.Linear(adm, emb), nn.SiLU(), nn.Linear(emb, emb)))
        self.input_blocks = nn.ModuleList([Step([Conv(cfg["in_ch"], mc, 3, padding=1)])])
        chans, ch = [mc], mc
        for level, mult in enumerate(cfg["mult"]):
            for _ in range(cfg["num_res_blocks"]):
                layers = [ResBlock(ch, mult * mc, emb, g)]
                ch = mult * mc
                if cfg["depth"][level]:
                    layers.append(transformer(ch, cfg["depth"][level]))
                self.input_blocks.append(Step(layers))
                chans.append(ch)
            if level != len(cfg["mult"]) - 1:
                self.input_blocks.append(Step([Downsample(ch)]))
                chans.append(ch)
        self.middle_block = Step([ResBlock(ch, ch, emb, g), transformer(ch, cfg["middle_depth"]), ResBlock(ch, ch, emb, g)])
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg["mult"]))[::-1]:
            for i in range(cfg["num_res_blocks"] + 1):
                layers = [ResBlock(ch + chans.pop(), mc * mult, emb, g)]
                ch = mc * mult
                if cfg["depth"][level]:
                    layers.append(transformer(ch, cfg["depth"][level]))
                if level and i == cfg["num_res_blocks"]:
                    layers.append(Upsample(ch))
                self.output_blocks.append(Step(layers))
        self.out = nn.Sequential(nn.GroupNorm(g, ch), nn.SiLU(), nn.Conv2d(ch, cfg["out_ch"], 3, padding=1))

    def forward(self, x, t, context, pooled=None, time_ids=None):
        emb = self.time_embed(timestep_embedding(t, self.mc))
        if self.cfg["adm"]:
            # SDXL's vector conditioning: pooled text, then each of the 6 size/crop ids embedded like a timestep.
            ids = timestep_embedding(time_ids.flatten(), self.cfg["adm"]["time_dim"]).reshape(x.shape[0], -1)
            emb = emb + self.label_emb(torch.cat([pooled, ids], dim=-1))
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
        extra = {}
        if cfg["adm"]:
            extra = dict(
                pooled=synthetic_tensor("pooled", [cfg["sample"][0], cfg["adm"]["pooled"]], cfg["seed"]) * 4,
                time_ids=torch.tensor(cfg["time_ids"], dtype=torch.float32),
            )
        with torch.no_grad():
            out_sample = model(sample, t, context, **extra)
        out = {
            "generator": "scripts/reference/unet.py",
            "torch": torch.__version__,
            "ldm_prefix": PREFIX,
            "config": cfg,
            "tensors": {k: list(v.shape) for k, v in sd.items()},
            "inputs": {"sample": ["sample", 8], "context": ["context", 4], "pooled": ["pooled", 4]},
            "out_sample": summary(out_sample),
        }
        path = write_reference(ROOT, f"unet_{name}.json", out)
        print(f"wrote {path}: out_sample {list(out_sample.shape)} sum {out['out_sample']['sum']:.6f}")


if __name__ == "__main__":
    main()
