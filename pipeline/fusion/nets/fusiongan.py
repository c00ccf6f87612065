"""FusionGAN networks (Ma et al., "FusionGAN: A generative adversarial network for infrared and
visible image fusion", Information Fusion 48, 2019; spec ``methods.md`` section 9).

Generator (input cat[IR, VI], values in [−1, 1]; every conv VALID with bias, so the output is 12 px
smaller per axis): 5×5 2→c1, 5×5 c1→c2, 3×3 c2→c3, 3×3 c3→c4, each + BN + LReLU(0.2), then 1×1 c4→1 +
tanh; published widths ``(c1..c4) = (256, 128, 64, 32)``. During training every kernel is divided by
its spectral norm (one power iteration with a persistent vector ``u``, Miyato et al. 2018).

Discriminator (training only): 3×3 stride-2 VALID convs with spectral norm 1→32 (LReLU), 32→64,
64→128, 128→256 (each + BN + LReLU), flatten, linear → 1 (6·6·256 = 9216 inputs for 120² patches).

Test-time conventions of the official script (section 9, "three quirks"), selectable so that a
network trained here can be run either way: ``spectral_norm`` off uses the raw stored kernels;
``bn="image_unit"`` normalises with each image's own statistics and scale 1 / shift 0 (fresh,
unrestored BN variables), ``"image"`` with the trained scale and shift, ``None`` = batch statistics
as in training. BN here never keeps running statistics (the official graph always used batch
statistics, ``is_training=True``); eps 1e-5.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

WIDTHS = (256, 128, 64, 32)
KERNELS = (5, 5, 3, 3)
SHRINK = 12  # pixels lost per axis by the VALID convs (4 + 4 + 2 + 2)


class ImageBN(nn.BatchNorm2d):
    """BatchNorm without running statistics and a test-time mode (module docstring)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, eps=eps, track_running_stats=False)
        self.mode: str | None = None

    def forward(self, x):
        if self.mode is None:
            return super().forward(x)
        weight, bias = (None, None) if self.mode == "image_unit" else (self.weight, self.bias)
        return F.instance_norm(x, weight=weight, bias=bias, eps=self.eps)


def _sn(module: nn.Module) -> nn.Module:
    return spectral_norm(module, n_power_iterations=1, eps=1e-12)


class Generator(nn.Module):
    def __init__(self, widths: Sequence[int] = WIDTHS, kernels: Sequence[int] = KERNELS, eps: float = 1e-5):
        super().__init__()
        chans = (2, *widths)
        self.convs = nn.ModuleList([_sn(nn.Conv2d(a, b, k)) for a, b, k in zip(chans, chans[1:], kernels)])
        self.bns = nn.ModuleList([ImageBN(c, eps) for c in widths])
        self.out = _sn(nn.Conv2d(widths[-1], 1, 1))
        self.shrink = sum(k - 1 for k in kernels)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """tanh output, ``shrink`` px smaller than the [−1, 1] inputs."""
        x = torch.cat([ir, vis], 1)
        for conv, bn in zip(self.convs, self.bns):
            x = F.leaky_relu(bn(conv(x)), 0.2)
        return torch.tanh(self.out(x))


class Discriminator(nn.Module):
    """``spectral_norm=False``: the same layout with plain convolutions (MFF-GAN's discriminator, spec
    section 11, on 60² gradient patches: 2·2·256 = 1024 linear inputs)."""

    def __init__(self, size: int, widths: Sequence[int] = (32, 64, 128, 256), eps: float = 1e-5,
                 spectral_norm: bool = True):
        super().__init__()
        chans = (1, *widths)
        wrap = _sn if spectral_norm else (lambda m: m)
        self.convs = nn.ModuleList([wrap(nn.Conv2d(a, b, 3, stride=2)) for a, b in zip(chans, chans[1:])])
        self.bns = nn.ModuleList([nn.Identity(), *(ImageBN(c, eps) for c in widths[1:])])
        for _ in widths:
            size = (size - 3) // 2 + 1
        if size < 1:
            raise ValueError("discriminator input too small for four stride-2 3x3 convs")
        self.linear = nn.Linear(widths[-1] * size * size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns):
            x = F.leaky_relu(bn(conv(x)), 0.2)
        return self.linear(x.flatten(1))


def set_test_mode(generator: Generator, bn: str | None, spectral_norm_at_test: bool) -> Generator:
    """Set the BN mode (``image_unit`` | ``image`` | None) and, without ``spectral_norm_at_test``,
    replace every spectrally normalised kernel by its raw stored tensor (the official test graph)."""
    for module in generator.bns:
        module.mode = bn
    if not spectral_norm_at_test:
        for conv in (*generator.convs, generator.out):
            if parametrize.is_parametrized(conv, "weight"):
                raw = conv.parametrizations.weight.original.detach().clone()
                parametrize.remove_parametrizations(conv, "weight", leave_parametrized=False)
                conv.weight = nn.Parameter(raw)
    return generator


def gflops(height: int, width: int, widths: Sequence[int] = WIDTHS, kernels: Sequence[int] = KERNELS) -> float:
    """Multiply-adds ×2 of the generator on an H×W image (edge-padded by ``shrink/2`` per side)."""
    chans, h, w, total = (2, *widths, 1), height + sum(k - 1 for k in kernels), width + sum(k - 1 for k in kernels), 0.0
    for a, b, k in zip(chans, chans[1:], (*kernels, 1)):
        h, w = h - k + 1, w - k + 1
        total += 2.0 * a * b * k * k * h * w
    return total / 1e9
