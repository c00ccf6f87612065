"""Structural similarity: SSIM (both conventions) and the toolbox's MS_SSIM (multi-scale MEF-SSIM).

SSIM: Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to
structural similarity", IEEE TIP 13(4), 2004. MEF-SSIM: Ma, Zeng & Wang, "Perceptual quality
assessment for multi-exposure image fusion", IEEE TIP 24(11), 2015.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from pipeline.metrics.filters import box_sum_valid, gaussian_1d, sep_filter
from pipeline.metrics.inputs import Triple


def ssim_skimage(x: np.ndarray, y: np.ndarray, stats_x=None) -> float:
    """scikit-image ``structural_similarity(x, y)`` as CDDFuse's pinned 0.19.2 ran it on float32 input:
    7×7 uniform window (``scipy.ndimage.uniform_filter``, reflect borders), sample covariance
    (×49/48), K1 = 0.01, K2 = 0.03, **data_range = 2** (the float dtype range, although the data are
    0..255), float32 arithmetic, mean (float64) after cropping 3 pixels per side.

    The same operations as scikit-image's function (verified bit-identical to
    ``structural_similarity(x, y, data_range=2)`` in the tests), written out so that the statistics
    of ``x`` (the fused image, ``stats_x = (ux, uxx)``) are filtered once for both sources.
    """
    from scipy.ndimage import uniform_filter

    if stats_x is None:
        stats_x = (uniform_filter(x, size=7), uniform_filter(x * x, size=7))
    ux, uxx = stats_x
    uy = uniform_filter(y, size=7)
    uyy = uniform_filter(y * y, size=7)
    uxy = uniform_filter(x * y, size=7)
    cov_norm = 49 / 48
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    a1, a2 = 2 * ux * uy + c1, 2 * vxy + c2
    b1, b2 = ux ** 2 + uy ** 2 + c1, vx + vy + c2
    s = (a1 * a2) / (b1 * b2)
    return float(s[3:-3, 3:-3].mean(dtype=np.float64))


def ssim_matlab(x: np.ndarray, y: np.ndarray, stats_x=None) -> float:
    """MATLAB Image Processing Toolbox ``ssim(x, y)`` on double images holding 0..255 values:
    Gaussian weights σ = 1.5 on 11×11, ``imfilter`` replicate borders, C1 = (0.01·L)², C2 = (0.03·L)²
    with **L = 1** (the class-double default), C3 = C2/2, mean over the full-size map.
    ``stats_x`` = filtered (x, x²) when shared between calls; the per-pixel formula runs compiled."""
    window = gaussian_1d(11, 1.5)
    if stats_x is None:
        stats_x = (sep_filter(x, window, "replicate"), sep_filter(x * x, window, "replicate"))
    mu_y = sep_filter(y, window, "replicate")
    yy = sep_filter(y * y, window, "replicate")
    xy = sep_filter(x * y, window, "replicate")
    return float(_ssim_map_mean(stats_x[0], stats_x[1], mu_y, yy, xy, 0.01 ** 2, 0.03 ** 2))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _ssim_map_mean(mu_x, xx, mu_y, yy, xy, c1, c2):
    """Mean of ((2μxμy + C1)(2σxy + C2)) / ((μx² + μy² + C1)(σx² + σy² + C2)) over the map."""
    h, w = mu_x.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            mx = mu_x[i, j]
            my = mu_y[i, j]
            sxx = xx[i, j] - mx * mx
            syy = yy[i, j] - my * my
            sxy = xy[i, j] - mx * my
            total += ((2 * (mx * my) + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return total / (h * w)


def ssim(t: Triple) -> float:
    """SSIM ↑ — ``cddfuse``: **sum** ``SSIM(F,A) + SSIM(F,B)`` with scikit-image (range up to 2;
    NaN for images under 7 pixels); ``matlab`` (ML-2023): **mean** ``0.5·ssim(F,A) + 0.5·ssim(F,B)``
    with MATLAB's ``ssim``."""
    if t.convention == "cddfuse":
        from scipy.ndimage import uniform_filter

        if min(t.f.shape) < 7:
            return math.nan  # scikit-image refuses images smaller than its 7×7 window

        stats_f = (uniform_filter(t.f, size=7), uniform_filter(t.f * t.f, size=7))
        return ssim_skimage(t.f, t.a, stats_f) + ssim_skimage(t.f, t.b, stats_f)
    window = gaussian_1d(11, 1.5)
    stats_f = (sep_filter(t.f, window, "replicate"), sep_filter(t.f * t.f, window, "replicate"))
    return 0.5 * ssim_matlab(t.f, t.a, stats_f) + 0.5 * ssim_matlab(t.f, t.b, stats_f)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _mef_quality_mean(s, g, big_c):
    """Mean MEF-SSIM quality over the valid map from box sums ``s`` (S1, S2, S11, S12, S22 over 121
    pixels) and Gaussian-weighted sums ``g`` (G1, G2, Gf, G11, G12, G22, Gff, G1f, G2f); one pass."""
    eps = 2.220446049250313e-16
    count = 121.0
    h, w = s.shape[1], s.shape[2]
    total_q = 0.0
    for i in range(h):
        for j in range(w):
            s1, s2, s11, s12, s22 = s[0, i, j], s[1, i, j], s[2, i, j], s[3, i, j], s[4, i, j]
            mu1 = s1 / count
            mu2 = s2 / count
            # Σ(x_k − μ_k)(x_l − μ_l) over the patch, exact for integer-valued data
            sc11 = (count * s11 - s1 * s1) / count
            sc12 = (count * s12 - s1 * s2) / count
            sc22 = (count * s22 - s2 * s2) / count
            n1 = math.sqrt(max(sc11, 0.0))
            n2 = math.sqrt(max(sc22, 0.0))
            ed1 = n1 + 0.001
            ed2 = n2 + 0.001
            r = (math.sqrt(max(sc11 + 2 * sc12 + sc22, 0.0)) + eps) / (n1 + n2 + eps)
            if r > 1:
                r = 1 - eps
            if r < 0:
                r = eps
            power = min(math.tan(math.pi / 2 * r), 10.0)
            w1 = (ed1 / 11) ** power + eps
            w2 = (ed2 / 11) ** power + eps
            a1 = w1 / (w1 + w2) / ed1
            a2 = w2 / (w1 + w2) / ed2
            r_norm = math.sqrt(max(a1 * a1 * sc11 + 2 * a1 * a2 * sc12 + a2 * a2 * sc22, 0.0))
            if r_norm > 0:
                scale = max(ed1, ed2) / r_norm
                a1 *= scale
                a2 *= scale
            g1, g2, gf = g[0, i, j], g[1, i, j], g[2, i, j]
            mu_r = a1 * (g1 - mu1) + a2 * (g2 - mu2)
            second = (a1 * a1 * (g[3, i, j] - 2 * mu1 * g1 + mu1 * mu1)
                      + 2 * a1 * a2 * (g[4, i, j] - mu2 * g1 - mu1 * g2 + mu1 * mu2)
                      + a2 * a2 * (g[5, i, j] - 2 * mu2 * g2 + mu2 * mu2))
            sigma_r2 = second - mu_r * mu_r
            sigma_f2 = g[6, i, j] - gf * gf
            sigma_rf = a1 * (g[7, i, j] - mu1 * gf) + a2 * (g[8, i, j] - mu2 * gf) - mu_r * gf
            total_q += (2 * sigma_rf + big_c) / (sigma_r2 + sigma_f2 + big_c)
    return total_q / (h * w)


