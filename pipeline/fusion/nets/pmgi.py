"""PMGI (Zhang et al., AAAI 2020; spec methods.md §8) and the two-path layout MFF-GAN shares (§11).

Two paths ``p`` ∈ {first, second} (TF scopes ``layerK`` and ``layerK<suffix>``; PMGI suffix
``_vi``, MFF-GAN ``_far``). Every conv has a bias and TF 'SAME' zero padding (k//2); each one but
the last is followed by [BN and] LReLU(0.2) = max(x, 0.2x):

* c1ᵖ = conv 5×5 (``layer1``) on the path input;  c2ᵖ = conv 3×3 16→16 (``layer2``) on c1ᵖ;
* c23ᵖ = conv 1×1 32→16 (``layer2_3``) on cat[c2¹, c2²] (information exchange, both paths
  read the same first-path-first concatenation);
* c3ᵖ = conv 3×3 48→16 (``layer3``) on cat[c1ᵖ, c2ᵖ, c23ᵖ];  c34ᵖ = conv 1×1 32→16
  (``layer3_4``) on cat[c3¹, c3²];  c4ᵖ = conv 3×3 64→16 (``layer4``) on cat[c1ᵖ, c2ᵖ, c3ᵖ, c34ᵖ];
* out = tanh(conv 1×1 128→1 (``layer5``) on cat[c1¹, c1², c2¹, c2², c3¹, c3², c4¹, c4²]).

PMGI: 3-channel path inputs A = [ir, ir, vis], B = [vis, vis, ir]; BN (eps 1e-5) after every
conv but ``layer5``. At test the official script uses per-image statistics with scale 1, shift 0
(``ModeBatchNorm`` mode ``image_unit``); the trained BN values are still loaded (and trained).
MFF-GAN: 1-channel inputs (near, far), no BN.

Module keys: ``<scope>.conv.{weight,bias}`` and ``<scope>.bn.*`` (TF ``fusion_model/<scope>/wK``,
``bK``, ``BatchNorm/{gamma,beta,moving_mean,moving_variance}``); :func:`tf_key_map` gives the map.
Constructor: ``TwoPathNet(in_channels, suffix, bn, width=16)``; ``PMGINet()``; the network is an
ordinary trainable module (BN test mode ``None`` = usual train/eval behaviour).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.fusion.nets.blocks import ModeBatchNorm, PadConv2d

LAYERS = ("layer1", "layer2", "layer2_3", "layer3", "layer3_4", "layer4")


class ConvUnit(nn.Module):
    """conv k×k (zero pad k//2, bias) [+ BN] + LReLU(0.2) (``act=False``: the bare conv) on the
    channel concatenation of ``pieces``.

    With autograd recording (training) the concatenation is never built: conv(cat[x₁…xₙ], W) + b =
    Σᵢ conv(xᵢ, W[:, slice i]) + b, the same convolution summed in another order (float rounding
    only; tests/test_fusion_published_tf.py). The concatenations were a quarter of a training step
    on the CPU (memory-bound copies, and their backward); without grad (fusion) the plain
    concatenated conv of the official graph runs."""

    def __init__(self, cin: int, cout: int, k: int, bn: bool, act: bool = True):
        super().__init__()
        self.conv = PadConv2d(cin, cout, k)
        self.bn = ModeBatchNorm(cout, eps=1e-5) if bn else None
        self.act = act

    def forward(self, *pieces: torch.Tensor) -> torch.Tensor:
        if len(pieces) == 1:
            x = self.conv(pieces[0])
        elif torch.is_grad_enabled():
            x, start = None, 0
            for piece in pieces:   # the bias enters with the first piece (x keeps its memory format)
                stop = start + piece.shape[1]
                y = F.conv2d(piece, self.conv.weight[:, start:stop], None if start else self.conv.bias,
                             padding=self.conv.padding)
                x, start = (y if x is None else x + y), stop
        else:
            x = self.conv(torch.cat(pieces, 1))
        if self.bn is not None:
            x = self.bn(x)
        return F.leaky_relu(x, 0.2) if self.act else x


class TwoPathNet(nn.Module):
    """The PMGI / MFF-GAN generator on two path inputs (N×C×H×W each), output tanh in (−1, 1)."""

    def __init__(self, in_channels: int, suffix: str, bn: bool, width: int = 16):
        super().__init__()
        self.suffix = suffix
        w = width
        shapes = {"layer1": (in_channels, 5), "layer2": (w, 3), "layer2_3": (2 * w, 1),
                  "layer3": (3 * w, 3), "layer3_4": (2 * w, 1), "layer4": (4 * w, 3)}
        for scope, (cin, k) in shapes.items():
            for sfx in ("", suffix):
                self.add_module(scope + sfx, ConvUnit(cin, w, k, bn))
        self.layer5 = ConvUnit(8 * w, 1, 1, bn=False, act=False)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        paths = ("", self.suffix)

        def both(scope, inputs):
            """Each path's unit on its own list of pieces (the channel concatenation's parts)."""
            return [getattr(self, scope + sfx)(*x) for sfx, x in zip(paths, inputs)]

        c1 = both("layer1", ((first,), (second,)))
        c2 = both("layer2", ((c1[0],), (c1[1],)))
        c23 = both("layer2_3", [c2] * 2)
        c3 = both("layer3", list(zip(c1, c2, c23)))
        c34 = both("layer3_4", [c3] * 2)
        c4 = both("layer4", list(zip(c1, c2, c3, c34)))
        return torch.tanh(self.layer5(*c1, *c2, *c3, *c4))


class PMGINet(TwoPathNet):
    """PMGI: ``forward(ir, vis)`` with single-channel inputs in [−1, 1] builds A = [ir, ir, vis]
    and B = [vis, vis, ir]; ``forward_paths(a, b)`` takes the two 3-channel path inputs."""

    def __init__(self, width: int = 16):
        super().__init__(3, "_vi", bn=True, width=width)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([ir, ir, vis], 1), torch.cat([vis, vis, ir], 1))

    def forward_paths(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return super().forward(a, b)


def tf_key_map(net: TwoPathNet, scope: str = "fusion_model") -> dict[str, str]:
    """{PyTorch key: TF variable name} of every tensor of ``net`` (num_batches_tracked excepted)."""
    out = {}
    for name, module in net.named_children():
        tag = name[len("layer"):]
        out[f"{name}.conv.weight"] = f"{scope}/{name}/w{tag}"
        out[f"{name}.conv.bias"] = f"{scope}/{name}/b{tag}"
        if module.bn is not None:
            for key, var in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                             ("running_var", "moving_variance")):
                out[f"{name}.bn.{key}"] = f"{scope}/{name}/BatchNorm/{var}"
    return out
