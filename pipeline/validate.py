"""Check a dataset before using it: ``python -m pipeline validate --dataset KIND --root DIR``.

The dataset is loaded with ``strict=False`` (structural problems such as a missing partner image,
an unknown class or a split list naming an absent image are collected, not raised); then every pair
is checked on a thread pool:

* both images readable; ``deep`` (default) decodes every pixel, ``quick`` reads headers only;
* infrared and visible sizes equal (pairs must be registered);
* boxes inside the image with positive size (:func:`pipeline.datasets.check_boxes`);
* segmentation labels: size equal to the image's, ids within the class list or the ignore id
  (``quick`` checks the size only).

:func:`validate` returns a :class:`ValidationReport`; its :meth:`~ValidationReport.summary` lists
pairs per split, image sizes and storage, boxes per class and pixels per class. It is clean when
``report.problems`` is empty.
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.datasets import (PairDataset, Sample, check_boxes, check_label_size, check_pair_sizes,
                               image_header, load_dataset, read_segmentation)
from pipeline.errors import DataError
from pipeline.imageio import read_image

_LABELS = 256


@dataclass
class _PairCheck:
    size: tuple[int, int] | None = None
    storage: tuple[str, str] | None = None
    boxes: Counter = field(default_factory=Counter)
    pixels: np.ndarray | None = None
    problems: list[DataError] = field(default_factory=list)


@dataclass
class ValidationReport:
    """What :func:`validate` found: the dataset, its problems and label statistics."""

    dataset: PairDataset
    deep: bool
    problems: list[DataError]
    sizes: Counter
    storage: Counter
    boxes: Counter
    images_without_boxes: int
    pixels: np.ndarray | None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> list[str]:
        """Human-readable summary lines."""
        ds = self.dataset
        lines = [f"dataset {ds.name} (kind {ds.kind}) at {ds.root}: {len(ds.samples)} pairs "
                 f"({'deep: every image decoded' if self.deep else 'quick: headers only'})",
                 f"  pairs per split ({ds.split_source}): "
                 + ", ".join(f"{k} {len(v)}" for k, v in sorted(ds.splits.items()))]
        lines.append("  image sizes (HxW): " + _sizes(self.sizes))
        slots = "functional / MRI" if ds.kind == "medical" else "infrared / visible"
        lines.append(f"  storage ({slots}): " + _join(f"{a} / {b}" for a, b in self.storage.elements()))
        if ds.box_classes:
            counts = ", ".join(f"{c} {self.boxes.get(c, 0)}" for c in ds.box_classes)
            lines.append(f"  boxes per class: {counts} (total {sum(self.boxes.values())}; "
                         f"{self.images_without_boxes} images without boxes)")
            if ds.skipped_boxes:
                lines.append(f"  skipped boxes of unknown classes: {dict(ds.skipped_boxes)}")
        if ds.seg_classes and self.pixels is not None:
            total = max(1, int(self.pixels.sum()))
            parts = [f"{i} {name} {int(self.pixels[i])} ({100 * self.pixels[i] / total:.2f}%)"
                     for i, name in enumerate(ds.seg_classes)]
            if self.pixels[ds.ignore_index]:
                parts.append(f"{ds.ignore_index} ignore {int(self.pixels[ds.ignore_index])}")
            lines.append("  pixels per class: " + ", ".join(parts))
        elif ds.seg_classes:
            lines.append("  pixels per class: not counted (quick mode)")
        return lines


def _sizes(sizes: Counter, shown: int = 6) -> str:
    if len(sizes) <= shown:
        return _join(f"{h}x{w}" for (h, w) in sizes.elements())
    heights, widths = [h for h, _ in sizes], [w for _, w in sizes]
    return (f"{len(sizes)} distinct sizes, heights {min(heights)}-{max(heights)}, "
            f"widths {min(widths)}-{max(widths)}")


def _join(items) -> str:
    counts = Counter(items)
    return ", ".join(f"{k} ({n})" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _storage(image_or_mode) -> str:
    if isinstance(image_or_mode, str):     # PIL mode from the header
        return {"L": "grey", "P": "palette", "RGB": "3ch", "RGBA": "4ch"}.get(image_or_mode, image_or_mode)
    return "grey" if image_or_mode.ndim == 2 else "colour"


def check_sample(dataset: PairDataset, sample: Sample, deep: bool = True) -> _PairCheck:
    """Check one pair: readable images of equal size, boxes, segmentation label."""
    out = _PairCheck()
    shapes = []
    for path in (sample.ir, sample.vis):
        try:
            if deep:
                image = read_image(path)
                shapes.append(image.shape)
                kind = _storage(image)
            else:
                height, width, mode = image_header(path)
                shapes.append((height, width))
                kind = _storage(mode)
            out.storage = (out.storage or ()) + (kind,)
        except DataError as err:
            out.problems.append(err)
    if len(shapes) != 2:
        return out
    try:
        check_pair_sizes(sample, shapes[0], shapes[1])
    except DataError as err:
        out.problems.append(err)
        return out
    height, width = shapes[0][:2]
    out.size = (height, width)
    if sample.boxes is not None:
        out.boxes.update(box.cls for box in sample.boxes)
        out.problems += check_boxes(sample, width, height)
    if dataset.seg_classes and sample.seg_label is not None:
        try:
            if deep:
                label = read_segmentation(sample, len(dataset.seg_classes), (height, width),
                                          dataset.ignore_index)
                out.pixels = np.bincount(label.ravel(), minlength=_LABELS)
            else:
                check_label_size(sample, image_header(sample.seg_label), (height, width))
        except DataError as err:
            out.problems.append(err)
    return out


def validate(kind: str, root: str | Path, deep: bool = True, workers: int | None = None,
             **options) -> ValidationReport:
    """Load ``root`` as dataset ``kind`` (non-strict) and check every pair; see the module doc."""
    dataset = load_dataset(kind, root, strict=False, **options)
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        checks = list(pool.map(lambda s: check_sample(dataset, s, deep), dataset.samples))
    problems = list(dataset.problems)
    sizes, storage, boxes = Counter(), Counter(), Counter()
    pixels = np.zeros(_LABELS, np.int64) if deep and dataset.seg_classes else None
    without = 0
    for sample, check in zip(dataset.samples, checks):
        problems += check.problems
        if check.size:
            sizes[check.size] += 1
        if check.storage and len(check.storage) == 2:
            storage[check.storage] += 1
        boxes.update(check.boxes)
        without += sample.boxes is not None and not sample.boxes
        if pixels is not None and check.pixels is not None:
            pixels += check.pixels
    return ValidationReport(dataset, deep, problems, sizes, storage, boxes, without, pixels)
