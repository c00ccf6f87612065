"""The ``fusion`` params the fuse and metrics flows share: where fused images go, which datasets."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import section
from pipeline.errors import ConfigError


def fused_root(params: dict) -> Path:
    """``fusion.out`` (``data/fused``): the root of every method's fused images (:mod:`pipeline.fused`)."""
    root = section(params, "fusion.out")
    if not root:
        raise ConfigError("fusion.out (the folder of the fused images) is not set", "params.yaml")
    return Path(root)


def fused_datasets(params: dict) -> list[str]:
    """The datasets every method fuses: ``fusion.datasets``."""
    names = section(params, "fusion.datasets")
    if not names:
        raise ConfigError("fusion.datasets (the datasets every method fuses) is not set", "params.yaml")
    return [str(n) for n in names]
