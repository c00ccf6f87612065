"""VIF — multiscale pixel-domain visual information fidelity, summed over the two sources.

Sheikh & Bovik, "Image information and visual quality", IEEE TIP 15(2), 2006 (LIVE ``vifp_mscale``).
Both references (CDDFuse ``VIFF``, toolbox ``vifp_mscale.m``) compute ``VIF(A→F) + VIF(B→F)`` with
the source as reference and the fused image as distorted image, in float64; range about 0..2, ↑.

Per scale s = 1..4: Gaussian window N = 2^(5−s)+1, σ = N/5 (``fspecial``); for s > 1 both images
are first filtered ('valid') and decimated by 2. Local statistics by 'valid' filtering;
``g = σ12/(σ1²+1e−10)``, ``σv² = σ2² − g·σ12`` with the LIVE clamps; σn² = 2;
``VIF = Σ log10(1 + g²σ1²/(σv²+σn²)) / Σ log10(1 + σ1²/σn²)`` over all scales and pixels.

Implementation: separable OpenCV filtering (the window is an exact outer product), statistics of F
shared between the two sources. torchmetrics' ``visual_information_fidelity`` implements the same
model but works in float32 on tensors, which moves values by more than the 1e-6 tolerance and is not
faster on this CPU, so it is not used. A reference image without any variance (den = 0) scores 1.0
for its term, as the CDDFuse evaluator defines it (MATLAB would give NaN); ``matlab`` uses the
same rule so the result is never NaN.
"""
from __future__ import annotations

import numpy as np

from pipeline.metrics.filters import gaussian_1d, sep_filter
from pipeline.metrics.inputs import Triple

_EPS = 1e-10
_SIGMA_NSQ = 2.0


def _scales(image: np.ndarray):
    """Yield (window, image at this scale) for the four scales."""
    current = np.asarray(image, dtype=np.float64)
    for scale in range(1, 5):
        size = 2 ** (5 - scale) + 1
        window = gaussian_1d(size, size / 5.0)
        if scale > 1:
            current = sep_filter(current, window, "valid")[::2, ::2]
        yield window, current


def _vif_terms(ref, dist, window, mu2, sigma2_sq):
    """Numerator and denominator sums of one scale for one reference image (F's stats given)."""
    mu1 = sep_filter(ref, window, "valid")
    sigma1_sq = np.maximum(sep_filter(ref * ref, window, "valid") - mu1 * mu1, 0)
    sigma12 = sep_filter(ref * dist, window, "valid") - mu1 * mu2
    g = sigma12 / (sigma1_sq + _EPS)
    sv_sq = sigma2_sq - g * sigma12
    flat1 = sigma1_sq < _EPS
    g[flat1] = 0
    sv_sq[flat1] = sigma2_sq[flat1]
    sigma1_sq[flat1] = 0
    flat2 = sigma2_sq < _EPS
    g[flat2] = 0
    sv_sq[flat2] = 0
    negative = g < 0
    sv_sq[negative] = sigma2_sq[negative]
    g[negative] = 0
    sv_sq[sv_sq <= _EPS] = _EPS
    num = np.sum(np.log10(1 + g * g * sigma1_sq / (sv_sq + _SIGMA_NSQ)))
    den = np.sum(np.log10(1 + sigma1_sq / _SIGMA_NSQ))
    return num, den


def vif_sources(sources: list[np.ndarray], fused: np.ndarray) -> list[float]:
    """VIF(source→fused) for each source (float64 0..255 arrays), sharing the fused statistics."""
    num = [0.0] * len(sources)
    den = [0.0] * len(sources)
    pyramids = [list(_scales(s)) for s in sources]
    for level, (window, dist) in enumerate(_scales(fused)):
        mu2 = sep_filter(dist, window, "valid")
        sigma2_sq = np.maximum(sep_filter(dist * dist, window, "valid") - mu2 * mu2, 0)
        for k, pyramid in enumerate(pyramids):
            n, d = _vif_terms(pyramid[level][1], dist, window, mu2, sigma2_sq)
            num[k] += n
            den[k] += d
    return [1.0 if d == 0 else float(n / d) for n, d in zip(num, den)]


def vif(t: Triple) -> float:
    """VIF ↑ — ``VIF(A→F) + VIF(B→F)`` (module docstring), identical in both conventions."""
    return float(sum(vif_sources([t.a, t.b], t.f)))
