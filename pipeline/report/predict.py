"""Report section "Do fusion metrics predict downstream value?" -- from results on disk only.

Points are (fusion method, seed) pairs: ``x`` = a fusion metric of the method's fused images (mean
over the scored images of the task's dataset: m3fd for detection, msrs for segmentation), ``y`` =
the downstream score of that seed's model (mAP@0.5 / mIoU, per-seed values of the stages'
``metrics.json``). The single-modality rows ``ir`` / ``vis`` are left out: the question is which
*fusion* is worth more downstream. Spearman ρ and Kendall τ-b (:mod:`pipeline.report.ranks`) with
a percentile bootstrap over **methods** (a resample draws methods with replacement and keeps all
their seeds, so seeds never count as independent methods); ``n_methods`` is what each value rests on.

Conventions: the metrics stage scores one convention (``metrics.convention``) on every test image
(``results/metrics/<method>/summary.json``); the robustness stage scores the other one on a subset
of test images (``results/robustness/<method>/fusion_metrics_other.json``, ``robustness.other_metrics_images``).
Both are correlated when present; the table says which convention and how many images each rests on.
A metric's sign is its raw correlation (a "lower is better" metric that predicts well shows ρ < 0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.report.bootstrap import level_text
from pipeline.report.gains import HEADLINE
from pipeline.report.load import read_json_file
from pipeline.report.ranks import MIN_UNITS, by_units
from pipeline.report.render import Figure, Table, Text

REFERENCE = ("ir", "vis")


def metric_tables(root: Path, methods: list[str], dataset: str) -> dict[str, dict]:
    """``{convention: {"values": {method: {metric: mean}}, "images": text, "directions": {...}}}``."""
    out: dict[str, dict] = {}
    for method in methods:
        main = root / "results" / "metrics" / method / "summary.json"
        other = root / "results" / "robustness" / method / "fusion_metrics_other.json"
        for path, scope in ((main, "every scored image"), (other, None)):
            if not path.is_file():
                continue
            obj = read_json_file(path)
            per = (obj.get("datasets") or {}).get(dataset)
            if not per:
                continue
            conv = obj.get("convention", "unknown")
            block = out.setdefault(conv, {"values": {}, "images": scope or f"{obj.get('images')} test images",
                                          "directions": obj.get("directions", {})})
            block["values"][method] = {m: (v.get("mean") if isinstance(v, dict) else v) for m, v in per.items()}
    return out


def downstream_points(root: Path, task: str, dataset: str, methods: list[str]) -> dict[str, dict[str, float]]:
    """``{method: {seed: score}}`` from the task stage's ``metrics.json`` (``per_seed``)."""
    metric = HEADLINE[task]
    out = {}
    for method in methods:
        path = root / "results" / task / dataset / method / "metrics.json"
        if not path.is_file():
            continue
        obj = read_json_file(path)
        per_seed = obj.get("per_seed") or {}
        values = {str(s): v.get(metric) for s, v in per_seed.items() if isinstance(v, dict) and v.get(metric) is not None}
        if not values and obj.get(metric) is not None:
            values = {"mean": obj[metric]}
        if values:
            out[method] = {s: float(v) for s, v in values.items()}
    return out


def correlation_frame(tables: dict, points: dict, task: str, config: dict) -> pd.DataFrame:
    rows = []
    for conv, block in tables.items():
        metrics = sorted({m for v in block["values"].values() for m in v})
        for metric in metrics:
            x, y, units = [], [], []
            for method, seeds in points.items():
                value = block["values"].get(method, {}).get(metric)
                if method in REFERENCE or value is None or not np.isfinite(float(value)):
                    continue
                for score in seeds.values():
                    x.append(float(value)), y.append(score), units.append(method)
            if len(set(units)) < 3:
                continue
            corr = by_units(x, y, units, int(config["samples"]), int(config["seed"]), float(config["confidence"]))
            rows.append({"task": task, "score": HEADLINE[task], "convention": conv, "metric": metric,
                         "direction": block["directions"].get(metric, ""), "spearman": corr.spearman,
                         "spearman_ci_low": corr.spearman_ci[0], "spearman_ci_high": corr.spearman_ci[1],
                         "kendall": corr.kendall, "kendall_ci_low": corr.kendall_ci[0],
                         "kendall_ci_high": corr.kendall_ci[1], "n_methods": corr.n_units, "n_points": corr.n,
                         "metric_images": block["images"]})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values("spearman", key=lambda s: -s.abs().fillna(-1), kind="stable").reset_index(drop=True)
    return frame


def _pick(frame: pd.DataFrame, most_used: str) -> list[pd.Series]:
    strongest = frame.dropna(subset=["spearman"])
    picks = [strongest.iloc[0]] if len(strongest) else []
    used = frame[frame["metric"] == most_used]
    if len(used) and (not picks or used.iloc[0]["metric"] != picks[0]["metric"]
                      or used.iloc[0]["convention"] != picks[0]["convention"]):
        picks.append(used.iloc[0])
    return picks


