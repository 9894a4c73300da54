"""Emoji pictures and captions for the demo model, read from the npm image packages.

Install the data (outside the repository's node_modules):
    npm install --prefix /work/demo-data emoji-datasource-twitter@16.0.0 \
        emoji-datasource-google@16.0.0 emojilib@4.0.3

Twemoji graphics: CC-BY 4.0 (Twitter, Inc. and other contributors, jdecked/twemoji).
Noto Emoji graphics: Apache-2.0 (Google). emoji-datasource metadata and emojilib keywords: MIT.
"""
import json
import os
import random
import re

import numpy as np
from PIL import Image

# Categories kept: people/body (hundreds of near-identical hands and professions), flags and
# skin-tone components would crowd out the objects whose colour and shape a tiny model can learn.
CATEGORIES = [
    'Smileys & Emotion', 'Animals & Nature', 'Food & Drink', 'Travel & Places',
    'Activities', 'Objects', 'Symbols',
]
STYLES = [('twitter', 'emoji-datasource-twitter'), ('google', 'emoji-datasource-google')]
SIDE = 64

# Key words for the held-out quality check: for each, one emoji whose name contains it is left
# out of training (in both styles), and the model is asked to draw that emoji's name.
KEY_WORDS = [
    'heart', 'cat', 'dog', 'apple', 'moon', 'sun', 'star', 'car', 'ball', 'tree', 'flower',
    'fish', 'bird', 'house', 'book', 'clock', 'circle', 'square', 'bear', 'monkey', 'mouse',
    'rabbit', 'horse', 'cow', 'pig', 'boat', 'train', 'bus', 'bell', 'cup', 'hat', 'key',
    'phone', 'cake', 'bottle', 'cloud', 'music', 'ticket', 'glass', 'light', 'money', 'mark',
    'arrow', 'diamond', 'triangle', 'tiger', 'water', 'rice', 'bread', 'pepper', 'mountain',
    'box', 'tea', 'paper', 'blue', 'red', 'green', 'yellow', 'orange', 'purple', 'black',
    'white', 'brown', 'bag', 'tent', 'wine', 'potato', 'ice', 'hot', 'skull',
]


def words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


def clean_name(name):
    return ' '.join(words(name.replace('_', ' ')))


def load_emoji(prefix):
    """All kept emoji: dict(unified, name, keywords, category, has_img per style)."""
    base = os.path.join(prefix, 'node_modules')
    meta = json.load(open(os.path.join(base, 'emoji-datasource-twitter', 'emoji.json')))
    google = {e['unified']: e for e in json.load(open(os.path.join(base, 'emoji-datasource-google', 'emoji.json')))}
    lib = json.load(open(os.path.join(base, 'emojilib', 'dist', 'emoji-en-US.json')))
    out = []
    for e in sorted(meta, key=lambda e: e['sort_order']):
        if e['category'] not in CATEGORIES or not e.get('name'):
            continue
        char = ''.join(chr(int(h, 16)) for h in e['unified'].split('-'))
        kws = lib.get(char) or lib.get(char.replace('\ufe0f', '')) or []
        keywords = []
        # emojilib's first entry is the CLDR short name ("red_heart"), friendlier than the Unicode name.
        name = clean_name(kws[0]) if kws else clean_name(e['name'])
        for k in kws[1:]:
            k = clean_name(k)
            if k and len(k) > 1 and re.fullmatch(r"[a-z][a-z' ]*", k) and k not in keywords and k != name:
                keywords.append(k)
        styles = [s for s, _ in STYLES if (e if s == 'twitter' else google.get(e['unified'], {})).get(f'has_img_{s}')]
        out.append({
            'id': e['unified'].lower(),
            'image': e['image'],
            'name': name,
            'keywords': keywords[:8],
            'category': e['category'].lower(),
            'styles': styles,
        })
    return out


def split_held_out(emoji, seed=0):
    """Returns (train, held_out, prompts): prompts are (held-out name, key word)."""
    rng = random.Random(seed)
    held = {}
    prompts = []
    for kw in KEY_WORDS:
        having = [e for e in emoji if kw in words(e['name']) and e['id'] not in held]
        # The key word must stay in at least two training names, or there is nothing to learn it from.
        if len(having) < 3:
            continue
        pick = rng.choice(having)
        held[pick['id']] = pick
        prompts.append((pick['name'], kw))
    train = [e for e in emoji if e['id'] not in held]
    # Keep only key words still in training captions after all hold-outs.
    train_names = [set(words(e['name'])) for e in train]
    prompts = [(p, kw) for p, kw in prompts if sum(kw in n for n in train_names) >= 2]
    return train, list(held.values()), prompts


def caption_of(e):
    """The full caption the quality check searches: name, keywords and category."""
    return ', '.join([e['name']] + e['keywords'] + [e['category']])


def sample_caption(e, rng):
    """A training caption: the name alone half the time, else the name plus a few keywords."""
    if rng.random() < 0.5 or not e['keywords']:
        return e['name']
    extra = rng.sample(e['keywords'], min(len(e['keywords']), rng.randint(1, 3)))
    return ', '.join([e['name']] + extra)


def load_image(prefix, style, package, image):
    """RGBA 64×64 composited on white → float32 [3,64,64] in [-1,1], RGB order."""
    path = os.path.join(prefix, 'node_modules', package, 'img', style, '64', image)
    im = Image.open(path).convert('RGBA')
    if im.size != (SIDE, SIDE):
        im = im.resize((SIDE, SIDE), Image.LANCZOS)
    bg = Image.new('RGBA', im.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(bg, im).convert('RGB')
    return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0


def load_pictures(prefix, emoji):
    """(pictures [N,3,64,64], records): one picture per emoji and style."""
    pics, recs = [], []
    packages = dict(STYLES)
    for e in emoji:
        for style in e['styles']:
            pics.append(load_image(prefix, style, packages[style], e['image']))
            recs.append({**e, 'style': style})
    return np.stack(pics), recs
