"""IoU / mIoU / pixel accuracy against hand-computed confusion matrices (ignore pixels, absent
classes, classes predicted but absent from the ground truth)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.segmentation import metrics as M

CLASSES = ("background", "car", "person", "bike")
IGN = 255

# 3x4 target / prediction; 255 = ignore. Class 3 (bike) never occurs in either -> absent.
TARGET = np.array([[0, 0, 1, 1],
                   [0, 2, 1, IGN],
                   [IGN, 2, 2, 0]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1],
                 [0, 2, 0, 2],     # the 2 under the ignore pixel must not count
                 [1, 2, 0, 0]], dtype=np.uint8)
# Counted by hand over the 10 non-ignored pixels (rows ground truth, columns prediction):
#   gt 0 at (0,0)(0,1)(1,0)(2,3) -> pred 0,1,0,0          => M[0] = [3, 1, 0, 0]
#   gt 1 at (0,2)(0,3)(1,2)      -> pred 1,1,0            => M[1] = [1, 2, 0, 0]
#   gt 2 at (1,1)(2,1)(2,2)      -> pred 2,2,0            => M[2] = [1, 0, 2, 0]
HAND = np.array([[3, 1, 0, 0],
                 [1, 2, 0, 0],
                 [1, 0, 2, 0],
                 [0, 0, 0, 0]])


def test_confusion_matrix_by_hand_ignores_255():
    got = M.confusion_matrix(PRED, TARGET, 4, IGN)
    np.testing.assert_array_equal(got, HAND)
    assert got.dtype == np.int64 and got.sum() == 10


def test_iou_miou_accuracy_by_hand_with_absent_class():
    # IoU_c = TP / (TP + FP + FN):
    #   background: TP 3, FP (col sum 5 - 3) 2, FN (row sum 4 - 3) 1 -> 3/6
    #   car:        TP 2, FP (3 - 2) 1,         FN (3 - 2) 1         -> 2/4
    #   person:     TP 2, FP 0,                 FN (3 - 2) 1         -> 2/3
    #   bike:       0/0 -> undefined (NaN), excluded from the means
    iou = M.iou_per_class(HAND)
    np.testing.assert_allclose(iou[:3], [3 / 6, 2 / 4, 2 / 3])
    assert math.isnan(iou[3])
    s = M.summarize(HAND, CLASSES, background=0)
    assert s["mIoU"] == pytest.approx((3 / 6 + 2 / 4 + 2 / 3) / 3)
    assert s["mIoU_no_bg"] == pytest.approx((2 / 4 + 2 / 3) / 2)
    assert s["pixel_accuracy"] == pytest.approx(7 / 10)
    assert s["absent_classes"] == ["bike"]
    assert s["n_classes_scored"] == 3 and s["n_classes_scored_no_bg"] == 2
    assert s["n_pixels"] == 10 and s["gt_pixels"] == {"background": 4, "car": 3, "person": 3, "bike": 0}
    assert math.isnan(s["IoU"]["bike"])


def test_class_predicted_but_not_in_ground_truth_scores_zero_not_absent():
    target = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 3], [1, 1]])          # bike predicted once, never in the labels
    conf = M.confusion_matrix(pred, target, 4, IGN)
    s = M.summarize(conf, CLASSES)
    assert s["IoU"]["bike"] == 0.0              # FP 1 -> 0 / 1
    assert s["absent_classes"] == ["person"]    # person: no GT, no prediction
    # (1/2 + 2/2 + 0) over the 3 scored classes; never 0 or 1 for the absent one
    assert s["mIoU"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_sum_of_per_image_matrices_is_the_dataset_matrix():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, (5, 6, 7))
    targets[rng.random(targets.shape) < 0.1] = IGN
    preds = rng.integers(0, 4, (5, 6, 7))
    per_image = np.stack([M.confusion_matrix(p, t, 4) for p, t in zip(preds, targets)])
    np.testing.assert_array_equal(per_image.sum(0), M.confusion_matrix(preds, targets, 4))


def test_matches_smp_dataset_level_iou_with_nan_zero_division():
    """Cross-check with segmentation-models-pytorch: stats summed over the dataset, then
    ``iou_score(reduction="none", zero_division=nan)`` (environment.md pitfall 8)."""
    import torch
    import segmentation_models_pytorch as smp

    tp, fp, fn, tn = smp.metrics.get_stats(torch.from_numpy(PRED[None].astype(np.int64)),
                                           torch.from_numpy(TARGET[None].astype(np.int64)),
                                           mode="multiclass", num_classes=4, ignore_index=IGN)
    ref = smp.metrics.iou_score(tp.sum(0, keepdim=True), fp.sum(0, keepdim=True), fn.sum(0, keepdim=True),
                                tn.sum(0, keepdim=True), reduction="none", zero_division=float("nan"))[0].numpy()
    np.testing.assert_allclose(M.iou_per_class(HAND), ref, equal_nan=True)


def test_out_of_range_target_is_rejected():
    with pytest.raises(ValueError, match="outside"):
        M.confusion_matrix(np.zeros((2, 2), int), np.array([[0, 9], [0, 0]]), 4)


def test_mean_std_over_seeds():
    from pipeline.results import seed_mean_std

    mean, std, n = seed_mean_std([0.5, 0.7, float("nan"), None])
    assert (mean, n) == (pytest.approx(0.6), 2) and std == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert seed_mean_std([0.4]) == (0.4, None, 1)  # one seed: no spread (null), as in detection
    assert seed_mean_std([float("nan")]) == (None, None, 0)
