"""MLFuse training: data pairing/crops/batches, reproducibility, resume, checkpoints, fixed defects.

Synthetic tiny pair sets (written to tmp dirs) keep these fast; real-data training is in
``test_mlfuse_train_real.py``. MLFuse trains through the generic trainer (:mod:`pipeline.training`);
the recipe's settings come from the repository's params.yaml (``full`` profile = published values).
"""
from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch

from _training import HEALTH, make_set, published, write_vsm
from pipeline.errors import ConfigError, DataError
from pipeline.training import data as D
from pipeline.training import trainer as T

PUBLISHED = published("mlfuse")
TINY = {**PUBLISHED, "epochs": 3, "batch_size": 2, "crop": 32, "checkpoint_every": 1, "preview_every": 0,
        "seed": 7, "device": "cpu"}


def train(cfg, pairs, out, results, **kwargs):
    return T.train("mlfuse", cfg, pairs, out / "checkpoints", out / "model_fuse.pth", results, HEALTH,
                   progress=False, **kwargs)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny batches run fastest (and stay fast on a busy 2-core box) on one thread."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_pairs(tmp_path):
    ds = make_set(tmp_path / "setA", ["p3", "p1", "p2", "p0"])
    write_vsm(tmp_path / "vsm", "setA", ds)
    return D.training_pairs({"setA": ds.samples}, tmp_path / "vsm", ("vsm_ir",))


# ---------------------------------------------------------------------------------------- data


def test_pairs_sorted_matched_by_name_across_sets(tmp_path):
    a = make_set(tmp_path / "b_set", ["z", "a"])
    b = make_set(tmp_path / "a_set", ["m", "c"], seed=1)
    write_vsm(tmp_path / "vsm", "b_set", a)
    write_vsm(tmp_path / "vsm", "a_set", b)
    pairs = D.training_pairs({"b_set": list(reversed(a.samples)), "a_set": b.samples}, tmp_path / "vsm",
                             ("vsm_ir",))
    assert [p.key for p in pairs] == ["a_set/c", "a_set/m", "b_set/a", "b_set/z"]
    for p in pairs:
        assert p.vis.parent.name == "vi" and p.ir.parent.name == "ir"  # img1 = visible, img2 = infrared
        vsm2 = p.map("vsm_ir")
        assert p.vis.stem == p.ir.stem == vsm2.stem == p.name
        assert vsm2.parent.name == "img2" and vsm2.parent.parent.name == p.set


def test_missing_vsm_map_names_the_file(tmp_path):
    ds = make_set(tmp_path / "s", ["a"])
    with pytest.raises(DataError, match="run the vsm stage") as err:
        D.training_pairs({"s": ds.samples}, tmp_path / "vsm", ("vsm_ir",))
    assert err.value.path.endswith("s/img2/a.npy")


