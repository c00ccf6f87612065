"""Per-method YOLO datasets: a method's fused images + the dataset's boxes, in ultralytics' layout.

For one fusion method the builder writes, in a scratch folder that is *not* a DVC dependency
(ultralytics drops ``labels/*.cache`` files next to the labels)::

    <out>/images/{train,val,test}/<name>.png   -> links to data/fused/<dataset>/<method>/<name>.png
    <out>/labels/{train,val,test}/<name>.txt   YOLO rows "class cx cy w h" (normalised, clipped)
    <out>/data.yaml                            absolute paths, class names in the configured order

Images are symbolic links (hard links where symlinks are not allowed), never copies. Boxes come
from the dataset layer (:mod:`pipeline.datasets`), already mapped to the configured classes **by
name**; class ids in the label files are positions in that list. An image without boxes gets an
empty label file (a valid background image).

Splits come from the dataset layer: ``train`` trains, ``val`` picks the best epoch (a seeded
hold-out of ``train`` when the dataset has no ``val`` split), ``test`` is the final evaluation.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from pipeline.datasets import Box, PairDataset, Sample, image_header_size
from pipeline.errors import ConfigError, DataError
from pipeline.fingerprint import file_digest
from pipeline.imageio import write_text

SPLITS = ("train", "val", "test")
SOURCE_METHODS = {"ir": "ir", "vis": "vis"}  # baselines that can read the source images directly


@dataclass
class YoloData:
    """A built per-method YOLO dataset."""

    root: Path
    data_yaml: Path
    classes: tuple[str, ...]
    splits: dict[str, list[str]]
    images: dict[str, Path]            # name -> image the link points to
    rows: dict[str, np.ndarray]        # name -> (n, 5) label rows as written
    sizes: dict[str, tuple[int, int]]  # name -> (height, width)
    image_source: str
    val_source: str
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)

    def gt_boxes(self, name: str) -> tuple[list[list[float]], list[str]]:
        """Ground truth of one image in pixels, exactly as written to its label file."""
        height, width = self.sizes[name]
        rows = self.rows[name]
        boxes = [[(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
                 for _, cx, cy, w, h in rows.tolist()]
        return boxes, [self.classes[int(c)] for c in rows[:, 0]]


def yolo_rows(boxes: tuple[Box, ...], classes: tuple[str, ...], width: int, height: int) -> np.ndarray:
    """Boxes (pixels, class names) -> YOLO rows ``[class_id, cx, cy, w, h]`` normalised to [0, 1].

    Boxes are clipped to the image first (ultralytics drops a whole image whose labels leave
    [0, 1]); boxes with no area left are dropped and exact duplicates removed (ultralytics does
    the same), so the rows are what ultralytics will actually train and evaluate on."""
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for box in boxes:
        if box.cls not in index:
            raise DataError(f"box class {box.cls!r} is not in the class list {list(classes)}")
        x1, x2 = np.clip([box.x1, box.x2], 0, width) / width
        y1, y2 = np.clip([box.y1, box.y2], 0, height) / height
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            continue
        out.append([index[box.cls], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
    rows = np.round(np.asarray(out, dtype=np.float64).reshape(-1, 5), 6)
    if len(rows):
        _, first = np.unique(rows, axis=0, return_index=True)
        rows = rows[np.sort(first)]
    return rows


def format_rows(rows: np.ndarray) -> str:
    return "".join(f"{int(r[0])} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f}\n" for r in rows)


def method_images(dataset: PairDataset, fused_root: Path, method: str) -> tuple[dict[str, Path], str]:
    """``{name: image path}`` for every sample from ``<fused_root>/<dataset>/<method>/``.

    The ``ir`` and ``vis`` baselines fall back to the dataset's own source images when no such
    folder exists. A folder missing some images is an error naming the folder and the images."""
    from pipeline.fused import fused_folder, fused_images

    folder = fused_folder(fused_root, dataset.name, method)
    if not folder.is_dir() and method in SOURCE_METHODS:
        attr = SOURCE_METHODS[method]
        return {s.name: getattr(s, attr) for s in dataset.samples}, f"{dataset.root} ({attr} sources)"
    return fused_images(dataset.samples, folder), str(folder)


def assign_splits(dataset: PairDataset, val_fraction: float = 0.1, seed: int = 0) -> tuple[dict[str, list[str]], str]:
    """Train/val/test names from the dataset's split; ``val`` is a seeded hold-out of ``train``
    (``val_fraction`` of it, at least one image) when the dataset has none."""
    splits = {s: sorted(x.name for x in dataset.split(s)) for s in SPLITS}
    if not splits["test"] or not splits["train"]:
        found = sorted(dataset.splits)
        raise ConfigError(f"dataset {dataset.name!r} needs 'train' and 'test' splits for detection but has "
                          f"{found}; set datasets.{dataset.name}.split (meta lists or "
                          "{rule: random, ratios: [8, 1, 1], seed: 0}) in params.yaml", dataset.root)
    if splits["val"]:
        return splits, "dataset split 'val'"
    train = list(splits["train"])
    if len(train) < 2:
        raise ConfigError(f"dataset {dataset.name!r} has no 'val' split and only {len(train)} training "
                          "image(s): cannot hold out a validation set", dataset.root)
    n_val = min(len(train) - 1, max(1, round(val_fraction * len(train))))
    random.Random(seed).shuffle(train)
    splits["val"], splits["train"] = sorted(train[:n_val]), sorted(train[n_val:])
    return splits, f"seeded hold-out of train (fraction {val_fraction}, seed {seed})"


def link(src: Path, dst: Path) -> None:
    """Symlink ``dst`` -> ``src`` (absolute); hard link where symlinks are not possible."""
    src = Path(src).resolve()
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        os.symlink(src, dst)
    except OSError:
        os.link(src, dst)


def _check_size(sample: Sample, image: Path) -> tuple[int, int]:
    size = image_header_size(image)
    source = image_header_size(sample.vis)
    if size != source:
        raise DataError(f"image is {size[1]}x{size[0]} but the source pair {sample.name!r} is "
                        f"{source[1]}x{source[0]} (fused images must keep the source size)", image)
    return size


def build_yolo_data(dataset: PairDataset, images: dict[str, Path], out: Path, image_source: str,
                    val_fraction: float = 0.1, seed: int = 0) -> YoloData:
    """Write the YOLO folder for one method (replacing an old one) and return its description."""
    if not dataset.box_classes:
        raise ConfigError(f"dataset {dataset.name!r} has no box labels (needed for detection)", dataset.root)
    classes = tuple(dataset.box_classes)
    splits, val_source = assign_splits(dataset, val_fraction, seed)
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    rows, sizes = {}, {}
    digest = hashlib.md5(repr((classes, splits)).encode())
    for split, names in splits.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            sample, image = dataset.by_name(name), images[name]
            sizes[name] = _check_size(sample, image)
            rows[name] = yolo_rows(sample.boxes or (), classes, sizes[name][1], sizes[name][0])
            link(image, out / "images" / split / f"{name}{image.suffix.lower()}")
            text = format_rows(rows[name])
            (out / "labels" / split / f"{name}.txt").write_text(text)
            digest.update(f"{split}/{name}:{file_digest(image)}:{text}".encode())  # bytes, not names
    spec = {"path": str(out), "train": "images/train", "val": "images/val", "test": "images/test",
            "nc": len(classes), "names": dict(enumerate(classes))}
    data_yaml = write_text(out / "data.yaml", f"# YOLO dataset of {dataset.name}, images from "
                           f"{image_source}\n" + yaml.safe_dump(spec, sort_keys=False))
    return YoloData(out, data_yaml, classes, splits, dict(images), rows, sizes, image_source,
                    val_source, digest.hexdigest())
