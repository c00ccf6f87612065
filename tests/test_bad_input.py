"""Bad input: each problem gives one clear line naming the file, from the library and from the CLI
(``validate`` exits non-zero and prints no traceback)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import cli
from pipeline.datasets import MSRS_SEG_CLASSES, check_boxes, load_dataset, read_pair, read_segmentation
from pipeline.demo_data import DemoConfig, generate
from pipeline.errors import DataError
from pipeline.imageio import write_image

SIZE = 64


@pytest.fixture
def demo(tmp_path) -> Path:
    out = tmp_path / "demo"
    generate(out, DemoConfig(seed=0, m3fd_pairs=4, msrs_train=2, msrs_test=1, height=SIZE, width=SIZE), 1)
    return out


def _add_voc_object(xml: Path, name: str, box: tuple[int, int, int, int]) -> None:
    x1, y1, x2, y2 = box
    obj = (f"  <object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
           f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>\n</annotation>")
    xml.write_text(xml.read_text().replace("</annotation>", obj))


def _msrs_label(demo: Path) -> Path:
    return sorted((demo / "MSRS" / "train" / "Segmentation_labels").iterdir())[0]


# each case breaks the demo data and returns (kind, root, culprit file, message fragment, stage)
# stage: where the library notices: "load", "pair" (read_pair), "boxes" (check_boxes), "label"


def missing_partner(demo):
    (demo / "M3FD" / "Vis" / "00001.png").unlink()
    return "m3fd", demo / "M3FD", demo / "M3FD" / "Ir" / "00001.png", "missing partner image", "load"


def size_mismatch(demo):
    write_image(demo / "M3FD" / "Vis" / "00001.png", np.zeros((32, 48, 3), np.uint8))
    return "m3fd", demo / "M3FD", demo / "M3FD" / "Ir" / "00001.png", "size mismatch", "pair"


def unreadable_image(demo):
    (demo / "M3FD" / "Vis" / "00002.png").write_bytes(b"this is not a PNG file")
    return "m3fd", demo / "M3FD", demo / "M3FD" / "Vis" / "00002.png", "cannot decode", "pair"


def zero_byte_image(demo):
    (demo / "M3FD" / "Ir" / "00002.png").write_bytes(b"")
    return "m3fd", demo / "M3FD", demo / "M3FD" / "Ir" / "00002.png", "empty (0 bytes)", "pair"


def unknown_class(demo):
    xml = demo / "M3FD" / "Annotation" / "00001.xml"
    _add_voc_object(xml, "Tractor", (2, 2, 20, 20))
    return "m3fd", demo / "M3FD", xml, "unknown class 'Tractor'", "load"


def box_outside(demo):
    xml = demo / "M3FD" / "Annotation" / "00003.xml"
    _add_voc_object(xml, "People", (40, 10, SIZE + 20, 30))
    return "m3fd", demo / "M3FD", xml, "lies outside the 64x64 image", "boxes"


def box_non_positive(demo):
    xml = demo / "M3FD" / "Annotation" / "00000.xml"
    _add_voc_object(xml, "Car", (30, 10, 30, 30))
    return "m3fd", demo / "M3FD", xml, "non-positive size", "boxes"


def label_id_outside(demo):
    label = _msrs_label(demo)
    values = np.zeros((SIZE, SIZE), np.uint8)
    values[:8, :8] = 12
    write_image(label, values)
    return "msrs", demo / "MSRS", label, "label id(s) [12] outside the class list", "label"


def label_size_differs(demo):
    label = _msrs_label(demo)
    write_image(label, np.zeros((32, 32), np.uint8))
    return "msrs", demo / "MSRS", label, "label is 32x32 but its image is 64x64", "label"


def missing_segmentation_label(demo):
    folder = demo / "MSRS" / "test" / "Segmentation_labels"
    for label in folder.iterdir():
        label.unlink()
    return "msrs", demo / "MSRS", folder, "no segmentation label for pair", "load"


def empty_dataset(demo):
    root = demo / "empty"
    (root / "Ir").mkdir(parents=True)
    (root / "Vis").mkdir()
    return "m3fd", root, root, "empty dataset", "load"


def split_list_names_absent_image(demo):
    meta = demo / "M3FD" / "meta" / "test.txt"
    meta.write_text(meta.read_text() + "99999\n")
    return "m3fd", demo / "M3FD", meta, "split list names '99999'", "load"


CASES = [missing_partner, size_mismatch, unreadable_image, zero_byte_image, unknown_class, box_outside,
         box_non_positive, label_id_outside, label_size_differs, missing_segmentation_label, empty_dataset,
         split_list_names_absent_image]


def _library_error(kind, root, stage) -> DataError:
    if stage == "load":
        with pytest.raises(DataError) as info:
            load_dataset(kind, root)
        return info.value
    dataset = load_dataset(kind, root)
    for sample in dataset.samples:
        try:
            if stage == "pair":
                read_pair(sample)
            elif stage == "label":
                read_segmentation(sample, len(MSRS_SEG_CLASSES), (SIZE, SIZE))
            elif stage == "boxes":
                problems = check_boxes(sample, SIZE, SIZE)
                if problems:
                    return problems[0]
        except DataError as err:
            return err
    raise AssertionError(f"no {stage} error raised")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_library_error_is_one_line_naming_the_file(demo, case):
    kind, root, culprit, fragment, stage = case(demo)
    err = _library_error(kind, root, stage)
    message = str(err)
    assert "\n" not in message
    assert str(culprit) in message and fragment in message
    assert err.path == str(culprit)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_validate_cli_reports_one_line_per_problem(demo, case, capsys):
    kind, root, culprit, fragment, _stage = case(demo)
    rc = cli.main(["validate", "--dataset", kind, "--root", str(root)])
    captured = capsys.readouterr()
    assert rc == 1
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("error: ")]
    assert any(str(culprit) in ln and fragment in ln for ln in lines), captured.err
    assert "Traceback" not in captured.err + captured.out


def test_quick_mode_still_catches_header_problems(demo, capsys):
    _kind, root, culprit, _fragment, _stage = zero_byte_image(demo)
    assert cli.main(["validate", "--dataset", "m3fd", "--root", str(root), "--quick"]) == 1
    assert f"error: {culprit}: image file is empty (0 bytes)" in capsys.readouterr().err


def test_cli_subprocess_prints_no_traceback(demo, tmp_path):
    missing_partner(demo)
    unknown_class(demo)
    run = subprocess.run([sys.executable, "-m", "pipeline", "validate", "--dataset", "m3fd", "--root",
                          str(demo / "M3FD")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2 and run.stderr.strip().endswith("2 problem(s) found")
    run = subprocess.run([sys.executable, "-m", "pipeline", "validate", "--dataset", "msrs", "--root",
                          str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == f"error: {tmp_path / 'nowhere'}: dataset root folder not found"


def _truncated_checkpoint(path: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:400])


def _pickled_object(path: Path) -> None:
    import argparse

    import torch

    torch.save({"args": argparse.Namespace(lr=0.1)}, path)


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), r"not a PyTorch checkpoint, or a corrupt one \(.+\)"),
    (_truncated_checkpoint, r"not a PyTorch checkpoint, or a corrupt one \(.+\)"),
    (_pickled_object, r"it holds Python objects other than tensors and containers \(Unsupported global: .*Namespace\)"),
])
def test_unreadable_checkpoint_is_one_short_line_naming_the_file(tmp_path, make, reason):
    """``torch.load(weights_only=True)`` failures: one line with the reason, not torch's paragraph."""
    from pipeline.imageio import load_torch

    bad = tmp_path / "bad.pth"
    make(bad)
    with pytest.raises(DataError, match=r"bad\.pth: cannot read seafusion checkpoint with "
                                        r"torch\.load\(weights_only=True\): " + reason) as err:
        load_torch(bad, "seafusion checkpoint")
    assert "\n" not in str(err.value) and "PyTorch 2.6" not in str(err.value)
    with pytest.raises(DataError, match=r"nope\.pth: seafusion checkpoint not found"):
        load_torch(tmp_path / "nope.pth", "seafusion checkpoint")
