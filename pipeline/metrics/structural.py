"""Structural similarity: SSIM (both conventions) and the toolbox's MS_SSIM (multi-scale MEF-SSIM).

SSIM: Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to
structural similarity", IEEE TIP 13(4), 2004. MEF-SSIM: Ma, Zeng & Wang, "Perceptual quality
assessment for multi-exposure image fusion", IEEE TIP 24(11), 2015.
"""
from __future__ import annotations

import math

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


def ssim_matlab(x: np.ndarray, y: np.ndarray) -> float:
    """MATLAB Image Processing Toolbox ``ssim(x, y)`` on double images holding 0..255 values:
    Gaussian weights σ = 1.5 on 11×11, ``imfilter`` replicate borders, C1 = (0.01·L)², C2 = (0.03·L)²
    with **L = 1** (the class-double default), C3 = C2/2, mean over the full-size map."""
    window = gaussian_1d(11, 1.5)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_x = sep_filter(x, window, "replicate")
    mu_y = sep_filter(y, window, "replicate")
    mu_x2, mu_y2, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_x2 = sep_filter(x * x, window, "replicate") - mu_x2
    sigma_y2 = sep_filter(y * y, window, "replicate") - mu_y2
    sigma_xy = sep_filter(x * y, window, "replicate") - mu_xy
    num = (2 * mu_xy + c1) * (2 * sigma_xy + c2)
    den = (mu_x2 + mu_y2 + c1) * (sigma_x2 + sigma_y2 + c2)
    return float(np.mean(num / den))


def ssim(t: Triple) -> float:
    """SSIM ↑ — ``cddfuse``: **sum** ``SSIM(F,A) + SSIM(F,B)`` with scikit-image (range up to 2);
    ``matlab`` (ML-2023): **mean** ``0.5·ssim(F,A) + 0.5·ssim(F,B)`` with MATLAB's ``ssim``."""
    if t.convention == "cddfuse":
        from scipy.ndimage import uniform_filter

        stats_f = (uniform_filter(t.f, size=7), uniform_filter(t.f * t.f, size=7))
        return ssim_skimage(t.f, t.a, stats_f) + ssim_skimage(t.f, t.b, stats_f)
    return 0.5 * ssim_matlab(t.f, t.a) + 0.5 * ssim_matlab(t.f, t.b)


def mef_ssim_scale(sources: list[np.ndarray], fused: np.ndarray, k: float = 0.03) -> float:
    """Single-scale MEF-SSIM (``mef_ssim.m``) of ``fused`` against the source sequence.

    Per 11×11 'valid' patch: mean μ_k, signal strength c_k = ‖x_k − μ_k‖ + 0.001; structure
    consistency R = ‖Σx_k − mean‖ / Σ‖x_k − μ_k‖ (with +eps, clipped into (0,1)), p = tan(πR/2) ≤ 10,
    weights w_k ∝ (c_k/11)^p + eps; desired patch r = Σ w_k (x_k − μ_k)/c_k rescaled to norm max c_k;
    quality (2σ_rf + C)/(σ_r² + σ_f² + C) with Gaussian (11×11, σ 1.5) moments, C = (0.03·255)².

    Vectorised: every patch quantity is expanded into filtered products (box sums for the patch
    norms, Gaussian-weighted sums for the moments), e.g. ‖r‖² = Σ_kl a_k a_l·Σ(x_k−μ_k)(x_l−μ_l).
    The box sums use exact integer-style sums (``box_sum_valid``) so flat patches give exact zeros.
    """
    n = 11
    count = float(n * n)
    window = gaussian_1d(n, 1.5)
    m = len(sources)
    sums = [box_sum_valid(x, n) for x in sources]
    mu = [s / count for s in sums]
    # count·Σ(x_k−μ_k)(x_l−μ_l) = count·Σx_k x_l − Σx_k Σx_l (exact for integer-valued data)
    scatter = {}
    for i in range(m):
        for j in range(i, m):
            scatter[i, j] = (count * box_sum_valid(sources[i] * sources[j], n) - sums[i] * sums[j]) / count
            scatter[j, i] = scatter[i, j]
    norms = [np.sqrt(np.maximum(scatter[i, i], 0)) for i in range(m)]
    strength = [nrm + 0.001 for nrm in norms]
    total_scatter = sum(scatter[i, j] for i in range(m) for j in range(m))
    eps = np.finfo(np.float64).eps
    consistency = (np.sqrt(np.maximum(total_scatter, 0)) + eps) / (sum(norms) + eps)
    consistency[consistency > 1] = 1 - eps
    consistency[consistency < 0] = eps
    power = np.minimum(np.tan(math.pi / 2 * consistency), 10)
    weights = [(c / n) ** power + eps for c in strength]
    normaliser = sum(weights)
    coef = [w / normaliser / c for w, c in zip(weights, strength)]
    r_norm_sq = sum(coef[i] * coef[j] * scatter[i, j] for i in range(m) for j in range(m))
    r_norm = np.sqrt(np.maximum(r_norm_sq, 0))
    max_strength = np.maximum.reduce(strength)
    scale = np.where(r_norm > 0, max_strength / np.where(r_norm > 0, r_norm, 1), 1.0)
    coef = [c * scale for c in coef]
    g = [sep_filter(x, window, "valid") for x in sources]
    g_f = sep_filter(fused, window, "valid")
    mu_r = sum(c * (gx - mk) for c, gx, mk in zip(coef, g, mu))
    second = 0.0
    for i in range(m):
        for j in range(i, m):
            g_ij = sep_filter(sources[i] * sources[j], window, "valid")
            term = coef[i] * coef[j] * (g_ij - mu[j] * g[i] - mu[i] * g[j] + mu[i] * mu[j])
            second = second + (term if i == j else 2 * term)
    sigma_r2 = second - mu_r * mu_r
    sigma_f2 = sep_filter(fused * fused, window, "valid") - g_f * g_f
    cross = sum(c * (sep_filter(x * fused, window, "valid") - mk * g_f) for c, x, mk in zip(coef, sources, mu))
    sigma_rf = cross - mu_r * g_f
    big_c = (k * 255) ** 2
    return float(np.mean((2 * sigma_rf + big_c) / (sigma_r2 + sigma_f2 + big_c)))


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
