"""SeAFusion's FusionNet (Tang et al., Information Fusion 2022; spec methods.md §2).

Encoders ``vis_*`` (visible Y) and ``inf_*`` (infrared): conv 3×3 1→16 + LReLU(0.2), RGBD(16→32),
RGBD(32→48). RGBD(c→o): dense branch [x, c1 = L(conv1 x), L(conv2 [x, c1])] (old first, 3c
channels) → 1×1 ``convdown``; gradient branch ``sobelconv`` (trainable depthwise Sobel pair,
|·|+|·|) → 1×1 ``convup``; output LReLU(0.1)(sum). Decoder on cat[vis, inf] (96 ch): 3×3 convs
96→64→32→16 with LReLU(0.2), 16→1, then tanh(x)/2 + 0.5. All 3×3 convs zero pad 1. Each
``decodeK`` owns an unused ``bn`` (declared so the checkpoint loads strictly).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.fusion.nets.blocks import PadConv2d, SobelBranch, dense_forward


class ConvLeaky(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 3, slope: float | None = 0.2, bn: bool = False):
        super().__init__()
        self.conv = PadConv2d(cin, cout, k)
        if bn:
            self.bn = nn.BatchNorm2d(cout)  # in the checkpoint, never called by the forward
        self.slope = slope

    def forward(self, x):
        x = self.conv(x)
        return x if self.slope is None else F.leaky_relu(x, self.slope)


class DenseBranch(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = ConvLeaky(c, c)
        self.conv2 = ConvLeaky(2 * c, c)

    def forward(self, x):
        return dense_forward([self.conv1, self.conv2], x)


class RGBD(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.dense = DenseBranch(cin)
        self.convdown = ConvLeaky(3 * cin, cout, 1, slope=None)
        self.sobelconv = SobelBranch(cin)
        self.convup = ConvLeaky(cin, cout, 1, slope=None)

    def forward(self, x):
        return F.leaky_relu(self.convdown(self.dense(x)) + self.convup(self.sobelconv(x)), 0.1)


class SeAFusionNet(nn.Module):
    """``forward(vis_ycrcb, ir)``: the official call order; only channel 0 of the first input is read."""

    def __init__(self):
        super().__init__()
        for side in ("vis", "inf"):
            setattr(self, f"{side}_conv", ConvLeaky(1, 16))
            setattr(self, f"{side}_rgbd1", RGBD(16, 32))
            setattr(self, f"{side}_rgbd2", RGBD(32, 48))
        self.decode4 = ConvLeaky(96, 64, bn=True)
        self.decode3 = ConvLeaky(64, 32, bn=True)
        self.decode2 = ConvLeaky(32, 16, bn=True)
        self.decode1 = ConvLeaky(16, 1, slope=None, bn=True)

    def encode(self, side: str, x):
        for part in ("conv", "rgbd1", "rgbd2"):
            x = getattr(self, f"{side}_{part}")(x)
        return x

    def forward(self, vis, ir):
        x = torch.cat([self.encode("vis", vis[:, :1]), self.encode("inf", ir)], dim=1)
        x = self.decode1(self.decode2(self.decode3(self.decode4(x))))
        return torch.tanh(x) / 2 + 0.5
