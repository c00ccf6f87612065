"""DenseFuse (Li & Wu, IEEE TIP 2019), grey model of the authors' PyTorch port (spec methods.md §4).

Every layer: reflect pad 1, conv 3×3 with bias, ReLU — the last one too (the port never sets its
``is_last`` flag). Encoder: ``conv1`` 1→16, dense block ``DB1`` of three convs 16→16, 32→16, 48→16
with x ← cat[x, new] (old first) → 64 channels. Decoder ``conv2..conv5``: 64→64→32→16→1.
Fusion at test (strategy "addition"): (enc(ir) + enc(vis)) / 2. Values are on the 0..255 scale.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.fusion.nets.blocks import PadConv2d, dense_forward


class ConvLayer(nn.Module):
    """Reflect pad 1 + conv 3×3 + ReLU (key ``conv2d``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv2d = PadConv2d(cin, cout, 3, mode="reflect")

    def forward(self, x):
        return torch.relu(self.conv2d(x))


class DenseConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.dense_conv = ConvLayer(cin, cout)

    def forward(self, x):
        return self.dense_conv(x)


class DenseBlock(nn.Module):
    def __init__(self, cin: int = 16, growth: int = 16, layers: int = 3):
        super().__init__()
        self.denseblock = nn.Sequential(*[DenseConv(cin + i * growth, growth) for i in range(layers)])

    def forward(self, x):
        return dense_forward(self.denseblock, x)


class DenseFuseNet(nn.Module):
    """``encoder(x)`` → 64 features; ``decoder(f)`` → image; ``forward(ir, vis)`` = the fused image."""

    def __init__(self, channels: int = 1):
        super().__init__()
        self.conv1 = ConvLayer(channels, 16)
        self.DB1 = DenseBlock(16, 16, 3)
        self.conv2 = ConvLayer(64, 64)
        self.conv3 = ConvLayer(64, 32)
        self.conv4 = ConvLayer(32, 16)
        self.conv5 = ConvLayer(16, channels)

    def encoder(self, x):
        return self.DB1(self.conv1(x))

    def decoder(self, f):
        return self.conv5(self.conv4(self.conv3(self.conv2(f))))

    def forward(self, ir, vis):
        return self.decoder((self.encoder(ir) + self.encoder(vis)) / 2)
