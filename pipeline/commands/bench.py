"""``python -m pipeline bench <name>``: speed and memory benchmarks that print one JSON line."""
from __future__ import annotations

import importlib
import pkgutil

from pipeline import benchmarks


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="speed/memory benchmarks (print one JSON line of figures)",
        description="Speed and memory benchmarks. Each prints one JSON line.",
    )
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{benchmarks.__name__}.{info.name}").register(sub)
