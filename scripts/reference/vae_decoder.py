#!/usr/bin/python3
"""Reference numbers for the engine's VAE graphs (engine/onnx-build/vae.ts): decoder and encoder.

The LDM KL-autoencoder decoder (post_quant_conv, conv_in, mid resnet/attention/resnet, up levels
of resnet blocks with nearest-2x upsampling, GroupNorm + swish + conv_out), written here from
torch.nn parts (nn.GroupNorm, nn.Conv2d, F.interpolate, bmm attention), loaded from a state dict
in the checkpoint layout (first_stage_model.*) filled by synthetic.py, run on a fixed latent, and
summarised into test/fixtures/reference/vae_decoder_<name>.json. The encoder (conv_in, down levels
with LDM's pad-then-stride-2 downsampling, mid block, conv_out to mean || logvar, quant_conv) runs
on a fixed image and its output is recorded there too.

Run:  /usr/bin/python3 scripts/reference/vae_decoder.py
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from summary import summary, write_reference  # noqa: E402
from synthetic import synthetic_tensor  # noqa: E402

PREFIX = "first_stage_model."
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

# SD's VAE: z 4, ch 128, ch_mult (1, 2, 4, 4), 2 res blocks (3 per up level), 32 groups.
CONFIGS = {
    "tiny": dict(z=4, ch=32, ch_mult=[1, 2, 2], num_res_blocks=1, groups=8, out_ch=3, seed=0, latent=[2, 4, 6, 5]),
}


class Resnet(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class Attn(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(b, c, hh * ww).permute(0, 2, 1)
        k = self.k(h).reshape(b, c, hh * ww)
        w = torch.softmax(torch.bmm(q, k) * (c ** -0.5), dim=2)
        v = self.v(h).reshape(b, c, hh * ww)
        out = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Up(nn.Module):
    def __init__(self, blocks, upsample, cout):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if upsample:
            self.upsample = nn.Module()
            self.upsample.conv = nn.Conv2d(cout, cout, 3, padding=1)


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, mult, g = cfg["ch"], cfg["ch_mult"], cfg["groups"]
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg["z"], block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = Resnet(block_in, block_in, g)
        self.mid.attn_1 = Attn(block_in, g)
        self.mid.block_2 = Resnet(block_in, block_in, g)
        ups = []
        for level in reversed(range(len(mult))):
            block_out = ch * mult[level]
            blocks = []
            for _ in range(cfg["num_res_blocks"] + 1):
                blocks.append(Resnet(block_in, block_out, g))
                block_in = block_out
            ups.insert(0, Up(blocks, level != 0, block_out))
        self.up = nn.ModuleList(ups)
        self.norm_out = nn.GroupNorm(g, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, cfg["out_ch"], 3, padding=1)

    def forward(self, z):
        x = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(range(len(self.up))):
            for block in self.up[level].block:
                x = block(x)
            if hasattr(self.up[level], "upsample"):
                x = self.up[level].upsample.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(x)))


class Downsample(nn.Module):
    """LDM's: pad right and bottom by one, then a 3x3 conv with stride 2 and no padding."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Down(nn.Module):
    def __init__(self, blocks, downsample, cout):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if downsample:
            self.downsample = Downsample(cout)


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, mult, g = cfg["ch"], cfg["ch_mult"], cfg["groups"]
        self.conv_in = nn.Conv2d(cfg["out_ch"], ch, 3, padding=1)
        block_in = ch
        downs = []
        for level, m in enumerate(mult):
            blocks = []
            for _ in range(cfg["num_res_blocks"]):
                blocks.append(Resnet(block_in, ch * m, g))
                block_in = ch * m
            downs.append(Down(blocks, level != len(mult) - 1, block_in))
        self.down = nn.ModuleList(downs)
        self.mid = nn.Module()
        self.mid.block_1 = Resnet(block_in, block_in, g)
        self.mid.attn_1 = Attn(block_in, g)
        self.mid.block_2 = Resnet(block_in, block_in, g)
        self.norm_out = nn.GroupNorm(g, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, 2 * cfg["z"], 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for down in self.down:
            for block in down.block:
                x = block(x)
            if hasattr(down, "downsample"):
                x = down.downsample(x)
        x = self.mid.block_2(self.mid.attn_1(self.mid.block_1(x)))
        return self.conv_out(F.silu(self.norm_out(x)))


class Vae(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg["z"], 2 * cfg["z"], 1)
        self.post_quant_conv = nn.Conv2d(cfg["z"], cfg["z"], 1)
        self.decoder = Decoder(cfg)

    def forward(self, z):
        return self.decoder(self.post_quant_conv(z))

    def encode(self, image):
        """The posterior's parameters: mean and log-variance stacked on the channel axis."""
        return self.quant_conv(self.encoder(image))



def main():
    for name, cfg in CONFIGS.items():
        model = Vae(cfg).eval()
        # The module tree mirrors the LDM names, so the state dict's keys are the checkpoint's.
        sd = {PREFIX + k: synthetic_tensor(PREFIX + k, list(v.shape), cfg["seed"]) for k, v in model.state_dict().items()}
        model.load_state_dict({k[len(PREFIX):]: v for k, v in sd.items()})
        latent = synthetic_tensor("latent", cfg["latent"], cfg["seed"])
        image_shape = [cfg["latent"][0], cfg["out_ch"], cfg["latent"][2] * 4, cfg["latent"][3] * 4]
        image = synthetic_tensor("image", image_shape, cfg["seed"]) * 32
        with torch.no_grad():
            sample = model(latent)
            moments = model.encode(image)
        out = {
            "generator": "scripts/reference/vae_decoder.py",
            "torch": torch.__version__,
            "ldm_prefix": PREFIX,
            "config": cfg,
            "tensors": {k: list(v.shape) for k, v in sd.items()},
            "latent_name": "latent",
            "sample": summary(sample),
            "image_input": ["image", 32, image_shape],
            "latent_parameters": summary(moments, stride=3),
        }
        path = write_reference(ROOT, f"vae_decoder_{name}.json", out)
        print(f"wrote {path}: sample {list(sample.shape)} sum {out['sample']['sum']:.6f}")


if __name__ == "__main__":
    main()
