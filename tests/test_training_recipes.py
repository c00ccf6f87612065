"""The recipes of PMGI, DenseFuse, MFF-GAN and UFGAN ("UFGAN, defects fixed") on the generic trainer:
a tiny training runs with finite, per-component losses; the trained checkpoint fuses through the
registry; resume equality (MFF-GAN, a GAN); the health check flags a broken run; bad input errors."""
from __future__ import annotations


import json

import numpy as np
import pandas as pd
import pytest
import torch
from _training import assert_resume_equality, pairs, published, restore_threads, summary, train  # noqa: F401

from pipeline.errors import ConfigError, DataError
from pipeline.fusion.registry import get_method
from pipeline.training import data as D
from pipeline.training import trainer as T
from pipeline.training.health import TrainingDiverged

TINY = {"seed": 5, "device": "cpu", "threads": 1, "epochs": 2, "batch_size": 2, "crops_per_pair": 1,
        "checkpoint_every": 1, "preview_every": 2, "preview_count": 1, "shuffle": True}
RECIPES = {
    "pmgi": {"crop": 24},
    "densefuse": {"crop": 32},
    "mff_gan": {"crop": 32},
}


def tiny(method: str, **over) -> dict:
    return {**published(method), **TINY, **RECIPES[method], **over}


def fusion_entry(method: str) -> str:
    """The registry kind that fuses with ``method``'s trained checkpoint."""
    return method


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_tiny_training_logs_finite_components_and_fuses(method, pairs, tmp_path):
    final = train(method, tiny(method), pairs, tmp_path)
    frame = pd.read_csv(tmp_path / "r_m" / "losses.csv")
    assert list(frame.columns) == ["epoch", "lr", *T.get_recipe(method).loss_names] and len(frame) == 2
    assert np.isfinite(frame.drop(columns=["epoch"]).to_numpy(dtype=float)).all()
    assert summary(tmp_path)["health"]["status"] in ("ok", "collapsed")
    state = torch.load(final, weights_only=True)
    assert state["method"] == method and "health" in state and state["epoch"] == 1
    assert (tmp_path / "r_m" / "previews" / "epoch_0001" / "setA__p0.png").is_file()
    fused = get_method(f"{method}_trained", kind=fusion_entry(method), weights=str(final), device="cpu")
    rng = np.random.default_rng(0)
    ir, vis = rng.random((36, 40), dtype=np.float32), rng.random((36, 40), dtype=np.float32)
    raw = fused.fuse(ir, vis)
    assert raw.shape == ir.shape and np.isfinite(raw).all()
    assert fused.to_uint8(raw).dtype == np.uint8 and fused.params_count() > 0


def test_trained_weights_resolve_to_the_stage_output():
    from pipeline.training.paths import trained_weights

    for method in RECIPES:
        entry = get_method(f"{method}_trained", kind=fusion_entry(method), weights="trained")
        assert entry.files[""] == trained_weights(method)
        with pytest.raises(DataError, match=f"run the train@{method} stage"):
            entry.fuse(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))


def test_mff_gan_resume_after_interruption_gives_identical_weights(pairs, tmp_path, monkeypatch):
    assert_resume_equality("mff_gan", tiny("mff_gan", epochs=3), pairs, tmp_path, monkeypatch)


def test_mff_gan_sharpness_map_and_joint_constraints():
    from pipeline.training.methods.mff_gan import focus_scores, joint_constraints

    gen = torch.Generator().manual_seed(2)
    sharp = torch.rand(1, 1, 16, 16, generator=gen, dtype=torch.float64) * 2 - 1
    smooth = torch.nn.functional.avg_pool2d(sharp, 3, stride=1, padding=1)
    near = torch.cat([sharp[..., :8], smooth[..., 8:]], -1)   # near focus: left half sharp
    far = torch.cat([smooth[..., :8], sharp[..., 8:]], -1)
    near_score, far_score = focus_scores(near, far)
    assert far_score[..., 2:-2, 10:-2].mean() > 0.75 and far_score[..., 2:-2, 2:6].mean() < 0.25
    assert torch.equal(near_score + far_score, torch.ones_like(near_score))
    assert torch.equal(focus_scores(near, near)[0], torch.ones_like(near))   # ties go to near
    composite = near_score * near + far_score * far
    intensity, _ = joint_constraints(composite, near, far, near_score, far_score)
    assert float(intensity) == 0.0


