"""``python -m pipeline bench train``: seconds per MLFuse training step (forward, four losses,
backward, Adam step) at the published batch 16 × 128×128, on the device ``auto`` picks.

Inputs are random tensors (the step's cost does not depend on content); the step is
:func:`pipeline.mlfuse_train.trainer.train_step`, the one the trainer runs. Prints one JSON line
with the median/min wall-clock seconds per step, the median process CPU seconds per step (less
sensitive to other processes on a shared machine), the thread count and an estimate of the published
run's length (``steps_per_epoch`` × 501 epochs; 27 steps per epoch for the ~440 official pairs).
"""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="seconds per MLFuse training step",
                                   description="Time MLFuse training steps (batch × 1 × crop × crop).")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16, published)")
    parser.add_argument("--crop", type=int, default=128, help="crop size (default 128, published)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--nchw", action="store_true", help="NCHW tensors instead of channels-last")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument("--steps-per-epoch", type=int, default=27, help="for the full-run estimate")
    parser.add_argument("--epochs", type=int, default=501, help="for the full-run estimate")
    parser.set_defaults(func=run)


def run(args) -> int:
    import time

    import pipeline  # noqa: F401  (hermetic settings before torch)
    import torch

    from pipeline.benchmarks._util import emit, median, peak_rss_mb, time_call
    from pipeline.device import resolve_device
    from pipeline.mlfuse_train.trainer import build_model, make_optimizer, resolve_config, train_step

    cfg = resolve_config({"batch_size": args.batch, "crop": args.crop, "device": args.device, "amp": args.amp,
                          "channels_last": not args.nchw})
    device = resolve_device(cfg["device"])
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = args.amp and device.startswith("cuda")
    model = build_model(cfg, device)
    optimizer, _ = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    gen = torch.Generator().manual_seed(0)
    batch = tuple(torch.rand(args.batch, 1, args.crop, args.crop, generator=gen).to(device) for _ in range(3))

    cpu_times: list[float] = []

    def step():
        start = time.process_time()
        terms = train_step(model, optimizer, scaler, batch, cfg["loss_weights"], amp, cfg["channels_last"])
        terms.total.item()  # synchronises CUDA
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        cpu_times.append(time.process_time() - start)

    times = time_call(step, repeat=args.steps, warmup=1)
    per_step = median(times)
    emit({"benchmark": "train", "device": device, "threads": torch.get_num_threads(), "amp": amp,
          "channels_last": cfg["channels_last"],
          "batch": args.batch, "crop": args.crop, "steps": args.steps,
          "seconds_per_step": per_step, "seconds_per_step_min": min(times),
          "cpu_seconds_per_step": median(cpu_times[1:]),
          "images_per_second": args.batch / per_step, "peak_rss_mb": peak_rss_mb(),
          "estimated_hours_full_run": per_step * args.steps_per_epoch * args.epochs / 3600.0,
          "note": "wall clock on a shared machine; other processes inflate the figures"})
    return 0
