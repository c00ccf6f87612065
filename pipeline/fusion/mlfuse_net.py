"""MLFuse network (``MLFNet``) exactly as in ``../shared/spec/mlfuse.md`` sections 2-7.

The module tree reproduces the official checkpoint's 111 state_dict entries (names, order,
shapes: spec appendix), so ``model.load_state_dict(ckpt["model"], strict=True)`` works on the
official ``model_fuse.pth`` and on checkpoints trained by this pipeline (same ``{"epoch", "model"}``
layout). Use :func:`load_mlfnet` to build + load in one call (``torch.load(..., weights_only=True)``).

Forward signature (used by inference and by the MLFuse training helper)::

    f, l_edg, l_cmk, l_ssd = MLFNet()(img1, img2)

* ``img1``: N×1×H×W float32 in [0, 1] -- the texture/structural modality (visible, MRI);
* ``img2``: N×1×H×W float32 in [0, 1] -- the thermal/functional modality (infrared, CT/PET/SPECT);
* ``f``: fused image, tanh output in (-1, 1), N×1×H×W (inference post-processing: min-max, ×255,
  truncate; see :func:`pipeline.fusion.mlfuse.to_uint8_official`);
* ``l_edg``: edge head (tanh), read by the edge loss (Sobel vs img1);
* ``l_cmk``: cross-modal head (tanh), read by the cross-modal MSE loss;
* ``l_ssd``: spatial-spectral head (tanh), read by the saliency (VSM of img2) L1 loss.
Note the order: fused, edge, cross-modal, spatial-spectral (spec section 3, step 5).

Differences from the official code (spec section 11), on purpose:

* device-agnostic (no hard-coded CUDA); the loss modules (``c_loss`` ... ``f_loss`` in the official
  tree) are not children here -- they have no state_dict entries, so strict loading is unaffected;
  the training helper owns the losses;
* ``conv_dilation`` is defined and stored (it is in the checkpoint) but, as in the official forward,
  never called;
* ``torch.tanh`` instead of the deprecated ``F.tanh`` (numerically identical);
* the channel gate's sum over all pixels (``torch.matmul(v, softmax(q)ᵀ)`` in the official code,
  i.e. whatever order the machine's BLAS uses) is computed in the fixed four-lane float32 order of
  the BLAS that made the official outputs (:mod:`pipeline.fusion.mlfuse_reduction`): same maths,
  and the same float32 numbers on every machine.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.fusion.mlfuse_reduction import gate_softmax, lane_dot

N_STATE_ENTRIES = 111
N_LEARNABLE = 111_817


class CBR(nn.Module):
    """conv 3×3 (bias) -> BatchNorm -> ReLU, as child ``double_conv`` ("SingleConv"; spec §2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class DCBR(nn.Module):
    """Two (conv 3×3 -> BN -> ReLU) blocks cin->cmid->cout in child ``double_conv`` (spec §2)."""

    def __init__(self, cin: int, cmid: int, cout: int):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cmid, 3, padding=1), nn.BatchNorm2d(cmid), nn.ReLU(inplace=True),
            nn.Conv2d(cmid, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


def cbp(c: int) -> nn.Sequential:
    """Bare sequential conv 3×3 c->c (bias) -> BN -> PReLU(one slope, init 0.25) (spec §2)."""
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.PReLU(1, 0.25))


class OutConv(nn.Module):
    """Output head: child ``conv`` 1×1 16->1, forward applies tanh (spec §3)."""

    def __init__(self, cin: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(cin, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))


