"""Detection stage: YOLO dataset building, bad input, a full train+test run with sockets blocked,
resume, and the whole stage (Prefect flow) on the real M3FD pairs of ../shared."""
from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pipeline.config import load_params
from pipeline.datasets import load_dataset
from pipeline.detection import ap, stage
from pipeline.detection.yolo_data import build_yolo_data, method_images, yolo_rows
from pipeline.errors import ConfigError, DataError
from pipeline.results import read_json

REPO = Path(__file__).resolve().parents[1]
PICO = str(REPO / "configs" / "detection" / "yolo-pico.yaml")


def make_m3fd(root: Path, n: int = 14, size=(96, 128), splits=(8, 3, 3), seed: int = 0,
              extra_objects: dict | None = None) -> Path:
    """Tiny M3FD-layout data: bright people/cars on noise, VOC XML boxes, meta split lists.
    ``extra_objects`` adds raw ``{name: [(cls, x1, y1, x2, y2), ...]}`` boxes (bad-input tests);
    the last image has no XML (background image)."""
    rng = np.random.default_rng(seed)
    for folder in ("Ir", "Vis", "Annotation", "meta"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    height, width = size
    names = [f"{i:05d}" for i in range(n)]
    for k, name in enumerate(names):
        ir = (rng.random((height, width)) * 40).astype(np.uint8)
        vis = (rng.random((height, width, 3)) * 60).astype(np.uint8)
        objects = []
        for _ in range(int(rng.integers(1, 4)) if k < n - 1 else 0):
            cls = ("People", "Car")[int(rng.integers(0, 2))]
            bw, bh = (int(rng.integers(8, 16)), int(rng.integers(20, 32))) if cls == "People" else \
                (int(rng.integers(26, 40)), int(rng.integers(12, 20)))
            x1, y1 = int(rng.integers(0, width - bw)), int(rng.integers(0, height - bh))
            ir[y1:y1 + bh, x1:x1 + bw] = 220 if cls == "People" else 150
            vis[y1:y1 + bh, x1:x1 + bw] = (200, 60, 60) if cls == "People" else (60, 60, 220)
            objects.append((cls, x1, y1, x1 + bw, y1 + bh))
        objects += (extra_objects or {}).get(name, [])
        cv2.imwrite(str(root / "Ir" / f"{name}.png"), cv2.merge([ir, ir, ir]))
        cv2.imwrite(str(root / "Vis" / f"{name}.png"), vis[..., ::-1].copy())
        if k < n - 1:
            xml = "".join(f"<object><name>{c}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                          f"<xmax>{x}</xmax><ymax>{y}</ymax></bndbox></object>" for c, a, b, x, y in objects)
            (root / "Annotation" / f"{name}.xml").write_text(f"<annotation>{xml}</annotation>")
    a, b, c = splits
    for split, part in (("train", names[:a]), ("val", names[a:a + b]), ("test", names[a + b:a + b + c])):
        (root / "meta" / f"{split}.txt").write_text("\n".join(part) + "\n")
    return root


def tiny_params(data_root: Path, out: Path, **detection) -> dict:
    """The repository's full-profile ``detection`` section (every key is required) with tiny settings."""
    base = load_params(Path(__file__).resolve().parents[1] / "params.yaml", "full")["detection"]
    return {"device": "auto",
            "datasets": {"m3fd": {"kind": "m3fd", "root": str(data_root), "split": "meta"}},
            "detection": {**base, "model": PICO, "imgsz": 64, "epochs": 1, "batch": 4, "lr0": 0.02,
                          "mosaic": 0.0, "seeds": [0], "fused_root": str(out / "fused"),
                          "results": str(out / "results"), "models_root": str(out / "models"), **detection}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_m3fd(tmp_path_factory.mktemp("m3fd") / "M3FD")


# ------------------------------------------------------------------------------------------
# dataset building


def test_yolo_rows_clip_dedupe_and_map_by_name():
    from pipeline.datasets import Box

    boxes = (Box("Car", -5, 10, 30, 20), Box("Car", -5, 10, 30, 20), Box("People", 90, 0, 110, 50),
             Box("People", 200, 0, 210, 5))  # duplicate; partly outside; wholly outside
    rows = yolo_rows(boxes, ("People", "Car"), width=100, height=50)
    assert rows.tolist() == [[1, 0.15, 0.3, 0.3, 0.2], [0, 0.95, 0.5, 0.1, 1.0]]
    with pytest.raises(DataError, match="Truck"):
        yolo_rows((Box("Truck", 0, 0, 1, 1),), ("People",), 10, 10)


def test_build_links_labels_yaml_and_background(tiny, tmp_path):
    dataset = load_dataset("m3fd", tiny, split="meta")
    images, source = method_images(dataset, tmp_path / "fused", "vis")  # no folder: vis sources
    assert "sources" in source
    data = build_yolo_data(dataset, images, tmp_path / "yolo", source)
    spec = yaml.safe_load(data.data_yaml.read_text())
    assert Path(spec["path"]).is_absolute() and spec["test"] == "images/test"
    assert spec["names"] == dict(enumerate(dataset.box_classes))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 8, "val": 3, "test": 3}
    link = tmp_path / "yolo" / "images" / "train" / "00000.png"
    assert link.is_symlink() and link.resolve() == (tiny / "Vis" / "00000.png").resolve()
    sample = dataset.by_name("00000")
    rows = np.loadtxt(tmp_path / "yolo" / "labels" / "train" / "00000.txt", ndmin=2)
    first = sample.boxes[0]
    assert dataset.box_classes[int(rows[0, 0])] == first.cls
    assert rows[0, 1] == pytest.approx((first.x1 + first.x2) / 2 / 128, abs=1e-6)
    assert (tmp_path / "yolo" / "labels" / "test" / "00013.txt").read_text() == ""  # background
    boxes, classes = data.gt_boxes("00000")
    assert boxes[0] == pytest.approx([first.x1, first.y1, first.x2, first.y2], abs=1e-3)


def test_seed_key_follows_image_bytes_not_names_sizes_or_times(tiny, tmp_path):
    """An image replaced by another of the same name and size (and mtime) changes every seed's key."""
    import shutil

    from pipeline.fingerprint import clear_memo

    copy = tmp_path / "M3FD"
    shutil.copytree(tiny, copy)
    params = tiny_params(copy, tmp_path)
    before = stage.prepare_method(params, "ir")
    keys = [before.seed_key(s) for s in (0, 1)]
    assert keys[0] != keys[1]
    image = copy / "Ir" / "00000.png"
    stat = image.stat()
    picture = cv2.imread(str(image))
    cv2.imwrite(str(image), 255 - picture)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    clear_memo()
    after = stage.prepare_method(params, "ir")
    assert [after.seed_key(s) for s in (0, 1)] != keys and after.seed_key(0) != keys[0]


def test_holdout_when_no_val_split(tmp_path):
    root = make_m3fd(tmp_path / "M3FD", n=12, splits=(9, 0, 3))
    dataset = load_dataset("m3fd", root, split="meta")
    images, source = method_images(dataset, tmp_path, "ir")
    first = build_yolo_data(dataset, images, tmp_path / "a", source, val_fraction=0.25, seed=3)
    again = build_yolo_data(dataset, images, tmp_path / "b", source, val_fraction=0.25, seed=3)
    assert len(first.splits["val"]) == 2 and len(first.splits["train"]) == 7
    assert first.splits == again.splits and "hold-out" in first.val_source
    assert not set(first.splits["val"]) & set(first.splits["train"])


def test_missing_fused_images_named(tiny, tmp_path):
    dataset = load_dataset("m3fd", tiny, split="meta")
    folder = tmp_path / "fused" / "m3fd" / "avg"
    folder.mkdir(parents=True)
    for name in ("00000", "00001"):
        os.symlink(tiny / "Vis" / f"{name}.png", folder / f"{name}.png")
    with pytest.raises(DataError, match=r"12 of 14 images missing from the fused folder: 00002, 00003") as err:
        method_images(dataset, tmp_path / "fused", "avg")
    assert str(folder) in str(err.value)
    with pytest.raises(DataError, match="run the fusion stage"):
        method_images(dataset, tmp_path / "fused", "nosuch")   # the one rule (pipeline.fused)


def test_unknown_class_error_or_skip(tmp_path):
    root = make_m3fd(tmp_path / "M3FD", n=6, splits=(3, 1, 2), extra_objects={"00001": [("Tank", 1, 1, 9, 9)]})
    params = tiny_params(root, tmp_path)
    with pytest.raises(DataError, match="unknown class 'Tank'.*00001.xml|00001.xml.*unknown class 'Tank'"):
        stage.prepare_method(params, "ir")
    params["detection"]["unknown_classes"] = "skip"
    prepared = stage.prepare_method(params, "ir")
    assert prepared.dataset.skipped_boxes == {"Tank": 1}


def test_bad_settings_and_sizes(tiny, tmp_path):
    full = tiny_params(tiny, tmp_path)["detection"]
    with pytest.raises(ConfigError, match=r"detection: unknown key\(s\) \['epoch'\]"):
        stage.detection_settings({"detection": {**full, "epoch": 3}})
    with pytest.raises(ConfigError, match=r"detection: missing key\(s\) \['lr0'\]"):  # no default in the code
        stage.detection_settings({"detection": {k: v for k, v in full.items() if k != "lr0"}})
    with pytest.raises(ConfigError, match="seeds"):
        stage.detection_settings({"detection": {**full, "seeds": []}})
    dataset = load_dataset("m3fd", tiny, split="meta")
    folder = tmp_path / "fused" / "m3fd" / "small"
    folder.mkdir(parents=True)
    for s in dataset.samples:
        cv2.imwrite(str(folder / f"{s.name}.png"), np.zeros((48, 64), np.uint8))
    images, source = method_images(dataset, tmp_path / "fused", "small")
    with pytest.raises(DataError, match="64x48 but the source pair"):
        build_yolo_data(dataset, images, tmp_path / "yolo", source)


def test_gpu_asked_but_absent_is_an_error(tiny, tmp_path, monkeypatch):
    import torch

    from pipeline.detection.yolo import yolo_device
    from pipeline.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="'cuda:1' requested but CUDA is not available"):
        stage.prepare_method(tiny_params(tiny, tmp_path, device="cuda:1"), "ir")
    assert stage.prepare_method(tiny_params(tiny, tmp_path), "ir").device == "cpu"  # auto
    assert [yolo_device(d) for d in ("cpu", "cuda", "cuda:1")] == ["cpu", "0", "1"]


def test_mean_and_std_over_seeds(tiny, tmp_path):
    prepared = stage.prepare_method(tiny_params(tiny, tmp_path, seeds=[0, 1]), "ir")
    classes = prepared.data.classes

    def seed(k, m, people):
        return {"seed": k, "mAP50": m, "mAP50_95": m / 2, "precision": 0.5, "recall": 0.25,
                "AP50": {c: (people if c == "People" else None) for c in classes},
                "mAP50_ap_py": m, "mAP50_95_ap_py": m / 2}

    out = stage.summarize(prepared, [seed(0, 0.2, 0.1), seed(1, 0.4, 0.3)])
    assert out["mAP50"] == pytest.approx(0.3) and out["std"]["mAP50"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert out["AP50"]["People"] == pytest.approx(0.2) and out["AP50"]["Car"] is None
    assert out["std"]["precision"] == 0.0 and out["seeds"] == [0, 1] and out["n_seeds"] == 2
    assert out["per_seed"]["1"]["mAP50"] == 0.4
    assert out["test_boxes_per_class"]["Bus"] == 0 and out["n_test_boxes"] == sum(out["test_boxes_per_class"].values())


def test_methods_always_include_baselines():
    params = {"fusion": {"methods": {"average": {}, "vis": {}, "mlfuse": {}}}}
    assert stage.detection_methods(params) == ["ir", "vis", "average", "mlfuse"]


# ------------------------------------------------------------------------------------------
# training and evaluation


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")


def _host(address) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to reach another machine (connect or name lookup) is recorded and refused.
    Loopback and Unix sockets stay usable (a Prefect test server of the session may be running)."""
    attempts = []
    real = {"connect": socket.socket.connect, "connect_ex": socket.socket.connect_ex,
            "create_connection": socket.create_connection, "getaddrinfo": socket.getaddrinfo}

    def guard(name, host_of, method=False):
        def call(*args, **kwargs):
            target = args[1] if method else args[0]
            local = (method and args[0].family == socket.AF_UNIX) or host_of(target) in LOCAL_HOSTS
            if not local:
                attempts.append((name, target))
                raise OSError(f"network access blocked by the test: {name}({target!r})")
            return real[name](*args, **kwargs)
        return call

    monkeypatch.setattr(socket.socket, "connect", guard("connect", _host, method=True))
    monkeypatch.setattr(socket.socket, "connect_ex", guard("connect_ex", _host, method=True))
    monkeypatch.setattr(socket, "create_connection", guard("create_connection", _host))
    monkeypatch.setattr(socket, "getaddrinfo", guard("getaddrinfo", str))
    return attempts


def test_network_guard_refuses_remote_hosts(no_network):
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("github.com", 443), timeout=1)
    with pytest.raises(OSError, match="blocked"):
        socket.getaddrinfo("one.one.one.one", 0)
    assert [a[0] for a in no_network] == ["create_connection", "getaddrinfo"]
    no_network.clear()


def test_stage_trains_and_evaluates_offline(tiny, tmp_path, no_network, monkeypatch):
    # a "fused" method folder (mean of the two sources) next to the ir baseline read from the sources
    dataset = load_dataset("m3fd", tiny, split="meta")
    fused = tmp_path / "fused" / "m3fd" / "average"
    fused.mkdir(parents=True)
    for s in dataset.samples:
        mean = (cv2.imread(str(s.ir)).astype(np.uint16) + cv2.imread(str(s.vis))) // 2
        cv2.imwrite(str(fused / f"{s.name}.png"), mean.astype(np.uint8))
    params = tiny_params(tiny, tmp_path)
    rows = {}
    for method in ("ir", "average"):
        path = stage.run_method(params, method)
        assert path == tmp_path / "results" / "m3fd" / method / "metrics.json"
        rows[method] = read_json(path)
    assert no_network == []

    m = rows["average"]
    for key in ("mAP50", "mAP50_95", "precision", "recall"):
        assert 0.0 <= m[key] <= 1.0 and m["per_seed"]["0"][key] == m[key]
        assert m["std"][key] is None  # one seed
    assert set(m["AP50"]) == set(dataset.box_classes)
    assert m["AP50"]["Bus"] is None and m["AP50"]["People"] is not None  # no Bus in the test split
    assert m["n_test_images"] == 3 and m["n_test_boxes"] == sum(len(s.boxes or ()) for s in dataset.split("test"))
    assert m["seeds"] == [0] and m["params"]["imgsz"] == 64 and m["params"]["model"] == PICO
    assert m["ultralytics"] and m["provenance"]["versions"]["ultralytics"] == m["ultralytics"]
    assert m["image_source"] == str(fused) and "sources" in rows["ir"]["image_source"]
    assert m["provenance"]["split"]["test"] == ["00011", "00012", "00013"]

    seed_dir = tmp_path / "results" / "m3fd" / "average" / "seed_0"
    work = tmp_path / "models" / "m3fd" / "average" / "seed_0"
    assert {p.name for p in (work / "weights").iterdir()} == {"best_state.pt"}  # no pickles, no resume state
    assert read_json(seed_dir / "seed_metrics.json")["key"] == read_json(work / "key.json")["key"]
    # the test evaluation loads a weights-only copy of the network, never ultralytics' pickle
    import torch

    from pipeline.detection import yolo as yolo_module

    saved = torch.load(work / "weights" / "best_state.pt", weights_only=True)
    assert set(saved) == {"yaml", "names", "state_dict", "key"} and list(saved["names"].values()) == list(dataset.box_classes)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pt"):
        yolo_module.load_weights_only(tmp_path / "junk.pt")
    preds = read_json(seed_dir / "predictions.json")
    assert preds["conf"] == 0.001 and preds["iou"] == 0.6 and preds["classes"] == list(dataset.box_classes)
    assert [r["name"] for r in preds["images"]] == ["00011", "00012", "00013"]
    record = preds["images"][0]
    assert record["gt"]["classes"] == [b.cls for b in dataset.by_name("00011").boxes]
    assert len(record["pred"]["boxes"]) == len(record["pred"]["scores"]) == len(record["pred"]["classes"])
    assert all(s >= 0.001 for r in preds["images"] for s in r["pred"]["scores"])
    assert sum(len(r["pred"]["scores"]) for r in preds["images"]) > 0
    # pipeline.detection.ap recomputes ultralytics' mAP from predictions.json
    assert ap.map50(preds["images"]) == pytest.approx(m["mAP50"], abs=1e-6)
    assert m["per_seed"]["0"]["mAP50_ap_py"] == pytest.approx(m["mAP50"], abs=1e-6)
    assert m["per_seed"]["0"]["mAP50_95_ap_py"] == pytest.approx(m["mAP50_95"], abs=1e-6)
    assert Path(os.environ["YOLO_CONFIG_DIR"]).is_relative_to(os.environ["FUSEBENCH_STATE"])

    # resume: a finished seed is reused, a changed setting trains again
    from pipeline.detection import yolo

    def no_training(*args, **kwargs):
        raise AssertionError("a finished seed was trained again")

    monkeypatch.setattr(yolo, "train", no_training)
    assert read_json(stage.run_method(params, "average"))["mAP50"] == m["mAP50"]
    params["detection"]["lr0"] = 0.01
    with pytest.raises(AssertionError, match="trained again"):
        stage.run_method(params, "average")


@pytest.mark.shared
def test_whole_stage_on_real_m3fd(shared_data, tmp_path, monkeypatch, prefect_harness):
    """The detect flow (Prefect) on the 30 real M3FD pairs; the `vis` method read from a fused
    folder of links, tiny settings."""
    from flows.detect import detect_flow

    source = shared_data / "M3FD"
    fused = tmp_path / "fused" / "m3fd" / "vis"
    fused.mkdir(parents=True)
    for image in (source / "Vis").iterdir():
        os.symlink(image, fused / image.name)
    params = tiny_params(source, tmp_path, imgsz=96, batch=8)
    params["orchestration"] = {"task_runner": "thread", "max_workers": 1}
    monkeypatch.chdir(tmp_path)
    result = detect_flow(params=params, method="vis")["vis"]
    metrics = read_json(tmp_path / "results" / "m3fd" / "vis" / "metrics.json")
    assert result["mAP50"] == metrics["mAP50"] and 0.0 <= metrics["mAP50"] <= 1.0
    test_names = (source / "meta" / "test.txt").read_text().split()
    assert metrics["n_test_images"] == len(test_names) == 4
    assert metrics["n_train_images"] == 22 and metrics["n_val_images"] == 4
    dataset = load_dataset("m3fd", source, split="meta")
    assert metrics["n_test_boxes"] == sum(len(dataset.by_name(n).boxes) for n in test_names)
    assert metrics["image_source"] == str(fused)
    assert set(metrics["AP50"]) == {"People", "Car", "Bus", "Motorcycle", "Lamp", "Truck"}
    preds = read_json(tmp_path / "results" / "m3fd" / "vis" / "seed_0" / "predictions.json")
    assert preds["images"][0]["width"] == 1024 and preds["images"][0]["height"] == 768
    assert ap.map50(preds["images"]) == pytest.approx(metrics["mAP50"], abs=1e-6)
    summary = read_json(tmp_path / "results" / "flow_runs" / "detect.json")
    assert summary["status"] == "completed"
    assert [u["unit"] for u in summary["units"]] == ["vis:prepare", "vis:seed0", "vis:aggregate"]


def test_training_is_deterministic_while_other_threads_draw_random_numbers(tiny, tmp_path):
    """ultralytics augments with Python's global ``random``; Prefect's threads draw from it too.
    The private generator keeps a seed's result identical whatever else the process does."""
    import random
    import threading

    results = []
    for run in range(2):
        params = tiny_params(tiny, tmp_path / f"run{run}", epochs=2)
        stop = threading.Event()

        def draw():
            while not stop.is_set():
                random.random()
                stop.wait(0.0005)

        noise = threading.Thread(target=draw, daemon=True)
        if run:
            noise.start()
        try:
            path = stage.run_method(params, "ir")
        finally:
            stop.set()
        results.append((read_json(path)["mAP50"],
                        read_json(path.parent / "seed_0" / "predictions.json")["images"]))
    assert results[0] == results[1]


def test_killed_run_keeps_finished_seeds_and_resumes_the_killed_one(tiny, tmp_path):
    """A real run of two seeds side by side (one forked worker each, parallel_seeds auto): seed 1's
    worker is SIGKILLed after it saved its second epoch, seed 0 runs to its end, the run fails
    naming seed 1; the stage output is deleted (as DVC does); the re-run, seeds one after the other
    in the stage's process, reuses seed 0 (identical to an uninterrupted side-by-side run) and
    continues seed 1 after epoch 2."""
    import json
    import shutil
    import subprocess
    import sys

    import torch

    from pipeline.detection import trainer

    # as the demo: an optimizer step every batch (nbs = batch, no warm-up), no mosaic to close
    settings = dict(epochs=3, seeds=[0, 1], nbs=4, warmup_epochs=0, select="last", checkpoint_every=1,
                    extra={"close_mosaic": 0})
    reference = read_json(stage.run_method(tiny_params(tiny, tmp_path / "ref", **settings), "ir"))
    params = tiny_params(tiny, tmp_path / "run", **settings)
    work = tmp_path / "run" / "models" / "m3fd" / "ir"
    resume = work / "seed_1" / "weights" / trainer.RESUME_NAME

    # the child kills itself (SIGKILL: no clean-up of any kind) right after seed 1 saved epoch 2
    code = """
import json, os, signal, sys
from pipeline.detection import stage, trainer
save = trainer.save_torch
def save_then_die(path, state):
    save(path, state)
    if "seed_1" in str(path) and state["epoch"] == 1:
        os.kill(os.getpid(), signal.SIGKILL)
trainer.save_torch = save_then_die
stage.run_method(json.loads(sys.argv[1]), "ir")
"""
    child = subprocess.run([sys.executable, "-c", code, json.dumps(params)], cwd=REPO, timeout=600,
                           stderr=subprocess.PIPE, text=True)
    assert child.returncode == 1 and "ir seed 1: worker killed by signal 9" in child.stderr
    assert read_json(work / "seed_0" / "seed_metrics.json")["parallel_seeds"] == 2
    assert torch.load(resume, weights_only=True)["epoch"] == 1
    assert read_json(work / "seed_0" / "seed_metrics.json")["resumed_from_epoch"] is None
    assert not (work / "seed_1" / "seed_metrics.json").exists()
    shutil.rmtree(tmp_path / "run" / "results")          # DVC deletes the stage output before a run

    from pipeline.detection import yolo

    trained = []
    original = yolo.train

    def spy(*args, **kwargs):
        trained.append((args[3], kwargs.get("resume") and kwargs["resume"]["epoch"]))
        return original(*args, **kwargs)

    params["detection"]["parallel_seeds"] = 1            # in this process: the spy sees the training
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(yolo, "train", spy)
        again = read_json(stage.run_method(params, "ir"))
    assert [seed for seed, _ in trained] == [1]             # seed 0 reused, seed 1 resumed
    assert trained[0][1] == 1
    assert read_json(work / "seed_1" / "seed_metrics.json")["resumed_from_epoch"] == 2
    assert again["per_seed"]["0"] == reference["per_seed"]["0"] and again["seeds"] == [0, 1]
    ours = read_json(tmp_path / "run" / "results" / "m3fd" / "ir" / "seed_0" / "predictions.json")
    assert ours["images"] == read_json(tmp_path / "ref" / "results" / "m3fd" / "ir" / "seed_0" /
                                       "predictions.json")["images"]
    assert not (work / "seed_1" / "weights" / trainer.RESUME_NAME).exists()  # removed once trained
    # another setting: another key; the finished seed is not reused and its folder is emptied
    old_key = read_json(work / "seed_0" / "key.json")["key"]
    params["detection"]["lr0"] = 0.01
    prepared = stage.prepare_method(params, "ir")
    key = prepared.seed_key(0)
    assert key != old_key and stage._finished(work / "seed_0", key) is None
    stage.claim_seed_folder(work / "seed_0", key)
    assert [p.name for p in (work / "seed_0").iterdir()] == ["key.json"]
