"""VSM-WLS through the registry on a real TNO pair against an independent float64 evaluation of
spec/vsm.md §3 (direct window sums instead of OpenCV/SciPy running filters).

The defect this pins: the stage hands every method its 8-bit sources /255 in float32; vsm_wls
carried that rounding (up to 3e-8 per pixel) into its float64 output, 4.7e-8 away from the spec's
double computation on TNO pairs (tolerance 1e-9). Now 8-bit float32 inputs are taken as k/255."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view as windows

from pipeline.fusion import colour
from pipeline.fusion.registry import get_method
from pipeline.imageio import read_image
from pipeline.vsm import vsm


def _gauss(sigma: float, size: int) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def _blur(img, sigma, size=None, pad="edge"):
    size = size or 2 * int(np.floor(3 * sigma + 0.5)) + 1
    g, r = _gauss(sigma, size), size // 2
    rows = windows(np.pad(img, ((r, r), (0, 0)), mode=pad), size, axis=0) @ g
    return windows(np.pad(rows, ((0, 0), (r, r)), mode=pad), size, axis=1) @ g


def _window_sum(img, r):  # direct (2r+1)×(2r+1) sums with zeros outside, rows then columns
    rows = windows(np.pad(img, ((r, r), (0, 0))), 2 * r + 1, axis=0).sum(axis=-1)
    return windows(np.pad(rows, ((0, 0), (r, r))), 2 * r + 1, axis=1).sum(axis=-1)


def _box(img, r):  # mean over the window truncated at the border
    return _window_sum(img, r) / _window_sum(np.ones_like(img), r)


def _guided(g, x, r, eps):
    mg, mx = _box(g, r), _box(x, r)
    a = (_box(g * x, r) - mg * mx) / (_box(g * g, r) - mg * mg + eps)
    return _box(a, r) * g + _box(mx - a * mg, r)


def _decompose(img):
    details, g = [], img
    for s in (2.0, 4.0, 8.0):
        j = _blur(g, s)
        for _ in range(4):
            j = _guided(j, g, int(s), 0.05 ** 2)
        details.append(g - j)
        g = j
    base = _blur(g, 2.0)
    return details + [g - base], base


def reference_vsm_wls(i1: np.ndarray, i2: np.ndarray) -> np.ndarray:
    (d1, b1), (d2, b2) = _decompose(i1), _decompose(i2)
    w1, w2 = vsm(i1), vsm(i2)
    fused = (0.5 + 0.5 * (w1 - w2)) * b1 + (0.5 + 0.5 * (w2 - w1)) * b2
    fused = fused + np.where(np.abs(d1[0]) < np.abs(d2[0]), d2[0], d1[0])
    for k in (1, 2, 3):
        c = _blur((np.abs(d1[k]) < np.abs(d2[k])).astype(float), 2.0, 13, pad="symmetric")
        m = c * d2[k] + (1 - c) * d1[k]
        a = 1 / (np.abs(windows(np.pad(d2[k], 3, mode="edge"), (7, 7)).mean(axis=(-1, -2))) + 1e-6)
        fused = fused + (m + 0.01 * a * d1[k]) / (1 + 0.01 * a)
    return fused


@pytest.mark.shared
def test_vsm_wls_tno_pair_is_float64_exact(shared_data):
    ir = read_image(shared_data / "TNO" / "ir" / "01.png")[160:320, 200:440]
    vis = read_image(shared_data / "TNO" / "vi" / "01.png")[160:320, 200:440]
    assert ir.ndim == 2 and vis.ndim == 2
    expected = reference_vsm_wls(vis / 255.0, ir / 255.0)
    # what the fusion stage passes: the 8-bit lumas /255 in float32
    fused = get_method("vsm_wls").fuse(colour.to_float(ir), colour.to_float(vis))
    assert np.abs(fused - expected).max() < 1e-9
    # the defect: the same rule on the float32 values as they are is ~5e-8 off
    from pipeline.fusion.vsm_wls import vsm_wls_fuse

    off = np.abs(vsm_wls_fuse(colour.to_float(vis).astype(np.float64), colour.to_float(ir).astype(np.float64))
                 - expected).max()
    assert off > 1e-8


def test_unit_float64_recovers_8bit_levels_only():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(colour.unit_float64(colour.to_float(levels)), levels / 255.0)
    other = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16) ** 2  # not all k/255
    np.testing.assert_array_equal(colour.unit_float64(other), other.astype(np.float64))
    np.testing.assert_array_equal(colour.unit_float64(levels / 255.0), levels / 255.0)
