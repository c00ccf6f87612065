"""The detection stage for one fusion method: build its YOLO dataset, train and test every seed,
write ``results/detection/<dataset>/<method>/metrics.json``.

Layout (``<out>`` = ``results/detection/<dataset>/<method>``, the stage's DVC output, deleted by
DVC before the stage runs; ``<work>`` = ``<models_root>/<dataset>/<method>``, a persisted output
that survives a failed or interrupted run)::

    <out>/metrics.json                 mean/std over seeds + per seed, params, split, versions
    <out>/seed_<k>/predictions.json    per test image: gt and detections (conf >= 0.001, NMS IoU 0.6)
    <out>/seed_<k>/seed_metrics.json   this seed's test metrics and key
    <work>/seed_<k>/key.json           the seed's content key (below); another key empties the folder
    <work>/seed_<k>/weights/best_state.pt  the trained network as plain data (torch.load
                                       weights_only=True), the file the test evaluation loads
    <work>/seed_<k>/weights/resume.pt  mid-run resume state (pipeline.detection.trainer), removed
                                       once the seed is trained
    <work>/seed_<k>/{predictions,seed_metrics}.json, args.yaml, results.csv  (copied to <out>)

Every seed's key (:meth:`Prepared.seed_key`) is a content fingerprint of the bytes of the method's
images and labels, the detection settings, the model file, the device, the ultralytics version,
the stage's code (:func:`pipeline.fingerprint.code_digest`) and the seed. A seed whose finished
record carries the current key is reused (a re-run after a failure trains only the missing
seeds), a killed training with the current key continues after its last checkpoint, and a seed
folder of another key is deleted before training: nothing stale survives.

The YOLO dataset (links + label files + ``data.yaml``) is built in the scratch folder
``<state>/detection/<dataset>/<method>/yolo_data`` (``.cache/`` of the project), outside every
DVC-tracked folder.
"""
from __future__ import annotations

import copy
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import checked, section
from pipeline.datasets import PairDataset, load_configured
from pipeline.detection import ap as ap_metric
from pipeline.detection import yolo
from pipeline.detection.trainer import RESUME_NAME, finished_weights, load_resume
from pipeline.detection.yolo_data import YoloData, build_yolo_data, method_images
from pipeline.errors import ConfigError
from pipeline.hermetic import state_dir
from pipeline.results import provenance, read_json, seed_mean_std, write_json

log = logging.getLogger("fusebench.detection")

#: Every key of ``params.yaml`` ``detection`` (all required, values only in params.yaml: no defaults
#: here that could silently differ from it; an unknown key is an error naming it).
KEYS = ("dataset", "fused_root", "results", "models_root", "model", "pretrained", "imgsz", "epochs", "batch",
        "nbs", "seeds", "device", "optimizer", "lr0", "warmup_epochs", "mosaic", "patience", "select",
        "checkpoint_every", "cache", "conf", "iou", "max_det", "val_fraction", "split_seed", "unknown_classes",
        "extra", "parallel_seeds")
SUMMARY_KEYS = ("mAP50", "mAP50_95", "precision", "recall")
PER_SEED_KEYS = (*SUMMARY_KEYS, "AP50", "mAP50_ap_py", "mAP50_95_ap_py")


