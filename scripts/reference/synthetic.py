"""Deterministic stand-in weights, bit-identical to engine/checkpoint/synthetic-weights.ts.

    seed(name) = FNV-1a 32 of the UTF-8 name, xor `seed`
    x_i        = fmix32((seed(name) + (i + 1) * 0x9E3779B1) mod 2**32)   (MurmurHash3 finaliser)
    u_i        = (x_i >> 8) / 2**23 - 1                                   (exact in float32)
    value_i    = centre + u_i * scale                                     (scale a power of two)

Computed in float64 and rounded once to float32, as the TypeScript side does.
"""
import math

import numpy as np
import torch

M32 = np.uint64(0xFFFFFFFF)


def fnv1a32(text: str) -> int:
    h = 0x811C9DC5
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def fmix32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & M32
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & M32
    x ^= x >> np.uint64(16)
    return x


def power_of_two_below(v: float) -> float:
    return 2.0 ** math.floor(math.log2(v))


def synthetic_scale(name: str, shape) -> tuple:
    leaf = name.split(".")[-1]
    # A one-dimensional `weight` is a norm's scale (GroupNorm/LayerNorm): keep it near 1.
    if leaf == "weight" and len(shape) == 1:
        return 1.0, 0.125
    if leaf == "bias" or leaf.endswith("_bias") or len(shape) <= 1:
        return 0.0, 0.0625
    if "embedding" in name:
        return 0.0, 0.5
    fan_in = 1
    for d in shape[1:]:
        fan_in *= d
    return 0.0, power_of_two_below(1 / math.sqrt(fan_in)) * 2


def synthetic_tensor(name: str, shape, seed: int = 0) -> torch.Tensor:
    n = 1
    for d in shape:
        n *= d
    centre, scale = synthetic_scale(name, shape)
    base = np.uint64((fnv1a32(name) ^ seed) & 0xFFFFFFFF)
    i = np.arange(1, n + 1, dtype=np.uint64)
    x = fmix32((base + i * np.uint64(0x9E3779B1)) & M32)
    u = (x >> np.uint64(8)).astype(np.float64) / 8388608.0 - 1.0
    return torch.from_numpy((centre + u * scale).astype(np.float32).reshape(shape))
