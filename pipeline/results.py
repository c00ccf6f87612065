"""The one results writer: atomic JSON/CSV files that carry their provenance.

Every result people look at records the params, split and versions it came from:
:func:`provenance` builds that block and :func:`write_json` / :func:`write_csv` write atomically
(temporary file + rename), so an interrupted stage never leaves a half-written result.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import math
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pipeline.imageio import atomic_path

_PACKAGES = ("fusebench", "torch", "torchvision", "ultralytics", "segmentation-models-pytorch",
             "prefect", "dvc", "numpy", "pandas", "opencv-python", "scikit-image", "torchmetrics")


def versions(packages: Iterable[str] = _PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that produce FuseBench's numbers (plus Python, git commit)."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["git_commit"] = git_commit()
    return out


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(params: dict | None = None, split: dict | None = None, **extra: Any) -> dict:
    """Block recording where a result came from: params, split, versions, time."""
    block: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    if params is not None:
        block["params"] = params
    if split is not None:
        block["split"] = split
    block.update(extra)
    return block


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null means "not defined" (documented where it occurs)
    return value


def to_json(obj: Any) -> str:
    return json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n"


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as pretty JSON atomically; NaN/inf become ``null``; numpy values are converted."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(to_json(obj), encoding="utf-8")
    return path


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_csv(path: str | Path, frame) -> Path:
    """Write a pandas DataFrame as CSV atomically (index kept only if named)."""
    path = Path(path)
    keep_index = any(name is not None for name in frame.index.names)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=keep_index)
    return path


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file (the hash DVC uses), for recording which inputs a result came from."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def seed_mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation (ddof=1) over seeds of the defined values (None and NaN
    skipped), and how many there were. The std is None with fewer than two values (a spread over
    one run is undefined, not 0); both are None when no value is defined. Used by every stage that
    trains with several seeds, so their ``std`` fields follow one rule."""
    defined = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not defined:
        return None, None, 0
    arr = np.asarray(defined, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else None
    return float(arr.mean()), std, int(arr.size)