def detection_settings(params: dict) -> dict:
    """``params.detection`` (profile resolved), every key of :data:`KEYS` present, values checked."""
    settings = checked(copy.deepcopy(section(params, "detection", {}) or {}), "detection", KEYS)
    settings["device"] = settings["device"] or params.get("device") or "auto"
    seeds = settings["seeds"]
    if isinstance(seeds, int):
        seeds = [seeds]
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"detection.seeds must be a non-empty list of integers, got {settings['seeds']!r}")
    settings["seeds"] = list(seeds)
    from pipeline.seedpool import resolve_workers

    resolve_workers(settings["parallel_seeds"], 1, "cpu", "detection.parallel_seeds")
    if settings["select"] not in ("best", "last"):
        raise ConfigError(f"detection.select must be 'best' or 'last', got {settings['select']!r}")
    for key in ("imgsz", "epochs", "batch", "max_det", "checkpoint_every"):
        if not isinstance(settings[key], int) or settings[key] < 1:
            raise ConfigError(f"detection.{key} must be a positive integer, got {settings[key]!r}")
    if not 0 < float(settings["val_fraction"]) < 1:
        raise ConfigError(f"detection.val_fraction must be in (0, 1), got {settings['val_fraction']!r}")
    if settings["unknown_classes"] not in (None, "error", "skip"):
        raise ConfigError("detection.unknown_classes must be 'error' or 'skip'")
    return settings


def detection_methods(params: dict) -> list[str]:
    """Methods to evaluate: ``ir`` and ``vis`` first (always), then every ``fusion.methods`` entry
    (each has its ``detect@<method>`` DVC stage), without repeats."""
    chosen = list(section(params, "fusion.methods") or {})
    return list(dict.fromkeys(["ir", "vis", *chosen]))


@dataclass
class Prepared:
    """Everything a seed needs: the method's YOLO dataset, settings, device and folders."""

    method: str
    dataset: PairDataset
    data: YoloData
    settings: dict
    device: str
    out_dir: Path

    work_dir: Path | None = None
    workers: int = 1              # seeds trained at once (pipeline.seedpool); > 1: one thread each

    @property
    def threads(self) -> int:
        """Torch threads a seed trains with: 1 in a seed worker, else the stage's default."""
        from pipeline.seedpool import default_threads

        return 1 if self.workers > 1 else default_threads()

    def seed_dir(self, seed: int) -> Path:
        """The published folder of a seed (inside the stage's DVC output)."""
        return self.out_dir / f"seed_{seed}"

    def seed_work(self, seed: int) -> Path:
        """The persisted work folder of a seed (weights, resume state, records)."""
        return (self.work_dir or self.out_dir) / f"seed_{seed}"

    def seed_key(self, seed: int) -> str:
        """Content key of one seed's result (see the module docstring)."""
        from pipeline.fingerprint import code_digest, content_key

        settings = {k: v for k, v in self.settings.items()
                    if k not in ("seeds", "results", "models_root", "fused_root", "methods", "parallel_seeds")}
        return content_key(data=self.data.fingerprint, settings=settings, model=yolo.model_identity(self.settings),
                           device=self.device, ultralytics=yolo.ultralytics_version(),
                           code=code_digest("pipeline.detection.stage"), seed=int(seed))


def load_detection_dataset(params: dict, settings: dict) -> PairDataset:
    name = settings["dataset"]
    config = dict((params.get("datasets") or {}).get(name) or {})
    if settings["unknown_classes"]:
        config["unknown_classes"] = settings["unknown_classes"]
    return load_configured({"datasets": {name: config}}, name)


def prepare_method(params: dict, method: str) -> Prepared:
    """Load the dataset, check the method's images and build its YOLO dataset (scratch folder)."""
    from pipeline.device import resolve_device
    from pipeline.seedpool import resolve_workers

    settings = detection_settings(params)
    dataset = load_detection_dataset(params, settings)
    images, source = method_images(dataset, Path(settings["fused_root"]), method)
    scratch = state_dir() / "detection" / dataset.name / method / "yolo_data"
    data = build_yolo_data(dataset, images, scratch, source, float(settings["val_fraction"]),
                           int(settings["split_seed"]))
    device = resolve_device(settings["device"])
    if settings["device"] == "auto" and device == "cpu":
        log.info("device auto: no CUDA GPU found, training on the CPU")
    out_dir = Path(settings["results"]) / dataset.name / method
    work_dir = Path(settings["models_root"]) / dataset.name / method
    if work_dir.is_dir():  # seeds no longer configured: their folders can never be reused
        keep = {f"seed_{s}" for s in settings["seeds"]}
        for old in work_dir.iterdir():
            if old.is_dir() and old.name.startswith("seed_") and old.name not in keep:
                shutil.rmtree(old)
    workers = resolve_workers(settings["parallel_seeds"], len(settings["seeds"]), device, "detection.parallel_seeds")
    return Prepared(method, dataset, data, settings, device, out_dir, work_dir, workers)


