"""``python -m pipeline bench robustness --method M --family F --level K``: the extra cost of one
robustness level for one method -- perturbing, fusing and inference with the method's already
trained detector and segmenter (no training), with the robustness stage's own code.

The level is perturbed into a temporary folder (so the ``perturb`` stage need not have run); the
models must exist (``detect@M`` / ``segment@M``). ``--images`` caps the test images (default: the
profile's ``perturb.max_images``). Prints one JSON line: CPU and wall seconds of fusion and of
inference for the level (clean reference excluded), per image, the load average, torch threads.
"""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("robustness", help="cost of one robustness level for one method",
                                   description="Time fusion + inference of one perturbation level.")
    parser.add_argument("--method", required=True, help="a fusion.methods entry (or ir / vis)")
    parser.add_argument("--family", required=True, help="a perturb.families entry")
    parser.add_argument("--level", type=int, required=True, help="severity level (>= 1)")
    parser.add_argument("--images", type=int, default=None, help="test images (default: perturb.max_images)")
    parser.add_argument("--tasks", nargs="+", default=None, choices=("detection", "segmentation"))
    parser.add_argument("--params", default="params.yaml")
    parser.set_defaults(func=run)


def run(args) -> int:
    import os
    import tempfile
    import time
    from pathlib import Path

    from pipeline import hermetic

    hermetic.apply()   # offline settings before torch/ultralytics
    from pipeline.benchmarks._util import emit, peak_rss_mb
    from pipeline.config import load_params
    from pipeline.errors import ConfigError
    from pipeline.perturb.stage import run_perturb
    from pipeline.robustness.evaluate import inference_threads
    from pipeline.robustness.stage import make_context, run_method

    if args.level < 1:
        raise ConfigError("--level must be >= 1 (level 0 is the clean image: nothing to time)")
    os.chdir(Path(args.params).resolve().parent)
    params = load_params(args.params)
    perturb = params.setdefault("perturb", {})
    perturb["run"] = {args.family: [args.level]}
    if args.images:
        perturb["max_images"] = args.images
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fusebench-bench-robustness-") as tmp:
        perturb["out"] = str(Path(tmp) / "perturbed")
        c0, w0 = time.process_time(), time.perf_counter()
        run_perturb(params)
        perturb_cpu, perturb_wall = time.process_time() - c0, time.perf_counter() - w0
        params["robustness"] = {**(params.get("robustness") or {}), "out": str(Path(tmp) / "robustness"),
                                "frozen_out": str(Path(tmp) / "frozen"), "other_metrics_images": 0,
                                **({"tasks": args.tasks} if args.tasks else {})}
        ctx = make_context(params)
        with inference_threads(ctx.settings["threads"]):
            summary = run_method(ctx, args.method)
    record = {"benchmark": "robustness", "method": args.method, "family": args.family, "level": args.level,
              "label": summary["labels"][args.family][str(args.level)], "device": ctx.device,
              "perturb_cpu_seconds": perturb_cpu, "perturb_wall_seconds": perturb_wall,
              "threads": ctx.settings["threads"], "load_average_1min_at_start": load, "peak_rss_mb": peak_rss_mb(),
              "note": "cost of the level = fusion + inference (no training); inference per level averages the "
                      "perturbed level and the clean reference; CPU seconds are the process's; wall clock on a "
                      "shared machine is inflated by other processes"}
    for task, cost in summary["cost"].items():
        n = cost["images_per_level"]
        record[task] = {**cost, "fusion_cpu_s_per_image": cost["fusion_cpu_s_per_level"] / n,
                        "inference_cpu_s_per_image": cost["inference_cpu_s_per_level"] / n,
                        "score_clean": summary["scores"][task]["clean/0"],
                        "score_level": summary["scores"][task][f"{args.family}/{args.level}"]}
    emit(record)
    return 0
