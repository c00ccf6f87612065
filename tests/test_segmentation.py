"""Segmentation stage: bad input, augmentation, full-resolution prediction, seeded and resumable
training, every configured method on tiny MSRS-layout data, the Prefect flow, and real MSRS pairs."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_params
from pipeline.datasets import MSRS_SEG_CLASSES, load_dataset
from pipeline.errors import ConfigError, DataError
from pipeline.imageio import read_label_image, write_image
from pipeline.results import read_json
from pipeline.segmentation import data as D
from pipeline.segmentation import metrics as M
from pipeline.segmentation.model import resolve_config
from pipeline.segmentation.run import method_names, prepare, run_method

REPO = Path(__file__).resolve().parents[1]

H, W = 40, 56          # not multiples of 16: evaluation must pad and crop back


def with_settings(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in (the model/train/eval blocks key by key)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


#: The repository's full-profile ``segmentation`` section (every key is required) with tiny settings.
TINY = with_settings(load_params(REPO / "params.yaml", "full")["segmentation"],
                     {"seeds": [0], "device": "cpu", "threads": 1,
                      "model": {"encoder": "mobilenet_v2", "decoder_channels": 32},
                      "train": {"epochs": 1, "batch_size": 2, "crop": [32, 48], "scale": [0.75, 1.25],
                                "optimizer": "adamw", "lr": 1.0e-3},
                      "eval": {"overlays": 2}})


def _scene(rng, index: int):
    """Label with a few classes (bump = 8 never occurs: absent class) and ignore pixels."""
    label = np.zeros((H, W), np.uint8)
    label[H // 2:, :] = 4                                   # curve (road) in the bottom half
    y, x = rng.integers(2, H // 2), rng.integers(0, W - 16)
    label[y:y + 10, x:x + 14] = 1 + index % 3               # car / person / bike
    label[0, :5] = 255                                      # ignore
    ir = np.clip(label.astype(np.int32) * 25 + rng.integers(0, 20, (H, W)), 0, 255).astype(np.uint8)
    vi = np.stack([ir, 255 - ir, ir // 2], -1).astype(np.uint8)
    return ir, vi, label


def make_msrs(root: Path, n_train: int = 4, n_test: int = 2, methods=("ir", "vis")) -> Path:
    """Tiny MSRS layout under ``root/MSRS`` plus ``root/fused/msrs/<method>/`` for ``methods``."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            name = f"{split[:2]}{i:04d}{'DN'[i % 2]}"
            ir, vi, label = _scene(rng, i)
            for sub, img in (("ir", ir), ("vi", vi), ("Segmentation_labels", label)):
                write_image(root / "MSRS" / split / sub / f"{name}.png", img)
            for k, method in enumerate(methods):
                fused = {"ir": ir, "vis": vi}.get(method)
                if fused is None:   # any other method: a blend of the two (colour)
                    fused = ((vi.astype(np.uint16) + ir[..., None] * (k % 3)) // (1 + k % 3)).astype(np.uint8)
                write_image(root / "fused" / "msrs" / method / f"{name}.png", fused)
    return root


def tiny_params(root: Path, **overrides) -> dict:
    seg = with_settings(TINY, {"fused_root": str(root / "fused"), "results_root": str(root / "results"),
                               "models_root": str(root / "models"), **overrides})
    return {"profile": "demo", "device": "cpu", "segmentation": seg,
            "datasets": {"msrs": {"kind": "msrs", "root": str(root / "MSRS")}}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_msrs(tmp_path_factory.mktemp("seg"))


# ------------------------------------------------------------------------------------------
# configuration and bad input


@pytest.mark.parametrize("override, message", [
    ({"train": {"crop": [30, 48]}}, "multiples of 16"),
    ({"train": {"batch_size": 1}}, ">= 2"),
    ({"train": {"optimizer": "adam"}}, "sgd"),
    ({"seeds": []}, "seeds"),
    ({"modell": {}}, r"segmentation: unknown key\(s\) \['modell'\]"),
    ({"train": {"lrr": 0.1}}, r"segmentation.train: unknown key\(s\) \['lrr'\]"),
    ({"model": {"in_channels": 1}}, "must be 3"),
])
def test_bad_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(with_settings(TINY, override))


def test_every_setting_comes_from_params_yaml():
    """No default in the code: a key missing from the section or one of its blocks is an error."""
    with pytest.raises(ConfigError, match=r"segmentation: missing key\(s\) \['seeds'\]"):
        resolve_config({k: v for k, v in TINY.items() if k != "seeds"})
    train = {k: v for k, v in TINY["train"].items() if k != "lr"}
    with pytest.raises(ConfigError, match=r"segmentation.train: missing key\(s\) \['lr'\]"):
        resolve_config({**TINY, "train": train})


def test_encoder_weights_must_be_a_local_file(tmp_path):
    from pipeline.segmentation.model import build_model

    with pytest.raises(ConfigError, match="nothing is downloaded"):
        build_model({"encoder": "mobilenet_v2", "encoder_weights": "imagenet", "decoder_channels": 32}, 9)


def test_encoder_weights_load_from_a_local_file(tmp_path):
    import torch
    from pipeline.segmentation.model import build_model

    cfg = {"encoder": "mobilenet_v2", "encoder_weights": None, "decoder_channels": 32}
    source = build_model(cfg, 9, seed=1)
    path = tmp_path / "enc.pth"
    torch.save({"state_dict": source.encoder.state_dict()}, path)
    loaded = build_model({**cfg, "encoder_weights": str(path)}, 9, seed=2)
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[key], value)
    torch.save({"nonsense.weight": torch.zeros(1)}, path)
    with pytest.raises(ConfigError, match="do not match"):
        build_model({**cfg, "encoder_weights": str(path)}, 9)


def test_missing_fused_images_name_folder_and_names(tmp_path):
    root = make_msrs(tmp_path, methods=("ir",))
    (root / "fused/msrs/ir/tr0001N.png").unlink()
    (root / "fused/msrs/ir/te0000D.png").unlink()
    with pytest.raises(DataError) as err:
        prepare(tiny_params(root), "ir")
    text = str(err.value)
    assert str(root / "fused/msrs/ir") in text and "2 of 6" in text
    assert "tr0001N" in text and "te0000D" in text
    with pytest.raises(DataError, match="fused image folder not found"):
        prepare(tiny_params(root), "nonexistent")


def test_label_outside_class_list_names_file_and_value(tmp_path):
    root = make_msrs(tmp_path, methods=("ir",))
    bad = root / "MSRS/test/Segmentation_labels/te0001N.png"
    label = read_label_image(bad)
    label[3, 3] = 12
    write_image(bad, label)
    with pytest.raises(DataError) as err:
        prepare(tiny_params(root), "ir")
    assert str(bad) in str(err.value) and "12" in str(err.value)


def test_label_size_different_from_image(tmp_path):
    root = make_msrs(tmp_path, methods=("ir", "vis"))
    bad = root / "MSRS/train/Segmentation_labels/tr0002D.png"
    write_image(bad, np.zeros((H, W + 16), np.uint8))
    with pytest.raises(DataError) as err:
        prepare(tiny_params(root), "ir")
    assert str(bad) in str(err.value) and f"{W + 16}x{H}" in str(err.value)
    # a fused image of another size than its label: both files are named
    write_image(bad, np.zeros((H, W), np.uint8))
    fused = root / "fused/msrs/vis/te0001N.png"
    write_image(fused, np.zeros((H // 2, W // 2, 3), np.uint8))
    with pytest.raises(DataError) as err:
        prepare(tiny_params(root), "vis")
    assert str(fused) in str(err.value) and "te0001N.png" in str(err.value) and f"{W // 2}x{H // 2}" in str(err.value)


def test_augment_crop_pad_flip_and_seed():
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    label = np.ones((20, 30), np.uint8)
    a = D.augment(image, label, (32, 48), (1.0, 1.0), 0.0, np.random.default_rng([0, 0, 0]))
    assert a[0].shape == (32, 48, 3) and a[1].shape == (32, 48)
    assert a[1][20:, :].max() == 255 and a[1][:, 30:].max() == 255     # padding is ignore
    assert (a[1] == 1).sum() == 20 * 30                                   # nothing lost
    b = D.augment(image, label, (16, 16), (0.5, 2.0), 0.5, np.random.default_rng([3, 1, 2]))
    c = D.augment(image, label, (16, 16), (0.5, 2.0), 0.5, np.random.default_rng([3, 1, 2]))
    assert all(np.array_equal(x, y) for x, y in zip(b, c))
    flipped = D.augment(image, label, (20, 30), (1.0, 1.0), 1.0, np.random.default_rng(0))[0]
    np.testing.assert_array_equal(flipped, image[:, ::-1])


def test_grey_images_are_replicated_to_three_channels(tiny):
    ds = load_dataset("msrs", tiny / "MSRS")
    items = D.source_items(ds, "ir")
    image, label = D.read_item(items[0], 9)
    assert image.shape == (H, W, 3) and label.shape == (H, W)
    assert np.array_equal(image[..., 0], image[..., 2])


def test_prediction_is_full_resolution():
    from pipeline.segmentation.evaluate import predict
    from pipeline.segmentation.model import build_model

    model = build_model({"encoder": "mobilenet_v2", "decoder_channels": 32}, 9, seed=0).eval()
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    pred = predict(model, image, [0.5] * 3, [0.25] * 3, "cpu")
    assert pred.shape == (37, 53) and pred.dtype == np.uint8 and pred.max() < 9


# ------------------------------------------------------------------------------------------
# training, evaluation, outputs


def _check_outputs(out: Path, n_test: int, label_files: list[Path], seeds=(0,)) -> dict:
    metrics = read_json(out / "metrics.json")
    assert metrics["class_names"] == list(MSRS_SEG_CLASSES)
    assert metrics["seeds"] == list(seeds) and metrics["n_test_images"] == n_test
    assert set(metrics["per_seed"]) == {str(s) for s in seeds}
    # bump (8) is neither labelled nor (with this little training, almost surely) predicted:
    # whatever happens, an absent class is null and listed, never a silent 0 or 1
    for name, value in metrics["IoU"].items():
        assert (value is None) == (name in metrics["absent_classes"])
        assert value is None or 0.0 <= value <= 1.0
    assert 0.0 <= metrics["mIoU"] <= 1.0 and 0.0 <= metrics["pixel_accuracy"] <= 1.0
    assert metrics["provenance"]["versions"]["segmentation-models-pytorch"] != "not installed"
    with np.load(out / "per_image_confusion.npz") as npz:
        names, conf, per_seed = list(npz["names"]), npz["confusion"], npz["per_seed"]
        assert list(npz["classes"]) == list(MSRS_SEG_CLASSES) and list(npz["seeds"]) == list(seeds)
    assert conf.shape == (n_test, 9, 9) and conf.dtype == np.int64
    assert per_seed.shape == (len(seeds), n_test, 9, 9)
    np.testing.assert_array_equal(per_seed.sum(0), conf)
    # ground truth counted independently from the label files (ignore 255 excluded)
    by_name = {p.stem: p for p in label_files}
    for name, matrix in zip(names, per_seed[0]):
        label = read_label_image(by_name[name])
        np.testing.assert_array_equal(matrix.sum(1), np.bincount(label[label != 255], minlength=9))
    # headline numbers recomputed from the stored matrices
    seed0 = M.summarize(per_seed[0].sum(0), MSRS_SEG_CLASSES)
    assert metrics["per_seed"][str(seeds[0])]["mIoU"] == pytest.approx(seed0["mIoU"])
    import pandas as pd

    csv = pd.read_csv(out / "confusion.csv", index_col=0)
    np.testing.assert_array_equal(csv.to_numpy(), per_seed.sum((0, 1)))
    assert sorted(p.stem for p in (out / "overlays").glob("*.png")) == names[:2]    # first test images
    return metrics


def test_every_configured_method_trains_and_evaluates(tmp_path, repo_root):
    """All methods of the real params.yaml (ir, vis + fusion.methods) on tiny data."""
    methods = method_names(load_params(repo_root / "params.yaml", "demo"))
    assert methods[:2] == ["ir", "vis"]
    root = make_msrs(tmp_path, methods=methods)
    params = tiny_params(root)
    labels = sorted((root / "MSRS/test/Segmentation_labels").glob("*.png"))
    for method in methods:
        run_method(params, method, progress=False)
        _check_outputs(root / "results/msrs" / method, 2, labels)
        assert (root / "models/msrs" / method / "seed_0/model.pth").is_file()


def test_seeds_are_deterministic_and_resume_gives_the_same_weights(tmp_path, monkeypatch):
    import torch
    from pipeline.segmentation import train as T

    root = make_msrs(tmp_path, methods=("vis",))
    params = tiny_params(root, seeds=[0, 1], train={"epochs": 2})
    first = run_method(params, "vis", progress=False)
    weights = {s: torch.load(root / f"models/msrs/vis/seed_{s}/model.pth", weights_only=True)["model"]
               for s in (0, 1)}
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])   # seeds differ
    assert first["n_seeds"] == 2 and first["std"]["mIoU"] is not None
    # same seed again from scratch: identical weights and confusion matrices
    again_root = tmp_path / "again"
    again = tiny_params(root, seeds=[0], train={"epochs": 2},
                        results_root=str(again_root / "results"), models_root=str(again_root / "models"))
    run_method(again, "vis", progress=False)
    rerun = torch.load(again_root / "models/msrs/vis/seed_0/model.pth", weights_only=True)["model"]
    assert all(torch.equal(rerun[k], weights[0][k]) for k in rerun)
    # interrupted after epoch 1, then resumed: the same final weights as the uninterrupted run
    cut_root = tmp_path / "cut"
    cut = tiny_params(root, seeds=[0], train={"epochs": 2},
                      results_root=str(cut_root / "results"), models_root=str(cut_root / "models"))
    real_save = T.save_torch

    def save_then_stop(path, obj):
        real_save(path, obj)
        if path.name == T.LAST_NAME:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(T, "save_torch", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_method(cut, "vis", progress=False)
    monkeypatch.setattr(T, "save_torch", real_save)
    state = torch.load(cut_root / "models/msrs/vis/seed_0/last.pth", weights_only=True)
    assert state["epoch"] == 0
    run_method(cut, "vis", progress=False)
    assert not (cut_root / "models/msrs/vis/seed_0/last.pth").exists()   # removed once trained
    resumed = torch.load(cut_root / "models/msrs/vis/seed_0/model.pth", weights_only=True)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]
    assert all(torch.equal(resumed["model"][k], weights[0][k]) for k in weights[0])


def test_killed_run_keeps_finished_seeds_and_resumes_the_killed_one(tmp_path, monkeypatch):
    """A real two-seed run SIGKILLed right after seed 1 saved its first epoch; DVC deletes the
    results folder; the re-run reuses seed 0 untouched, resumes seed 1 after epoch 1, and both
    equal an uninterrupted run; changed images (same names and sizes) retrain."""
    import json
    import shutil
    import subprocess
    import sys

    import torch
    from pipeline.segmentation import train as T

    root = make_msrs(tmp_path, methods=("vis",))
    reference = run_method(tiny_params(root, seeds=[0, 1], train={"epochs": 2}, results_root=str(tmp_path / "ref/r"),
                                       models_root=str(tmp_path / "ref/m")), "vis", progress=False)
    params = tiny_params(root, seeds=[0, 1], train={"epochs": 2})
    code = """
import json, os, signal, sys
from pipeline.segmentation import run, train
save = train.save_torch
def save_then_die(path, state):
    save(path, state)
    if "seed_1" in str(path) and path.name == train.LAST_NAME:
        os.kill(os.getpid(), signal.SIGKILL)
train.save_torch = save_then_die
run.run_method(json.loads(sys.argv[1]), "vis", progress=False)
"""
    child = subprocess.run([sys.executable, "-c", code, json.dumps(params)], cwd=REPO, timeout=600,
                           stderr=subprocess.PIPE, text=True)
    # seeds side by side (parallel_seeds auto): only seed 1's worker died, seed 0 finished
    assert child.returncode == 1 and "vis seed 1: worker killed by signal 9" in child.stderr
    work = root / "models/msrs/vis"
    assert (work / "seed_0/metrics.json").is_file() and (work / "seed_1/last.pth").is_file()
    shutil.rmtree(root / "results")                  # DVC deletes the stage output before a run
    trained = []
    real_train = T.train_seed

    def spy(cfg, items, n, seed, *args, **kwargs):
        trained.append(seed)
        return real_train(cfg, items, n, seed, *args, **kwargs)

    monkeypatch.setattr(T, "train_seed", spy)
    params["segmentation"]["parallel_seeds"] = 1        # in this process: the spy sees the training
    again = run_method(params, "vis", progress=False)
    assert trained == [1]                               # identical to the side-by-side reference
    assert again["per_seed"] == reference["per_seed"]
    final = torch.load(work / "seed_1/model.pth", weights_only=True)
    assert [h["epoch"] for h in final["history"]] == [0, 1] and not (work / "seed_1/last.pth").exists()
    ref = torch.load(tmp_path / "ref/m/msrs/vis/seed_1/model.pth", weights_only=True)["model"]
    assert all(torch.equal(final["model"][k], ref[k]) for k in ref)
    _check_outputs(root / "results/msrs/vis", 2, sorted((root / "MSRS/test/Segmentation_labels").glob("*.png")),
                   seeds=(0, 1))
    # a training image replaced by another one of the same name and size: every seed trains again
    image = next((root / "fused/msrs/vis").glob("*.png"))
    import cv2

    picture = cv2.imread(str(image))
    cv2.imwrite(str(image), 255 - picture)
    trained.clear()
    run_method(params, "vis", progress=False)
    assert trained == [0, 1]


def test_flow_runs_one_method(tmp_path, prefect_harness, monkeypatch):
    from flows.segment import segment_flow

    root = make_msrs(tmp_path, methods=("ir",))
    monkeypatch.chdir(tmp_path)        # the flow-run summary goes to ./results/flow_runs
    out = segment_flow(tiny_params(root, seeds=[0, 1]), method="ir", summary_name="segment_ir")
    assert set(out) == {"ir"}
    summary = read_json(tmp_path / "results/flow_runs/segment_ir.json")
    assert summary["status"] == "completed"
    assert [u["unit"] for u in summary["units"]] == ["ir:prepare", "ir:seeds", "ir:aggregate"]  # side by side
    _check_outputs(root / "results/msrs/ir", 2, sorted((root / "MSRS/test/Segmentation_labels").glob("*.png")),
                   seeds=(0, 1))


# ------------------------------------------------------------------------------------------
# real MSRS pairs


@pytest.mark.shared
def test_stage_on_real_msrs_pairs(tmp_path, shared_data):
    """Real MSRS pairs (8 train, 3 test, 480x640) with the infrared sources as the 'fused' images."""
    source = load_dataset("msrs", shared_data / "MSRS")
    chosen = source.split("train")[:8] + source.split("test")[:3]
    for sample in chosen:
        for sub, path in (("ir", sample.ir), ("vi", sample.vis), ("Segmentation_labels", sample.seg_label)):
            link = tmp_path / "MSRS" / sample.split / sub / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, link)
        fused = tmp_path / "fused/msrs/ir" / sample.ir.name
        fused.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(sample.ir, fused)
    params = tiny_params(tmp_path, train={"batch_size": 4, "crop": [64, 80], "scale": [0.25, 0.5]})
    metrics = run_method(params, "ir", progress=False)
    checked = _check_outputs(tmp_path / "results/msrs/ir", 3, [s.seg_label for s in chosen if s.split == "test"])
    assert checked["mIoU"] == pytest.approx(metrics["mIoU"], nan_ok=True)
    assert checked["n_train_images"] == 8 and checked["n_test_pixels"] == sum(
        int((read_label_image(s.seg_label) != 255).sum()) for s in chosen if s.split == "test")
    from pipeline.imageio import read_image

    overlay = read_image(next((tmp_path / "results/msrs/ir/overlays").glob("*.png")))
    assert overlay.shape == (480, 3 * 640 + 8, 3)


def test_resume_key_covers_image_and_label_bytes(tmp_path):
    """Issue #18 defect 1: an image or label replaced under the same name (and the same file size)
    changes the training fingerprint, so a finished model is retrained instead of reused."""
    from pipeline import fingerprint as F
    from pipeline.segmentation.train import fingerprint

    root = make_msrs(tmp_path)
    ds = load_dataset("msrs", root / "MSRS")
    items = [i for i in D.source_items(ds, "ir") if i.split == "train"]
    cfg = resolve_config(TINY)
    before = fingerprint(cfg, items, 0, 9)
    assert fingerprint(cfg, items, 0, 9) == before
    for path in (items[0].image, items[1].label):
        data = bytearray(path.read_bytes())
        size = len(data)
        data[-20] ^= 0xFF   # same size, other bytes
        path.write_bytes(bytes(data))
        assert path.stat().st_size == size
        F.clear_memo()
        after = fingerprint(cfg, items, 0, 9)
        assert after != before
        before = after
