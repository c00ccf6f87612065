"""Strict, weights-only loading of PyTorch checkpoints, with one-line errors naming the file.

* :func:`read_state(path, what)`: ``torch.load(path, map_location="cpu", weights_only=True)``;
  unwraps ``{"model": sd}`` (MLFuse, this pipeline's training) and ``{"weight": sd}`` (DIDFuse);
  :class:`DataError` naming the file when it is missing, unreadable/corrupt or not a state_dict.
* :func:`load_strict(model, state, path, what)`: the keys and shapes must equal the model's
  (a missing ``*.num_batches_tracked`` is tolerated: checkpoints saved by torch 0.4 have none, as
  IFCNN's); otherwise a DataError listing the missing / unexpected / mis-shaped keys.
* :func:`sha256_file(path)`.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import DataError
from pipeline.imageio import load_torch


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state(path: str | Path, what: str = "network") -> OrderedDict:
    """The state_dict stored in ``path`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} weights file not found", path)
    obj = load_torch(path, f"{what} checkpoint")
    if isinstance(obj, dict):
        for wrapper in ("model", "weight"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"not a {what} checkpoint (expected a state_dict of tensors)", path)
    return OrderedDict(obj)


def load_strict(model: nn.Module, state: dict, path: str | Path, what: str = "network") -> nn.Module:
    """Load ``state`` into ``model`` with identical keys and shapes (DataError naming ``path``)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)}≠{tuple(expected[k].shape)}" for k in expected
              if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("wrong shapes", shapes)):
            if keys:
                parts.append(f"{label} ({len(keys)}): {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}")
        raise DataError(f"checkpoint does not match the {what} layout: " + "; ".join(parts), path)
    full = dict(state)
    for k in expected:
        full.setdefault(k, expected[k])  # tolerated missing counters keep the model's value
    model.load_state_dict(full, strict=True)
    return model