def prediction_records(prepared: Prepared, detections: dict[str, dict]) -> list[dict]:
    """Per test image: ground truth as trained on and detections, class names, pixels."""
    missing = sorted(set(prepared.data.splits["test"]) - set(detections))
    if missing:
        raise RuntimeError(f"ultralytics evaluated no detections for test image(s) {missing[:5]}")
    classes = prepared.data.classes
    records = []
    for name in prepared.data.splits["test"]:
        boxes, labels = prepared.data.gt_boxes(name)
        det = detections[name]
        height, width = prepared.data.sizes[name]
        records.append({"name": name, "width": width, "height": height,
                        "gt": {"boxes": [[round(v, 4) for v in b] for b in boxes], "classes": labels},
                        "pred": {"boxes": det["boxes"], "scores": det["scores"],
                                 "classes": [classes[c] for c in det["class_ids"]]}})
    return records


def _finished(work: Path, key: str) -> dict | None:
    marker = work / "seed_metrics.json"
    if marker.is_file() and (work / "predictions.json").is_file():
        done = read_json(marker)
        if done.get("key") == key:
            return done
    return None


def _trained(weights: Path, key: str) -> bool:
    if not weights.is_file():
        return False
    import torch

    try:
        return torch.load(weights, map_location="cpu", weights_only=True).get("key") == key
    except Exception:  # noqa: BLE001 - unreadable: train again
        return False


def claim_seed_folder(work: Path, key: str) -> None:
    """Make ``work`` the folder of ``key``: a folder written for another key is emptied first."""
    marker = work / "key.json"
    if work.is_dir() and (not marker.is_file() or read_json(marker).get("key") != key):
        log.info("%s: written for other inputs or settings, starting it again", work)
        shutil.rmtree(work)
    if not marker.is_file():
        write_json(marker, {"key": key})


def publish_seed(prepared: Prepared, seed: int) -> None:
    """Copy the seed's records from its work folder into the stage's output."""
    out = prepared.seed_dir(seed)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("predictions.json", "seed_metrics.json"):
        shutil.copyfile(prepared.seed_work(seed) / name, out / name)


def run_seed(prepared: Prepared, seed: int) -> dict:
    """Train and test one seed in its work folder, reusing a finished seed and resuming a killed
    training of the same key; publish its records; return its metrics."""
    work, key = prepared.seed_work(seed), prepared.seed_key(seed)
    done = _finished(work, key)
    if done is not None:
        log.info("%s seed %d: already done, reusing %s", prepared.method, seed, work)
        publish_seed(prepared, seed)
        return done
    claim_seed_folder(work, key)
    settings, data = prepared.settings, prepared.data
    best = work / "weights" / yolo.WEIGHTS_ONLY_NAME
    resumed = None
    if not _trained(best, key):
        resume = load_resume(work / "weights" / RESUME_NAME, key)
        resumed = None if resume is None else int(resume["epoch"]) + 1
        final = finished_weights(resume) if resume is not None else None
        if final is not None:  # killed after its last epoch was saved: nothing left to train
            best = yolo.write_weights(final, best, key)
            (work / "weights" / RESUME_NAME).unlink()
        else:
            best = yolo.train(settings, data.data_yaml, work, seed, prepared.device, key=key, resume=resume)
    metrics, detections, names = yolo.evaluate(best, data.data_yaml, settings, prepared.device, work)
    if list(names) != list(data.classes):
        raise RuntimeError(f"model classes {names} differ from the dataset classes {list(data.classes)}")
    records = prediction_records(prepared, detections)
    write_json(work / "predictions.json", {
        "dataset": prepared.dataset.name, "method": prepared.method, "seed": seed,
        "classes": list(data.classes), "conf": settings["conf"], "iou": settings["iou"],
        "max_det": settings["max_det"], "imgsz": settings["imgsz"],
        "box_format": "x1 y1 x2 y2, pixels of the original image; detections not clipped",
        "images": records})
    by_id = metrics.pop("AP50_by_id")
    metrics["AP50"] = {c: by_id.get(i) for i, c in enumerate(data.classes)}
    check = ap_metric.evaluate(records)  # ultralytics' values recomputed from predictions.json
    metrics["mAP50_ap_py"], metrics["mAP50_95_ap_py"] = check.map50, check.map50_95
    result = {"seed": seed, **metrics, "key": key, "resumed_from_epoch": resumed, "weights": str(best),
              "threads": prepared.threads, "parallel_seeds": prepared.workers}
    write_json(work / "seed_metrics.json", result)
    publish_seed(prepared, seed)
    return result


