"""Diff-IF fusion knowledge prior (pipeline/prior.py; spec diffif.md §1.2-1.3): tie rule, winner
table, leakage guard, ir/vis refusal, metric cache across weight changes, unchanged copy."""
from __future__ import annotations

import pandas as pd
import pytest

from pipeline.errors import ConfigError
from pipeline.prior import PASSTHROUGH_REASON, build_prior, check_config, histogram, search
from tests._training import make_set

METHODS = {"ir": {}, "vis": {}, "average": {}, "max": {}, "laplacian": {"levels": 2}}


def _values(**per_image):
    return {name: {c: dict(zip(("SSIM", "VIF", "Qabf"), v)) for c, v in cands.items()}
            for name, cands in per_image.items()}


def test_tie_goes_to_the_first_listed_and_table_records_everything():
    values = _values(a={"max": (0.5, 0.5, 0.5), "average": (0.5, 0.5, 0.5)},      # exact tie
                     b={"max": (0.4, 0.5, 0.5), "average": (0.5, 0.5, 0.5)})      # average better
    weights = {"SSIM": 2, "VIF": 1, "Qabf": 3}
    winners, table = search(values, ["max", "average"], weights)
    assert winners == {"a": "max", "b": "average"}
    winners_rev, _ = search(values, ["average", "max"], weights)
    assert winners_rev["a"] == "average"
    assert list(table.columns) == ["name", "candidate", "SSIM_sum", "VIF_sum", "Qabf", "score", "winner"]
    assert len(table) == 4 and table.winner.sum() == 2
    row = table[(table.name == "b") & (table.candidate == "max")].iloc[0]
    assert row.score == pytest.approx(2 * 0.4 + 0.5 + 3 * 0.5)           # raw weighted sum
    assert histogram(winners, ["max", "average", "laplacian"]) == {"max": 1, "average": 1, "laplacian": 0}


def test_weights_change_the_winner_without_normalisation():
    values = _values(a={"max": (0.9, 0.1, 0.1), "average": (0.1, 0.6, 0.1)})
    assert search(values, ["max", "average"], {"SSIM": 2, "VIF": 1, "Qabf": 3})[0]["a"] == "max"
    assert search(values, ["max", "average"], {"SSIM": 0, "VIF": 1, "Qabf": 3})[0]["a"] == "average"


@pytest.mark.parametrize("split", ["test", "val", "all"])
def test_leakage_guard_refuses_non_training_splits(split):
    with pytest.raises(ConfigError, match="TRAINING images only.*leak"):
        check_config({"dataset": "x", "split": split, "candidates": ["max"]}, METHODS)


@pytest.mark.parametrize("passthrough", ["ir", "vis"])
def test_passthrough_candidates_refused_unless_forced(passthrough):
    cfg = {"dataset": "x", "split": "train", "candidates": ["max", passthrough]}
    with pytest.raises(ConfigError) as err:
        check_config(cfg, METHODS)
    assert PASSTHROUGH_REASON in str(err.value) and "force_passthrough" in str(err.value)
    assert check_config({**cfg, "force_passthrough": True}, METHODS).candidates == ("max", passthrough)


def test_unknown_candidate_and_weight_are_config_errors():
    with pytest.raises(ConfigError, match="not under fusion.methods"):
        check_config({"dataset": "x", "candidates": ["nope"]}, METHODS)
    with pytest.raises(ConfigError, match="unknown metric"):
        check_config({"dataset": "x", "candidates": ["max"], "weights": {"PSNR": 1}}, METHODS)


def test_faithful_label_only_for_the_released_set():
    methods = {m: {"kind": "precomputed", "folder": "/nowhere"} for m in ("ddfm", "metafusion", "u2fusion", "tardal")}
    cfg = {"dataset": "x", "candidates": ["ddfm", "metafusion", "u2fusion", "tardal"]}
    assert check_config(cfg, methods).label == "faithful"
    assert check_config({**cfg, "weights": {"Qabf": 2}}, methods).label == "variant"
    assert check_config({"dataset": "x", "candidates": ["max"]}, METHODS).label == "variant"


def _params(tmp_path, root, candidates, weights=None, methods=None):
    return {"datasets": {"tiny": {"kind": "msrs", "root": str(root), "task": "fusion"}},
            "fusion": {"methods": methods or METHODS},
            "prior": {"dataset": "tiny", "split": "train", "candidates": candidates,
                      "weights": weights or {"SSIM": 2, "VIF": 1, "Qabf": 3},
                      "out": str(tmp_path / "prior"), "results": str(tmp_path / "res"),
                      "cache": str(tmp_path / "cache")}}


def test_build_prior_copies_unchanged_and_reuses_metrics_when_weights_change(tmp_path):
    root = tmp_path / "tiny"
    make_set(root / "train", ["p1", "p2", "p3"], size=(48, 56))
    fused_dir = tmp_path / "elsewhere"                 # a precomputed candidate (its own files)
    make_set(fused_dir, ["p1", "p2", "p3"], size=(48, 56), seed=5)
    methods = {**METHODS, "ext": {"kind": "precomputed", "folder": str(fused_dir / "vi")}}
    cands = ["average", "max", "laplacian", "ext"]
    first = build_prior(_params(tmp_path, root, cands, methods=methods), tmp_path)
    assert first["metrics_computed"] == 12 and first["metrics_cached"] == 0
    assert sum(first["histogram"].values()) == 3 and first["label"] == "variant"
    winners = pd.read_csv(tmp_path / "res" / "tiny" / "winners.csv")
    for row in winners.itertuples():
        src = (fused_dir / "vi" / f"{row.name}.png" if row.winner == "ext" else
               tmp_path / "cache" / "tiny" / "fused" / row.winner / f"{row.name}.png")
        assert (tmp_path / "prior" / "tiny" / f"{row.name}.png").read_bytes() == src.read_bytes()
    scores = pd.read_csv(tmp_path / "res" / "tiny" / "scores.csv")
    assert len(scores) == 12 and scores.groupby("name").winner.sum().eq(1).all()

    second = build_prior(_params(tmp_path, root, cands, {"SSIM": 0, "VIF": 5, "Qabf": 0}, methods), tmp_path)
    assert second["metrics_computed"] == 0 and second["metrics_cached"] == 12
    rescored = pd.read_csv(tmp_path / "res" / "tiny" / "scores.csv")
    assert rescored.score.tolist() == pytest.approx((5 * scores.VIF_sum).tolist())
    assert rescored.VIF_sum.tolist() == scores.VIF_sum.tolist()


def test_changed_candidate_options_refuse_stale_images(tmp_path):
    root = tmp_path / "tiny"
    make_set(root / "train", ["p1", "p2"], size=(48, 56))
    build_prior(_params(tmp_path, root, ["laplacian", "max"]), tmp_path)
    methods = {**METHODS, "laplacian": {"levels": 3}}
    again = build_prior(_params(tmp_path, root, ["laplacian", "max"], methods=methods), tmp_path)
    assert again["metrics_computed"] == 2            # laplacian re-fused (new images), max reused
