"""Stage ``fuse@<method>``: fuse every configured dataset with one fusion method.

    python -m flows.fuse method=<name>

(Work in progress: the fusion stage library is being written.)
"""
from __future__ import annotations

from pathlib import Path

from pipeline.config import section

FUSED_ROOT = Path("data/fused")
DEFAULT_DATASETS = ("m3fd", "msrs")


def fused_datasets(params: dict) -> list[str]:
    """Datasets every method fuses: ``fusion.datasets`` (default ``m3fd`` and ``msrs``)."""
    return list(section(params, "fusion.datasets") or DEFAULT_DATASETS)


def fused_folder(dataset: str, method: str) -> Path:
    """``data/fused/<dataset>/<method>``."""
    return FUSED_ROOT / dataset / method