def summarize(prepared: Prepared, seed_results: list[dict]) -> dict:
    """Mean and sample std (ddof=1; null with one seed) over seeds, per-seed values, counts."""
    data = prepared.data
    out: dict = {"dataset": prepared.dataset.name, "method": prepared.method}
    std: dict = {"AP50": {}}
    for key in SUMMARY_KEYS:
        out[key], std[key], _ = seed_mean_std([r[key] for r in seed_results])
    out["AP50"] = {}
    for cls in data.classes:
        out["AP50"][cls], std["AP50"][cls], _ = seed_mean_std([r["AP50"].get(cls) for r in seed_results])
    test = data.splits["test"]
    per_class = {c: 0 for c in data.classes}
    for name in test:
        for cid in data.rows[name][:, 0]:
            per_class[data.classes[int(cid)]] += 1
    out.update({
        "std": std, "n_seeds": len(seed_results), "seeds": [r["seed"] for r in seed_results],
        "per_seed": {str(r["seed"]): {k: r[k] for k in PER_SEED_KEYS} for r in seed_results},
        "n_train_images": len(data.splits["train"]), "n_val_images": len(data.splits["val"]),
        "n_test_images": len(test), "n_test_boxes": sum(per_class.values()),
        "test_boxes_per_class": per_class, "skipped_boxes": dict(prepared.dataset.skipped_boxes),
        "val_source": data.val_source, "image_source": data.image_source, "device": prepared.device,
        "params": prepared.settings, "ultralytics": yolo.ultralytics_version(),
        "metric_notes": "AP/mAP in [0, 1] from ultralytics' validator on the test split "
                        "(conf >= conf, NMS IoU = iou); precision/recall at the max-F1 confidence; "
                        "AP50 null for classes without test boxes; std is the sample std over seeds "
                        "(null with one seed).",
    })
    out["provenance"] = provenance(prepared.settings, data.splits, dataset_manifest=prepared.dataset.manifest())
    return out


def write_method_metrics(prepared: Prepared, seed_results: list[dict]) -> Path:
    return write_json(prepared.out_dir / "metrics.json", summarize(prepared, seed_results))


def run_method(params: dict, method: str) -> Path:
    """The whole stage for one method without Prefect (benchmarks, tests): returns metrics.json."""
    prepared = prepare_method(params, method)
    return write_method_metrics(prepared, run_seeds(prepared, prepared.settings["seeds"]))


def run_seeds(prepared: Prepared, seeds: list[int]) -> list[dict]:
    """:func:`run_seed` for every seed, ``prepared.workers`` at a time in worker processes
    (:mod:`pipeline.seedpool`, one torch thread each) after the YOLO dataset was built once."""
    from pipeline.seedpool import run_seeds as pool

    return pool(run_seed, [(prepared, seed) for seed in seeds], prepared.workers, 1,
                [f"{prepared.method} seed {seed}" for seed in seeds], preload=("ultralytics",))