def test_vsm_checks_and_8bit_quantisation(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.array([[0.0, 0.001, 0.002], [0.5, 0.999, 1.0]]))
    assert D.read_vsm(path, (2, 3)).tolist() == [[0, 0, 1], [128, 255, 255]]  # floor(255 v + 0.5)
    assert D.read_vsm(path, (2, 3), bits=None).dtype == np.float32
    with pytest.raises(DataError, match="shape"):
        D.read_vsm(path, (3, 2))
    np.save(path, np.array([[0.0, 1.5]]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        D.read_vsm(path, (1, 2))


def test_crops_seeded_aligned_and_independent_of_global_rng(tiny_pairs):
    arrays = D.load_arrays(tiny_pairs, crop=32)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    first = D.make_batch(arrays, [0, 2], 32, seed=5, epoch=3)
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    again = D.make_batch(arrays, [0, 2], 32, seed=5, epoch=3)
    assert list(first) == ["ir", "vis", "vsm_ir"] and all(torch.equal(first[k], again[k]) for k in first)
    other_epoch = D.make_batch(arrays, [0, 2], 32, seed=5, epoch=4)
    assert not torch.equal(first["vis"], other_epoch["vis"])
    # aligned: the same window in img1 (vis), img2 (ir) and the map, values /255
    y, x = D.crop_origin(40, 48, 32, seed=5, epoch=3, index=2)
    np.testing.assert_array_equal(first["vis"][1, 0].numpy(), arrays.vis[2][y:y + 32, x:x + 32] / np.float32(255))
    np.testing.assert_array_equal(first["ir"][1, 0].numpy(), arrays.ir[2][y:y + 32, x:x + 32] / np.float32(255))
    np.testing.assert_array_equal(first["vsm_ir"][1, 0].numpy(),
                                  arrays.maps["vsm_ir"][2][y:y + 32, x:x + 32] / np.float32(255))
    assert first["vis"].shape == (2, 1, 32, 32) and first["vis"].dtype == torch.float32
    float_maps = D.load_arrays(tiny_pairs, crop=32, vsm_bits=None)
    vsm = D.make_batch(float_maps, [0, 2], 32, seed=5, epoch=3)["vsm_ir"]
    np.testing.assert_array_equal(vsm[1, 0].numpy(), float_maps.maps["vsm_ir"][2][y:y + 32, x:x + 32])
    assert float_maps.maps["vsm_ir"][2].dtype == np.float32
    # crops_per_pair: item i is a crop of pair i // k, each item at its own position
    two = D.make_batch(arrays, [4, 5], 32, seed=5, epoch=3, crops_per_pair=2)
    for row, item in enumerate((4, 5)):
        y, x = D.crop_origin(40, 48, 32, seed=5, epoch=3, index=item)
        np.testing.assert_array_equal(two["vis"][row, 0].numpy(), arrays.vis[2][y:y + 32, x:x + 32] / np.float32(255))


def test_crop_origin_covers_both_ends_inclusive():
    seen = {D.crop_origin(33, 34, 32, seed=0, epoch=e, index=0) for e in range(200)}
    assert {y for y, _ in seen} == {0, 1} and {x for _, x in seen} == {0, 1, 2}
    assert D.crop_origin(32, 32, 32, seed=0, epoch=0, index=0) == (0, 0)


def test_epoch_batches_shuffle_and_drop_last():
    b = D.epoch_batches(5, 2, True, seed=0, epoch=0)
    assert [len(x) for x in b] == [2, 2]
    b2 = D.epoch_batches(5, 2, False, seed=0, epoch=0)
    assert sorted(np.concatenate(b2).tolist()) == [0, 1, 2, 3, 4] and len(b2[-1]) == 1
    orders = {tuple(D.epoch_order(10, seed=0, epoch=e)) for e in range(5)}
    assert len(orders) == 5  # reshuffled every epoch
    assert tuple(D.epoch_order(10, 0, 1)) == tuple(D.epoch_order(10, 0, 1))


def test_image_smaller_than_crop_names_the_file(tiny_pairs, tmp_path):
    with pytest.raises(DataError, match="smaller than the 64x64") as err:
        D.load_arrays(tiny_pairs, crop=64)
    assert err.value.path.endswith(".png")
    with pytest.raises(DataError, match=r"64x64 training crop \(lower train.methods.mlfuse.crop\)") as err:
        train({**TINY, "crop": 64}, tiny_pairs, tmp_path / "m", tmp_path / "r")
    assert err.value.path.endswith(".png")


# ----------------------------------------------------------------------- fixed defects


def test_dataset_smaller_than_batch_is_a_clear_error(tiny_pairs, tmp_path):
    with pytest.raises(DataError, match=r"setA \(4 pairs\).*fewer than batch_size 16.*drop_last"):
        train({**TINY, "batch_size": 16}, tiny_pairs, tmp_path / "m", tmp_path / "r")
    assert not (tmp_path / "m").exists()


def test_dataset_smaller_than_batch_trains_with_drop_last_off(tiny_pairs, tmp_path):
    out = train({**TINY, "batch_size": 16, "drop_last": False, "epochs": 1}, tiny_pairs,
                  tmp_path / "m", tmp_path / "r")
    assert out.is_file()
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["batches_per_epoch"] == 1


def test_runs_without_cuda(tiny_pairs, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = train({**TINY, "device": "auto", "epochs": 1, "amp": True}, tiny_pairs, tmp_path / "m",
                  tmp_path / "r")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["device"] == "cpu" and out.is_file()


# --------------------------------------------------------------- outputs, reproducibility, resume


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_weights(a, b):
    assert list(a["model"]) == list(b["model"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_outputs_official_layout_and_loss_plot(tiny_pairs, tmp_path):
    from pipeline.fusion.mlfuse_net import MLFNet, load_mlfnet

    final = train(TINY, tiny_pairs, tmp_path / "m", tmp_path / "r")
    ckpt = _weights(final)
    assert set(ckpt) == {"epoch", "model"} and ckpt["epoch"] == 2
    assert list(ckpt["model"]) == list(MLFNet().state_dict())
    assert all(v.is_contiguous() and v.device.type == "cpu" for v in ckpt["model"].values())
    # 3 epochs x 2 batches of BatchNorm updates
    assert int(ckpt["model"]["inc_edg.double_conv.1.num_batches_tracked"]) == 6
    model = load_mlfnet(final)
    with torch.no_grad():
        fused = model(torch.rand(1, 1, 40, 48), torch.rand(1, 1, 40, 48))[0]
    assert fused.shape == (1, 1, 40, 48) and torch.isfinite(fused).all()
    rows = (tmp_path / "r" / "losses.csv").read_text().splitlines()
    assert rows[0] == "epoch,lr,total,edge,saliency,cross_modal,fusion" and len(rows) == 4
    lrs = [float(r.split(",")[1]) for r in rows[1:]]
    assert lrs == pytest.approx([1e-4 * (1 + np.cos(np.pi * e / 3)) / 2 for e in range(3)], rel=1e-9)
    resume_ckpt = _weights(tmp_path / "m" / "checkpoints" / "epoch_0002.pth")  # weights_only loads
    assert {"nets", "optimizers", "schedulers", "rng", "epoch", "history"} <= set(resume_ckpt)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["health"]["status"] == "ok" and summary["seconds_per_step"] > 0
    assert summary["steps_this_run"] == 6 and summary["samples_per_second"] > 0


def test_same_seed_identical_checkpoints_other_seed_differs(tiny_pairs, tmp_path):
    a = train(TINY, tiny_pairs, tmp_path / "a", tmp_path / "ra")
    b = train(TINY, tiny_pairs, tmp_path / "b", tmp_path / "rb")
    _assert_same_weights(_weights(a), _weights(b))
    assert (tmp_path / "ra" / "losses.csv").read_text() == (tmp_path / "rb" / "losses.csv").read_text()
    c = train({**TINY, "seed": 8, "epochs": 1}, tiny_pairs, tmp_path / "c", tmp_path / "rc")
    d = train({**TINY, "epochs": 1}, tiny_pairs, tmp_path / "d", tmp_path / "rd")
    assert not torch.equal(_weights(c)["model"]["layer.double_conv.0.weight"],
                           _weights(d)["model"]["layer.double_conv.0.weight"])


def test_resume_after_interruption_gives_identical_weights(tiny_pairs, tmp_path, monkeypatch):
    cfg = {**TINY, "epochs": 4, "checkpoint_every": 2}
    full = train(cfg, tiny_pairs, tmp_path / "full", tmp_path / "rfull")

    calls = {"n": 0}
    real_make_batch = D.make_batch

    def crash_in_epoch_3(*args, **kwargs):  # 2 batches per epoch: call 7 is epoch 3
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_make_batch(*args, **kwargs)

    monkeypatch.setattr(D, "make_batch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_pairs, tmp_path / "cut", tmp_path / "rcut")
    monkeypatch.setattr(D, "make_batch", real_make_batch)
    assert not (tmp_path / "cut" / "model_fuse.pth").exists()
    assert [p.name for p in sorted((tmp_path / "cut" / "checkpoints").iterdir())] == ["epoch_0001.pth"]
    torch.manual_seed(123), np.random.seed(123), random.seed(123)  # resume must not depend on these
    resumed = train(cfg, tiny_pairs, tmp_path / "cut", tmp_path / "rcut")
    _assert_same_weights(_weights(full), _weights(resumed))
    summary = json.loads((tmp_path / "rcut" / "summary.json").read_text())
    assert summary["resumed_from_epoch"] == 1
    assert (tmp_path / "rcut" / "losses.csv").read_text() == (tmp_path / "rfull" / "losses.csv").read_text()


def test_checkpoint_of_other_settings_is_not_resumed(tiny_pairs, tmp_path):
    train({**TINY, "epochs": 2}, tiny_pairs, tmp_path / "m", tmp_path / "r")
    old = tmp_path / "m" / "checkpoints" / "epoch_0001.pth"
    stale = old.read_bytes()
    train({**TINY, "epochs": 2, "lr": 2e-4}, tiny_pairs, tmp_path / "m", tmp_path / "r")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["resumed_from_epoch"] is None and summary["config"]["lr"] == 2e-4
    assert old.read_bytes() != stale  # the stale checkpoint was replaced, not mixed in
    # an explicit resume checkpoint of another recipe or another method: a clear error naming the file
    (tmp_path / "other.pth").write_bytes(stale)
    with pytest.raises(DataError, match=r"another mlfuse recipe \(differs in settings \['lr'\]\)") as err:
        train({**TINY, "epochs": 2, "lr": 2e-4}, tiny_pairs, tmp_path / "m2", tmp_path / "r2",
              resume=tmp_path / "other.pth")
    assert err.value.path.endswith("other.pth")
    state = _weights(tmp_path / "other.pth")
    state["method"] = "fusiongan"
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(DataError, match="checkpoint of method 'fusiongan', not 'mlfuse'") as err:
        train({**TINY, "epochs": 2}, tiny_pairs, tmp_path / "m2", tmp_path / "r2", resume=tmp_path / "other.pth")
    assert err.value.path.endswith("other.pth")


def test_images_replaced_under_the_same_names_retrain(tmp_path):
    """Issue #18 defect 1: the resume fingerprint covers the image and map bytes, not their names."""
    ds = make_set(tmp_path / "setA", ["p0", "p1"])
    write_vsm(tmp_path / "vsm", "setA", ds)
    pairs = D.training_pairs({"setA": ds.samples}, tmp_path / "vsm", ("vsm_ir",))
    cfg = {**TINY, "epochs": 1}
    first = _weights(train(cfg, pairs, tmp_path / "m", tmp_path / "r"))
    assert _weights(train(cfg, pairs, tmp_path / "m", tmp_path / "r"))["epoch"] == 0  # same data: nothing to train
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["resumed_from_epoch"] == 0
    ds = make_set(tmp_path / "setA", ["p0", "p1"], seed=5)  # other images, same names
    shutil.rmtree(tmp_path / "vsm")
    write_vsm(tmp_path / "vsm", "setA", ds)
    second = _weights(train(cfg, pairs, tmp_path / "m", tmp_path / "r"))
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["resumed_from_epoch"] is None
    assert not torch.equal(first["model"]["layer.double_conv.0.weight"], second["model"]["layer.double_conv.0.weight"])


def test_config_errors():
    with pytest.raises(ConfigError, match=r"train.methods.mlfuse: unknown key\(s\) \['epoch'\]"):
        T.resolve_config("mlfuse", {**PUBLISHED, "epoch": 3})
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['lr'\]"):
        T.resolve_config("mlfuse", {k: v for k, v in PUBLISHED.items() if k != "lr"})
    with pytest.raises(ConfigError, match="train.methods.mlfuse.batch_size"):
        T.resolve_config("mlfuse", {**PUBLISHED, "batch_size": 0})
    with pytest.raises(ConfigError, match="crop"):
        T.resolve_config("mlfuse", {**PUBLISHED, "crop": 8})
    with pytest.raises(ConfigError, match="sets is empty"):
        T.train_from_params({"train": {"methods": {"mlfuse": {**PUBLISHED, "sets": []}}}}, "mlfuse")
    with pytest.raises(ConfigError, match="no training recipe for method 'nosuch'"):
        T.resolve_config("nosuch", {})


# ------------------------------------------------------------------------------ CLI, benchmark


def test_cli_trains_from_params_yaml_and_resumes(tmp_path, capsys):
    import yaml

    from pipeline.cli import main

    ds = make_set(tmp_path / "setA", ["a", "b", "c"])
    write_vsm(tmp_path / "vsm", "tiny", ds)
    method = {**TINY, "epochs": 2, "vsm_root": str(tmp_path / "vsm"), "threads": 1,
              "sets": {"tiny": {"kind": "pairs", "root": str(tmp_path / "setA")}},
              "profiles": {"demo": {"batch_size": 3}, "full": {"batch_size": 16}}}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"profile": "demo", "train": {"health": HEALTH, "methods": {"mlfuse": method}}}))
    args = ["train-mlfuse", "--params", str(params), "--out", str(tmp_path / "m" / "model_fuse.pth"),
            "--results", str(tmp_path / "r"), "--no-progress"]
    assert main(args) == 0
    assert "model_fuse.pth" in capsys.readouterr().out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["batches_per_epoch"] == 1 and summary["pairs"] == ["tiny/a", "tiny/b", "tiny/c"]
    assert summary["provenance"]["params"]["batch_size"] == 3
    assert main(args) == 0  # second run resumes after the last epoch: nothing to train
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["resumed_from_epoch"] == 1
    assert main(args + ["--profile", "full"]) == 2  # 3 pairs < batch 16 with drop_last: one-line error
    assert "fewer than batch_size 16" in capsys.readouterr().err


def test_benchmark_prints_seconds_per_step(capsys):
    from pipeline.cli import main

    assert main(["bench", "train", "--batch", "2", "--crop", "32", "--steps", "1", "--device", "cpu",
                 "--threads", "1"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["benchmark"] == "train" and record["batch"] == 2 and record["crop"] == 32
    assert record["seconds_per_step"] > 0 and record["threads"] == 1
