"""GAN training through the generic trainer: FusionGAN and DDcGAN recipes, resume equality for a GAN,
the health check on deliberately broken runs, fusing with the trained checkpoints, bench train."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _training import assert_resume_equality, pairs, published, restore_threads, summary, train  # noqa: F401

from pipeline.errors import ConfigError, DataError
from pipeline.fusion.registry import get_method
from pipeline.training import data as D
from pipeline.training import trainer as T
from pipeline.training.health import TrainingDiverged, verdict

TINY_FG = {**published("fusiongan"), "seed": 3, "device": "cpu", "threads": 1, "epochs": 3, "batch_size": 2,
           "crop": 44, "crops_per_pair": 1, "widths": [8, 4, 4, 4], "checkpoint_every": 1, "preview_every": 3,
           "preview_count": 1}
TINY_DDC = {**published("ddcgan"), "seed": 3, "device": "cpu", "threads": 1, "epochs": 2, "batch_size": 2,
            "crop": 24, "crops_per_pair": 1, "widths": [4, 8, 4, 4], "checkpoint_every": 1, "preview_every": 0}


def test_fusiongan_resume_after_interruption_gives_identical_weights(pairs, tmp_path, monkeypatch):
    assert_resume_equality("fusiongan", TINY_FG, pairs, tmp_path, monkeypatch)


def test_rerun_of_a_finished_run_writes_its_outputs_again(pairs, tmp_path):
    """A stage re-run whose resume checkpoint is complete (e.g. an unrelated `datasets` change):
    DVC has deleted losses.csv and previews/, the trainer must write them again."""
    import shutil

    first = torch.load(train("fusiongan", TINY_FG, pairs, tmp_path), weights_only=True)
    losses = (tmp_path / "r_m" / "losses.csv").read_text()
    previews = sorted(p.name for p in (tmp_path / "r_m" / "previews").rglob("*.png"))
    shutil.rmtree(tmp_path / "r_m")
    again = torch.load(train("fusiongan", TINY_FG, pairs, tmp_path), weights_only=True)
    assert summary(tmp_path)["resumed_from_epoch"] == TINY_FG["epochs"] - 1
    assert (tmp_path / "r_m" / "losses.csv").read_text() == losses
    assert sorted(p.name for p in (tmp_path / "r_m" / "previews").rglob("*.png")) == previews
    assert all(torch.equal(first["model"][k], again["model"][k]) for k in first["model"])


def test_fusiongan_losses_per_component_and_trained_fusion(pairs, tmp_path):
    final = train("fusiongan", TINY_FG, pairs, tmp_path)
    header = (tmp_path / "r_m" / "losses.csv").read_text().splitlines()[0]
    assert header == "epoch,lr,g_total,g_adv,g_content,g_intensity,g_gradient,d_total,d_real,d_fake,d_acc,g_std"
    state = torch.load(final, weights_only=True)
    assert state["method"] == "fusiongan" and state["widths"] == [8, 4, 4, 4] and "health" in state
    assert summary(tmp_path)["health"]["status"] in ("ok", "collapsed")
    method = get_method("fusiongan", weights=str(final), device="cpu")
    rng = np.random.default_rng(0)
    ir, vis = rng.random((40, 48), dtype=np.float32), rng.random((40, 48), dtype=np.float32)
    raw = method.fuse(ir, vis)
    assert raw.shape == ir.shape and np.isfinite(raw).all()  # edge padding of 6 keeps the size
    out = method.to_uint8(raw)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255  # min-max stretch
    assert method.params_count() == sum(v.numel() for k, v in state["model"].items() if "_u" not in k and "_v" not in k)
    assert (tmp_path / "r_m" / "previews" / "epoch_0002" / "setA__p0.png").is_file()
    with pytest.raises(DataError, match="not a trained ddcgan checkpoint"):
        get_method("ddcgan", weights=str(final), device="cpu").fuse(ir, vis)
    with pytest.raises(DataError, match="run the train@fusiongan stage"):
        get_method("fusiongan", weights=str(tmp_path / "none.pth")).fuse(ir, vis)


def test_dead_generator_run_is_flagged_collapsed(pairs, tmp_path, monkeypatch):
    """A deliberately broken run: the generator's last BN layer is zeroed and never trained (lr_g 0), so
    it emits a constant image; the run finishes, and the summary, the checkpoint and the fusion
    method's loader all carry the flag instead of passing the constant images on silently."""
    recipe = T.get_recipe("fusiongan")
    build = recipe.build

    def dead_build(self):
        build(self)
        with torch.no_grad():
            self.generator.bns[-1].weight.zero_()  # last BN scale and shift 0: its features vanish
            self.generator.bns[-1].bias.zero_()

    monkeypatch.setattr(recipe, "build", dead_build)
    final = train("fusiongan", {**TINY_FG, "lr_g": 0.0}, pairs, tmp_path)
    health = summary(tmp_path)["health"]
    assert health["status"] == "collapsed"
    assert any("constant output" in r for r in health["reasons"])
    assert any("fused training pair is constant" in r for r in health["reasons"])
    assert torch.load(final, weights_only=True)["health"]["status"] == "collapsed"
    assert get_method("fusiongan", weights=str(final), device="cpu", bn="image").health()["status"] == "collapsed"
    from pipeline.report.training import flagged, training_blocks

    runs = {"fusiongan": summary(tmp_path)}
    table = training_blocks(runs)[1].frame
    assert table.loc["fusiongan", "health"] == "collapsed"
    assert "training of `fusiongan` was flagged **collapsed**" in flagged(runs)[0]


