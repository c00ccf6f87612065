"""Gains of each fusion method over infrared-only, visible-only and the best single modality.

For a task's headline metric (detection: mAP@0.5, segmentation: mIoU; fractions in [0, 1]):

* ``vs_ir = T(method) - T(ir)``, ``vs_vis = T(method) - T(vis)``,
  ``vs_best_single = T(method) - max(T(ir), T(vis))`` where ``T`` is the value the task stage
  reported (mean over seeds) — so every gain is exactly the difference of two table rows;
* the interval (level ``report.confidence``) of each gain comes from a two-level paired bootstrap
  over training seeds and test images (:mod:`pipeline.report.bootstrap`, docs/verdicts.md):
  segmentation resamples the per-seed per-image confusion matrices and recomputes mIoU; detection
  resamples the per-seed per-image prediction records and recomputes mAP@0.5 with
  :mod:`pipeline.detection.ap`. The best single modality is fixed from the full test set (the
  same baseline row as ``vs_best_single``). ``ci95`` (the key name is historical: its level is
  ``confidence``) is the interval of ``vs_best_single`` (also as scalars ``ci95_low``/``ci95_high`` for
  ``dvc metrics diff``, which skips lists); ``ci95_vs_ir`` / ``ci95_vs_vis`` the other two.
  ``recomputed`` holds the full-sample gains from the per-image files (equal to the reported ones
  up to the stage's own averaging), so a reader can check the two agree.
* ``verdict`` / ``verdict_reason`` (:func:`verdict`): "better" / "worse" only when the interval
  excludes 0 **and** both systems have at least ``report.min_seeds`` seeds; else "inconclusive"
  with the reason ("1 seed", "interval includes 0", "sensitivity check failed").
  ``seeds_used`` = the seed counts of the method and of its best single modality;
  ``per_seed`` = the method's per-seed full-test-set values.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from pipeline.errors import DataError
from pipeline.report.bootstrap import (Resamples, Statistic, difference_interval, full_weights,
                                       map50_statistic, miou_statistic)
from pipeline.report.load import REFERENCE_METHODS, StageResults, load_confusions, read_json_file

HEADLINE = {"detection": "mAP50", "segmentation": "mIoU"}
BASELINES = {"vs_ir": "ir", "vs_vis": "vis"}


@dataclass(frozen=True)
class BootstrapConfig:
    samples: int = 1000
    seed: int = 0
    confidence: float = 0.95
    min_seeds: int = 3


def verdict(low: float | None, high: float | None, seeds: int | None, min_seeds: int,
            sensitivity_ok: bool = True) -> tuple[str, str]:
    """``(verdict, reason)`` of a gain interval: ``better`` / ``worse`` when it excludes 0 and
    ``seeds`` (the smaller seed count of the two systems) >= ``min_seeds``, else ``inconclusive``
    with every reason that applies; ``no interval`` when there is none."""
    if low is None or high is None or low != low or high != high:
        return "no interval", "per-image results missing"
    reasons = []
    if not sensitivity_ok:
        reasons.append("sensitivity check failed")
    if seeds is not None and seeds < min_seeds:
        reasons.append(f"{seeds} seed{'s' if seeds != 1 else ''} (fewer than {min_seeds})")
    if low <= 0 <= high:
        reasons.append("interval includes 0")
    if reasons:
        return "inconclusive", "; ".join(reasons)
    return ("better" if low > 0 else "worse"), f"interval excludes 0 with {seeds} seeds"


@dataclass
class PerImage:
    """One system's per-image data: image names and a bootstrap statistic over them."""

    names: list[str]
    make_stat: Callable[[list[int]], Statistic]   # image positions (in a common order) -> statistic


def seed_dirs(method_dir: Path) -> list[Path]:
    return sorted((p for p in method_dir.glob("seed_*") if p.is_dir()),
                  key=lambda p: (len(p.name), p.name))


def _segmentation_data(method_dir: Path) -> PerImage | None:
    files = [method_dir / "per_image_confusion.npz"]
    if not files[0].is_file():
        files = [d / "per_image_confusion.npz" for d in seed_dirs(method_dir)]
        files = [f for f in files if f.is_file()]
    if not files:
        return None
    loaded = [load_confusions(f) for f in files]
    names = loaded[0][0]
    for (other, _), path in zip(loaded[1:], files[1:]):
        if other != names:
            raise DataError("per-seed confusion files list different images", path)
    matrices = np.concatenate([m for _, m in loaded], axis=0)      # seeds × N × C × C
    return PerImage(names, lambda pos: miou_statistic(matrices[:, pos]))  # seeds × images


def prediction_records(path: Path) -> list[dict]:
    """Per-image records from a detection ``predictions.json`` (a list, or ``{"images": [...]}``);
    each must carry a ``name``."""
    return records_in(read_json_file(path), path)


def records_in(obj, path: Path) -> list[dict]:
    """The per-image records of an already parsed ``predictions.json`` (see :func:`prediction_records`)."""
    records = obj.get("images") if isinstance(obj, dict) else obj
    if not isinstance(records, list) or not all(isinstance(r, dict) and "name" in r for r in records):
        raise DataError("predictions.json must hold a list of per-image records with a 'name'", path)
    return records


def _detection_data(method_dir: Path) -> PerImage | None:
    from pipeline.detection.ap import match_records

    files = [d / "predictions.json" for d in seed_dirs(method_dir)]
    files = [f for f in files if f.is_file()]
    if not files:
        return None
    per_seed = [{str(r["name"]): r for r in prediction_records(path)} for path in files]
    names = sorted(set.intersection(*(set(s) for s in per_seed)))
    tables = [match_records([s[n] for n in names], (0.5,)) for s in per_seed]

    def make_stat(pos: list[int]) -> Statistic:
        return map50_statistic([_subset(t, pos) for t in tables])

    return PerImage(names, make_stat)


