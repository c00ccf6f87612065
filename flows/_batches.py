"""Units of work for the per-image stages: fixed-size batches of images, one Prefect task each."""
from __future__ import annotations

from pipeline.config import section


def batches(items: list, size: int) -> list[tuple[int, list]]:
    """``[(start, items[start:start + size]), ...]`` (size >= 1)."""
    size = max(1, int(size))
    return [(start, items[start:start + size]) for start in range(0, len(items), size)]


def batch_size(params: dict, default: int = 16) -> int:
    """Images per task: ``orchestration.batch_size`` (not a stage parameter: it never changes results)."""
    return int(section(params, "orchestration.batch_size", default) or default)
