#!/usr/bin/python3
"""Reference numbers for LoRA merging (engine/checkpoint/lora.ts).

Base checkpoint tensors (seed 0) and LoRA tensors (kohya: seed 1, PEFT: seed 2) come from
synthetic.py; each LoRA module is applied with torch as the kohya/A1111 formula says:

    W' = W + weight * (alpha / rank) * (up.reshape(out, rank) @ down.reshape(rank, -1)).reshape(W.shape)

where a missing alpha means alpha = rank, and a module on OpenCLIP's q/k/v changes that third of
the fused in_proj_weight rows. The merged tensors are summarised into
test/fixtures/reference/lora.json together with the tensor lists, alphas and weights used.

Run:  /usr/bin/python3 scripts/reference/lora.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from summary import summary, write_reference  # noqa: E402
from synthetic import synthetic_tensor  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
U = "model.diffusion_model."
TE = "cond_stage_model.transformer.text_model."
OC = "cond_stage_model.model.transformer.resblocks.0."

CASES = {
    "sd1": {
        "base": {
            U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": [32, 32],
            U + "input_blocks.1.1.proj_in.weight": [32, 32, 1, 1],
            U + "input_blocks.1.0.in_layers.2.weight": [32, 16, 3, 3],
            TE + "encoder.layers.0.self_attn.q_proj.weight": [32, 32],
        },
        "loras": [
            {
                "name": "kohya_sd1", "seed": 1, "te_weight": 0.6, "unet_weight": 0.8,
                "modules": {
                    # name: (target, down shape, up shape, alpha or None, row offset)
                    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": (U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", [4, 32], [32, 4], 2.0, 0),
                    "lora_unet_down_blocks_0_attentions_0_proj_in": (U + "input_blocks.1.1.proj_in.weight", [4, 32, 1, 1], [32, 4, 1, 1], 4.0, 0),
                    "lora_unet_down_blocks_0_resnets_0_conv1": (U + "input_blocks.1.0.in_layers.2.weight", [4, 16, 3, 3], [32, 4, 1, 1], 1.0, 0),
                    "lora_te_text_model_encoder_layers_0_self_attn_q_proj": (TE + "encoder.layers.0.self_attn.q_proj.weight", [4, 32], [32, 4], 8.0, 0),
                },
                "down": ".lora_down.weight", "up": ".lora_up.weight",
            },
            {
                "name": "peft_sd1", "seed": 2, "te_weight": -0.5, "unet_weight": -0.5,
                "modules": {
                    "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": (U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", [2, 32], [32, 2], None, 0),
                },
                "down": ".lora_A.weight", "up": ".lora_B.weight",
            },
        ],
    },
    "sd2_fused": {
        "base": {
            OC + "attn.in_proj_weight": [96, 32],
            OC + "attn.out_proj.weight": [32, 32],
        },
        "loras": [
            {
                "name": "kohya_sd2", "seed": 1, "te_weight": 1.0, "unet_weight": 1.0,
                "modules": {
                    "lora_te_text_model_encoder_layers_0_self_attn_k_proj": (OC + "attn.in_proj_weight", [4, 32], [32, 4], 4.0, 32),
                    "lora_te_text_model_encoder_layers_0_self_attn_out_proj": (OC + "attn.out_proj.weight", [4, 32], [32, 4], 2.0, 0),
                },
                "down": ".lora_down.weight", "up": ".lora_up.weight",
            },
        ],
    },
}


def main():
    out = {}
    for case_name, case in CASES.items():
        merged = {name: synthetic_tensor(name, shape, 0).double() for name, shape in case["base"].items()}
        loras = []
        for lora in case["loras"]:
            tensors = {}
            alphas = {}
            for module, (target, down_shape, up_shape, alpha, row_offset) in lora["modules"].items():
                down_name, up_name = module + lora["down"], module + lora["up"]
                down = synthetic_tensor(down_name, down_shape, lora["seed"]).double()
                up = synthetic_tensor(up_name, up_shape, lora["seed"]).double()
                tensors[down_name], tensors[up_name] = down_shape, up_shape
                rank = down_shape[0]
                if alpha is not None:
                    alphas[module + ".alpha"] = alpha
                scale = (rank if alpha is None else alpha) / rank
                weight = lora["te_weight"] if module.startswith(("lora_te", "text_encoder")) else lora["unet_weight"]
                delta = up.reshape(up_shape[0], rank) @ down.reshape(rank, -1)
                w = merged[target]
                rows = up_shape[0]
                block = w.reshape(w.shape[0], -1)[row_offset:row_offset + rows]
                block += weight * scale * delta
            loras.append({"name": lora["name"], "seed": lora["seed"], "te_weight": lora["te_weight"], "unet_weight": lora["unet_weight"], "tensors": tensors, "alphas": alphas})
        out[case_name] = {
            "base": case["base"],
            "loras": loras,
            "merged": {name: summary(t.float(), stride=7) for name, t in merged.items()},
        }
    print(write_reference(ROOT, "lora.json", out))


if __name__ == "__main__":
    main()