def test_demo_multifocus_pairs_train_through_the_pairs_kind(tmp_path):
    from pipeline.datasets import load_dataset
    from pipeline.demo_data import DemoConfig, generate

    generate(tmp_path / "demo", DemoConfig(m3fd_pairs=0, msrs_train=0, msrs_test=0, multifocus_pairs=2,
                                           height=64, width=64), workers=1)
    sets = {"mf": {"kind": "pairs", "root": str(tmp_path / "demo" / "MultiFocus"), "ir_dir": "far", "vis_dir": "near"}}
    samples = D.load_training_sets({}, sets, ["all"])
    pairs = D.training_pairs(samples)
    assert [p.key for p in pairs] == ["mf/00000", "mf/00001"] and pairs[0].ir.parent.name == "far"
    dataset = load_dataset("pairs", tmp_path / "demo" / "MultiFocus", ir_dir="far", vis_dir="near")
    (sample,) = dataset.samples[:1]
    from pipeline.imageio import read_image

    near, far = read_image(sample.vis).astype(float), read_image(sample.ir).astype(float)
    # the left half is sharp in the near image: more high-frequency energy there
    energy = lambda x: np.abs(np.diff(x, axis=1)).mean()  # noqa: E731
    assert energy(near[:, :24]) > energy(far[:, :24]) and energy(far[:, 40:]) > energy(near[:, 40:])
    train("mff_gan", tiny("mff_gan", epochs=1, crop=32, batch_size=2), pairs, tmp_path)
    assert summary(tmp_path)["n_pairs"] == 2


def test_pmgi_loss_is_the_published_proportional_loss():
    from pipeline.training.methods.pmgi import proportional_loss

    gen = torch.Generator().manual_seed(0)
    f, ir, vis = (torch.rand(2, 1, 9, 9, generator=gen, dtype=torch.float64) * 2 - 1 for _ in range(3))
    weights = published("pmgi")["loss_weights"]
    total, parts = proportional_loss(f, ir, vis, weights, 100.0)
    lap = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64).view(1, 1, 3, 3)

    def grad(x):
        return torch.nn.functional.conv2d(x, lap, padding=1)

    expected = 100 * (((f - ir) ** 2).mean() + 0.3 * ((f - vis) ** 2).mean()
                      + 5 * ((grad(f) - grad(vis)) ** 2).mean() + 4 * ((grad(f) - grad(ir)) ** 2).mean())
    assert weights == {"intensity_ir": 1.0, "intensity_vis": 0.3, "gradient_vis": 5.0, "gradient_ir": 4.0}
    assert torch.allclose(total, expected, rtol=1e-12)


def test_densefuse_ms_ssim_keeps_the_port_quirks():
    from pipeline.training.methods.densefuse import MS_SSIM_WEIGHTS, ms_ssim

    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 48, 48, generator=gen, dtype=torch.float64) * 255
    assert float(ms_ssim(x, x)) == pytest.approx(1.0, abs=1e-12)
    noisy = (x + torch.randn(x.shape, generator=gen, dtype=torch.float64) * 20).clamp(0, 255)
    value = float(ms_ssim(noisy, x))
    assert 0.5 < value < 1.0
    # dynamic range from the first argument: the same images on the [0, 1] scale score the same
    assert float(ms_ssim(noisy / 255, x / 255)) == pytest.approx(value, rel=1e-9)
    assert MS_SSIM_WEIGHTS == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def test_densefuse_identity_path_init():
    """Noise 0: the autoencoder is exactly the identity on 0..255 images and the addition rule is
    exactly the average; the recipe's init (noise 0.1) starts near it."""
    from pipeline.fusion.nets.densefuse import DenseFuseNet
    from pipeline.training.methods.densefuse import INIT_NOISE, identity_path_init

    gen = torch.Generator().manual_seed(2)
    ir, vis = (torch.rand(1, 1, 24, 20, generator=gen, dtype=torch.float64) * 255 for _ in range(2))
    torch.manual_seed(0)
    net = DenseFuseNet().double()
    identity_path_init(net, 0.0)
    with torch.no_grad():
        assert torch.allclose(net.decoder(net.encoder(ir)), ir, atol=1e-9)
        assert torch.allclose(net(ir, vis), (ir + vis) / 2, atol=1e-9)
    torch.manual_seed(0)
    near = DenseFuseNet().double()
    identity_path_init(near, INIT_NOISE)
    with torch.no_grad():
        error = (near.decoder(near.encoder(ir)) - ir).abs().mean() / ir.mean()
    assert INIT_NOISE == 0.1 and 0 < float(error) < 0.5


