"""Non-learned fusion methods: single-modality baselines, average, max, Laplacian pyramid, VSM-WLS.

All take single-channel float images in [0, 1] (see :mod:`pipeline.fusion.registry`).
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.errors import ConfigError
from pipeline.fusion.registry import FusionMethod, register
from pipeline.fusion.vsm_wls import vsm_wls_fuse


class SourceBaseline(FusionMethod):
    """Single-modality baseline: one source passed through, F = that source.

    The fusion stage writes it as stored (:func:`pipeline.fusion.stage.compose`), so the
    downstream ``ir`` row sees only infrared and the ``vis`` row only the visible image."""

    kind = "baseline"
    source = "ir"

    def fuse_arrays(self, ir, vis):
        return (ir if self.source == "ir" else vis).astype(np.float64)


@register("ir")
class InfraredOnly(SourceBaseline):
    """Baseline F = IR (infrared / functional image)."""

    source = "ir"


@register("vis")
class VisibleOnly(SourceBaseline):
    """Baseline F = VIS (visible / structural image)."""

    source = "vis"


@register("average")
class Average(FusionMethod):
    """Pixel average F = (IR + VIS) / 2."""

    def fuse_arrays(self, ir, vis):
        return 0.5 * (ir.astype(np.float64) + vis.astype(np.float64))


@register("max")
class Maximum(FusionMethod):
    """Pixel maximum F = max(IR, VIS)."""

    def fuse_arrays(self, ir, vis):
        return np.maximum(ir, vis).astype(np.float64)


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Burt & Adelson (1983) Laplacian pyramid: L_k = G_k − up(G_{k+1}), last entry = G_levels.

    G_{k+1} = 5×5 binomial blur + decimation (``cv2.pyrDown``); up = ``cv2.pyrUp`` to G_k's size.
    ``levels`` detail layers plus the residual base; sum of ``reconstruct`` recovers the image.
    """
    pyramid, g = [], image
    for _ in range(levels):
        down = cv2.pyrDown(g)
        pyramid.append(g - cv2.pyrUp(down, dstsize=(g.shape[1], g.shape[0])))
        g = down
    pyramid.append(g)
    return pyramid


def reconstruct(pyramid: list[np.ndarray]) -> np.ndarray:
    g = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        g = cv2.pyrUp(g, dstsize=(detail.shape[1], detail.shape[0])) + detail
    return g


@register("laplacian")
class LaplacianPyramid(FusionMethod):
    """Multi-scale fusion (Burt & Kolczynski 1993 style): Laplacian pyramids of both images,
    detail coefficients chosen by larger magnitude (ties -> visible), base layers averaged,
    then the pyramid is collapsed. Option ``levels`` (default 4), capped so the base is >= 2 pixels.
    """

    option_names = ("levels",)

    def __init__(self, name=None, levels: int = 4, **options):
        if int(levels) < 1:
            raise ConfigError(f"laplacian levels must be >= 1, got {levels}", f"fusion.methods.{name}")
        super().__init__(name=name, levels=int(levels), **options)
        self.levels = int(levels)

    def fuse_arrays(self, ir, vis):
        levels = min(self.levels, max(1, int(np.log2(min(ir.shape))) - 1))
        pir = laplacian_pyramid(ir.astype(np.float64), levels)
        pvis = laplacian_pyramid(vis.astype(np.float64), levels)
        fused = [np.where(np.abs(a) > np.abs(b), a, b) for a, b in zip(pir[:-1], pvis[:-1])]
        fused.append(0.5 * (pir[-1] + pvis[-1]))
        return reconstruct(fused)


@register("vsm_wls")
class VsmWls(FusionMethod):
    """VSM-WLS (Ma et al. 2017; :mod:`pipeline.fusion.vsm_wls`) with I1 = visible, I2 = infrared.
    8-bit output: clip to [0, 1], round half up (MATLAB's conversion of a double image).
    Inputs that are 8-bit images /255 in float32 (the stage's) are taken as k/255 in float64
    (:func:`pipeline.fusion.colour.unit_float64`), as the spec's doubles are: the float32 rounding
    of the division moved the result by 4.7e-8 on TNO pairs (spec tolerance 1e-9)."""

    def fuse_arrays(self, ir, vis):
        from pipeline.fusion.colour import unit_float64

        return vsm_wls_fuse(unit_float64(vis), unit_float64(ir))