def test_nan_loss_stops_with_a_clear_error(pairs, tmp_path):
    broken = {**TINY_FG, "lr_g": 1e30, "content_weight": 1e30}
    with pytest.raises(TrainingDiverged, match=r"train.methods.fusiongan: loss 'g_\w+' is (nan|inf)"):
        train("fusiongan", broken, pairs, tmp_path)
    assert summary(tmp_path)["health"]["status"] == "diverged"
    assert not (tmp_path / "m" / "model.pth").exists()


def test_verdict_rules():
    settings = {"d_acc_max": 0.99, "window": 0.5, "min_output_std": 0.005}
    keys = {"accuracy": ("d_acc",), "output_std": "g_std"}
    good = [{"d_acc": 0.6, "g_std": 0.2}] * 4
    assert verdict(good, keys, settings)["status"] == "ok"
    pinned = [{"d_acc": 0.7, "g_std": 0.2}, {"d_acc": 0.8, "g_std": 0.2}, {"d_acc": 1.0, "g_std": 0.2},
              {"d_acc": 1.0, "g_std": 0.2}]
    assert verdict(pinned, keys, settings)["status"] == "collapsed"
    assert verdict(pinned[:3], keys, settings)["status"] == "ok"  # window: the last 2 of 3 are not all 1
    constant = verdict(good, keys, settings, fused=[np.full((8, 8), 0.3)])
    assert constant["status"] == "collapsed" and "constant" in constant["reasons"][0]
    assert verdict(good, keys, settings, fused=[np.full((8, 8), np.nan)])["status"] == "diverged"


def test_ddcgan_adaptive_schedule_and_fusion(pairs, tmp_path):
    final = train("ddcgan", TINY_DDC, pairs, tmp_path)
    rows = (tmp_path / "r_m" / "losses.csv").read_text().splitlines()
    assert rows[0].split(",")[2:] == list(T.get_recipe("ddcgan").loss_names) and len(rows) == 3
    import pandas as pd

    frame = pd.read_csv(tmp_path / "r_m" / "losses.csv")
    # 2 batches per epoch: batch 0 updates D1 and D2 (at least once each), batch 1 the generator
    assert (frame["d1_updates"] >= 0.5).all() and (frame["g_updates"] >= 0.5).all()
    assert (frame[["d1_updates", "d2_updates", "g_updates"]] <= 10).all().all()  # <= 20 per update batch
    method = get_method("ddcgan", weights=str(final), device="cpu")
    raw = method.fuse(np.full((30, 34), 0.25, np.float32), np.linspace(0, 1, 30 * 34, dtype=np.float32).reshape(30, 34))
    assert raw.shape == (30, 34) and np.isfinite(raw).all() and method.gflops(30, 34) > 0


def test_bad_gan_params_name_the_key():
    with pytest.raises(ConfigError, match="train.methods.fusiongan.real_label"):
        T.resolve_config("fusiongan", {**TINY_FG, "real_label": [1.2, 0.7]})
    with pytest.raises(ConfigError, match=r"train.methods.fusiongan.crop must be at least 43"):
        T.resolve_config("fusiongan", {**TINY_FG, "crop": 20})
    with pytest.raises(ConfigError, match=r"train.methods.ddcgan: unknown key\(s\) \['lr_g'\]"):
        T.resolve_config("ddcgan", {**TINY_DDC, "lr_g": 1e-4})


def test_bench_train_method_prints_step_figures(capsys):
    from pipeline.cli import main

    assert main(["bench", "train", "--method", "fusiongan", "--batch", "2", "--crop", "44", "--steps", "1",
                 "--device", "cpu", "--threads", "1"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["method"] == "fusiongan" and record["batch"] == 2 and record["crop"] == 44
    assert record["seconds_per_step"] > 0 and record["samples_per_second"] > 0 and record["peak_rss_mb"] > 0
    assert "ratio_to_spec" not in record  # only at the spec's batch and crop (32, 132)
