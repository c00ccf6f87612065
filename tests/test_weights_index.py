"""Per-method weights records (pipeline.fusion.weights_index): fuse@<method> depends on its own record,
so retraining one method changes only that method's record."""
from __future__ import annotations

import torch

from pipeline.fusion.weights_index import record, write_index


def test_only_the_retrained_method_record_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = tmp_path / "models" / "trained"
    trained.mkdir(parents=True)
    for name in ("pmgi", "densefuse"):
        torch.save({"method": name, "model": {}}, trained / f"{name}.pth")
    methods = {"average": {}, "pmgi_trained": {"kind": "pmgi", "weights": "trained"},
               "densefuse_trained": {"kind": "densefuse", "weights": "trained"},
               "broken": {"kind": "no_such_method"}}
    before = {p.name: p.read_bytes() for p in write_index(methods, tmp_path / "idx")}
    assert set(before) == {"average.json", "pmgi_trained.json", "densefuse_trained.json", "broken.json"}
    assert record("average", {})["files"] == []
    assert "no_such_method" in record("broken", {"kind": "no_such_method"})["error"]
    torch.save({"method": "pmgi", "model": {}, "epoch": 1}, trained / "pmgi.pth")   # retrained
    after = {p.name: p.read_bytes() for p in write_index(methods, tmp_path / "idx")}
    assert [n for n in before if before[n] != after[n]] == ["pmgi_trained.json"]
    write_index({"average": {}}, tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["average.json"]


def test_versus_average_rows(tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.results import write_json

    for method, ssim in (("average", 0.42), ("pmgi_trained", 0.45)):
        write_json(tmp_path / method / "summary.json", {"datasets": {
            "m3fd": {"SSIM": {"mean": ssim}, "Qabf": {"mean": 0.40}}, "msrs": {"SSIM": {"mean": ssim - 0.02}, "Qabf": {"mean": 0.38}}}})
    assert main(["versus", "--results", str(tmp_path), "--methods", "pmgi_trained"]) == 0
    out = capsys.readouterr().out
    assert "pmgi_trained           mean     SSIM     0.4400   0.4100  +0.0300 ok" in out
    assert out.count(" ok") == 6
