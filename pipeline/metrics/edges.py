"""Gradient-based fusion metrics: Qabf (edge preservation) and Nabf (fusion artefacts).

Both compare Sobel edge strength and orientation of each source with the fused image.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from pipeline.metrics.filters import correlate3
from pipeline.metrics.inputs import Triple

_SOBEL_X = ((-1, 0, 1), (-2, 0, 2), (-1, 0, 1))
_SOBEL_Y = ((1, 2, 1), (0, 0, 0), (-1, -2, -1))


def qabf_strength_orientation(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel strength ``g = sqrt(Sx² + Sy²)`` and orientation ``α = atan(Sy/Sx)`` (π/2 where Sx = 0),
    zero padding, same size, in the image's dtype (float32 for ``cddfuse``)."""
    sx = correlate3(image, _SOBEL_X, "zero")
    sy = correlate3(image, _SOBEL_Y, "zero")
    g = np.sqrt(sx * sx + sy * sy)
    nonzero = sx != 0
    ratio = np.divide(sy, sx, out=np.zeros_like(sx), where=nonzero)
    alpha = np.where(nonzero, np.arctan(ratio), image.dtype.type(math.pi / 2))
    return g, alpha


def _qabf_preservation(g_x, a_x, g_f, a_f):
    """Edge preservation Q_XF = Q_g·Q_a with the Xydeas–Petrović sigmoids (L = 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        # quirk kept by both references: G = g_F itself when g_X = g_F
        strength = np.where(g_x > g_f, g_f / g_x, np.where(g_x < g_f, g_x / g_f, g_f))
    orientation = 1 - np.abs(a_x - a_f) / (math.pi / 2)
    q_g = 0.9994 / (1 + np.exp(-15 * (strength - 0.5)))
    q_a = 0.9879 / (1 + np.exp(-22 * (orientation - 0.8)))
    return q_g * q_a


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sobel_zero(x, i, j):
    """(Sx, Sy) at (i, j): correlation with [−1 0 1; −2 0 2; −1 0 1] and [1 2 1; 0 0 0; −1 −2 −1],
    zero outside the image."""
    h, w = x.shape
    sx = 0.0
    sy = 0.0
    for dy in range(3):
        ii = i + dy - 1
        if ii < 0 or ii >= h:
            continue
        for dx in range(3):
            jj = j + dx - 1
            if jj < 0 or jj >= w:
                continue
            v = x[ii, jj]
            sx += (dx - 1) * (2.0 if dy == 1 else 1.0) * v
            sy += (1 - dy) * (2.0 if dx == 1 else 1.0) * v
    return sx, sy


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _qabf_pixel(sx, sy):
    alpha = math.atan(sy / sx) if sx != 0 else math.pi / 2
    return math.sqrt(sx * sx + sy * sy), alpha


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _qabf_q(g_x, a_x, g_f, a_f):
    if g_x > g_f:
        strength = g_f / g_x
    elif g_x < g_f:
        strength = g_x / g_f
    else:
        strength = g_f  # quirk kept by both references
    orientation = 1 - abs(a_x - a_f) / (math.pi / 2)
    q_g = 0.9994 / (1 + math.exp(-15 * (strength - 0.5)))
    q_a = 0.9879 / (1 + math.exp(-22 * (orientation - 0.8)))
    return q_g * q_a


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _qabf_sums(a, b, f):
    """float64 Qabf numerator and denominator in one pass over the pixels."""
    h, w = f.shape
    num = 0.0
    den = 0.0
    for i in range(h):
        for j in range(w):
            g_a, a_a = _qabf_pixel(*_sobel_zero(a, i, j))
            g_b, a_b = _qabf_pixel(*_sobel_zero(b, i, j))
            g_f, a_f = _qabf_pixel(*_sobel_zero(f, i, j))
            num += _qabf_q(g_a, a_a, g_f, a_f) * g_a + _qabf_q(g_b, a_b, g_f, a_f) * g_b
            den += g_a + g_b
    return num, den


def qabf(t: Triple) -> float:
    """Qabf ↑ — Xydeas & Petrović edge-information preservation (Electron. Lett. 36(4), 2000):
    ``Σ(Q_AF·g_A + Q_BF·g_B) / Σ(g_A + g_B)`` with Sobel responses by convolution with zero padding.
    ``cddfuse`` computes in float32 with NumPy exactly like its evaluator; ``matlab`` in float64 in
    one compiled pass. Returns 0.0 when no source has any gradient (the references give NaN)."""
    if t.convention == "matlab":
        num, den = _qabf_sums(*(np.ascontiguousarray(x, dtype=np.float64) for x in (t.a, t.b, t.f)))
        return 0.0 if den == 0 else float(num / den)
    g_a, a_a = t.cached("qabf_a", lambda: qabf_strength_orientation(t.a))
    g_b, a_b = t.cached("qabf_b", lambda: qabf_strength_orientation(t.b))
    g_f, a_f = t.cached("qabf_f", lambda: qabf_strength_orientation(t.f))
    q_af = _qabf_preservation(g_a, a_a, g_f, a_f)
    q_bf = _qabf_preservation(g_b, a_b, g_f, a_f)
    den = np.sum(g_a + g_b)
    if den == 0:
        return 0.0
    return float(np.sum(q_af * g_a + q_bf * g_b) / den)


def nabf_gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sobel_fn.m``: mirror-extended 3×3 correlation with the /8 Sobel masks → (strength, angle);
    angle = ``atan(gv/gh)`` (±π/2 where gh = 0), 0 where both are 0. Compiled loop; products are
    accumulated row by row as in :func:`~pipeline.metrics.filters.correlate3` (on [0,1] data the
    rounding decides ties between equal strengths, as in the toolbox)."""
    return _nabf_gradients(np.ascontiguousarray(image, dtype=np.float64))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _nabf_gradients(x):
    h, w = x.shape
    strength = np.empty((h, w))
    angle = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            gv = 0.0
            gh = 0.0
            for dy in range(3):
                ii = i + dy - 1
                ii = 1 if ii < 0 else (h - 2 if ii >= h else ii)  # mirror, border not repeated
                for dx in range(3):
                    jj = j + dx - 1
                    jj = 1 if jj < 0 else (w - 2 if jj >= w else jj)
                    kv = (dx - 1) * (2.0 if dy == 1 else 1.0) / 8  # [-1 0 1; -2 0 2; -1 0 1]/8
                    kh = (dy - 1) * (2.0 if dx == 1 else 1.0) / 8  # its transpose
                    if kv != 0:
                        gv += kv * x[ii, jj]
                    if kh != 0:
                        gh += kh * x[ii, jj]
            strength[i, j] = math.sqrt(gh * gh + gv * gv)
            angle[i, j] = 0.0 if (gv == 0 and gh == 0) else math.atan(gv / gh)
    return strength, angle


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _nabf_q(g_x, a_x, g_f, a_f):
    """Edge preservation Q_XF of ``analysis_nabf.m`` for one pixel (sigmoids 19/0.5 and 22/0.5)."""
    if g_x == 0 or g_f == 0:
        ratio = 0.0
    elif g_x > g_f:
        ratio = g_f / g_x
    else:
        ratio = g_x / g_f
    orientation = abs(abs(a_x - a_f) - math.pi / 2) * 2 / math.pi
    q_g = 0.9999 / (1 + math.exp(-19 * (ratio - 0.5)))
    q_a = 0.9995 / (1 + math.exp(-22 * (orientation - 0.5)))
    return math.sqrt(q_g * q_a)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _nabf_sums(g1, a1, g2, a2, gf, af):
    """(artefact sum, weight sum) over all pixels, one pass; Q is only needed where g_F exceeds
    both source strengths."""
    artefacts = 0.0
    weights = 0.0
    h, w = g1.shape
    for i in range(h):
        for j in range(w):
            w1 = g1[i, j] ** 1.5 if g1[i, j] >= 2 else 0.001
            w2 = g2[i, j] ** 1.5 if g2[i, j] >= 2 else 0.001
            weights += w1 + w2
            if gf[i, j] > g1[i, j] and gf[i, j] > g2[i, j]:
                q1 = _nabf_q(g1[i, j], a1[i, j], gf[i, j], af[i, j])
                q2 = _nabf_q(g2[i, j], a2[i, j], gf[i, j], af[i, j])
                artefacts += (1 - q1) * w1 + (1 - q2) * w2
    return artefacts, weights


