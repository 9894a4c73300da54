"""Trains the demo model: a KL autoencoder; then the text encoder alone, contrastively against the
pictures (a toy CLIP); then the UNet on the autoencoder's latents with that text encoder frozen,
with the diffusers DDPM schedule (scaled_linear 0.00085-0.012, 1000 steps, epsilon prediction)
and 10 % empty captions for classifier-free guidance.

    npm install --prefix /work/demo-data emoji-datasource-twitter@16.0.0 \
        emoji-datasource-google@16.0.0 emojilib@4.0.3
    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 train/demo/train.py --data /work/demo-data --work train/demo/out
    /usr/bin/python3 train/demo/export.py --work train/demo/out --out assets/models/demo

Debian's python3-torch (1.13, CPU) is enough. On the 2-core machine with little else running:
about 5 min for the VAE (1,200 steps), 3 min for the text encoder (800 steps) and 34 min for the
UNet (5,000 steps). Everything random comes from the fixed seeds below: a rerun on the same
machine gives the same VAE and text encoder, and a UNet whose loss agrees to the 4th decimal
(torch's two-thread sums do not always add in the same order). The loss curve goes to
<work>/loss.csv (copied to train/demo/loss.csv for the repository).
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
# End-of-text pads kept after the longest caption in contrastive pre-training (see pretrain_text).
PAD_SEEN = 8


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


def min_snr_weights(ac, t, gamma):
    """Min-SNR-γ loss weighting for epsilon prediction (Hang et al. 2023): min(SNR, γ)/SNR. The
    low-noise steps, where predicting the noise is easy and tells little, stop dominating."""
    snr = ac[t] / (1 - ac[t])
    return snr.clamp(max=gamma) / snr


def pretrain_text(pics, recs, tok, args, log, gen, rng):
    """Contrastive pre-training of the text encoder against the pictures (CLIP's objective, at
    toy scale), as Stable Diffusion starts from a pre-trained CLIP: learned only through the
    diffusion loss, the text encoder stayed close to noise and the UNet drew little beyond colour.
    Captions are pooled as the UNet pools them (models.pooled); pictures of the same emoji in the
    other style count as matches too."""
    text = models.TextEncoder(len(tok.vocab))
    tower = models.ImageTower()
    head = models.Lin(models.COND_DIM, 256)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = list(text.parameters()) + list(tower.parameters()) + list(head.parameters()) + [log_scale]
    opt = torch.optim.AdamW(params, lr=args.text_lr, weight_decay=0.01)
    ids_of_emoji = [r['id'] for r in recs]
    running = None
    for step in range(args.text_steps):
        for g in opt.param_groups:
            g['lr'] = lr_at(step, args.text_steps, args.text_lr)
        idx = torch.randperm(len(recs), generator=gen)[:args.text_batch].tolist()
        ids = torch.tensor([tok.encode(data.sample_caption(recs[i], rng)) for i in idx], dtype=torch.long)
        # Causal attention: the first positions' states do not depend on the rest, so the batch is
        # cut after its longest caption plus a few end-of-text pads (a quarter of the cost).
        length = min(models.SEQ, int((ids != tok.eos).sum(1).max()) + 1 + PAD_SEEN)
        t = F.normalize(models.pooled(text(ids[:, :length], factored=True), head), dim=-1)
        v = F.normalize(tower(pics[idx]), dim=-1)
        logits = log_scale.clamp(max=math.log(100)).exp() * t @ v.t()
        same = torch.tensor([[ids_of_emoji[i] == ids_of_emoji[j] for j in idx] for i in idx], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.log_softmax(0)).sum(0).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 20 == 0 or step == args.text_steps - 1:
            log.row('text', step, running)
    text.eval()
    for p in text.parameters():
        p.requires_grad_(False)
    return text


def train_unet(latent_mean, latent_logvar, sf, recs, tok, text, args, log, gen, rng, work):
    unet = models.UNet()
    # The text encoder stays as pre-trained (as SD keeps CLIP frozen); only the UNet learns here.
    params = list(unet.parameters())
    # The exported weights are an exponential moving average of the trained ones.
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ac = models.ddpm_alphas_cumprod().float()
    steps, batch = args.unet_steps, args.unet_batch
    running = None
    last = min(steps, args.stop_after or steps)
    ids_of = {}

    def encode(caption):
        if caption not in ids_of:
            ids_of[caption] = tok.encode(caption)
        return ids_of[caption]

    def save(step):
        live = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, e in zip(params, ema):
                p.copy_(e)
        torch.save({'text': text.state_dict(), 'unet': unet.state_dict(), 'step': step}, os.path.join(work, 'unet.pt'))
        with torch.no_grad():
            for p, v in zip(params, live):
                p.copy_(v)

    for step in range(last):
        for g in opt.param_groups:
            g['lr'] = lr_at(step, steps, args.lr)
        idx = torch.randint(0, len(recs), (batch,), generator=gen)
        captions = ['' if rng.random() < P_UNCOND else data.sample_caption(recs[i], rng) for i in idx.tolist()]
        ids = torch.tensor([encode(c) for c in captions], dtype=torch.long)
        mean, logvar = latent_mean[idx], latent_logvar[idx]
        x0 = (mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)) * sf
        t = torch.randint(0, 1000, (batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = ac[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.no_grad():
            cond = text(ids, factored=True)
        pred = unet(xt, t.float(), cond)
        per = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        w = min_snr_weights(ac, t, args.snr_gamma) if args.snr_gamma > 0 else torch.ones_like(per)
        loss = (w * per).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        # EMA with a warm-up (decay grows from 0 towards args.ema), so a short run is not all initial weights.
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for p, e in zip(params, ema):
                e.mul_(d).add_(p.detach(), alpha=1 - d)
        # The curve shows the plain noise-prediction error, comparable across weightings.
        mse = per.mean().item()
        running = mse if running is None else 0.98 * running + 0.02 * mse
        if step % 20 == 0 or step == last - 1:
            log.row('unet', step, running)
        if (step + 1) % 500 == 0 or step == last - 1:
            save(step + 1)
    return text, unet


def encode_all(vae, pics):
    """Posterior means and log-variances of every training picture, computed once."""
    with torch.no_grad():
        p = torch.cat([vae.encoder(pics[i:i + 256]) for i in range(0, len(pics), 256)])
    mean, logvar = p.chunk(2, 1)
    return mean, logvar.clamp(-30, 20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default='/work/demo-data', help='npm prefix holding the emoji packages')
    ap.add_argument('--work', default='train/demo/out', help='checkpoints, tokenizer, loss.csv')
    ap.add_argument('--vae-steps', type=int, default=1200)
    ap.add_argument('--unet-steps', type=int, default=5000)
    ap.add_argument('--stop-after', type=int, default=0,
                    help='end the UNet stage after this many steps of the --unet-steps schedule (0: run it all)')
    ap.add_argument('--text-steps', type=int, default=800)
    ap.add_argument('--text-batch', type=int, default=128)
    ap.add_argument('--text-lr', type=float, default=1e-3)
    ap.add_argument('--vae-batch', type=int, default=32)
    ap.add_argument('--unet-batch', type=int, default=32)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--ema', type=float, default=0.999, help='EMA decay of the exported UNet/text weights')
    ap.add_argument('--snr-gamma', type=float, default=5.0, help='min-SNR loss weighting; 0: plain MSE')
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
        vae.eval()
        mean, logvar = encode_all(vae, pics)
    else:
        vae = train_vae(pics, args.vae_steps, args.vae_batch, log, gen)
        vae.eval()
        mean, logvar = encode_all(vae, pics)
        # Centre the latents per channel inside the VAE: the encoder's means lose their average,
        # the decoder adds it back first (models.Decoder.shift), so pictures are unchanged.
        centre = mean.mean(dim=(0, 2, 3))
        with torch.no_grad():
            vae.encoder.net[-1].bias[:models.LATENT_CHANNELS] -= centre
            vae.decoder.shift += centre
        mean = mean - centre[None, :, None, None]
        torch.save(vae.state_dict(), os.path.join(args.work, 'vae.pt'))
        print('latent channel means before centring', [round(v, 3) for v in centre.tolist()], flush=True)
        # As SD chose 0.18215: the factor that gives the training latents unit standard deviation.
        sf = float(f'{1.0 / mean.std().item():.5f}')
        with open(os.path.join(args.work, 'vae_scaling.json'), 'w') as f:
            json.dump({'scaling_factor': sf}, f)
        print(f'latent std {mean.std().item():.4f} -> scaling_factor {sf}', flush=True)
        if args.stage == 'vae':
            print('vae done', flush=True)
            return
    sf = json.load(open(os.path.join(args.work, 'vae_scaling.json')))['scaling_factor']

    # The UNet stage starts from seeds of its own, so `--stage unet` after `--stage vae` gives the
    # same weights as one `--stage all` run.
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    rng = random.Random(1)
    text = pretrain_text(pics, recs, tok, args, log, gen, rng)
    train_unet(mean, logvar, sf, recs, tok, text, args, log, gen, rng, args.work)
    print('done', flush=True)


if __name__ == '__main__':
    main()
