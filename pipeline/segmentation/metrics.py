"""Semantic-segmentation scores from a confusion matrix: per-class IoU, mIoU, pixel accuracy.

All scores are computed from one ``C×C`` confusion matrix ``M`` (rows = ground-truth class,
columns = predicted class, ``M[g, p]`` = number of pixels of class ``g`` predicted as ``p``)
accumulated over **all** test pixels of **all** test images (the PASCAL VOC / Cityscapes
convention), never as a mean of per-image scores. Pixels whose label is the ignore id
(255 for MSRS) are not counted anywhere: they add nothing to ``M``.

Absent classes. A class ``c`` with ``TP + FP + FN = 0`` (no ground-truth pixel of ``c`` in the
test set and no pixel predicted as ``c``) has an undefined IoU (0/0). It is reported as ``NaN``
(``null`` in JSON), listed in ``absent_classes`` and **excluded** from the means, whose
denominators are reported as ``n_classes_scored``. A class with no ground truth that *is*
predicted somewhere has ``TP = 0, FP > 0`` and scores IoU 0 (a real error, not an absence).
This differs from segmentation-models-pytorch's default (``zero_division=1.0`` scores absent
classes as 1.0, see ../shared/spec/environment.md pitfall 8), and from averaging with 0.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

IGNORE_INDEX = 255


def confusion_matrix(pred: np.ndarray, target: np.ndarray, n_classes: int,
                     ignore_index: int | None = IGNORE_INDEX) -> np.ndarray:
    """``C×C`` int64 confusion matrix of one image (or any equal-shaped arrays of class ids).

    ``M[g, p] = #{pixels i : target_i = g, pred_i = p, target_i != ignore_index}``.
    Predictions must lie in ``[0, C)``; a target id outside ``[0, C)`` other than ``ignore_index``
    raises ``ValueError`` (labels are validated when read; this is the last line of defence).
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    keep = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    t = target[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= n_classes):
        raise ValueError(f"target ids {sorted(set(np.unique(t)) - set(range(n_classes)))} outside 0..{n_classes - 1}")
    if p.size and (p.min() < 0 or p.max() >= n_classes):
        raise ValueError(f"predicted ids outside 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """Jaccard index per class, ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``
    (Everingham et al., "The PASCAL Visual Object Classes Challenge", IJCV 2010, eq. for
    segmentation accuracy). ``TP_c = M[c, c]``, ``FP_c = Σ_g M[g, c] − TP_c``,
    ``FN_c = Σ_p M[c, p] − TP_c``. ``NaN`` where the denominator is 0 (class absent)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    denom = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1), np.nan)


def mean_iou(iou: np.ndarray, exclude: Sequence[int] = ()) -> float:
    """Mean IoU over the classes whose IoU is defined (``NaN`` entries skipped), optionally
    without the classes in ``exclude`` (e.g. the background id 0). ``NaN`` if none is defined.
    (Long et al., "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015: mean IU.)"""
    keep = np.ones(len(iou), bool)
    keep[list(exclude)] = False
    values = np.asarray(iou, dtype=np.float64)[keep]
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def pixel_accuracy(confusion: np.ndarray) -> float:
    """``Σ_c M[c, c] / Σ M`` over non-ignored pixels (Long et al. 2015, pixel accuracy);
    ``NaN`` for an empty matrix."""
    total = float(np.asarray(confusion).sum())
    return float(np.trace(confusion) / total) if total > 0 else float("nan")


def absent_classes(confusion: np.ndarray) -> list[int]:
    """Ids of the classes with no ground-truth pixel and no predicted pixel."""
    confusion = np.asarray(confusion)
    return [c for c in range(len(confusion)) if confusion[c, :].sum() == 0 and confusion[:, c].sum() == 0]


def summarize(confusion: np.ndarray, class_names: Sequence[str], background: int | None = 0) -> dict:
    """All scores of one confusion matrix as a JSON-ready dict (fractions in [0, 1]; ``NaN`` =
    undefined, written as ``null``)::

        {"mIoU", "mIoU_no_bg", "pixel_accuracy", "IoU": {name: value}, "absent_classes": [names],
         "n_classes_scored", "n_classes_scored_no_bg", "n_pixels", "gt_pixels": {name: count}}
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    if confusion.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion is {confusion.shape} but there are {len(class_names)} class names")
    iou = iou_per_class(confusion)
    no_bg = () if background is None else (background,)
    defined = ~np.isnan(iou)
    return {
        "mIoU": mean_iou(iou),
        "mIoU_no_bg": mean_iou(iou, no_bg),
        "pixel_accuracy": pixel_accuracy(confusion),
        "IoU": {name: float(v) for name, v in zip(class_names, iou)},
        "absent_classes": [class_names[c] for c in absent_classes(confusion)],
        "n_classes_scored": int(defined.sum()),
        "n_classes_scored_no_bg": int(sum(defined[c] for c in range(len(iou)) if c not in no_bg)),
        "n_pixels": int(confusion.sum()),
        "gt_pixels": {name: int(n) for name, n in zip(class_names, confusion.sum(1))},
    }