class EdgeNet(nn.Module):
    """Edge-guided learning network ``edg_net`` (spec §4). Returns (u_edg N×32×H×W, l_edg N×1×H×W)."""

    def __init__(self, n: int = 32, f: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(n, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, n, 1)
        self.conv_dilation = nn.Conv2d(f, f, 3, stride=3, padding=1, dilation=2)  # stored, unused
        self.ouc_edge = nn.Conv2d(n, 1, 1)

    def mask(self, a: torch.Tensor) -> torch.Tensor:
        """u_edg = sigmoid(conv4(up(conv3_(relu(conv3(relu(conv_max(pool(conv2(s)))))))) + conv_f(s)))."""
        s = self.conv1(a)
        t = F.max_pool2d(self.conv2(s), kernel_size=7, stride=3)
        t = F.relu(self.conv_max(t))
        t = F.relu(self.conv3(t))
        t = self.conv3_(t)
        t = F.interpolate(t, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.conv4(t + self.conv_f(s)))

    def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.mask(a)
        return u, torch.tanh(self.ouc_edge(u))


class SSDNet(nn.Module):
    """Spatial-spectral domain optimizing network ``ssd_net`` (spec §5).

    u_ssd = b ⊙ sigmoid(conv_up(v · softmax_P(q)ᵀ))  (channel gate B)
          + b ⊙ sigmoid(softmax_P(mean_P(conv_q_left b) · conv_v_left b))  (pixel gate A).
    """

    def __init__(self, n: int = 32, f: int = 16):
        super().__init__()
        self.conv_q_right = nn.Conv2d(n, 1, 1, bias=False)
        self.conv_v_right = nn.Conv2d(n, f, 1, bias=False)
        self.conv_up = nn.Conv2d(f, n, 1, bias=False)
        self.conv_q_left = nn.Conv2d(n, f, 1, bias=False)
        self.conv_v_left = nn.Conv2d(n, f, 1, bias=False)
        self.ouc_cda = nn.Conv2d(n, 1, 1)
        for conv in (self.conv_q_right, self.conv_v_right, self.conv_q_left, self.conv_v_left):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")

    def channel_gate(self, b: torch.Tensor) -> torch.Tensor:
        n, _, h, w = b.shape
        v = self.conv_v_right(b).reshape(n, -1, h * w)
        q = gate_softmax(self.conv_q_right(b).reshape(n, 1, h * w), dim=2)  # float64 normaliser
        context = lane_dot(v, q[:, 0]).reshape(n, -1, 1, 1)  # N×16×1×1, official float32 order
        return b * torch.sigmoid(self.conv_up(context))

    def pixel_gate(self, b: torch.Tensor) -> torch.Tensor:
        n, _, h, w = b.shape
        g = F.adaptive_avg_pool2d(self.conv_q_left(b), 1).reshape(n, -1, 1).permute(0, 2, 1)  # N×1×16
        k = self.conv_v_left(b).reshape(n, -1, h * w)
        z = torch.softmax(torch.matmul(g, k), dim=2).reshape(n, 1, h, w)
        return b * torch.sigmoid(z)

    def forward(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.channel_gate(b) + self.pixel_gate(b)
        return u, torch.tanh(self.ouc_cda(u))


class CMKNet(nn.Module):
    """Cross-modal knowledge reinforcing network ``cmk_net`` (spec §6).

    m = p⊙q; certain = C3(C1(p+m) + C2(q+m)); u = C5(certain + C4(|p-q|)); l = tanh(head(u)).
    """

    def __init__(self, n: int = 32):
        super().__init__()
        self.fuse5_conv1 = cbp(n)
        self.fuse5_conv2 = cbp(n)
        self.fuse5_conv3 = cbp(n)
        self.fuse5_conv4 = cbp(n)
        self.fuse5_conv5 = cbp(n)
        self.ouc_cda = nn.Conv2d(n, 1, 1)

    def features(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        m = p * q
        certain = self.fuse5_conv3(self.fuse5_conv1(p + m) + self.fuse5_conv2(q + m))
        return self.fuse5_conv5(certain + self.fuse5_conv4(torch.abs(p - q)))

    def forward(self, p: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.features(p, q)
        return u, torch.tanh(self.ouc_cda(u))


class MLFNet(nn.Module):
    """The MLFuse network (spec §3). ``forward(img1, img2) -> (f, l_edg, l_cmk, l_ssd)``.

    img1 = visible/MRI, img2 = infrared/CT/PET/SPECT, both N×1×H×W in [0, 1]; H, W >= 15.
    """

    def __init__(self):
        super().__init__()
        self.inc_edg = CBR(1, 32)
        self.inc_ssd = CBR(1, 32)
        self.inc_cmk_1 = CBR(1, 32)
        self.inc_cmk_2 = CBR(1, 32)
        self.layer = DCBR(96, 48, 16)
        self.outc = OutConv(16)
        self.cmk_net = CMKNet(32)
        self.edg_net = EdgeNet(32, 16)
        self.ssd_net = SSDNet(32, 16)

    def branches(self, img1: torch.Tensor, img2: torch.Tensor):
        """The three branch outputs ((u_edg, l_edg), (u_cmk, l_cmk), (u_ssd, l_ssd))."""
        edg = self.edg_net(self.inc_edg(img1))
        cmk = self.cmk_net(self.inc_cmk_1(img1), self.inc_cmk_2(img2))
        ssd = self.ssd_net(self.inc_ssd(img2))
        return edg, cmk, ssd

    def forward(self, img1: torch.Tensor, img2: torch.Tensor):
        (u_edg, l_edg), (u_cmk, l_cmk), (u_ssd, l_ssd) = self.branches(img1, img2)
        f = self.outc(self.layer(torch.cat([u_edg, u_cmk, u_ssd], dim=1)))
        return f, l_edg, l_cmk, l_ssd


def load_checkpoint_state(path: str | Path) -> OrderedDict:
    """Read a checkpoint with ``torch.load(..., weights_only=True)`` and return its state_dict.

    Accepts the official layout ``{"epoch": int, "model": state_dict}`` (also written by this
    pipeline's training) or a bare state_dict. Raises :class:`DataError` naming the file when it is
    missing, unreadable or not a state_dict (:func:`pipeline.fusion.checkpoints.read_state`).
    """
    from pipeline.fusion.checkpoints import read_state

    return read_state(path, "MLFuse")


def load_mlfnet(path: str | Path, device: str | torch.device = "cpu") -> MLFNet:
    """Build :class:`MLFNet`, load ``path`` strictly, move to ``device``, eval mode.

    Raises :class:`DataError` naming the file and the missing/unexpected/mis-shaped keys.
    """
    from pipeline.fusion.checkpoints import load_strict

    model = load_strict(MLFNet(), load_checkpoint_state(path), path, "MLFNet")
    return model.to(device).eval()
