"""Demo data generator: determinism, native layouts read by the loaders, complementary modalities."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipeline import cli
from pipeline.datasets import MSRS_SEG_CLASSES, check_boxes, load_dataset, read_pair, read_segmentation
from pipeline.demo_data import DemoConfig, generate, make_scene
from pipeline.errors import ConfigError

TINY = DemoConfig(seed=3, m3fd_pairs=10, msrs_train=6, msrs_test=4, height=96, width=128)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    return out, generate(out, TINY, workers=2)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    generate(again, TINY, workers=1)          # other thread count, same bytes
    first, second = _files(out), _files(again)
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] for k in first)
    other = tmp_path / "other"
    generate(other, DemoConfig(**{**TINY.__dict__, "seed": 4}))
    third = _files(other)
    changed = [k for k in first if k.endswith(".png") and first[k] != third.get(k)]
    assert len(changed) > 0.9 * sum(k.endswith(".png") for k in first)


def test_msrs_layout_read_by_the_loader(tiny):
    out, manifest = tiny
    ds = load_dataset("msrs", out / "MSRS")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 6, "test": 4}
    assert all(s.name[-1] in "DN" and len(s.name) == 6 for s in ds.samples)
    assert sum(s.name.endswith("N") for s in ds.samples) == manifest["msrs"]["night"]
    assert ds.box_classes == ("person", "bicycle", "car")
    for sample in ds.samples:
        raw_ir = cv2.imread(str(sample.ir), cv2.IMREAD_UNCHANGED)
        assert raw_ir.ndim == 2                           # MSRS ir: single channel
        ir, vis = read_pair(sample)
        assert ir.shape == (96, 128) and vis.shape == (96, 128, 3)
        label = read_segmentation(sample, len(MSRS_SEG_CLASSES), ir.shape)
        assert label.max() < len(MSRS_SEG_CLASSES)
        assert not check_boxes(sample, 128, 96)
        for box in sample.boxes:                          # a person box holds person pixels etc.
            cid = {"person": 2, "bicycle": 3, "car": 1}[box.cls]
            crop = label[round(box.y1):round(box.y2), round(box.x1):round(box.x2)]
            assert (crop == cid).mean() > 0.15


def test_m3fd_layout_read_by_the_loader(tiny):
    out, manifest = tiny
    ds = load_dataset("m3fd", out / "M3FD", classes=("People", "Car", "Lamp"))
    assert ds.split_source.startswith("lists")
    assert sorted(ds.splits) == ["test", "train", "val"] and len(ds.samples) == 10
    assert {k: len(v) for k, v in ds.splits.items()} == manifest["m3fd"]["split"]
    counts = {}
    for sample in ds.samples:
        raw_ir = cv2.imread(str(sample.ir), cv2.IMREAD_UNCHANGED)
        assert raw_ir.ndim == 3 and (raw_ir == raw_ir[:, :, :1]).all()   # 3 equal channels
        ir, vis = read_pair(sample)
        assert ir.ndim == 2 and vis.ndim == 3 and not np.array_equal(vis[..., 0], vis[..., 1])
        assert not check_boxes(sample, 128, 96)
        for box in sample.boxes:
            counts[box.cls] = counts.get(box.cls, 0) + 1
            assert box.y2 - box.y1 >= 8
    assert counts == manifest["m3fd"]["boxes_per_class"]
    # the default six-class list reads the same files: classes are mapped by name
    assert len(load_dataset("m3fd", out / "M3FD").samples) == 10


def test_manifest_and_readme(tiny):
    out, manifest = tiny
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["params"]["seed"] == 3 and manifest["params"]["height"] == 96
    assert "seed 3" in (out / "README.txt").read_text()
    assert not list(out.parent.glob(".demo.*"))          # no temporary folders left behind


def _ring(mask: np.ndarray, px: int = 5) -> np.ndarray:
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0
    return grown & ~mask


def test_modalities_are_complementary():
    """People are warm (infrared) but hard to see at night (visible); cold painted objects are
    colourful in visible and faint in infrared; night visible images are dark and noisy."""
    config = DemoConfig()
    stats: dict[tuple[str, bool], list] = {}
    for index in range(24):
        ir, vis, label, _objects, night = make_scene(config, "msrs", index)
        luma = cv2.cvtColor(vis, cv2.COLOR_RGB2GRAY).astype(float)
        irf, visf = ir.astype(float), vis.astype(float)
        for name in ("person", "color_cone", "bump", "curve", "car_stop"):
            mask = label == MSRS_SEG_CLASSES.index(name)
            ring = _ring(mask) & (label == 0)
            if mask.sum() >= 30 and ring.sum() >= 30:
                stats.setdefault((name, night), []).append(
                    (abs(irf[mask].mean() - irf[ring].mean()), abs(luma[mask].mean() - luma[ring].mean()),
                     np.linalg.norm(visf[mask].mean(0) - visf[ring].mean(0))))
        detail = np.std(luma - cv2.GaussianBlur(luma, (0, 0), 2))
        stats.setdefault(("frame", night), []).append((luma.mean(), detail / max(luma.mean(), 1)))
    med = {k: np.median(np.array(v), axis=0) for k, v in stats.items()}
    assert med[("person", True)][0] > 80 and med[("person", True)][1] < 20   # IR sees, night VIS not
    assert med[("person", False)][0] > 80
    for cold in ("color_cone", "bump", "curve", "car_stop"):
        ir_contrast, _luma, colour_contrast = med[(cold, False)]
        assert ir_contrast < 12 and colour_contrast > 40, cold
    (day_mean, day_noise), (night_mean, night_noise) = med[("frame", False)], med[("frame", True)]
    assert night_mean < 0.4 * day_mean and night_noise > 1.5 * day_noise


def test_cli_and_refusals(tmp_path, capsys):
    out = tmp_path / "d"
    rc = cli.main(["demo-data", "--out", str(out), "--seed", "1", "--m3fd", "3", "--msrs-train", "2",
                   "--msrs-test", "1", "--size", "64x96", "--params", str(tmp_path / "none.yaml")])
    assert rc == 0 and "MSRS: 2 train + 1 test" in capsys.readouterr().out
    assert len(list((out / "M3FD" / "Ir").iterdir())) == 3
    generate(out, DemoConfig(m3fd_pairs=1, msrs_train=1, msrs_test=0, height=64, width=64))
    assert len(list((out / "M3FD" / "Ir").iterdir())) == 1       # regenerated, nothing stale
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not FuseBench demo data"):
        generate(foreign, DemoConfig(m3fd_pairs=1, msrs_train=1, msrs_test=0, height=64, width=64))
    assert (foreign / "keep.txt").exists()
    with pytest.raises(ConfigError, match="not a folder"):
        generate(foreign / "keep.txt", DemoConfig(m3fd_pairs=1, msrs_train=1, msrs_test=0, height=64, width=64))
    with pytest.raises(ConfigError, match="divisible by 16"):
        DemoConfig(height=100)
    assert cli.main(["demo-data", "--out", str(tmp_path / "x"), "--size", "90x64"]) == 2
    assert "divisible by 16" in capsys.readouterr().err
