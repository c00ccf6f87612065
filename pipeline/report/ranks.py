"""Rank correlations with bootstrap intervals (shared by the robustness and metric-prediction sections).

* Spearman's ρ (Spearman, Am. J. Psychol. 1904): Pearson correlation of the mid-ranks (ties get
  the mean of their ranks); NaN when either side is constant.
* Kendall's τ-b (Kendall, Biometrika 1945), tie-corrected, via :func:`scipy.stats.kendalltau`.
* :func:`correlate`: both with percentile bootstrap intervals (Efron & Tibshirani 1993) from
  given resamples (e.g. of test images); :func:`by_units` resamples the units (methods) of the
  points itself. Resamples where a correlation is undefined are dropped and counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy import stats


def spearman(x, y) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        return float("nan")
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def kendall(x, y) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return float("nan")
    return float(stats.kendalltau(x[keep], y[keep]).statistic)


@dataclass(frozen=True)
class Correlation:
    spearman: float
    spearman_ci: tuple[float, float]
    kendall: float
    kendall_ci: tuple[float, float]
    n: int                 # points (e.g. method x seed pairs)
    n_units: int           # resampled units (methods or images)
    valid: int             # resamples where the correlation was defined

    def as_dict(self) -> dict:
        return {"spearman": self.spearman, "spearman_ci95": list(self.spearman_ci), "kendall": self.kendall,
                "kendall_ci95": list(self.kendall_ci), "n_points": self.n, "n_units": self.n_units,
                "valid_resamples": self.valid}


def _interval(values: list[float], confidence: float) -> tuple[tuple[float, float], int]:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if not arr.size:
        return (float("nan"), float("nan")), 0
    alpha = (1 - confidence) / 2
    low, high = np.quantile(arr, [alpha, 1 - alpha])
    return (float(low), float(high)), int(arr.size)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`spearman` of every row pair of two B×n arrays of finite values, bit-equal to it: the
    mid-ranks sum to n(n+1)/2, so rank − mean is a multiple of ½ and every sum of products is exact
    in any order; the divisions then follow :func:`numpy.corrcoef`'s order."""
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    n = x.shape[1]
    xm, ym = rx - (n + 1) / 2, ry - (n + 1) / 2
    scale = np.true_divide(1, n - 1)
    cxy, cxx, cyy = ((a * b).sum(1) * scale for a, b in ((xm, ym), (xm, xm), (ym, ym)))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.clip(cxy / np.sqrt(cxx) / np.sqrt(cyy), -1, 1)
    rho[(cxx == 0) | (cyy == 0)] = np.nan
    return rho if n >= 2 else np.full(len(x), np.nan)


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`kendall` (τ-b) of every row pair of two B×n arrays of finite values, bit-equal to
    :func:`scipy.stats.kendalltau`: with sx, sy the signs of all pair differences, τ-b =
    Σ sx·sy / √Σ sx² / √Σ sy² on the same integer counts (con − dis, untied pairs)."""
    i, j = np.triu_indices(x.shape[1], 1)
    sx, sy = np.sign(x[:, i] - x[:, j]).astype(np.int64), np.sign(y[:, i] - y[:, j]).astype(np.int64)
    con_minus_dis, untied_x, untied_y = (sx * sy).sum(1), (sx * sx).sum(1), (sy * sy).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.minimum(1.0, np.maximum(-1.0, con_minus_dis / np.sqrt(untied_x) / np.sqrt(untied_y)))
    tau[(untied_x == 0) | (untied_y == 0)] = np.nan
    return tau


def correlate(full: tuple, resamples: Iterable[tuple], n_units: int, confidence: float = 0.95) -> Correlation:
    """Spearman and Kendall of ``full = (x, y)`` with percentile intervals from ``resamples``
    (an iterable of ``(x, y)`` pairs, one per bootstrap resample of the ``n_units`` units).
    Resamples of equal length and finite values are computed together (:func:`spearman_rows`,
    :func:`kendall_rows`, the same numbers), the others one by one."""
    pairs = [(np.asarray(bx, dtype=np.float64), np.asarray(by, dtype=np.float64)) for bx, by in resamples]
    if pairs and len({len(bx) for bx, _ in pairs} | {len(by) for _, by in pairs}) == 1 \
            and all(np.isfinite(bx).all() and np.isfinite(by).all() for bx, by in pairs):
        bx, by = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        rhos, taus = spearman_rows(bx, by).tolist(), kendall_rows(bx, by).tolist()
    else:
        rhos = [spearman(bx, by) for bx, by in pairs]
        taus = [kendall(bx, by) for bx, by in pairs]
    rho_ci, valid = _interval(rhos, confidence)
    tau_ci, _ = _interval(taus, confidence)
    x, y = (np.asarray(v, dtype=np.float64) for v in full)
    return Correlation(spearman(x, y), rho_ci, kendall(x, y), tau_ci, int((np.isfinite(x) & np.isfinite(y)).sum()),
                       n_units, valid)


MIN_UNITS = 5   # fewer resampled units than this: no interval (a bootstrap of 3-4 methods keeps their order)


def by_units(x, y, units, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> Correlation:
    """Correlation across *units* (e.g. methods) of points ``(x_i, y_i)`` grouped by ``units``
    (e.g. one point per method and seed): each unit contributes the mean of its points. The
    two-stage bootstrap draws units with replacement and, inside each drawn unit, its points
    with replacement (Davison & Hinkley, *Bootstrap Methods*, 1997, sec. 3.8), so the seed-to-seed
    spread enters the interval but seeds never count as independent methods. ``n`` = points.
    With fewer than :data:`MIN_UNITS` units the intervals are NaN (not computed): resampling three
    methods reproduces their order in almost every draw and would look falsely certain."""
    from pipeline.report.bootstrap import resample_weights

    x, y, units = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(units)
    labels = list(dict.fromkeys(units.tolist()))
    members = [np.flatnonzero(units == u) for u in labels]
    mean_x = np.array([x[m].mean() for m in members])
    mean_y = np.array([y[m].mean() for m in members])
    rng = np.random.default_rng([seed, 1])

    def resamples():
        for row in resample_weights(len(labels), n_boot, seed):
            drawn = np.repeat(np.arange(len(labels)), row)
            bx = mean_x[drawn]
            by = np.array([y[rng.choice(members[k], size=len(members[k]))].mean() for k in drawn])
            yield bx, by

    corr = correlate((mean_x, mean_y), resamples() if len(labels) >= MIN_UNITS else iter(()), len(labels), confidence)
    return Correlation(corr.spearman, corr.spearman_ci, corr.kendall, corr.kendall_ci, int(len(x)), len(labels),
                       corr.valid)
