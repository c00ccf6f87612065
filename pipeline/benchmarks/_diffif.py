"""``python -m pipeline bench fuse --method diffif --size 480x640 [--repeat 1]``: the Diff-IF 4-step
sampler, fast path (:mod:`pipeline.fusion.diffif_fast`) against the plain eager modules of the same
generator in the same run (spec ``diffif.md`` §4.1: about 145 s per 480×640 image eager on 2 cores,
1.8 GB per step).

Weights: ``--weights PATH`` (an official or pipeline checkpoint), else **random** weights (orthogonal
init, seed 0) of the faithful architecture (``diffif``) or the demo's ``diffif_lite`` settings from
``--profile``/params. The same seeded pair and the same noise seed (1) go to both samplers, so the
outputs must agree within float rounding (``max_abs_diff`` on the [−1, 1] scale). Prints one JSON
line: wall and CPU seconds per image (median of ``--repeat`` after one warm-up of the fast path,
the eager one is run ``--repeat`` times without warm-up: it is the slow reference), the speed-ups,
peak RSS after each, GFLOPs per pass (denoiser, refiner) and per image (4 steps), parameters, load.
"""
from __future__ import annotations

import os
import time


def _time(fn, repeat: int, warmup: bool) -> tuple[list[float], list[float], object]:
    out = fn() if warmup else None
    wall, cpu = [], []
    for _ in range(max(1, repeat)):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return wall, cpu, out


def build_model(kind: str, configured: dict, weights: str | None):
    import torch

    from pipeline.fusion.nets.diffif import FAITHFUL, DiffIF, load_diffif, orthogonal_init
    from pipeline.training.methods.diffif import resolve_arch

    if weights:
        return load_diffif(weights), f"file {weights}"
    torch.manual_seed(0)
    arch = FAITHFUL
    if kind == "diffif_lite":
        from pipeline.config import load_params, section

        arch = resolve_arch(section(load_params("params.yaml", "demo"), "diffif.train.arch"))
    model = DiffIF(arch).eval()
    orthogonal_init(model)
    return model, "random (orthogonal init, seed 0)"


def run_diffif(args, kind: str, configured: dict, height: int, width: int) -> dict:
    import numpy as np
    import torch

    from pipeline.benchmarks._util import median, peak_rss_mb
    from pipeline.fusion.diffif_fast import FastSampler
    from pipeline.fusion.nets.diffif import count_params, step_gflops

    if height % 8 or width % 8:
        from pipeline.errors import ConfigError

        raise ConfigError(f"--size must be multiples of 8 for Diff-IF, got {height}x{width}")
    load_before = os.getloadavg()[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    model, weights = build_model(kind, configured, args.weights)
    rng = np.random.default_rng(0)
    vis, ir = (torch.from_numpy(rng.random((1, 1, height, width), dtype=np.float32)) * 2 - 1 for _ in range(2))
    fast = FastSampler(model)
    rss_start = peak_rss_mb()
    with torch.inference_mode():
        fwall, fcpu, fout = _time(lambda: fast(vis, ir, torch.Generator().manual_seed(1)), args.repeat, True)
        rss_fast = peak_rss_mb()
        record = {"benchmark": "fuse", "method": args.method, "size": [height, width], "weights": weights,
                  "repeat": args.repeat, "threads": torch.get_num_threads(),
                  "seconds_per_pair": median(fwall), "cpu_seconds_per_pair": median(fcpu),
                  "peak_rss_mb": rss_fast, "rss_before_runs_mb": rss_start}
        if not args.no_eager:
            ewall, ecpu, eout = _time(lambda: model.sample(vis, ir, torch.Generator().manual_seed(1)),
                                      args.repeat, False)
            record.update({"eager_seconds_per_pair": median(ewall), "eager_cpu_seconds_per_pair": median(ecpu),
                           "speedup": median(ewall) / median(fwall), "cpu_speedup": median(ecpu) / median(fcpu),
                           "max_abs_diff": float((fout - eout).abs().max()),
                           "peak_rss_with_eager_mb": peak_rss_mb()})
    den, ref = step_gflops(model.config, height, width)
    record.update({"gflops_denoiser_pass": den, "gflops_refiner_pass": ref, "gflops": 4 * (den + ref),
                   "params": [count_params(model.denoise_fn), count_params(model.refinement_fn)],
                   "load_average": [load_before, os.getloadavg()[0]]})
    return record
