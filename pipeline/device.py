"""Device selection: ``device: auto`` uses CUDA when present, else the CPU with all its threads."""
from __future__ import annotations

import os

from pipeline.errors import ConfigError


def resolve_device(requested: str | None = "auto") -> str:
    """Map ``auto|cpu|cuda|cuda:N`` to a usable torch device string.

    ``auto`` → ``"cuda"`` if available else ``"cpu"``. An explicit ``cuda``/``cuda:N`` request on a
    machine without CUDA (or without GPU ``N``) is a :class:`ConfigError`: results computed on
    another device than the one asked for would be recorded under the wrong settings.
    On CPU the torch thread count is set to ``OMP_NUM_THREADS`` (default: all cores).
    """
    import torch

    requested = str(requested or "auto").lower()
    if requested == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {requested!r} requested but CUDA is not available on this machine "
                              "(use device: auto or cpu)", "params.yaml")
        index = requested.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(f"device {requested!r}: this machine has {torch.cuda.device_count()} CUDA "
                              "device(s)", "params.yaml")
        device = requested
    elif requested in ("cpu", "mps"):
        device = requested
    else:
        raise ConfigError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N", "params.yaml")
    if device == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
