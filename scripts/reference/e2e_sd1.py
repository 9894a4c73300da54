#!/usr/bin/python3
"""Reference numbers for a whole txt2img generation from one tiny SD 1.x-layout checkpoint:
CLIP text encoder (cond + empty uncond) -> 4 Euler steps with classifier-free guidance over the
UNet -> VAE decode, the way diffusers' StableDiffusionPipeline + EulerDiscreteScheduler run it
(scheduler arithmetic in torch float32 as diffusers does; starting noise from torch's CPU
generator). Reuses the part models of clip_text.py, unet.py and vae_decoder.py. Writes
test/fixtures/reference/e2e_sd1_tiny.json.

Run:  /usr/bin/python3 scripts/reference/e2e_sd1.py
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import clip_text  # noqa: E402
import unet  # noqa: E402
import vae_decoder  # noqa: E402
from summary import summary, write_reference  # noqa: E402
from synthetic import synthetic_tensor  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

CLIP = dict(vocab=49408, width=32, positions=77, layers=2, heads=4, intermediate=64, seed=0)
UNET = dict(unet.CONFIGS["sd1_tiny"], context_dim=32, sample=[1, 4, 8, 8])
VAE = dict(vae_decoder.CONFIGS["tiny"])
RUN = dict(steps=4, guidance=7.5, seed=42, scaling_factor=0.18215,
           scheduler=dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                          timestep_spacing="linspace", prediction_type="epsilon"))
PROMPT = [49406, 320, 1929, 539, 518, 2117, 49407]
EMPTY = [49406, 49407]


def prefixed(model, prefix, seed):
    sd = {prefix + k: synthetic_tensor(prefix + k, list(v.shape), seed) for k, v in model.state_dict().items()}
    model.load_state_dict({k[len(prefix):]: v for k, v in sd.items()})
    return sd


def euler_schedule(steps, s):
    betas = torch.linspace(s["beta_start"] ** 0.5, s["beta_end"] ** 0.5, s["num_train_timesteps"], dtype=torch.float32) ** 2
    ac = torch.cumprod(1.0 - betas, dim=0)
    table = (((1 - ac) / ac) ** 0.5).numpy()
    timesteps = np.linspace(0, s["num_train_timesteps"] - 1, steps, dtype=np.float32)[::-1].copy()
    sigmas = np.interp(timesteps, np.arange(0, len(table)), table)
    sigmas = torch.cat([torch.from_numpy(sigmas).to(torch.float32), torch.zeros(1)])
    return torch.from_numpy(timesteps), sigmas


def main():
    text = clip_text.TextEncoder(CLIP).eval()
    text_sd = clip_text.ldm_state_dict(CLIP)
    text.load_ldm(text_sd)
    net = unet.UNet(UNET).eval()
    unet_sd = prefixed(net, "model.diffusion_model.", UNET["seed"])
    vae = vae_decoder.Vae(VAE).eval()
    vae_sd = prefixed(vae, "first_stage_model.", VAE["seed"])

    pad = lambda p: p + [49407] * (CLIP["positions"] - len(p))  # noqa: E731
    ids = torch.tensor([pad(EMPTY), pad(PROMPT)], dtype=torch.long)
    timesteps, sigmas = euler_schedule(RUN["steps"], RUN["scheduler"])
    g = torch.Generator().manual_seed(RUN["seed"])
    latents = torch.randn(UNET["sample"], generator=g, dtype=torch.float32) * sigmas.max()
    steps = []
    with torch.no_grad():
        context = text(ids)[0]  # [uncond, cond]
        for i, t in enumerate(timesteps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            x_in = torch.cat([latents] * 2) / ((sigma ** 2 + 1) ** 0.5)
            eps_uncond, eps_cond = net(x_in, torch.stack([t, t]), context).chunk(2)
            eps = eps_uncond + RUN["guidance"] * (eps_cond - eps_uncond)
            x0 = latents - sigma * eps
            latents = latents + (latents - x0) / sigma * (sigma_next - sigma)
            steps.append(summary(latents, stride=7))
        image = vae(latents / RUN["scaling_factor"])

    out = {
        "generator": "scripts/reference/e2e_sd1.py",
        "torch": torch.__version__,
        "clip": CLIP, "unet": UNET, "vae": VAE, "run": RUN,
        "tensors": {k: list(v.shape) for sd in (text_sd, unet_sd, vae_sd) for k, v in sd.items()},
        "input_ids": ids.tolist(),
        "timesteps": timesteps.tolist(),
        "sigmas": sigmas.tolist(),
        "latents_after_step": steps,
        "image": summary(image, stride=11),
    }
    path = write_reference(ROOT, "e2e_sd1_tiny.json", out)
    print(f"wrote {path}: image {list(image.shape)} sum {out['image']['sum']:.6f}")


if __name__ == "__main__":
    main()
