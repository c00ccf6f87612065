"""The Dask task runner (local cluster, 2 worker processes) gives exactly the thread runner's results."""
from __future__ import annotations

import json

import pandas as pd

from _orchestration_data import tiny_params, tiny_project


def test_metrics_flow_dask_equals_threads(tmp_path, monkeypatch, prefect_harness):
    from flows.metrics import metrics_flow

    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path)
    out = {}
    for runner in ("thread", "dask"):
        assert metrics_flow(tiny_params(runner), method="avg") == {"tiny": 6}
        folder = tmp_path / "results" / "metrics" / "avg"
        out[runner] = (pd.read_csv(folder / "tiny.csv", dtype={"name": str}),
                       json.loads((folder / "summary.json").read_text()))
        summary = json.loads((tmp_path / "results" / "flow_runs" / "metrics.json").read_text())
        assert summary["status"] == "completed"
        assert sorted(u["unit"] for u in summary["units"]) == ["tiny:0", "tiny:2", "tiny:4"]
        folder.rename(folder.with_name(f"avg_{runner}"))
    pd.testing.assert_frame_equal(out["thread"][0], out["dask"][0], check_exact=True)
    assert list(out["thread"][0]["name"]) == [f"{i:03d}" for i in range(6)]
    assert out["thread"][1]["datasets"] == out["dask"][1]["datasets"]
