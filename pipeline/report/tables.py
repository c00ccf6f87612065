"""The report's tables as pandas DataFrames: numeric frames (exported to CSV) and display frames.

Every numeric table has one row per method (``ir``, ``vis``, then the fusion methods) and a
``status`` column: ``ok``, or ``missing`` when the stage produced nothing for that method — its
values are then empty (NaN), never zero. :func:`display` turns a numeric frame into strings with
the best value of each column marked (largest for ↑ metrics, smallest for ↓) and arrows in the
headers.
"""
from __future__ import annotations

import math

import pandas as pd

from pipeline.report.load import StageResults

MISSING = "missing"
UNDEFINED = "n/a"
ARROWS = {"up": "↑", "down": "↓"}


def _frame(rows: dict[str, dict], methods: list[str], columns: list[str] | None = None) -> pd.DataFrame:
    ordered = [m for m in methods if m in rows] + [m for m in rows if m not in methods]
    shown = ordered + [m for m in methods if m not in rows]
    frame = pd.DataFrame([{**rows.get(m, {})} for m in shown], index=pd.Index(shown, name="method"))
    if columns is not None:
        frame = frame.reindex(columns=columns)
    frame = frame.apply(pd.to_numeric, errors="coerce").astype("float64")
    frame.insert(0, "status", ["ok" if m in rows else MISSING for m in shown])
    return frame


def fusion_table(results: StageResults, dataset: str) -> pd.DataFrame:
    """Mean fusion metrics per method on ``dataset`` (columns in the summary's metric order)."""
    rows = results.fusion_metrics.get(dataset, {})
    columns: list[str] = []
    for values in rows.values():
        columns += [c for c in values if c not in columns]
    return _frame(rows, results.methods, columns)


def task_table(results: StageResults, task: str, dataset: str) -> pd.DataFrame:
    """Headline scores and per-class values (fractions in [0, 1], mean over seeds) per method:
    detection mAP@0.5, mAP@0.5:0.95, AP@0.5 per class; segmentation mIoU, mIoU without
    background, IoU per class."""
    headline, per_class = {"detection": (("mAP50", "mAP50_95"), "AP50"),
                           "segmentation": (("mIoU", "mIoU_no_bg"), "IoU")}[task]
    rows = results.task(task).get(dataset, {})
    classes: list[str] = []
    for row in rows.values():
        classes += [c for c in row[per_class] if c not in classes]
    columns = [*headline, *[f"{per_class} {c}" for c in classes], "seeds"]
    flat = {m: {**{k: r[k] for k in (*headline, "seeds")},
                **{f"{per_class} {c}": r[per_class].get(c) for c in classes}} for m, r in rows.items()}
    return _frame(flat, results.methods, columns)


def efficiency_table(results: StageResults) -> pd.DataFrame:
    """Parameters, GFLOPs per image and seconds per image (one column per dataset) per method, and
    the weights it ran with (``weights``: "file sha256" per file, from the fusion record)."""
    datasets = sorted({d for per in results.efficiency.values() for d in per})
    flat = {}
    for method, per in results.efficiency.items():
        first = next(iter(per.values()))
        row = {"params": first["params"]}
        for d in datasets:
            rec = per.get(d) or {}
            row[f"GFLOPs {d}"] = rec.get("gflops")
            row[f"s/image {d}"] = rec.get("seconds_per_image")
        flat[method] = row
    columns = ["params", *[f"GFLOPs {d}" for d in datasets], *[f"s/image {d}" for d in datasets]]
    frame = _frame(flat, results.methods, columns)
    frame["weights"] = [weights_text(results.efficiency.get(m)) for m in frame.index]
    return frame


def weights_text(per_dataset: dict | None) -> str | None:
    """"file sha256; ..." of a method's weight files (None when it has none on record)."""
    for rec in (per_dataset or {}).values():
        if rec.get("weights"):
            return "; ".join(f"{w.get('file')} {w.get('sha256') or '(missing)'}" for w in rec["weights"])
    return None


def gains_frame(gains: dict) -> pd.DataFrame:
    """Long table: one row per task, dataset and fusion method, with the gains and intervals."""
    records = []
    for task, per_dataset in gains.items():
        for dataset, per_method in per_dataset.items():
            for method, g in per_method.items():
                ci = g.get("ci95") or [None, None]
                ci_ir = g.get("ci95_vs_ir") or [None, None]
                ci_vis = g.get("ci95_vs_vis") or [None, None]
                records.append({"task": task, "dataset": dataset, "method": method,
                                "metric": g["metric"], "value": g["value"], "best_single": g["best_single"],
                                "vs_ir": g["vs_ir"], "vs_ir_ci95_low": ci_ir[0], "vs_ir_ci95_high": ci_ir[1],
                                "vs_vis": g["vs_vis"], "vs_vis_ci95_low": ci_vis[0],
                                "vs_vis_ci95_high": ci_vis[1], "vs_best_single": g["vs_best_single"],
                                "ci95_low": ci[0], "ci95_high": ci[1], "verdict": verdict(g),
                                "note": g.get("ci_note") or "",
                                "n_images": g.get("n_images"), "seeds": g.get("seeds")})
    return pd.DataFrame(records)


def verdict(gain: dict) -> str:
    """Plain words for a gain over the best single modality and its interval."""
    ci = gain.get("ci95")
    if gain.get("vs_best_single") is None:
        return "no single-modality baseline"
    if not ci or ci[0] is None or ci[1] is None or any(isinstance(v, float) and math.isnan(v) for v in ci):
        return "no interval (per-image results missing)"
    if ci[0] > 0:
        return "better than the best single modality"
    if ci[1] < 0:
        return "worse than the best single modality"
    return "no clear difference"


def _format(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNDEFINED
    if spec == "int":
        return f"{int(round(value)):,}"
    if spec == "str":
        return str(value)
    return format(value, spec)


def display(frame: pd.DataFrame, directions: dict[str, str] | None = None, spec: str = ".3f",
            specs: dict[str, str] | None = None, mark: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    """String version of a numeric table: best value per column wrapped in ``mark`` (per the
    column's direction; columns without one are not marked), ``missing`` rows, arrows in headers."""
    directions = directions or {}
    specs = specs or {}
    ok = frame["status"] == "ok"
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns.drop("status"):
        values = frame[column]
        direction = directions.get(column)
        best = None
        valid = values[ok].dropna()
        if direction and len(valid) > 1 and valid.nunique() > 1:
            best = valid.max() if direction == "up" else valid.min()
        cells = []
        for method, value in values.items():
            if not ok[method]:
                cells.append(MISSING)
                continue
            text = _format(value, specs.get(column, spec))
            cells.append(f"{mark[0]}{text}{mark[1]}" if best is not None and value == best else text)
        header = f"{column} {ARROWS[direction]}" if direction in ARROWS else column
        out[header] = cells
    return out
