"""Gradient-based fusion metrics: Qabf (edge preservation) and Nabf (fusion artefacts).

Both compare Sobel edge strength and orientation of each source with the fused image.
"""
from __future__ import annotations

import math

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


def qabf(t: Triple) -> float:
    """Qabf ↑ — Xydeas & Petrović edge-information preservation (Electron. Lett. 36(4), 2000):
    ``Σ(Q_AF·g_A + Q_BF·g_B) / Σ(g_A + g_B)`` with Sobel responses by convolution with zero padding.
    ``cddfuse`` computes in float32 like its evaluator; ``matlab`` in float64. Returns 0.0 when
    no source has any gradient (the references give NaN)."""
    g_a, a_a = t.cached("qabf_a", lambda: qabf_strength_orientation(t.a))
    g_b, a_b = t.cached("qabf_b", lambda: qabf_strength_orientation(t.b))
    g_f, a_f = t.cached("qabf_f", lambda: qabf_strength_orientation(t.f))
    q_af = _qabf_preservation(g_a, a_a, g_f, a_f)
    q_bf = _qabf_preservation(g_b, a_b, g_f, a_f)
    den = np.sum(g_a + g_b)
    if den == 0:
        return 0.0
    return float(np.sum(q_af * g_a + q_bf * g_b) / den)


_NABF_V = ((-1 / 8, 0, 1 / 8), (-2 / 8, 0, 2 / 8), (-1 / 8, 0, 1 / 8))
_NABF_H = ((-1 / 8, -2 / 8, -1 / 8), (0, 0, 0), (1 / 8, 2 / 8, 1 / 8))


def nabf_gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sobel_fn.m``: mirror-extended 3×3 correlation with the /8 Sobel masks → (strength, angle);
    angle = ``atan(gv/gh)`` (±π/2 where gh = 0), 0 where both are 0."""
    image = np.asarray(image, dtype=np.float64)
    gv = correlate3(image, _NABF_V, "mirror")
    gh = correlate3(image, _NABF_H, "mirror")
    strength = np.sqrt(gh * gh + gv * gv)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.arctan(gv / gh)
    angle[(gv == 0) & (gh == 0)] = 0.0
    return strength, angle


def _nabf_preservation(g_x, a_x, g_f, a_f):
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(g_x > g_f, g_f / g_x, g_x / g_f)
    ratio[(g_x == 0) | (g_f == 0)] = 0.0
    orientation = np.abs(np.abs(a_x - a_f) - math.pi / 2) * 2 / math.pi
    q_g = 0.9999 / (1 + np.exp(-19 * (ratio - 0.5)))
    q_a = 0.9995 / (1 + np.exp(-22 * (orientation - 0.5)))
    return np.sqrt(q_g * q_a)


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
    q1 = _nabf_preservation(g1, a1, gf, af)
    q2 = _nabf_preservation(g2, a2, gf, af)
    w1 = np.where(g1 >= 2, g1 ** 1.5, 0.001)
    w2 = np.where(g2 >= 2, g2 ** 1.5, 0.001)
    artefact = (gf > g1) & (gf > g2)
    return float(np.sum(artefact * ((1 - q1) * w1 + (1 - q2) * w2)) / np.sum(w1 + w2))


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
