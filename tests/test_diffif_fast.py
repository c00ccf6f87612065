"""Diff-IF fast inference path (pipeline/fusion/diffif_fast.py) against the eager modules.

Tolerances are derived from a float64 run of the same eager network, not fixed for one CPU: the
fast float32 result must be as close to the float64 one as a small multiple of the eager float32
result is (both are float32 evaluations of the same function, in a different order of operations).
"""
from __future__ import annotations

import torch

from pipeline.fusion.diffif_fast import FastSampler, fast_copy, reuse_freed_memory
from pipeline.fusion.nets import diffif as D
from pipeline.fusion.nets.diffif import FAITHFUL, LITE, DiffIF, orthogonal_init

FACTOR = 8.0   # fast error <= FACTOR x the eager float32 error (each vs float64)


def _model(config):
    torch.manual_seed(0)
    model = DiffIF(config).eval()
    orthogonal_init(model)          # the official init: unit-gain weights, zero biases
    with torch.no_grad():           # non-zero biases and norm affines, so every folded term counts
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "temperature" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _inputs(shape, batch=1):
    gen = torch.Generator().manual_seed(3)
    vis, ir, x = (torch.rand((batch, 1, *shape), generator=gen) * 2 - 1 for _ in range(3))
    return vis, ir, x, torch.tensor([0.3, 0.8][:batch])


def _bounds(eager, fast, ref64):
    e32 = float((eager.double() - ref64).abs().max())
    efast = float((fast.double() - ref64).abs().max())
    return efast, FACTOR * e32 + 1e-7


def _check_passes(config, shape, batch):
    model = _model(config)
    fast = fast_copy(model)
    m64 = _model(config).double()
    vis, ir, x, gamma = _inputs(shape, batch)
    with torch.inference_mode():
        den = (model.denoise(vis, ir, x, gamma), fast.denoise(vis, ir, x, gamma),
               m64.denoise(vis.double(), ir.double(), x.double(), gamma.double()))
        src = torch.cat([vis, ir], 1)
        ref = (model.refinement_fn(src, x, gamma),
               fast.refinement_fn(src.contiguous(memory_format=torch.channels_last),
                                  x.contiguous(memory_format=torch.channels_last), gamma),
               m64.refinement_fn(src.double(), x.double(), gamma.double()))
    for what, (e, f, r) in (("denoiser", den), ("refiner", ref)):
        err, bound = _bounds(e, f, r)
        assert err <= bound, f"{what}: fast error {err:.3g} vs float64 above {bound:.3g}"


def test_fast_passes_lite_batch_of_two():
    _check_passes(LITE, (24, 32), batch=2)


def test_fast_passes_faithful():
    _check_passes(FAITHFUL, (16, 24), batch=1)


def test_fast_sampler_equals_the_eager_sampler(monkeypatch):
    model = _model(LITE)
    vis, ir, _, _ = _inputs((24, 32))
    eager = model.sample(vis, ir, torch.Generator().manual_seed(1))
    m64 = _model(LITE).double()
    draw = D.noise_like     # the float64 run gets the float32 noise draws, cast
    monkeypatch.setattr(D, "noise_like", lambda x, g: draw(x.float(), g).to(x.dtype))
    ref64 = m64.sample(vis.double(), ir.double(), torch.Generator().manual_seed(1))
    monkeypatch.setattr(D, "noise_like", draw)
    fast = FastSampler(model)(vis, ir, torch.Generator().manual_seed(1))
    assert fast.shape == eager.shape
    err, bound = _bounds(eager, fast, ref64)
    assert float((eager.double() - ref64).abs().max()) < 1e-3   # same noise draws in float64
    assert err <= bound


def test_fast_copy_keeps_the_checkpoint_layout():
    model = _model(LITE)
    fast = fast_copy(model)
    a, b = model.state_dict(), fast.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) and a[k].shape == b[k].shape for k in a)
    fast.load_state_dict(a, strict=True)


def test_reuse_freed_memory_is_reentrant_and_harmless():
    with reuse_freed_memory(), reuse_freed_memory():
        x = torch.ones(1 << 20)
    assert float(x.sum()) == 1 << 20
