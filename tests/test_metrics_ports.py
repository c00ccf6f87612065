"""The fast metric implementations against direct, loop-by-loop ports of the toolbox algorithms
(written from ../shared/spec/metrics.md) on small images that are NOT the shipped reference triples:
FMI (81-cell joint PDF per window, with the fused-window overwrite quirk), MEF-SSIM (per patch),
and the CDDFuse SSIM against scikit-image itself."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics import fmi, structural
from pipeline.metrics.filters import gaussian_2d


def _normalise(w):
    lo, hi = w.min(), w.max()
    return np.ones_like(w) if hi == lo else (w - lo) / (hi - lo)


def _seq(values):
    """Sequential left-to-right sum (Octave's ``sum``); decides the exact-zero tests below."""
    return sum(float(v) for v in values)


def _window_fmi(x_raw, f_cur):
    """One branch of analysis_fmi.m for a 3×3 window; returns (fmi, F window after the branch)."""
    if np.array_equal(x_raw, f_cur):
        return 1.0, f_cur
    xn, fn = _normalise(x_raw), _normalise(f_cur)
    p = xn.flatten(order="F") / xn.sum(axis=0).sum()  # MATLAB sum(sum(.)): columns first
    q = fn.flatten(order="F") / fn.sum(axis=0).sum()
    cp, cq = np.cumsum(p), np.cumsum(q)
    tp, tq = p - _seq(p) / 9, q - _seq(q) / 9
    s = _seq(tp * tq)
    c = 0.0 if s == 0 else s / math.sqrt(_seq(tp * tp) * _seq(tq * tq))
    idx = np.arange(1, 10)
    sdp = math.sqrt(max(_seq(idx ** 2 * p) - _seq(idx * p) ** 2, 0))
    sdq = math.sqrt(max(_seq(idx ** 2 * q) - _seq(idx * q) ** 2, 0))
    if c >= 0:
        bound = np.minimum(cq[:, None], cp[None, :])
    else:
        bound = np.maximum(cq[:, None] + cp[None, :] - 1, 0)
    coef = 0.0
    if sdp != 0 and sdq != 0 and c != 0:
        cov = np.sum(bound - cq[:, None] * cp[None, :])
        coef = c / (cov / (sdq * sdp))
    padded = np.zeros((10, 10))
    padded[1:, 1:] = bound
    cell = padded[1:, 1:] - padded[:-1, 1:] - padded[1:, :-1] + padded[:-1, :-1]
    joint = coef * cell + (1 - coef) * q[:, None] * p[None, :]
    nz = joint[joint != 0]
    h_joint = float(np.sum(-nz * np.log2(np.abs(nz))))
    hx = float(np.sum(-p[p > 0] * np.log2(p[p > 0])))
    hf = float(np.sum(-q[q > 0] * np.log2(q[q > 0])))
    mi = hx + hf - h_joint
    return (0.0 if mi == 0 else 2 * mi / (hx + hf)), fn


def slow_fmi(a, b, f, feature):
    fa, fb, ff = (fmi.feature_map(x, feature) for x in (a, b, f))
    h, w = fa.shape
    values = []
    for r in range(1, h - 1):
        for c in range(1, w - 1):
            win = (slice(r - 1, r + 2), slice(c - 1, c + 2))
            fmi_af, f_cur = _window_fmi(fa[win], ff[win])
            fmi_bf, _ = _window_fmi(fb[win], f_cur)
            values.append((fmi_af + fmi_bf) / 2)
    return float(np.mean(values))


def _small_triple(seed, h=20, w=22):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w)).astype(float)
    b = np.clip(a * 0.3 + rng.integers(0, 180, (h, w)), 0, 255).round()
    a[:6, :8] = 40  # flat patch (constant windows)
    b[:6, :8] = 40  # ... equal in both sources
    b[10:, 12:] = 255  # saturated corner
    f = np.maximum(a, b)  # many windows equal to one source (the step-1 shortcut)
    f[3:9, 15:20] = np.round((a[3:9, 15:20] + b[3:9, 15:20]) / 2)
    return a, b, f


