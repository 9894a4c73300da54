"""Reference numbers for test/demo-model-reference.test.ts: the demo model sampled in PyTorch
(sampling.py) with Euler, Euler a and DPM++ 2M Karras, 20 steps, guidance 7, two pictures per
case (seeds s and s+1). Kept: the final latents (rounded to 1e-6), each picture's mean per
channel and its 4×4-block means (numbers, not images).

    /usr/bin/python3 train/demo/reference.py --work train/demo/out --model assets/models/demo \
        --out test/fixtures/demo-reference.json
"""
import argparse
import json

import numpy as np
import torch

import sampling

CASES = [
    ('red apple', 'Euler', 11),
    ('red apple', 'Euler a', 12),
    ('red apple', 'DPM++ 2M Karras', 13),
    ('blue circle', 'Euler', 21),
    ('blue circle', 'Euler a', 22),
    ('blue circle', 'DPM++ 2M Karras', 23),
]
PICTURES = 2
BLOCK = 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--work', default='train/demo/out')
    ap.add_argument('--model', default='assets/models/demo')
    ap.add_argument('--out', default='test/fixtures/demo-reference.json')
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = sampling.Model(args.work)
    cfg = sampling.load_scheduler(args.model)
    cases = []
    for prompt, sampler, seed in CASES:
        pictures = []
        for i in range(PICTURES):
            latent, rgb = sampling.sample(model, cfg, prompt, seed + i, sampler=sampler)
            c, h, w = rgb.shape
            blocks = rgb.astype(np.float64).reshape(c, h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(2, 4))
            pictures.append({
                'seed': seed + i,
                'latent': [round(float(v), 6) for v in latent.reshape(-1)],
                'channelMeans': [round(float(v), 3) for v in rgb.reshape(3, -1).mean(axis=1)],
                # [channel][row][column] means of 4×4 pixel blocks, 0-255.
                'blockMeans': np.round(blocks, 2).tolist(),
            })
        cases.append({'prompt': prompt, 'sampler': sampler, 'seed': seed, 'ids': model.tok.encode(prompt)[:8], 'pictures': pictures})
        print(prompt, sampler, [p['channelMeans'] for p in pictures], flush=True)
    out = {
        'about': 'train/demo/reference.py: PyTorch sampling of assets/models/demo; checked by test/demo-model-reference.test.ts',
        'steps': 20, 'guidance': 7, 'width': 64, 'height': 64, 'block': BLOCK,
        'cases': cases,
    }
    with open(args.out, 'w') as f:
        json.dump(out, f, separators=(',', ':'))
        f.write('\n')


if __name__ == '__main__':
    main()
