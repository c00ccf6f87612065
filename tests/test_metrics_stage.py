"""Metrics stage functions, the ``metrics`` CLI and the ``bench metrics`` benchmark."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.imageio import write_image
from pipeline.metrics import compute_metrics, metric_names
from pipeline.metrics.stage import evaluate_triples, summarise, triples_for_dataset, write_metric_results


def _write_set(root: Path, n: int = 3, colour_fused: bool = True):
    rng = np.random.default_rng(7)
    jobs = []
    for k in range(n):
        ir = rng.integers(0, 200, (50, 54), dtype=np.uint8)
        vis = rng.integers(30, 256, (50, 54, 3), dtype=np.uint8) if colour_fused else \
            rng.integers(30, 256, (50, 54), dtype=np.uint8)
        grey_vis = vis[:, :, 1] if vis.ndim == 3 else vis
        fused = np.maximum(ir, grey_vis)
        if colour_fused:
            fused = np.stack([fused, fused // 2, fused], axis=2).astype(np.uint8)
        name = f"img{k:02d}"
        for sub, img in (("ir", ir), ("vi", vis), ("fused", fused)):
            write_image(root / sub / f"{name}.png", img)
        jobs.append((name, "test" if k else "train", root / "ir" / f"{name}.png", root / "vi" / f"{name}.png",
                     root / "fused" / f"{name}.png"))
    return jobs


def test_evaluate_triples_serial_and_parallel_agree(tmp_path):
    jobs = _write_set(tmp_path)
    convention, only = "matlab", "EN,MI,SSIM,FMI_pixel,Nabf"
    serial = evaluate_triples(jobs, convention, only=only, workers=1, progress=False)
    parallel = evaluate_triples(list(reversed(jobs)), convention, only=only, workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    assert list(serial["name"]) == ["img00", "img01", "img02"]
    assert list(serial["split"]) == ["train", "test", "test"]
    # a colour fused file is converted once with the convention's grey rule, like compute_metrics
    from pipeline.imageio import read_image
    name, _, ir, vis, fused = jobs[1]
    direct = compute_metrics(read_image(ir), read_image(vis), read_image(fused), convention, only=only)
    assert serial.iloc[1][list(direct)].to_dict() == direct


def test_write_results_layout_and_merge(tmp_path):
    jobs = _write_set(tmp_path / "data", colour_fused=False)
    frame = evaluate_triples(jobs, "cddfuse", workers=1, progress=False)
    out = tmp_path / "results" / "metrics"
    assert frame.attrs["convention"] == "cddfuse"
    csv_path, summary_path = write_metric_results(frame, out, "msrs", "max", params={"a": 1})
    assert csv_path == out / "max" / "msrs.csv" and summary_path == out / "max" / "summary.json"
    back = pd.read_csv(csv_path)
    assert list(back.columns) == ["name", "split", *metric_names("cddfuse")]
    assert np.allclose(back["VIF"], frame["VIF"])
    write_metric_results(frame.iloc[:2], out, "m3fd", "max", convention="cddfuse")
    summary = json.loads(summary_path.read_text())
    assert summary["convention"] == "cddfuse"
    assert summary["directions"]["MSE"] == "down" and summary["directions"]["EN"] == "up"
    assert set(summary["datasets"]) == {"msrs", "m3fd"}
    assert summary["datasets"]["m3fd"]["EN"]["n"] == 2
    en = frame["EN"].to_numpy()
    assert summary["datasets"]["msrs"]["EN"] == {"mean": pytest.approx(en.mean()), "std": pytest.approx(en.std()),
                                                 "n": 3}
    assert summary["provenance"]["msrs"]["params"] == {"a": 1}
    assert "versions" in summary["provenance"]["m3fd"]
    # another convention replaces the summary instead of mixing conventions
    write_metric_results(evaluate_triples(jobs, "matlab", "EN", 1, progress=False), out, "msrs", "max")
    summary = json.loads(summary_path.read_text())
    assert summary["convention"] == "matlab" and set(summary["datasets"]) == {"msrs"}


def test_summary_skips_non_finite():
    frame = pd.DataFrame({"name": ["a", "b", "c"], "split": ["test"] * 3, "PSNR": [10.0, float("inf"), 20.0],
                          "MS_SSIM": [float("nan")] * 3})
    stats = summarise(frame)
    assert stats["PSNR"] == {"mean": 15.0, "std": 5.0, "n": 2}
    assert stats["MS_SSIM"]["n"] == 0 and np.isnan(stats["MS_SSIM"]["mean"])


def test_missing_fused_image_is_named(tmp_path):
    from types import SimpleNamespace

    sample = SimpleNamespace(name="x01", split="test", ir=tmp_path / "ir.png", vis=tmp_path / "vi.png")
    with pytest.raises(DataError, match="fused image folder not found"):
        triples_for_dataset([sample], tmp_path / "fused" / "max")
    write_image(tmp_path / "fused" / "max" / "x02.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="1 of 1 images missing from the fused folder: x01"):
        triples_for_dataset([sample], tmp_path / "fused" / "max")


def test_cli_json_and_errors(tmp_path, capsys):
    jobs = _write_set(tmp_path, n=1, colour_fused=False)
    _, _, ir, vis, fused = jobs[0]
    assert main(["metrics", "--ir", str(ir), "--vis", str(vis), "--fused", str(fused), "--convention", "cddfuse",
                 "--only", "EN,VIFF,PSNR", "--json"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert list(values) == ["EN", "VIF", "PSNR"]
    from pipeline.imageio import read_image
    expected = compute_metrics(read_image(ir), read_image(vis), read_image(fused), "cddfuse", only="EN,VIF,PSNR")
    assert values == pytest.approx(expected, rel=1e-15)
    # identical images: PSNR = inf is printed as null in JSON
    assert main(["metrics", "--ir", str(ir), "--vis", str(ir), "--fused", str(ir), "--only", "PSNR", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"PSNR": None}
    small = tmp_path / "small.png"
    write_image(small, np.zeros((10, 10), np.uint8))
    assert main(["metrics", "--ir", str(ir), "--vis", str(vis), "--fused", str(small)]) == 2
    assert "same size" in capsys.readouterr().err
    assert main(["metrics", "--ir", str(ir), "--vis", str(vis), "--fused", str(fused), "--only", "NOPE"]) == 2


def test_bench_metrics_prints_one_json_line(capsys):
    assert main(["bench", "metrics", "--convention", "matlab", "--size", "48x64", "--repeat", "1",
                 "--only", "EN,FMI_dct,MS_SSIM"]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert record["benchmark"] == "metrics" and record["size"] == "48x64"
    assert record["metrics"] == ["EN", "FMI_dct", "MS_SSIM"]
    assert record["median_seconds_per_triple"] > 0
    assert set(record["per_metric_median_seconds"]) == {"EN", "FMI_dct", "MS_SSIM"}
