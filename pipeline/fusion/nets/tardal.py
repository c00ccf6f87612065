"""TarDAL v0 generator (Liu et al., CVPR 2022; spec methods.md §3), dim 32, depth 3.

All convs 3×3, zero pad 1, bias; BN eps 1e-5. ``encoder``: conv 2→32 + BN + ReLU on cat[ir, vis];
``dense.i`` (i = 0..2): conv 32(i+1)→32 + BN + ReLU, x ← cat[x, new] (old first) → 128 ch;
``fuse``: conv 128→128 + ReLU (no BN), 128→64 + BN + ReLU, 64→32 + BN + ReLU, 32→1 + tanh.
The BN test mode depends on the checkpoint (tardal.pt: per-image statistics; tardal+/++: eval).
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.fusion.nets.blocks import conv_bn_act, dense_forward


class TarDALGenerator(nn.Module):
    def __init__(self, dim: int = 32, depth: int = 3):
        super().__init__()
        self.encoder = conv_bn_act(2, dim, nn.ReLU())
        self.dense = nn.ModuleList([conv_bn_act(dim * (i + 1), dim, nn.ReLU()) for i in range(depth)])
        width = dim * (depth + 1)
        self.fuse = nn.Sequential(conv_bn_act(width, width, nn.ReLU(), bn=False),
                                  conv_bn_act(width, width // 2, nn.ReLU()),
                                  conv_bn_act(width // 2, width // 4, nn.ReLU()),
                                  conv_bn_act(width // 4, 1, nn.Tanh(), bn=False))

    def forward(self, ir, vis):
        x = self.encoder(torch.cat([ir, vis], dim=1))
        return self.fuse(dense_forward(self.dense, x))
