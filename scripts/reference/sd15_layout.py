#!/usr/bin/python3
"""The full-size SD 1.5 tensor layout (LDM names and shapes) of the parts the engine builds:
CLIP ViT-L text encoder, UNet, VAE decoder + post_quant_conv -- taken from this folder's
reference modules at SD 1.5's sizes. Written to test/fixtures/reference/sd15_layout.json for the
full-size conversion measurement (bench/checkpoint-convert.ts) and the detection tests.

Run:  /usr/bin/python3 scripts/reference/sd15_layout.py   (builds the modules on the CPU: ~4 GB RAM)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import clip_text  # noqa: E402
import unet  # noqa: E402
import vae_decoder  # noqa: E402
from summary import write_reference  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

CLIP = dict(vocab=49408, width=768, positions=77, layers=12, heads=12, intermediate=3072, seed=0)
UNET = dict(in_ch=4, out_ch=4, mc=320, mult=[1, 2, 4, 4], num_res_blocks=2, groups=32, depth=[1, 1, 1, 0], middle_depth=1,
            heads=8, head_channels=None, linear_proj=False, context_dim=768, adm=None)
VAE = dict(z=4, ch=128, ch_mult=[1, 2, 4, 4], num_res_blocks=2, groups=32, out_ch=3)


def shapes(prefix, module):
    return {prefix + k: list(v.shape) for k, v in module.state_dict().items()}


def clip_l_shapes(cfg, prefix=clip_text.PREFIX):
    """CLIP ViT-L's LDM names and shapes under `prefix` (the names follow clip_text.ldm_state_dict, not the module tree)."""
    layout = {}
    text = clip_text.TextEncoder(cfg)
    names = {
        "tok.weight": "embeddings.token_embedding.weight",
        "pos": "embeddings.position_embedding.weight",
        "final.weight": "final_layer_norm.weight",
        "final.bias": "final_layer_norm.bias",
    }
    for k, v in text.state_dict().items():
        if k in names:
            layout[prefix + names[k]] = list(v.shape)
    d, i = cfg["width"], cfg["intermediate"]
    for n in range(cfg["layers"]):
        p = f"{prefix}encoder.layers.{n}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            layout[p + f"self_attn.{proj}.weight"], layout[p + f"self_attn.{proj}.bias"] = [d, d], [d]
        for ln in ("layer_norm1", "layer_norm2"):
            layout[p + f"{ln}.weight"], layout[p + f"{ln}.bias"] = [d], [d]
        layout[p + "mlp.fc1.weight"], layout[p + "mlp.fc1.bias"] = [i, d], [i]
        layout[p + "mlp.fc2.weight"], layout[p + "mlp.fc2.bias"] = [d, i], [d]
    return layout


def main():
    layout = clip_l_shapes(CLIP)
    layout.update(shapes("model.diffusion_model.", unet.UNet(UNET)))
    layout.update(shapes("first_stage_model.", vae_decoder.Vae(VAE)))
    path = write_reference(ROOT, "sd15_layout.json", {"generator": "scripts/reference/sd15_layout.py", "tensors": layout})
    print(f"wrote {path}: {len(layout)} tensors")


if __name__ == "__main__":
    main()
