"""Fast CPU/GPU inference path of the Diff-IF generator: the same maths as the eager modules of
:mod:`pipeline.fusion.nets.diffif`, rearranged (spec ``diffif.md`` §4.1 puts the eager 4-step
sampling at about 145 s per 480×640 image on 2 cores; ``fusebench bench fuse --method diffif``
compares both in one run).

What changes (outputs equal the eager ones within float rounding; ``tests/test_diffif_fast.py``
bounds the difference by the eager float32 error against a float64 run):

* the refiner runs **channels-last** (NHWC): oneDNN convolves NHWC without reordering every input
  and output to its blocked layout, and every 1×1 convolution of the refiner is one matrix product
  on the N·H·W × C view (``torch.addmm``, the residual add folded into it);
* the refiner's per-pixel LayerNorm over channels is one ``F.layer_norm`` on the NHWC view (the
  eager module normalises a transposed, strided N×HW×C view and copies it back);
* the refiner's MDTA (Zamir et al., Restormer, CVPR 2022): the C×C map is qᵀk on the NHWC view
  divided by the outer product of the L2 norms of q and k (= F.normalize then qᵀk), and the output
  projection is folded into it: out = v·(W_out·A)ᵀ, one HW×C·C×C product instead of two;
* a 1×1 reduction of a concatenation [a, b] is W_a·a + W_b·b (no concatenated copy);
* the U-Net's full 1/8-resolution self-attention is ``F.scaled_dot_product_attention`` (the same
  softmax(qᵀk/√C)·v without materialising the 4800×4800 map at 480×640);
* Swish is ``F.silu`` in place, GELU in place, the U-Net's noise bias Linear(e) is added to the
  preceding convolution's bias (batch 1), residual adds are in place;
* the first U-Net convolution of [vis, ir, x_t]: the vis/ir part is computed once per image and
  only the x_t part per step; the refiner's source embedding (a conv of [vis, ir]) likewise;
* freed blocks stay in the process heap while sampling (:func:`reuse_freed_memory`): glibc returns
  every block above 32 MB to the kernel at ``free`` (``mmap``), so each full-resolution
  intermediate at 480×640 (44-117 MB) would be page-faulted and zeroed again; about 20 % of the
  sampling's CPU time before.

The sampler loop itself is :func:`pipeline.fusion.nets.diffif.run_sampler` (same noise draws).
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import functools
import sys

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.fusion.nets import diffif_refiner as R
from pipeline.fusion.nets import diffif_unet as U
from pipeline.fusion.nets.diffif import DiffIF, run_sampler

CL = torch.channels_last
# glibc mallopt parameters and the values its dynamic mmap threshold settles at with large blocks
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_RESTORE = ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20))


@contextlib.contextmanager
def reuse_freed_memory():
    """While active, glibc serves every allocation from its heap and keeps freed memory there (no
    ``mmap``, no trimming), so the sampler's same-sized intermediates reuse already-mapped pages.
    Afterwards the defaults' steady state is restored and the heap is trimmed. No-op off glibc."""
    libc = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
                libc = None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)
    try:
        yield
    finally:
        for key, value in _RESTORE:
            libc.mallopt(key, value)
        libc.malloc_trim(0)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """N×C×H×W channels-last -> the N·H·W × C view (no copy)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _image(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """N·H·W × C rows -> N×C×H×W channels-last view with ``like``'s N, H, W."""
    n, _, h, w = like.shape
    return rows.view(n, h, w, rows.shape[1]).permute(0, 3, 1, 2)


def _matrix(conv: nn.Conv2d) -> torch.Tensor:
    """A 1×1 convolution's weight as the Cin × Cout matrix of the rows product."""
    return conv.weight.detach().reshape(conv.weight.shape[0], -1).t().contiguous()


def _layer_norm(module: R.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    body = module.body
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), body.weight, body.bias, 1e-5)
    return y.permute(0, 3, 1, 2)


