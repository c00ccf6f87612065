"""A tiny project for flow tests: random registered pairs (``pairs`` layout) and one method's fused
images (the pixel average), plus params that point the flows at them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.imageio import write_image


def tiny_project(root: Path, n: int = 6, method: str = "avg", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        ir = rng.integers(0, 256, (48, 64), dtype=np.uint8)
        vis = rng.integers(0, 256, (48, 64), dtype=np.uint8)
        write_image(root / "pairs" / "ir" / f"{i:03d}.png", ir)
        write_image(root / "pairs" / "vi" / f"{i:03d}.png", vis)
        write_image(root / "data" / "fused" / "tiny" / method / f"{i:03d}.png",
                    ((ir.astype(np.uint16) + vis) // 2).astype(np.uint8))


def tiny_params(runner: str = "thread", batch_size: int = 2) -> dict:
    return {"profile": "demo",
            "datasets": {"tiny": {"kind": "pairs", "root": "pairs"}},
            "fusion": {"datasets": ["tiny"], "out": "data/fused", "results": "results/fusion", "gray": False},
            "metrics": {"convention": "matlab", "only": ["EN", "SF", "Qabf"], "splits": None},
            "orchestration": {"task_runner": runner, "batch_size": batch_size, "max_workers": 2,
                              "dask_workers": 2}}
