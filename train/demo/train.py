"""Trains the demo model: a KL autoencoder, then the text encoder and UNet together on the
autoencoder's latents, with the diffusers DDPM schedule (scaled_linear 0.00085-0.012, 1000 steps,
epsilon prediction) and 10 % empty captions for classifier-free guidance.

    npm install --prefix /work/demo-data emoji-datasource-twitter@16.0.0 \
        emoji-datasource-google@16.0.0 emojilib@4.0.3
    /usr/bin/python3 train/demo/train.py --data /work/demo-data --work train/demo/out
    /usr/bin/python3 train/demo/export.py --work train/demo/out --out assets/models/demo

Debian's python3-torch (1.13, CPU) is enough: 13 min for the VAE and 48 min for the UNet on the
2-core machine while four other people ran their tests (OMP_WAIT_POLICY=PASSIVE helps there). Everything random comes
from the fixed seeds below, so a rerun on the same machine gives the same weights. The loss curve
goes to <work>/loss.csv (copied to train/demo/loss.csv for the repository).
"""
import argparse
import csv
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

import bpe
import data
import models

P_UNCOND = 0.1
KL_WEIGHT = 1e-4


def lr_at(step, total, peak, warmup=100):
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


class Log:
    def __init__(self, path, append=False):
        self.f = open(path, 'a' if append else 'w', newline='')
        self.w = csv.writer(self.f)
        if not append:
            self.w.writerow(['stage', 'step', 'loss', 'seconds'])
        self.t0 = time.time()

    def row(self, stage, step, loss):
        secs = time.time() - self.t0
        self.w.writerow([stage, step, f'{loss:.5f}', f'{secs:.0f}'])
        self.f.flush()
        print(f'{stage} step {step} loss {loss:.5f} at {secs:.0f}s', flush=True)


def train_vae(pics, steps, batch, log, gen):
    vae = models.VAE()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    running = None
    for step in range(steps):
        for g in opt.param_groups:
            g['lr'] = lr_at(step, steps, 1e-3)
        x = pics[torch.randint(0, len(pics), (batch,), generator=gen)]
        p = vae.encoder(x)
        mean, logvar = p.chunk(2, 1)
        logvar = logvar.clamp(-30, 20)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
        recon = vae.decoder(z)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = F.mse_loss(recon, x) + 0.5 * (recon - x).abs().mean() + KL_WEIGHT * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 20 == 0 or step == steps - 1:
            log.row('vae', step, running)
    return vae


def train_unet(latent_mean, latent_logvar, sf, recs, tok, steps, batch, log, gen, rng, work, stop_after):
    text = models.TextEncoder(len(tok.vocab))
    unet = models.UNet()
    params = list(text.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01)
    ac = models.ddpm_alphas_cumprod().float()
    running = None
    last = min(steps, stop_after or steps)
    for step in range(last):
        for g in opt.param_groups:
            g['lr'] = lr_at(step, steps, 5e-4)
        idx = torch.randint(0, len(recs), (batch,), generator=gen)
        captions = ['' if rng.random() < P_UNCOND else data.sample_caption(recs[i], rng) for i in idx.tolist()]
        ids = torch.tensor([tok.encode(c) for c in captions], dtype=torch.long)
        mean, logvar = latent_mean[idx], latent_logvar[idx]
        x0 = (mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)) * sf
        t = torch.randint(0, 1000, (batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = ac[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unet(xt, t.float(), text(ids, factored=True))
        loss = F.mse_loss(pred, noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 20 == 0 or step == last - 1:
            log.row('unet', step, running)
        if (step + 1) % 250 == 0 or step == last - 1:
            torch.save({'text': text.state_dict(), 'unet': unet.state_dict(), 'step': step + 1},
                       os.path.join(work, 'unet.pt'))
    return text, unet


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default='/work/demo-data', help='npm prefix holding the emoji packages')
    ap.add_argument('--work', default='train/demo/out', help='checkpoints, tokenizer, loss.csv')
    ap.add_argument('--vae-steps', type=int, default=1200)
    ap.add_argument('--unet-steps', type=int, default=1200)
    ap.add_argument('--stop-after', type=int, default=0,
                    help='end the UNet stage after this many steps of the --unet-steps schedule (0: run it all)')
    ap.add_argument('--vae-batch', type=int, default=32)
    ap.add_argument('--unet-batch', type=int, default=32)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--stage', choices=['all', 'vae', 'unet'], default='all',
                    help='vae: train the autoencoder and stop; unet: reuse <work>/vae.pt (same result as all)')
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    gen = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    os.makedirs(args.work, exist_ok=True)

    emoji = data.load_emoji(args.data)
    train, held, prompts = data.split_held_out(emoji)
    pics, recs = data.load_pictures(args.data, train)
    pics = torch.from_numpy(pics)
    print(f'{len(train)} training emoji, {len(pics)} pictures; {len(held)} held out', flush=True)
    with open(os.path.join(args.work, 'split.json'), 'w') as f:
        json.dump({'held_out': [e['id'] for e in held], 'prompts': prompts}, f, indent=1)

    tok = bpe.learn([data.caption_of(e) for e in train])
    tok.save(os.path.join(args.work, 'tokenizer'))

    log = Log(os.path.join(args.work, 'loss.csv'), append=args.stage == 'unet')
    if args.stage == 'unet':
        vae = models.VAE()
        vae.load_state_dict(torch.load(os.path.join(args.work, 'vae.pt')))
    else:
        vae = train_vae(pics, args.vae_steps, args.vae_batch, log, gen)
        torch.save(vae.state_dict(), os.path.join(args.work, 'vae.pt'))
        if args.stage == 'vae':
            print('vae done', flush=True)
            return
    vae.eval()
    with torch.no_grad():
        p = torch.cat([vae.encoder(pics[i:i + 256]) for i in range(0, len(pics), 256)])
    mean, logvar = p.chunk(2, 1)
    logvar = logvar.clamp(-30, 20)
    # As SD chose 0.18215: the factor that gives the training latents unit standard deviation.
    sf = float(f'{1.0 / mean.std().item():.5f}')
    with open(os.path.join(args.work, 'vae_scaling.json'), 'w') as f:
        json.dump({'scaling_factor': sf}, f)
    print(f'latent std {mean.std().item():.4f} -> scaling_factor {sf}', flush=True)

    # The UNet stage starts from seeds of its own, so `--stage unet` after `--stage vae` gives the
    # same weights as one `--stage all` run.
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    rng = random.Random(1)
    train_unet(mean, logvar, sf, recs, tok, args.unet_steps, args.unet_batch, log, gen, rng, args.work,
               args.stop_after)
    print('done', flush=True)


if __name__ == '__main__':
    main()
