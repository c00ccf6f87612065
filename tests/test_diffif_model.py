"""Diff-IF generator (spec diffif.md §2, §6): sizes, state-dict layout, schedule, sampler, loading."""
from __future__ import annotations

import ast
import math

import pytest
import torch

from pipeline.errors import DataError
from pipeline.fusion.nets.diffif import (FAITHFUL, LITE, N_DENOISER, N_REFINER, DiffIF, DiffIFConfig,
                                         count_params, load_diffif, run_sampler, sampler_steps,
                                         step_gflops)
from pipeline.fusion.nets.diffif_refiner import RefinerConfig
from pipeline.fusion.nets.diffif_unet import UNetConfig

TINY = DiffIFConfig(UNetConfig(width=8, mults=(1, 2, 2, 2), res_blocks=1, groups=4),
                    RefinerConfig(width=8, blocks=1, refinement_blocks=1))


@pytest.fixture(scope="module")
def faithful():
    torch.manual_seed(0)
    return DiffIF(FAITHFUL).eval()


def test_parameter_counts(faithful):
    assert count_params(faithful.denoise_fn) == N_DENOISER == 22_377_073
    assert count_params(faithful.refinement_fn) == N_REFINER == 1_359_326
    lite = DiffIF(LITE)   # spec §4.3: 2.36 M + 0.14 M
    assert round(count_params(lite.denoise_fn) / 1e6, 2) == 2.36
    assert round(count_params(lite.refinement_fn) / 1e6, 2) == 0.14


@pytest.mark.shared
def test_state_dict_names_and_shapes_equal_the_official_table(faithful, shared):
    rows = [line.rstrip("\n").split("\t") for line in
            (shared / "spec" / "diffif_state_dict_keys.tsv").read_text().splitlines()
            if line and not line.startswith("#")][1:]
    expected = [(key, ast.literal_eval(shape)) for key, shape in rows]
    assert len(expected) == 503
    assert [(k, list(v.shape)) for k, v in faithful.state_dict().items()] == expected


def test_schedule_buffers(faithful):
    betas = faithful.betas.double()
    assert betas[0].item() == pytest.approx(1e-6, rel=1e-6) and betas[-1].item() == pytest.approx(1e-2, rel=1e-6)
    assert torch.allclose(betas[1:] - betas[:-1], torch.full((999,), (1e-2 - 1e-6) / 999, dtype=torch.float64),
                          rtol=1e-4)
    ac = faithful.alphas_cumprod
    assert round(ac[249].item(), 6) == 0.731952
    assert [round(ac[t].item(), 4) for t in (249, 499, 749)] == [0.7320, 0.2862, 0.0597]
    assert round(ac[999].item(), 5) == 0.00662
    assert torch.allclose(faithful.sqrt_alphas_cumprod ** 2, ac, rtol=1e-6)
    assert faithful.alphas_cumprod_prev[0].item() == 1.0


def test_sampler_step_values():
    table = [(999, 0.0814, 0.9173, 0.3143, 0.2443), (749, 0.2443, 0.7752, 0.3361, 0.5349),
             (499, 0.5349, 0.4782, 0.1984, 0.8555), (249, 0.8555, 0.0, 0.0, 1.0)]
    for step, (t, gamma, sigma, direction, prev) in zip(sampler_steps(), table):
        assert (step.t, round(step.gamma, 4), round(step.sigma, 4), round(step.direction, 4),
                round(math.sqrt(step.alpha_prev), 4)) == (t, gamma, sigma, direction, prev)


def test_sampler_gammas_order_and_final_output_rule():
    torch.manual_seed(1)
    model = DiffIF(TINY).eval()
    vis, ir = torch.rand(1, 1, 16, 24) * 2 - 1, torch.rand(1, 1, 16, 24) * 2 - 1
    calls, refined = [], []
    hook = model.denoise_fn.register_forward_hook(lambda m, args, out: calls.append(("unet", args[1].item())))
    hook2 = model.refinement_fn.register_forward_hook(lambda m, args, out: calls.append(("ref", args[2].item())))
    out = model.sample(vis, ir, torch.Generator().manual_seed(1),
                       trace=lambda step, g, eps, x0, r: refined.append(r.clone()))
    hook.remove(), hook2.remove()
    gammas = [0.08138, 0.24425, 0.53494, 0.85554]
    assert [name for name, _ in calls] == ["unet", "ref"] * 4
    assert [round(g, 5) for name, g in calls if name == "unet"] == gammas
    assert [round(g, 5) for name, g in calls if name == "ref"] == gammas
    assert torch.equal(out, refined[-1])
    assert out.abs().max() <= 1.0
    # the refiner output is clamped: a refiner returning large values gives exactly ±1
    big = run_sampler(lambda v, i, x, g: torch.zeros_like(x), lambda v, i, x0, g: (x0 * 0 + 5).clamp(-1, 1),
                      vis, ir, torch.Generator().manual_seed(0))
    assert torch.equal(big, torch.ones_like(big))


def test_sampler_reproducible_per_seed():
    torch.manual_seed(2)
    model = DiffIF(TINY).eval()
    vis, ir = torch.rand(1, 1, 16, 16) * 2 - 1, torch.rand(1, 1, 16, 16) * 2 - 1
    a = model.sample(vis, ir, torch.Generator().manual_seed(1))
    b = model.sample(vis, ir, torch.Generator().manual_seed(1))
    c = model.sample(vis, ir, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_strict_load_of_a_saved_faithful_checkpoint(faithful, tmp_path):
    path = tmp_path / "IVF_weights_gen.pth"
    torch.save(faithful.state_dict(), path)             # the official layout: a bare state dict
    loaded = load_diffif(path)
    assert loaded.config == FAITHFUL
    for (k, a), (k2, b) in zip(faithful.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_checkpoint_with_missing_or_extra_key_is_a_clear_error(tmp_path):
    state = DiffIF(TINY).state_dict()
    arch = TINY.to_dict()
    missing = dict(state)
    missing.pop("refinement_fn.output.weight")
    torch.save({"model": missing, "arch": arch}, tmp_path / "missing.pth")
    with pytest.raises(DataError, match=r"missing keys \(1\): refinement_fn\.output\.weight"):
        load_diffif(tmp_path / "missing.pth")
    extra = dict(state, **{"denoise_fn.extra.weight": torch.zeros(2)})
    torch.save({"model": extra, "arch": arch}, tmp_path / "extra.pth")
    with pytest.raises(DataError, match=r"unexpected keys \(1\): denoise_fn\.extra\.weight"):
        load_diffif(tmp_path / "extra.pth")
    torch.save({"model": state, "arch": arch}, tmp_path / "tiny.pth")
    with pytest.raises(DataError, match="another Diff-IF architecture"):
        load_diffif(tmp_path / "tiny.pth", expect=FAITHFUL)
    with pytest.raises(DataError, match="not found"):
        load_diffif(tmp_path / "nope.pth")


def test_flops_match_the_spec_at_480x640():
    unet, refiner = step_gflops(FAITHFUL, 480, 640)
    assert unet == pytest.approx(973.9, rel=0.01) and refiner == pytest.approx(835.1, rel=0.01)
