"""Average precision of a detector from per-image records (``predictions.json``), ultralytics-exact.

A *record* is one test image::

    {"name": "00002",
     "gt":   {"boxes": [[x1, y1, x2, y2], ...], "classes": ["People", ...]},
     "pred": {"boxes": [[x1, y1, x2, y2], ...], "scores": [0.91, ...], "classes": ["Car", ...]}}

with boxes in pixels. :func:`evaluate` computes per-class AP and mAP the way ultralytics'
``DetectionValidator`` + ``ap_per_class`` do (the numbers the detection stage reports as
``r.box.map50``), so the report can bootstrap mAP over test images
(:meth:`MatchTable.evaluate` with resampled ``indices``) and get exactly the stage's value back
on the full set:

1. **Matching** (per image, per IoU threshold t): detections are visited in descending score
   order; each takes the unclaimed ground-truth box of its class with the highest IoU, and is a
   true positive when that IoU >= t (greedy one-to-one matching as in the PASCAL VOC / COCO
   evaluations; Everingham et al., IJCV 2010; Lin et al., ECCV 2014).
   IoU = |A ∩ B| / (|A| + |B| - |A ∩ B| + 1e-7).
2. **Precision/recall** per class over all images, detections sorted by score:
   P_k = TP_k / (TP_k + FP_k), R_k = TP_k / n_gt.
3. **AP** = ∫ P_env(R) dR with the precision envelope P_env(R) = max_{R' >= R} P(R'),
   evaluated by linear interpolation at the 101 recall points 0, 0.01, ..., 1 and integrated
   with the trapezoidal rule (ultralytics' variant of COCO's 101-point interpolated AP; COCO
   itself uses a step function, so values differ slightly from pycocotools). As in ultralytics,
   the curve is closed with the points (R_last, 0) and (1, 0), so the interpolated precision at
   recall 1 is 0 and a perfect detector scores AP = 0.995.
4. **mAP** = mean AP over the classes that have ground truth in the evaluated images
   (mAP@0.5 uses t = 0.5, mAP@0.5:0.95 averages t = 0.50, 0.55, ..., 0.95). With no ground
   truth at all mAP is 0.0 (ultralytics' convention).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of ``x1, y1, x2, y2`` boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + eps)


def match_image(gt_boxes, gt_classes, pred_boxes, pred_scores, pred_classes,
                thresholds: Sequence[float] = IOU_THRESHOLDS) -> np.ndarray:
    """Boolean ``(n_pred, n_thresholds)``: is each detection a true positive at each threshold
    (rows in the order given; see step 1 of the module docstring)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    n_pred, n_gt = len(pred_scores), len(gt_classes)
    correct = np.zeros((n_pred, len(thresholds)), dtype=bool)
    if n_pred == 0 or n_gt == 0:
        return correct
    same = np.asarray(gt_classes)[:, None] == np.asarray(pred_classes)[None, :]
    iou = box_iou(gt_boxes, pred_boxes) * same
    cols = np.arange(len(thresholds))
    claimed = np.zeros((n_gt, len(thresholds)), dtype=bool)
    for j in np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="stable"):
        if not (iou[:, j] >= thresholds.min()).any():
            continue
        available = np.where(claimed, 0.0, iou[:, j, None])
        best = available.argmax(0)
        correct[j] = available[best, cols] >= thresholds
        claimed[best, cols] |= correct[j]
    return correct


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated AP of one precision/recall curve (step 3 of the module docstring)."""
    recall = np.asarray(recall, dtype=np.float64)
    mrec = np.concatenate(([0.0], recall, [recall[-1] if len(recall) else 1.0], [1.0]))
    mpre = np.concatenate(([1.0], np.asarray(precision, dtype=np.float64), [0.0], [0.0]))
    envelope = np.flip(np.maximum.accumulate(np.flip(mpre)))
    return float(np.trapezoid(np.interp(RECALL_POINTS, mrec, envelope), RECALL_POINTS))


@dataclass
class APResult:
    """AP per class (classes with ground truth only) at each IoU threshold, and the means."""

    classes: list[str]
    ap: np.ndarray                       # (n_classes_with_gt, n_thresholds)
    thresholds: np.ndarray
    n_images: int
    n_boxes: int
    boxes_per_class: dict[str, int] = field(default_factory=dict)

    def _column(self, t: float) -> int:
        hits = np.flatnonzero(np.isclose(self.thresholds, t))
        if not len(hits):
            raise ValueError(f"IoU threshold {t} was not evaluated ({self.thresholds.tolist()})")
        return int(hits[0])

    def ap_at(self, t: float = 0.5) -> dict[str, float]:
        """Per-class AP at IoU ``t``, keyed by class name."""
        col = self._column(t)
        return {c: float(self.ap[i, col]) for i, c in enumerate(self.classes)}

    @property
    def ap50(self) -> dict[str, float]:
        return self.ap_at(0.5)

    @property
    def map50(self) -> float:
        return float(self.ap[:, self._column(0.5)].mean()) if len(self.classes) else 0.0

    @property
    def map50_95(self) -> float:
        return float(self.ap.mean()) if len(self.classes) else 0.0


@dataclass
class MatchTable:
    """Matched detections of every image, computed once; :meth:`evaluate` takes any subset or
    resample of images (bootstrap) without re-matching."""

    class_names: list[str]
    thresholds: np.ndarray
    tp: list[np.ndarray]          # per image (n_pred, n_thresholds) bool
    scores: list[np.ndarray]      # per image (n_pred,)
    pred_cls: list[np.ndarray]    # per image (n_pred,) int index into class_names
    gt_cls: list[np.ndarray]      # per image (n_gt,) int index into class_names

    def __len__(self) -> int:
        return len(self.tp)

    def evaluate(self, indices: Iterable[int] | None = None) -> APResult:
        """AP over the images at ``indices`` (repeats allowed; default: all images)."""
        idx = list(range(len(self))) if indices is None else [int(i) for i in indices]
        n_t = len(self.thresholds)
        tp = np.concatenate([self.tp[i] for i in idx] or [np.zeros((0, n_t), bool)])
        conf = np.concatenate([self.scores[i] for i in idx] or [np.zeros(0)])
        pred = np.concatenate([self.pred_cls[i] for i in idx] or [np.zeros(0, int)])
        target = np.concatenate([self.gt_cls[i] for i in idx] or [np.zeros(0, int)])
        order = np.argsort(-conf)
        tp, pred = tp[order], pred[order]
        present, counts = np.unique(target, return_counts=True)
        ap = np.zeros((len(present), n_t))
        for row, (c, n_gt) in enumerate(zip(present, counts)):
            mine = pred == c
            if not mine.any():
                continue
            tpc = tp[mine].cumsum(0)
            fpc = (1 - tp[mine]).cumsum(0)
            recall, precision = tpc / n_gt, tpc / (tpc + fpc)
            ap[row] = [average_precision(recall[:, k], precision[:, k]) for k in range(n_t)]
        names = [self.class_names[c] for c in present]
        return APResult(names, ap, self.thresholds, len(idx), int(len(target)),
                        {n: int(k) for n, k in zip(names, counts)})


def match_records(records: Sequence[dict], thresholds: Sequence[float] = IOU_THRESHOLDS) -> MatchTable:
    """Match every record's detections to its ground truth (see the module docstring)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    names: dict[str, int] = {}

    def ids(classes) -> np.ndarray:
        return np.array([names.setdefault(c, len(names)) for c in classes], dtype=np.int64)

    table = MatchTable([], thresholds, [], [], [], [])
    for record in records:
        gt, pred = record.get("gt") or {}, record.get("pred") or {}
        gt_cls, pred_cls = ids(gt.get("classes", [])), ids(pred.get("classes", []))
        scores = np.asarray(pred.get("scores", []), dtype=np.float64)
        if not (len(scores) == len(pred_cls) == len(pred.get("boxes", []))):
            raise ValueError(f"record {record.get('name')!r}: pred boxes, scores and classes differ in length")
        if len(gt_cls) != len(gt.get("boxes", [])):
            raise ValueError(f"record {record.get('name')!r}: gt boxes and classes differ in length")
        table.tp.append(match_image(gt.get("boxes", []), gt_cls, pred.get("boxes", []), scores,
                                    pred_cls, thresholds))
        table.scores.append(scores)
        table.pred_cls.append(pred_cls)
        table.gt_cls.append(gt_cls)
    table.class_names = list(names)
    return table


def evaluate(records: Sequence[dict], thresholds: Sequence[float] = IOU_THRESHOLDS) -> APResult:
    """Per-class AP and mAP of per-image records (ultralytics' ``DetMetrics`` values)."""
    return match_records(records, thresholds).evaluate()


def map50(records: Sequence[dict]) -> float:
    """mAP@0.5 of per-image records (ultralytics' ``r.box.map50``)."""
    return evaluate(records, (0.5,)).map50
