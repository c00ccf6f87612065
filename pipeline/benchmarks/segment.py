"""``python -m pipeline bench segment --dataset demo|msrs-real [--size HxW]``: DeepLabV3+ speed.

Trains the configured segmentation model (``params.yaml`` ``segmentation`` of ``--profile``,
demo by default) for ``--epochs`` epochs on the training split through the real training loop
(:func:`pipeline.segmentation.train.train_seed`, checkpoints in a temporary folder) and times the
full-resolution test prediction of ``--eval-images`` test images. The source ``--modality`` images
stand in for fused ones (same sizes, same cost).

* ``demo``: ``data/demo/MSRS`` (generated into a temporary folder when absent);
* ``msrs-real``: ``../shared/data/MSRS`` (48 train pairs at 480×640), crop ``--size``
  (default 480x640, the full image).

Prints one JSON line: seconds per epoch (median over epochs) and per training step, steps per
epoch, test seconds per image, peak RSS, threads and the 1-minute load average (the machine is
shared: figures are noisy when the load exceeds the core count).
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _dataset_root(args, params: dict, tmp: Path) -> Path:
    if args.root:
        return Path(args.root)
    if args.dataset == "msrs-real":
        return Path(os.environ.get("FUSEBENCH_SHARED", REPO.parent / "shared")) / "data" / "MSRS"
    root = Path(params["datasets"]["msrs"]["root"])
    root = root if root.is_absolute() else REPO / root
    if (root / "train").is_dir():
        return root
    from pipeline.demo_data import DemoConfig, generate

    generate(tmp / "demo", DemoConfig(m3fd_pairs=6))
    return tmp / "demo" / "MSRS"


def run(args) -> int:
    import tempfile
    import time

    import torch

    from pipeline.benchmarks._util import emit, median, peak_rss_mb
    from pipeline.config import load_params
    from pipeline.datasets import load_dataset
    from pipeline.errors import ConfigError
    from pipeline.segmentation.data import source_items
    from pipeline.segmentation.evaluate import evaluate_items
    from pipeline.segmentation.model import resolve_config
    from pipeline.segmentation.train import train_seed

    params = load_params(args.params, args.profile)
    section = dict(params.get("segmentation") or {})
    train = dict(section.get("train") or {}, epochs=args.epochs)
    size = args.size or ("480x640" if args.dataset == "msrs-real" else None)
    if size:
        try:
            train["crop"] = [int(v) for v in size.lower().split("x")]
        except ValueError as err:
            raise ConfigError(f"--size must look like 480x640, got {size!r}") from err
        train["scale"] = [1.0, 1.0]
    if args.batch:
        train["batch_size"] = args.batch
    cfg = resolve_config({**section, "train": train, "eval": {**section.get("eval", {}), "overlays": 0}})
    device = "cpu" if args.cpu else _device(cfg, params)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="fusebench-bench-seg-") as tmp:
        dataset = load_dataset("msrs", _dataset_root(args, params, Path(tmp)))
        items = source_items(dataset, args.modality)
        train_items = [i for i in items if i.split == "train"]
        test_items = [i for i in items if i.split == "test"][: args.eval_images]
        n = len(dataset.seg_classes)
        model, history = train_seed(cfg, train_items, n, 0, Path(tmp) / "ckpt", device, resume=False,
                                    progress=not args.quiet, desc="bench")
        start = time.perf_counter()
        evaluate_items(model, test_items, n, cfg, device, progress=not args.quiet)
        eval_seconds = (time.perf_counter() - start) / max(1, len(test_items))
    steps = len(train_items) // cfg["train"]["batch_size"]
    epoch = median([h["seconds"] for h in history])
    emit({"benchmark": "segment", "dataset": args.dataset, "profile": params["profile"],
          "encoder": cfg["model"]["encoder"], "decoder_channels": cfg["model"]["decoder_channels"],
          "train_images": len(train_items), "crop": "x".join(map(str, cfg["train"]["crop"])),
          "batch_size": cfg["train"]["batch_size"], "steps_per_epoch": steps, "epochs": len(history),
          "seconds_per_epoch": round(epoch, 3), "seconds_per_step": round(epoch / max(steps, 1), 3),
          "test_images": len(test_items), "test_seconds_per_image": round(eval_seconds, 3),
          "device": str(device), "threads": torch.get_num_threads(),
          "load_avg_1min": round(os.getloadavg()[0], 2), "cores": os.cpu_count(),
          "peak_rss_mb": round(peak_rss_mb(), 1)})
    return 0


def _device(cfg: dict, params: dict) -> str:
    from pipeline.device import resolve_device

    return resolve_device(cfg["device"] or params.get("device", "auto"))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment", help="DeepLabV3+ seconds per epoch / step and test seconds per image",
        description="Time DeepLabV3+ training epochs and full-resolution test prediction; "
                    "prints one JSON line.")
    parser.add_argument("--dataset", choices=("demo", "msrs-real"), default="demo")
    parser.add_argument("--size", default=None, help="training crop HxW (default: the profile's crop; "
                                                     "480x640 for msrs-real)")
    parser.add_argument("--profile", choices=("demo", "shared", "full"), default="demo")
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--root", default=None, help="MSRS-layout folder instead of the default")
    parser.add_argument("--modality", choices=("ir", "vis"), default="vis")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--eval-images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--cpu", action="store_true", help="force the CPU even when CUDA is present")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
