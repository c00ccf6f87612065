"""The comparison report on synthesised stage results (layout of notes/contracts.md).

:func:`synthesise` writes a small but complete project tree: two datasets (M3FD-layout detection,
MSRS-layout segmentation), fused images, fusion-metric summaries and per-image CSVs, efficiency
records, detection metrics + per-seed ``predictions.json`` (scored with the real
:mod:`pipeline.detection.ap`, as the detection stage does) and segmentation metrics + per-image
confusion matrices and overlays (scored with :mod:`pipeline.segmentation.metrics`).
"""
from __future__ import annotations

import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.detection import ap as ap_metric
from pipeline.errors import DataError
from pipeline.imageio import write_image
from pipeline.report import build_report
from pipeline.report.bootstrap import (full_weights, map50_statistic, mean_statistic, miou_statistic,
                                       paired_bootstrap, percentile_interval, resample_weights)
from pipeline.report.load import load_results
from pipeline.results import write_json
from pipeline.segmentation import metrics as seg_metrics

DET_CLASSES = ["People", "Car", "Bus"]
SEG_CLASSES = ["unlabelled", "car", "person", "bike"]
METHODS = ["ir", "vis", "average", "mlfuse"]          # run everywhere
NOT_RUN = "max"                                       # configured, never run
SKILL = {"ir": 0.55, "vis": 0.65, "average": 0.7, "mlfuse": 0.85}   # detection recall / seg accuracy
H, W = 96, 128
SMALL = {"out": "results/report", "bootstrap_samples": 200, "seed": 0, "confidence": 0.95, "example_scenes": 2,
         "min_seeds": 3, "score_threshold": 0.25, "panel_width": 128, "fused_dir": "data/fused"}


def _image(rng: np.random.Generator, colour: bool) -> np.ndarray:
    base = np.linspace(30, 200, W)[None, :] + np.linspace(0, 40, H)[:, None]
    image = np.clip(base + rng.normal(0, 12, (H, W)), 0, 255).astype(np.uint8)
    y, x = rng.integers(10, H - 30), rng.integers(10, W - 40)
    image[y:y + 20, x:x + 30] = 240
    if colour:
        return np.stack([image, np.roll(image, 5, axis=1), 255 - image], axis=-1)
    return image


def _params(root: Path) -> dict:
    return {"profile": "demo", "seed": 0,
            "datasets": {"m3fd": {"kind": "m3fd", "root": str(root / "data/M3FD"), "task": "detection"},
                         "msrs": {"kind": "msrs", "root": str(root / "data/MSRS"), "task": "segmentation"}},
            "fusion": {"methods": {"ir": {}, "vis": {}, "average": {}, "mlfuse": {"weights": "trained"},
                                   NOT_RUN: {}}},
            "report": dict(SMALL)}


def _detections(rng, gt_boxes, gt_classes, skill):
    boxes, scores, classes = [], [], []
    for box, cls in zip(gt_boxes, gt_classes):
        if rng.random() < skill:
            jitter = rng.normal(0, 2.0, 4)
            boxes.append([float(v) for v in np.asarray(box) + jitter])
            scores.append(float(np.clip(rng.normal(0.5 + 0.4 * skill, 0.15), 0.01, 1)))
            classes.append(cls)
    for _ in range(rng.integers(0, 3)):                 # false positives
        x, y = rng.uniform(0, W - 20), rng.uniform(0, H - 20)
        boxes.append([x, y, x + 15, y + 15])
        scores.append(float(rng.uniform(0.01, 0.6)))
        classes.append(DET_CLASSES[rng.integers(len(DET_CLASSES))])
    return {"boxes": boxes, "scores": scores, "classes": classes}