def _mdta(att: R.Attention, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """residual + MDTA(y), both N×C×H×W channels-last (module docstring)."""
    n, c, h, w = y.shape
    d = att.qkv_dwconv(att.qkv(y)).permute(0, 2, 3, 1).reshape(n, h * w, 3 * c)
    q, k, v = d[..., :c], d[..., c:2 * c], d[..., 2 * c:]
    norm_q = torch.linalg.vector_norm(q, dim=1).clamp_min(1e-12)
    norm_k = torch.linalg.vector_norm(k, dim=1).clamp_min(1e-12)
    gram = torch.bmm(q.transpose(1, 2), k) / (norm_q.unsqueeze(2) * norm_k.unsqueeze(1))
    per = c // att.heads
    attn = torch.zeros_like(gram)
    for head in range(att.heads):
        s = slice(head * per, (head + 1) * per)
        attn[:, s, s] = torch.softmax(gram[:, s, s] * att.temperature[head], dim=-1)
    mix = torch.matmul(att.project_out.weight.reshape(c, c), attn)       # W_out·A, N×C×C
    out = torch.baddbmm(residual.permute(0, 2, 3, 1).reshape(n, h * w, c), v, mix.transpose(1, 2))
    return _image(out.reshape(-1, c), y)


def _transformer_block(block: R.TransformerBlock, x: torch.Tensor) -> torch.Tensor:
    x = _mdta(block.attn, _layer_norm(block.norm1, x), x)
    ffn = block.ffn
    hidden = _image(_rows(_layer_norm(block.norm2, x)) @ ffn.w_in, x)
    hidden = torch.ops.aten.gelu_(ffn.dwconv(hidden))
    return _image(torch.addmm(_rows(x), _rows(hidden), ffn.w_out), x)


def _stage_bias(module: R.StageBias, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    return x.add_(module.noise_func(emb).view(x.shape[0], -1, 1, 1))


def _reduce(conv: nn.Conv2d, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """conv(cat[a, b]) for a bias-free 1×1 conv, as W_a·a + W_b·b on the rows views."""
    c = a.shape[1]
    out = _rows(a) @ conv.w_rows[:c]
    return _image(out.addmm_(_rows(b), conv.w_rows[c:]), a)


def _refiner(ref: R.Refiner, sources, x0, gamma, source_embedding=None):
    emb = ref.noise_level_mlp(gamma.reshape(-1).to(x0.dtype))
    a1 = ref.encoder_level1(ref.patch_embed(x0), emb)
    s = ref.patch_embed_refine(sources) if source_embedding is None else source_embedding
    s1 = ref.encoder_level1_refine(s, emb)
    f1 = _reduce(ref.reduce_chan_level1_refine, a1, s1)
    e2 = ref.encoder_level2(f1, emb)
    s2 = ref.encoder_level2_refine(s1, emb)
    d2 = ref.decoder_level2(_reduce(ref.reduce_chan_level2_refine, e2, s2), emb)
    d1 = ref.decoder_level1(_reduce(ref.reduce_chan_level1, d2, f1), emb)
    return ref.output(ref.refinement(_reduce(ref.reduce_chan_level_out, d1, a1)))


def _norm_silu(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    norm = block[0]
    return F.silu(F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps), inplace=True)


def _resnet_block(rb: U.ResnetBlock, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    b1, b2 = rb.block1.block, rb.block2.block
    noise = rb.noise_func.noise_func(emb)
    conv1 = b1[3]
    if x.shape[0] == 1:
        h = F.conv2d(_norm_silu(b1, x), conv1.weight, conv1.bias + noise[0], padding=1)
    else:
        h = conv1(_norm_silu(b1, x)).add_(noise.view(x.shape[0], -1, 1, 1))
    h = b2[3](_norm_silu(b2, h))
    return h.add_(rb.res_conv(x))


def _silu(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.silu(x)


def _attend(module: U.SelfAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def fast_copy(model: DiffIF) -> DiffIF:
    """A channels-last copy of ``model`` (eval mode) with the fast forwards patched in (the
    parameters and their names are unchanged; extra matrices are plain attributes)."""
    fast = copy.deepcopy(model).eval()
    fast.refinement_fn.to(memory_format=CL)     # the U-Net stays NCHW: channels-last GroupNorm,
    #                                             upsampling and concatenation made it slower
    for module in fast.modules():
        if isinstance(module, R.LayerNorm):
            module.forward = functools.partial(_layer_norm, module)
        elif isinstance(module, R.TransformerBlock):
            module.ffn.w_in, module.ffn.w_out = _matrix(module.ffn.project_in), _matrix(module.ffn.project_out)
            module.forward = functools.partial(_transformer_block, module)
        elif isinstance(module, R.StageBias):
            module.forward = functools.partial(_stage_bias, module)
        elif isinstance(module, R.Refiner):
            for conv in (module.reduce_chan_level1_refine, module.reduce_chan_level2_refine,
                         module.reduce_chan_level1, module.reduce_chan_level_out):
                conv.w_rows = _matrix(conv)
            module.forward = functools.partial(_refiner, module)
        elif isinstance(module, U.ResnetBlock):
            module.forward = functools.partial(_resnet_block, module)
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
        with torch.inference_mode(), reuse_freed_memory():
            sources = torch.cat([vis, ir], dim=1).contiguous(memory_format=CL)
            # stem conv split by input channel: [vis, ir] part (with the bias) once, x_t part per step
            src_part = F.conv2d(sources.contiguous(), stem.weight[:, :2], stem.bias, padding=1)
            xt_weight = stem.weight[:, 2:].contiguous()
            embed_refine = refiner.patch_embed_refine(sources)

            def denoise(v, i, x_t, gamma):
                x = F.conv2d(x_t.contiguous(), xt_weight, None, padding=1).add_(src_part)
                return unet.from_stem(x, gamma)

            def refine(v, i, x0, gamma):
                return refiner(sources, x0.contiguous(memory_format=CL), gamma, embed_refine).clamp(-1.0, 1.0)

            return run_sampler(denoise, refine, vis, ir, generator, trace=trace).contiguous()
