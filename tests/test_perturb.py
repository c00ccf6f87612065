"""Perturbations (pipeline/perturb): known answers on synthetic images, determinism, label frame,
bad input, the stage's files and the ``perturb`` CLI."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import load_params
from pipeline.errors import ConfigError
from pipeline.perturb import kinds as K
from pipeline.perturb.families import apply_level, parse_families, selection

RNG = lambda: np.random.default_rng(0)  # noqa: E731


def marker(h=64, w=80, y=20, x=30, value=200):
    image = np.full((h, w), 40, np.uint8)
    image[y:y + 3, x:x + 3] = value
    return image


def centroid(image, threshold=120):
    ys, xs = np.nonzero(image > threshold)
    return ys.mean(), xs.mean()


@pytest.mark.parametrize("dx,dy", [(1, 0), (5, 3), (-7, 2), (0, -4)])
def test_translate_moves_marker_by_k(dx, dy):
    image = marker()
    out = K.translate(image, RNG(), dx=dx, dy=dy)
    (y0, x0), (y1, x1) = centroid(image), centroid(out)
    assert (x1 - x0, y1 - y0) == (dx, dy)
    assert out.dtype == np.uint8 and out.shape == image.shape


def test_subpixel_translate_keeps_mass_centre():
    image = marker(value=240).astype(np.uint8)
    out = K.translate(image, RNG(), dx=2.5, dy=0)
    weights = out.astype(float) - 40
    xs = (weights.sum(0) * np.arange(out.shape[1])).sum() / weights.sum()
    assert xs == pytest.approx(31 + 2.5, abs=0.05)


def test_translate_larger_than_image_names_the_parameter():
    with pytest.raises(ConfigError, match="dx/dy"):
        K.translate(marker(), RNG(), dx=80)


def test_affine_rotation_about_centre():
    image = marker(h=65, w=65, y=31, x=50)
    out = K.affine(image, RNG(), rotate=90.0, scale=1.0)  # counter-clockwise: right of centre -> above
    y, x = centroid(out)
    assert (y, x) == pytest.approx((32 - 19, 32), abs=0.6)


def test_elastic_field_is_smooth_and_bounded():
    dx, dy = K.elastic_field((96, 128), RNG(), alpha=3.0, sigma=16, kernel=101)
    assert max(np.abs(dx).max(), np.abs(dy).max()) == pytest.approx(3.0)
    assert np.abs(np.diff(dx, axis=1)).max() < 0.3        # smooth: neighbours move alike
    with pytest.raises(ConfigError, match="kernel"):
        K.elastic_field((10, 10), RNG(), 1.0, kernel=100)


@pytest.mark.parametrize("sigma", [3.0, 8.0, 14.0])
def test_gaussian_sigma_gives_measured_std(sigma):
    flat = np.full((256, 256), 128, np.uint8)
    out = K.noise(flat, RNG(), sigma=sigma).astype(float)
    # rounding to integers adds a uniform quantisation error of variance 1/12
    assert out.std() == pytest.approx(np.sqrt(sigma ** 2 + 1 / 12), rel=0.02)
    assert out.mean() == pytest.approx(128, abs=0.1)


def test_poisson_peak_gives_shot_noise_variance():
    flat = np.full((256, 256), 128, np.uint8)
    peak = 80.0
    out = K.noise(flat, RNG(), sigma=0.0, peak=peak).astype(float)
    expected = 255.0 / peak * np.sqrt(128 / 255 * peak)   # Poisson: var = mean photons
    assert out.std() == pytest.approx(expected, rel=0.03)


def test_stripes_are_constant_along_columns_with_drawn_sigma():
    flat = np.full((64, 2000), 128, np.uint8)
    out = K.stripes(flat, RNG(), sigma=[5, 7]).astype(float)
    assert np.all(out.std(axis=0) == 0)                   # one offset per column
    assert 4.5 < out[0].std() < 7.5


def test_dead_pixels_fraction_and_contrast_factor():
    image = np.random.default_rng(1).integers(30, 220, (200, 200)).astype(np.uint8)
    out = K.dead_pixels(image, RNG(), fraction=0.05)
    assert np.mean(out != image) == pytest.approx(0.05, abs=0.005)
    low = K.contrast(image, RNG(), factor=0.5).astype(float)
    assert low.std() == pytest.approx(0.5 * image.std(), rel=0.01)


def test_exposure_blur_haze_known_answers():
    image = np.full((32, 32), 200, np.uint8)
    assert np.all(K.exposure(image, RNG(), gain=0.5) == 100)
    assert np.all(K.exposure(image, RNG(), gain=2.0) == 255)       # over-exposure clips
    assert np.all(K.haze(image, RNG(), transmission=0.5, airlight=100) == 150)
    step = np.zeros((32, 32), np.uint8)
    step[:, 16:] = 200
    blurred = K.blur(step, RNG(), sigma=2.0)
    assert blurred[0, 15] == pytest.approx(100, abs=25) and blurred[0, 0] == 0 and blurred[0, -1] == 200


@pytest.mark.parametrize("kind,params", [("translate", {}), ("affine", {}), ("elastic", {}), ("noise", {}),
                                         ("stripes", {}), ("dead_pixels", {}), ("contrast", {}),
                                         ("exposure", {}), ("blur", {}), ("haze", {})])
def test_zero_strength_is_identity(kind, params):
    image = np.random.default_rng(2).integers(0, 256, (24, 40, 3)).astype(np.uint8)
    assert np.array_equal(K.KINDS[kind](image, RNG(), **params), image)


@pytest.fixture(scope="module")
def families(repo_root):
    params = load_params(repo_root / "params.yaml", profile="full")
    return parse_families(params["perturb"])


def test_configured_families_have_three_levels_and_level0_identity(families):
    for name in ("misregistration", "ir_faults", "vis_degradation"):
        assert families[name].n_levels >= 3
    ir = np.random.default_rng(3).integers(0, 256, (48, 64)).astype(np.uint8)
    vis = np.random.default_rng(4).integers(0, 256, (48, 64, 3)).astype(np.uint8)
    for family in families.values():
        a, b = apply_level(family, 0, ir, vis, seed=0, name="x")
        assert np.array_equal(a, ir) and np.array_equal(b, vis)


def test_deterministic_per_seed_and_image(families):
    ir = np.full((48, 64), 100, np.uint8)
    vis = np.full((48, 64), 150, np.uint8)
    fam = families["ir_faults"]
    one = apply_level(fam, 2, ir, vis, seed=0, dataset="d", name="a")[0]
    assert np.array_equal(one, apply_level(fam, 2, ir, vis, seed=0, dataset="d", name="a")[0])
    assert not np.array_equal(one, apply_level(fam, 2, ir, vis, seed=1, dataset="d", name="a")[0])
    assert not np.array_equal(one, apply_level(fam, 2, ir, vis, seed=0, dataset="d", name="b")[0])


def test_labels_stay_in_visible_frame(families):
    """Misregistration moves only the infrared image: the visible image (and so its boxes and
    masks) is unchanged; visible degradations never move content."""
    vis = marker(value=220)
    ir = marker(value=210)
    ir_out, vis_out = apply_level(families["misregistration"], 3, ir, vis, seed=0, name="m")
    assert np.array_equal(vis_out, vis)
    assert not np.array_equal(ir_out, ir)
    ir_out, vis_out = apply_level(families["vis_degradation"], 1, ir, vis, seed=0, name="m")
    assert np.array_equal(ir_out, ir)
    assert centroid(vis_out, 60) == pytest.approx(centroid(vis, 120), abs=0.01)


def test_perturb_section_is_strict(repo_root):
    from pipeline.perturb.stage import perturb_settings

    section = load_params(repo_root / "params.yaml")["perturb"]
    with pytest.raises(ConfigError, match="max_image"):
        perturb_settings({"perturb": {**section, "max_image": 3}})          # a typo is not ignored
    with pytest.raises(ConfigError, match="missing key.*split"):
        perturb_settings({"perturb": {k: v for k, v in section.items() if k != "split"}})


def test_bad_configuration_errors_name_the_parameter(families):
    with pytest.raises(ConfigError, match=r"perturb.families.f.levels\[1\]\[0\].kind"):
        parse_families({"families": {"f": {"levels": [[{"kind": "sparkle"}]]}}})
    with pytest.raises(ConfigError, match="image: ir"):
        parse_families({"families": {"f": {"levels": [[{"kind": "translate", "image": "vis", "dx": 1}]]}}})
    with pytest.raises(ConfigError, match="unknown parameter"):
        parse_families({"families": {"f": {"levels": [[{"kind": "blur", "image": "vis", "radius": 1}]]}}})
    with pytest.raises(ConfigError, match="perturb.run"):
        selection(families, {"nope": [1]})
    with pytest.raises(ConfigError, match="parameter level"):
        selection(families, {"ir_faults": [9]})
    big = parse_families({"families": {"f": {"levels": [[{"kind": "translate", "dx": 500}]]}}})["f"]
    with pytest.raises(ConfigError, match=r"levels\[1\]\[0\].*dx/dy"):
        apply_level(big, 1, marker(), marker())


def _tiny_msrs(root, labelled=True):
    from pipeline.imageio import write_image

    for split in ("train", "test"):
        for k in range(2):
            for sub in ("ir", "vi"):
                write_image(root / split / sub / f"{k:05d}.png", marker())
            if labelled:
                write_image(root / split / "Segmentation_labels" / f"{k:05d}.png", np.zeros((64, 80), np.uint8))
    return root


def test_stage_writes_changed_modality_only_and_checks_labels(tmp_path):
    from pipeline.perturb.stage import level_pair_paths, read_index, run_perturb

    root = _tiny_msrs(tmp_path / "MSRS")
    params = {"datasets": {"msrs": {"kind": "msrs", "root": str(root)}},
              "perturb": {"out": "unused", "seed": 0, "split": "test", "max_images": None, "run": None,
                          "datasets": ["msrs"], "families": {"shift": {"levels": [[{"kind": "translate", "dx": 3}]]}}}}
    out = tmp_path / "perturbed"
    run_perturb(params, out)
    index = read_index(out)
    assert index["datasets"]["msrs"] == ["00000", "00001"]
    assert sorted(p.name for p in (out / "msrs" / "shift" / "1").iterdir()) == ["ir"]
    from pipeline.datasets import load_configured

    sample = load_configured(params, "msrs").split("test")[0]
    ir, vis = level_pair_paths(out, index, sample, "msrs", "shift", 1)
    assert vis == sample.vis and ir.parent == out / "msrs" / "shift" / "1" / "ir"
    with pytest.raises(ConfigError, match="perturb.split"):
        run_perturb({**params, "perturb": {**params["perturb"], "split": "val"}}, out)
    bare = _tiny_msrs(tmp_path / "bare", labelled=False)
    with pytest.raises(Exception, match="label|perturb.split"):
        run_perturb({**params, "datasets": {"msrs": {"kind": "msrs", "root": str(bare)}}}, tmp_path / "p2")


def test_cli_perturb_writes_the_pair(tmp_path, repo_root, capsys):
    from pipeline.cli import main
    from pipeline.imageio import read_image, write_image

    write_image(tmp_path / "a_ir.png", marker())
    write_image(tmp_path / "a.png", marker())
    code = main(["perturb", "--params", str(repo_root / "params.yaml"), "--ir", str(tmp_path / "a_ir.png"),
                 "--vis", str(tmp_path / "a.png"), "--family", "translate", "--level", "1",
                 "--out-dir", str(tmp_path / "out")])
    assert code == 0
    out = read_image(tmp_path / "out" / "a_ir.png")
    assert centroid(out)[1] - centroid(marker())[1] == 2
    assert main(["perturb", "--params", str(repo_root / "params.yaml"), "--ir", str(tmp_path / "a_ir.png"),
                 "--vis", str(tmp_path / "a.png"), "--family", "nope", "--level", "1"]) == 2
    assert "--family" in capsys.readouterr().err
