"""Two-level paired bootstrap intervals of a difference between two systems: seeds, then test images.

A system (a fusion method's downstream detector / segmenter) is trained with ``S`` seeds and tested on
the same ``n`` test images; ``T_s(W)`` is seed ``s``'s score on an image sample ``W``. The system's
score is the mean over its seeds ``T = (1/S) sum_s T_s``. Its uncertainty has two sources: which
test images were drawn, and which training runs (seeds) happened. Resample ``b`` of the **two-level
bootstrap** (a hierarchical bootstrap, Saravanan, Berman & Sober 2020, *Neurons, Behavior, Data
analysis, and Theory*; Davison & Hinkley 1997, section 3.8; Efron & Tibshirani, *An Introduction
to the Bootstrap*, 1993, ch. 13 and 16) draws

1. seed multiplicities ``V[b, s]`` (``S`` draws with replacement from the ``S`` seeds,
   ``sum_s V[b, s] = S``), then
2. image multiplicities ``W[b, i]`` (``n`` draws with replacement from the ``n`` images),

and the resampled score is ``T*(b) = (1/S) sum_s V[b, s] T_s(W[b])``. Seeds and images are
*crossed* (every seed is tested on every image), so one image draw serves all seeds of a resample.
For a per-image mean with additive seed and image effects ``x[s, i] = a_s + c_i`` this gives
``Var* T* = var(a)/S + var(c)/n`` (population variances): the seed term is what an image-only
bootstrap leaves out (it overstated certainty when seeds disagree).

The comparison is **paired**: method and baseline get the same ``W[b]`` (same test images) and,
when they have the same number of seeds, the same ``V[b]`` (same seed positions; seed ``k`` of
both was trained with the same random seed, so data order and initialisation are shared), so the
spread of ``T*_a - T*_b`` reflects only how the *difference* varies. Systems with different seed
counts get independent seed draws (``V`` is keyed by the count). The interval is the percentile
interval ``[q_(1-c)/2, q_(1+c)/2]`` of the ``B`` resampled differences (resamples where a
statistic is undefined are dropped and counted).

Resamples are stored as multiplicities, so a statistic is computed from weighted per-image
quantities without copying data:

* a per-image mean:               ``T_s(W) = sum_i W_i x_si / sum_i W_i``;
* mIoU from confusion matrices:   ``M(W) = sum_i W_i M_si``, ``IoU_c = M_cc / (sum_r M_rc + sum_k M_ck - M_cc)``,
  ``mIoU = mean_c IoU_c`` over classes with a non-empty union (:mod:`pipeline.segmentation.metrics`);
* mAP@0.5: image ``i``'s matched detections counted ``W_i`` times (:mod:`pipeline.detection.ap`,
  whose matching is per image, so a resample needs no re-matching). mAP is not a mean over
  images, so it is recomputed from the resampled images' detections for every resample and seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


class Statistic:
    """A system's per-seed statistic: ``per_seed(W)`` maps image weights ``(B, n)`` to ``(B, S)``;
    calling it gives the seed mean ``(B,)`` (every seed once)."""

    def __init__(self, per_seed: Callable[[np.ndarray], np.ndarray], n_seeds: int):
        self.per_seed, self.n_seeds = per_seed, int(n_seeds)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        return np.asarray(self.per_seed(weights), dtype=np.float64).mean(axis=1)

    def resampled(self, weights: np.ndarray, seed_weights: np.ndarray) -> np.ndarray:
        """``(1/S) sum_s V[b, s] T_s(W[b])`` for image weights ``W`` and seed weights ``V`` (B, S)."""
        values = np.asarray(self.per_seed(weights), dtype=np.float64)
        return (values * seed_weights).sum(axis=1) / self.n_seeds


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
    seeds: tuple[int, int] = (1, 1)       # seeds of system a and system b

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


def seed_weights(n_seeds: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_seeds)`` multiplicities of the seed level; a separate stream from the images'
    (``default_rng([seed, 1, n_seeds])``), the same for every system with ``n_seeds`` seeds (paired).
    One seed: every resample keeps it (the seed term is then absent: say so, do not claim it)."""
    if n_seeds == 1:
        return np.ones((n_boot, 1), dtype=np.int64)
    rng = np.random.default_rng([seed, 1, n_seeds])
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds)) + n_seeds * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n_seeds).reshape(n_boot, n_seeds)


