"""``python -m pipeline bench metrics``: seconds per (ir, vis, fused) triple for a metrics convention.

Prints one JSON line: median wall-clock seconds per triple over ``--repeat`` runs (after one untimed
warm-up, which also loads the compiled FMI kernels), median CPU seconds (all threads), per-metric
medians, size, convention, peak memory and the 1-minute load average (figures measured on a shared
machine are noisy: compare with the load).
Images: a deterministic synthetic infrared/visible pair with natural-image statistics (smooth
background, textured regions, edges, sensor noise, a few saturated hot spots) and their mean fusion;
or real files with ``--ir/--vis/--fused``.
"""
from __future__ import annotations

import os
import time


def synthetic_triple(height: int, width: int, seed: int = 0):
    """Deterministic uint8 (ir, vis, fused) with realistic content; fused = rounded mean."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)

    def layer(scale: float, amplitude: float):
        small = rng.standard_normal((max(2, int(height / scale)), max(2, int(width / scale))))
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) * amplitude

    yy, xx = np.mgrid[0:height, 0:width]
    vis = 110 + 40 * np.sin(xx / 53.0) + layer(40, 25) + layer(6, 12) + rng.normal(0, 2.5, (height, width))
    vis[height // 3: height // 2, width // 5: width // 2] += 45  # a building-like block
    ir = 70 + layer(60, 20) + layer(10, 6) + rng.normal(0, 1.5, (height, width))
    for k in range(6):  # warm objects, some saturated
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        ir += 200 * np.exp(-(((yy - cy) / 18.0) ** 2 + ((xx - cx) / 9.0) ** 2))
    ir_u8 = np.clip(np.round(ir), 0, 255).astype(np.uint8)
    vis_u8 = np.clip(np.round(vis), 0, 255).astype(np.uint8)
    fused = ((ir_u8.astype(np.uint16) + vis_u8 + 1) // 2).astype(np.uint8)
    return ir_u8, vis_u8, fused


def run(args) -> int:
    from pipeline.benchmarks._util import emit, median, peak_rss_mb
    from pipeline.imageio import read_image
    from pipeline.metrics import compute_triple, make_triple, resolve_names

    if args.ir or args.vis or args.fused:
        if not (args.ir and args.vis and args.fused):
            from pipeline.errors import ConfigError
            raise ConfigError("give all of --ir, --vis and --fused, or none")
        images = [read_image(p) for p in (args.ir, args.vis, args.fused)]
        source = "files"
    else:
        height, width = (int(v) for v in args.size.lower().split("x"))
        images = synthetic_triple(height, width)
        source = "synthetic"
    names = resolve_names(args.only, args.convention)
    compute_triple(make_triple(*images, convention=args.convention), names)  # warm-up (JIT, caches)
    totals, cpu, per_metric = [], [], {name: [] for name in names}
    for _ in range(args.repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        triple = make_triple(*images, convention=args.convention)
        for name in names:
            t0 = time.perf_counter()
            compute_triple(triple, [name])
            per_metric[name].append(time.perf_counter() - t0)
        totals.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    shape = images[2].shape
    emit({
        "benchmark": "metrics", "convention": args.convention, "size": f"{shape[0]}x{shape[1]}",
        "images": source, "repeat": args.repeat, "metrics": names,
        "median_seconds_per_triple": round(median(totals), 4),
        "median_cpu_seconds_per_triple": round(median(cpu), 4),
        "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "per_metric_median_seconds": {k: round(median(v), 4) for k, v in per_metric.items()},
        "peak_rss_mb": round(peak_rss_mb(), 1),
    })
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "metrics", help="seconds per triple of the fusion metrics",
        description="Time every metric of a convention on one 480x640-style triple; prints one JSON line.")
    parser.add_argument("--convention", choices=("matlab", "cddfuse"), default="matlab")
    parser.add_argument("--size", default="480x640", help="HxW of the synthetic triple (default 480x640)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--only", default=None, help="comma-separated metric names (default: all)")
    parser.add_argument("--ir", help="real infrared image instead of the synthetic one")
    parser.add_argument("--vis", help="real visible image")
    parser.add_argument("--fused", help="real fused image")
    parser.set_defaults(func=run)
