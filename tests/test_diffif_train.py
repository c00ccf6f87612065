"""Diff-IF through the generic trainer (spec diffif.md §2.4-2.6) and the registry methods ``diffif`` /
``diffif_lite`` (§2.1 slot swap and colour, §2.7 seed per image, strict loading, fast path)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from _training import HEALTH, assert_resume_equality, make_set

from pipeline.config import load_params
from pipeline.errors import ConfigError, DataError
from pipeline.fusion.nets.diffif import FAITHFUL, DiffIF, DiffIFConfig
from pipeline.fusion.nets.diffif_refiner import RefinerConfig
from pipeline.fusion.nets.diffif_unet import UNetConfig
from pipeline.fusion.registry import get_method
from pipeline.fusion.stage import fuse_pair_raw
from pipeline.training import data as D
from pipeline.training import trainer as T

TINY = {"unet": {"width": 8, "mults": [1, 2, 2, 2], "res_blocks": 1, "groups": 4, "attention": True},
        "refiner": {"width": 8, "blocks": 1, "refinement_blocks": 1, "heads": [1, 2], "ffn_factor": 1.0}}


def tiny_config(**extra):
    cfg = dict(load_params("params.yaml", "full")["diffif"]["train"])
    cfg.update({"seed": 3, "device": "cpu", "threads": None, "amp": False, "arch": TINY, "scale": 1.0, "epochs": 2,
                "batch_size": 2, "crop": 64, "crops_per_pair": 1, "checkpoint_every": 1, "preview_every": 0,
                "preview_count": 0, "lr": 1e-3, **extra})
    return cfg


@pytest.fixture
def pairs(tmp_path):
    ds = make_set(tmp_path / "setA", ["p0", "p1", "p2", "p3"], size=(64, 72))
    prior = tmp_path / "prior" / "setA"
    prior.mkdir(parents=True)
    for s in ds.samples:                     # a stand-in Fusion_K: the infrared image
        shutil.copyfile(s.ir, prior / f"{s.name}.png")
    return D.training_pairs({"setA": ds.samples}, tmp_path / "prior", ("prior",))


def train(cfg, pairs, root, name="m", **kwargs):
    return T.train("diffif", cfg, pairs, root / name / "checkpoints", root / name / "model.pth", root / f"r_{name}",
                   HEALTH, progress=False, **kwargs)


def test_published_recipe_is_the_spec():
    cfg = load_params("params.yaml", "full")["diffif"]["train"]
    assert cfg["arch"] == "faithful" and cfg["scale"] == 1.0 and cfg["lr"] == 1e-4
    assert (cfg["batch_size"], cfg["crop"]) == (16, 128)
    assert cfg["loss_weights"] == {"eps": 8.0, "x0": 2.0, "intensity": 4.0, "gradient": 5.0, "ssim": 1.0}
    assert cfg["epochs"] * (1083 * cfg["crops_per_pair"] // cfg["batch_size"]) == pytest.approx(40_000, rel=0.01)


def test_trains_a_step_and_resumes_to_identical_weights(pairs, tmp_path, monkeypatch):
    cfg = tiny_config()
    assert_resume_equality("diffif", cfg, pairs, tmp_path, monkeypatch, crash_at=3)   # crash in epoch 1
    full = torch.load(tmp_path / "full" / "model.pth", weights_only=True)
    header = (tmp_path / "r_full" / "losses.csv").read_text().splitlines()[0]
    assert header == "epoch,lr,total,eps,x0,intensity,gradient,ssim,out_std"
    assert full["method"] == "diffif" and DiffIFConfig.from_dict(full["arch"]).to_dict() == full["arch"]


def test_bad_settings_are_config_errors(pairs, tmp_path):
    with pytest.raises(ConfigError, match="arch"):
        train(tiny_config(arch="huge"), pairs, tmp_path)
    with pytest.raises(ConfigError, match="multiple of 8"):
        train(tiny_config(crop=68), pairs, tmp_path)


def test_missing_prior_image_names_the_stage(tmp_path):
    ds = make_set(tmp_path / "setB", ["q0"], size=(64, 64))
    with pytest.raises(DataError, match="run the prior stage"):
        D.training_pairs({"setB": ds.samples}, tmp_path / "prior", ("prior",))


def _checkpoint(tmp_path, config=None, scale=1.0):
    torch.manual_seed(0)
    config = config or DiffIFConfig.from_dict(TINY)
    model = DiffIF(config)
    path = tmp_path / "g.pth"
    torch.save({"method": "diffif", "model": model.state_dict(), "arch": config.to_dict(), "scale": scale}, path)
    return path


def test_mif_slot_swap_and_colour_from_the_functional_image(tmp_path):
    path = _checkpoint(tmp_path)
    rng = np.random.default_rng(0)
    mri = rng.integers(0, 256, (40, 48), dtype=np.uint8)                       # FuseBench vis
    pet = np.stack([rng.integers(0, 256, (40, 48)), np.full((40, 48), 30),
                    np.full((40, 48), 200)], -1).astype(np.uint8)              # FuseBench ir, colour
    ivf = get_method("diffif_lite", weights=str(path), device="cpu", mode="ivf")
    mif = get_method("diffif_lite", weights=str(path), device="cpu", mode="mif")
    a, b = rng.random((40, 48), dtype=np.float32), rng.random((40, 48), dtype=np.float32)
    assert np.array_equal(mif.fuse(a, b), ivf.fuse(b, a))                      # slots swapped
    out, raw = fuse_pair_raw(mif, pet, mri)
    assert out.shape == (40, 48, 3)
    from pipeline.fusion import colour

    # the network saw Diff-IF "vis" = PET luma, "ir" = MRI; the colour came from the PET image
    assert np.array_equal(raw, ivf.fuse(mri.astype(np.float32) / 255, colour.to_float(colour.luma(pet))))
    assert np.array_equal(out, colour.merge(mif.to_uint8(raw), colour.chroma(pet)))


def test_seed_per_image_batching_and_fast_path_agree(tmp_path):
    path = _checkpoint(tmp_path)
    rng = np.random.default_rng(1)
    pairs = [(rng.random((36, 44), dtype=np.float32), rng.random((36, 44), dtype=np.float32)) for _ in range(3)]
    eager = get_method("diffif_lite", weights=str(path), device="cpu", fast=False, batch=1)
    fast = get_method("diffif_lite", weights=str(path), device="cpu", fast=True, batch=3)
    one = [eager.fuse(*p) for p in pairs]
    batched = fast.fuse_batch(pairs)
    for x, y in zip(one, batched):
        assert x.shape == (36, 44) and np.abs(x - y).max() < 1e-4
    assert np.array_equal(eager.fuse(*pairs[0]), one[0])                    # reproducible


def test_diffif_needs_weights_and_the_faithful_architecture(tmp_path):
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        get_method("diffif")
    lite = _checkpoint(tmp_path)
    with pytest.raises(DataError, match="faithful"):
        get_method("diffif", weights=str(lite), device="cpu").fuse(np.zeros((8, 8), np.float32),
                                                                   np.zeros((8, 8), np.float32))
    meta = get_method("diffif_lite", weights=str(lite), device="cpu").metadata()
    assert "VARIANT" in meta["variant"] and meta["architecture"]["scale"] == 1.0
    assert FAITHFUL != DiffIFConfig.from_dict(TINY)


def test_bench_fuse_compares_fast_and_eager_in_one_run():
    from types import SimpleNamespace

    from pipeline.benchmarks._diffif import run_diffif

    args = SimpleNamespace(method="diffif_lite", weights=None, repeat=1, threads=0, no_eager=False)
    record = run_diffif(args, "diffif_lite", {}, 32, 40)
    assert record["max_abs_diff"] < 1e-4 and record["speedup"] > 0 and record["gflops"] > 0
    assert record["weights"].startswith("random")