def full_weights(n: int) -> np.ndarray:
    """The weights of the original sample (every image once), shape ``(1, n)``."""
    return np.ones((1, n), dtype=np.int64)


def mean_statistic(values: Sequence[float] | np.ndarray) -> Statistic:
    """``T_s(W) = sum_i W_i x_si / sum_i W_i`` for per-image values ``x`` (``n`` or seeds × ``n``)."""
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))

    def stat(weights: np.ndarray) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        return w @ x.T / w.sum(axis=1, keepdims=True)

    return Statistic(stat, len(x))


def miou_statistic(confusions: np.ndarray, skip_classes: Sequence[int] = ()) -> Statistic:
    """Per-seed mIoU of the weighted sum of per-image confusion matrices ``(seeds, n, C, C)`` (or
    ``(n, C, C)``); IoU and its mean (absent classes skipped) from
    :mod:`pipeline.segmentation.metrics`; ``skip_classes`` (e.g. ``[0]``, background) left out."""
    from pipeline.segmentation.metrics import iou_per_class, mean_iou

    conf = np.asarray(confusions, dtype=np.float64)
    conf = conf[None] if conf.ndim == 3 else conf

    def stat(weights: np.ndarray) -> np.ndarray:
        total = np.einsum("bn,snij->bsij", np.asarray(weights, dtype=np.float64), conf)
        values = [[mean_iou(iou_per_class(m), skip_classes) for m in per_seed] for per_seed in total]
        return np.asarray(values, dtype=np.float64)

    return Statistic(stat, len(conf))


def map50_statistic(tables: Sequence) -> Statistic:
    """Per-seed mAP@0.5 of weighted images from matched detections (one
    :class:`pipeline.detection.ap.MatchTable` per seed, matched at IoU 0.5).

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
        return np.array([[one(row, *p) for p in prepared] for row in rows], dtype=np.float64)

    return Statistic(stat, len(prepared))


def level_text(confidence: float) -> str:
    """An interval level as the report prints it: 0.95 -> "95 %", 0.975 -> "97.5 %"."""
    return f"{100 * float(confidence):g} %"


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
                        confidence: float = 0.95, seeds: tuple[int, int] = (1, 1)) -> Interval:
    """Interval of ``a - b`` from the two systems' statistics on the **same** resamples."""
    diff = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, dtype=np.float64)
    low, high, valid = percentile_interval(diff, confidence)
    return Interval(float(full_a - full_b), low, high, -1, len(diff), valid, confidence, tuple(seeds))


class Resamples:
    """The image draws of one comparison set (``n`` images) and its seed draws per seed count."""

    def __init__(self, n: int, n_boot: int = 1000, seed: int = 0):
        self.n, self.n_boot, self.seed = n, n_boot, seed
        self.images = resample_weights(n, n_boot, seed)
        self._seeds: dict[int, np.ndarray] = {}

    def seeds(self, n_seeds: int) -> np.ndarray:
        if n_seeds not in self._seeds:
            self._seeds[n_seeds] = seed_weights(n_seeds, self.n_boot, self.seed)
        return self._seeds[n_seeds]

    def values(self, stat: Statistic) -> tuple[np.ndarray, float]:
        """``(B resampled values, full-sample value)`` of a system."""
        return stat.resampled(self.images, self.seeds(stat.n_seeds)), float(stat(full_weights(self.n))[0])


def paired_bootstrap(stat_a: Statistic, stat_b: Statistic, n: int, n_boot: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> Interval:
    """Two-level paired bootstrap interval of ``T_a - T_b`` over seeds and ``n`` images (module
    docstring)."""
    draws = Resamples(n, n_boot, seed)
    (boot_a, full_a), (boot_b, full_b) = draws.values(stat_a), draws.values(stat_b)
    interval = difference_interval(boot_a, boot_b, full_a, full_b, confidence, (stat_a.n_seeds, stat_b.n_seeds))
    return Interval(interval.estimate, interval.low, interval.high, n, n_boot, interval.valid, confidence,
                    interval.seeds)
