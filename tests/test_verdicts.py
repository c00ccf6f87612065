"""Verdicts with training variance: the two-level bootstrap (seeds, then images), the seed rule, the
sensitivity check with controls, and the report's honesty rules (issue 16 items 1-2, issue 18
item 7). Everything is built from synthetic result files; nothing is trained."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.report import build_report
from pipeline.report.bootstrap import Resamples, mean_statistic, paired_bootstrap, seed_weights
from pipeline.report.gains import verdict
from pipeline.results import write_json
from pipeline.segmentation import metrics as seg_metrics
from test_report import DET_CLASSES, SMALL, _detections

SEG_CLASSES = ["unlabelled", "car", "person"]


# ------------------------------------------------------------------------------------ bootstrap


def test_two_level_bootstrap_variance_is_seed_plus_image_term():
    """x[s, i] = a_s + c_i: T* = (1/S) sum_s V_s a_s + (1/n) sum_i W_i c_i with V ~ Mult(S, 1/S),
    W ~ Mult(n, 1/n) independent, so Var* T* = var(a)/S + var(c)/n (population variances) and
    E* T* = mean(a) + mean(c). The image-only bootstrap would give var(c)/n alone."""
    a = np.array([0.0, 0.3, -0.2, 0.5])                 # seed effects, var = 0.07375
    c = np.linspace(-1.0, 1.0, 9)                       # image effects, var = 0.41667
    x = a[:, None] + c[None, :]
    draws = Resamples(len(c), n_boot=40000, seed=3)
    boot, full = draws.values(mean_statistic(x))
    expected = a.var() / len(a) + c.var() / len(c)
    assert full == pytest.approx(a.mean() + c.mean(), abs=1e-12)
    # Monte Carlo: the sample variance of 40000 draws has relative s.e. ~ sqrt(2/B) = 0.7 %
    assert boot.var() == pytest.approx(expected, rel=0.04)
    assert boot.mean() == pytest.approx(full, abs=4 * np.sqrt(expected / 40000))
    assert c.var() / len(c) < 0.75 * expected          # the seed term is not negligible here


def test_pairing_cancels_shared_image_effects_and_pairs_seeds():
    """method x = a_s + c_i + 0.1, baseline y = b_s + c_i: the same W and V for both, so the
    difference is 0.1 + (1/S) sum V_s (a_s - b_s) and Var* = var(a - b)/S, with no image term."""
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(0, 0.05, 3), rng.normal(0, 0.05, 3), rng.normal(0, 1.0, 20)
    method, base = mean_statistic(a[:, None] + c + 0.1), mean_statistic(b[:, None] + c)
    draws = Resamples(len(c), n_boot=30000, seed=1)
    diff = draws.values(method)[0] - draws.values(base)[0]
    assert diff.var() == pytest.approx((a - b).var() / 3, rel=0.05)
    interval = paired_bootstrap(method, base, len(c), n_boot=2000, seed=1, confidence=0.9)
    assert interval.seeds == (3, 3)
    assert interval.estimate == pytest.approx(0.1 + (a - b).mean(), abs=1e-12)


def test_seed_draws_are_multiplicities_and_one_seed_is_kept():
    v = seed_weights(3, 500, seed=0)
    assert v.shape == (500, 3) and (v.sum(axis=1) == 3).all() and (v.min() == 0)
    assert (seed_weights(1, 10) == 1).all()
    assert (seed_weights(3, 50, seed=7) == seed_weights(3, 50, seed=7)).all()


@pytest.mark.parametrize("seeds, expected", [(1, ("inconclusive", "1 seed (fewer than 3)")),
                                             (2, ("inconclusive", "2 seeds (fewer than 3)")),
                                             (3, ("better", "interval excludes 0 with 3 seeds"))])
def test_verdict_needs_min_seeds(seeds, expected):
    assert verdict(0.02, 0.08, seeds, 3) == expected
    assert verdict(-0.08, -0.02, seeds, 2)[0] == ("worse" if seeds >= 2 else "inconclusive")


def test_verdict_reasons():
    assert verdict(-0.01, 0.03, 5, 3) == ("inconclusive", "interval includes 0")
    assert verdict(0.01, 0.03, 5, 3, sensitivity_ok=False) == ("inconclusive", "sensitivity check failed")
    assert verdict(None, None, 5, 3)[0] == "no interval"


# ------------------------------------------------------------------------------------ synthetic project


def _write_methods(root: Path, skills: dict[str, float], seeds: int, n: int = 16, seed: int = 0) -> None:
    """Detection (predictions.json per seed) and segmentation (per-seed per-image confusions) results
    of each method with the given skill; seed-to-seed skill jitter ±0.02."""
    rng = np.random.default_rng(seed)
    names = [f"{i:05d}" for i in range(n)]
    gts = {}
    for name in names:
        k = int(rng.integers(1, 4))
        xy = rng.uniform(0, 90, size=(k, 2))
        gts[name] = ([[float(x), float(y), float(x + 25), float(y + 25)] for x, y in xy],
                     [DET_CLASSES[i] for i in rng.integers(0, len(DET_CLASSES), k)])
    c = len(SEG_CLASSES)
    for method, skill in skills.items():
        det, seg = root / "results/detection/m3fd" / method, root / "results/segmentation/msrs" / method
        per_seed_det, per_seed_seg = {}, {}
        confusions = np.zeros((seeds, n, c, c), np.int64)
        for s in range(seeds):
            level = float(np.clip(skill + rng.uniform(-0.02, 0.02), 0, 1))
            records = [{"name": nm, "gt": {"boxes": gts[nm][0], "classes": gts[nm][1]},
                        "pred": _detections(rng, *gts[nm], level)} for nm in names]
            write_json(det / f"seed_{s}/predictions.json", {"seed": s, "classes": DET_CLASSES, "images": records})
            from pipeline.detection import ap as ap_metric
            result = ap_metric.evaluate(records)
            per_seed_det[str(s)] = {"mAP50": result.map50, "mAP50_95": result.map50_95}
            for i in range(n):
                truth = rng.integers(500, 2000, c)
                for g, count in enumerate(truth):
                    right = int(count * level)
                    confusions[s, i, g, g] = right
                    confusions[s, i, g, (g + 1) % c] += count - right
            per_seed_seg[str(s)] = {"mIoU": seg_metrics.summarize(confusions[s].sum(0), SEG_CLASSES)["mIoU"]}
        mean = lambda d, k: float(np.mean([v[k] for v in d.values()]))  # noqa: E731
        write_json(det / "metrics.json", {"mAP50": mean(per_seed_det, "mAP50"),
                                          "mAP50_95": mean(per_seed_det, "mAP50_95"), "AP50": {},
                                          "seeds": list(range(seeds)), "per_seed": per_seed_det})
        seg.mkdir(parents=True, exist_ok=True)
        np.savez(seg / "per_image_confusion.npz", names=np.array(names), classes=np.array(SEG_CLASSES),
                 seeds=np.arange(seeds), confusion=confusions.sum(0), per_seed=confusions)
        write_json(seg / "metrics.json", {"mIoU": mean(per_seed_seg, "mIoU"), "IoU": {},
                                          "seeds": list(range(seeds)), "per_seed": per_seed_seg})


def _params(methods, **report) -> dict:
    return {"profile": "demo", "datasets": {"m3fd": {"kind": "m3fd", "root": "absent", "task": "detection"},
                                            "msrs": {"kind": "msrs", "root": "absent", "task": "segmentation"}},
            "fusion": {"methods": {m: ({"kind": m} if m in ("oracle", "shuffled") else {}) for m in methods}},
            "report": {**SMALL, "bootstrap_samples": 300, "example_scenes": 0, **report}}


GOOD = {"ir": 0.55, "vis": 0.5, "average": 0.8, "oracle": 0.9, "shuffled": 0.1}


def _summary(tmp_path, skills, seeds, **report) -> dict:
    _write_methods(tmp_path, skills, seeds)
    return build_report(_params(list(skills), **report), tmp_path)


def test_controls_pass_and_real_verdicts_are_given(tmp_path):
    summary = _summary(tmp_path, GOOD, seeds=3)
    check = summary["sensitivity"]
    assert check["status"] == "passed", check["message"]
    assert check["passed"] is True                      # a boolean for `dvc metrics diff`
    assert {(c["control"], c["task"]) for c in check["checks"]} == {
        (m, t) for m in ("oracle", "shuffled") for t in ("detection", "segmentation")}
    for task, dataset in (("detection", "m3fd"), ("segmentation", "msrs")):
        g = summary["gains"][task][dataset]
        assert g["average"]["verdict"] == "better" and g["average"]["seeds_used"] == [3, 3]
        assert len(g["average"]["per_seed"]) == 3
        assert g["oracle"]["control"] == "positive" and g["shuffled"]["control"] == "negative"
    md = (tmp_path / "results/report/report.md").read_text()
    assert "Sensitivity check passed" in md.split("## How much")[0]
    # controls are never ranked as the best method, shown apart and never bolded
    assert "best fusion method `average`" in md and "best fusion method `oracle`" not in md
    rows = [line for line in md.splitlines() if line.startswith("| oracle (positive control)")]
    assert len(rows) == 2 and not any("**" in line for line in rows)       # detection and segmentation
    tables = md.split("## Object detection")[1].split("## How good")[0]
    order = [line.split("|")[1].strip() for line in tables.splitlines() if line.startswith("| ")]
    assert order.index("oracle (positive control)") > order.index("average")   # controls listed last


def test_failed_sensitivity_check_suppresses_every_verdict(tmp_path):
    """The oracle is no better than infrared: the benchmark cannot be shown to see a gain, so
    `average` (clearly better, 3 seeds) gets no verdict either."""
    summary = _summary(tmp_path, {**GOOD, "oracle": GOOD["ir"]}, seeds=3)
    check = summary["sensitivity"]
    assert check["status"] == "failed" and "too small to judge any method" in check["message"]
    failed = {(c["control"], c["task"]) for c in check["checks"] if not c["passed"]}
    assert ("oracle", "detection") in failed and ("oracle", "segmentation") in failed
    for per_method in (summary["gains"]["detection"]["m3fd"], summary["gains"]["segmentation"]["msrs"]):
        entry = per_method["average"]
        assert entry["ci95"][0] > 0                      # it would have been "better"
        assert entry["verdict"] == "inconclusive" and "sensitivity check failed" in entry["verdict_reason"]
    md = (tmp_path / "results/report/report.md").read_text()
    assert "Sensitivity check failed" in md and "better than the best single modality" not in md


def test_sensitivity_check_needs_both_tasks(tmp_path):
    """Controls pass on segmentation, but detection has no results: the check fails."""
    _write_methods(tmp_path, GOOD, seeds=3)
    shutil.rmtree(tmp_path / "results/detection")
    summary = build_report(_params(list(GOOD)), tmp_path)
    assert summary["sensitivity"]["status"] == "failed" and "no detection results" in summary["sensitivity"]["message"]
    assert summary["gains"]["segmentation"]["msrs"]["average"]["verdict"] == "inconclusive"


@pytest.mark.parametrize("seeds", [1, 2])
def test_fewer_than_three_seeds_is_inconclusive(tmp_path, seeds):
    summary = _summary(tmp_path, GOOD, seeds=seeds)
    assert summary["sensitivity"]["status"] == "failed"
    entry = summary["gains"]["segmentation"]["msrs"]["average"]
    assert entry["verdict"] == "inconclusive"
    assert f"{seeds} seed" in entry["verdict_reason"]
    oracle = summary["gains"]["segmentation"]["msrs"]["oracle"]
    assert oracle["verdict"] == "inconclusive" and f"{seeds} seed" in oracle["verdict_reason"]


def test_min_seeds_is_a_param(tmp_path):
    summary = _summary(tmp_path, GOOD, seeds=2, min_seeds=2)
    assert summary["sensitivity"]["status"] == "passed"
    assert summary["gains"]["segmentation"]["msrs"]["average"]["verdict"] == "better"


# ------------------------------------------------------------------------------------ issue 18 item 7


def test_confidence_label_follows_the_param(tmp_path):
    summary = _summary(tmp_path, {"ir": 0.5, "vis": 0.6, "average": 0.7}, seeds=3, confidence=0.9)
    md = (tmp_path / "results/report/report.md").read_text()
    html = (tmp_path / "results/report/report.html").read_text()
    assert "90 %" in md and "95 %" not in md and "95 %" not in html
    assert summary["bootstrap"]["confidence"] == 0.9
    assert summary["sensitivity"]["status"] == "not run"


def test_precomputed_has_no_size_or_speed_and_unconfigured_methods_are_not_reported(tmp_path):
    _write_methods(tmp_path, {"ir": 0.5, "vis": 0.6, "theirs": 0.7, "old": 0.9}, seeds=1)
    for method, kind, params, speed in (("ir", "baseline", 0, 0.002), ("vis", "baseline", 0, 0.003),
                                        ("theirs", "precomputed", 0, 0.0001), ("old", "network", 10, 0.5)):
        write_json(tmp_path / f"results/fusion/{method}/m3fd.json", {
            "method": method, "dataset": "m3fd", "kind": kind, "images": 16, "params": params,
            "gflops": 0.0, "seconds_per_image": speed})
    params = _params(["ir", "vis", "theirs"])
    params["fusion"]["methods"]["theirs"] = {"kind": "precomputed", "folder": "elsewhere"}
    summary = build_report(params, tmp_path)
    md = (tmp_path / "results/report/report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| theirs "))
    eff = md.split("## How big and how fast")[1]
    theirs = next(line for line in eff.splitlines() if line.startswith("| theirs "))
    assert theirs.count("n/a") >= 3 and "**" not in theirs and "0.0001" not in theirs
    assert "**0.002**" in eff                         # the fastest real measurement is bolded instead
    assert row
    # `old` has results on disk but is not configured: nowhere in the report
    assert "old" not in summary["gains"]["detection"]["m3fd"] and "old" not in summary["detection"]["m3fd"]
    assert "old" not in summary["efficiency"] and summary["not_configured"] == ["old"]
    assert "| old " not in md
    assert json.loads((tmp_path / "results/report/summary.json").read_text())["not_configured"] == ["old"]
