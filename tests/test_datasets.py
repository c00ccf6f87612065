"""Every loader on the real files in ../shared/data, plus YOLO / COCO box sources, seeded splits and
class mapping by name on small fixtures built here."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from pipeline.datasets import (M3FD_CLASSES, MSRS_SEG_CLASSES, load_configured, load_dataset,
                               read_pair, read_segmentation, seeded_split)
from pipeline.errors import DataError
from pipeline.imageio import write_image


def _stems(folder):
    return sorted(p.stem for p in folder.iterdir() if p.is_file())


# ------------------------------------------------------------------------------ real data


@pytest.mark.shared
def test_msrs_real(shared_data):
    root = shared_data / "MSRS"
    ds = load_dataset("msrs", root)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 48, "test": 74}
    assert ds.splits["train"] == _stems(root / "train" / "vi")            # matched by name, sorted
    assert ds.seg_classes == MSRS_SEG_CLASSES and ds.box_classes == ("person", "bicycle", "car")
    assert all(s.seg_label is not None and s.boxes is not None for s in ds.samples)
    sample = ds.by_name(ds.splits["train"][0])                              # train ir: 3 equal channels
    ir, vis = read_pair(sample)
    assert ir.shape == (480, 640) and vis.shape == (480, 640, 3)
    label = read_segmentation(sample, 9, ir.shape)
    assert label.shape == ir.shape and label.max() < 9
    # boxes: 'auto' reads the fusion view; every YOLO line becomes one box of the named class
    names = ("person", "bicycle", "car")
    for view in ("fusion", "infrared"):
        ds_view = ds if view == "fusion" else load_dataset("msrs", root, box_view=view)
        for s in ds_view.samples[::15]:
            txt = root / "detection_labels" / view / s.split / f"{s.name}.txt"
            expected = [names[int(line.split()[0])] for line in txt.read_text().splitlines() if line.strip()]
            assert [b.cls for b in s.boxes] == expected and s.box_source == txt
    first = ds.by_name("00101D").boxes[0]   # "0 0.384454 0.517132 0.034105 0.076142" on 640x480
    assert first.cls == "person"
    assert first.x1 == pytest.approx((0.3844543147208122 - 0.03410532994923852 / 2) * 640)
    assert first.y2 == pytest.approx((0.5171319796954315 + 0.07614213197969542 / 2) * 480)
    assert load_dataset("msrs", root, box_view=None).samples[0].boxes is None


@pytest.mark.shared
def test_m3fd_real(shared_data):
    root = shared_data / "M3FD"
    ds = load_dataset("m3fd", root)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 22, "val": 4, "test": 4}
    for split in ("train", "val", "test"):
        listed = [ln.strip() for ln in (root / "meta" / f"{split}.txt").read_text().splitlines() if ln.strip()]
        assert ds.splits[split] == sorted(listed)
    for sample in ds.samples:
        objects = ET.parse(root / "Annotation" / f"{sample.name}.xml").getroot().findall("object")
        assert [b.cls for b in sample.boxes] == [o.findtext("name") for o in objects]
    box = ds.by_name("00000").boxes[0]
    assert (box.cls, box.x1, box.y1, box.x2, box.y2) == ("People", 45, 371, 82, 478)
    ir, vis = read_pair(ds.by_name("00000"))
    assert ir.shape == (768, 1024) and vis.shape == (768, 1024, 3)   # Ir stored with 3 equal channels
    # class mapping by name: another class order or case gives the same names
    reordered = load_dataset("m3fd", root, classes=("truck", "lamp", "motorcycle", "bus", "car", "people"))
    assert [b.cls.lower() for b in reordered.samples[3].boxes] == [b.cls.lower() for b in ds.samples[3].boxes]
    # a seeded rule instead of the lists
    random = load_dataset("m3fd", root, split={"rule": "random", "ratios": [8, 1, 1], "seed": 0})
    assert {k: len(v) for k, v in random.splits.items()} == {"train": 24, "val": 3, "test": 3}
    assert random.split_source.startswith("random")
    json.dumps(ds.manifest())


@pytest.mark.parametrize("name, n, vis_colour", [("RoadScene", 166, True), ("TNO", 17, False)])
@pytest.mark.shared
def test_generic_pairs_real(shared_data, name, n, vis_colour):
    ds = load_dataset("pairs", shared_data / name)
    assert len(ds.samples) == n and set(ds.splits) == {"all"}
    assert [s.name for s in ds.samples] == _stems(shared_data / name / "ir")
    assert all(s.boxes is None and s.seg_label is None for s in ds.samples)
    ir, vis = read_pair(ds.samples[0])
    assert ir.ndim == 2 and (vis.ndim == 3) == vis_colour and ir.shape == vis.shape[:2]


@pytest.mark.shared
def test_medical_real_both_layouts(shared_data):
    root = shared_data / "medical"
    mlfuse = load_dataset("medical", root / "CT_MRI")                     # ctN.png + mrictN.png
    assert len(mlfuse.samples) == 21
    sample = mlfuse.by_name("ct3")
    assert sample.ir.name == "ct3.png" and sample.vis.name == "mrict3.png"
    folders = load_dataset("medical", root / "MRI_PET")                   # MRI/ + PET/
    assert len(folders.samples) == 28
    pet, mri = read_pair(folders.samples[0])
    assert pet.ndim == 3 and mri.ndim == 2 and folders.samples[0].vis.parent.name == "MRI"
    everything = load_dataset("medical", root)
    assert len(everything.samples) == 21 + 28 + len(_stems(root / "MRI_SPECT" / "MRI"))
    assert {s.name.rsplit("_", 1)[0] for s in everything.samples} == {"CT_MRI", "MRI_PET", "MRI_SPECT"}


# ------------------------------------------------------------------------------ small fixtures


def _m3fd_images(root, names, size=(40, 60)):
    rng = np.random.default_rng(0)
    for name in names:
        write_image(root / "Ir" / f"{name}.png", rng.integers(0, 255, size, dtype=np.uint8))
        write_image(root / "Vis" / f"{name}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))


def test_yolo_boxes_mapped_by_name(tmp_path):
    _m3fd_images(tmp_path, ["a", "b", "c"])
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "classes.txt").write_text("Car\nPeople\nLamp\n")             # not the M3FD order
    (labels / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.25 0.25 0.1 0.1\n")
    (labels / "b.txt").write_text("")
    ds = load_dataset("m3fd", tmp_path, split="all")
    a = ds.by_name("a")
    assert [b.cls for b in a.boxes] == ["People", "Car"]
    assert (a.boxes[0].x1, a.boxes[0].y1, a.boxes[0].x2, a.boxes[0].y2) == pytest.approx((24, 12, 36, 28))
    assert ds.by_name("b").boxes == () and ds.by_name("c").boxes == ()    # background images
    assert ds.box_classes == M3FD_CLASSES


def test_coco_boxes_mapped_by_name(tmp_path):
    _m3fd_images(tmp_path, ["a", "b"])
    coco = {"images": [{"id": 7, "file_name": "Vis/a.png"}, {"id": 8, "file_name": "b.png"}],
            "categories": [{"id": 1, "name": "Truck"}, {"id": 2, "name": "People"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 2, "bbox": [1, 2, 10, 20]},
                            {"id": 2, "image_id": 8, "category_id": 1, "bbox": [5, 5, 4, 4]}]}
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    ds = load_dataset("m3fd", tmp_path, split="all")
    box = ds.by_name("a").boxes[0]
    assert (box.cls, box.x1, box.y1, box.x2, box.y2) == ("People", 1, 2, 11, 22)
    assert ds.by_name("b").boxes[0].cls == "Truck"
    skipped = load_dataset("m3fd", tmp_path, split="all", classes=("People",), unknown_classes="skip")
    assert skipped.by_name("b").boxes == () and skipped.skipped_boxes == {"Truck": 1}
    (tmp_path / "annotations.json").rename(tmp_path / "m3fd-all.json")
    renamed = load_dataset("m3fd", tmp_path, split="all", coco_file="m3fd-all.json")   # relative to root
    assert [s.boxes for s in renamed.samples] == [s.boxes for s in ds.samples]


def test_coco_files_per_split(tmp_path):
    """COCO conversions of M3FD come as m3fd-{train,val,test}.json; ``split: coco`` uses them."""
    _m3fd_images(tmp_path, ["a", "b", "c"])
    cats = [{"id": 3, "name": "Car"}]
    for split, names in (("train", ["a", "b"]), ("test", ["c", "zz"])):   # zz: not present here
        coco = {"categories": cats, "images": [{"id": i, "file_name": f"{n}.png"} for i, n in enumerate(names)],
                "annotations": [{"id": 1, "image_id": 0, "category_id": 3, "bbox": [1, 1, 5, 5]}]}
        (tmp_path / "coco").mkdir(exist_ok=True)
        (tmp_path / "coco" / f"m3fd-{split}.json").write_text(json.dumps(coco))
    ds = load_dataset("m3fd", tmp_path, coco_file="coco", split="coco")
    assert ds.splits == {"train": ["a", "b"], "test": ["c"]}
    assert [len(s.boxes) for s in ds.samples] == [1, 0, 1] and ds.by_name("c").box_source.name == "m3fd-test.json"
    (tmp_path / "coco" / "m3fd-test.json").unlink()
    with pytest.raises(DataError, match="'c' is in no train/val/test COCO file"):
        load_dataset("m3fd", tmp_path, coco_file="coco", split="coco")


def test_seeded_split_is_deterministic_and_complete():
    names = [f"{i:03d}" for i in range(50)]
    first = seeded_split(names, (8, 1, 1), seed=5)
    assert first == seeded_split(list(reversed(names)), (8, 1, 1), seed=5)   # order-independent
    assert first != seeded_split(names, (8, 1, 1), seed=6)
    assert sorted(first) == names
    assert [sum(v == s for v in first.values()) for s in ("train", "val", "test")] == [40, 5, 5]


def test_load_configured(tmp_path):
    _m3fd_images(tmp_path / "M3FD", ["x", "y"])
    params = {"datasets": {"det": {"kind": "m3fd", "root": str(tmp_path / "M3FD"), "task": "detection",
                                   "split": {"rule": "random", "ratios": [1, 1], "seed": 1}}}}
    ds = load_configured(params, "det")
    assert ds.name == "det" and sorted(ds.splits) == ["train", "val"]
    assert [s.boxes for s in ds.samples] == [None, None]                     # no box source at all


def test_subset_keeps_a_seeded_choice_per_split(tmp_path):
    names = [f"{i:02d}" for i in range(12)]
    _m3fd_images(tmp_path, names, size=(8, 8))
    split = {"rule": "random", "ratios": [2, 1], "seed": 0}
    full = load_dataset("m3fd", tmp_path, split=split)
    small = load_dataset("m3fd", tmp_path, split=split, subset={"train": 3})
    assert len(small.split("train")) == 3 and small.split("val") == full.split("val")   # others kept
    assert {s.name for s in small.split("train")} <= {s.name for s in full.split("train")}
    assert [s.name for s in small.samples] == sorted(s.name for s in small.samples)
    again = load_dataset("m3fd", tmp_path, split=split, subset={"train": 3})
    assert again.samples == small.samples                                   # deterministic
    other = load_dataset("m3fd", tmp_path, split=split, subset={"train": 3}, subset_seed=1)
    assert other.samples != small.samples
    assert len(load_dataset("m3fd", tmp_path, split=split, subset=2).samples) == 4   # every split
    for bad in ({"train": 0}, "3", {"train": True}):
        with pytest.raises(DataError, match="subset"):
            load_dataset("m3fd", tmp_path, split=split, subset=bad)


@pytest.mark.shared
def test_shared_profile_datasets_load(repo_root, shared_data):
    """The ``shared`` profile's datasets are the real pairs in ../shared/data, subset as configured."""
    from pipeline.config import load_params

    params = load_params(repo_root / "params.yaml", profile="shared")
    sizes = {name: {k: len(v) for k, v in load_configured(params, name).splits.items()}
             for name in params["datasets"]}
    assert sizes["m3fd"] == {"train": 6, "val": 2, "test": 3}
    assert sizes["msrs"] == {"train": 6, "test": 6}
    assert {"roadscene", "tno", "medical"} <= set(sizes)


def test_no_import_cycle_between_datasets_and_layouts(repo_root):
    """pipeline.datasets imports pipeline.layouts; neither layouts nor the records module it
    reads (pipeline.dataset_files) imports pipeline.datasets back."""
    import ast

    for module in ("layouts", "dataset_files"):
        tree = ast.parse((repo_root / "pipeline" / f"{module}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {f"pipeline.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                     and n.module == "pipeline" for a in n.names}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "pipeline.datasets" not in imported, module