def _write_detection(root: Path, names: list[str], rng) -> None:
    gts = {}
    for name in names:
        k = int(rng.integers(1, 4))
        xy = rng.uniform(0, [W - 30, H - 30], size=(k, 2))
        gts[name] = ([[float(x), float(y), float(x + 25), float(y + 25)] for x, y in xy],
                     [DET_CLASSES[i] for i in rng.integers(0, len(DET_CLASSES), k)])
    for method in METHODS:
        out = root / "results/detection/m3fd" / method
        per_seed = {}
        for seed in (0, 1):
            records = [{"name": n, "width": W, "height": H, "gt": {"boxes": gts[n][0], "classes": gts[n][1]},
                        "pred": _detections(rng, *gts[n], SKILL[method])} for n in names]
            write_json(out / f"seed_{seed}/predictions.json",
                       {"dataset": "m3fd", "method": method, "seed": seed, "classes": DET_CLASSES,
                        "box_format": "xyxy pixels", "images": records})
            result = ap_metric.evaluate(records)
            per_seed[str(seed)] = {"mAP50": result.map50, "mAP50_95": result.map50_95,
                                   "AP50": {c: result.ap50.get(c) for c in DET_CLASSES}}
        mean = lambda key: float(np.mean([s[key] for s in per_seed.values()]))  # noqa: E731
        write_json(out / "metrics.json", {
            "dataset": "m3fd", "method": method, "mAP50": mean("mAP50"), "mAP50_95": mean("mAP50_95"),
            "precision": 0.5, "recall": 0.5,
            "AP50": {c: float(np.mean([s["AP50"][c] for s in per_seed.values()])) for c in DET_CLASSES},
            "std": {"mAP50": float(np.std([s["mAP50"] for s in per_seed.values()], ddof=1))},
            "seeds": [0, 1], "n_seeds": 2, "per_seed": per_seed, "n_test_images": len(names),
            "provenance": {"split": {"train": ["a"], "test": names}}})


def _write_segmentation(root: Path, names: list[str], rng) -> None:
    """Two seeds, written like the segmentation stage: ``per_seed`` S×N×C×C and ``confusion`` (summed),
    headline values the mean over seeds of each seed's test-set scores."""
    c = len(SEG_CLASSES)
    for method in METHODS:
        out = root / "results/segmentation/msrs" / method
        per_seed = np.zeros((2, len(names), c, c), np.int64)
        for s, i in np.ndindex(2, len(names)):
            truth = rng.integers(200, 2000, c) * (rng.random(c) < 0.8)
            truth[0] += 5000
            for g, count in enumerate(truth):
                right = int(count * SKILL[method] * rng.uniform(0.9, 1.0))
                per_seed[s, i, g, g] = right
                per_seed[s, i, g, rng.integers(0, c)] += count - right
        out.mkdir(parents=True)
        np.savez(out / "per_image_confusion.npz", names=np.array(names), classes=np.array(SEG_CLASSES),
                 seeds=np.array([0, 1]), confusion=per_seed.sum(0), per_seed=per_seed)
        scores = [seg_metrics.summarize(per_seed[s].sum(0), SEG_CLASSES) for s in range(2)]
        mean = lambda key: float(np.mean([x[key] for x in scores]))  # noqa: E731
        write_json(out / "metrics.json", {
            "mIoU": mean("mIoU"), "mIoU_no_bg": mean("mIoU_no_bg"), "pixel_accuracy": mean("pixel_accuracy"),
            "IoU": {k: float(np.nanmean([x["IoU"][k] for x in scores])) for k in SEG_CLASSES},
            "seeds": [0, 1], "n_seeds": 2, "n_test_images": len(names),
            "provenance": {"split": {"train": ["x"], "test": names}}})
        for name in names[:3]:
            panel = np.concatenate([_image(rng, True)] * 3, axis=1)   # [image | truth | prediction]
            write_image(out / "overlays" / f"{name}.png", panel)


