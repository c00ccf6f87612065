"""Statistics of the fused image and simple source-to-fused comparisons.

EN, SD, SF, AG (fused image only), MSE, PSNR, CC, SCD (fused vs sources). Every function takes a
:class:`~pipeline.metrics.inputs.Triple` ``t`` (``t.a``/``t.b`` sources, ``t.f`` fused, 0..255) and
returns a float. ``cddfuse`` arrays are float32 and the arithmetic stays in float32 exactly as the
CDDFuse evaluator does it; ``matlab`` arrays are float64.
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.metrics.filters import matlab_gradient, pearson
from pipeline.metrics.inputs import Triple


def entropy_bits(gray_uint8: np.ndarray) -> float:
    """Shannon entropy in bits of a 256-bin grey-level histogram (MATLAB ``entropy``)."""
    counts = np.bincount(gray_uint8.ravel(), minlength=256)
    p = counts[counts > 0] / gray_uint8.size
    return float(-np.sum(p * np.log2(p)))


def en(t: Triple) -> float:
    """EN ↑ — entropy of F: ``-Σ p log2 p`` over the 256-bin histogram (Roberts et al., J. Appl.
    Remote Sens. 2008). ``cddfuse`` rounds F half-to-even first, ``matlab`` casts to uint8."""
    grey = np.round(t.f).astype(np.uint8) if t.convention == "cddfuse" else t.uint8("f")
    return entropy_bits(grey)


def sd(t: Triple) -> float:
    """SD ↑ — population standard deviation of F, ``sqrt(mean((F - mean F)²))`` (Rao 1997)."""
    return float(np.std(t.f))


def sf(t: Triple) -> float:
    """SF ↑ — spatial frequency ``sqrt(RF² + CF²)`` (Eskicioglu & Fisher, IEEE TCOM 1995); RF² is the
    mean squared difference of horizontal neighbours (H·(W−1) pairs), CF² of vertical ones."""
    f = t.f
    return float(np.sqrt(np.mean((f[:, 1:] - f[:, :-1]) ** 2) + np.mean((f[1:, :] - f[:-1, :]) ** 2)))


def ag(t: Triple) -> float:
    """AG ↑ — average gradient (Cui et al., Opt. Commun. 2015): per pixel ``sqrt((Gx² + Gy²)/2)`` with
    MATLAB ``gradient`` differences. ``cddfuse``: mean over H·W pixels; ``matlab``: sum divided by
    (H−1)(W−1) as ``AG_evaluation.m`` does."""
    gx, gy = matlab_gradient(t.f)
    s = np.sqrt((gx ** 2 + gy ** 2) / 2)
    if t.convention == "cddfuse":
        return float(np.mean(s))
    h, w = t.f.shape
    return float(np.sum(s) / ((h - 1) * (w - 1)))


def _mse255(t: Triple):
    return (np.mean((t.a - t.f) ** 2) + np.mean((t.b - t.f) ** 2)) / 2


def mse(t: Triple) -> float:
    """MSE ↓ — ``(MSE(A,F) + MSE(B,F))/2``. ``cddfuse``: 0..255 scale; ``matlab``: on [0,1] data, i.e.
    the 0..255 value / 255² (``MSE_evaluation.m``)."""
    value = _mse255(t)
    return float(value) if t.convention == "cddfuse" else float(value) / 255.0 ** 2


def psnr(t: Triple) -> float:
    """PSNR ↑ — peak signal-to-noise ratio of F against both sources (dB).

    ``cddfuse``: ``10·log10(max(F)² / MSE)`` with the **fused maximum** as peak (float32).
    ``matlab``: ``20·log10(255 / sqrt(MSE_[0,1]))`` = standard PSNR(peak 255) + 48.13 dB
    (``PSNR_evaluation.m``). Identical images (MSE = 0) give ``inf``; for ``cddfuse`` an all-black
    fused image (peak 0) gives ``-inf``.
    """
    value = _mse255(t)
    if value == 0:
        return math.inf
    if t.convention == "cddfuse":
        peak = np.max(t.f)
        return -math.inf if peak == 0 else float(10 * np.log10(peak ** 2 / value))
    return float(20 * np.log10(255.0 / np.sqrt(value / 255.0 ** 2)))


def cc(t: Triple) -> float:
    """CC ↑ — correlation coefficient ``(r(A,F) + r(B,F))/2``, Pearson over all pixels. A constant
    image has correlation 0 by definition here (the references give NaN)."""
    return float((pearson(t.a, t.f) + pearson(t.b, t.f)) / 2)


def scd(t: Triple) -> float:
    """SCD ↑ — sum of the correlations of differences ``r(F−B, A) + r(F−A, B)`` (Aslantas & Bendes,
    AEU 2015). Constant images/differences contribute 0 (the references give NaN)."""
    return float(pearson(t.a, t.f - t.b) + pearson(t.b, t.f - t.a))
