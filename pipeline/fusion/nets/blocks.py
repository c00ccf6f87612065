"""Building blocks shared by the published fusion networks (spec methods.md §1).

* :class:`PadConv2d`: a ``Conv2d`` with explicit padding mode (``zeros`` | ``reflect`` |
  ``replicate`` | ``none`` = TF 'VALID'); the state-dict keys are the plain conv's
  (``weight``, ``bias``). TF 'SAME' with stride 1 and odd k is zero padding k//2;
  :func:`tf_same_pad` gives the asymmetric TF padding for any kernel/stride.
* :func:`conv_bn_act`: ``nn.Sequential(conv, BN, act)`` (indices 0, 1, 2 as the official
  ``nn.Sequential`` layouts use them; ``lead_pad`` inserts a padding module at index 0).
* :func:`dense_forward`: a dense block's forward, x ← cat[x, layer(x)] (``new_first=False``,
  "old first") or cat[layer(x), x] (``new_first=True``); the order matters for weight mapping.
* :class:`SobelBranch`: |Kx ⋆ x| + |Ky ⋆ x| with depthwise 3×3 kernels (trainable ``convx``,
  ``convy``, initialised to Sobel: Kx rows (1,0,−1),(2,0,−2),(1,0,−1), Ky = Kxᵀ), zero pad 1.
* :class:`ModeBatchNorm`: ``BatchNorm2d`` (same keys) with the three test-time modes of spec §1:
  ``eval`` (running statistics), ``image`` (mean and biased variance over H×W of each image,
  trained scale/shift) and ``image_unit`` (the same with scale 1, shift 0). ``None`` = ordinary
  ``BatchNorm2d`` behaviour (training). Per-image statistics of a batch of N images are those of
  each image alone (instance normalisation), so batching same-size pairs does not mix images;
  N = 1 uses ``batch_norm`` in training mode exactly as the official scripts do.
* :func:`fold_conv_bn`: folds eval-mode BN into the preceding conv (speed; exact up to float
  rounding: w' = w·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β).
* :func:`denormals_flushed` (a context with subnormals flushed to zero) and
  :func:`zero_subnormals` (zero subnormal weights): speed, x86 handles subnormals in microcode.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

BN_MODES = ("eval", "image", "image_unit")


class PadConv2d(nn.Conv2d):
    """``Conv2d`` with ``pad`` pixels of ``mode`` padding applied before a VALID convolution."""

    def __init__(self, cin: int, cout: int, k: int = 3, pad: int | None = None, mode: str = "zeros",
                 bias: bool = True, stride: int = 1, groups: int = 1):
        pad = k // 2 if pad is None else pad
        if mode not in ("zeros", "reflect", "replicate", "none"):
            raise ValueError(f"unknown padding mode {mode!r}")
        zero = pad if mode == "zeros" else 0
        super().__init__(cin, cout, k, stride=stride, padding=zero, bias=bias, groups=groups)
        self.pad_mode, self.pad = mode, (pad if mode in ("reflect", "replicate") else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode=self.pad_mode)
        return super().forward(x)


def tf_same_pad(x: torch.Tensor, k: int, stride: int = 1) -> torch.Tensor:
    """Zero-pad ``x`` as TF 'SAME' does: total = max(k − s, 0) (H mod s = 0) or
    max(k − H mod s, 0), split with the extra pixel at the bottom/right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: W then H
        total = max(k - stride, 0) if size % stride == 0 else max(k - size % stride, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class ModeBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d with a selectable test-time mode (see the module docstring)."""

    test_mode: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.test_mode
        if mode is None:
            return super().forward(x)
        if mode == "eval":
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        weight, bias = (None, None) if mode == "image_unit" else (self.weight, self.bias)
        if x.shape[0] == 1:
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        return F.instance_norm(x, weight=weight, bias=bias, eps=self.eps)


def set_bn_mode(model: nn.Module, mode: str | None) -> nn.Module:
    """Set every :class:`ModeBatchNorm` of ``model`` to ``mode`` (one of ``BN_MODES`` or None)."""
    if mode is not None and mode not in BN_MODES:
        raise ValueError(f"unknown BN mode {mode!r} (expected one of {', '.join(BN_MODES)})")
    for module in model.modules():
        if isinstance(module, ModeBatchNorm):
            module.test_mode = mode
    return model


def conv_bn_act(cin: int, cout: int, act: nn.Module | None, k: int = 3, pad: int | None = None,
                mode: str = "zeros", bn: bool = True, lead_pad: nn.Module | None = None) -> nn.Sequential:
    """``[lead_pad,] conv, [BN,] [act]`` as an ``nn.Sequential`` (official index layout)."""
    layers: list[nn.Module] = [lead_pad] if lead_pad is not None else []
    layers.append(PadConv2d(cin, cout, k, pad=0 if lead_pad is not None else pad, mode=mode))
    if bn:
        layers.append(ModeBatchNorm(cout))
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


def dense_forward(layers, x: torch.Tensor, new_first: bool = False) -> torch.Tensor:
    """Dense connectivity: after each layer, x = cat[x, new] (or cat[new, x] with ``new_first``)."""
    for layer in layers:
        new = layer(x)
        x = torch.cat([new, x] if new_first else [x, new], dim=1)
    return x


class SobelBranch(nn.Module):
    """|convx(x)| + |convy(x)|: depthwise 3×3, zero pad 1, no bias; kernels trainable."""

    def __init__(self, channels: int):
        super().__init__()
        self.convx = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.convy = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        with torch.no_grad():
            self.convx.weight.copy_(kx.expand(channels, 1, 3, 3))
            self.convy.weight.copy_(kx.t().expand(channels, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convx(x).abs() + self.convy(x).abs()


def _fused(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    # fuse_conv_bn_eval deep-copies the conv (a PadConv2d keeps its padding) and sets weight/bias
    return torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), bn.eval())


def fold_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BN that directly follows a conv — inside an ``nn.Sequential``, or as
    ``.bn`` after ``.conv`` in a block flagged ``conv_then_bn = True`` — into that conv (in place)."""
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if (isinstance(conv, nn.Conv2d) and isinstance(bn, ModeBatchNorm)
                        and bn.test_mode == "eval"):
                    module[i], module[i + 1] = _fused(conv, bn), nn.Identity()
        elif getattr(module, "conv_then_bn", False):
            if isinstance(module.bn, ModeBatchNorm) and module.bn.test_mode == "eval":
                module.conv, module.bn = _fused(module.conv, module.bn), nn.Identity()
    return model


def zero_subnormals(model: nn.Module) -> nn.Module:
    """Set the subnormal float32 parameters and buffers of ``model`` (0 < |x| < 1.18e-38) to zero,
    in place: with :func:`denormals_flushed` this makes a checkpoint full of them as fast as any
    (the flags alone leave TarDAL+ 2x slower than TarDAL; both: equal). Products with such weights
    are below 1e-38; outputs do not change (max difference 0.0 on TarDAL+ at 120×160)."""
    tiny = torch.finfo(torch.float32).tiny
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dtype == torch.float32:
                tensor.masked_fill_((tensor.abs() < tiny) & (tensor != 0), 0.0)
    return model


@contextlib.contextmanager
def denormals_flushed():
    """Run the block with subnormal floats flushed to zero on the CPU (FTZ/DAZ,
    ``torch.set_flush_denormal``), then restore the default. Weight decay leaves many tiny weights
    in some checkpoints (tardal++.pt: 193 k of 297 k numbers below 1e-38, more just above):
    products with them are subnormal, which x86 computes through a slow microcode path (TarDAL++
    ran about 6x slower than TarDAL). Flushing changes a result by less than 1e-38 per product,
    far under float32 resolution of any activation."""
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        if supported:
            torch.set_flush_denormal(False)


def count_params(model: nn.Module) -> int:
    """Learnable numbers of ``model``."""
    return int(sum(p.numel() for p in model.parameters()))


def count_gflops(model: nn.Module, *inputs_shape: tuple[int, ...], call=None) -> float:
    """GFLOPs of one forward (``torch.utils.flop_counter``, a multiply-add counts 2) on meta tensors
    of the given input shapes; ``call(model, *tensors)`` defaults to ``model(*tensors)``."""
    from torch.utils.flop_counter import FlopCounterMode

    import copy

    meta = copy.deepcopy(model).to("meta")
    tensors = [torch.empty(*shape, device="meta") for shape in inputs_shape]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        (call or (lambda m, *t: m(*t)))(meta, *tensors)
    return counter.get_total_flops() / 1e9
