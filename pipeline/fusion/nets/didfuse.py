"""DIDFuse (Zhao et al., IJCAI 2020; spec methods.md §6), "Sum" fusion at test.

All convs 3×3 with bias, BN eps 1e-5, PReLU with one shared slope. Encoder: ``cov1`` reflect
pad 1 + conv 1→64 + BN + PReLU → f1; ``cov2`` zero pad 1 conv 64→64 + BN + PReLU → f2;
``cov3`` (base B) and ``cov4`` (detail D): conv 64→64 + BN + tanh. Decoder: ``cov5`` conv 128→64
on cat[B, D] + BN + PReLU; ``cov6`` 128→64 on cat[cov5, f2] + BN + PReLU; ``cov7`` reflect pad 1,
conv 128→1 on cat[cov6, f1] + BN + sigmoid. Fusion: every feature summed over ir and vis.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.fusion.nets.blocks import conv_bn_act


def _seq(name: str, seq: nn.Sequential) -> nn.Module:
    holder = nn.Module()
    holder.add_module(name, seq)
    return holder


class DIDFuseEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.cov1 = _seq("cov1", conv_bn_act(1, 64, nn.PReLU(), lead_pad=nn.ReflectionPad2d(1)))
        self.cov2 = _seq("cov2", conv_bn_act(64, 64, nn.PReLU()))
        self.cov3 = _seq("cov3", conv_bn_act(64, 64, nn.Tanh()))
        self.cov4 = _seq("cov4", conv_bn_act(64, 64, nn.Tanh()))

    def forward(self, x):
        f1 = self.cov1.cov1(x)
        f2 = self.cov2.cov2(f1)
        return f1, f2, self.cov3.cov3(f2), self.cov4.cov4(f2)


class DIDFuseDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.cov5 = _seq("cov5", conv_bn_act(128, 64, nn.PReLU()))
        self.cov6 = _seq("cov6", conv_bn_act(128, 64, nn.PReLU()))
        self.cov7 = _seq("cov7", conv_bn_act(128, 1, nn.Sigmoid(), lead_pad=nn.ReflectionPad2d(1)))

    def forward(self, f1, f2, base, detail):
        x = self.cov5.cov5(torch.cat([base, detail], 1))
        x = self.cov6.cov6(torch.cat([x, f2], 1))
        return self.cov7.cov7(torch.cat([x, f1], 1))


class DIDFuseNet(nn.Module):
    """``encoder`` / ``decoder`` as in the two official files; ``forward(ir, vis)`` = Sum fusion."""

    def __init__(self):
        super().__init__()
        self.encoder = DIDFuseEncoder()
        self.decoder = DIDFuseDecoder()

    def forward(self, ir, vis):
        a, b = self.encoder(ir), self.encoder(vis)
        return self.decoder(*[x + y for x, y in zip(a, b)])
