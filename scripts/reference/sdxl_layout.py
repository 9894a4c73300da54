#!/usr/bin/python3
"""The full-size SDXL base tensor layout (LDM/SGM names and shapes) of the parts the engine builds:
CLIP ViT-L (conditioner.embedders.0.transformer.text_model.*), OpenCLIP bigG
(conditioner.embedders.1.model.*), the UNet with label_emb, the KL-VAE -- taken from this folder's
reference modules at SDXL's sizes. The modules are built on torch's "meta" device, so no weights
are allocated (SDXL's 3.5 B parameters would need 14 GB as float32). Written to
test/fixtures/reference/sdxl_layout.json for the full-size conversion measurement
(bench/checkpoint-convert.ts --family sdxl).

Run:  /usr/bin/python3 scripts/reference/sdxl_layout.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import openclip_text  # noqa: E402
import sd15_layout  # noqa: E402
import unet  # noqa: E402
import vae_decoder  # noqa: E402
from summary import write_reference  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

CLIP_L = dict(sd15_layout.CLIP)
CLIP_G = dict(vocab=49408, width=1280, positions=77, layers=32, heads=20, intermediate=5120, projection=1280, seed=0,
              prefix="conditioner.embedders.1.model.")
UNET = dict(in_ch=4, out_ch=4, mc=320, mult=[1, 2, 4], num_res_blocks=2, groups=32, depth=[0, 2, 10], middle_depth=10,
            heads=None, head_channels=64, linear_proj=True, context_dim=2048, adm=dict(pooled=1280, time_dim=256))
VAE = dict(sd15_layout.VAE)


def on_meta(build):
    """Builds a module with every torch.empty on the meta device: shapes only, no memory."""
    real_empty = torch.empty

    def empty(*args, **kwargs):
        kwargs.setdefault("device", "meta")
        return real_empty(*args, **kwargs)

    torch.empty = empty
    try:
        return build()
    finally:
        torch.empty = real_empty


def main():
    layout = sd15_layout.clip_l_shapes(CLIP_L, "conditioner.embedders.0.transformer.text_model.")
    layout.update(sd15_layout.shapes(CLIP_G["prefix"], on_meta(lambda: openclip_text.TextTower(CLIP_G))))
    layout.update(sd15_layout.shapes("model.diffusion_model.", on_meta(lambda: unet.UNet(UNET))))
    layout.update(sd15_layout.shapes("first_stage_model.", on_meta(lambda: vae_decoder.Vae(VAE))))
    params = {part: 0 for part in ("conditioner.embedders.0", "conditioner.embedders.1", "model.diffusion_model", "first_stage_model")}
    for name, shape in layout.items():
        n = 1
        for d in shape:
            n *= d
        params[next(p for p in params if name.startswith(p))] += n
    path = write_reference(ROOT, "sdxl_layout.json", {"generator": "scripts/reference/sdxl_layout.py", "parameters": params, "tensors": layout})
    print(f"wrote {path}: {len(layout)} tensors, parameters {params}")


if __name__ == "__main__":
    main()
