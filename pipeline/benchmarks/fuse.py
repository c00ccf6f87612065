"""``python -m pipeline bench fuse --method mlfuse --size 480x640 --repeat 5``: fusion speed and memory.

Prints one JSON line: ``seconds_per_pair`` (median wall time of the method's fusion call, the
figure the target refers to), ``cpu_seconds_per_pair`` (process CPU time, less sensitive to other
processes on a shared machine), ``peak_rss_mb`` (peak resident memory of this process measured right
after the fast runs, before anything else runs) and, for ``mlfuse`` and the pretrained networks
(:mod:`pipeline.fusion.pretrained`), the straightforward eager PyTorch forward of the same network
measured in the same run (``eager_seconds_per_pair``, ``speedup``) and ``max_abs_diff`` between
the fast and eager raw outputs. ``load_average`` (1 min, before/after) says how busy the machine
was. Inputs are a seeded random pair of the given size (a pretrained network's call is timed on
its prepared inputs from the pair quantised to 8 bits: the forward pass, as in spec methods.md §14).
``--weights`` defaults to the copy in ``../shared/weights`` (``official`` for mlfuse). ``--method``
is a registry name (``tardal``) or a ``fusion.methods`` entry of ``--profile`` (default ``shared``:
``tardal_plus``, ``pmgi_medical``, ``mlfuse_official``), whose kind and options (weights) are used.
``diffif`` / ``diffif_lite``: :mod:`pipeline.benchmarks._diffif` (random weights when none are given).
"""
from __future__ import annotations

import os
import time


def register(subparsers) -> None:
    parser = subparsers.add_parser("fuse", help="fusion speed/memory of one method on a synthetic pair")
    parser.add_argument("--method", default="mlfuse")
    parser.add_argument("--weights", default=None,
                        help="checkpoint: mlfuse official|trained|PATH (default official); pretrained "
                             "networks PATH or shared (default)")
    parser.add_argument("--size", default="480x640", help="HxW, e.g. 480x640 or 768x1024")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1, help="pairs per call (same size); time is per pair")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager reference (memory runs)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--params", default="params.yaml", help="params file for --profile")
    parser.add_argument("--profile", default=None,
                        help="take --method's kind and options from this profile's fusion.methods "
                             "(default: shared, for a name that is not a registry method)")
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


def method_options(args) -> tuple[str, dict]:
    """``(implementation, options)`` of ``--method``: a registry name, or a ``fusion.methods``
    entry of ``--profile`` (default ``shared`` for names the registry does not know)."""
    from pipeline.config import load_params, section
    from pipeline.errors import ConfigError
    from pipeline.fusion.registry import available_methods

    if args.profile is None and args.method in available_methods():
        return args.method, {}
    profile = args.profile or "shared"
    entries = section(load_params(args.params, profile), "fusion.methods", {}) or {}
    if args.method not in entries:
        if args.method in available_methods():
            return args.method, {}
        raise ConfigError(f"--method {args.method!r} is neither a registry method nor a fusion.methods "
                          f"entry of profile {profile!r}", args.params)
    options = dict(entries[args.method] or {})
    return options.pop("kind", args.method), options


def run(args) -> int:
    import numpy as np
    import torch

    from pipeline.benchmarks._util import emit, median, peak_rss_mb
    from pipeline.errors import ConfigError
    from pipeline.fusion.pretrained import PretrainedMethod, quantise
    from pipeline.fusion.registry import get_method

    try:
        height, width = (int(v) for v in args.size.lower().split("x"))
    except ValueError as err:
        raise ConfigError(f"--size must look like 480x640, got {args.size!r}") from err
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    pairs = [(rng.random((height, width)).astype(np.float32), rng.random((height, width)).astype(np.float32))
             for _ in range(max(1, args.batch))]
    kind, configured = method_options(args)
    if kind in ("diffif", "diffif_lite"):   # random weights allowed: pipeline/benchmarks/_diffif.py
        from pipeline.benchmarks._diffif import run_diffif

        emit(run_diffif(args, kind, configured, height, width))
        return 0
    method = get_method(args.method, kind=kind, **configured)
    network = isinstance(method, PretrainedMethod)
    mlfuse = kind == "mlfuse"
    if mlfuse or network:
        options = {**configured, "device": "cpu",
                   "weights": args.weights or configured.get("weights") or ("official" if mlfuse else "shared")}
        if args.batch > 1:
            options["batch_pixels"] = args.batch * height * width
        method = get_method(args.method, kind=kind, **options)
    if mlfuse:
        method.model  # noqa: B018  (load now: resolve_device also sets the thread count)
    inputs = pairs
    if network:
        method.network  # noqa: B018
        inputs = [method.prepare(*(quantise(p) for p in pair))[0] for pair in pairs]
    if args.threads:
        torch.set_num_threads(args.threads)
    rss_start = peak_rss_mb()
    outputs = {}

    def fast():
        outputs["fast"] = method.fuse_batch(inputs)

    wall, cpu = _timed(fast, args.repeat)
    n = len(pairs)
    record = {"benchmark": "fuse", "method": args.method, "size": [height, width], "batch": n,
              "repeat": args.repeat, "threads": torch.get_num_threads(),
              "seconds_per_pair": median(wall) / n, "best_seconds_per_pair": min(wall) / n,
              "cpu_seconds_per_pair": median(cpu) / n, "peak_rss_mb": peak_rss_mb(),
              "rss_before_runs_mb": rss_start}
    if (mlfuse or network) and not args.no_eager:
        if network:  # the eager module, NCHW, no_grad: what the official scripts run
            tensors = [torch.from_numpy(np.stack([it.arrays[s] for it in inputs])) for s in method.slots]

            def forward():
                return method.run(method.network, *tensors)
        else:
            model = method.model
            img1 = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None])
            img2 = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])

            def forward():
                return model(img1, img2)[0]

        def eager():
            with torch.no_grad():
                outputs["eager"] = forward()

        ewall, ecpu = _timed(eager, args.repeat)
        ref = outputs["eager"].numpy()
        diff = max(float(np.abs(f - (ref[k, 0] if ref.shape[1] == 1 else ref[k])).max())
                   for k, f in enumerate(outputs["fast"]))
        record.update({"eager_seconds_per_pair": median(ewall) / n, "eager_cpu_seconds_per_pair": median(ecpu) / n,
                       "speedup": median(ewall) / median(wall), "cpu_speedup": median(ecpu) / median(cpu),
                       "max_abs_diff": diff, "peak_rss_with_eager_mb": peak_rss_mb()})
    if network:
        record.update({"gflops": method.gflops(height, width), "params": method.params_count(),
                       "bn": method.bn_mode, "weights": [w["file"] for w in method.weights_info()]})
    record["load_average"] = [load_before, os.getloadavg()[0]]
    emit(record)
    return 0