def _write_fusion(root: Path, dataset: str, names: list[str], rng) -> None:
    metric_names = ["EN", "SD", "Qabf", "Nabf"]
    for method in METHODS:
        for name in names:
            write_image(root / "data/fused" / dataset / method / f"{name}.png", _image(rng, True))
        values = rng.uniform(0.1, 7, (len(names), len(metric_names)))
        frame = pd.DataFrame(values, columns=metric_names)
        frame.insert(0, "split", "test")
        frame.insert(0, "name", names)
        folder = root / "results/metrics" / method
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(folder / f"{dataset}.csv", index=False)
        summary_path = folder / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {
            "convention": "matlab", "directions": {"EN": "up", "SD": "up", "Qabf": "up", "Nabf": "down"},
            "datasets": {}}
        summary["datasets"][dataset] = {m: {"mean": float(frame[m].mean()), "std": float(frame[m].std()),
                                            "n": len(names)} for m in metric_names}
        summary.setdefault("provenance", {})[dataset] = {"split": {"images_per_split": {"test": len(names)}}}
        write_json(summary_path, summary)
        write_json(root / "results/fusion" / method / f"{dataset}.json", {
            "method": method, "dataset": dataset, "images": len(names),
            "seconds_per_image": float(rng.uniform(0.001, 0.2)),
            "params": 0 if method != "mlfuse" else 12345, "gflops": 0.0 if method != "mlfuse" else 1.5,
            "weights": None if method != "mlfuse" else [{"file": "model_fuse.pth", "sha256": "ab" * 32}]})


