"""Device selection: ``device: auto`` uses CUDA when present, else the CPU with all its threads."""
from __future__ import annotations

import os
import warnings


def resolve_device(requested: str | None = "auto") -> str:
    """Map ``auto|cpu|cuda|cuda:N`` to a usable torch device string.

    ``auto`` → ``"cuda"`` if available else ``"cpu"``. An explicit ``cuda`` request on a machine
    without CUDA falls back to CPU with a warning (the user's params still work on a laptop).
    On CPU the torch thread count is set to ``OMP_NUM_THREADS`` (default: all cores).
    """
    import torch

    requested = (requested or "auto").lower()
    if requested == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif requested.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"device {requested!r} requested but CUDA is not available; using the CPU", stacklevel=2)
        device = "cpu"
    else:
        device = requested
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
