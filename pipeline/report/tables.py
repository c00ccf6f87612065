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


def _frame(rows: dict[str, dict], methods: list[str], columns: list[str] | None = None,
           controls: dict[str, str] | None = None) -> pd.DataFrame:
    """Numeric table in ``methods`` order; the ``controls`` (:mod:`pipeline.fusion.controls`) last,
    recorded in ``frame.attrs["controls"]`` so :func:`display` shows them apart and never marks them
    best."""
    controls = controls or {}
    ordered = [m for m in methods if m in rows] + [m for m in rows if m not in methods]
    shown = ordered + [m for m in methods if m not in rows]
    shown = [m for m in shown if m not in controls] + [m for m in shown if m in controls]
    frame = pd.DataFrame([{**rows.get(m, {})} for m in shown], index=pd.Index(shown, name="method"))
    if columns is not None:
        frame = frame.reindex(columns=columns)
    frame = frame.apply(pd.to_numeric, errors="coerce").astype("float64")
    frame.insert(0, "status", ["ok" if m in rows else MISSING for m in shown])
    frame.attrs["controls"] = {m: r for m, r in controls.items() if m in shown}
    return frame


def fusion_table(results: StageResults, dataset: str) -> pd.DataFrame:
    """Mean fusion metrics per method on ``dataset`` (columns in the summary's metric order)."""
    rows = results.fusion_metrics.get(dataset, {})
    columns: list[str] = []
    for values in rows.values():
        columns += [c for c in values if c not in columns]
    return _frame(rows, results.methods, columns, results.controls)


def task_table(results: StageResults, task: str, dataset: str) -> pd.DataFrame:
    """Headline scores and per-class values (fractions in [0, 1], mean over seeds) per method:
    detection mAP@0.5, mAP@0.5:0.95, AP@0.5 per class; segmentation mIoU, mIoU without
    background, IoU per class; the seed spread of the headline metric (``<metric> std``, the
    sample std over seeds, and ``<metric> per seed``, the per-seed values as text)."""
    headline, per_class = {"detection": (("mAP50", "mAP50_95"), "AP50"),
                           "segmentation": (("mIoU", "mIoU_no_bg"), "IoU")}[task]
    rows = results.task(task).get(dataset, {})
    classes: list[str] = []
    for row in rows.values():
        classes += [c for c in row[per_class] if c not in classes]
    main = headline[0]
    columns = [*headline, f"{main} std", *[f"{per_class} {c}" for c in classes], "seeds"]
    flat = {m: {**{k: r[k] for k in (*headline, "seeds")}, f"{main} std": r.get(f"{main}_std"),
                **{f"{per_class} {c}": r[per_class].get(c) for c in classes}} for m, r in rows.items()}
    frame = _frame(flat, results.methods, columns, results.controls)
    frame.insert(4, f"{main} per seed", [per_seed_text(rows.get(m, {}).get(f"{main}_per_seed")) for m in frame.index])
    return frame


def per_seed_text(values) -> str | None:
    """"0.512 / 0.495 / 0.591" (None without per-seed values)."""
    if not values:
        return None
    return " / ".join(UNDEFINED if v is None else f"{v:.3f}" for v in values)


def efficiency_table(results: StageResults) -> pd.DataFrame:
    """Parameters, GFLOPs per image and seconds per image (one column per dataset) per method, and
    the weights it ran with (``weights``: "file sha256" per file, from the fusion record). A
    ``precomputed`` method's images were made elsewhere: its size, compute and speed are unknown
    (empty, shown "n/a", never marked best), not 0 and not the time to read its PNGs."""
    datasets = sorted({d for per in results.efficiency.values() for d in per})
    flat = {}
    for method, per in results.efficiency.items():
        first = next(iter(per.values()))
        unknown = method in results.precomputed
        row = {"params": None if unknown else first["params"]}
        for d in datasets:
            rec = {} if unknown else per.get(d) or {}
            row[f"GFLOPs {d}"] = rec.get("gflops")
            row[f"s/image {d}"] = rec.get("seconds_per_image")
        flat[method] = row
    columns = ["params", *[f"GFLOPs {d}" for d in datasets], *[f"s/image {d}" for d in datasets]]
    frame = _frame(flat, results.methods, columns, results.controls)
    frame["weights"] = [weights_text(results.efficiency.get(m)) for m in frame.index]
    return frame


def weights_text(per_dataset: dict | None) -> str | None:
    """"file sha256; ..." of a method's weight files (None when it has none on record)."""
    for rec in (per_dataset or {}).values():
        if rec.get("weights"):
            return "; ".join(f"{w.get('file')} {w.get('sha256') or '(missing)'}" for w in rec["weights"])
    return None


def gains_frame(gains: dict) -> pd.DataFrame:
    """Long table: one row per task, dataset and fusion method (controls last, ``role``), with the
    gains, intervals (``ci95_*``: the level is ``report.confidence``), verdicts and per-seed values."""
    records = []
    for task, per_dataset in gains.items():
        for dataset, per_method in per_dataset.items():
            ordered = sorted(per_method.items(), key=lambda kv: bool(kv[1].get("control")))  # controls last
            for method, g in ordered:
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
                                "n_images": g.get("n_images"), "seeds": g.get("seeds"),
                                "per_seed": per_seed_text(g.get("per_seed")),
                                "role": f"{g['control']} control" if g.get("control") else "method"})
    return pd.DataFrame(records)


def verdict(gain: dict) -> str:
    """Plain words for a gain over the best single modality (``verdict`` / ``verdict_reason`` set
    by :func:`pipeline.report.sensitivity.apply_verdicts`)."""
    if gain.get("vs_best_single") is None:
        return "no single-modality baseline"
    word, reason = gain.get("verdict"), gain.get("verdict_reason") or ""
    if word in ("better", "worse"):
        return f"{word} than the best single modality"
    if word == "inconclusive":
        return f"inconclusive: {reason}"
    return "no interval (per-image results missing)"


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
    column's direction; columns without one are not marked), ``missing`` rows, arrows in headers.
    Controls (``frame.attrs["controls"]``) are labelled "<name> (<role> control)" and never marked."""
    directions = directions or {}
    specs = specs or {}
    controls = frame.attrs.get("controls") or {}
    ok = frame["status"] == "ok"
    ranked = ok & ~frame.index.isin(list(controls))
    out = pd.DataFrame(index=[f"{m} ({controls[m]} control)" if m in controls else m for m in frame.index])
    out.index.name = frame.index.name
    for column in frame.columns.drop("status"):
        values = frame[column]
        direction = directions.get(column)
        best = None
        valid = pd.to_numeric(values[ranked], errors="coerce").dropna() if direction else values[:0]
        if direction and len(valid) > 1 and valid.nunique() > 1:
            best = valid.max() if direction == "up" else valid.min()
        cells = []
        for method, value in values.items():
            if not ok[method]:
                cells.append(MISSING)
                continue
            text = _format(value, specs.get(column, spec))
            marked = best is not None and value == best and method not in controls
            cells.append(f"{mark[0]}{text}{mark[1]}" if marked else text)
        header = f"{column} {ARROWS[direction]}" if direction in ARROWS else column
        out[header] = cells
    return out