def synthesise(root: Path, seed: int = 0) -> dict:
    """Write the source datasets and every stage's results under ``root``; return the params."""
    rng = np.random.default_rng(seed)
    m3fd = [f"{i:05d}" for i in range(1, 11)]
    for name in m3fd:
        write_image(root / "data/M3FD/Ir" / f"{name}.png", _image(rng, False))
        write_image(root / "data/M3FD/Vis" / f"{name}.png", _image(rng, True))
    (root / "data/M3FD/meta").mkdir(parents=True)
    (root / "data/M3FD/meta/train.txt").write_text("\n".join(m3fd[:4]) + "\n")
    (root / "data/M3FD/meta/test.txt").write_text("\n".join(m3fd[4:]) + "\n")
    msrs = {"train": ["00001D", "00002N"], "test": [f"{i:05d}{'DN'[i % 2]}" for i in range(3, 11)]}
    for split, names in msrs.items():
        for name in names:
            write_image(root / "data/MSRS" / split / "ir" / f"{name}.png", _image(rng, False))
            write_image(root / "data/MSRS" / split / "vi" / f"{name}.png", _image(rng, True))
            write_image(root / "data/MSRS" / split / "Segmentation_labels" / f"{name}.png",
                        rng.integers(0, len(SEG_CLASSES), (H, W)).astype(np.uint8))
    _write_fusion(root, "m3fd", m3fd[4:], rng)
    _write_fusion(root, "msrs", msrs["test"], rng)
    _write_detection(root, m3fd[4:], rng)
    _write_segmentation(root, msrs["test"], rng)
    return _params(root)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A synthesised project and its report (built once for the module)."""
    root = tmp_path_factory.mktemp("report_project")
    params = synthesise(root)
    summary = build_report(params, root)
    return root, params, summary


# ------------------------------------------------------------------------------------ schema


def _is_fraction(value) -> bool:
    return value is None or (isinstance(value, float) and 0.0 <= value <= 1.0)


def test_summary_json_schema(built):
    root, _, returned = built
    summary = json.loads((root / "results/report/summary.json").read_text())
    for key in ("fusion_metrics", "detection", "segmentation", "efficiency", "gains", "params", "versions",
                "directions", "units"):
        assert key in summary, key
    assert "fractions in [0, 1]" in summary["units"]
    assert summary["directions"]["Nabf"] == "down" and summary["directions"]["EN"] == "up"
    assert summary["directions"]["mAP50"] == "up" and summary["directions"]["seconds_per_image"] == "down"
    for dataset, rows in summary["fusion_metrics"].items():
        assert set(rows) == set(METHODS), dataset
        for metrics in rows.values():
            assert set(metrics) == {"EN", "SD", "Qabf", "Nabf"}
            assert all(isinstance(v, float) for v in metrics.values())
    det = summary["detection"]["m3fd"]
    assert set(det) == set(METHODS)
    for row in det.values():
        assert _is_fraction(row["mAP50"]) and _is_fraction(row["mAP50_95"])
        assert set(row["AP50"]) == set(DET_CLASSES) and all(_is_fraction(v) for v in row["AP50"].values())
        assert row["seeds"] == 2
    seg = summary["segmentation"]["msrs"]
    for row in seg.values():
        assert _is_fraction(row["mIoU"]) and _is_fraction(row["mIoU_no_bg"])
        assert set(row["IoU"]) == set(SEG_CLASSES) and row["seeds"] == 2
    for method in METHODS:
        eff = summary["efficiency"][method]
        assert isinstance(eff["params"], int) and isinstance(eff["gflops"], float)
        assert eff["seconds_per_image"] > 0
    for task, dataset in (("detection", "m3fd"), ("segmentation", "msrs")):
        entries = summary["gains"][task][dataset]
        assert set(entries) == {"average", "mlfuse"}
        for g in entries.values():
            for key in ("vs_ir", "vs_vis", "vs_best_single"):
                assert isinstance(g[key], float)
            lo, hi = g["ci95"]
            assert lo <= hi and g["n_images"] > 0
    assert summary["params"]["report"]["bootstrap_samples"] == SMALL["bootstrap_samples"]
    assert "numpy" in summary["versions"]
    assert summary["splits"]["detection/m3fd"] == {"train": 1, "test": 6}
    assert summary["splits"]["metrics/msrs"] == {"test": 8}
    assert returned["gains"].keys() == summary["gains"].keys()


def test_gains_are_differences_of_the_rows(built):
    root, _, _ = built
    summary = json.loads((root / "results/report/summary.json").read_text())
    gains_csv = pd.read_csv(root / "results/report/gains.csv")
    for task, metric, dataset in (("detection", "mAP50", "m3fd"), ("segmentation", "mIoU", "msrs")):
        rows = summary[task][dataset]
        ir, vis = rows["ir"][metric], rows["vis"][metric]
        for method, g in summary["gains"][task][dataset].items():
            value = rows[method][metric]
            assert g["value"] == value
            assert g["vs_ir"] == pytest.approx(value - ir, abs=1e-12)
            assert g["vs_vis"] == pytest.approx(value - vis, abs=1e-12)
            assert g["vs_best_single"] == pytest.approx(value - max(ir, vis), abs=1e-12)
            assert g["best_single"] == ("ir" if ir >= vis else "vis")
            # the per-image recomputation gives back the stage's own numbers on the full test set
            assert g["recomputed"]["vs_best_single"] == pytest.approx(g["vs_best_single"], abs=1e-9)
            row = gains_csv[(gains_csv.task == task) & (gains_csv.method == method)].iloc[0]
            assert row["vs_best_single"] == pytest.approx(g["vs_best_single"])
            assert [row["ci95_low"], row["ci95_high"]] == pytest.approx(g["ci95"])
            assert [g["ci95_low"], g["ci95_high"]] == g["ci95"]
            assert row["system"] == f"{task}/{dataset}/{method}"
    # the synthetic skills make mlfuse clearly better than the single modalities at segmentation
    assert summary["gains"]["segmentation"]["msrs"]["mlfuse"]["ci95"][0] > 0


# ------------------------------------------------------------------------------------ bootstrap


def test_resample_weights_are_deterministic_multiplicities():
    w = resample_weights(7, 50, seed=3)
    assert w.shape == (50, 7) and (w.sum(axis=1) == 7).all() and (w >= 0).all()
    assert np.array_equal(w, resample_weights(7, 50, seed=3))
    assert not np.array_equal(w, resample_weights(7, 50, seed=4))


def test_bootstrap_constant_difference_has_a_point_interval():
    x = np.array([0.2, 0.9, 0.4, 0.7, 0.1])
    interval = paired_bootstrap(mean_statistic(x + 0.25), mean_statistic(x), len(x), n_boot=500, seed=1)
    assert interval.estimate == pytest.approx(0.25)
    assert interval.as_list() == pytest.approx([0.25, 0.25])
    assert interval.excludes_zero and interval.valid == 500


def test_bootstrap_matches_the_exact_resampling_distribution():
    """n = 3 differences {0, 0, 3}: the bootstrap mean is 3k/3 = k where k ~ Binomial(3, 1/3), so
    P(0) = 8/27, P(1) = 12/27, P(2) = 6/27, P(3) = 1/27. So the 95 % percentile interval is
    [0, 3] (P(3) = 3.7 % > 2.5 %) and the 80 % one [0, 2] (P(<= 1) = 74 % < 90 % < P(<= 2))."""
    a, b = np.array([1.0, 2.0, 6.0]), np.array([1.0, 2.0, 3.0])
    weights = resample_weights(3, 20000, seed=0)
    diff = mean_statistic(a)(weights) - mean_statistic(b)(weights)
    freq = {k: np.mean(np.isclose(diff, k)) for k in range(4)}
    exact = {0: 8 / 27, 1: 12 / 27, 2: 6 / 27, 3: 1 / 27}
    for k in exact:
        assert freq[k] == pytest.approx(exact[k], abs=0.012)
    interval = paired_bootstrap(mean_statistic(a), mean_statistic(b), 3, n_boot=20000, seed=0)
    assert interval.estimate == pytest.approx(1.0)
    assert interval.as_list() == pytest.approx([0.0, 3.0])
    narrow = paired_bootstrap(mean_statistic(a), mean_statistic(b), 3, n_boot=20000, seed=0, confidence=0.8)
    assert narrow.as_list() == pytest.approx([0.0, 2.0])
    again = paired_bootstrap(mean_statistic(a), mean_statistic(b), 3, n_boot=20000, seed=0)
    assert again == interval                           # deterministic for a seed


def test_percentile_interval_drops_undefined_resamples():
    low, high, valid = percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0, np.inf]), 0.5)
    assert valid == 3 and (low, high) == (1.5, 2.5)


def test_miou_statistic_weights_equal_explicit_repetition():
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 50, (2, 5, 4, 4))          # 2 seeds, 5 images, 4 classes
    conf[:, :, 3, :] = 0
    conf[:, :, :, 3] = 0                               # class 3 absent everywhere: skipped, not 0
    w = np.array([[2, 0, 1, 0, 2]])
    repeated = conf[:, [0, 0, 2, 4, 4]].sum(axis=1)     # per seed: the resample's summed matrix
    expected = np.mean([seg_metrics.mean_iou(seg_metrics.iou_per_class(m)) for m in repeated])
    assert miou_statistic(conf)(w)[0] == pytest.approx(expected)
    no_bg = np.mean([seg_metrics.mean_iou(seg_metrics.iou_per_class(m), (0,)) for m in repeated])
    assert miou_statistic(conf, skip_classes=[0])(w)[0] == pytest.approx(no_bg)


def test_map50_statistic_equals_ap_on_repeated_records(built):
    """The presorted weighted mAP@0.5 equals pipeline.detection.ap on explicitly repeated records."""
    root, _, _ = built
    seeds = [json.loads((root / f"results/detection/m3fd/average/seed_{k}/predictions.json").read_text())["images"]
             for k in (0, 1)]
    stat = map50_statistic([ap_metric.match_records(records, (0.5,)) for records in seeds])
    weights = np.vstack([full_weights(6), [[0, 3, 1, 0, 2, 0]], resample_weights(6, 20, seed=5)])
    values = stat(weights)
    for row, value in zip(weights, values):
        index = np.repeat(np.arange(6), row)
        expected = np.mean([ap_metric.map50([records[i] for i in index]) for records in seeds])
        assert value == pytest.approx(expected, abs=1e-12)
    assert values[0] == pytest.approx(np.mean([ap_metric.map50(r) for r in seeds]), abs=1e-12)


def test_map50_statistic_matches_evaluate_on_a_dense_test_set():
    """150 images x 300 detections (max_det 300 at conf 0.001, as the detection stage records)."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(150):
        k = int(rng.integers(1, 12))
        xy = rng.uniform(0, 900, (k, 2))
        gt = [[x, y, x + 50, y + 80] for x, y in xy]
        pred = [list(np.asarray(b) + rng.normal(0, 5, 4)) for b in gt]
        pred += [[x, y, x + 30, y + 30] for x, y in rng.uniform(0, 900, (300 - k, 2))]
        records.append({"name": str(i), "gt": {"boxes": gt, "classes": list(rng.choice(DET_CLASSES, k))},
                        "pred": {"boxes": pred, "scores": list(rng.random(300)),
                                 "classes": list(rng.choice(DET_CLASSES, 300))}})
    table = ap_metric.match_records(records, (0.5,))
    stat = map50_statistic([table])
    weights = resample_weights(150, 4, seed=0)
    for row, value in zip(weights, stat(weights)):
        assert value == pytest.approx(table.evaluate(np.repeat(np.arange(150), row)).map50, abs=1e-12)


