"""Paired bootstrap confidence intervals of a difference between two systems over test images.

The test set of ``n`` images is resampled with replacement ``B`` times (Efron & Tibshirani, *An
Introduction to the Bootstrap*, 1993, ch. 13 and 16). Resample ``b`` is stored as a row of
multiplicities ``W[b, i]`` = how often image ``i`` was drawn (``sum_i W[b, i] = n``), so a
statistic of a resample is computed from weighted per-image quantities without copying data:

* a per-image mean:               ``T(W) = sum_i W_i x_i / sum_i W_i``;
* mIoU from confusion matrices:   ``M(W) = sum_i W_i M_i``, ``IoU_c = M_cc / (sum_r M_rc + sum_k M_ck - M_cc)``,
  ``mIoU = mean_c IoU_c`` over classes with a non-empty union (:mod:`pipeline.segmentation.metrics`);
* mAP@0.5: image ``i``'s matched detections counted ``W_i`` times (:mod:`pipeline.detection.ap`,
  whose matching is per image, so a resample needs no re-matching).

The comparison is **paired**: the same rows ``W`` are applied to both systems, so the spread of
``T_a(W) - T_b(W)`` reflects only how the difference varies over images. When a system has several
training seeds, ``T`` is the mean over seeds of the per-seed statistic on the same resample. The
interval is the percentile interval ``[q_(1-c)/2, q_(1+c)/2]`` of the ``B`` resampled differences
(resamples where a statistic is undefined are dropped and counted).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]   # weights (B, n) -> values (B,)


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of ``T_a - T_b``: full-sample ``estimate``, bounds, and its bookkeeping."""

    estimate: float
    low: float
    high: float
    n: int
    n_boot: int
    valid: int
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def as_list(self) -> list[float]:
        return [self.low, self.high]


def resample_weights(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` int multiplicities of ``n_boot`` resamples with replacement of ``n`` items.

    Deterministic for a seed (NumPy ``default_rng(seed)``)."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"bootstrap needs n >= 1 items and n_boot >= 1 resamples, got {n}, {n_boot}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n)


def full_weights(n: int) -> np.ndarray:
    """The weights of the original sample (every image once), shape ``(1, n)``."""
    return np.ones((1, n), dtype=np.int64)


def mean_statistic(values: Sequence[float] | np.ndarray) -> Statistic:
    """``T(W) = sum_i W_i x_i / sum_i W_i`` for per-image values ``x`` (``n`` or seeds × ``n``,
    seeds averaged)."""
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))

    def stat(weights: np.ndarray) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        return (w @ x.T / w.sum(axis=1, keepdims=True)).mean(axis=1)

    return stat


def miou_statistic(confusions: np.ndarray, skip_classes: Sequence[int] = ()) -> Statistic:
    """mIoU of the weighted sum of per-image confusion matrices ``(seeds, n, C, C)`` (or
    ``(n, C, C)``), averaged over seeds; IoU and its mean (absent classes skipped) from
    :mod:`pipeline.segmentation.metrics`; ``skip_classes`` (e.g. ``[0]``, background) left out."""
    from pipeline.segmentation.metrics import iou_per_class, mean_iou

    conf = np.asarray(confusions, dtype=np.float64)
    conf = conf[None] if conf.ndim == 3 else conf

    def stat(weights: np.ndarray) -> np.ndarray:
        total = np.einsum("bn,snij->bsij", np.asarray(weights, dtype=np.float64), conf)
        values = [[mean_iou(iou_per_class(m), skip_classes) for m in per_seed] for per_seed in total]
        return np.asarray(values, dtype=np.float64).mean(axis=1)

    return stat


def map50_statistic(tables: Sequence) -> Statistic:
    """mAP@0.5 of weighted images from matched detections (one
    :class:`pipeline.detection.ap.MatchTable` per seed, matched at IoU 0.5), seeds averaged.

    Equal to ``table.evaluate(np.repeat(arange(n), W)).map50``: a resample repeats whole images,
    and repeated copies of a detection have the same score, so they sit next to each other in the
    score order. The order of all detections is therefore computed once (``np.argsort(-score)``
    as in ``MatchTable.evaluate``) and split by class; a resample only repeats each detection
    ``W_image`` times (``np.repeat``) and accumulates TP/FP — no sorting or re-matching per
    resample. AP per class: :func:`pipeline.detection.ap.average_precision` over the classes with
    ground truth in the resample; mAP 0 when there is none (ultralytics' convention).
    """
    from pipeline.detection.ap import average_precision

    prepared = []
    for table in tables:
        n, n_cls = len(table), len(table.class_names)
        image = np.repeat(np.arange(n), [len(s) for s in table.scores])
        conf = np.concatenate([np.zeros(0), *table.scores])
        tp = np.concatenate([np.zeros((0, 1), bool), *[t[:, :1] for t in table.tp]])[:, 0]
        cls = np.concatenate([np.zeros(0, np.int64), *table.pred_cls])
        order = np.argsort(-conf)
        image, tp, cls = image[order], tp[order], cls[order]
        per_class = [(image[cls == c], tp[cls == c]) for c in range(n_cls)]
        gt_counts = np.zeros((n, n_cls), np.int64)
        for i, labels in enumerate(table.gt_cls):
            np.add.at(gt_counts[i], labels, 1)
        prepared.append((per_class, gt_counts))

    def one(row: np.ndarray, per_class, gt_counts) -> float:
        n_gt = row @ gt_counts
        aps = []
        for c in np.flatnonzero(n_gt > 0):
            image, tp = per_class[c]
            hits = np.repeat(tp, row[image])
            if hits.size == 0:
                aps.append(0.0)
                continue
            tpc = np.cumsum(hits)
            fpc = np.cumsum(~hits)
            aps.append(average_precision(tpc / n_gt[c], tpc / (tpc + fpc)))
        return float(np.mean(aps)) if aps else 0.0

    def stat(weights: np.ndarray) -> np.ndarray:
        rows = np.asarray(weights, dtype=np.int64)
        return np.array([np.mean([one(row, *p) for p in prepared]) for row in rows])

    return stat


def percentile_interval(differences: np.ndarray, confidence: float = 0.95) -> tuple[float, float, int]:
    """``(low, high, valid)``: the central ``confidence`` percentile interval of the finite values."""
    values = np.asarray(differences, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan"), 0
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high), int(values.size)


def difference_interval(values_a: np.ndarray, values_b: np.ndarray, full_a: float, full_b: float,
                        confidence: float = 0.95) -> Interval:
    """Interval of ``a - b`` from the two systems' statistics on the **same** resamples."""
    diff = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, dtype=np.float64)
    low, high, valid = percentile_interval(diff, confidence)
    return Interval(float(full_a - full_b), low, high, -1, len(diff), valid, confidence)


def paired_bootstrap(stat_a: Statistic, stat_b: Statistic, n: int, n_boot: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> Interval:
    """Paired bootstrap interval of ``T_a - T_b`` over ``n`` images (see module docstring)."""
    weights = resample_weights(n, n_boot, seed)
    ones = full_weights(n)
    interval = difference_interval(stat_a(weights), stat_b(weights), float(stat_a(ones)[0]),
                                   float(stat_b(ones)[0]), confidence)
    return Interval(interval.estimate, interval.low, interval.high, n, n_boot, interval.valid, confidence)

