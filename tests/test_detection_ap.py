"""pipeline.detection.ap: hand-computed cases and equality with ultralytics' own metric code."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.detection import ap


def record(gt_boxes, gt_cls, pred_boxes=(), scores=(), pred_cls=(), name="img"):
    return {"name": name, "gt": {"boxes": [list(b) for b in gt_boxes], "classes": list(gt_cls)},
            "pred": {"boxes": [list(b) for b in pred_boxes], "scores": list(scores),
                     "classes": list(pred_cls)}}


def test_box_iou_by_hand():
    iou = ap.box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    assert iou[0, 0] == pytest.approx(50 / 150, abs=1e-8)
    assert iou[0, 1] == 0.0
    assert iou[0, 2] == pytest.approx(1.0, abs=1e-8)


def test_perfect_detections_give_ap_one_and_misses_zero():
    recs = [record([[0, 0, 10, 10], [20, 20, 40, 40]], ["Car", "People"],
                   [[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], ["Car", "People"])]
    result = ap.evaluate(recs)
    # ultralytics' interpolation: np.interp at recall 1 lands on the appended precision 0, so the
    # last trapezoid (width 0.01) is halved and a perfect detector scores 0.995, not 1
    assert result.ap50 == {"Car": pytest.approx(0.995), "People": pytest.approx(0.995)}
    assert result.map50 == pytest.approx(0.995) and result.map50_95 == pytest.approx(0.995)
    # wrong class: no true positive, AP 0 for both classes present in the ground truth
    recs = [record([[0, 0, 10, 10]], ["Car"], [[0, 0, 10, 10]], [0.9], ["People"])]
    assert ap.evaluate(recs).ap50 == {"Car": 0.0}
    assert ap.map50([record([], [])]) == 0.0  # no ground truth: ultralytics' convention


def test_ap_by_hand_one_false_positive_ranked_first():
    # 2 gt cars; detections by score: FP, TP, TP -> P/R points (0, 0), (1/2, 1/2), (2/3, 1).
    recs = [record([[0, 0, 10, 10], [50, 50, 60, 60]], ["Car", "Car"],
                   [[100, 100, 110, 110], [0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8, 0.7],
                   ["Car", "Car", "Car"])]
    # envelope: precision 2/3 for every recall in [0, 1] (the max over higher recalls),
    # the first interpolation point (recall 0) sits on the sentinel precision 1 -> linear ramp on [0, 0]
    x = ap.RECALL_POINTS
    mrec = np.array([0, 0, 0.5, 1, 1, 1.0])
    mpre = np.array([1, 2 / 3, 2 / 3, 2 / 3, 0, 0])  # already the envelope
    expected = np.trapezoid(np.interp(x, mrec, mpre), x)
    assert ap.map50(recs) == pytest.approx(expected, abs=1e-12)
    assert 0.66 < expected < 0.67


def test_greedy_matching_in_score_order_and_thresholds():
    gt = [[0, 0, 10, 10]]
    # two detections of one object: the higher score takes it, the other is a false positive
    tp = ap.match_image(gt, ["Car"], [[0, 0, 10, 9], [0, 0, 10, 10]], [0.5, 0.9], ["Car", "Car"])
    assert tp[:, 0].tolist() == [False, True]
    # IoU 0.62: true positive at 0.50..0.60, not above
    tp = ap.match_image(gt, ["Car"], [[0, 0, 10, 6.2]], [0.9], ["Car"])
    assert tp[0].tolist() == [t <= 0.6 + 1e-9 for t in ap.IOU_THRESHOLDS]


def test_match_table_resampling_equals_duplicated_records():
    rng = np.random.default_rng(1)
    recs = synthetic_records(rng, n_images=12)
    table = ap.match_records(recs)
    idx = [0, 0, 3, 5, 5, 5, 11]
    direct = ap.evaluate([recs[i] for i in idx])
    assert table.evaluate(idx).map50 == pytest.approx(direct.map50, abs=1e-12)
    assert table.evaluate().map50 == pytest.approx(ap.map50(recs), abs=1e-12)


def test_bad_records_raise():
    with pytest.raises(ValueError, match="differ in length"):
        ap.evaluate([record([], [], [[0, 0, 1, 1]], [0.5, 0.4], ["Car"])])


def synthetic_records(rng, n_images=30, classes=("People", "Car", "Bus")):
    """Ground truth with noisy, partly wrong detections: a non-trivial AP in (0, 1)."""
    recs = []
    for i in range(n_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (n, 2))
        wh = rng.uniform(10, 60, (n, 2))
        gt = np.concatenate([xy, xy + wh], 1)
        gt_cls = [classes[int(c)] for c in rng.integers(0, len(classes), n)]
        boxes, scores, pcls = [], [], []
        for b, c in zip(gt, gt_cls):
            for _ in range(int(rng.integers(0, 3))):
                boxes.append(b + rng.normal(0, 6, 4))
                scores.append(float(rng.uniform(0.01, 1)))
                pcls.append(c if rng.random() < 0.8 else classes[int(rng.integers(0, len(classes)))])
        for _ in range(int(rng.integers(0, 4))):  # background false positives
            p = rng.uniform(0, 200, 2)
            boxes.append(np.concatenate([p, p + rng.uniform(10, 60, 2)]))
            scores.append(float(rng.uniform(0.001, 0.6)))
            pcls.append(classes[int(rng.integers(0, len(classes)))])
        order = np.argsort(-np.asarray(scores))  # ultralytics receives NMS output sorted by score
        recs.append(record(gt, gt_cls, [boxes[k] for k in order], [scores[k] for k in order],
                           [pcls[k] for k in order], name=f"im{i}"))
    return recs


def ultralytics_metrics(recs, classes, tmp_path):
    """mAP computed by ultralytics' DetectionValidator.match_predictions + DetMetrics."""
    import torch
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import DetMetrics

    validator = DetectionValidator(save_dir=tmp_path)
    metrics = DetMetrics(names=dict(enumerate(classes)))
    cid = {c: i for i, c in enumerate(classes)}
    for r in recs:
        gt_cls = np.array([cid[c] for c in r["gt"]["classes"]], dtype=np.float32)
        pred_cls = np.array([cid[c] for c in r["pred"]["classes"]], dtype=np.float32)
        if len(gt_cls) and len(pred_cls):
            iou = torch.from_numpy(ap.box_iou(r["gt"]["boxes"], r["pred"]["boxes"]))
            tp = validator.match_predictions(torch.from_numpy(pred_cls), torch.from_numpy(gt_cls), iou).numpy()
        else:
            tp = np.zeros((len(pred_cls), 10), dtype=bool)
        metrics.update_stats({"tp": tp, "conf": np.array(r["pred"]["scores"]), "pred_cls": pred_cls,
                              "target_cls": gt_cls, "target_img": np.unique(gt_cls), "im_name": r["name"]})
    metrics.process()
    return metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_ultralytics_metric_on_the_same_predictions(seed, tmp_path):
    classes = ("People", "Car", "Bus")
    recs = synthetic_records(np.random.default_rng(seed), classes=classes)
    ours = ap.evaluate(recs)
    theirs = ultralytics_metrics(recs, classes, tmp_path)
    assert 0.05 < ours.map50 < 0.95  # a non-trivial case
    assert ours.map50 == pytest.approx(theirs.box.map50, abs=1e-9)
    assert ours.map50_95 == pytest.approx(theirs.box.map, abs=1e-9)
    by_name = {classes[int(c)]: v for c, v in zip(theirs.box.ap_class_index, theirs.box.ap50)}
    assert ours.ap50 == pytest.approx(by_name, abs=1e-9)