# ------------------------------------------------------------------------------------ partial results


def test_partial_results_show_missing_never_zero(tmp_path):
    params = synthesise(tmp_path, seed=1)
    shutil.rmtree(tmp_path / "results/detection")                 # detection not run at all
    shutil.rmtree(tmp_path / "results/segmentation/msrs/average")  # one method not segmented
    path = tmp_path / "results/segmentation/msrs/mlfuse/metrics.json"  # ... one on another split
    obj = json.loads(path.read_text())
    obj["provenance"]["split"]["test"] = obj["provenance"]["split"]["test"][:-1]
    write_json(path, obj)
    summary = build_report(params, tmp_path)
    assert summary["splits"]["segmentation/msrs"].startswith("WARNING")
    assert "- segmentation/msrs: WARNING" in (tmp_path / "results/report/report.md").read_text()
    assert summary["detection"] == {} and summary["missing"]["detection"] == "not run"
    assert "detection" not in summary["gains"]
    assert summary["missing"]["segmentation"] == {"msrs": ["average", NOT_RUN]}
    assert "average" not in summary["segmentation"]["msrs"]
    assert set(summary["gains"]["segmentation"]["msrs"]) == {"mlfuse"}
    out = tmp_path / "results/report"
    assert not list(out.glob("detection_*.csv"))
    seg = pd.read_csv(out / "segmentation_msrs.csv").set_index("method")
    assert seg.loc["average", "status"] == "missing" and seg.loc[NOT_RUN, "status"] == "missing"
    assert seg.loc["average"].drop("status").isna().all()        # empty cells, not zeros
    md = (out / "report.md").read_text()
    assert "Detection was not run" in md
    line = next(l for l in md.splitlines() if l.startswith(f"| {NOT_RUN} ") and "missing" in l)
    assert "0.000" not in line
    eff = pd.read_csv(out / "efficiency.csv").set_index("method")
    assert eff.loc[NOT_RUN, "status"] == "missing" and math.isnan(eff.loc[NOT_RUN, "params"])
    assert eff.loc["mlfuse", "weights"] == "model_fuse.pth " + "ab" * 32   # where the weights came from
    assert "model_fuse.pth " + "ab" * 32 in md


