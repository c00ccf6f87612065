"""Shared by the training tests: published recipes from the repository's params.yaml, tiny pair sets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import load_params
from pipeline.datasets import load_dataset
from pipeline.imageio import write_image
from pipeline.vsm import compute_vsm_maps

REPO_PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml", "full")
HEALTH = REPO_PARAMS["train"]["health"]


def published(method: str) -> dict:
    """``train.methods.<method>`` of the ``full`` profile (the published recipe)."""
    return dict(REPO_PARAMS["train"]["methods"][method])


def make_set(root, names, size=(40, 48), seed=0):
    """A ``pairs``-layout set (``ir/``, ``vi/``) of smooth random images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    for name in names:
        for sub in ("ir", "vi"):
            fx, fy, phase = rng.uniform(0.05, 0.4, 2).tolist() + [rng.uniform(0, 6)]
            img = 127 + 100 * np.sin(fx * xx + phase) * np.cos(fy * yy) + rng.normal(0, 8, size)
            write_image(root / sub / f"{name}.png", np.clip(img, 0, 255).astype(np.uint8))
    return load_dataset("pairs", root, name=root.name)


def write_vsm(vsm_root, set_name, dataset):
    """VSM maps of the set as the VSM stage writes them."""
    compute_vsm_maps(dataset.samples, vsm_root, set_name, progress=False)


@pytest.fixture(autouse=True)
def restore_threads():
    """Tests set ``threads: 1``; give the process its thread count back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pairs(tmp_path):
    """Four 48×56 pairs of one ``pairs``-layout set."""
    from pipeline.training import data as D

    ds = make_set(tmp_path / "setA", ["p0", "p1", "p2", "p3"], size=(48, 56))
    return D.training_pairs({"setA": ds.samples})


def train(method, cfg, pairs, root, name="m", **kwargs):
    """Train into ``root/<name>/`` (final ``model.pth``), results in ``root/r_<name>``, no progress bar."""
    from pipeline.training import trainer as T

    return T.train(method, cfg, pairs, root / name / "checkpoints", root / name / "model.pth", root / f"r_{name}",
                   HEALTH, progress=False, **kwargs)


def summary(root, name="m"):
    return json.loads((root / f"r_{name}" / "summary.json").read_text())


def assert_resume_equality(method, cfg, pairs, root, monkeypatch, crash_at=5):
    """A run interrupted at its ``crash_at``-th batch (2 batches per epoch: 5 = first of epoch 2) and
    resumed ends with exactly the weights and the losses.csv of an uninterrupted run."""
    from pipeline.training import data as D

    full = torch.load(train(method, cfg, pairs, root, "full"), weights_only=True)
    calls = {"n": 0}
    real = D.make_batch

    def crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(D, "make_batch", crash)
    with pytest.raises(KeyboardInterrupt):
        train(method, cfg, pairs, root, "cut")
    monkeypatch.setattr(D, "make_batch", real)
    torch.manual_seed(99)  # the resumed run restores the RNG (the noisy labels) from the checkpoint
    resumed = torch.load(train(method, cfg, pairs, root, "cut"), weights_only=True)
    assert summary(root, "cut")["resumed_from_epoch"] == (crash_at - 1) // 2 - 1
    assert list(full["model"]) == list(resumed["model"])
    assert all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])
    assert (root / "r_full" / "losses.csv").read_text() == (root / "r_cut" / "losses.csv").read_text()
