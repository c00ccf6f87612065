"""Metric registry per convention and the one entry point :func:`compute_metrics`.

``matlab`` (default) reproduces the MATLAB toolbox (``analysis_Reference.m``, ML-2023) used by MLFuse
and its peers, plus corrected variants under their own names; ``cddfuse`` reproduces the CDDFuse
Python evaluator. See ``../shared/spec/metrics.md`` and each function's docstring.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from pipeline.errors import ConfigError
from pipeline.metrics import basic, edges, fmi, information, structural, vif
from pipeline.metrics.inputs import Triple, check_convention, make_triple


@dataclass(frozen=True)
class Metric:
    """A registered metric: name, function of a :class:`Triple`, direction ("up" = larger is better)."""

    name: str
    fn: Callable[[Triple], float]
    direction: str

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip()


def _m(name, fn, direction="up"):
    return Metric(name, fn, direction)


_COMMON = [
    _m("EN", basic.en), _m("SD", basic.sd), _m("SF", basic.sf), _m("AG", basic.ag),
    _m("MI", information.mi), _m("MSE", basic.mse, "down"), _m("CC", basic.cc),
    _m("PSNR", basic.psnr), _m("SCD", basic.scd), _m("VIF", vif.vif), _m("Qabf", edges.qabf),
    _m("SSIM", structural.ssim),
]

REGISTRY: dict[str, dict[str, Metric]] = {
    "cddfuse": {m.name: m for m in _COMMON},
    "matlab": {m.name: m for m in _COMMON + [
        _m("MS_SSIM", structural.ms_ssim),
        _m("Nabf", edges.nabf, "down"),
        _m("FMI_pixel", fmi.fmi_pixel),
        _m("FMI_dct", fmi.fmi_dct),
        # corrected variants, under their own names
        _m("FMI_pixel_none", fmi.fmi_pixel_none),
        _m("Nabf_fused_first", edges.nabf_fused_first, "down"),
        _m("Nabf_v2022", edges.nabf_v2022, "down"),
    ]},
}

ALIASES = {"VIFF": "VIF", "MS-SSIM": "MS_SSIM", "FMI": "FMI_pixel"}


def metric_names(convention: str = "matlab") -> list[str]:
    """Every metric of the convention, in table order."""
    return list(REGISTRY[check_convention(convention)])


def metric_directions(convention: str = "matlab") -> dict[str, str]:
    """``{metric: "up"|"down"}`` — "up" when larger is better."""
    return {name: m.direction for name, m in REGISTRY[check_convention(convention)].items()}


def resolve_names(only: Iterable[str] | str | None, convention: str = "matlab") -> list[str]:
    """Validate a metric selection (list or comma-separated string; aliases such as VIFF accepted)."""
    available = REGISTRY[check_convention(convention)]
    if only is None:
        return list(available)
    if isinstance(only, str):
        only = [part for part in only.split(",")]
    names = []
    for raw in only:
        name = ALIASES.get(raw.strip(), raw.strip())
        if not name:
            continue
        if name not in available:
            raise ConfigError(f"unknown metric {raw!r} for convention {convention!r}; "
                              f"available: {', '.join(available)}")
        if name not in names:
            names.append(name)
    return names


def compute_triple(triple: Triple, only=None) -> dict[str, float]:
    """Compute the selected metrics of an already prepared :class:`Triple`."""
    registry = REGISTRY[triple.convention]
    return {name: float(registry[name].fn(triple)) for name in resolve_names(only, triple.convention)}


def compute_metrics(ir, vis, fused, convention: str = "matlab", only=None) -> dict[str, float]:
    """``{metric: value}`` for one (infrared/CT, visible/MRI, fused) triple of arrays.

    Arrays: ``H×W`` grey or ``H×W×3`` RGB, uint8 or float 0..255; colour is converted once with
    the convention's grey rule. ``only``: metric names (list or "EN,VIF"), default all of the
    convention. Raises :class:`~pipeline.errors.DataError` for bad images, ConfigError for unknown
    metric names. Never NaN for usable images, except where a metric's window does not fit a tiny
    image (VIF under 41 pixels, MS_SSIM under 44, cddfuse SSIM under 7, FMI under 3); PSNR is
    ``inf`` for a fused image identical to both sources.
    """
    names = resolve_names(only, convention)
    return compute_triple(make_triple(ir, vis, fused, convention), names)
