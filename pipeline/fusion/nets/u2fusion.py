"""U2Fusion generator (Xu et al., TPAMI 2022; spec methods.md §7).

Every conv: reflect pad 1, 3×3, bias; LReLU(0.2) = max(x, 0.2x) after every conv except the last;
no BN. Encoder ``enc.0``: 2→44 on cat[S1, S2] (S1 = visible, S2 = infrared); ``enc.i``
(i = 1..5): t = conv 44i→44 (x), x ← cat[t, x] (**new first**) → 264 channels. Decoder ``dec.0..3``:
264→128→64→32→1, then tanh(x)/2 + 0.5. Inputs and output in [0, 1].

TF variables → keys (:func:`tf_key_map`): ``Generator/encoder/conv1_1`` → ``enc.0``,
``Generator/encoder/dense_block_conv{i}`` → ``enc.i``, ``Generator_1/decoder/conv2_{j}`` → ``dec.{j-1}``.
Constructor ``U2FusionNet(growth=44, dense=5)``; trainable as is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.fusion.nets.blocks import PadConv2d


class U2FusionNet(nn.Module):
    def __init__(self, growth: int = 44, dense: int = 5):
        super().__init__()
        self.enc = nn.ModuleList([PadConv2d(2, growth, 3, mode="reflect")]
                                 + [PadConv2d(growth * i, growth, 3, mode="reflect") for i in range(1, dense + 1)])
        width = growth * (dense + 1)
        self.dec = nn.ModuleList([PadConv2d(a, b, 3, mode="reflect")
                                  for a, b in ((width, 128), (128, 64), (64, 32), (32, 1))])

    def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.enc[0](torch.cat([s1, s2], 1)), 0.2)
        for conv in self.enc[1:]:
            x = torch.cat([F.leaky_relu(conv(x), 0.2), x], 1)
        for conv in self.dec[:-1]:
            x = F.leaky_relu(conv(x), 0.2)
        return torch.tanh(self.dec[-1](x)) / 2 + 0.5


def tf_key_map(net: U2FusionNet) -> dict[str, str]:
    """{PyTorch key: TF variable name}."""
    names = ["Generator/encoder/conv1_1"] + [f"Generator/encoder/dense_block_conv{i}" for i in range(1, len(net.enc))]
    names += [f"Generator_1/decoder/conv2_{j}" for j in range(1, len(net.dec) + 1)]
    keys = [f"enc.{i}" for i in range(len(net.enc))] + [f"dec.{j}" for j in range(len(net.dec))]
    out = {}
    for key, name in zip(keys, names):
        out[f"{key}.weight"], out[f"{key}.bias"] = f"{name}/kernel", f"{name}/bias"
    return out
