"""Diff-IF denoiser: the SR3-style conditional U-Net (``../shared/spec/diffif.md`` §2.2).

Saharia et al., "Image super-resolution via iterative refinement" (SR3), IEEE TPAMI 2022, as
configured by Yi et al., "Diff-IF", Information Fusion 2024. Module names reproduce the official
state dict (``denoise_fn.*`` rows of ``diffif_state_dict_keys.tsv``) so checkpoints load strictly.

Input: N×3×H×W = [vis Y, ir Y, x_t] in [−1, 1] (H, W multiples of 8); ``gamma``: N noise levels
γ = √ᾱ. Output: N×1×H×W predicted noise ε̂.

* noise embedding (WaveGrad/SR3, continuous): e = [sin(γ·f_k), cos(γ·f_k)], f_k = 10⁴^(−k/(D/2)),
  k = 0..D/2−1, D = base width; then Linear(D, 4D), Swish, Linear(4D, D);
* residual block: h = conv₃(Swish(GN(x))) + Linear(e) (additive per-channel bias);
  h = conv₃(Dropout(Swish(GN(h)))); out = h + res_conv(x) (1×1 when widths differ);
* self-attention (single head, lowest level only): GN, 1×1 qkv (no bias), softmax(qᵀk/√C) over all
  positions, 1×1 out, residual;
* down: stem conv, per level ``res_blocks`` blocks then a stride-2 conv (not after the last level);
  middle: block+attention, block; up: per level ``res_blocks + 1`` blocks on [x, skip] then
  nearest ×2 + conv; head GN, Swish, conv to 1 channel.

Attention placement: the official factory tracks a nominal resolution of 128 and puts attention at
"16", i.e. always at the lowest of the four levels (spec §5.2 item 4); here it is stated directly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class UNetConfig:
    """Widths of the denoiser (faithful defaults = the released configs)."""

    in_channels: int = 3
    out_channels: int = 1
    width: int = 48
    mults: tuple[int, ...] = (1, 2, 4, 6)
    res_blocks: int = 2
    groups: int = 24
    dropout: float = 0.1
    attention: bool = True          # self-attention at the lowest level


def noise_embedding(gamma: torch.Tensor, dim: int) -> torch.Tensor:
    """[sin(γ·f_k) ..., cos(γ·f_k) ...], f_k = exp(−ln(10⁴)·k/(dim/2)); ``gamma``: (N,) -> (N, dim)."""
    count = dim // 2
    step = torch.arange(count, dtype=gamma.dtype, device=gamma.device) / count
    enc = gamma.reshape(-1, 1) * torch.exp(-math.log(1e4) * step.unsqueeze(0))
    return torch.cat([torch.sin(enc), torch.cos(enc)], dim=-1)


class NoiseEmbedding(nn.Module):
    """Index 0 of ``noise_level_mlp`` (no parameters)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, gamma: torch.Tensor) -> torch.Tensor:
        return noise_embedding(gamma, self.dim)


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def noise_mlp(dim: int, hidden: int) -> nn.Sequential:
    """``noise_level_mlp``: embedding, Linear(dim, hidden), Swish, Linear(hidden, dim)."""
    return nn.Sequential(NoiseEmbedding(dim), nn.Linear(dim, hidden), Swish(), nn.Linear(hidden, dim))


class Block(nn.Module):
    """``block``: GroupNorm (0), Swish (1), Dropout or Identity (2), 3×3 conv (3)."""

    def __init__(self, cin: int, cout: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.block = nn.Sequential(nn.GroupNorm(groups, cin), Swish(),
                                   nn.Dropout(dropout) if dropout else nn.Identity(),
                                   nn.Conv2d(cin, cout, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class NoiseBias(nn.Module):
    """``noise_func``: per-channel additive bias Linear(e) (no scale)."""

    def __init__(self, emb: int, cout: int):
        super().__init__()
        self.noise_func = nn.Sequential(nn.Linear(emb, cout))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return x + self.noise_func(emb).view(x.shape[0], -1, 1, 1)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, groups: int, dropout: float):
        super().__init__()
        self.noise_func = NoiseBias(emb, cout)
        self.block1 = Block(cin, cout, groups)
        self.block2 = Block(cout, cout, groups, dropout)
        self.res_conv = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.noise_func(self.block1(x), emb)
        return self.block2(h) + self.res_conv(x)


class SelfAttention(nn.Module):
    """Single-head spatial softmax attention with scale 1/√C (eager: the full H·W × H·W map)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v: N×C×L -> N×C×L."""
        attn = torch.softmax(torch.einsum("ncl,ncm->nlm", q, k) / math.sqrt(q.shape[1]), dim=-1)
        return torch.einsum("nlm,ncm->ncl", attn, v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3 * c, h * w).chunk(3, dim=1)
        return self.out(self.attend(q, k, v).reshape(n, c, h, w)) + x


class ResnetBlocWithAttn(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, groups: int, dropout: float, with_attn: bool):
        super().__init__()
        self.res_block = ResnetBlock(cin, cout, emb, groups, dropout)
        self.attn = SelfAttention(cout, groups) if with_attn else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res_block(x, emb)
        return self.attn(x) if self.attn is not None else x


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    """The denoiser ε̂ = UNet([vis, ir, x_t], γ) (module docstring)."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = c = config
        self.noise_level_mlp = noise_mlp(c.width, c.width * 4)
        levels = len(c.mults)
        pre = c.width
        skips = [pre]
        downs: list[nn.Module] = [nn.Conv2d(c.in_channels, c.width, 3, padding=1)]
        for level, mult in enumerate(c.mults):
            out = c.width * mult
            attn = c.attention and level == levels - 1
            for _ in range(c.res_blocks):
                downs.append(ResnetBlocWithAttn(pre, out, c.width, c.groups, c.dropout, attn))
                skips.append(out)
                pre = out
            if level != levels - 1:
                downs.append(Downsample(pre))
                skips.append(pre)
        self.downs = nn.ModuleList(downs)
        self.mid = nn.ModuleList([ResnetBlocWithAttn(pre, pre, c.width, c.groups, c.dropout, c.attention),
                                  ResnetBlocWithAttn(pre, pre, c.width, c.groups, c.dropout, False)])
        ups: list[nn.Module] = []
        for level in reversed(range(levels)):
            out = c.width * c.mults[level]
            attn = c.attention and level == levels - 1
            for _ in range(c.res_blocks + 1):
                ups.append(ResnetBlocWithAttn(pre + skips.pop(), out, c.width, c.groups, c.dropout, attn))
                pre = out
            if level != 0:
                ups.append(Upsample(pre))
        self.ups = nn.ModuleList(ups)
        self.final_conv = Block(pre, c.out_channels, c.groups)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return self.from_stem(self.downs[0](x), gamma)

    def from_stem(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """The network after its stem convolution (``x`` = the stem's output; the fast path
        computes the stem's source part once per image)."""
        emb = self.noise_level_mlp(gamma.reshape(-1).to(x.dtype))
        feats = [x]
        for layer in list(self.downs)[1:]:
            x = layer(x, emb) if isinstance(layer, ResnetBlocWithAttn) else layer(x)
            feats.append(x)
        for layer in self.mid:
            x = layer(x, emb)
        for layer in self.ups:
            x = layer(torch.cat([x, feats.pop()], dim=1), emb) if isinstance(layer, ResnetBlocWithAttn) else layer(x)
        return self.final_conv(x)