def test_percent_values_are_rejected_naming_the_file(tmp_path):
    params = synthesise(tmp_path, seed=2)
    path = tmp_path / "results/segmentation/msrs/mlfuse/metrics.json"
    obj = json.loads(path.read_text())
    obj["mIoU"] = 64.3
    path.write_text(json.dumps(obj))
    with pytest.raises(DataError, match="percent") as err:
        load_results(tmp_path, params)
    assert str(path) in str(err.value)
    path.write_text("{not json")
    with pytest.raises(DataError, match="cannot read") as err:
        load_results(tmp_path, params)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------------------ HTML


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.refs, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        for key in ("href", "src", "srcset", "poster", "data"):
            if key in attrs and tag != "img":
                self.refs.append((tag, key, attrs[key]))


def test_html_is_self_contained_with_embedded_images(built):
    root, _, _ = built
    text = (root / "results/report/report.html").read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(text)
    # 2 gain charts + per dataset: fusion grid and the task overlay grid
    assert len(parser.images) >= 6
    assert all(src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for src in parser.images)
    assert parser.refs == [] and "script" not in parser.tags and "link" not in parser.tags
    assert "url(" not in text and "http://" not in text and "https://" not in text
    for title in ("How much does fusion help", "Object detection", "Semantic segmentation",
                  "fusion metrics", "How big and how fast", "What the images look like",
                  "How these numbers were produced"):
        assert title in text
    assert "<strong>" in text and "Nabf ↓" in text and "EN ↑" in text
    md = (root / "results/report/report.md").read_text()
    for link in [l.split("](")[1].rstrip(")") for l in md.splitlines() if l.startswith("![")]:
        assert (root / "results/report" / link).is_file()


