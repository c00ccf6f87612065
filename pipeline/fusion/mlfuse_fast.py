"""Fast CPU/GPU inference for :class:`~pipeline.fusion.mlfuse_net.MLFNet` (same maths, re-arranged).

What changes relative to the eager module (exact algebra; only float rounding order differs,
checked against the eager forward, float64 and the official outputs in the tests):

* BatchNorm (eval, running statistics) folded into the preceding convolution, in float64:
  w' = w·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β;
* channels-last (NHWC) tensors throughout, which oneDNN convolves faster than NCHW;
* activations and additions fused into the convolutions on CPU (oneDNN post-ops through
  ``torch.ops.mkldnn._convolution_pointwise``: ReLU, sigmoid, tanh, and PReLU with its single slope
  as leaky-ReLU, which is the same function; ``.binary`` adds a tensor to the convolution output
  before the activation). Elsewhere (CUDA) the same steps run unfused;
* the 96->48 reconstruction convolution of the concatenation [u_edg | u_cmk | u_ssd] runs as three
  32->48 convolutions accumulated into one output (a convolution is linear in its input channels),
  so the 96-channel concatenation is never built and each branch output is freed once used; the
  cross-modal branch (the largest) runs first, while no accumulator is alive;
* spatial-spectral gates by associativity, on the NHWC view b (N×P×32) of the branch input:
  mean_P(W_ql b) = W_ql mean_P(b); z_p = g·(W_vl b_p) = (W_vlᵀ g)·b_p. So the pixel gate projects
  only one number per pixel (z) instead of two 16-channel maps; the channel gate's values
  v_p = W_vr b_p are projected as in the official code, because their weighted sum over the pixels
  must run in the official float32 order (:func:`~pipeline.fusion.mlfuse_reduction.lane_dot`);
  the two pixel softmaxes are N×P vectors (over the last dimension: PyTorch's CPU softmax over a non-last
  dimension accumulates less accurately, ~1e-4 relative at P = 65k, which the channel gate amplifies);
* ``torch.inference_mode``; batches of same-size pairs go through in one call.

Outputs: only the fused tanh image f (N×1×H×W); the auxiliary heads are not computed.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from pipeline.fusion.mlfuse_net import MLFNet
from pipeline.fusion.mlfuse_reduction import lane_dot

CL = torch.channels_last
_UNARY = {None: lambda t, *_: t, "relu": lambda t, *_: F.relu_(t), "sigmoid": lambda t, *_: t.sigmoid_(),
          "tanh": lambda t, *_: t.tanh_(), "leaky_relu": lambda t, slope: F.leaky_relu_(t, slope)}


def fold_bn(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of ``bn(conv(x))`` as a single convolution (float64 arithmetic, float32 result)."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else None
    if bn is None:
        return w.float(), (b.float() if b is not None else None)
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    b = torch.zeros_like(scale) if b is None else b
    w = w * scale.reshape(-1, 1, 1, 1)
    b = (b - bn.running_mean.detach().double()) * scale + bn.bias.detach().double()
    return w.float(), b.float()


def nhwc(t: torch.Tensor) -> torch.Tensor:
    """Channels-last copy with explicit NHWC strides, also for one channel (where
    ``.contiguous(memory_format=channels_last)`` keeps NCHW strides and oneDNN then answers NCHW)."""
    if t.shape[1] != 1:
        return t.contiguous(memory_format=CL)
    t = t.contiguous()
    return t.as_strided(t.shape, (t.shape[2] * t.shape[3], 1, t.shape[3], 1))


class Conv:
    """A folded convolution with an optional fused activation (and fused addition of ``other``)."""

    def __init__(self, weight, bias, device, stride: int = 1, padding: int | None = None,
                 act: str | None = None, slope: float | None = None):
        self.w = weight.to(device).contiguous(memory_format=CL)
        self.b = None if bias is None else bias.to(device)
        self.stride = stride
        self.padding = weight.shape[-1] // 2 if padding is None else padding
        self.act, self.slope = act, slope
        self.fused = device.type == "cpu" and torch.backends.mkldnn.is_available()

    def __call__(self, x: torch.Tensor, other: torch.Tensor | None = None, inplace: bool = False) -> torch.Tensor:
        """act(conv(x) [+ other]); with ``inplace`` the result is written into ``other``."""
        pad, stride = [self.padding] * 2, [self.stride] * 2
        scalars = [] if self.slope is None else [self.slope]
        if self.fused:
            ops = torch.ops.mkldnn
            if other is not None and inplace:
                return ops._convolution_pointwise_.binary(other, x, self.w, self.b, pad, stride, [1, 1], 1,
                                                          "add", None, self.act, scalars, None)
            if other is None:
                return ops._convolution_pointwise(x, self.w, self.b, pad, stride, [1, 1], 1,
                                                  self.act or "none", scalars, "")
            return ops._convolution_pointwise.binary(x, other, self.w, self.b, pad, stride, [1, 1], 1,
                                                     "add", None, self.act, scalars, None)
        y = F.conv2d(x, self.w, self.b, stride=self.stride, padding=self.padding)
        if other is not None:
            y = y.add_(other)
        y = _UNARY[self.act](y, self.slope)
        return other.copy_(y) if inplace else y


class FastMLFNet:
    """Inference-only MLFNet: ``FastMLFNet(model)(img1, img2) -> f`` (N×1×H×W, tanh output)."""

    def __init__(self, model: MLFNet):
        dev = next(model.parameters()).device
        self.device = dev

        def conv(module, bn=None, **kw):
            return Conv(*fold_bn(module, bn), dev, **kw)

        def cbr(block, act="relu"):
            seq = block.double_conv
            return conv(seq[0], seq[1], act=act)

        def cbp(seq):
            return conv(seq[0], seq[1], act="leaky_relu", slope=float(seq[2].weight.detach().reshape(-1)[0]))

        self.stem_edg, self.stem_ssd = cbr(model.inc_edg), cbr(model.inc_ssd)
        self.stem_c1, self.stem_c2 = cbr(model.inc_cmk_1), cbr(model.inc_cmk_2)
        cmk = model.cmk_net
        self.cmk1, self.cmk2, self.cmk3 = cbp(cmk.fuse5_conv1), cbp(cmk.fuse5_conv2), cbp(cmk.fuse5_conv3)
        self.cmk4, self.cmk5 = cbp(cmk.fuse5_conv4), cbp(cmk.fuse5_conv5)
        e = model.edg_net
        self.e1, self.e_f, self.e3_ = conv(e.conv1), conv(e.conv_f), conv(e.conv3_)
        self.e2 = conv(e.conv2, stride=2, padding=0)
        self.e_max, self.e3 = conv(e.conv_max, act="relu"), conv(e.conv3, act="relu")
        self.e4 = conv(e.conv4, act="sigmoid")
        s = model.ssd_net
        flat = lambda c: c.weight.detach().float().reshape(c.weight.shape[0], -1).to(dev)  # noqa: E731
        self.w_qr, self.w_vr, self.w_up = flat(s.conv_q_right), flat(s.conv_v_right), flat(s.conv_up)
        self.w_ql, self.w_vl = flat(s.conv_q_left), flat(s.conv_v_left)
        seq = model.layer.double_conv
        w1, b1 = fold_bn(seq[0], seq[1])
        # concatenation order u_edg | u_cmk | u_ssd; evaluated cmk (+bias), edg, ssd (+sum, ReLU)
        self.l1_edg = Conv(w1[:, :32], None, dev)
        self.l1_cmk = Conv(w1[:, 32:64], b1, dev)
        self.l1_ssd = Conv(w1[:, 64:], None, dev, act="relu")
        self.l2 = conv(seq[3], seq[4], act="relu")
        self.out = conv(model.outc.conv, act="tanh")

    def edge(self, x: torch.Tensor) -> torch.Tensor:
        s = self.e1(self.stem_edg(x))
        t = F.max_pool2d(self.e2(s), kernel_size=7, stride=3)
        t = self.e3_(self.e3(self.e_max(t)))
        t = F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)
        t = t.contiguous(memory_format=CL)
        return self.e4(self.e_f(s, other=t, inplace=True))

    def ssd(self, y: torch.Tensor) -> torch.Tensor:
        b = self.stem_ssd(y)
        n, c, h, w = b.shape
        flat = b.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view: b is channels-last
        uniform = torch.full((n, 1, h * w), 1.0 / (h * w), device=b.device, dtype=b.dtype)
        mean_b = torch.matmul(uniform, flat).squeeze(1)  # N×32
        kvec = (mean_b @ self.w_ql.t()) @ self.w_vl  # N×32: z_p = kvec·b_p
        proj = torch.matmul(flat, torch.stack([self.w_qr[0].expand(n, c), kvec], dim=2))  # N×P×2
        weights = torch.softmax(proj[..., 0], dim=1)  # channel gate: softmax of q over the P pixels
        values = torch.matmul(flat, self.w_vr.t())  # N×P×16: v_p = W_vr b_p, as the official 1×1 conv
        context = lane_dot(values.transpose(1, 2), weights)  # N×16, official float32 order
        del values
        m_ch = torch.sigmoid(context @ self.w_up.t()).reshape(n, c, 1, 1)
        m_sp = torch.sigmoid(torch.softmax(proj[..., 1], dim=1)).reshape(n, h, w, 1).permute(0, 3, 1, 2)
        del proj, weights, flat
        return (b * m_ch).addcmul_(b, m_sp)

    def cmk(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Ordered so that at most four 32-channel maps are alive at once (p, q, m or |p-q|, conv out)."""
        p, q = self.stem_c1(x), self.stem_c2(y)
        d = torch.sub(p, q).abs_()
        s = self.cmk4(d)
        m = torch.mul(p, q, out=d)  # reuse the |p-q| buffer (fresh large buffers cost page faults)
        del d
        e = self.cmk1(p.add_(m))
        del p
        q.add_(m)
        del m
        e.add_(self.cmk2(q))
        del q
        certain = self.cmk3(e)
        del e
        return self.cmk5(certain.add_(s))

    def __call__(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x, y = nhwc(img1.to(self.device)), nhwc(img2.to(self.device))
            acc = self.l1_cmk(self.cmk(x, y))
            self.l1_edg(self.edge(x), other=acc, inplace=True)
            self.l1_ssd(self.ssd(y), other=acc, inplace=True)
            return self.out(self.l2(acc))
