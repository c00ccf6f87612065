"""Apply an already trained detector / segmenter to any set of images, with the stages' own code.

* :func:`detection_records` -- builds a YOLO test folder of links (``images/test/<key>.png``) and
  label files from the visible-frame boxes, runs :func:`pipeline.detection.yolo.evaluate` (the
  detection stage's validator: same letterbox, confidence, NMS, max detections) once for all the
  images, and returns per-image records in the format of ``predictions.json``, which
  :mod:`pipeline.detection.ap` scores exactly as ultralytics does (any subset: one level).
* :func:`segmentation_confusions` -- :func:`pipeline.segmentation.evaluate.evaluate_items` (full
  resolution, reflect padding) -> per-image confusion matrices.

An *item* is ``(key, image file, sample)``: ``key`` names the image in the results (e.g.
``misregistration/3/00012``), the sample gives the labels (always those of the visible frame).
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import yaml

from pipeline.datasets import Sample, image_header_size
from pipeline.detection.yolo_data import format_rows, link, yolo_rows
from pipeline.imageio import write_text


@contextlib.contextmanager
def inference_threads(n: int | None):
    """Run torch (and ultralytics, which resets torch to ``$OMP_NUM_THREADS`` threads when a
    validation starts) on ``n`` CPU threads inside the block; ``None``: unchanged. One thread keeps
    inference CPU time low on a shared machine (OpenMP spin-waits burn CPU when cores are busy:
    DeepLabV3+ at 256x192 took 0.08 CPU s per image on one thread, 0.47 on two at load 10)."""
    import torch

    if not n:
        yield
        return
    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(int(n))
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env


class Item(NamedTuple):
    key: str
    image: Path
    sample: Sample


def _file_key(key: str) -> str:
    return key.replace("/", "__")


def write_test_folder(items: Sequence[Item], classes: Sequence[str], out: Path) -> tuple[Path, dict]:
    """YOLO folder with every item in the ``test`` split; returns ``(data.yaml, {key: gt})``."""
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "images" / "test").mkdir(parents=True)
    (out / "labels" / "test").mkdir(parents=True)
    truth = {}
    for item in items:
        height, width = image_header_size(item.image)
        rows = yolo_rows(item.sample.boxes or (), tuple(classes), width, height)
        name = _file_key(item.key)
        link(item.image, out / "images" / "test" / f"{name}{Path(item.image).suffix.lower()}")
        (out / "labels" / "test" / f"{name}.txt").write_text(format_rows(rows))
        boxes = [[round((cx - w / 2) * width, 4), round((cy - h / 2) * height, 4), round((cx + w / 2) * width, 4),
                  round((cy + h / 2) * height, 4)] for _, cx, cy, w, h in rows.tolist()]
        truth[item.key] = {"boxes": boxes, "classes": [classes[int(c)] for c in rows[:, 0]],
                           "width": width, "height": height}
    spec = {"path": str(out), "train": "images/test", "val": "images/test", "test": "images/test",
            "nc": len(classes), "names": dict(enumerate(classes))}
    return write_text(out / "data.yaml", yaml.safe_dump(spec, sort_keys=False)), truth


def detection_records(weights: Path, items: Sequence[Item], classes: Sequence[str], settings: Mapping,
                      device: str, scratch: Path) -> list[dict]:
    """Per-item records ``{"name": key, "gt", "pred"}`` of the detector ``weights`` on ``items``."""
    from pipeline.detection import yolo

    data_yaml, truth = write_test_folder(items, classes, Path(scratch) / "yolo")
    _, detections, names = yolo.evaluate(Path(weights), data_yaml, dict(settings), device, Path(scratch) / "val")
    if list(names) != list(classes):
        raise RuntimeError(f"detector classes {names} differ from the dataset classes {list(classes)}")
    records = []
    for item in items:
        det = detections.get(_file_key(item.key), {"boxes": [], "scores": [], "class_ids": []})
        gt = truth[item.key]
        records.append({"name": item.key, "width": gt["width"], "height": gt["height"],
                        "gt": {"boxes": gt["boxes"], "classes": gt["classes"]},
                        "pred": {"boxes": det["boxes"], "scores": det["scores"],
                                 "classes": [classes[c] for c in det["class_ids"]]}})
    return records


def segmentation_confusions(model, items: Sequence[Item], n_classes: int, cfg: Mapping, device: str,
                            ignore_index: int = 255) -> np.ndarray:
    """``N×C×C`` per-item confusion matrices of ``model`` (labels of the items' samples)."""
    from pipeline.segmentation.data import SegItem
    from pipeline.segmentation.evaluate import evaluate_items

    seg_items = [SegItem(item.key, "test", Path(item.image), item.sample.seg_label) for item in items]
    return evaluate_items(model, seg_items, n_classes, cfg, device, ignore_index=ignore_index, progress=False)


def map50_by_group(records: Sequence[dict], group_of) -> dict:
    """mAP@0.5 of the records of each group (``group_of(record name) -> group``)."""
    from pipeline.detection.ap import evaluate

    groups: dict = {}
    for record in records:
        groups.setdefault(group_of(record["name"]), []).append(record)
    return {g: evaluate(rs, (0.5,)).map50 for g, rs in groups.items()}


def miou_by_group(keys: Sequence[str], confusions: np.ndarray, group_of, skip_background: bool = False) -> dict:
    """mIoU of the summed confusion of each group's items."""
    from pipeline.segmentation.metrics import iou_per_class, mean_iou

    out: dict = {}
    for key, conf in zip(keys, confusions):
        group = group_of(key)
        out[group] = out.get(group, 0) + conf
    return {g: float(mean_iou(iou_per_class(m), [0] if skip_background else [])) for g, m in out.items()}
