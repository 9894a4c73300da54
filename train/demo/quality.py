"""Measures what the demo model learned, on emoji it never saw and on emoji it saw.

For each held-out prompt (an emoji name left out of training, see data.KEY_WORDS) it draws 4
pictures (DPM++ 2M Karras, 20 steps, guidance 7, seeds 1000+; --sampler and --guidance change
the first two), finds each picture's nearest training picture in a simple feature space -- the
picture averaged over 4x4 blocks (16x16x3 RGB values in 0-1), Euclidean distance -- and counts a
hit when that training picture's caption (name, keywords, category) contains the prompt's key word
as a whole word. Baselines: uniformly random RGB pictures through the same search, and the share
of training pictures whose caption has the key word (what a random training picture would score).

The same key words and hit rule are also scored on emoji the model did see: for each key word one
trained emoji whose name has it ("green heart" for heart, "cat face" for cat), drawn from seeds
3000+ that training never used. The gap between the two scores is what composing a new name from
known words costs the model; the seen score is what a member typing an emoji's name gets.

    /usr/bin/python3 train/demo/quality.py --work train/demo/out --model assets/models/demo
"""
import argparse
import json
import random
import re

import numpy as np
import torch
from PIL import Image, ImageDraw

import data
import sampling

PICTURES = 4


def features(rgb):
    """[N,3,64,64] uint8 or [-1,1] floats -> [N, 768] 4x4-block means in 0-1."""
    x = rgb.astype(np.float64)
    x = x / 255.0 if rgb.dtype == np.uint8 else x / 2 + 0.5
    n = x.shape[0]
    return x.reshape(n, 3, 16, 4, 16, 4).mean(axis=(3, 5)).reshape(n, -1)


def has_word(caption, word):
    return re.search(rf'\b{re.escape(word)}\b', caption) is not None


def nearest(feats, train_feats):
    d = ((feats[:, None, :] - train_feats[None, :, :]) ** 2).sum(-1)
    return d.argmin(1)


def seen_prompts(train, prompts, seed=1):
    """For each held-out (name, key word): a trained emoji's name with the same key word."""
    rng = random.Random(seed)
    out = []
    for _, word in prompts:
        having = sorted({e['name'] for e in train if word in data.words(e['name'])})
        out.append((rng.choice(having), word))
    return out


def score(model, cfg, prompts, seed_base, draw, train_feats, recs, captions):
    """(hits, per-prompt rows, drawn {prompt: [4,3,64,64] uint8}) for (prompt, key word) pairs."""
    drawn, per_prompt, hits = {}, [], 0
    for k, (prompt, word) in enumerate(prompts):
        seeds = [seed_base + PICTURES * k + i for i in range(PICTURES)]
        rgbs = np.stack([sampling.sample(model, cfg, prompt, s, **draw)[1] for s in seeds])
        drawn[prompt] = rgbs
        near = nearest(features(rgbs), train_feats)
        h = sum(has_word(captions[j], word) for j in near)
        hits += h
        per_prompt.append({'prompt': prompt, 'word': word, 'hits': int(h), 'nearest': [recs[j]['name'] for j in near]})
        print(f'{prompt!r} ({word}): {h}/{PICTURES} -> {[recs[j]["name"] for j in near]}', flush=True)
    return int(hits), per_prompt, drawn


def sheet(rows, path):
    """rows: [(label, [rgb [3,64,64] uint8, ...])] -> one PNG, a label column then the pictures."""
    label_w, side = 150, 64
    im = Image.new('RGB', (label_w + side * PICTURES, side * len(rows)), 'white')
    draw = ImageDraw.Draw(im)
    for r, (label, pics) in enumerate(rows):
        draw.text((4, r * side + 26), label, fill='black')
        for c, p in enumerate(pics):
            im.paste(Image.fromarray(p.transpose(1, 2, 0)), (label_w + c * side, r * side))
    im.save(path, optimize=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default='/work/demo-data')
    ap.add_argument('--work', default='train/demo/out')
    ap.add_argument('--model', default='assets/models/demo')
    ap.add_argument('--out', default='train/demo/quality.json')
    ap.add_argument('--sheet', default='train/demo/samples.png')
    ap.add_argument('--guidance', type=float, default=7.0)
    ap.add_argument('--sampler', default='DPM++ 2M Karras', choices=['Euler', 'Euler a', 'DPM++ 2M Karras'])
    args = ap.parse_args()
    torch.set_num_threads(2)

    emoji = data.load_emoji(args.data)
    train, held, prompts = data.split_held_out(emoji)
    pics, recs = data.load_pictures(args.data, train)
    train_feats = features(pics)
    captions = [data.caption_of(r) for r in recs]

    model = sampling.Model(args.work)
    draw = {'sampler': args.sampler, 'guidance': args.guidance}
    cfg = sampling.load_scheduler(args.model)
    hits, per_prompt, drawn = score(model, cfg, prompts, 1000, draw, train_feats, recs, captions)
    total = PICTURES * len(prompts)
    seen = seen_prompts(train, prompts)
    seen_hits, seen_per_prompt, _ = score(model, cfg, seen, 3000, draw, train_feats, recs, captions)

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(total, 3, 64, 64), dtype=np.uint8)
    noise_near = nearest(features(noise), train_feats)
    random_hits = sum(has_word(captions[noise_near[i]], prompts[i // PICTURES][1]) for i in range(total))
    chance = float(np.mean([np.mean([has_word(c, w) for c in captions]) for _, w in prompts]))

    # Colour check: the drawn pictures' mean RGB against the training pictures' (a CFG colour drift,
    # e.g. towards blue/magenta, shows as a gap), both 0-255.
    drawn_rgb = np.concatenate(list(drawn.values())).astype(np.float64).mean(axis=(0, 2, 3))
    train_rgb = (pics.astype(np.float64) / 2 + 0.5).mean(axis=(0, 2, 3)) * 255

    result = {
        'prompts': len(prompts), 'pictures': total, 'hits': int(hits), 'score': hits / total,
        'random_pictures_score': random_hits / total, 'random_training_picture_score': chance,
        'seen_hits': seen_hits, 'seen_score': seen_hits / total,
        'sampler': args.sampler, 'steps': 20, 'guidance': args.guidance, 'unet_steps_trained': model.step,
        'feature_space': '4x4-block mean RGB (16x16x3), Euclidean',
        'mean_rgb_drawn': [round(float(v), 1) for v in drawn_rgb],
        'mean_rgb_training': [round(float(v), 1) for v in train_rgb],
        'per_prompt': per_prompt,
        'seen_per_prompt': seen_per_prompt,
    }
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
        f.write('\n')
    print(f'score {hits}/{total} = {hits / total:.1%}; seen emoji {seen_hits}/{total} = {seen_hits / total:.1%}; random pictures {random_hits / total:.1%}; '
          f'random training picture {chance:.1%}; mean RGB drawn {result["mean_rgb_drawn"]} vs training '
          f'{result["mean_rgb_training"]}', flush=True)

    shown = ['red apple', 'green apple', 'blue circle', 'yellow square', 'rocket', 'pizza']
    rows = [(f'{p} (held out)' if p in drawn else p, np.stack([sampling.sample(model, cfg, p, 1000 + i, **draw)[1] for i in range(PICTURES)]))
            for p in shown]
    rows += [(f'{p} (held out)', drawn[p]) for p, _ in prompts[:8]]
    sheet(rows, args.sheet)


if __name__ == '__main__':
    main()
