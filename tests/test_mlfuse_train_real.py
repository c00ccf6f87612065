"""MLFuse training on real pairs from ../shared/data: the loss falls, the checkpoint loads into the
fusion network, fine-tuning from the official weights, the CLI and the benchmark entry points."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from _training import HEALTH, published

from pipeline.datasets import load_dataset
from pipeline.fusion.mlfuse_net import MLFNet, load_mlfnet
from pipeline.fusion.registry import get_method
from pipeline.training import data as D
from pipeline.training import trainer as T
from pipeline.training.methods.mlfuse import mlfuse_loss
from pipeline.vsm import compute_vsm_maps

pytestmark = pytest.mark.shared
REAL = {**published("mlfuse"), "epochs": 5, "batch_size": 4, "crop": 64, "lr": 1e-3, "checkpoint_every": 5, "preview_every": 5,
        "preview_count": 1, "seed": 0, "device": "cpu", "threads": 1}


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real_pairs(shared_data, tmp_path_factory):
    """4 RoadScene + 4 CT/MRI pairs with their VSM maps computed by the VSM stage code."""
    vsm_root = tmp_path_factory.mktemp("vsm")
    sets = {"roadscene": load_dataset("pairs", shared_data / "RoadScene").samples[:4],
            "ct_mri": load_dataset("medical", shared_data / "medical" / "CT_MRI").samples[:4]}
    for name, samples in sets.items():
        compute_vsm_maps(samples, vsm_root, name, progress=False)
    return D.training_pairs(sets, vsm_root, ("vsm_ir",))


def _fixed_batch_loss(model, arrays, crop):
    """Total loss of one fixed batch (every pair, epoch-0 crops), model in training mode as in training."""
    batch = D.make_batch(arrays, range(len(arrays)), crop, seed=0, epoch=0)
    with torch.no_grad():
        return mlfuse_loss(model.train()(batch["vis"], batch["ir"]), batch["vis"], batch["ir"],
                           batch["vsm_ir"]).total.item()


def test_training_on_real_pairs_lowers_the_loss_and_reloads(real_pairs, tmp_path):
    assert [p.key for p in real_pairs][:2] == ["ct_mri/ct0", "ct_mri/ct1"]
    assert real_pairs[0].vis.name == "mrict0.png" and real_pairs[0].ir.name == "ct0.png"  # MRI = img1
    final = T.train("mlfuse", REAL, real_pairs, tmp_path / "m", tmp_path / "m.pth", tmp_path / "r", HEALTH,
                    progress=False)
    arrays = D.load_arrays(real_pairs, REAL["crop"])
    initial = _fixed_batch_loss(T.build_recipe("mlfuse", T.resolve_config("mlfuse", REAL), "cpu").nets["model"],
                                arrays, REAL["crop"])
    trained_model = load_mlfnet(final)
    trained = _fixed_batch_loss(trained_model, arrays, REAL["crop"])
    assert trained < 0.8 * initial
    history = pd.read_csv(tmp_path / "r" / "losses.csv")
    assert history["total"].iloc[-1] < history["total"].iloc[0]
    # the mlfuse fusion method loads the trained checkpoint like the official weights and fuses a
    # full-size RoadScene pair (index 4 = roadscene/FLIR_00006)
    method = get_method("mlfuse", weights=str(final), device="cpu")
    ir, vis = (a[4].astype(np.float32) / np.float32(255) for a in (arrays.ir, arrays.vis))
    raw = method.fuse(ir, vis)
    assert raw.shape == ir.shape and np.isfinite(raw).all() and raw.std() > 0
    fused = method.to_uint8(raw)
    assert fused.dtype == np.uint8 and fused.min() == 0 and fused.max() == 255
    previews = sorted((tmp_path / "r" / "previews" / "epoch_0004").iterdir())
    assert [p.name for p in previews] == ["ct_mri__ct0.png"]


def test_fine_tuning_from_official_weights(real_pairs, shared, monkeypatch):
    monkeypatch.setenv("FUSEBENCH_SHARED", str(shared))
    official = shared / "weights" / "mlfuse" / "model_fuse.pth"
    cfg = T.resolve_config("mlfuse", {**REAL, "init": "official"})
    model = T.build_recipe("mlfuse", cfg, "cpu").nets["model"]
    reference = load_mlfnet(official)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert model.training
    arrays = D.load_arrays(real_pairs, 64)
    scratch = _fixed_batch_loss(MLFNet(), arrays, 64)
    assert _fixed_batch_loss(model, arrays, 64) < scratch  # the published weights already fit the recipe


def test_training_sets_from_configured_datasets_and_splits(shared_data):
    from pipeline.errors import DataError

    params = {"datasets": {"msrs": {"kind": "msrs", "root": str(shared_data / "MSRS"), "task": "segmentation"}}}
    sets = D.load_training_sets(params, ["msrs"], ["train"])
    assert list(sets) == ["msrs"] and len(sets["msrs"]) == 48
    assert {s.split for s in sets["msrs"]} == {"train"}
    inline = D.load_training_sets({}, {"rs": {"kind": "pairs", "root": str(shared_data / "RoadScene")}}, ["all"])
    assert len(inline["rs"]) == 166 and inline["rs"] == sorted(inline["rs"], key=lambda s: s.name)
    with pytest.raises(DataError, match="no pairs in split") as err:
        D.load_training_sets(params, ["msrs"], ["val"])
    assert err.value.path.endswith("MSRS")