def nabf_value(fused: np.ndarray, src1: np.ndarray, src2: np.ndarray) -> float:
    """Shreyamsha Kumar's modified fusion-artefact measure N_ABF (SIViP 7, 2013; ``analysis_nabf.m``)
    for the argument order (fused, source 1, source 2):
    ``Σ_{g_F > g_1, g_F > g_2} [(1−Q_1F)w_1 + (1−Q_2F)w_2] / Σ(w_1 + w_2)``, ``w = g^1.5`` where
    ``g ≥ 2`` else 0.001 (an absolute threshold, so the data scale matters)."""
    (g1, a1), (g2, a2), (gf, af) = (nabf_gradients(x) for x in (src1, src2, fused))
    return nabf_from_gradients((g1, a1), (g2, a2), (gf, af))


def nabf_from_gradients(grad1, grad2, grad_f) -> float:
    """N_ABF from precomputed (strength, angle) of source 1, source 2 and the fused image."""
    (g1, a1), (g2, a2), (gf, af) = grad1, grad2, grad_f
    artefacts, weights = _nabf_sums(g1, a1, g2, a2, gf, af)
    return float(artefacts / weights)


def _grads(t: Triple, scale: float = 1.0):
    """Cached Nabf gradients of (A/scale, B/scale, F/scale). They are recomputed on the scaled data
    rather than rescaled: on [0,1] data mathematically equal strengths (e.g. where F copies a
    source) differ by rounding, which decides the ``g_F > g_X`` artefact test as in the toolbox."""
    return [t.cached(("nabf", k, scale), lambda k=k: nabf_gradients(getattr(t, k) / scale)) for k in "abf"]


def nabf(t: Triple) -> float:
    """Nabf ↓ as the toolbox (ML-2023 ``analysis_Reference``) reports it: ``analysis_nabf(A, B, F)``
    although the signature is (fused, src1, src2), i.e. the first source plays the fused image."""
    ga, gb, gf = _grads(t)
    return nabf_from_gradients(gb, gf, ga)


def nabf_fused_first(t: Triple) -> float:
    """Nabf_fused_first ↓ — the corrected call ``analysis_nabf(F, A, B)`` on 0..255 data."""
    ga, gb, gf = _grads(t)
    return nabf_from_gradients(ga, gb, gf)


def nabf_v2022(t: Triple) -> float:
    """Nabf_v2022 ↓ — ML-2022's call ``analysis_nabf(F, A, B)`` on [0,1] data (nearly every weight
    is then the 0.001 floor)."""
    ga, gb, gf = _grads(t, 255.0)
    return nabf_from_gradients(ga, gb, gf)
