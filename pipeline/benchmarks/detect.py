"""``python -m pipeline bench detect``: seconds per YOLO training epoch (train + validation pass)
and the test evaluation, with the detection stage's own code and settings.

``--dataset demo`` uses the demo profile's ``m3fd`` dataset, ``--dataset m3fd-real`` the 30 real
M3FD pairs in ``../shared/data/M3FD`` (meta split); the ``detection`` settings are those of
``--profile`` (demo: pico network, full: YOLOv5s at 640, batch 16) and
``--imgsz``/``--epochs``/``--batch``/``--model`` override them, ``--root`` points
at another M3FD-layout folder. The ``ir`` images are used (same cost as any fused folder). Results
go to a temporary folder. Prints one JSON line; wall-clock figures on a shared machine are noisy,
so the load average and the process CPU seconds are reported too.
"""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("detect", help="seconds per YOLO training epoch",
                                   description="Time YOLO training epochs and the test evaluation.")
    parser.add_argument("--dataset", choices=("demo", "m3fd-real"), default="demo")
    parser.add_argument("--root", default=None, help="M3FD-layout folder instead of the dataset's root")
    parser.add_argument("--imgsz", type=int, default=None, help="image size (default: the profile's)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs to time (default 1)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the profile's)")
    parser.add_argument("--model", default=None, help="model yaml or local .pt (default: the profile's)")
    parser.add_argument("--profile", choices=("demo", "shared", "full"), default="demo",
                        help="detection settings of this params profile (default demo)")
    parser.add_argument("--params", default="params.yaml")
    parser.set_defaults(func=run)


def run(args) -> int:
    import os
    import tempfile
    import time
    from pathlib import Path

    from pipeline import hermetic

    hermetic.apply()   # offline settings before torch/ultralytics
    from pipeline.benchmarks._util import emit, median, peak_rss_mb
    from pipeline.config import load_params
    from pipeline.detection import stage, yolo

    if args.root:
        args.root = str(Path(args.root).resolve())
    os.chdir(Path(args.params).resolve().parent)  # params paths are relative to the project root
    params = load_params(args.params, profile=args.profile)
    det = params.setdefault("detection", {})
    if args.dataset == "demo" and args.profile != "demo":
        params["datasets"] = load_params(args.params, profile="demo")["datasets"]
    for key in ("imgsz", "epochs", "batch", "model"):
        if getattr(args, key) is not None:
            det[key] = getattr(args, key)
    config = dict(params["datasets"]["m3fd"])
    if args.dataset == "m3fd-real":
        shared = Path.cwd().parent / "shared"
        config = {"kind": "m3fd", "root": str(shared / "data" / "M3FD"), "split": "meta"}
    if args.root:
        config["root"] = args.root
    params["datasets"] = {"m3fd": config}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fusebench-bench-detect-") as tmp:
        det.update(results=str(Path(tmp) / "results"), fused_root=str(Path(tmp) / "none"), seeds=[0])
        prepared = stage.prepare_method(params, "ir")
        marks: list[float] = []
        cpu0 = time.process_time()
        start = time.perf_counter()
        best = yolo.train(prepared.settings, prepared.data.data_yaml, prepared.seed_dir(0), 0, prepared.device,
                          callbacks={"on_train_epoch_start": [lambda t: marks.append(time.perf_counter())],
                                     "on_fit_epoch_end": [lambda t: marks.append(time.perf_counter())]})
        train_seconds = time.perf_counter() - start
        train_cpu = time.process_time() - cpu0
        start = time.perf_counter()
        metrics, _, _ = yolo.evaluate(best, prepared.data.data_yaml, prepared.settings, prepared.device,
                                      prepared.seed_dir(0))
        eval_seconds = time.perf_counter() - start
    epochs = [marks[i + 1] - marks[i] for i in range(0, len(marks) - 1, 2)][: prepared.settings["epochs"]]
    splits = {k: len(v) for k, v in prepared.data.splits.items()}
    emit({"benchmark": "detect", "dataset": args.dataset, "profile": args.profile, "root": config["root"], "device": prepared.device,
          "model": prepared.settings["model"], "imgsz": prepared.settings["imgsz"],
          "batch": prepared.settings["batch"], "epochs": prepared.settings["epochs"], "images": splits,
          "seconds_per_epoch": median(epochs) if epochs else None, "epoch_seconds": epochs,
          "train_seconds_total": train_seconds, "train_cpu_seconds": train_cpu,
          "test_eval_seconds": eval_seconds, "test_mAP50": metrics["mAP50"], "peak_rss_mb": peak_rss_mb(),
          "load_average_1min_at_start": load, "ultralytics": yolo.ultralytics_version(),
          "note": "epoch = training pass + validation pass; train_seconds_total adds setup and the final "
                  "validation of best.pt; wall clock on a shared 2-core machine, inflated by other processes"})
    return 0