def scatter_figure(task: str, picks: list[pd.Series], tables: dict, points: dict, most_used: str) -> bytes:
    from pipeline.report.figures import _encode, _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(picks), figsize=(4.8 * len(picks), 4.0), dpi=100, squeeze=False)
    for ax, row in zip(axes[0], picks):
        values = tables[row["convention"]]["values"]
        for method, seeds in points.items():
            if method in REFERENCE or row["metric"] not in values.get(method, {}):
                continue
            x = values[method][row["metric"]]
            ax.scatter([x] * len(seeds), list(seeds.values()), s=28)
            ax.annotate(method, (x, float(np.mean(list(seeds.values())))), fontsize=8, xytext=(4, 2),
                        textcoords="offset points")
        kind = "most-used" if row["metric"] == most_used else "strongest"
        ax.set_title(f"{kind}: {row['metric']} ({row['convention']}), ρ = {row['spearman']:+.2f}", fontsize=10)
        ax.set_xlabel(f"{row['metric']} of the fused images")
        ax.set_ylabel(f"{HEADLINE[task]} (one point per seed)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{task}: fusion metric vs downstream score")
    fig.tight_layout()
    return _encode(fig, "png")


def sentence(task: str, dataset: str, frame: pd.DataFrame, most_used: str, level: str = "95 %") -> str:
    ranked = frame if frame.empty else frame.dropna(subset=["spearman"])
    if ranked.empty:   # no method rows, or every correlation undefined (e.g. constant scores)
        return f"- {task}: not enough fusion methods with both metrics and {HEADLINE[task]} (needs 3)."
    top = ranked.iloc[0]
    n = int(top["n_methods"])
    clear = frame[(frame["spearman_ci_low"] > 0) | (frame["spearman_ci_high"] < 0)]
    used = frame[frame["metric"] == most_used]
    def interval(row) -> str:
        lo, hi = row["spearman_ci_low"], row["spearman_ci_high"]
        return f"{level} interval {lo:+.2f} to {hi:+.2f}" if np.isfinite(lo) else "no interval"

    used_text = (f"; the most-used metric {most_used} has ρ = {used.iloc[0]['spearman']:+.2f} "
                 f"({interval(used.iloc[0])})" if len(used) else "")
    head = (f"- {task} on {dataset} ({n} fusion methods): the metric that tracks {HEADLINE[task]} best is "
            f"{top['metric']} ({top['convention']}, ρ = {top['spearman']:+.2f}, {interval(top)}){used_text}. ")
    if n < MIN_UNITS:
        return head + (f"With only {n} fusion methods no interval is computed (needs {MIN_UNITS}): these "
                       "correlations describe the demo's methods, they are no evidence that a metric predicts "
                       "downstream value.")
    if clear.empty:
        return head + ("No metric's interval excludes 0: with this many methods, no fusion metric can be said to "
                       "predict the downstream value.")
    return head + (f"{len(clear)} of {len(frame)} metric/convention pairs have an interval that excludes 0; a "
                   "high fusion score is evidence of downstream value only for those.")


def predict_blocks(root: Path, methods: list[str], datasets: dict, config: dict, out: Path | None = None) -> tuple[list, dict]:
    """The section's blocks and summary; writes ``metrics_vs_downstream.csv`` into ``out``."""
    from pipeline.results import write_csv

    most_used = config.get("most_used_metric", "EN")
    blocks: list = [Text("Across fusion methods (every seed a point; `ir`/`vis` left out), the rank correlation "
                         f"between each fusion metric and each downstream score, with {level_text(config['confidence'])} "
                         "intervals from a "
                         f"bootstrap over methods. Most-used metric: {most_used} (reported by nearly every "
                         "infrared-visible fusion paper). Computed from results on disk (no retraining).")]
    frames, sentences = [], []
    for task in ("detection", "segmentation"):
        dataset = datasets.get(task)
        if not dataset:
            continue
        tables = metric_tables(Path(root), methods, dataset)
        points = downstream_points(Path(root), task, dataset, methods)
        frame = correlation_frame(tables, points, task, config)
        sentences.append(sentence(task, dataset, frame, most_used, level_text(config["confidence"])))
        if frame.empty:
            continue
        frames.append(frame)
        picks = _pick(frame, most_used)
        if picks:
            blocks.append(Figure(f"metrics_vs_{task}.png", f"{task}: strongest and most-used fusion metric vs "
                                 f"{HEADLINE[task]}", scatter_figure(task, picks, tables, points, most_used)))
    blocks.insert(1, Text("\n".join(sentences)))
    summary: dict = {}
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        shown = frame[["task", "convention", "metric", "direction", "spearman", "spearman_ci_low", "spearman_ci_high",
                       "kendall", "kendall_ci_low", "kendall_ci_high", "n_methods", "n_points", "metric_images"]]
        blocks.append(Table("Rank correlation of each fusion metric with the downstream score (sorted by |ρ|)",
                            shown.set_index("metric").round(3).astype(str), raw=True))
        if out is not None:
            write_csv(Path(out) / "metrics_vs_downstream.csv", frame)
        summary = {"sentences": sentences, "strongest": {t: f.iloc[0][["metric", "convention", "spearman"]].to_dict()
                                                         for t, f in zip([f["task"].iloc[0] for f in frames], frames)}}
    return blocks, summary
