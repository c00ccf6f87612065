"""``python -m pipeline <command>`` and the ``fusebench`` console script share this CLI.

Every module in :mod:`pipeline.commands` contributes one command through
``register(subparsers)``; it adds its parser and sets ``func(args) -> int`` as the default.
Heavy imports stay inside ``func`` so ``--help`` is fast. A :class:`~pipeline.errors.FuseBenchError`
is printed as one line (``error: <file>: <problem>``) with exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import pipeline
from pipeline import commands
from pipeline.errors import FuseBenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusebench",
        description="FuseBench: fuse infrared/visible pairs, score the fusion, and measure what it "
        "does for detection and segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"fusebench {pipeline.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline import hermetic

    hermetic.apply()   # the CLI process starts here: offline settings before any heavy import
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FuseBenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