def test_best_value_marked_per_direction(built):
    root, _, summary = built
    md = (root / "results/report/report.md").read_text()
    rows = summary["fusion_metrics"]["m3fd"]
    best_nabf = min(rows.values(), key=lambda r: r["Nabf"])["Nabf"]
    best_en = max(rows.values(), key=lambda r: r["EN"])["EN"]
    assert f"**{best_nabf:.4g}**" in md and f"**{best_en:.4g}**" in md
    csvs = {p.name for p in (root / "results/report").glob("*.csv")}
    assert csvs == {"gains.csv", "efficiency.csv", "fusion_metrics_m3fd.csv", "fusion_metrics_msrs.csv",
                    "detection_m3fd.csv", "segmentation_msrs.csv"}


def test_report_flow_body_publishes_the_whole_folder(tmp_path, monkeypatch):
    """The flow's body (without the Prefect server): report folder appears complete, staging removed."""
    from flows.report import report_flow

    params = synthesise(tmp_path, seed=3)
    monkeypatch.chdir(tmp_path)
    summary = report_flow.body(params, root=str(tmp_path))
    out = tmp_path / "results/report"
    assert {"summary.json", "report.html", "report.md", "gains.csv"} <= {p.name for p in out.iterdir()}
    assert not list((tmp_path / "results").glob(".report.partial-*"))
    assert json.loads((out / "summary.json").read_text())["gains"].keys() == summary["gains"].keys()


def test_missing_single_modality_row_gives_no_gain_instead_of_zero(tmp_path):
    params = synthesise(tmp_path, seed=4)
    shutil.rmtree(tmp_path / "results/segmentation/msrs/ir")
    summary = build_report(params, tmp_path)
    g = summary["gains"]["segmentation"]["msrs"]["mlfuse"]
    assert g["vs_ir"] is None and g["vs_best_single"] is None and g["best_single"] is None
    assert g["ci95"] is None and g["ci95_vs_ir"] is None
    vis = summary["segmentation"]["msrs"]["vis"]["mIoU"]
    assert g["vs_vis"] == pytest.approx(g["value"] - vis) and g["ci95_vs_vis"][0] <= g["ci95_vs_vis"][1]
    row = pd.read_csv(tmp_path / "results/report/gains.csv").set_index("system").loc["segmentation/msrs/mlfuse"]
    assert math.isnan(row["vs_ir"]) and row["verdict"] == "no single-modality baseline"
    assert summary["missing"]["segmentation"] == {"msrs": ["ir", NOT_RUN]}


def test_all_zero_task_is_flagged_and_ties_named(tmp_path):
    """A detector that learned nothing (every mAP 0, as a too-short demo training gives) is called
    out at the top instead of crowning an arbitrary 'best' method."""
    params = synthesise(tmp_path, seed=5)
    for method in METHODS:
        path = tmp_path / f"results/detection/m3fd/{method}/metrics.json"
        obj = json.loads(path.read_text())
        obj["mAP50"] = 0.0
        write_json(path, obj)
    build_report(params, tmp_path)
    md = (tmp_path / "results/report/report.md").read_text()
    assert "WARNING: every detection result on m3fd has mAP50 = 0" in md
    assert "best fusion methods (tied) `average`, `mlfuse` with 0.000" in md
