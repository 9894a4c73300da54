#!/usr/bin/python3
"""Reference numbers for whole txt2img generations from one tiny SDXL-layout checkpoint, the way
diffusers' StableDiffusionXLPipeline + EulerDiscreteScheduler run them:

- encoder 1 (CLIP ViT-L layout, conditioner.embedders.0.transformer.text_model.*, padded with the
  end token) and encoder 2 (OpenCLIP bigG layout, conditioner.embedders.1.model.*, padded with
  "!" = id 0); hidden states = concat(penultimate of 1, penultimate of 2) on the channel axis;
  pooled text_embeds from encoder 2 at the end token, times text_projection;
- an empty negative prompt is zeros (force_zeros_for_empty_prompt), a written one is encoded;
- time_ids (original h, w, crop top, left, target h, w) for both halves of guidance;
- SDXL base's scheduler: scaled-linear betas, "leading" spacing with steps_offset 1 (Euler, so
  the starting noise is scaled by sqrt(sigma_max^2 + 1)); the Turbo run uses "trailing" spacing,
  one step and no guidance (UNet batch 1), as the engine's Turbo sampler does;
- the SDXL VAE scaling factor 0.13025.

Scheduler arithmetic in torch float32 as diffusers does; starting noise from torch's CPU
generator. Reuses the parts of clip_text.py, openclip_text.py, unet.py and vae_decoder.py.
Writes test/fixtures/reference/e2e_sdxl_tiny.json.

Run:  /usr/bin/python3 scripts/reference/e2e_sdxl.py
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import clip_text  # noqa: E402
import openclip_text  # noqa: E402
import unet  # noqa: E402
import vae_decoder  # noqa: E402
from summary import summary, write_reference  # noqa: E402
from synthetic import synthetic_tensor  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

CLIP_L_PREFIX = "conditioner.embedders.0.transformer.text_model."
CLIP_L = dict(vocab=49408, width=16, positions=77, layers=2, heads=2, intermediate=32, seed=0)
CLIP_G = dict(openclip_text.CONFIGS["sdxl_g_tiny"])
UNET = dict(unet.CONFIGS["sdxl_tiny"], context_dim=CLIP_L["width"] + CLIP_G["width"], sample=[1, 4, 8, 8])
# Three upsamplings, as in every SD VAE, so the engine's 8x pixel grid holds.
VAE = dict(vae_decoder.CONFIGS["tiny"], ch_mult=[1, 2, 2, 2])
SCALING_FACTOR = 0.13025
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                 steps_offset=1, prediction_type="epsilon")
HEIGHT = WIDTH = 8 * UNET["sample"][2]

# "a dog on the beach" and "blurry" in CLIP's vocabulary (the test checks the engine's tokenizer agrees).
PROMPT = [49406, 320, 1929, 525, 518, 2117, 49407]
NEGATIVE = [49406, 21977, 49407]
RUNS = {
    "cfg_empty_negative": dict(negative=None, guidance=5.0, steps=4, spacing="leading", seed=42),
    "cfg_negative": dict(negative=NEGATIVE, guidance=7.5, steps=4, spacing="leading", seed=7),
    "turbo": dict(negative=None, guidance=0.0, steps=1, spacing="trailing", seed=3),
}


def prefixed(model, prefix, seed):
    sd = {prefix + k: synthetic_tensor(prefix + k, list(v.shape), seed) for k, v in model.state_dict().items()}
    model.load_state_dict({k[len(prefix):]: v for k, v in sd.items()})
    return sd


def euler_schedule(steps, spacing, s):
    n = s["num_train_timesteps"]
    betas = torch.linspace(s["beta_start"] ** 0.5, s["beta_end"] ** 0.5, n, dtype=torch.float32) ** 2
    ac = torch.cumprod(1.0 - betas, dim=0)
    table = (((1 - ac) / ac) ** 0.5).numpy()
    if spacing == "leading":
        ratio = n // steps
        timesteps = (np.arange(0, steps) * ratio).round()[::-1].copy().astype(np.float32) + s["steps_offset"]
    else:  # trailing
        timesteps = (np.round(np.arange(n, 0, -n / steps)) - 1).astype(np.float32)
    sigmas = np.interp(timesteps, np.arange(0, len(table)), table)
    sigmas = torch.cat([torch.from_numpy(sigmas).to(torch.float32), torch.zeros(1)])
    init_sigma = sigmas.max() if spacing == "trailing" else (sigmas.max() ** 2 + 1) ** 0.5
    return torch.from_numpy(timesteps), sigmas, init_sigma


def main():
    text_l = clip_text.TextEncoder(CLIP_L).eval()
    text_l_sd = clip_text.ldm_state_dict(CLIP_L, CLIP_L_PREFIX)
    text_l.load_ldm(text_l_sd, CLIP_L_PREFIX)
    text_g = openclip_text.TextTower(CLIP_G).eval()
    text_g_sd = prefixed(text_g, CLIP_G["prefix"], CLIP_G["seed"])
    net = unet.UNet(UNET).eval()
    unet_sd = prefixed(net, "model.diffusion_model.", UNET["seed"])
    vae = vae_decoder.Vae(VAE).eval()
    vae_sd = prefixed(vae, "first_stage_model.", VAE["seed"])

    def encode(ids):
        """One prompt's [1, 77, 48] hidden states and [1, 24] pooled text_embeds."""
        pad_l = torch.tensor([ids + [49407] * (77 - len(ids))])
        pad_g = torch.tensor([ids + [0] * (77 - len(ids))])
        _, penultimate_l, _ = text_l(pad_l)
        _, penultimate_g, _, _, text_embeds = text_g(pad_g)
        return torch.cat([penultimate_l, penultimate_g], dim=-1), text_embeds

    out = {
        "generator": "scripts/reference/e2e_sdxl.py",
        "torch": torch.__version__,
        "clip_l": CLIP_L, "clip_g": CLIP_G, "unet": UNET, "vae": VAE,
        "scaling_factor": SCALING_FACTOR, "scheduler": SCHEDULER, "width": WIDTH, "height": HEIGHT,
        "tensors": {k: list(v.shape) for sd in (text_l_sd, text_g_sd, unet_sd, vae_sd) for k, v in sd.items()},
        "prompt_ids": PROMPT, "negative_ids": NEGATIVE,
        "runs": {},
    }
    time_ids = torch.tensor([[HEIGHT, WIDTH, 0, 0, HEIGHT, WIDTH]], dtype=torch.float32)
    with torch.no_grad():
        cond, cond_pooled = encode(PROMPT)
        out["prompt_hidden"] = summary(cond, stride=13)
        out["prompt_text_embeds"] = summary(cond_pooled, stride=1)
        for name, run in RUNS.items():
            cfg = run["guidance"] > 1
            if run["negative"] is None:
                uncond, uncond_pooled = torch.zeros_like(cond), torch.zeros_like(cond_pooled)
            else:
                uncond, uncond_pooled = encode(run["negative"])
            timesteps, sigmas, init_sigma = euler_schedule(run["steps"], run["spacing"], SCHEDULER)
            g = torch.Generator().manual_seed(run["seed"])
            latents = torch.randn(UNET["sample"], generator=g, dtype=torch.float32) * init_sigma
            steps = []
            for i, t in enumerate(timesteps):
                sigma, sigma_next = sigmas[i], sigmas[i + 1]
                x = latents / ((sigma ** 2 + 1) ** 0.5)
                if cfg:
                    eps_u, eps_c = net(torch.cat([x, x]), torch.stack([t, t]), torch.cat([uncond, cond]),
                                       pooled=torch.cat([uncond_pooled, cond_pooled]), time_ids=torch.cat([time_ids, time_ids])).chunk(2)
                    eps = eps_u + run["guidance"] * (eps_c - eps_u)
                else:
                    eps = net(x, t[None], cond, pooled=cond_pooled, time_ids=time_ids)
                x0 = latents - sigma * eps
                latents = latents + (latents - x0) / sigma * (sigma_next - sigma)
                steps.append(summary(latents, stride=1))
            image = vae(latents / SCALING_FACTOR)
            pixels = ((image / 2 + 0.5).clamp(0, 1) * 255).round()
            out["runs"][name] = {
                **run,
                "timesteps": timesteps.tolist(),
                "sigmas": sigmas.tolist(),
                "latents_after_step": steps,
                "image": summary(image, stride=11),
                # Packed RGB bytes as the engine returns them (HWC).
                "rgb": pixels[0].permute(1, 2, 0).flatten().to(torch.uint8).tolist(),
            }
            print(f"{name}: image sum {out['runs'][name]['image']['sum']:.6f}")
    path = write_reference(ROOT, "e2e_sdxl_tiny.json", out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