@pytest.mark.parametrize("feature", ["none", "dct", "edge", "gradient"])
@pytest.mark.parametrize("seed", [0, 1])
def test_fmi_matches_direct_port(feature, seed):
    a, b, f = _small_triple(seed)
    assert fmi.fmi_value(a, b, f, feature) == pytest.approx(slow_fmi(a, b, f, feature), rel=1e-12, abs=1e-14)


def test_fmi_fused_window_overwrite_quirk():
    """The B branch compares raw B with the F window *normalised by the A branch*."""
    a = np.zeros((3, 3))
    f = np.arange(9, dtype=float).reshape(3, 3) * 10
    b = (f - f.min()) / (f.max() - f.min())  # equals the normalised F window, not raw F
    assert fmi.fmi_value(a, b, f, "none") == pytest.approx((slow_fmi(a, b, f, "none")), abs=1e-15)
    fmi_af, _ = _window_fmi(a, f)
    assert fmi.fmi_value(a, b, f, "none") == pytest.approx((fmi_af + 1.0) / 2, abs=1e-15)


def slow_mef_ssim(sources, fused):
    """mef_ssim.m patch by patch (11×11 box statistics, Gaussian moments)."""
    window = gaussian_2d(11, 1.5)
    h, w = fused.shape
    big_c = (0.03 * 255) ** 2
    eps = np.finfo(float).eps
    scores = []
    for i in range(5, h - 5):
        for j in range(5, w - 5):
            blocks = [x[i - 5:i + 6, j - 5:j + 6] for x in sources]
            mus = [blk.mean() for blk in blocks]
            eds = [np.linalg.norm(blk - mu) + 0.001 for blk, mu in zip(blocks, mus)]
            total = sum(blocks)
            num = np.linalg.norm(total - total.mean())
            den = sum(np.linalg.norm(blk - mu) for blk, mu in zip(blocks, mus))
            r = min(max((num + eps) / (den + eps), eps), 1 - eps) if (num + eps) / (den + eps) > 1 or \
                (num + eps) / (den + eps) < 0 else (num + eps) / (den + eps)
            power = min(math.tan(math.pi / 2 * r), 10)
            weights = np.array([(ed / 11) ** power + eps for ed in eds])
            weights /= weights.sum()
            r_block = sum(wk * (blk - mu) / ed for wk, blk, mu, ed in zip(weights, blocks, mus, eds))
            if np.linalg.norm(r_block) > 0:
                r_block = r_block / np.linalg.norm(r_block) * max(eds)
            f_block = fused[i - 5:i + 6, j - 5:j + 6]
            mu1, mu2 = np.sum(window * r_block), np.sum(window * f_block)
            s1 = np.sum(window * (r_block - mu1) ** 2)
            s2 = np.sum(window * (f_block - mu2) ** 2)
            s12 = np.sum(window * (r_block - mu1) * (f_block - mu2))
            scores.append((2 * s12 + big_c) / (s1 + s2 + big_c))
    return float(np.mean(scores))


@pytest.mark.parametrize("seed", [0, 3])
def test_mef_ssim_matches_patch_port(seed):
    a, b, f = _small_triple(seed, 30, 33)
    fast = structural.mef_ssim_scale([a, b], f)
    assert fast == pytest.approx(slow_mef_ssim([a, b], f), rel=1e-9)


def test_cddfuse_ssim_is_scikit_image():
    from skimage.metrics import structural_similarity

    a, b, f = (x.astype(np.float32) for x in _small_triple(5, 40, 37))
    assert structural.ssim_skimage(f, a) == structural_similarity(f, a, data_range=2)
    assert structural.ssim_skimage(f, b) == structural_similarity(f, b, data_range=2)


def test_fmi_parallel_and_serial_kernels_agree_exactly():
    a, b, f = _small_triple(2, 40, 45)
    for feature in ("none", "dct"):
        assert fmi.fmi_value(a, b, f, feature, parallel=True) == fmi.fmi_value(a, b, f, feature, parallel=False)
