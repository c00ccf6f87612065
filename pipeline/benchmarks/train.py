"""``python -m pipeline bench train --method NAME``: seconds per training step of a learned fusion method.

The step is the recipe's own :meth:`~pipeline.training.recipe.Recipe.step` (for a GAN: every
discriminator and generator update of one batch, as the trainer runs it), built from ``params.yaml``
``train.methods.<NAME>`` of the ``full`` profile (the published recipe; ``--profile`` to change) with
``--batch`` / ``--crop`` overriding its batch size and crop. Inputs are random tensors (a step's cost
does not depend on content). Prints one JSON line: median/min wall-clock seconds per step, median
process CPU seconds per step (less sensitive to other processes on a shared machine), samples per
second, peak resident memory (and peak CUDA memory on a GPU), the thread count and, when the spec
measured the official step for this method (``methods.md`` section 15 / ``mlfuse.md``), the ratio of
this step to it at the same number of training images per step and the same crop (DenseFuse trains
its autoencoder on both crops of a pair: batch 2 = the port's 4 images). ``--single-update`` (the GAN
recipes: FusionGAN, DDcGAN, MFF-GAN, UFGAN) times the recipe's ``generator_update`` alone, the
generator's update without the discriminators', which is what the spec's "G only" figures measured;
without it a GAN step includes its discriminator updates and its ratio overstates the cost.
"""
from __future__ import annotations

#: spec-measured official step (seconds, 2-vCPU EPYC, 2 threads) per method: (training images per
#: step, crop, seconds, what)
SPEC_STEPS = {
    "fusiongan": (32, 132, 17.8, "G only, methods.md section 15"),
    "ddcgan": (24, 84, 11.7, "G only, methods.md section 15"),
    "pmgi": (32, 120, 2.10, "methods.md section 15"),
    "densefuse": (4, 256, 1.41, "methods.md section 15"),
    "mff_gan": (32, 60, 0.30, "G only, methods.md section 15"),
    "ufgan": (32, 160, 29.1, "G only, methods.md section 15"),
}


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="seconds per training step of a learned method",
                                   description="Time training steps (batch × 1 × crop × crop) of one method.")
    parser.add_argument("--method", default="mlfuse", help="train.methods entry (default mlfuse)")
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    parser.add_argument("--profile", default="full", help="params profile (default full = published recipe)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the recipe's)")
    parser.add_argument("--crop", type=int, default=None, help="crop size (default: the recipe's)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--nchw", action="store_true", help="NCHW tensors instead of channels-last")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument("--single-update", action="store_true",
                        help="GAN recipes: time the generator update alone (no discriminator update), "
                             "the spec's 'G only' step")
    parser.set_defaults(func=run)


def run(args) -> int:
    import time

    from pipeline import hermetic

    hermetic.apply()   # offline settings before torch
    import torch

    from pipeline.benchmarks._util import emit, median, peak_rss_mb, time_call
    from pipeline.config import load_params, section
    from pipeline.device import resolve_device
    from pipeline.errors import ConfigError
    from pipeline.training.trainer import build_recipe, resolve_config

    params = load_params(args.params, args.profile)
    base = section(params, f"train.methods.{args.method}")
    if base is None:
        raise ConfigError(f"train.methods.{args.method} is not configured", args.params)
    cfg = resolve_config(args.method, {**base, "seed": base.get("seed") or 0, "device": args.device,
                                       "amp": args.amp, "channels_last": not args.nchw,
                                       **({"batch_size": args.batch} if args.batch else {}),
                                       **({"crop": args.crop} if args.crop else {})})
    device = resolve_device(cfg["device"])
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = build_recipe(args.method, cfg, device)
    if args.single_update and recipe.generator_update is None:
        raise ConfigError("--single-update applies to the GAN recipes (a generator update without the "
                          "discriminators') only", f"train.methods.{args.method}")
    update = recipe.generator_update if args.single_update else recipe.step
    batch_size, crop = cfg["batch_size"], cfg["crop"]
    gen = torch.Generator().manual_seed(0)
    batch = {key: torch.rand(batch_size, 1, crop, crop, generator=gen).to(device)
             for key in ("ir", "vis", *recipe.maps)}
    batch = recipe.ctx.prepare(batch)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    cpu_times: list[float] = []
    counter = iter(range(1 << 30))

    def step():
        start = time.process_time()
        values = update(batch, next(counter))
        [float(torch.as_tensor(v).detach()) for v in (values.values() if isinstance(values, dict) else [values])]  # synchronises CUDA
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        cpu_times.append(time.process_time() - start)

    times = time_call(step, repeat=args.steps, warmup=1)
    per_step = median(times)
    images = batch_size * recipe.images_per_pair
    record = {"benchmark": "train", "method": args.method, "device": device, "threads": torch.get_num_threads(),
              "amp": recipe.ctx.amp, "channels_last": cfg["channels_last"], "batch": batch_size, "crop": crop,
              "images_per_step": images, "single_update": bool(args.single_update),
              "steps": args.steps, "seconds_per_step": per_step, "seconds_per_step_min": min(times),
              "cpu_seconds_per_step": median(cpu_times[1:]), "samples_per_second": batch_size / per_step,
              "images_per_second": images / per_step, "peak_rss_mb": peak_rss_mb(),
              "note": "wall clock on a shared machine; other processes inflate the figures"}
    if device.startswith("cuda"):
        record["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    spec = SPEC_STEPS.get(args.method)
    if spec and (spec[0], spec[1]) == (images, crop):
        record.update(spec_seconds_per_step=spec[2], spec_step=spec[3], ratio_to_spec=per_step / spec[2])
    emit(record)
    return 0
