"""PyTorch samplers written to the same formulas as engine/schedulers.ts (diffusers' Euler,
Euler ancestral and DPM-Solver++ 2M with Karras sigmas), with torch's CPU generator for the noise
(one generator per picture, seeded seed+i, as engine/pipeline.ts does). Latent math runs in
float64 and is stored as float32 after each step, as the engine does, so the two can be compared
to 1e-3 on the trained weights."""
import json
import math
import os

import numpy as np
import torch

import bpe
import export
import models


def sigma_table(cfg):
    betas = torch.linspace(cfg['beta_start'] ** 0.5, cfg['beta_end'] ** 0.5, cfg['num_train_timesteps'], dtype=torch.float32) ** 2
    ac = torch.cumprod(1.0 - betas, 0)
    return (((1 - ac) / ac) ** 0.5).double().numpy()


def round_half_even(x):
    return float(np.round(x))


def f32(x):
    return np.asarray(x, dtype=np.float32)


def schedule(name, cfg, steps):
    """(timesteps, sigmas + [0], init_noise_sigma)."""
    table = sigma_table(cfg)
    n_train = cfg['num_train_timesteps']
    if name in ('Euler', 'Euler a'):
        assert cfg.get('timestep_spacing') == 'leading'
        ratio = n_train // steps
        ts = [float(k * ratio + cfg['steps_offset']) for k in reversed(range(steps))]
        sig = [float(np.float32(np.interp(t, np.arange(n_train), table))) for t in ts] + [0.0]
        return ts, sig, math.sqrt(max(sig) ** 2 + 1)
    if name == 'DPM++ 2M Karras':
        log_sigmas = np.log(table).astype(np.float32).astype(np.float64)
        smin, smax, rho = table[0], table[-1], 7.0
        karras = [(smax ** (1 / rho) + (k / (steps - 1)) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho for k in range(steps)]

        def sigma_to_t(s):
            ls = math.log(max(s, 1e-10))
            low = max([i for i in range(len(log_sigmas)) if ls - log_sigmas[i] >= 0] or [0])
            low = min(low, len(log_sigmas) - 2)
            lo, hi = log_sigmas[low], log_sigmas[low + 1]
            w = min(max((lo - ls) / (lo - hi), 0.0), 1.0)
            return (1 - w) * low + w * (low + 1)

        ts = [round_half_even(sigma_to_t(s)) for s in karras]
        return ts, [float(np.float32(s)) for s in karras] + [0.0], 1.0
    raise ValueError(name)


def alpha_sigma(s):
    a = 1 / math.sqrt(s * s + 1)
    return a, s * a


class Model:
    def __init__(self, work):
        # Linear layers as 1x1 convolutions (see models.linear): same arithmetic to float32
        # rounding, several times faster with Debian's reference BLAS.
        models.FAST_LINEAR = True
        self.text, self.unet, self.vae, self.sf, self.step = export.load(work)
        self.tok = bpe.Tokenizer.load(os.path.join(work, 'tokenizer'))
        self.cache = {}

    @torch.no_grad()
    def encode(self, prompts):
        key = tuple(prompts)
        if key not in self.cache:
            ids = torch.tensor([self.tok.encode(p) for p in prompts], dtype=torch.long)
            self.cache[key] = self.text(ids)
        return self.cache[key]

    @torch.no_grad()
    def eps(self, x, t, cond, guidance):
        """Guided epsilon for one picture: UNet batch [uncond, cond]."""
        inp = torch.from_numpy(np.concatenate([x, x])).float()
        out = self.unet(inp, torch.full((2,), t, dtype=torch.float32), cond).double().numpy()
        u, c = out[0:1], out[1:2]
        return f32(u + guidance * (c - u)).astype(np.float64)

    @torch.no_grad()
    def decode(self, latent):
        img = self.vae.decoder(torch.from_numpy(f32(latent / self.sf)))
        return np.clip(np.round(np.clip(img.double().numpy() / 2 + 0.5, 0, 1) * 255), 0, 255).astype(np.uint8)


def sample(model, cfg, prompt, seed, sampler='DPM++ 2M Karras', steps=20, guidance=7.0, negative='', size=(8, 8)):
    """One picture as the engine draws picture 0 of a job with this seed: (final latent, rgb uint8 [3,H,W])."""
    cond = model.encode([negative, prompt])
    gen = torch.Generator().manual_seed(seed)
    shape = (1, models.LATENT_CHANNELS, size[0], size[1])
    x = torch.randn(shape, generator=gen).double().numpy()
    ts, sig, init_sigma = schedule(sampler, cfg, steps)
    x = f32(x * init_sigma).astype(np.float64)
    prev_x0 = None
    for i, t in enumerate(ts):
        s, sn = sig[i], sig[i + 1]
        if sampler in ('Euler', 'Euler a'):
            inp = f32(x * (1 / math.sqrt(s * s + 1)))
            m = model.eps(inp, t, cond, guidance)
            target, up = sn, 0.0
            if sampler == 'Euler a':
                up = math.sqrt(sn * sn * (s * s - sn * sn) / (s * s))
                target = math.sqrt(max(sn * sn - up * up, 0))
            d0 = x - s * m
            x = f32(x + (x - d0) * ((target - s) / s)).astype(np.float64)
            if up > 0:
                z = torch.randn(shape, generator=gen).double().numpy()
                x = f32(x + z * up).astype(np.float64)
        else:
            m = model.eps(f32(x), t, cond, guidance)
            a_s, s_s = alpha_sigma(s)
            a_t, s_t = alpha_sigma(sn)
            x0 = f32((1 / a_s) * x + (-s_s / a_s) * m).astype(np.float64)
            lam_s = math.log(a_s) - math.log(s_s)
            lam_t = math.inf if s_t == 0 else math.log(a_t) - math.log(s_t)
            h = lam_t - lam_s
            ratio = s_t / s_s
            c = -a_t * (math.exp(-h) - 1)
            if i == 0 or i == len(ts) - 1:
                x = f32(ratio * x + c * x0).astype(np.float64)
            else:
                a_p, s_p = alpha_sigma(sig[i - 1])
                r0 = (lam_s - (math.log(a_p) - math.log(s_p))) / h
                x = f32(ratio * x + c * x0 + (0.5 * c / r0) * (x0 - prev_x0)).astype(np.float64)
            prev_x0 = x0
    latent = f32(x)
    return latent, model.decode(latent)[0]


def load_scheduler(model_dir):
    return json.load(open(os.path.join(model_dir, 'scheduler', 'scheduler_config.json')))
