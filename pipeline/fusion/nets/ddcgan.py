"""DDcGAN networks, same-resolution variant (Xu et al., IJCAI 2019; Ma et al., "DDcGAN: a dual-
discriminator conditional GAN for multi-resolution image fusion", IEEE TIP 29, 2020; spec
``methods.md`` section 10).

Every conv is reflect pad 1 + 3×3 VALID with bias. BN always uses the batch's own statistics (the
official ``training=True``) with trained scale/shift, eps 1e-3 (TF layers default).

Generator (input cat[VIS, IR], both in [0, 1]): encoder ``conv1_1`` 2→48 + BN + ReLU, then four dense
convs 48i→48 + BN + ReLU with x = cat[new, x] → 240 channels; decoder: ``conv2_1`` 240→240 applied
**twice** (first with ReLU only, then again with the same kernel + BN + ReLU — the official
control-flow quirk, ``double_first=True``), 240→128, 128→64, 64→32 (each + BN + ReLU), 32→1, then
tanh/2 + 0.5. ``widths`` scales the channels (published ``(48, 240, 128, 64, 32)``: growth, decoder
input, decoder widths).

Discriminator (D1: VIS vs fused; D2: IR vs fused): stride-2 convs 1→16 (ReLU), 16→32, 32→64 (each
+ BN + ReLU), flatten (11·11·64 for 84² patches), dense → 1, tanh/2 + 0.5 (a probability).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (48, 128, 64, 32)  # growth (dense block = 5 × growth channels), then decoder widths


class RConv(nn.Conv2d):
    """Reflect pad 1 + 3×3 VALID conv."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(cin, cout, 3, stride=stride)

    def forward(self, x):
        return super().forward(F.pad(x, (1, 1, 1, 1), mode="reflect"))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, track_running_stats=False)


class Generator(nn.Module):
    def __init__(self, widths: Sequence[int] = WIDTHS, double_first: bool = True):
        super().__init__()
        g = int(widths[0])
        self.encoder = nn.ModuleList([RConv(2, g), *(RConv(g * i, g) for i in range(1, 5))])
        self.encoder_bn = nn.ModuleList([_bn(g) for _ in range(5)])
        chans = (5 * g, 5 * g, *widths[1:])
        self.decoder = nn.ModuleList([RConv(a, b) for a, b in zip(chans, chans[1:])])
        self.decoder_bn = nn.ModuleList([_bn(c) for c in chans[1:]])
        self.last = RConv(chans[-1], 1)
        self.double_first = double_first

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.encoder_bn[0](self.encoder[0](torch.cat([vis, ir], 1))))
        for conv, bn in zip(self.encoder[1:], self.encoder_bn[1:]):
            x = torch.cat([F.relu(bn(conv(x))), x], 1)
        if self.double_first:
            x = F.relu(self.decoder[0](x))
        for conv, bn in zip(self.decoder, self.decoder_bn):
            x = F.relu(bn(conv(x)))
        return torch.tanh(self.last(x)) / 2 + 0.5


class Discriminator(nn.Module):
    def __init__(self, size: int, widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        chans = (1, *widths)
        self.convs = nn.ModuleList([RConv(a, b, stride=2) for a, b in zip(chans, chans[1:])])
        self.bns = nn.ModuleList([nn.Identity(), *(_bn(c) for c in widths[1:])])
        for _ in widths:
            size = (size - 1) // 2 + 1
        self.dense = nn.Linear(widths[-1] * size * size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns):
            x = F.relu(bn(conv(x)))
        return torch.tanh(self.dense(x.flatten(1))) / 2 + 0.5


def gflops(height: int, width: int, widths: Sequence[int] = WIDTHS, double_first: bool = True) -> float:
    """Multiply-adds ×2 of the generator on an H×W image."""
    g = int(widths[0])
    convs = [(2, g), *((g * i, g) for i in range(1, 5))]
    chans = (5 * g, 5 * g, *widths[1:])
    dec = list(zip(chans, chans[1:]))
    convs += ([dec[0]] if double_first else []) + dec + [(chans[-1], 1)]
    return sum(2.0 * a * b * 9 * height * width for a, b in convs) / 1e9
