"""Health check of a finished training run: flag a collapsed or diverged run instead of fusing garbage.

Verdict ``ok``, ``collapsed`` or ``diverged`` with the reasons, from (thresholds in ``train.health``):

* **diverged** — a non-finite loss (the trainer stops at once, see :class:`TrainingDiverged`) or a
  non-finite fused output of the final model;
* **collapsed** — a discriminator accuracy (fraction of real patches scored above 0.5 plus fake
  patches scored below 0.5, recipes return it as ``health_keys["accuracy"]``) of at least
  ``d_acc_max`` in every epoch of the last ``window`` fraction of the run: the discriminator wins
  outright and the generator gets no useful adversarial signal; or the generator output's standard
  deviation within a batch (``health_keys["output_std"]``, values in [0, 1]) below ``min_output_std``
  in the last epoch; or a final raw fused image (full-size training pairs, [0, 1] scale) whose standard deviation is
  below ``min_output_std`` — a constant image.

The verdict is written to the training summary (``summary.json``), into the exported checkpoint
(``health``) and shown in the report; fusion methods log a warning when they load a flagged
checkpoint.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from pipeline.errors import ConfigError, FuseBenchError

HEALTH_KEYS = ("d_acc_max", "window", "min_output_std")


class TrainingDiverged(FuseBenchError):
    """A loss became NaN or infinite: training stopped (the message names the method's params)."""


def check_settings(health: Mapping | None, where: str = "train.health") -> dict:
    health = dict(health or {})
    missing = sorted(set(HEALTH_KEYS) - set(health))
    unknown = sorted(set(health) - set(HEALTH_KEYS))
    if missing or unknown:
        raise ConfigError(f"{where}: " + "; ".join(filter(None, [
            missing and f"missing key(s) {missing}", unknown and f"unknown key(s) {unknown}"])))
    if not 0 < float(health["window"]) <= 1:
        raise ConfigError(f"{where}.window must be in (0, 1], got {health['window']!r}")
    return {k: float(v) for k, v in health.items()}


def verdict(history: Sequence[Mapping], health_keys: Mapping, settings: Mapping,
            fused: Sequence[np.ndarray] = ()) -> dict:
    """``{"status", "reasons", "checks"}`` of a run from its per-epoch ``history`` and final ``fused``
    raw images (float H×W on the [0, 1] scale; see the module docstring)."""
    reasons: list[str] = []
    checks: dict = {}
    if not history:
        return {"status": "ok", "reasons": [], "checks": {}}
    bad = sorted({k for row in history for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)})
    if bad:
        reasons.append(f"non-finite loss(es) {bad}")
    tail = history[-max(1, math.ceil(len(history) * settings["window"])):]
    for key in health_keys.get("accuracy", ()):
        values = [float(row[key]) for row in tail]
        checks[f"{key}_min_last"] = min(values)
        if min(values) >= settings["d_acc_max"]:
            reasons.append(f"collapsed: discriminator accuracy {key} >= {settings['d_acc_max']} in the last "
                           f"{len(tail)} epoch(s) (pinned at 1: the generator gets no adversarial signal)")
    std_key = health_keys.get("output_std")
    if std_key:
        checks[f"{std_key}_last"] = float(history[-1][std_key])
        if float(history[-1][std_key]) < settings["min_output_std"]:
            reasons.append(f"collapsed: generator output std {history[-1][std_key]:.2e} < "
                           f"{settings['min_output_std']} in the last epoch (constant output)")
    if len(fused):
        if not all(np.all(np.isfinite(f)) for f in fused):
            reasons.append("diverged: non-finite fused output")
        else:
            stds = [float(np.std(np.asarray(f, dtype=np.float64))) for f in fused]
            checks["fused_std_min"] = min(stds)
        if "fused_std_min" in checks and checks["fused_std_min"] < settings["min_output_std"]:
            reasons.append(f"collapsed: a fused training pair is constant (std {min(stds):.2e})")
    status = "ok"
    if reasons:
        status = "diverged" if any("non-finite" in r or r.startswith("diverged") for r in reasons) else "collapsed"
    return {"status": status, "reasons": reasons, "checks": checks}
