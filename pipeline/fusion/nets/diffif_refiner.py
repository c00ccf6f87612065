"""Diff-IF refinement network: the two-branch single-scale Restormer (``Restormer_fn``, spec §2.3).

Zamir et al., "Restormer: efficient transformer for high-resolution image restoration", CVPR 2022,
as modified by Diff-IF (Yi et al., Information Fusion 2024). Module names reproduce the official
``refinement_fn.*`` state-dict rows. Every stage runs at full resolution; all convs have no bias.

Inputs: ``sources`` N×2×H×W = [vis Y, ir Y], ``x0`` N×1×H×W (the denoiser's clamped x̂₀), ``gamma``
(N,). Output: N×1×H×W refined x₀ (the caller clamps it to [−1, 1]).

* LayerNorm per pixel over channels: (x − μ)/√(σ² + 1e-5)·w + b (biased variance);
* transformer block: x + MDTA(LN(x)), then x + FFN(LN(x));
* MDTA (channel "transposed" attention, h heads): qkv = dw3×3(1×1(x)); per head q, k L2-normalised
  over H·W; A = softmax(q·kᵀ·τ_h) (C/h × C/h); out = 1×1(A·v);
* FFN (no gating, full 3×3): 1×1 (C→⌊2.66C⌋), 3×3 (dense), GELU (exact), 1×1 back to C;
* noise path: embedding of size C, Linear(C, 4C), Swish, Linear(4C, C); each stage alternates
  [block, + Linear(C, C)(e) per-channel bias];
* data flow: A = embed(x0), S = embed_refine(sources); A1 = enc1(A), S1 = enc1_refine(S);
  F1 = 1×1[A1, S1]; E2 = enc2(F1), S2 = enc2_refine(S1); F2 = 1×1[E2, S2]; D2 = dec2(F2);
  G1 = 1×1[D2, F1]; D1 = dec1(G1); O = refinement(1×1[D1, A1]); out = 3×3 conv(O). No global residual.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.fusion.nets.diffif_unet import noise_mlp


@dataclass(frozen=True)
class RefinerConfig:
    """Widths of the refiner (faithful defaults = ``Restormer_fn`` as released)."""

    width: int = 36
    blocks: int = 2                  # transformer blocks per stage
    refinement_blocks: int = 2
    heads: tuple[int, int] = (1, 2)  # level-1 and level-2 stages
    ffn_factor: float = 2.66

    @property
    def hidden(self) -> int:
        return int(self.width * self.ffn_factor)


class WithBiasLayerNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N×L×C (normalised over C)."""
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class LayerNorm(nn.Module):
    """``norm*``: N×C×H×W -> per-pixel LayerNorm over channels (child ``body``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = WithBiasLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = self.body(x.reshape(n, c, h * w).transpose(1, 2))
        return y.transpose(1, 2).reshape(n, c, h, w)


class Attention(nn.Module):
    """MDTA: multi-head transposed (channel) attention with a learnable temperature per head."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(channels * 3, channels * 3, 3, padding=1, groups=channels * 3, bias=False)
        self.project_out = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(n, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        return self.project_out((attn @ v).reshape(n, c, h, w))


class FeedForward(nn.Module):
    """1×1 expand, dense 3×3 (named ``dwconv`` in the checkpoint but not depthwise), GELU, 1×1."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.project_in = nn.Conv2d(channels, hidden, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, bias=False)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project_out(F.gelu(self.dwconv(self.project_in(x))))


class TransformerBlock(nn.Module):
    def __init__(self, channels: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = LayerNorm(channels)
        self.attn = Attention(channels, heads)
        self.norm2 = LayerNorm(channels)
        self.ffn = FeedForward(channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class StageBias(nn.Module):
    """``noise_func``: x + Linear(e) per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.noise_func = nn.Sequential(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return x + self.noise_func(emb).view(x.shape[0], -1, 1, 1)


class Stage(nn.ModuleList):
    """``blocks`` × [TransformerBlock, StageBias] (indices 0, 1, 2, 3 ... in the checkpoint)."""

    def __init__(self, channels: int, heads: int, hidden: int, blocks: int):
        super().__init__()
        for _ in range(blocks):
            self.append(TransformerBlock(channels, heads, hidden))
            self.append(StageBias(channels))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, StageBias) else layer(x)
        return x


class PatchEmbed(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Refiner(nn.Module):
    """``Restormer_fn``: R = Refiner(sources, x̂₀, γ) (module docstring)."""

    def __init__(self, config: RefinerConfig = RefinerConfig()):
        super().__init__()
        self.config = c = config
        w, hid = c.width, c.hidden
        self.noise_level_mlp = noise_mlp(w, w * 4)
        self.patch_embed = PatchEmbed(1, w)
        self.patch_embed_refine = PatchEmbed(2, w)
        self.encoder_level1 = Stage(w, c.heads[0], hid, c.blocks)
        self.encoder_level1_refine = Stage(w, c.heads[0], hid, c.blocks)
        self.reduce_chan_level1_refine = nn.Conv2d(2 * w, w, 1, bias=False)
        self.encoder_level2 = Stage(w, c.heads[1], hid, c.blocks)
        self.encoder_level2_refine = Stage(w, c.heads[1], hid, c.blocks)
        self.reduce_chan_level2_refine = nn.Conv2d(2 * w, w, 1, bias=False)
        self.decoder_level2 = Stage(w, c.heads[1], hid, c.blocks)
        self.reduce_chan_level1 = nn.Conv2d(2 * w, w, 1, bias=False)
        self.decoder_level1 = Stage(w, c.heads[0], hid, c.blocks)
        self.reduce_chan_level_out = nn.Conv2d(2 * w, w, 1, bias=False)
        self.refinement = nn.Sequential(*[TransformerBlock(w, c.heads[0], hid) for _ in range(c.refinement_blocks)])
        self.output = nn.Conv2d(w, 1, 3, padding=1, bias=False)

    def forward(self, sources: torch.Tensor, x0: torch.Tensor, gamma: torch.Tensor,
                source_embedding: torch.Tensor | None = None) -> torch.Tensor:
        """``source_embedding``: ``patch_embed_refine(sources)`` computed beforehand (fast path)."""
        emb = self.noise_level_mlp(gamma.reshape(-1).to(x0.dtype))
        a1 = self.encoder_level1(self.patch_embed(x0), emb)
        s = self.patch_embed_refine(sources) if source_embedding is None else source_embedding
        s1 = self.encoder_level1_refine(s, emb)
        f1 = self.reduce_chan_level1_refine(torch.cat([a1, s1], dim=1))
        e2 = self.encoder_level2(f1, emb)
        s2 = self.encoder_level2_refine(s1, emb)
        f2 = self.reduce_chan_level2_refine(torch.cat([e2, s2], dim=1))
        d2 = self.decoder_level2(f2, emb)
        d1 = self.decoder_level1(self.reduce_chan_level1(torch.cat([d2, f1], dim=1)), emb)
        out = self.refinement(self.reduce_chan_level_out(torch.cat([d1, a1], dim=1)))
        return self.output(out)