def _subset(table, positions: list[int]):
    """The :class:`~pipeline.detection.ap.MatchTable` of the images at ``positions``, in that order."""
    return replace(table, **{k: [getattr(table, k)[i] for i in positions]
                             for k in ("tp", "scores", "pred_cls", "gt_cls")})


def per_image_data(task: str, method_dir: Path) -> PerImage | None:
    """Per-image data of one method's task results, or ``None`` when the stage saved none."""
    return _segmentation_data(method_dir) if task == "segmentation" else _detection_data(method_dir)


def _gain(value, base):
    return None if value is None or base is None else float(value - base)


def dataset_gains(task: str, rows: dict[str, dict], config: BootstrapConfig) -> dict[str, dict]:
    """Gains of every non-reference method in ``rows`` (``{method: row}`` of one task and dataset)."""
    metric = HEADLINE[task]
    values = {m: r.get(metric) for m, r in rows.items()}
    ir, vis = values.get("ir"), values.get("vis")
    best = None if ir is None or vis is None else ("ir" if ir >= vis else "vis")
    methods = [m for m in rows if m not in REFERENCE_METHODS and values[m] is not None]
    out: dict[str, dict] = {}
    for method in methods:
        value = values[method]
        out[method] = {"metric": metric, "value": value, "vs_ir": _gain(value, ir),
                       "vs_vis": _gain(value, vis),
                       "vs_best_single": _gain(value, values.get(best)) if best else None,
                       "best_single": best, "seeds": rows[method].get("seeds"),
                       "ci95": None, "ci95_vs_ir": None, "ci95_vs_vis": None}
    if not out:
        return out
    _add_intervals(task, rows, out, best, config)
    return out


def _add_intervals(task, rows, out, best, config) -> None:
    systems = [m for m in [*REFERENCE_METHODS, *out] if m in rows]
    data = {m: per_image_data(task, Path(rows[m]["dir"])) for m in systems if rows[m].get("dir")}
    data = {m: d for m, d in data.items() if d is not None}
    note = None
    if not {"ir", "vis"} & set(data):
        note = "no per-image results for the ir/vis rows"
    common: list[str] = []
    if data:
        common = sorted(set.intersection(*(set(d.names) for d in data.values())))
        if not common:
            note = "the systems' per-image results share no image names"
    if note:
        for entry in out.values():
            entry["ci_note"] = note
        return
    draws = Resamples(len(common), config.samples, config.seed)
    boot, full, seeds, per_seed = {}, {}, {}, {}
    for name, item in tqdm(data.items(), desc=f"bootstrap {task}", unit="system", leave=False):
        index = {n: i for i, n in enumerate(item.names)}
        stat = item.make_stat([index[n] for n in common])
        boot[name], full[name] = draws.values(stat)
        seeds[name] = stat.n_seeds
        per_seed[name] = [float(v) for v in stat.per_seed(full_weights(len(common)))[0]]
    every = set().union(*(d.names for d in data.values()))
    for method, entry in out.items():
        entry["n_images"] = len(common)
        if len(every) > len(common):
            entry["ci_note"] = (f"only {len(common)} of {len(every)} test images have per-image results "
                                "for every system; the interval uses those")
        if method not in data:
            entry["ci_note"] = "no per-image results for this method"
            continue
        recomputed = {}
        for key, base in (*BASELINES.items(), ("vs_best_single", best)):
            if base not in data:
                continue
            interval = difference_interval(boot[method], boot[base], full[method], full[base],
                                           config.confidence, (seeds[method], seeds[base]))
            recomputed[key] = interval.estimate
            entry["ci95" if key == "vs_best_single" else f"ci95_{key}"] = interval.as_list()
            if key == "vs_best_single":                 # scalars too: `dvc metrics diff` skips lists
                entry.update(ci95_low=interval.low, ci95_high=interval.high, ci_valid_resamples=interval.valid,
                             seeds_used=[seeds[method], seeds[base]])
        entry["recomputed"] = recomputed
        entry["per_seed"] = per_seed[method]


def compute_gains(results: StageResults, config: BootstrapConfig = BootstrapConfig(),
                  progress: Callable[[str], None] | None = None, roles: dict[str, str] | None = None) -> dict:
    """``{task: {dataset: {method: {...}}}}`` for every task and dataset with results, with
    verdicts (:mod:`pipeline.report.sensitivity`; ``roles``: the control methods). The
    sensitivity check itself: :func:`compute_gains_and_check`."""
    return compute_gains_and_check(results, config, progress, roles)[0]


def compute_gains_and_check(results: StageResults, config: BootstrapConfig = BootstrapConfig(),
                            progress: Callable[[str], None] | None = None,
                            roles: dict[str, str] | None = None,
                            required: tuple[str, ...] | list[str] = ()) -> tuple[dict, dict]:
    """``(gains, sensitivity check)``; see :func:`compute_gains`; ``required``: the tasks the
    sensitivity check needs results of."""
    from pipeline.report.sensitivity import apply_verdicts, sensitivity_check

    gains: dict[str, dict] = {}
    for task in HEADLINE:
        for dataset, rows in results.task(task).items():
            if progress is not None:
                progress(f"{task}/{dataset}")
            gains.setdefault(task, {})[dataset] = dataset_gains(task, rows, config)
    roles = dict(roles or {})
    check = sensitivity_check(gains, roles, config, required)
    apply_verdicts(gains, roles, check, config)
    return gains, check
