"""Flows in-process (thread runner): a failing unit does not hide the others, nothing partial is
published, and a re-run resumes from the finished units."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from _orchestration_data import tiny_params, tiny_project


def test_failed_batch_is_reported_nothing_published_and_rerun_resumes(tmp_path, monkeypatch, prefect_harness):
    from flows._staging import staging_path
    from flows.metrics import metrics_flow

    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path)
    broken = tmp_path / "data" / "fused" / "tiny" / "avg" / "003.png"
    good = broken.read_bytes()
    broken.write_bytes(b"not a png")                     # batch tiny:2 (images 002, 003) fails

    with pytest.raises(RuntimeError, match=r"1 of 3 units failed: tiny:2: .*003\.png"):
        metrics_flow(tiny_params(), method="avg")
    final = tmp_path / "results" / "metrics" / "avg"
    assert not final.exists()                           # nothing DVC could cache
    run = json.loads((tmp_path / "results" / "flow_runs" / "metrics.json").read_text())
    assert run["status"] == "failed"
    assert [u["unit"] for u in run["failed_units"]] == ["tiny:2"]
    assert sorted(u["unit"] for u in run["units"] if u["status"] == "completed") == ["tiny:0", "tiny:4"]

    # the finished batches wait in the staging folder; mark one to see that the re-run reuses it
    (staging,) = (tmp_path / "results" / "metrics").glob(".avg.partial-*")
    done = staging / "avg" / ".batches" / "tiny-000000.csv"
    frame = pd.read_csv(done, dtype={"name": str, "split": str})
    frame.loc[0, "EN"] = 123.0
    frame.to_csv(done, index=False)

    broken.write_bytes(good)
    assert metrics_flow(tiny_params(), method="avg") == {"tiny": 6}
    scores = pd.read_csv(final / "tiny.csv", dtype={"name": str})
    assert list(scores["name"]) == [f"{i:03d}" for i in range(6)]
    assert scores.loc[0, "EN"] == 123.0                 # resumed: batch tiny:0 was not scored again
    assert scores["EN"].iloc[1:].between(0, 8).all()
    assert not (final / ".batches").exists() and not staging.exists()
    summary = json.loads((final / "summary.json").read_text())
    assert summary["datasets"]["tiny"]["EN"]["n"] == 6


def test_metrics_splits_select_the_scored_images(tmp_path, monkeypatch):
    from flows.metrics import metrics_config, scored_samples

    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, n=3)
    params = tiny_params()
    assert [s.name for s in scored_samples(params, "tiny")] == ["000", "001", "002"]
    params["metrics"]["splits"] = ["test"]
    assert scored_samples(params, "tiny") == []                # `pairs` sets are all in split "all"
    assert metrics_config(params) == {"convention": "matlab", "only": "EN,SF,Qabf", "splits": ["test"]}
