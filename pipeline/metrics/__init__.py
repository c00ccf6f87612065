"""Fusion-quality metrics in the two published conventions, exact and fast.

* ``matlab`` (default): the MATLAB toolbox MLFuse and its peers report (``analysis_Reference.m``,
  Linfeng-Tang/Image-Fusion, 2023 version): EN, SD, SF, AG, MI, MSE, CC, PSNR, SCD, VIF, Qabf, SSIM,
  MS_SSIM, Nabf, FMI_pixel (= edge-feature FMI), FMI_dct, plus corrected variants FMI_pixel_none,
  Nabf_fused_first, Nabf_v2022.
* ``cddfuse``: the CDDFuse Python evaluator (MI in nats, SSIM as a sum, PSNR with the fused maximum).

Entry points: :func:`compute_metrics`, :func:`metric_directions`, :func:`metric_names`,
:func:`load_triple` + :func:`compute_triple`; the metrics stage is in :mod:`pipeline.metrics.stage`.
Definitions and reference values: ``../shared/spec/metrics.md``.
"""
from pipeline.metrics.inputs import CONVENTIONS, Triple, load_triple, make_triple, to_gray
from pipeline.metrics.registry import (REGISTRY, Metric, compute_metrics, compute_triple, metric_directions,
                                       metric_names, resolve_names)

__all__ = [
    "CONVENTIONS", "REGISTRY", "Metric", "Triple", "compute_metrics", "compute_triple", "load_triple",
    "make_triple", "metric_directions", "metric_names", "resolve_names", "to_gray",
]
