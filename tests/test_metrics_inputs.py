"""Metric inputs and edge cases: sizes, colour, constant images, non-finite values, selections,
directions, and the documented conventions' relations on synthetic (unshipped) images."""
from __future__ import annotations

import math
import warnings

import cv2
import numpy as np
import pytest

from pipeline.errors import ConfigError, DataError
from pipeline.metrics import compute_metrics, metric_directions, metric_names, to_gray


def _pair(h=48, w=52, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.float64), (0, 0), 2)
    ir = np.clip(base * 1.5 - 60 + rng.normal(0, 3, (h, w)), 0, 255).round().astype(np.uint8)
    vis = np.clip(255 - base + rng.normal(0, 6, (h, w)), 0, 255).round().astype(np.uint8)
    fused = ((ir.astype(np.uint16) + vis + 1) // 2).astype(np.uint8)
    return ir, vis, fused


@pytest.mark.parametrize("convention", ["matlab", "cddfuse"])
def test_different_sizes_are_an_error(convention):
    ir, vis, fused = _pair()
    with pytest.raises(DataError, match="same size"):
        compute_metrics(ir, vis[:-1], fused, convention)


@pytest.mark.parametrize("bad, message", [
    (np.full((48, 52), np.nan), "NaN or infinite"),
    (np.full((48, 52), np.inf), "NaN or infinite"),
    (np.full((48, 52), 300.0), "0..255"),
    (np.full((48, 52), -1.0), "0..255"),
    (np.zeros((48, 52, 2)), "grey or"),
    (np.zeros((1, 52)), "too small"),
])
def test_bad_values_are_clear_errors(bad, message):
    ir, vis, _ = _pair()
    with pytest.raises(DataError, match=message):
        compute_metrics(ir, vis, bad)


def test_unknown_metric_and_convention():
    ir, vis, fused = _pair()
    with pytest.raises(ConfigError, match="unknown metric 'FOO'"):
        compute_metrics(ir, vis, fused, only="EN,FOO")
    with pytest.raises(ConfigError, match="MS_SSIM"):  # matlab-only metric
        compute_metrics(ir, vis, fused, "cddfuse", only=["MS_SSIM"])
    with pytest.raises(ConfigError, match="convention"):
        compute_metrics(ir, vis, fused, "octave")


def test_only_and_aliases_keep_order():
    ir, vis, fused = _pair()
    values = compute_metrics(ir, vis, fused, "cddfuse", only="VIFF, EN,EN")
    assert list(values) == ["VIF", "EN"]
    full = compute_metrics(ir, vis, fused, "cddfuse")
    assert values["VIF"] == full["VIF"] and list(full) == metric_names("cddfuse")


def test_colour_is_converted_once_with_the_convention_rule():
    ir, vis, fused = _pair()
    rng = np.random.default_rng(1)
    colour = np.stack([fused, np.clip(fused.astype(int) + rng.integers(-30, 30, fused.shape), 0, 255),
                       255 - fused], axis=2).astype(np.uint8)
    # matlab: rgb2gray weights rounded half away from zero
    w = (0.298936021293776, 0.587043074451121, 0.114020904255103)
    grey_ml = np.floor(colour.astype(float) @ np.asarray(w) + 0.5)
    assert np.array_equal(to_gray(colour, "matlab"), grey_ml)
    assert compute_metrics(ir, vis, colour, "matlab", only="EN,SSIM,FMI_pixel") == \
        compute_metrics(ir, vis, grey_ml.astype(np.uint8), "matlab", only="EN,SSIM,FMI_pixel")
    # cddfuse: OpenCV BGR2GRAY on float32 data then np.round (CDDFuse image_read_cv2)
    grey_py = np.round(cv2.cvtColor(colour[:, :, ::-1].astype(np.float32), cv2.COLOR_BGR2GRAY))
    assert np.array_equal(to_gray(colour, "cddfuse"), grey_py)
    assert compute_metrics(ir, vis, colour, "cddfuse") == compute_metrics(ir, vis, grey_py, "cddfuse")
    # a colour file with equal channels is the grey image
    same = np.repeat(fused[:, :, None], 3, axis=2)
    assert compute_metrics(ir, vis, same, "cddfuse") == compute_metrics(ir, vis, fused, "cddfuse")


@pytest.mark.parametrize("convention", ["matlab", "cddfuse"])
def test_constant_images_have_documented_values(convention):
    ir, vis, fused = _pair()
    flat = np.full_like(fused, 100)
    zero = np.zeros_like(fused)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no silent 0/0 or log(0)
        const_fused = compute_metrics(ir, vis, flat, convention)
        all_flat = compute_metrics(flat, flat, flat, convention)
        all_zero = compute_metrics(zero, zero, zero, convention)
        black_fused = compute_metrics(ir, vis, zero, convention, only="PSNR")
    assert all(math.isfinite(v) for v in const_fused.values())
    assert const_fused["SD"] == 0 and const_fused["SF"] == 0 and const_fused["AG"] == 0
    assert const_fused["EN"] == 0 and const_fused["CC"] == 0 and const_fused["VIF"] == 0
    assert all_flat["PSNR"] == math.inf and all_zero["PSNR"] == math.inf  # identical images
    assert all_flat["VIF"] == 2.0  # reference without variance: 1.0 per source (CDDFuse rule)
    assert all_flat["CC"] == 0 and all_flat["SCD"] == 0  # correlation with a constant: 0
    assert all_zero["Qabf"] == 0.0  # no source gradient at all
    assert all(math.isfinite(v) for k, v in all_flat.items() if k != "PSNR")
    if convention == "cddfuse":
        assert black_fused["PSNR"] == -math.inf  # peak max(F) = 0
    else:
        assert math.isfinite(black_fused["PSNR"])


def test_ms_ssim_needs_44_pixels():
    ir, vis, fused = _pair(40, 60)
    assert math.isnan(compute_metrics(ir, vis, fused, only="MS_SSIM")["MS_SSIM"])
    ir, vis, fused = _pair(44, 60)
    assert 0 < compute_metrics(ir, vis, fused, only="MS_SSIM")["MS_SSIM"] <= 1


@pytest.mark.parametrize("size", [2, 3, 6, 7, 40, 41])
def test_small_images_give_nan_only_where_a_window_does_not_fit(size):
    rng = np.random.default_rng(size)
    ir = rng.integers(0, 256, (size, size + 3)).astype(np.uint8)
    vis, fused = 255 - ir, ir // 2 + 60
    ml = compute_metrics(ir, vis, fused, "matlab")
    py = compute_metrics(ir, vis, fused, "cddfuse")
    nan_ml = {k for k, v in ml.items() if math.isnan(v)}
    nan_py = {k for k, v in py.items() if math.isnan(v)}
    expect = {"MS_SSIM"} | ({"VIF"} if size < 41 else set())
    expect |= {"FMI_pixel", "FMI_dct", "FMI_pixel_none"} if size < 3 else set()
    assert nan_ml == expect
    assert nan_py == ({"VIF"} if size < 41 else set()) | ({"SSIM"} if size < 7 else set())


def test_directions_and_names():
    ml, py = metric_directions("matlab"), metric_directions("cddfuse")
    assert {k for k, v in ml.items() if v == "down"} == {"MSE", "Nabf", "Nabf_fused_first", "Nabf_v2022"}
    assert {k for k, v in py.items() if v == "down"} == {"MSE"}
    assert set(py) < set(ml)
    assert metric_names("cddfuse") == ["EN", "SD", "SF", "AG", "MI", "MSE", "CC", "PSNR", "SCD", "VIF",
                                       "Qabf", "SSIM"]


def test_convention_relations_on_unseen_images():
    """Spec relations between the conventions hold on a synthetic triple."""
    ir, vis, fused = _pair(61, 67, seed=4)
    ml = compute_metrics(ir, vis, fused, "matlab")
    py = compute_metrics(ir, vis, fused, "cddfuse")
    h, w = fused.shape
    for name in ("EN", "SD", "SF", "SCD", "CC", "VIF", "Qabf"):
        assert ml[name] == pytest.approx(py[name], rel=1e-6), name
    assert ml["AG"] == pytest.approx(py["AG"] * h * w / ((h - 1) * (w - 1)), rel=1e-6)
    assert ml["MSE"] == pytest.approx(py["MSE"] / 255 ** 2, rel=1e-6)
    peak = float(fused.max())
    assert ml["PSNR"] == pytest.approx(py["PSNR"] + 20 * math.log10(255 / peak) + 20 * math.log10(255), rel=1e-6)
    assert 0 < ml["FMI_pixel"] <= 1 and 0 < ml["FMI_dct"] <= 1 and 0 < ml["FMI_pixel_none"] <= 1
    # no pixel at 255 → MI in bits is exactly MI in nats / ln 2 (the 254/255 merge does nothing)
    assert max(ir.max(), vis.max(), fused.max()) < 255
    assert ml["MI"] == pytest.approx(py["MI"] / math.log(2), rel=1e-9)
