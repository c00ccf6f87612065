"""Shared by the training tests: published recipes from the repository's params.yaml, tiny pair sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np

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