def mef_ssim_scale(sources: list[np.ndarray], fused: np.ndarray, k: float = 0.03) -> float:
    """Single-scale MEF-SSIM (``mef_ssim.m``) of ``fused`` against a two-image source sequence.

    Per 11×11 'valid' patch: mean μ_k, signal strength c_k = ‖x_k − μ_k‖ + 0.001; structure
    consistency R = ‖Σx_k − mean‖ / Σ‖x_k − μ_k‖ (with +eps, clipped into (0,1)), p = tan(πR/2) ≤ 10,
    weights w_k ∝ (c_k/11)^p + eps; desired patch r = Σ w_k (x_k − μ_k)/c_k rescaled to norm max c_k;
    quality (2σ_rf + C)/(σ_r² + σ_f² + C) with Gaussian (11×11, σ 1.5) moments, C = (0.03·255)².

    Vectorised: every patch quantity is expanded into filtered products (box sums for the patch
    norms, Gaussian-weighted sums for the moments), e.g. ‖r‖² = Σ_kl a_k a_l·Σ(x_k−μ_k)(x_l−μ_l);
    the per-pixel algebra runs in one compiled pass. Box sums are exact for integer-valued data
    (and the quarter/sixteenth grid of the coarser scales), so flat patches give exact zeros.
    """
    x1, x2 = sources
    n = 11
    window = gaussian_1d(n, 1.5)
    box = np.stack([box_sum_valid(v, n) for v in (x1, x2, x1 * x1, x1 * x2, x2 * x2)])
    gauss = np.stack([sep_filter(v, window, "valid") for v in
                      (x1, x2, fused, x1 * x1, x1 * x2, x2 * x2, fused * fused, x1 * fused, x2 * fused)])
    return float(_mef_quality_mean(box, gauss, (k * 255) ** 2))


def _downsample(image: np.ndarray) -> np.ndarray:
    """``imfilter(x, ones(2)/4, 'symmetric', 'same')`` (kernel origin top-left) then ``x(1:2:end, 1:2:end)``."""
    padded = np.pad(image, ((0, 1), (0, 1)), mode="symmetric")
    avg = 0.25 * padded[:-1, :-1] + 0.25 * padded[1:, :-1] + 0.25 * padded[:-1, 1:] + 0.25 * padded[1:, 1:]
    return avg[::2, ::2]


MS_WEIGHTS = (0.0448, 0.2856, 0.3001)


def ms_ssim(t: Triple) -> float:
    """MS_SSIM ↑ — the toolbox's ``analysis_ms_ssim(imgSeq, F)``: Ma et al.'s multi-scale MEF-SSIM with
    the two sources as the reference sequence (not Wang's pairwise MS-SSIM). 3 scales (2×2 average +
    decimation between them), ``Π Q_l^{w_l}`` with w = (0.0448, 0.2856, 0.3001)/sum.

    Images whose short side is below 44 pixels (the 11-pixel window does not fit the coarsest scale)
    give NaN (the toolbox returns −Inf)."""
    levels = len(MS_WEIGHTS)
    if min(t.f.shape) / 2 ** (levels - 1) < 11:
        return math.nan
    sources = [np.asarray(t.a, dtype=np.float64), np.asarray(t.b, dtype=np.float64)]
    fused = np.asarray(t.f, dtype=np.float64)
    weights = np.asarray(MS_WEIGHTS) / sum(MS_WEIGHTS)
    scores = []
    for level in range(levels):
        scores.append(mef_ssim_scale(sources, fused))
        if level < levels - 1:
            sources = [_downsample(x) for x in sources]
            fused = _downsample(fused)
    return float(np.prod(np.asarray(scores) ** weights))
