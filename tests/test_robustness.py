"""Robustness study: rank correlations on synthetic results with a known ordering, the report's
robustness / frozen / metric-prediction tables on synthetic result trees, the label frame of
perturbed evaluation folders, and bad input."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ConfigError, DataError
from pipeline.report.ranks import by_units, kendall, spearman

CONFIG = {"samples": 200, "seed": 0, "confidence": 0.95, "most_used_metric": "EN"}


def test_rank_correlations_known_orderings():
    x = [1, 2, 3, 4, 5]
    assert spearman(x, [10, 20, 30, 40, 50]) == pytest.approx(1.0)
    assert spearman(x, [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall(x, [1, 3, 2, 4, 5]) == pytest.approx(0.8)       # one discordant pair of 10
    assert np.isnan(spearman(x, [1, 1, 1, 1, 1]))


def test_by_units_keeps_seeds_of_a_method_together():
    methods = np.repeat(["a", "b", "c", "d", "e"], 3)
    x = np.repeat([1.0, 2, 3, 4, 5], 3)
    y = x * 10 + np.tile([0.0, 0.1, 0.2], 5)        # seeds never interleave across methods
    corr = by_units(x, y, methods, n_boot=300)
    assert corr.spearman == pytest.approx(1.0) and corr.n_units == 5 and corr.n == 15
    assert corr.kendall == pytest.approx(1.0) and corr.spearman_ci[1] == pytest.approx(1.0)
    assert corr.spearman_ci[0] < 1.0               # resamples with repeated methods tie ranks
    flipped = by_units(x, -y, methods, n_boot=300)
    assert flipped.spearman == pytest.approx(-1.0) and flipped.spearman_ci[0] == pytest.approx(-1.0)


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_metric_prediction_table_recovers_known_ordering(tmp_path):
    from pipeline.report.predict import predict_blocks

    methods = ["ir", "vis", "f1", "f2", "f3", "f4", "f5"]
    for k, method in enumerate(methods):
        good, bad = float(k), float(-k)                       # GOOD tracks the score, BAD is reversed
        _write(tmp_path / "results/metrics" / method / "summary.json",
               {"convention": "matlab", "directions": {"GOOD": "up", "BAD": "up", "EN": "up"},
                "datasets": {"m3fd": {"GOOD": {"mean": good}, "BAD": {"mean": bad}, "EN": {"mean": [3, 1, 4, 1, 5, 9, 2][k]}}}})
        _write(tmp_path / "results/detection/m3fd" / method / "metrics.json",
               {"mAP50": 0.1 * k, "per_seed": {"0": {"mAP50": 0.1 * k}, "1": {"mAP50": 0.1 * k + 0.01}}})
    blocks, summary = predict_blocks(tmp_path, methods, {"detection": "m3fd"}, CONFIG, tmp_path / "out")
    import pandas as pd

    frame = pd.read_csv(tmp_path / "out" / "metrics_vs_downstream.csv").set_index("metric")
    assert frame.loc["GOOD", "spearman"] == pytest.approx(1.0)
    assert frame.loc["BAD", "spearman"] == pytest.approx(-1.0)
    assert frame.loc["GOOD", "n_methods"] == 5 and frame.loc["GOOD", "n_points"] == 10   # ir/vis left out
    assert summary["strongest"]["detection"]["metric"] in ("GOOD", "BAD")
    top = summary["strongest"]["detection"]["metric"]
    assert any(f"best is {top}" in getattr(b, "text", "") for b in blocks)       # the plain-language sentence


def _seg_results(folder: Path, method: str, quality: dict[str, float], n: int = 6, seeds=(0,), prefix: str = "",
                 noise: float = 0.01) -> None:
    """Synthetic robustness results: per group, each image's confusion has ``quality`` of its
    pixels right (2 classes, 100 pixels per class)."""
    from pipeline.segmentation.run import save_npz

    rng = np.random.default_rng(zlib.crc32(method.encode()))
    keys, mats = [], []
    for group, q in quality.items():
        for i in range(n):
            right = int(np.clip(round(100 * (q + rng.normal(0, noise))), 0, 100))
            keys.append(f"{group}/{i:05d}")
            mats.append(np.array([[right, 100 - right], [100 - right, right]]))
    for seed in seeds:
        save_npz(folder / method / f"{prefix}segmentation_seed{seed}.npz", names=np.array(keys),
                 classes=np.array(["bg", "car"]), confusion=np.array(mats))
    if prefix:
        return
    _write(folder / method / "summary.json", {"method": method, "seeds": {"segmentation": list(seeds)},
                                              "labels": {"shift": {"1": "a", "2": "b"}},
                                              "cost": {"segmentation": {"fusion_cpu_s_per_level": 0.1}}})


def test_robustness_tables_and_where_the_gain_is_lost(tmp_path):
    from pipeline.report.robustness import robustness_blocks

    base = tmp_path / "results" / "robustness"
    _seg_results(base, "ir", {"clean/0": 0.6, "shift/1": 0.6, "shift/2": 0.6}, noise=0.0)
    _seg_results(base, "vis", {"clean/0": 0.5, "shift/1": 0.5, "shift/2": 0.5})
    _seg_results(base, "good", {"clean/0": 0.9, "shift/1": 0.85, "shift/2": 0.6})    # gain gone at level 2
    _seg_results(base, "bad", {"clean/0": 0.55, "shift/1": 0.5, "shift/2": 0.4})     # never above ir
    _seg_results(base, "tie", {"clean/0": 0.6, "shift/1": 0.6, "shift/2": 0.6}, noise=0.0)   # = ir
    for method, q in (("ir", 0.6), ("vis", 0.5), ("good", 0.9), ("bad", 0.55)):       # retrain option: gain kept
        _seg_results(base, method, {"shift/1": q, "shift/2": q}, prefix="retrain_")
    blocks, summary = robustness_blocks(tmp_path, ["ir", "vis", "good", "bad", "tie"], {"segmentation": "msrs"}, CONFIG,
                                        tmp_path / "out")
    verdicts = {(r["protocol"], r["method"], r["family"]): r["verdict"] for r in summary["significance"]}
    assert verdicts[("clean-trained", "good", "shift")] == "lost at level 2"
    assert verdicts[("clean-trained", "bad", "shift")] == "below the best single modality already on clean data"
    assert verdicts[("clean-trained", "tie", "shift")] == "not significant even on clean data"
    assert verdicts[("retrained", "good", "shift")] == "significant at every level (0-2)"
    import pandas as pd

    levels = pd.read_csv(tmp_path / "out" / "robustness_levels.csv")
    levels = levels[levels["protocol"] == "clean-trained"]
    good = levels[(levels["method"] == "good") & (levels["family"] == "shift")].sort_values("level")
    assert good["level"].tolist() == [0, 1, 2]                      # clean rows start every family
    assert (good["best_single"] == "ir").all()
    assert good["gain"].iloc[0] == pytest.approx(good["score"].iloc[0] - levels[
        (levels["method"] == "ir") & (levels["level"] == 0)]["score"].iloc[0])
    assert {"robustness_segmentation.png", "robustness_segmentation_retrained.png"} <= {getattr(b, "name", "") for b in blocks}


def test_frozen_vs_retrain_rank_correlation(tmp_path):
    from pipeline.report.robustness import frozen_comparison
    from pipeline.segmentation.run import save_npz

    def confusions(q, n=8):
        right = [int(round(100 * q)) + i % 2 for i in range(n)]
        return np.array([[[r, 100 - r], [100 - r, r]] for r in right])

    names = np.array([f"{i:05d}" for i in range(8)])
    for k, method in enumerate(["ir", "vis", "a", "b", "c"]):
        conf = confusions(0.5 + 0.08 * k)
        save_npz(tmp_path / "results/segmentation/msrs" / method / "per_image_confusion.npz", names=names,
                 classes=np.array(["bg", "car"]), confusion=conf, per_seed=conf[None], seeds=np.array([0]))
        save_npz(tmp_path / "results/frozen" / method / "segmentation.npz", names=names, classes=np.array(["bg", "car"]),
                 confusion=confusions(0.4 + 0.05 * k))
    out = frozen_comparison(tmp_path, ["ir", "vis", "a", "b", "c"], {"segmentation": "msrs"}, CONFIG)
    corr = out["segmentation"]["correlation"]
    assert corr["spearman"] == pytest.approx(1.0) and corr["kendall"] == pytest.approx(1.0)
    assert out["segmentation"]["table"]["rank_frozen"].tolist() == [5, 4, 3, 2, 1]


def test_perturbed_evaluation_folder_keeps_visible_frame_boxes(tmp_path):
    from pipeline.datasets import Box, Sample
    from pipeline.imageio import write_image
    from pipeline.robustness.evaluate import Item, write_test_folder

    image = write_image(tmp_path / "img.png", np.zeros((40, 60), np.uint8))
    sample = Sample("00001", "test", image, image, boxes=(Box("Car", 10, 5, 30, 25),))
    items = [Item("clean/0/00001", image, sample), Item("misregistration/3/00001", image, sample)]
    data_yaml, truth = write_test_folder(items, ["People", "Car"], tmp_path / "yolo")
    assert truth["clean/0/00001"] == truth["misregistration/3/00001"]
    assert truth["misregistration/3/00001"]["boxes"] == [[10.0, 5.0, 30.0, 25.0]]
    assert (tmp_path / "yolo/labels/test/misregistration__3__00001.txt").read_text().startswith("1 ")


def test_bad_settings_and_missing_models(tmp_path):
    from pipeline.robustness.frozen import frozen_settings
    from pipeline.robustness.models import load_segmenter
    from pipeline.robustness.stage import robustness_settings

    from pipeline.config import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    robust, frozen = params["robustness"], params["frozen"]
    with pytest.raises(ConfigError, match="retrain"):
        robustness_settings({"robustness": {**robust, "retrain": "yes"}})
    with pytest.raises(ConfigError, match="unknown key.*level"):
        robustness_settings({"robustness": {**robust, "level": 3}})
    with pytest.raises(ConfigError, match="missing key.*tasks"):
        robustness_settings({"robustness": {k: v for k, v in robust.items() if k != "tasks"}})
    with pytest.raises(ConfigError, match="frozen.mix"):
        frozen_settings({"frozen": {**frozen, "mix": "ir"}})
    with pytest.raises(DataError, match="model.pth"):
        load_segmenter(tmp_path / "nope" / "model.pth")


def test_too_few_methods_give_no_interval():
    corr = by_units([1.0, 2, 3], [0.1, 0.2, 0.3], ["a", "b", "c"], n_boot=100)
    assert corr.spearman == pytest.approx(1.0)
    assert np.isnan(corr.spearman_ci[0]) and corr.valid == 0


def test_row_correlations_are_bit_equal_to_the_one_by_one_ones():
    """correlate() computes equal-length finite resamples together (spearman_rows, kendall_rows);
    they must give exactly spearman() / kendall() (scipy's tau-b), ties and constant rows included."""
    from pipeline.report.ranks import kendall_rows, spearman_rows

    rng = np.random.default_rng(3)
    for n in (2, 3, 7, 12):
        for levels in (None, 3):
            x, y = rng.random((300, n)), rng.random((300, n))
            if levels:
                x, y = np.round(x * levels) / levels, np.round(y * 2) / 2
            x[0] = 0.5
            assert np.array_equal(spearman_rows(x, y), [spearman(a, b) for a, b in zip(x, y)], equal_nan=True)
            assert np.array_equal(kendall_rows(x, y), [kendall(a, b) for a, b in zip(x, y)], equal_nan=True)
