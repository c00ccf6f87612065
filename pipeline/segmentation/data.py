"""Segmentation inputs: a method's fused images paired with the dataset's class-id labels.

* :func:`fused_items` maps every sample of the dataset to ``<fused_root>/<dataset>/<method>/<name>.*``
  (one folder per method holding every split, ``contracts.md``) and fails with the folder and the
  missing names when images are missing; :func:`validate_items` reads every label once before
  training, so a bad label (id outside the class list and not the ignore id, size different from
  its image) stops the stage with the file named, not hours later at evaluation.
* Images enter the network as 3 channels: grey images (``ir``, grey fusions) are replicated,
  colour fusions stay RGB; scaled to [0, 1] and normalised with ``mean``/``std``.
* Training augmentation (:class:`TrainSet`): random scale in ``[scale_min, scale_max]``
  (bilinear image, nearest label), padding to at least the crop (image 0, label = ignore), a random
  ``crop`` (sides multiples of 16) and a horizontal flip with probability ``hflip``. Random numbers
  come from ``numpy.random.default_rng([seed, epoch, index])``, so a run is identical for a seed
  whatever the number of loader workers and after a resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from pipeline.datasets import (IGNORE_INDEX, PairDataset, Sample, check_label_size, image_header_size,
                               read_segmentation)
from pipeline.errors import DataError
from pipeline.imageio import read_image


@dataclass(frozen=True)
class SegItem:
    """One image to segment: its name, split, image file and label file."""

    name: str
    split: str
    image: Path
    label: Path


def fused_items(dataset: PairDataset, folder: str | Path, splits: Sequence[str] = ("train", "test")) -> list[SegItem]:
    """Items of ``splits`` with their fused image in ``folder`` (found by
    :func:`pipeline.fused.fused_images`, the one rule of every stage)."""
    from pipeline.fused import fused_images

    samples = [s for s in dataset.samples if s.split in splits]
    found = fused_images(samples, folder)
    return [SegItem(s.name, s.split, found[s.name], _label_of(s)) for s in samples]


def source_items(dataset: PairDataset, modality: str, splits: Sequence[str] = ("train", "test")) -> list[SegItem]:
    """Items using the dataset's own ``ir`` or ``vis`` images (benchmarks, tests)."""
    return [SegItem(s.name, s.split, getattr(s, modality), _label_of(s))
            for s in dataset.samples if s.split in splits]


def _label_of(sample: Sample) -> Path:
    if sample.seg_label is None:
        raise DataError("no segmentation label for this image", sample.vis)
    return sample.seg_label


def _as_sample(item: SegItem) -> Sample:
    return Sample(item.name, item.split, item.image, item.image, item.label)


def read_label(item: SegItem, n_classes: int, image_shape: tuple[int, int],
               ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The item's label, checked by :func:`pipeline.datasets.read_segmentation` (ids in the class
    list or ignore) and against the size of the image it is paired with (both files named)."""
    sample = _as_sample(item)
    label = read_segmentation(sample, n_classes, None, ignore_index)
    check_label_size(sample, label.shape, image_shape, image=item.image)
    return label


def read_item(item: SegItem, n_classes: int, ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """``(image H×W×3 uint8 RGB, label H×W uint8)``; grey images are replicated to 3 channels."""
    image = read_image(item.image, "rgb")
    return image, read_label(item, n_classes, image.shape[:2], ignore_index)


def read_items(items: Sequence[SegItem], n_classes: int, ignore_index: int = IGNORE_INDEX) -> list:
    """Every item decoded once (:func:`read_item`): the seeds of a method train and test on these
    arrays instead of decoding every image again in every epoch (a few MB for the demo)."""
    return [read_item(item, n_classes, ignore_index) for item in items]


def validate_items(items: Sequence[SegItem], n_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
    """Read every label once (ids, size against the image header); raise the first problem."""
    for item in items:
        read_label(item, n_classes, image_header_size(item.image), ignore_index)


def to_tensor(image: np.ndarray, mean: Sequence[float], std: Sequence[float]):
    """``H×W×3 uint8`` → normalised ``3×H×W float32`` tensor: ``(x / 255 − mean) / std``."""
    import torch

    x = image.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def augment(image: np.ndarray, label: np.ndarray, crop: Sequence[int], scale: Sequence[float],
            hflip: float, rng: np.random.Generator, ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Random scale → pad to the crop (image 0, label ignore) → random crop → random h-flip."""
    lo, hi = scale
    factor = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    if factor != 1.0:
        h, w = label.shape
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    ch, cw = crop
    h, w = label.shape
    if h < ch or w < cw:
        pad = ((0, max(0, ch - h)), (0, max(0, cw - w)))
        image = np.pad(image, pad + ((0, 0),), constant_values=0)
        label = np.pad(label, pad, constant_values=ignore_index)
        h, w = label.shape
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    image, label = image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]
    if rng.random() < hflip:
        image, label = image[:, ::-1], label[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


class TrainSet:
    """Map-style torch dataset of augmented crops; call :meth:`set_epoch` before each epoch."""

    def __init__(self, items: Sequence[SegItem], n_classes: int, train_cfg: dict, seed: int,
                 ignore_index: int = IGNORE_INDEX, arrays: Sequence | None = None):
        self.items = list(items)
        self.arrays = list(arrays) if arrays is not None else None   # decoded (image, label) per item
        self.n_classes = n_classes
        self.cfg = train_cfg
        self.seed = int(seed)
        self.ignore_index = ignore_index
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        import torch

        image, label = (self.arrays[index] if self.arrays is not None
                        else read_item(self.items[index], self.n_classes, self.ignore_index))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, label = augment(image, label, self.cfg["crop"], self.cfg["scale"], float(self.cfg["hflip"]),
                               rng, self.ignore_index)
        return to_tensor(image, self.cfg["mean"], self.cfg["std"]), torch.from_numpy(label.astype(np.int64))


def pad_to_multiple(x, multiple: int):
    """Pad a ``N×C×H×W`` tensor at the bottom/right by reflection so H and W are multiples of
    ``multiple`` (replicate when the image is too small to reflect); returns ``(x, (H, W))``."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)
