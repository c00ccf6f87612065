"""The frozen-evaluator protocol: one detector and one segmenter, trained once on the *source*
images (infrared and visible mixed), applied unchanged to every method's fused test images.

This is the cheap protocol some recent studies use instead of retraining a downstream model per
method (FuseBench issue 17). The report compares its ranking of the methods with the
retrain protocol's (Spearman with a bootstrap interval; :mod:`pipeline.report.robustness`).

Training set (``frozen.mix``): ``alternate`` -- each training pair contributes one image, infrared
for even and visible for odd positions in name order (the same number of images, so the same
cost, as one method's training); ``both`` -- every pair contributes both images (twice the cost).
The recipe is the detection / segmentation stage's (``detection`` / ``segmentation`` sections),
with the overrides in ``frozen.detection`` / ``frozen.segmentation``; one seed (``frozen.seed``).

Files::

    <frozen.models>/detection/seed_<k>/weights/best_state.pt   (+ ultralytics' run record)
    <frozen.models>/detection/seed_<k>/frozen.json             fingerprint (resume marker), data
    <frozen.models>/segmentation/seed_<k>/model.pth
    <robustness.frozen_out>/<method>/{summary.json, detection.json, segmentation.npz}
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Mapping

import numpy as np

from pipeline.config import checked, deep_merge, section
from pipeline.errors import ConfigError
from pipeline.results import read_json, write_json

KEYS = ("mix", "seed", "models", "detection", "segmentation")


def frozen_settings(params: Mapping) -> dict:
    settings = checked(section(dict(params), "frozen"), "frozen", KEYS)
    if settings["mix"] not in ("alternate", "both"):
        raise ConfigError(f"frozen.mix must be 'alternate' or 'both', got {settings['mix']!r}")
    return settings


def task_params(params: Mapping, settings: Mapping) -> dict:
    """``params`` with the frozen overrides merged into ``detection`` / ``segmentation``."""
    out = copy.deepcopy(dict(params))
    for task in ("detection", "segmentation"):
        out[task] = deep_merge(out.get(task) or {}, settings[task] or {})
    return out


def mixed_samples(samples: list, mix: str) -> tuple[list, dict]:
    """Samples whose image is one source (``alternate``) or both (``both``); returns (samples
    renamed ``<name>__ir`` / ``<name>__vis``, {new name: image path})."""
    out, images = [], {}
    for k, sample in enumerate(sorted(samples, key=lambda s: s.name)):
        chosen = ("ir", "vis") if mix == "both" else (("ir",) if k % 2 == 0 else ("vis",))
        for modality in chosen:
            name = f"{sample.name}__{modality}"
            out.append(dataclasses.replace(sample, name=name, vis=getattr(sample, modality)))
            images[name] = getattr(sample, modality)
    return out, images


def train_detector(params: Mapping, settings: Mapping, log=lambda _: None) -> Path:
    from pipeline.detection import yolo
    from pipeline.detection.stage import detection_settings, load_detection_dataset
    from pipeline.detection.yolo_data import build_yolo_data
    from pipeline.device import resolve_device
    from pipeline.fingerprint import code_digest, content_key, params_digest
    from pipeline.hermetic import state_dir

    det = detection_settings(task_params(params, settings))
    dataset = load_detection_dataset(dict(params), det)
    samples, images = mixed_samples(dataset.samples, settings["mix"])
    mixed = dataclasses.replace(dataset, samples=samples)
    data = build_yolo_data(mixed, images, state_dir() / "frozen" / "yolo_data", f"{dataset.root} (mixed sources)",
                           float(det["val_fraction"]), int(det["split_seed"]))
    seed, device = int(settings["seed"]), resolve_device(det["device"])
    run_dir = Path(settings["models"]) / "detection" / f"seed_{seed}"
    key = content_key(data=data.fingerprint, settings=params_digest([det, settings["mix"]]),
                      model=yolo.model_identity(det), device=device, code=code_digest(["pipeline.detection.yolo"]))
    marker, best = run_dir / "frozen.json", run_dir / "weights" / yolo.WEIGHTS_ONLY_NAME
    if marker.is_file() and best.is_file() and read_json(marker).get("fingerprint") == key:
        log(f"frozen detector: unchanged, kept {best}")
        return best
    best = yolo.train(det, data.data_yaml, run_dir, seed, device)
    write_json(marker, {"fingerprint": key, "mix": settings["mix"], "images": {s: len(n) for s, n in data.splits.items()},
                        "weights": str(best)})
    return best


def train_segmenter(params: Mapping, settings: Mapping, log=lambda _: None) -> Path:
    from pipeline.datasets import load_configured
    from pipeline.device import resolve_device
    from pipeline.segmentation.data import SegItem
    from pipeline.segmentation.model import resolve_config
    from pipeline.segmentation.run import torch_threads
    from pipeline.segmentation.train import FINAL_NAME, train_seed

    merged = task_params(params, settings)
    cfg = resolve_config(merged["segmentation"])
    dataset = load_configured(dict(params), cfg["dataset"])
    samples, images = mixed_samples(dataset.split("train"), settings["mix"])
    items = [SegItem(s.name, "train", images[s.name], s.seg_label) for s in samples]
    seed = int(settings["seed"])
    folder = Path(settings["models"]) / "segmentation" / f"seed_{seed}"
    device = resolve_device(cfg["device"] or params.get("device", "auto"))
    with torch_threads(cfg["threads"]):
        train_seed(cfg, items, len(dataset.seg_classes), seed, folder, device, progress=False,
                   ignore_index=dataset.ignore_index, desc="frozen segmenter")
    return folder / FINAL_NAME


def run_frozen_training(params: Mapping, log=lambda _: None) -> dict:
    settings = frozen_settings(params)
    return {"detection": str(train_detector(params, settings, log)),
            "segmentation": str(train_segmenter(params, settings, log))}


def apply_frozen(ctx, method: str, log=lambda _: None) -> dict:
    """The frozen models on ``method``'s clean fused test images (full test split of each task)."""
    from pipeline.detection.yolo_data import method_images
    from pipeline.hermetic import state_dir
    from pipeline.robustness import evaluate as E
    from pipeline.robustness.models import load_segmenter, require
    from pipeline.segmentation.run import save_npz
    from pipeline.segmentation.train import FINAL_NAME

    from pipeline.fingerprint import code_digest, content_key, file_digest, params_digest

    settings = frozen_settings(ctx.params)
    seed = int(settings["seed"])
    root = Path(settings["models"])
    out = Path(ctx.settings["frozen_out"]) / method
    models = {"detection": root / "detection" / f"seed_{seed}" / "weights" / "best_state.pt",
              "segmentation": root / "segmentation" / f"seed_{seed}" / FINAL_NAME}
    work = {}
    for task in ctx.settings["tasks"]:
        dataset = ctx.datasets[task]
        fused_root = (ctx.det if task == "detection" else ctx.seg)["fused_root"]
        images, _ = method_images(dataset, Path(fused_root), method)
        test = sorted(dataset.split("test"), key=lambda s: s.name)[:ctx.settings["frozen_images"] or None]
        work[task] = [E.Item(s.name, images[s.name], s) for s in test]
    key = content_key(settings=params_digest([settings, ctx.settings["frozen_images"], ctx.det, ctx.seg]),
                      models=[file_digest(require(models[t], f"frozen {t} model")) for t in work],
                      images=[file_digest(i.image) for t in work for i in work[t]],
                      code=code_digest(["pipeline.robustness.frozen"]))
    if (out / "summary.json").is_file() and read_json(out / "summary.json").get("fingerprint") == key:
        log(f"frozen evaluator on {method}: unchanged, kept {out}")
        return read_json(out / "summary.json")
    summary = {"method": method, "seed": seed, "mix": settings["mix"], "protocol": "frozen evaluator",
               "fingerprint": key}
    for task, items in work.items():
        dataset = ctx.datasets[task]
        if task == "detection":
            weights = models["detection"]
            records = E.detection_records(weights, items, dataset.box_classes, ctx.det, ctx.device,
                                          state_dir() / "frozen_eval" / method)
            write_json(out / "detection.json", {"method": method, "images": records})
            summary["mAP50"] = E.map50_by_group(records, lambda _: "all")["all"]
        else:
            model = load_segmenter(models["segmentation"], ctx.device)
            conf = E.segmentation_confusions(model, items, len(dataset.seg_classes), ctx.seg, ctx.device,
                                             dataset.ignore_index)
            save_npz(out / "segmentation.npz", names=np.array([i.key for i in items]),
                     classes=np.array(dataset.seg_classes), confusion=conf)
            summary["mIoU"] = E.miou_by_group([i.key for i in items], conf, lambda _: "all")["all"]
    write_json(out / "summary.json", summary)
    log(f"frozen evaluator on {method}: " + ", ".join(f"{k} {summary[k]:.3f}" for k in ("mAP50", "mIoU") if k in summary))
    return summary
