"""IFCNN (Zhang et al., Information Fusion 2020; spec methods.md §5), fusion rule max/mean/sum.

``conv1``: replicate pad 3, conv 7×7 3→64 without bias (ResNet-101's first conv with stride 1,
loaded from the checkpoint), no activation. ``conv2``: replicate pad 1, conv 3×3 64→64 without
bias, BN (eval), ReLU — applied to each input with shared weights. Fusion: element-wise max (or
mean / sum) over the inputs. ``conv3``: as ``conv2``; ``conv4``: conv 1×1 64→3 with bias.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.fusion.nets.blocks import ModeBatchNorm, PadConv2d


class ConvBlock(nn.Module):
    conv_then_bn = True  # lets blocks.fold_conv_bn fold ``bn`` into ``conv``

    def __init__(self, channels: int = 64):
        super().__init__()
        self.conv = PadConv2d(channels, channels, 3, mode="replicate", bias=False)
        self.bn = ModeBatchNorm(channels)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class IFCNNNet(nn.Module):
    RULES = ("max", "mean", "sum")

    def __init__(self, rule: str = "max"):
        super().__init__()
        if rule not in self.RULES:
            raise ValueError(f"unknown IFCNN fusion rule {rule!r}")
        self.rule = rule
        self.conv1 = PadConv2d(3, 64, 7, mode="replicate", bias=False)
        self.conv2 = ConvBlock(64)
        self.conv3 = ConvBlock(64)
        self.conv4 = nn.Conv2d(64, 3, 1)

    def forward(self, *inputs):
        feats = [self.conv2(self.conv1(x)) for x in inputs]
        fused = feats[0]
        for f in feats[1:]:
            fused = torch.maximum(fused, f) if self.rule == "max" else fused + f
        if self.rule == "mean":
            fused = fused / len(feats)
        return self.conv4(self.conv3(fused))
