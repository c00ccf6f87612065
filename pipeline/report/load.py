"""Reading every stage's results for the report (layout: ``notes/contracts.md``).

=======================  ======================================================================
stage                    files read
=======================  ======================================================================
fusion metrics           ``results/metrics/<method>/summary.json`` (means, directions) and, when
                         a summary is absent, the mean of the finite values of the per-image
                         ``results/metrics/<method>/<dataset>.csv`` (as the summary computes it)
efficiency               ``results/fusion/<method>/<dataset>.json``
detection                ``results/detection/<dataset>/<method>/metrics.json`` and per seed
                         ``seed_<k>/predictions.json`` (loaded lazily by :mod:`.gains`)
segmentation             ``results/segmentation/<dataset>/<method>/metrics.json`` and
                         ``per_image_confusion.npz`` (loaded lazily by :mod:`.gains`)
=======================  ======================================================================

A stage, dataset or method without results is simply absent from the returned mappings (and listed
in :attr:`StageResults.missing`); it is never filled with zeros. A result file that exists but is
unreadable or breaks the contract (e.g. an AP given in percent) raises
:class:`~pipeline.errors.DataError` naming the file.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import section
from pipeline.errors import DataError
from pipeline.results import read_json

REFERENCE_METHODS = ("ir", "vis")
TASKS = ("detection", "segmentation")


@dataclass
class StageResults:
    """Everything the report shows, keyed ``[dataset][method]`` (efficiency ``[method][dataset]``)."""

    root: Path
    methods: list[str]
    fusion_metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    fusion_std: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)
    efficiency: dict[str, dict[str, dict]] = field(default_factory=dict)
    detection: dict[str, dict[str, dict]] = field(default_factory=dict)
    segmentation: dict[str, dict[str, dict]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)   # "<stage>/<dataset>/<method>" -> block
    missing: dict[str, Any] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=dict)     # control method -> positive | negative
    precomputed: set[str] = field(default_factory=set)         # methods of kind precomputed
    ignored: list[str] = field(default_factory=list)           # on disk but not in fusion.methods

    def task(self, name: str) -> dict[str, dict[str, dict]]:
        return {"detection": self.detection, "segmentation": self.segmentation}[name]


def read_json_file(path: Path) -> Any:
    """JSON from ``path``; a DataError naming the file when it cannot be parsed."""
    try:
        return read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read result file ({err})", path) from err


def configured_methods(params: dict) -> dict[str, dict]:
    """``params.fusion.methods`` as ``{name: options}`` (file order)."""
    return {str(k): dict(v or {}) for k, v in (section(params, "fusion.methods") or {}).items()}


def control_roles(params: dict) -> dict[str, str]:
    """``{method: positive | negative}`` for the configured controls (registry kind ``control``,
    :mod:`pipeline.fusion.controls`)."""
    from pipeline.fusion.controls import CONTROL_ROLES

    return {name: CONTROL_ROLES[opts.get("kind") or name] for name, opts in configured_methods(params).items()
            if (opts.get("kind") or name) in CONTROL_ROLES}


def method_order(params: dict, found: set[str] | list[str] = ()) -> list[str]:
    """``ir``, ``vis``, then the real methods of ``params.fusion.methods`` in file order, then the
    controls. Methods only found on disk are listed only when nothing is configured."""
    configured = list(configured_methods(params))
    controls = control_roles(params)
    order = list(REFERENCE_METHODS)
    for name in [m for m in configured if m not in controls] + list(controls) + ([] if configured else sorted(found)):
        if name not in order:
            order.append(name)
    return order


def _number(value: Any, path: Path, what: str, fraction: bool = False) -> float | None:
    """A float (``None`` for null/NaN); fractions must lie in [0, 1] (the contract's AP/IoU unit)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise DataError(f"{what} is not a number: {value!r}", path) from err
    if not math.isfinite(number):
        return None
    if fraction and not -1e-9 <= number <= 1 + 1e-9:
        raise DataError(f"{what} = {number} is outside [0, 1]; AP and IoU must be fractions, "
                        "not percentages", path)
    return number


def _seed_count(obj: dict) -> int:
    seeds = obj.get("seeds")
    if isinstance(seeds, list):
        return len(seeds)
    if isinstance(seeds, (int, float)):
        return int(seeds)
    per_seed = obj.get("per_seed")
    return len(per_seed) if isinstance(per_seed, (list, dict)) else 1


def _std(obj: dict, key: str) -> float | None:
    std = obj.get("std")
    if isinstance(std, dict) and std.get(key) is not None:
        return float(std[key])
    value = obj.get(f"{key}_std")
    return None if value is None else float(value)


def _class_values(obj: Any, path: Path, what: str) -> dict[str, float | None]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise DataError(f"{what} must map class names to values", path)
    return {str(k): _number(v, path, f"{what}[{k}]", fraction=True) for k, v in obj.items()}


# per task: headline metric, other fraction-valued scores, per-class mapping
TASK_FIELDS = {"detection": ("mAP50", ("mAP50_95", "precision", "recall"), "AP50"),
               "segmentation": ("mIoU", ("mIoU_no_bg", "pixel_accuracy"), "IoU")}


def task_row(task: str, obj: dict, path: Path) -> dict:
    """The report's view of one task ``metrics.json`` (contract: means over seeds at top level,
    fractions in [0, 1], per-class values under ``AP50`` / ``IoU``, ``std``, ``seeds``)."""
    headline, others, per_class = TASK_FIELDS[task]
    if not isinstance(obj, dict) or headline not in obj:
        raise DataError(f"{task} metrics.json has no {headline!r}", path)
    row = {key: _number(obj.get(key), path, key, fraction=True) for key in (headline, *others)}
    row.update({per_class: _class_values(obj.get(per_class), path, per_class), "seeds": _seed_count(obj),
                f"{headline}_std": _std(obj, headline), "n_test_images": obj.get("n_test_images"),
                f"{headline}_per_seed": _per_seed(obj, headline, path)})
    return row


def _per_seed(obj: dict, key: str, path: Path) -> list[float | None] | None:
    """Per-seed values of ``key`` from ``per_seed`` (``{seed: {key: value}}``), in seed order."""
    per_seed = obj.get("per_seed")
    if not isinstance(per_seed, dict):
        return None
    items = sorted(per_seed.items(), key=lambda kv: (len(str(kv[0])), str(kv[0])))
    return [_number((v or {}).get(key), path, f"per_seed[{k}].{key}", fraction=True) for k, v in items]


def _load_fusion_metrics(results: Path, out: StageResults) -> None:
    from pipeline.metrics.stage import summarise

    base = results / "metrics"
    for folder in sorted(p for p in base.glob("*") if p.is_dir()) if base.is_dir() else []:
        method = folder.name
        summary = folder / "summary.json"
        if summary.is_file():
            obj = read_json_file(summary)
            if not isinstance(obj, dict) or not isinstance(obj.get("datasets"), dict):
                raise DataError("fusion metrics summary has no 'datasets' mapping", summary)
            for metric, direction in (obj.get("directions") or {}).items():
                if direction not in ("up", "down"):
                    raise DataError(f"direction of {metric} must be 'up' or 'down', got {direction!r}",
                                    summary)
                out.directions.setdefault(metric, direction)
            for dataset, metrics in obj["datasets"].items():
                means, stds = {}, {}
                for metric, stats in (metrics or {}).items():
                    stats = stats if isinstance(stats, dict) else {"mean": stats}
                    means[metric] = _number(stats.get("mean"), summary, f"{dataset}.{metric}.mean")
                    stds[metric] = _number(stats.get("std"), summary, f"{dataset}.{metric}.std")
                out.fusion_metrics.setdefault(dataset, {})[method] = means
                out.fusion_std.setdefault(dataset, {})[method] = stds
            for dataset, block in (obj.get("provenance") or {}).items():    # one block per dataset
                if isinstance(block, dict):
                    out.provenance[f"metrics/{dataset}/{method}"] = block
            continue
        for csv in sorted(folder.glob("*.csv")):          # no summary: average the per-image rows
            try:
                frame = pd.read_csv(csv)
            except (OSError, ValueError) as err:
                raise DataError(f"cannot read per-image metrics CSV ({err})", csv) from err
            numeric = frame.drop(columns=[c for c in ("name", "split") if c in frame]).select_dtypes("number")
            stats = summarise(frame, list(numeric.columns))   # the metrics stage's own summary
            out.fusion_metrics.setdefault(csv.stem, {})[method] = {c: v["mean"] for c, v in stats.items()}
            out.fusion_std.setdefault(csv.stem, {})[method] = {c: v["std"] for c, v in stats.items()}


def _load_efficiency(results: Path, out: StageResults) -> None:
    base = results / "fusion"
    for path in sorted(base.glob("*/*.json")) if base.is_dir() else []:
        obj = read_json_file(path)
        if not isinstance(obj, dict) or "seconds_per_image" not in obj:
            raise DataError("fusion efficiency record has no 'seconds_per_image'", path)
        method = str(obj.get("method") or path.parent.name)
        dataset = str(obj.get("dataset") or path.stem)
        out.efficiency.setdefault(method, {})[dataset] = {
            "params": None if obj.get("params") is None else int(obj["params"]),
            "gflops": _number(obj.get("gflops"), path, "gflops"),
            "seconds_per_image": _number(obj["seconds_per_image"], path, "seconds_per_image"),
            "images": obj.get("images"),
            "weights": [{"file": w.get("file"), "sha256": w.get("sha256")} for w in obj.get("weights") or []
                        if isinstance(w, dict)] or None}
        if obj.get("kind") == "precomputed":
            out.precomputed.add(method)


def _load_task(results: Path, task: str, out: StageResults) -> None:
    base = results / task
    table = out.task(task)
    for path in sorted(base.glob("*/*/metrics.json")) if base.is_dir() else []:
        dataset, method = path.parent.parent.name, path.parent.name
        obj = read_json_file(path)
        row = task_row(task, obj, path)
        row["dir"] = path.parent
        table.setdefault(dataset, {})[method] = row
        if isinstance(obj.get("provenance"), dict):
            out.provenance[f"{task}/{dataset}/{method}"] = obj["provenance"]


def configured_datasets(params: dict, task: str | None = None) -> list[str]:
    """Dataset names under ``params.datasets`` (optionally only those whose ``task`` matches)."""
    datasets = params.get("datasets") or {}
    return [name for name, cfg in datasets.items()
            if isinstance(cfg, dict) and (task is None or cfg.get("task") == task)]


def load_results(root: str | Path = ".", params: dict | None = None) -> StageResults:
    """Load every stage's results under ``<root>/results``; record what is missing.

    ``missing`` maps ``fusion_metrics``/``efficiency``/``detection``/``segmentation`` to either the
    string ``"not run"`` (no results of that stage at all) or ``{dataset: [methods without
    results]}`` for the configured methods (``ir``, ``vis`` and ``params.fusion.methods``).
    """
    params = params or {}
    root = Path(root)
    results = root / "results"
    out = StageResults(root=root, methods=[])
    _load_fusion_metrics(results, out)
    _load_efficiency(results, out)
    for task in TASKS:
        _load_task(results, task, out)
    found = set(out.efficiency)
    for table in (out.fusion_metrics, out.detection, out.segmentation):
        for rows in table.values():
            found.update(rows)
    out.methods = method_order(params, found)
    out.controls = control_roles(params)
    out.precomputed |= {m for m, o in configured_methods(params).items() if o.get("kind") == "precomputed"}
    if configured_methods(params):          # only the configured methods are reported
        out.ignored = sorted(found - set(out.methods))
        for table in (out.fusion_metrics, out.fusion_std, out.detection, out.segmentation):
            for rows in table.values():
                for name in out.ignored:
                    rows.pop(name, None)
        for name in out.ignored:
            out.efficiency.pop(name, None)
    expected = method_order(params)
    for name, table, task in (("fusion_metrics", out.fusion_metrics, None),
                              ("detection", out.detection, "detection"),
                              ("segmentation", out.segmentation, "segmentation")):
        datasets = sorted(set(table) | set(configured_datasets(params, task)))
        if not table:
            out.missing[name] = "not run"
            continue
        gaps = {d: [m for m in expected if m not in table.get(d, {})] for d in datasets}
        out.missing[name] = {d: ms for d, ms in gaps.items() if ms}
    if not out.efficiency:
        out.missing["efficiency"] = "not run"
    else:
        gaps = [m for m in expected if m not in out.efficiency]
        out.missing["efficiency"] = {"all": gaps} if gaps else {}
    return out


def load_confusions(path: Path) -> tuple[list[str], np.ndarray]:
    """``per_image_confusion.npz`` → ``(names, array S×N×C×C)``: the ``per_seed`` array when the file
    has one (the segmentation stage's top-level file), else ``confusion`` (one seed, ``S = 1``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read per-image confusion matrices ({err})", path) from err
    names = arrays.get("names")
    key = "per_seed" if "per_seed" in arrays else "confusion" if "confusion" in arrays else None
    if names is None or key is None:
        raise DataError("expected arrays 'names' and 'confusion' (N×C×C) or 'per_seed' (seeds×N×C×C)", path)
    matrices = arrays[key].astype(np.float64)
    if matrices.ndim == 3:
        matrices = matrices[None]
    if matrices.ndim != 4 or matrices.shape[1] != len(names) or matrices.shape[2] != matrices.shape[3]:
        raise DataError(f"{key} array of shape {arrays[key].shape} does not match {len(names)} names", path)
    return [str(n) for n in names], matrices
