"""``python -m pipeline bench demo-data`` / ``bench validate``: dataset-layer throughput (one JSON line).

* ``demo-data``: seconds to generate the default demo data (``params.yaml`` sizes unless overridden)
  into a temporary folder, and pairs per second.
* ``validate``: seconds to validate a dataset (deep or quick), and pairs per second.
"""
from __future__ import annotations


def run_demo(args) -> int:
    import tempfile
    from pathlib import Path

    from pipeline.benchmarks._util import emit, median, peak_rss_mb, time_call
    from pipeline.demo_data import DemoConfig, generate

    config = DemoConfig(m3fd_pairs=args.m3fd, msrs_train=args.msrs_train, msrs_test=args.msrs_test)
    pairs = config.m3fd_pairs + config.msrs_train + config.msrs_test
    with tempfile.TemporaryDirectory(prefix="fusebench-bench-demo-") as tmp:
        times = time_call(lambda: generate(Path(tmp) / "demo", config, args.workers), args.repeat,
                          warmup=0)
    seconds = median(times)
    emit({"benchmark": "demo-data", "pairs": pairs, "size": f"{config.height}x{config.width}",
          "workers": args.workers, "repeat": args.repeat, "median_seconds": round(seconds, 3),
          "pairs_per_second": round(pairs / seconds, 1), "peak_rss_mb": round(peak_rss_mb(), 1)})
    return 0


def run_validate(args) -> int:
    from pipeline.benchmarks._util import emit, median, peak_rss_mb, time_call
    from pipeline.validate import validate

    reports = []
    times = time_call(lambda: reports.append(validate(args.dataset, args.root, deep=not args.quick,
                                                      workers=args.workers)), args.repeat, warmup=0)
    seconds, pairs = median(times), len(reports[-1].dataset.samples)
    emit({"benchmark": "validate", "dataset": args.dataset, "root": args.root,
          "mode": "quick" if args.quick else "deep", "pairs": pairs, "repeat": args.repeat,
          "median_seconds": round(seconds, 3), "pairs_per_second": round(pairs / seconds, 1),
          "problems": len(reports[-1].problems), "peak_rss_mb": round(peak_rss_mb(), 1)})
    return 0


def register(subparsers) -> None:
    demo = subparsers.add_parser("demo-data", help="seconds to generate the demo data",
                                 description="Time demo-data generation; prints one JSON line.")
    demo.add_argument("--m3fd", type=int, default=120)
    demo.add_argument("--msrs-train", type=int, default=80)
    demo.add_argument("--msrs-test", type=int, default=40)
    demo.add_argument("--workers", type=int, default=None)
    demo.add_argument("--repeat", type=int, default=3)
    demo.set_defaults(func=run_demo)
    check = subparsers.add_parser("validate", help="seconds to validate a dataset",
                                  description="Time `validate` on a dataset; prints one JSON line.")
    check.add_argument("--dataset", required=True, choices=("msrs", "m3fd", "pairs", "medical"))
    check.add_argument("--root", required=True)
    check.add_argument("--quick", action="store_true", help="headers only")
    check.add_argument("--workers", type=int, default=None)
    check.add_argument("--repeat", type=int, default=3)
    check.set_defaults(func=run_validate)
