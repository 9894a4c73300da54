"""The demo model's three networks, in plain PyTorch (no diffusers needed), following
Stable Diffusion's conventions: a CLIP-like causal text encoder whose last_hidden_state is the
conditioning, a KL autoencoder on pixels in [-1,1] (RGB) whose latents are multiplied by a
scaling factor, and an epsilon-predicting UNet with cross-attention."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SEQ = 77
COND_DIM = 768  # SD 1.x's conditioning width, so the engine treats this as an SD 1.x model
LATENT_CHANNELS = 4


def linear(x, weight, bias=None):
    """x·Wᵀ + b as a convolution over one long 1-D signal: Debian's torch uses the reference BLAS
    for matmul (about 4 GFLOPS here), while convolutions go through oneDNN (10× faster, forward
    and backward). Same numbers either way."""
    if not FAST_LINEAR:
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1]).t()[None]
    y = F.conv1d(flat, weight[:, :, None], bias)[0].t()
    return y.reshape(*x.shape[:-1], weight.shape[0])


def bmm(a, b):
    """a @ b for [G, n, d] @ [G, d, m], as a grouped convolution for the same reason as linear
    (3× faster than the reference-BLAS batched product, forward and backward)."""
    if not FAST_LINEAR:
        return a @ b
    g, n, d = a.shape
    m = b.shape[2]
    y = F.conv1d(a.transpose(1, 2).reshape(1, g * d, n), b.transpose(1, 2).reshape(g * m, d, 1), groups=g)
    return y.reshape(g, m, n).transpose(1, 2)


FAST_LINEAR = True  # export.py turns this off so the ONNX graphs hold ordinary MatMul/Gemm


class Lin(nn.Linear):
    def forward(self, x):
        return linear(x, self.weight, self.bias)


class Attention(nn.Module):
    def __init__(self, dim, heads, ctx_dim=None):
        super().__init__()
        self.heads = heads
        self.q = Lin(dim, dim, bias=False)
        self.k = Lin(ctx_dim or dim, dim, bias=False)
        self.v = Lin(ctx_dim or dim, dim, bias=False)
        self.out = Lin(dim, dim)

    def forward(self, x, ctx=None, mask=None):
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).reshape(b, n, h, d // h).transpose(1, 2)
        if isinstance(ctx, Factored):
            k, v = ctx.project(self.k), ctx.project(self.v)
        else:
            ctx = x if ctx is None else ctx
            k, v = self.k(ctx), self.v(ctx)
        m = k.shape[1]
        k = k.reshape(b, m, h, d // h).transpose(1, 2)
        v = v.reshape(b, m, h, d // h).transpose(1, 2)
        dh = d // h
        w = bmm(q.reshape(b * h, n, dh), k.transpose(-1, -2).reshape(b * h, dh, m)).reshape(b, h, n, m)
        w = w * (1.0 / math.sqrt(dh))
        if mask is not None:
            w = w + mask
        y = bmm(w.softmax(-1).reshape(b * h, n, m), v.reshape(b * h, m, dh)).reshape(b, h, n, dh)
        y = y.transpose(1, 2).reshape(b, n, d)
        return self.out(y)


class Factored:
    """Training-time shortcut, exact in real arithmetic: the conditioning is W·h + b with h only
    128 wide, so a linear map L of it is computed as (L·W)·h + L·b, which skips the 768-wide
    product (this machine's BLAS is slow). The exported graphs use the plain form."""

    def __init__(self, h, weight, bias):
        self.h, self.weight, self.bias = h, weight, bias

    def then(self, lin):
        """L(conditioning), still factored."""
        bias = lin.weight @ self.bias
        return Factored(self.h, lin.weight @ self.weight, bias if lin.bias is None else bias + lin.bias)

    def project(self, lin):
        f = self.then(lin)
        return linear(f.h, f.weight, f.bias)


class TextLayer(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(Lin(dim, 4 * dim), nn.GELU(), Lin(4 * dim, dim))

    def forward(self, x, mask):
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.mlp(self.ln2(x))


class TextEncoder(nn.Module):
    """CLIP-like: token + position embeddings, causal pre-LN transformer, final LayerNorm; a
    linear map to the 768-wide conditioning (CLIP's own width is 768, ours is smaller)."""

    def __init__(self, vocab_size, dim=128, layers=2, heads=4):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(SEQ, dim) * 0.01)
        self.layers = nn.ModuleList([TextLayer(dim, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(dim)
        self.proj = Lin(dim, COND_DIM)
        self.register_buffer('mask', torch.full((SEQ, SEQ), -1e9).triu(1), persistent=False)

    def forward(self, input_ids, factored=False):
        x = self.tok(input_ids) + self.pos[:input_ids.shape[1]]
        n = input_ids.shape[1]
        for layer in self.layers:
            x = layer(x, self.mask[:n, :n])
        h = self.ln(x)
        return Factored(h, self.proj.weight, self.proj.bias) if factored else self.proj(h)


class ImageTower(nn.Module):
    """The picture side of the text encoder's contrastive pre-training (train.py, stage 'text'),
    looking at the picture averaged over 4×4 blocks; discarded after training."""

    def __init__(self, dim=256):
        super().__init__()
        self.net = nn.Sequential(
            nn.AvgPool2d(4), nn.Conv2d(3, 64, 3, padding=1), nn.SiLU(),      # 16×16
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.SiLU(),           # 8×8
            nn.Conv2d(128, 128, 3, stride=2, padding=1), nn.SiLU(),          # 4×4
            nn.Flatten(), Lin(128 * 16, dim),
        )

    def forward(self, x):
        return self.net(x)


def norm(c):
    return nn.GroupNorm(min(16, c // 4), c, eps=1e-6)


class Res(nn.Module):
    def __init__(self, cin, cout, tdim=None):
        super().__init__()
        self.n1, self.c1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = Lin(tdim, cout) if tdim else None
        self.n2, self.c2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb=None):
        h = self.c1(F.silu(self.n1(x)))
        if self.t is not None:
            h = h + self.t(F.silu(temb))[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class CrossBlock(nn.Module):
    """SD's transformer block on a feature map: self-attention, cross-attention to the text, MLP."""

    def __init__(self, c, ctx_dim, heads=4):
        super().__init__()
        self.norm = norm(c)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.ln1, self.self_attn = nn.LayerNorm(c), Attention(c, heads)
        self.ln2, self.cross = nn.LayerNorm(c), Attention(c, heads, ctx_dim)
        self.ln3 = nn.LayerNorm(c)
        self.mlp = nn.Sequential(Lin(c, 4 * c), nn.GELU(), Lin(4 * c, c))
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, ctx):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x)).reshape(b, c, hh * ww).transpose(1, 2)
        h = h + self.self_attn(self.ln1(h))
        h = h + self.cross(self.ln2(h), ctx)
        h = h + self.mlp(self.ln3(h))
        return x + self.proj_out(h.transpose(1, 2).reshape(b, c, hh, ww))


def pooled(ctx, lin):
    """lin(mean of the conditioning over its positions), [B, out]; exact for a Factored one too."""
    if isinstance(ctx, Factored):
        return Factored(ctx.h.mean(1, keepdim=True), ctx.weight, ctx.bias).project(lin)[:, 0]
    return lin(ctx.mean(1))


def timestep_embedding(t, dim):
    """diffusers' Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0): [cos, sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class UNet(nn.Module):
    """Two resolutions (latent side and half of it), cross-attention at both, epsilon output.

    The 768-wide conditioning is first mapped to `ctx_dim` once, shared by every cross-attention
    block: the text encoder's output has rank 128 anyway, and projecting keys and values from 768
    wide in each block was most of the UNet's arithmetic at sampling time."""

    def __init__(self, c0=64, c1=128, ctx_dim=128):
        super().__init__()
        self.c0 = c0
        tdim = 4 * c0
        self.time = nn.Sequential(Lin(c0, tdim), nn.SiLU(), Lin(tdim, tdim))
        self.ctx = Lin(COND_DIM, ctx_dim)
        self.pool = Lin(ctx_dim, tdim)
        self.conv_in = nn.Conv2d(LATENT_CHANNELS, c0, 3, padding=1)
        self.d0, self.a0 = Res(c0, c0, tdim), CrossBlock(c0, ctx_dim)
        self.down = nn.Conv2d(c0, c0, 3, stride=2, padding=1)
        self.d1, self.a1 = Res(c0, c1, tdim), CrossBlock(c1, ctx_dim)
        self.m1, self.ma, self.m2 = Res(c1, c1, tdim), CrossBlock(c1, ctx_dim), Res(c1, c1, tdim)
        self.u1, self.ua1 = Res(2 * c1, c1, tdim), CrossBlock(c1, ctx_dim)
        self.up = nn.Conv2d(c1, c0, 3, padding=1)
        self.u0, self.ua0 = Res(2 * c0, c0, tdim), CrossBlock(c0, ctx_dim)
        self.out_norm, self.conv_out = norm(c0), nn.Conv2d(c0, LATENT_CHANNELS, 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states):
        temb = self.time(timestep_embedding(timestep, self.c0))
        cond = encoder_hidden_states
        ctx = cond.then(self.ctx) if isinstance(cond, Factored) else self.ctx(cond)
        # The caption as a whole also shifts every residual block, as the timestep does: the mean over
        # all 77 positions, which with a causal encoder and end-of-text padding is mostly states that
        # have seen the whole caption. Cross-attention alone learned the text too slowly.
        temb = temb + pooled(ctx, self.pool)
        h0 = self.a0(self.d0(self.conv_in(sample), temb), ctx)
        h1 = self.a1(self.d1(self.down(h0), temb), ctx)
        h = self.m2(self.ma(self.m1(h1, temb), ctx), temb)
        h = self.ua1(self.u1(torch.cat([h, h1], 1), temb), ctx)
        h = self.up(F.interpolate(h, scale_factor=2.0, mode='nearest'))
        h = self.ua0(self.u0(torch.cat([h, h0], 1), temb), ctx)
        return self.conv_out(F.silu(self.out_norm(h)))


class Encoder(nn.Module):
    """64×64×3 → mean ‖ logvar [8,8,8]: the VAE scale factor is 8, as in SD. The first 4× is a
    space-to-depth rearrangement, so no convolution runs at full resolution (CPU training)."""

    def __init__(self, c=(64, 96)):
        super().__init__()
        self.net = nn.Sequential(
            nn.PixelUnshuffle(4), nn.Conv2d(48, c[0], 3, padding=1),  # 16×16
            Res(c[0], c[0]),
            nn.Conv2d(c[0], c[1], 3, stride=2, padding=1),            # 8×8
            Res(c[1], c[1]),
            norm(c[1]), nn.SiLU(), nn.Conv2d(c[1], 2 * LATENT_CHANNELS, 3, padding=1),
        )

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """`shift` is added to the latent first: train.py centres the encoder's means per channel
    (subtracting them from its last bias) and stores them here, so the latents the UNet learns
    are centred on 0 -- SD 1.x pipelines read no shift factor -- and the pictures are unchanged."""

    def __init__(self, c=(64, 96)):
        super().__init__()
        self.register_buffer('shift', torch.zeros(LATENT_CHANNELS))
        self.net = nn.Sequential(
            nn.Conv2d(LATENT_CHANNELS, c[1], 3, padding=1),
            Res(c[1], c[1]), Res(c[1], c[1]),
            nn.Upsample(scale_factor=2.0, mode='nearest'), nn.Conv2d(c[1], c[0], 3, padding=1),  # 16×16
            Res(c[0], c[0]), Res(c[0], c[0]),
            norm(c[0]), nn.SiLU(), nn.Conv2d(c[0], 48, 3, padding=1), nn.PixelShuffle(4),   # 64×64
        )

    def forward(self, z):
        return self.net(z + self.shift[None, :, None, None])


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.decoder = Encoder(), Decoder()

    def forward(self, x):
        p = self.encoder(x)
        mean, logvar = p.chunk(2, 1)
        z = mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * torch.randn_like(mean)
        return self.decoder(z), mean, logvar


def ddpm_alphas_cumprod(n=1000, beta_start=0.00085, beta_end=0.012):
    """diffusers' scaled_linear schedule: betas = linspace(√β0, √β1, n)²."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, n, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0)
