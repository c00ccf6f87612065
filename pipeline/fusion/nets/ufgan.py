"""UFGAN networks, **"UFGAN, defects fixed"** (drowning-in-codes/UFGAN @d35fbbf, MIT; spec ``methods.md``
section 12). The official code publishes no weights; these networks are trained in the pipeline
(:mod:`pipeline.training.methods.ufgan`, which lists the fixed defects).

Generator ``UNetGenerator(width)`` (published width 64 → 31.0 M parameters): every conv has spectral
norm and **no padding**. Block(a→b) = [conv 3×3 a→b, BN, LReLU(0.01), conv 3×3 b→b, BN, LReLU(0.01)]
(the last block: tanh instead of the LReLUs). Encoder: 2→w, maxpool(2, stride 2, padding 1), w→2w,
pool, 2w→4w, Dropout(0.2), pool, 4w→8w, pool, Dropout(0.2), 8w→16w. Decoder: four up-steps, each a
ConvTranspose 2×2 stride 2 padding 1 c→c/2 (spectral norm), BN, LReLU(0.01), zero-padded (or cropped)
to the skip's size, cat [up, skip], a block c→c/2; then conv 1×1 w→1 and tanh. The output is 8 px
smaller per axis than the input (488×648 → 480×640). Input cat[IR, VI] in [−1, 1].

**Fixed here:** the Dropout layers are modules created once (the official ones are created inside
``forward`` and so stay active in eval mode: two eval calls gave different outputs); in ``eval()``
the generator is deterministic.

Discriminator (training only): 4 × [spectral-norm conv 3×3 stride 2 (no pad), BN, LReLU(0.01)]
1→32→64→128→256, adaptive max-pool to 1×1, conv 1×1 → 1 (the LReLU slope is not stated in the spec;
the generator's 0.01 is used).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

SHRINK = 8
SLOPE = 0.01


def _sn(module: nn.Module) -> nn.Module:
    return spectral_norm(module, n_power_iterations=1, eps=1e-12)


class Block(nn.Module):
    """Two unpadded spectral-norm 3×3 convs with BN and LReLU(0.01) (``last``: tanh instead)."""

    def __init__(self, cin: int, cout: int, last: bool = False):
        super().__init__()
        self.conv1, self.bn1 = _sn(nn.Conv2d(cin, cout, 3)), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _sn(nn.Conv2d(cout, cout, 3)), nn.BatchNorm2d(cout)
        self.last = last

    def forward(self, x):
        act = torch.tanh if self.last else (lambda t: F.leaky_relu(t, SLOPE))
        return act(self.bn2(self.conv2(act(self.bn1(self.conv1(x))))))


class Up(nn.Module):
    """ConvTranspose 2×2 stride 2 padding 1 (spectral norm) + BN + LReLU, fitted to the skip, block."""

    def __init__(self, cin: int, last: bool = False):
        super().__init__()
        self.up = _sn(nn.ConvTranspose2d(cin, cin // 2, 2, stride=2, padding=1))
        self.bn = nn.BatchNorm2d(cin // 2)
        self.block = Block(cin, cin // 2, last)

    def forward(self, x, skip):
        x = F.leaky_relu(self.bn(self.up(x)), SLOPE)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        return self.block(torch.cat([x, skip], 1))


class UNetGenerator(nn.Module):
    def __init__(self, width: int = 64, dropout: float = 0.2):
        super().__init__()
        w = width
        self.down = nn.ModuleList([Block(2, w), Block(w, 2 * w), Block(2 * w, 4 * w), Block(4 * w, 8 * w),
                                   Block(8 * w, 16 * w)])
        self.drop3, self.drop4 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.ups = nn.ModuleList([Up(16 * w), Up(8 * w), Up(4 * w), Up(2 * w, last=True)])
        self.out = _sn(nn.Conv2d(w, 1, 1))

    @staticmethod
    def pool(x):
        return F.max_pool2d(x, 2, stride=2, padding=1)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        x1 = self.down[0](torch.cat([ir, vis], 1))
        x2 = self.down[1](self.pool(x1))
        x3 = self.down[2](self.pool(x2))
        x4 = self.down[3](self.pool(self.drop3(x3)))
        x5 = self.down[4](self.drop4(self.pool(x4)))
        x = x5
        for up, skip in zip(self.ups, (x4, x3, x2, x1)):
            x = up(x, skip)
        return torch.tanh(self.out(x))


def smallest_input(limit: int = 400) -> int:
    """Smallest square input the generator accepts (every feature map at least 1 px, the bottom 2)."""
    for size in range(SHRINK + 1, limit):
        s = size
        ok = True
        for level in range(5):
            s -= 4
            if s < (2 if level == 4 else 1):  # the first ConvTranspose needs 2 px
                ok = False
                break
            if level < 4:
                s = s // 2 + 1
        if ok:
            return size
    raise ValueError("no input size found")


class Discriminator(nn.Module):
    def __init__(self, widths=(32, 64, 128, 256)):
        super().__init__()
        chans = (1, *widths)
        self.convs = nn.ModuleList([_sn(nn.Conv2d(a, b, 3, stride=2)) for a, b in zip(chans, chans[1:])])
        self.bns = nn.ModuleList([nn.BatchNorm2d(c) for c in widths])
        self.head = nn.Conv2d(widths[-1], 1, 1)

    def forward(self, x):
        for conv, bn in zip(self.convs, self.bns):
            x = F.leaky_relu(bn(conv(x)), SLOPE)
        return self.head(F.adaptive_max_pool2d(x, 1)).flatten(1)


def fuse_full_size(net: UNetGenerator, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """Fused N×1×H×W of inputs in [0, 1] at their own size: [−1, 1], reflect-padded by 4 px (the test
    script's 8-px margin), images smaller than the U-Net's smallest input further edge-padded and the
    output cropped back; tanh output mapped to [0, 1]."""
    h, w = ir.shape[-2:]
    need = smallest_input()
    extra_h, extra_w = max(0, need - h - SHRINK), max(0, need - w - SHRINK)
    pads = (extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2)
    x = []
    for t in (ir, vis):
        t = F.pad(t * 2 - 1, (SHRINK // 2,) * 4, mode="reflect" if min(h, w) > SHRINK // 2 else "replicate")
        x.append(F.pad(t, pads, mode="replicate") if any(pads) else t)
    out = net(*x)
    return (out[..., pads[2]:pads[2] + h, pads[0]:pads[0] + w] + 1) / 2
