"""``validate`` on the real sets in ../shared/data (counts checked against an independent count of
the files) and on broken data (exit 1, one line per problem)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

import cv2
import numpy as np
import pytest

from pipeline import cli
from pipeline.datasets import MSRS_SEG_CLASSES
from pipeline.demo_data import DemoConfig, generate
from pipeline.imageio import write_image
from pipeline.validate import validate


def _run(capsys, *args):
    rc = cli.main(["validate", *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured.out, captured.err


def _files(folder, suffix=".png"):
    return sorted(p for p in folder.iterdir() if p.suffix == suffix)


@pytest.mark.shared
def test_msrs_real_counts(shared_data, capsys):
    root = shared_data / "MSRS"
    rc, out, err = _run(capsys, "--dataset", "msrs", "--root", root)
    assert rc == 0 and err == "" and out.rstrip().endswith("OK: no problems found")
    n_train, n_test = len(_files(root / "train" / "vi")), len(_files(root / "test" / "vi"))
    assert f": {n_train + n_test} pairs" in out and f"test {n_test}, train {n_train}" in out
    assert f"image sizes (HxW): 480x640 ({n_train + n_test})" in out
    boxes = Counter()
    for split in ("train", "test"):
        for txt in _files(root / "detection_labels" / "fusion" / split, ".txt"):
            boxes.update(int(line.split()[0]) for line in txt.read_text().splitlines() if line.strip())
    assert (f"boxes per class: person {boxes[0]}, bicycle {boxes[1]}, car {boxes[2]} "
            f"(total {sum(boxes.values())};") in out
    pixels = np.zeros(256, np.int64)
    for split in ("train", "test"):
        for png in _files(root / split / "Segmentation_labels"):
            label = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
            pixels += np.bincount((label if label.ndim == 2 else label[:, :, 0]).ravel(), minlength=256)
    for cid, name in enumerate(MSRS_SEG_CLASSES):
        assert f"{cid} {name} {pixels[cid]} (" in out
    assert pixels[len(MSRS_SEG_CLASSES):].sum() == 0


@pytest.mark.shared
def test_m3fd_real_counts(shared_data, capsys):
    root = shared_data / "M3FD"
    rc, out, _err = _run(capsys, "--dataset", "m3fd", "--root", root)
    assert rc == 0
    lists = {s: len((root / "meta" / f"{s}.txt").read_text().split()) for s in ("train", "val", "test")}
    assert f"test {lists['test']}, train {lists['train']}, val {lists['val']}" in out
    names = Counter(o.findtext("name") for xml in _files(root / "Annotation", ".xml")
                    for o in ET.parse(xml).getroot().iter("object"))
    assert ("boxes per class: " + ", ".join(f"{c} {names[c]}" for c in
                                            ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck"))) in out
    assert "image sizes (HxW): 768x1024 (30)" in out and "storage (infrared / visible): grey / colour (30)" in out


@pytest.mark.parametrize("kind, sub, quick", [("pairs", "RoadScene", False), ("pairs", "TNO", False),
                                              ("medical", "medical", False), ("medical", "medical/CT_MRI", True),
                                              ("msrs", "MSRS", True)])
@pytest.mark.shared
def test_other_real_sets(shared_data, capsys, kind, sub, quick):
    root = shared_data / sub
    rc, out, _err = _run(capsys, "--dataset", kind, "--root", root, *(["--quick"] if quick else []))
    assert rc == 0 and "OK: no problems found" in out
    if kind == "pairs":
        assert f": {len(list((root / 'ir').iterdir()))} pairs" in out and "all " in out
    elif sub == "medical":
        n = len(_files(root / "CT_MRI")) // 2 + len(_files(root / "MRI_PET" / "MRI")) + len(
            _files(root / "MRI_SPECT" / "MRI"))
        assert f": {n} pairs" in out and f"image sizes (HxW): 256x256 ({n})" in out
        assert "colour / grey" in out and "grey / grey" in out           # PET/SPECT colour, CT grey
    else:
        assert "headers only" in out


def test_broken_data_one_line_per_problem(tmp_path, capsys):
    out = tmp_path / "demo"
    generate(out, DemoConfig(m3fd_pairs=2, msrs_train=3, msrs_test=2, height=64, width=64), 1)
    root = out / "MSRS"
    vis = _files(root / "train" / "vi")
    vis[0].unlink()                                                         # 1 missing partner
    (root / "train" / "ir" / vis[1].name).write_bytes(b"")                 # 2 zero-byte image
    label = _files(root / "test" / "Segmentation_labels")[0]
    write_image(label, np.full((64, 64), 9, np.uint8))                     # 3 label id 9
    txt = _files(root / "detection_labels" / "fusion" / "test", ".txt")[1]
    txt.write_text("2 1.2 0.5 0.3 0.3\n")                                  # 4 box outside
    report = validate("msrs", root)
    assert len(report.problems) == 4 and not report.ok
    rc, stdout, err = _run(capsys, "--dataset", "msrs", "--root", root)
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 5 and lines[-1] == "4 problem(s) found"
    expected = [(root / "train" / "ir" / vis[0].name, "missing partner"),
                (root / "train" / "ir" / vis[1].name, "empty (0 bytes)"),
                (label, "label id(s) [9] outside"), (txt, "lies outside the 64x64 image")]
    for path, fragment in expected:
        assert sum(ln.startswith(f"error: {path}: ") and fragment in ln for ln in lines) == 1
    assert "pairs per split (folders): test 2, train 2" in stdout                # summary still printed


def test_wrong_layout_is_one_line(tmp_path, capsys):
    generate(tmp_path / "demo", DemoConfig(m3fd_pairs=1, msrs_train=1, msrs_test=0, height=64, width=64), 1)
    rc, _out, err = _run(capsys, "--dataset", "m3fd", "--root", tmp_path / "demo" / "MSRS")
    assert rc == 2 and err.strip() == f"error: {tmp_path / 'demo' / 'MSRS' / 'Ir'}: folder not found"


def test_quick_mode_checks_label_sizes(tmp_path, capsys):
    generate(tmp_path / "demo", DemoConfig(m3fd_pairs=1, msrs_train=2, msrs_test=0, height=64, width=64), 1)
    label = _files(tmp_path / "demo" / "MSRS" / "train" / "Segmentation_labels")[0]
    write_image(label, np.zeros((48, 64), np.uint8))
    rc, _out, err = _run(capsys, "--dataset", "msrs", "--root", tmp_path / "demo" / "MSRS", "--quick")
    assert rc == 1 and f"error: {label}: label is 64x48 but its image is 64x64" in err
