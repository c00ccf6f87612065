"""Flows in-process (thread runner): a failing unit does not hide the others, nothing partial is
published, and a re-run resumes from the finished units."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from _orchestration_data import tiny_params, tiny_project


def _fail_batch(monkeypatch, module, name: str, failing_unit_start) -> None:
    """Make ``module.<name>`` (a batch task) raise for the batch whose first job is image ``failing_unit_start``."""
    original = getattr(module, name)

    def flaky(*args, **kwargs):
        jobs = args[0] if name == "score_batch" else args[2]
        if jobs[0].name == failing_unit_start:
            raise RuntimeError(f"injected failure at {failing_unit_start}")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)


def test_failed_batch_is_reported_nothing_published_and_rerun_resumes(tmp_path, monkeypatch, prefect_harness):
    import flows.metrics as metrics_module
    from flows.metrics import metrics_flow

    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path)
    with monkeypatch.context() as patch:
        _fail_batch(patch, metrics_module, "score_batch", "002")        # batch tiny:2 (002, 003) fails
        with pytest.raises(RuntimeError, match=r"1 of 3 units failed: tiny:2: .*injected failure at 002"):
            metrics_flow(tiny_params(), method="avg")
    final = tmp_path / "results" / "metrics" / "avg"
    assert not final.exists()                           # nothing DVC could cache
    run = json.loads((tmp_path / "results" / "flow_runs" / "metrics.json").read_text())
    assert run["status"] == "failed"
    assert [u["unit"] for u in run["failed_units"]] == ["tiny:2"]
    assert sorted(u["unit"] for u in run["units"] if u["status"] == "completed") == ["tiny:0", "tiny:4"]

    # the finished batches wait in the staging folder; mark one to see that the re-run reuses it
    (staging,) = (tmp_path / "results" / "metrics").glob(".avg.partial-*")
    _mark_done_batch(staging)
    assert metrics_flow(tiny_params(), method="avg") == {"tiny": 6}
    scores = pd.read_csv(final / "tiny.csv", dtype={"name": str})
    assert list(scores["name"]) == [f"{i:03d}" for i in range(6)]
    assert scores.loc[0, "EN"] == 123.0                 # resumed: batch tiny:0 was not scored again
    assert scores["EN"].iloc[1:].between(0, 8).all()
    assert not (final / ".batches").exists() and not staging.exists()
    summary = json.loads((final / "summary.json").read_text())
    assert summary["datasets"]["tiny"]["EN"]["n"] == 6


def _mark_done_batch(staging) -> None:
    done = staging / "avg" / ".batches" / "tiny-000000.csv"
    frame = pd.read_csv(done, dtype={"name": str, "split": str})
    frame.loc[0, "EN"] = 123.0
    frame.to_csv(done, index=False)


def test_metrics_resume_key_covers_the_fused_bytes(tmp_path, monkeypatch, prefect_harness):
    """Issue #18 defect 4: an interrupted metrics run followed by new fused images under the same
    names (a retrained method) scores every image again; nothing of the old images is reused."""
    import flows.metrics as metrics_module
    from flows.metrics import metrics_flow

    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path)
    with monkeypatch.context() as patch:
        _fail_batch(patch, metrics_module, "score_batch", "002")
        with pytest.raises(RuntimeError, match="1 of 3 units failed"):
            metrics_flow(tiny_params(), method="avg")
    (staging,) = (tmp_path / "results" / "metrics").glob(".avg.partial-*")
    _mark_done_batch(staging)
    _retrained(tmp_path, tmp_path / "data" / "fused" / "tiny" / "avg")   # new images, same names
    assert metrics_flow(tiny_params(), method="avg") == {"tiny": 6}
    scores = pd.read_csv(tmp_path / "results" / "metrics" / "avg" / "tiny.csv", dtype={"name": str})
    assert scores["EN"].between(0, 8).all()             # batch tiny:0 scored again (no 123.0)
    assert not staging.exists()


def _retrained(tmp_path, folder) -> None:
    """Rewrite the fused images in ``folder`` with other content under the same names."""
    tiny_project(tmp_path / "other", seed=1)
    for png in (tmp_path / "other" / "data" / "fused" / "tiny" / "avg").glob("*.png"):
        (folder / png.name).write_bytes(png.read_bytes())


def test_fuse_resume_key_covers_weights_and_input_bytes(tmp_path, monkeypatch, prefect_harness):
    """Issue #18 defect 4: an interrupted fuse run followed by other weights (here: the folder of a
    precomputed method, rewritten under the same names) fuses every image again."""
    import flows.fuse as fuse_module
    from flows.fuse import fuse_flow
    from pipeline.imageio import read_image

    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path)
    source = tmp_path / "data" / "fused" / "tiny" / "avg"
    made = tmp_path / "made" / "tiny"
    made.mkdir(parents=True)
    for png in source.glob("*.png"):
        (made / png.name).write_bytes(png.read_bytes())
    params = tiny_params()
    params["fusion"]["methods"] = {"pre": {"kind": "precomputed", "folder": "made"}}
    with monkeypatch.context() as patch:
        _fail_batch(patch, fuse_module, "fuse_batch", "002")
        with pytest.raises(RuntimeError, match="1 of 3 units failed"):
            fuse_flow(params, method="pre")
    assert list((tmp_path / "data" / "fused" / "tiny").glob(".pre.partial-*"))
    _retrained(tmp_path, made)
    fuse_flow(params, method="pre")
    out = tmp_path / "data" / "fused" / "tiny" / "pre"
    for png in made.glob("*.png"):
        assert (read_image(out / png.name) == read_image(png)).all(), png.name


def test_fuse_key_includes_the_weights_file(tmp_path):
    from flows.fuse import weights_digest
    from pipeline.fingerprint import clear_memo
    from pipeline.fusion.registry import get_method

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"a" * 64)
    method = get_method("mlfuse", weights=str(weights))
    first = weights_digest(method)
    assert list(first) == [str(weights)] and first[str(weights)]
    weights.write_bytes(b"b" * 64)
    clear_memo()
    assert weights_digest(method) != first


def test_metrics_splits_select_the_scored_images(tmp_path, monkeypatch):
    from flows.metrics import metrics_config, scored_samples

    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, n=3)
    params = tiny_params()
    assert [s.name for s in scored_samples(params, "tiny")] == ["000", "001", "002"]
    params["metrics"]["splits"] = ["test"]
    assert scored_samples(params, "tiny") == []                # `pairs` sets are all in split "all"
    assert metrics_config(params) == {"convention": "matlab", "only": "EN,SF,Qabf", "splits": ["test"]}


_ATTEMPTS: dict[str, int] = {}


def _unit(kind: str) -> str:
    _ATTEMPTS[kind] = _ATTEMPTS.get(kind, 0) + 1
    if kind == "bad_input":
        from pipeline.errors import DataError
        raise DataError("weights file not found", "w/missing.pt")
    if kind == "transient" and _ATTEMPTS[kind] == 1:
        raise OSError("disk hiccup")
    return kind


def test_bad_input_is_not_retried_but_a_transient_failure_is(prefect_harness):
    """A FuseBenchError (bad input: the same on every attempt) fails its unit at once; another
    exception gets the unit's retry."""
    from prefect import flow

    from flows._common import run_units

    @flow
    def units():
        return run_units("t", _unit, [(k, (k,)) for k in ("bad_input", "transient", "fine")],
                         retries=2, retry_delay_seconds=0)

    _ATTEMPTS.clear()
    report = units()
    assert _ATTEMPTS == {"bad_input": 1, "transient": 2, "fine": 1}
    status = {r.unit: (r.status, r.error) for r in report.records}
    assert status["bad_input"] == ("failed", "DataError: w/missing.pt: weights file not found")
    assert status["transient"][0] == status["fine"][0] == "completed"