def test_constant_generator_run_is_flagged_collapsed(pairs, tmp_path, monkeypatch):
    """A deliberately broken PMGI run: the output layer's weights are zeroed and never trained (lr 0),
    so every fusion is the constant tanh(bias); the verdict says collapsed, the fusion method warns."""
    recipe = T.get_recipe("pmgi")
    build = recipe.build

    def dead_build(self):
        build(self)
        with torch.no_grad():
            self.net.layer5.conv.weight.zero_()

    monkeypatch.setattr(recipe, "build", dead_build)
    final = train("pmgi", tiny("pmgi", lr=0.0), pairs, tmp_path)
    health = summary(tmp_path)["health"]
    assert health["status"] == "collapsed" and any("constant" in r for r in health["reasons"])
    assert get_method("p", kind="pmgi", weights=str(final)).health()["status"] == "collapsed"


def test_bad_input_names_the_file_or_param(pairs, tmp_path):
    with pytest.raises(DataError, match=r"fewer than batch_size 8.*train.methods.pmgi.batch_size"):
        train("pmgi", tiny("pmgi", batch_size=8, drop_last=True), pairs, tmp_path)
    with pytest.raises(DataError, match=r"smaller than the 64x64 training crop \(lower train.methods.pmgi.crop\)"):
        train("pmgi", tiny("pmgi", crop=64), pairs, tmp_path)
    with pytest.raises(ConfigError, match=r"train.methods.pmgi.loss_weights"):
        T.resolve_config("pmgi", tiny("pmgi", loss_weights={"intensity_ir": 1.0}))
    with pytest.raises(TrainingDiverged, match=r"train.methods.pmgi: loss '\w+' is (nan|inf)"):
        train("pmgi", tiny("pmgi", loss_scale=float("inf")), pairs, tmp_path, "nan")
    # a resume checkpoint of another method / another recipe
    train("pmgi", tiny("pmgi", epochs=1), pairs, tmp_path, "one")
    ckpt = tmp_path / "one" / "checkpoints" / "epoch_0000.pth"
    with pytest.raises(DataError, match=r"epoch_0000.pth: checkpoint of method 'pmgi', not 'fusiongan'"):
        train("fusiongan", {**published("fusiongan"), **TINY, "crop": 44, "widths": [4, 4, 4, 4]}, pairs, tmp_path,
              "other", resume=ckpt)
    with pytest.raises(DataError, match=r"epoch_0000.pth: checkpoint of another pmgi recipe \(differs in settings \['lr'\]"):
        train("pmgi", tiny("pmgi", epochs=1, lr=5e-4), pairs, tmp_path, "other", resume=ckpt)


def test_ufgan_defects_fixed_trains_and_fuses_deterministically(tmp_path):
    from _training import make_set

    ds = make_set(tmp_path / "big", ["a", "b"], size=(130, 132))
    big = D.training_pairs({"big": ds.samples})
    cfg = {**published("ufgan"), **TINY, "crop": 126, "width": 2, "batch_size": 2, "preview_every": 0}
    final = train("ufgan", cfg, big, tmp_path)
    frame = pd.read_csv(tmp_path / "r_m" / "losses.csv")
    assert list(frame.columns) == ["epoch", "lr", *T.get_recipe("ufgan").loss_names]
    assert np.isfinite(frame.drop(columns=["epoch"]).to_numpy(dtype=float)).all()
    state = torch.load(final, weights_only=True)
    assert state["label"] == "UFGAN, defects fixed" and state["width"] == 2
    method = get_method("ufgan", weights=str(final), device="cpu")
    rng = np.random.default_rng(1)
    ir, vis = rng.random((20, 24), dtype=np.float32), rng.random((20, 24), dtype=np.float32)
    first, second = method.fuse(ir, vis), method.fuse(ir, vis)
    assert first.shape == ir.shape and np.array_equal(first, second)   # dropout off at test (defect fixed)
    assert method.metadata()["label"] == "UFGAN, defects fixed"
    with pytest.raises(DataError, match=r"train.methods.ufgan.vgg_weights: local VGG19 weights file not found"):
        T.resolve_config("ufgan", {**cfg, "vgg_weights": str(tmp_path / "vgg19.pth")})
    with pytest.raises(ConfigError, match=r"train.methods.ufgan.crop must be at least 126"):
        T.resolve_config("ufgan", {**cfg, "crop": 100})


def test_bench_train_single_update_for_the_gans(capsys):
    from pipeline.cli import main

    for method, crop in (("ddcgan", 24), ("fusiongan", 48), ("mff_gan", 32)):
        assert main(["bench", "train", "--method", method, "--batch", "2", "--crop", str(crop), "--steps", "1",
                     "--device", "cpu", "--threads", "1", "--single-update"]) == 0
        record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert record["single_update"] is True and record["seconds_per_step"] > 0, method
    assert main(["bench", "train", "--method", "pmgi", "--single-update", "--steps", "1"]) == 2
