"""``python -m pipeline validate``: check a dataset and print a summary (see pipeline.validate)."""
from __future__ import annotations

import argparse
import sys

KINDS = ("msrs", "m3fd", "pairs", "medical")


def _split(text: str):
    """``meta``, ``all`` or ``random:8,1,1[:seed]``."""
    if not text.startswith("random"):
        return text
    parts = text.split(":")
    try:
        ratios = [float(v) for v in parts[1].split(",")] if len(parts) > 1 else [8, 1, 1]
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected random:8,1,1:SEED, got {text!r}") from err
    return {"rule": "random", "ratios": ratios, "seed": seed}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate", help="check a dataset (pairs, sizes, boxes, labels) and print a summary",
        description="Load a dataset in its native layout and check every pair: images decode, "
        "infrared and visible sizes match, boxes lie inside their image with positive size, "
        "segmentation labels have the image's size and known class ids. Prints pairs per split, "
        "image sizes, boxes per class and pixels per class. Exit 0 when clean, 1 with one line "
        "per problem otherwise.")
    parser.add_argument("--dataset", required=True, choices=KINDS, help="dataset layout kind")
    parser.add_argument("--root", required=True, help="dataset root folder")
    depth = parser.add_mutually_exclusive_group()
    depth.add_argument("--deep", dest="deep", action="store_true", default=True,
                       help="decode every image and label (default)")
    depth.add_argument("--quick", dest="deep", action="store_false",
                       help="read image headers only (sizes), do not decode pixels")
    parser.add_argument("--classes", help="comma-separated box class names (default: the "
                        "dataset's standard classes)")
    parser.add_argument("--split", type=_split, help="meta | all | random:8,1,1:SEED")
    parser.add_argument("--unknown-classes", choices=("error", "skip"),
                        help="boxes of classes not in the list: report (default) or skip and count")
    parser.add_argument("--workers", type=int, help="checking threads")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pipeline.validate import validate

    options = {}
    if args.classes:
        names = [c.strip() for c in args.classes.split(",") if c.strip()]
        options["box_classes" if args.dataset == "msrs" else "classes"] = names
    if args.split is not None:
        options["split"] = args.split
    if args.unknown_classes:
        options["unknown_classes"] = args.unknown_classes
    report = validate(args.dataset, args.root, deep=args.deep, workers=args.workers, **options)
    print("\n".join(report.summary()))
    if report.ok:
        print("OK: no problems found")
        return 0
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{len(report.problems)} problem(s) found", file=sys.stderr)
    return 1
