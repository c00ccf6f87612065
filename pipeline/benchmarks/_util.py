"""Shared helpers for benchmarks: timing, peak memory, JSON output."""
from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from typing import Callable


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_call(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def emit(record: dict) -> None:
    """Print one JSON line (the benchmark's result) to stdout."""
    print(json.dumps(record, sort_keys=True), file=sys.stdout, flush=True)


def median(values: list[float]) -> float:
    return float(statistics.median(values))
