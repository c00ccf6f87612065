"""Atomic stage outputs with resume (flows._staging) and the batch split used by the flows."""
from __future__ import annotations

import pytest

from flows._staging import publish, stage_key, staged, staging_path
from flows._batches import batches


def test_outputs_appear_only_when_the_block_succeeds(tmp_path):
    final = tmp_path / "fused" / "ir"
    with pytest.raises(RuntimeError):
        with staged([final], "k1") as (staging,):
            (staging / "a.png").write_text("a")
            raise RuntimeError("unit failed")
    assert not final.exists()                                   # nothing DVC could cache
    assert (staging_path(final, "k1") / "a.png").read_text() == "a"   # kept for resume

    with staged([final], "k1") as (staging,):
        assert (staging / "a.png").is_file()                   # resumed: earlier work is there
        (staging / "b.png").write_text("b")
    assert sorted(p.name for p in final.iterdir()) == ["a.png", "b.png"]
    assert not staging_path(final, "k1").parent.exists()


def test_changed_fingerprint_starts_clean_and_replaces_old_output(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(KeyError):
        with staged([final], "old") as (staging,):
            (staging / "stale.txt").write_text("x")
            raise KeyError("boom")
    final.mkdir()
    (final / "previous.txt").write_text("p")
    with staged([final], "new") as (staging,):
        assert not any(staging.iterdir())
    assert not staging_path(final, "old").parent.exists()
    assert list(final.iterdir()) == []                          # previous content replaced


def test_stage_key_tracks_params_and_flow_code(monkeypatch):
    from pipeline import fingerprint as F

    a = stage_key("flows.metrics", levels=4)
    assert a == stage_key("flows.metrics", levels=4)
    assert a != stage_key("flows.metrics", levels=5)
    assert a != stage_key("flows.fuse", levels=4)
    assert stage_key("flows.fuse", a=1, b=2) == stage_key("flows.fuse", b=2, a=1)
    monkeypatch.setattr(F, "code_digest", lambda module: "other code")   # the flow's code changed
    assert a != stage_key("flows.metrics", levels=4)


def test_publish_replaces_a_file_or_folder(tmp_path):
    staging, final = tmp_path / "s", tmp_path / "f"
    staging.mkdir()
    (staging / "x").write_text("new")
    final.write_text("old file")
    publish(staging, final)
    assert (final / "x").read_text() == "new" and not staging.exists()


def test_batches_cover_every_item_once():
    items = list(range(10))
    got = batches(items, 4)
    assert [start for start, _ in got] == [0, 4, 8]
    assert sum((b for _, b in got), []) == items
    assert batches(items, 0) == [(i, [i]) for i in items]


def test_fusion_batch_statistics_combine_weighted_by_computed_images():
    from flows.fuse import combine_stats

    parts = [{"images": 8, "computed": 8, "skipped": 0, "seconds_per_image": 0.5,
              "wall_seconds_per_image": 1.0, "gflops": 2.0},
             {"images": 8, "computed": 2, "skipped": 6, "seconds_per_image": 1.0,
              "wall_seconds_per_image": 2.0, "gflops": 2.0},
             {"images": 4, "computed": 0, "skipped": 4, "seconds_per_image": None,
              "wall_seconds_per_image": None, "gflops": None}]
    got = combine_stats(parts)
    assert got == {"images": 20, "computed": 10, "skipped": 10, "seconds_per_image": 0.6,
                   "wall_seconds_per_image": 1.2, "gflops": 2.0}
    assert combine_stats(parts[2:])["seconds_per_image"] is None


def test_unknown_fusion_method_is_a_config_error():
    from flows.fuse import fused_datasets, method_options
    from pipeline.errors import ConfigError

    params = {"fusion": {"methods": {"ir": {}, "laplacian": {"levels": 3}}}}
    assert method_options(params, "laplacian") == {"levels": 3}
    with pytest.raises(ConfigError, match="'nope' is not under fusion.methods .*ir, laplacian"):
        method_options(params, "nope")
    with pytest.raises(ConfigError, match="fusion.datasets"):     # no default in the code: params.yaml says
        fused_datasets(params)
    assert fused_datasets({"fusion": {"datasets": ["tno"]}}) == ["tno"]
