"""Fast CPU/GPU inference path of the Diff-IF generator: the same maths as the eager modules of
:mod:`pipeline.fusion.nets.diffif`, rearranged (spec ``diffif.md`` §4.1 puts the eager 4-step
sampling at about 145 s per 480×640 image on 2 cores; ``fusebench bench fuse --method diffif``
compares both in one run).

What changes (outputs equal the eager ones within float rounding):

* **channels-last** tensors and weights: oneDNN convolves NHWC without reordering every input and
  output to its blocked layout (the refiner's dense 95→95 3×3 convs dominate the cost);
* the refiner's per-pixel LayerNorm over channels is one ``F.layer_norm`` on the NHWC view (the
  eager module normalises a transposed, strided N×HW×C view and copies it back);
* the U-Net's full 1/8-resolution self-attention is ``F.scaled_dot_product_attention`` (the same
  softmax(qᵀk/√C)·v without materialising the 4800×4800 map at 480×640);
* Swish is ``F.silu`` (one kernel instead of sigmoid and a product);
* the first U-Net convolution of [vis, ir, x_t]: the vis/ir part is computed once per image and
  only the x_t part per step; the refiner's source embedding (a conv of [vis, ir]) likewise.

The sampler loop itself is :func:`pipeline.fusion.nets.diffif.run_sampler` (same noise draws).
"""
from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.fusion.nets import diffif_refiner as R
from pipeline.fusion.nets import diffif_unet as U
from pipeline.fusion.nets.diffif import DiffIF, run_sampler

CL = torch.channels_last


def _layer_norm(module: R.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    body = module.body
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), body.weight, body.bias, 1e-5)
    return y.permute(0, 3, 1, 2)


def _attend(module: U.SelfAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _silu(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.silu(x)


def fast_copy(model: DiffIF) -> DiffIF:
    """A channels-last copy of ``model`` (eval mode) with the fast forwards patched in."""
    fast = copy.deepcopy(model).eval().to(memory_format=CL)
    for module in fast.modules():
        if isinstance(module, R.LayerNorm):
            module.forward = functools.partial(_layer_norm, module)
        elif isinstance(module, U.SelfAttention):
            module.attend = functools.partial(_attend, module)
        elif isinstance(module, U.Swish):
            module.forward = functools.partial(_silu, module)
    return fast


class FastSampler:
    """``sampler(vis, ir, generator) -> x₀`` with the fast model (module docstring)."""

    def __init__(self, model: DiffIF):
        self.model = fast_copy(model)

    def __call__(self, vis: torch.Tensor, ir: torch.Tensor, generator=None, trace=None) -> torch.Tensor:
        model = self.model
        unet, refiner = model.denoise_fn, model.refinement_fn
        stem = unet.downs[0]
        sources = torch.cat([vis, ir], dim=1).contiguous(memory_format=CL)
        # stem conv split by input channel: [vis, ir] part (with the bias) once, x_t part per step
        src_part = F.conv2d(sources, stem.weight[:, :2], stem.bias, padding=1)
        xt_weight = stem.weight[:, 2:].contiguous(memory_format=CL)
        embed_refine = refiner.patch_embed_refine(sources)

        def denoise(v, i, x_t, gamma):
            x = src_part + F.conv2d(x_t.contiguous(memory_format=CL), xt_weight, None, padding=1)
            return unet.from_stem(x, gamma)

        def refine(v, i, x0, gamma):
            return refiner(sources, x0.contiguous(memory_format=CL), gamma, embed_refine).clamp(-1.0, 1.0)

        with torch.inference_mode():
            return run_sampler(denoise, refine, vis, ir, generator, trace=trace).contiguous()

