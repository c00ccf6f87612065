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
  so the 96-channel concatenation is never built (measured: building it and running one 96->48
  convolution is not faster here, the strided writes into it cost what the wider convolution saves);
* every full-resolution map lives in a workspace of five NHWC buffers reused across calls
  (:meth:`FastMLFNet.workspace`): fresh 40 MB tensors cost ~8 ms each of page faults here, so
  convolutions write into zeroed buffers through oneDNN's in-place binary form, elementwise steps
  use ``out=``; only the N×1×H×W result is a new tensor. Calls are serialised by a lock;
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

import threading

import torch
from torch.nn import functional as F

from pipeline.fusion.mlfuse_net import MLFNet
from pipeline.fusion.mlfuse_reduction import gate_softmax, lane_dot

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
    """A folded convolution with an optional fused activation (and fused addition into a buffer)."""

    def __init__(self, weight, bias, device, stride: int = 1, padding: int | None = None,
                 act: str | None = None, slope: float | None = None):
        self.w = weight.to(device).contiguous(memory_format=CL)
        self.b = None if bias is None else bias.to(device)
        self.stride = stride
        self.padding = weight.shape[-1] // 2 if padding is None else padding
        self.act, self.slope = act, slope
        self.fused = device.type == "cpu" and torch.backends.mkldnn.is_available()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """act(conv(x)) as a new tensor."""
        if self.fused:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.w, self.b, [self.padding] * 2, [self.stride] * 2, [1, 1], 1, self.act or "none",
                [] if self.slope is None else [self.slope], "")
        return _UNARY[self.act](F.conv2d(x, self.w, self.b, stride=self.stride, padding=self.padding), self.slope)

    def add_into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out ← act(conv(x) + out), in place (no fresh allocation).

        On CPU through oneDNN's in-place binary form, which can fuse only ReLU after the addition;
        other activations then run in place."""
        if not self.fused:
            return _UNARY[self.act](out.add_(F.conv2d(x, self.w, self.b, stride=self.stride,
                                                      padding=self.padding)), self.slope)
        fused_act = self.act if self.act == "relu" else None
        torch.ops.mkldnn._convolution_pointwise_.binary(
            out, x, self.w, self.b, [self.padding] * 2, [self.stride] * 2, [1, 1], 1, "add", None, fused_act, [], None)
        return out if fused_act == self.act else _UNARY[self.act](out, self.slope)

    def into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """act(conv(x)) written into the pre-allocated ``out``: :meth:`add_into` a zeroed buffer
        (oneDNN has no "output into this tensor" entry point)."""
        return self.add_into(x, out.zero_())


class FastMLFNet:
    """Inference-only MLFNet: ``FastMLFNet(model)(img1, img2) -> f`` (N×1×H×W, tanh output)."""

    def __init__(self, model: MLFNet):
        dev = next(model.parameters()).device
        self.device = dev
        self._lock = threading.Lock()  # the workspace buffers are shared between calls
        self._workspace_key: tuple | None = None
        self._workspace: dict | None = None

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

    def workspace(self, n: int, h: int, w: int) -> dict[str, torch.Tensor]:
        """Full-resolution NHWC buffers reused by every call of this size (kept until the size changes).

        A fresh 40 MB tensor costs ~8 ms of page faults on first touch here, about as much as the
        arithmetic of an elementwise pass, and a forward needs ~15 of them. Five buffers serve the
        whole forward: ``a``, ``b``, ``c``, ``d`` (32 channels) and ``acc`` (48, the reconstruction
        sum); the 16-channel scratch maps ``s16`` and ``t16`` live in ``d``'s storage, which the
        cross-modal branch no longer needs when the edge branch starts. 176 channels in all
        (554 MB at 768×1024), fewer than the unbuffered forward had alive at its peak."""
        key = (n, h, w)
        if self._workspace_key != key:
            self._workspace = None  # free the old buffers before allocating new ones
            empty = lambda c: torch.empty((n, c, h, w), device=self.device).contiguous(memory_format=CL)  # noqa: E731
            d = empty(32)
            flat = d.permute(0, 2, 3, 1).reshape(-1)  # d's NHWC storage, a view
            half = lambda k: flat[k * n * h * w * 16:(k + 1) * n * h * w * 16].view(n, h, w, 16).permute(0, 3, 1, 2)  # noqa: E731
            self._workspace = {"a": empty(32), "b": empty(32), "c": empty(32), "d": d, "acc": empty(48),
                               "s16": half(0), "t16": half(1)}
            self._workspace_key = key
        return self._workspace

    def cmk(self, x: torch.Tensor, y: torch.Tensor, ws: dict) -> torch.Tensor:
        """u_cmk into b. p=a, q=b; |p-q| in c, s in d; then q+p⊙q in c and p+p⊙q in a (addcmul
        rounds p⊙q and the sum separately, as the official m = p⊙q; p + m; q + m)."""
        p, q, c, d = self.stem_c1.into(x, ws["a"]), self.stem_c2.into(y, ws["b"]), ws["c"], ws["d"]
        s = self.cmk4.into(torch.sub(p, q, out=c).abs_(), d)
        q_m = torch.addcmul(q, p, q, out=c)
        p_m = p.addcmul_(p, q)
        e = self.cmk1.into(p_m, q)  # q is dead
        e.add_(self.cmk2.into(q_m, p))  # p+m is dead
        certain = self.cmk3.into(e, p).add_(s)
        return self.cmk5.into(certain, q)

    def edge(self, x: torch.Tensor, ws: dict) -> torch.Tensor:
        """u_edg into c (scratch: a, s16, t16)."""
        s = self.e1.into(self.stem_edg.into(x, ws["a"]), ws["s16"])
        t = F.max_pool2d(self.e2(s), kernel_size=7, stride=3)
        t = self.e3_(self.e3(self.e_max(t))).contiguous(memory_format=CL)
        up = torch._C._nn.upsample_bilinear2d(t, list(x.shape[-2:]), False, None, None, out=ws["t16"])
        return self.e4.into(self.e_f.add_into(s, up), ws["c"])

    def ssd(self, y: torch.Tensor, ws: dict) -> torch.Tensor:
        """u_ssd into c (scratch: a, s16)."""
        b = self.stem_ssd.into(y, ws["a"])
        n, c, h, w = b.shape
        flat = b.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view: b is channels-last
        uniform = torch.full((n, 1, h * w), 1.0 / (h * w), device=b.device, dtype=b.dtype)
        mean_b = torch.matmul(uniform, flat).squeeze(1)  # N×32
        kvec = (mean_b @ self.w_ql.t()) @ self.w_vl  # N×32: z_p = kvec·b_p
        proj = torch.matmul(flat, torch.stack([self.w_qr[0].expand(n, c), kvec], dim=2))  # N×P×2
        weights = gate_softmax(proj[..., 0], dim=1)  # channel gate: softmax of q over the P pixels (float64)
        values = ws["s16"].permute(0, 2, 3, 1).reshape(n, h * w, -1)  # a view of the 16-channel buffer
        torch.matmul(flat, self.w_vr.t(), out=values)  # v_p = W_vr b_p, as the official 1×1 conv
        context = lane_dot(values.transpose(1, 2), weights)  # N×16, official float32 order
        m_ch = torch.sigmoid(context @ self.w_up.t()).reshape(n, c, 1, 1)
        m_sp = torch.sigmoid(torch.softmax(proj[..., 1], dim=1)).reshape(n, h, w, 1).permute(0, 3, 1, 2)
        return torch.mul(b, m_ch, out=ws["c"]).addcmul_(b, m_sp)

    def __call__(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        with self._lock, torch.inference_mode():
            x, y = nhwc(img1.to(self.device)), nhwc(img2.to(self.device))
            ws = self.workspace(x.shape[0], x.shape[2], x.shape[3])
            acc = self.l1_cmk.into(self.cmk(x, y, ws), ws["acc"])
            self.l1_edg.add_into(self.edge(x, ws), acc)
            self.l1_ssd.add_into(self.ssd(y, ws), acc)
            return self.out(self.l2.into(acc, ws["t16"]))  # the only fresh tensor: the N×1×H×W result
