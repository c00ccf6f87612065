"""``python -m pipeline bench fuse --method mlfuse --size 480x640 --repeat 5``: fusion speed and memory.

Prints one JSON line: ``seconds_per_pair`` (median wall time of the method's fusion call, the
figure the target refers to), ``cpu_seconds_per_pair`` (process CPU time, less sensitive to other
processes on a shared machine), ``peak_rss_mb`` (peak resident memory of this process measured right
after the fast runs, before anything else runs) and, for ``mlfuse``, the straightforward eager
PyTorch forward of the same network measured in the same run (``eager_seconds_per_pair``,
``speedup``) and ``max_abs_diff`` between the fast and eager raw outputs. ``load_average`` (1 min,
before/after) says how busy the machine was. Inputs are a seeded random pair of the given size.
"""
from __future__ import annotations

import os
import time


def register(subparsers) -> None:
    parser = subparsers.add_parser("fuse", help="fusion speed/memory of one method on a synthetic pair")
    parser.add_argument("--method", default="mlfuse")
    parser.add_argument("--weights", default="official", help="mlfuse checkpoint (official|trained|PATH)")
    parser.add_argument("--size", default="480x640", help="HxW, e.g. 480x640 or 768x1024")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1, help="pairs per call (same size); time is per pair")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager reference (memory runs)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.set_defaults(func=run)


def _timed(fn, repeat: int) -> tuple[list[float], list[float]]:
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def run(args) -> int:
    import numpy as np
    import torch

    from pipeline.benchmarks._util import emit, median, peak_rss_mb
    from pipeline.errors import ConfigError
    from pipeline.fusion.registry import get_method

    try:
        height, width = (int(v) for v in args.size.lower().split("x"))
    except ValueError as err:
        raise ConfigError(f"--size must look like 480x640, got {args.size!r}") from err
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    pairs = [(rng.random((height, width)).astype(np.float32), rng.random((height, width)).astype(np.float32))
             for _ in range(max(1, args.batch))]
    options = {"weights": args.weights, "device": "cpu"} if args.method == "mlfuse" else {}
    if args.method == "mlfuse" and args.batch > 1:
        options["batch_pixels"] = args.batch * height * width
    method = get_method(args.method, **options)
    if args.method == "mlfuse":
        method.model  # noqa: B018  (load now: resolve_device also sets the thread count)
    if args.threads:
        torch.set_num_threads(args.threads)
    rss_start = peak_rss_mb()
    outputs = {}

    def fast():
        outputs["fast"] = method.fuse_batch(pairs)

    wall, cpu = _timed(fast, args.repeat)
    n = len(pairs)
    record = {"benchmark": "fuse", "method": args.method, "size": [height, width], "batch": n,
              "repeat": args.repeat, "threads": torch.get_num_threads(),
              "seconds_per_pair": median(wall) / n, "best_seconds_per_pair": min(wall) / n,
              "cpu_seconds_per_pair": median(cpu) / n, "peak_rss_mb": peak_rss_mb(),
              "rss_before_runs_mb": rss_start}
    if args.method == "mlfuse" and not args.no_eager:
        model = method.model
        img1 = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None])
        img2 = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])

        def eager():
            with torch.no_grad():
                outputs["eager"] = model(img1, img2)[0]

        ewall, ecpu = _timed(eager, args.repeat)
        diff = max(float(np.abs(f - outputs["eager"][k, 0].numpy()).max()) for k, f in enumerate(outputs["fast"]))
        record.update({"eager_seconds_per_pair": median(ewall) / n, "eager_cpu_seconds_per_pair": median(ecpu) / n,
                       "speedup": median(ewall) / median(wall), "cpu_speedup": median(ecpu) / median(cpu),
                       "max_abs_diff": diff, "peak_rss_with_eager_mb": peak_rss_mb()})
    record["load_average"] = [load_before, os.getloadavg()[0]]
    emit(record)
    return 0
