"""``python -m pipeline demo-data``: generate the synthetic MSRS/M3FD demo data (see pipeline.demo_data)."""
from __future__ import annotations

import argparse
import time


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected HxW such as 192x256, got {text!r}") from err
    return height, width


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo-data", help="generate small synthetic infrared/visible scenes in the MSRS and M3FD layouts",
        description="Procedurally generate registered infrared/visible street scenes written in the "
        "native MSRS (segmentation + YOLO boxes) and M3FD (VOC boxes + meta split lists) layouts. "
        "Deterministic for a seed. Defaults come from params.yaml `demo_data`.")
    parser.add_argument("--out", help="output folder (default: demo_data.out, data/demo)")
    parser.add_argument("--seed", type=int, help="generator seed (default: demo_data.seed)")
    parser.add_argument("--m3fd", type=int, dest="m3fd_pairs", metavar="N", help="M3FD-layout pairs")
    parser.add_argument("--msrs-train", type=int, metavar="N", help="MSRS-layout train pairs")
    parser.add_argument("--msrs-test", type=int, metavar="N", help="MSRS-layout test pairs")
    parser.add_argument("--size", type=_size, metavar="HxW", help="image size, divisible by 16")
    parser.add_argument("--workers", type=int, help="threads (default: up to 4)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from pipeline.config import load_params, section
    from pipeline.demo_data import DemoConfig, generate

    defaults = section(load_params(args.params), "demo_data", {}) if Path(args.params).is_file() else {}
    height, width = args.size or (None, None)
    config = DemoConfig.from_params(defaults, seed=args.seed, m3fd_pairs=args.m3fd_pairs,
                                    msrs_train=args.msrs_train, msrs_test=args.msrs_test,
                                    height=height, width=width)
    out = Path(args.out or defaults.get("out") or "data/demo")
    start = time.perf_counter()
    manifest = generate(out, config, args.workers)
    seconds = time.perf_counter() - start
    msrs, m3fd = manifest["msrs"], manifest["m3fd"]
    print(f"demo data written to {out} in {seconds:.1f} s (seed {config.seed}, "
          f"{config.height}x{config.width}):")
    print(f"  MSRS: {msrs['train']} train + {msrs['test']} test pairs ({msrs['night']} night), "
          f"boxes {msrs['boxes_per_class']}")
    print(f"  M3FD: {m3fd['pairs']} pairs ({m3fd['night']} night), split {m3fd['split']}, "
          f"boxes {m3fd['boxes_per_class']}")
    return 0
