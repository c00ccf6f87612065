"""Report section "Robustness": downstream scores under perturbations, and the frozen-evaluator check.

Read from disk only (``results/robustness/<method>/``, ``results/frozen/<method>/`` and the
downstream stages' per-image results; layout in :mod:`pipeline.robustness.stage` and
:mod:`pipeline.robustness.frozen`):

* per task, family and level: each method's score (mAP@0.5, mIoU; mean over seeds) with a
  percentile bootstrap interval over the perturbed test images, and its gain over the best single
  modality **at that level** (the better of the ``ir`` / ``vis`` rows on the same perturbed
  images) with a paired interval (:mod:`pipeline.report.bootstrap`). A gain is *significant* when
  its interval lies above 0; for each method and family the table names the first level at which
  it no longer is;
* frozen evaluator vs retrain protocol on clean data: Spearman ρ and Kendall τ between the two
  protocols' scores of the methods (on the same test images), with an interval from a paired
  bootstrap over those images (:mod:`pipeline.report.ranks`).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.report.bootstrap import (Resamples, difference_interval, full_weights, level_text,
                                       map50_statistic, miou_statistic, percentile_interval, resample_weights)
from pipeline.report.gains import HEADLINE, PerImage, per_image_data, records_in
from pipeline.report.load import load_confusions, read_json_file
from pipeline.report.ranks import correlate
from pipeline.report.render import Figure, Table, Text

CLEAN = "clean/0"


def _subset(table, positions):
    return replace(table, **{k: [getattr(table, k)[i] for i in positions] for k in ("tp", "scores", "pred_cls", "gt_cls")})


def detection_groups(records_per_seed: list[list[dict]], group_of=lambda k: k.rsplit("/", 1)[0],
                     name_of=lambda k: k.rsplit("/", 1)[-1]) -> dict[str, PerImage]:
    """``{group: PerImage}`` from per-seed record lists (records named ``<group>/<image>``)."""
    from pipeline.detection.ap import match_records

    groups: dict[str, list[dict[str, dict]]] = {}
    for k, records in enumerate(records_per_seed):
        for r in records:
            groups.setdefault(group_of(r["name"]), [{} for _ in records_per_seed])[k][name_of(r["name"])] = r
    out = {}
    for group, per_seed in groups.items():
        names = sorted(set.intersection(*(set(s) for s in per_seed)))
        tables = [match_records([s[n] for n in names], (0.5,)) for s in per_seed]
        out[group] = PerImage(names, lambda pos, t=tables: map50_statistic([_subset(x, pos) for x in t]))
    return out


def segmentation_groups(names: list[str], matrices: np.ndarray, group_of=lambda k: k.rsplit("/", 1)[0],
                        name_of=lambda k: k.rsplit("/", 1)[-1]) -> dict[str, PerImage]:
    """``{group: PerImage}`` from keys and ``seeds × N × C × C`` confusions."""
    out = {}
    for group in dict.fromkeys(group_of(n) for n in names):
        idx = [i for i, n in enumerate(names) if group_of(n) == group]
        mats = matrices[:, idx]
        out[group] = PerImage([name_of(names[i]) for i in idx], lambda pos, m=mats: miou_statistic(m[:, pos]))
    return out


def load_method(folder: Path) -> dict:
    """One method's robustness results: ``{"summary", "detection": {group: PerImage}, "segmentation": ...}``."""
    summary = read_json_file(folder / "summary.json")
    out = {"summary": summary}
    seeds = summary.get("seeds", {})
    for prefix in ("", "retrain_"):
        if "detection" in seeds and (folder / f"{prefix}detection_seed{seeds['detection'][0]}.json").is_file():
            files = [folder / f"{prefix}detection_seed{s}.json" for s in seeds["detection"]]
            out[f"{prefix}detection"] = detection_groups([records_in(read_json_file(f), f) for f in files])
        if "segmentation" in seeds and (folder / f"{prefix}segmentation_seed{seeds['segmentation'][0]}.npz").is_file():
            loaded = [load_confusions(folder / f"{prefix}segmentation_seed{s}.npz") for s in seeds["segmentation"]]
            out[f"{prefix}segmentation"] = segmentation_groups(loaded[0][0], np.concatenate([m for _, m in loaded]))
    for task in ("detection", "segmentation"):       # retrained levels start from the clean models' level 0
        if f"retrain_{task}" in out and CLEAN in out.get(task, {}):
            out[f"retrain_{task}"] = {CLEAN: out[task][CLEAN], **out[f"retrain_{task}"]}
    return out


def aligned(systems: dict[str, PerImage]) -> tuple[list[str], dict]:
    """Image names common to every system and each system's statistic on them (same order)."""
    names = sorted(set.intersection(*(set(p.names) for p in systems.values())))
    return names, {m: p.make_stat([p.names.index(n) for n in names]) for m, p in systems.items()}


def level_rows(task: str, group: str, systems: dict[str, PerImage], config: dict) -> list[dict]:
    """Score and gain-over-best-single rows of every system at one level."""
    names, stats = aligned(systems)
    draws = Resamples(len(names), int(config["samples"]), int(config["seed"]))   # seeds, then images
    values = {m: draws.values(s) for m, s in stats.items()}
    boot = {m: v[0] for m, v in values.items()}
    full = {m: v[1] for m, v in values.items()}
    singles = [m for m in ("ir", "vis") if m in full]
    best = max(singles, key=lambda m: full[m]) if singles else None
    rows = []
    for method in systems:
        low, high, _ = percentile_interval(boot[method], config["confidence"])
        row = {"task": task, "metric": HEADLINE[task], "group": group, "method": method, "score": full[method],
               "ci_low": low, "ci_high": high, "n_images": len(names), "best_single": best}
        if best and method not in ("ir", "vis"):
            gap = difference_interval(boot[method], boot[best], full[method], full[best], config["confidence"])
            row.update(gain=gap.estimate, gain_ci_low=gap.low, gain_ci_high=gap.high, significant=bool(gap.low > 0))
        rows.append(row)
    return rows


def robustness_frame(data: dict[str, dict], config: dict) -> pd.DataFrame:
    """Rows of every level; ``protocol`` = ``clean-trained`` (default) or ``retrained`` (option)."""
    rows = []
    for key in ("detection", "segmentation", "retrain_detection", "retrain_segmentation"):
        task = key.removeprefix("retrain_")
        methods = [m for m, d in data.items() if key in d]
        groups = list(dict.fromkeys(g for m in methods for g in data[m][key]))
        for group in groups:
            systems = {m: data[m][key][group] for m in methods if group in data[m][key]}
            rows += [{**r, "protocol": "retrained" if key != task else "clean-trained"}
                     for r in level_rows(task, group, systems, config)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["family"] = frame["group"].str.split("/").str[0]
    frame["level"] = frame["group"].str.split("/").str[1].astype(int)
    return frame


def expand_clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Level-0 (clean) rows copied into every family, so each family's curve starts at 0."""
    clean = frame[frame["group"] == CLEAN]
    parts = [frame[frame["group"] != CLEAN]]
    for family in sorted(set(frame["family"]) - {"clean"}):
        parts.append(clean.assign(family=family))
    return pd.concat(parts, ignore_index=True).sort_values(["protocol", "task", "family", "level", "method"],
                                                           kind="stable")


def breakdown(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task, family and fusion method: the first level at which the gain is not significant."""
    rows = []
    fused = frame[frame["gain"].notna()] if "gain" in frame else frame.iloc[0:0]
    for (protocol, task, family, method), part in fused.groupby(["protocol", "task", "family", "method"], sort=False):
        part = part.sort_values("level")
        lost = part[~part["significant"].astype(bool)]
        levels = part["level"].tolist()
        if lost.empty:
            text = f"significant at every level (0-{max(levels)})"
        elif int(lost["level"].iloc[0]) == 0:
            text = ("below the best single modality already on clean data" if part["gain_ci_high"].iloc[0] < 0
                    else "not significant even on clean data")
        else:
            text = f"lost at level {int(lost['level'].iloc[0])}"
        rows.append({"protocol": protocol, "task": task, "family": family, "method": method, "levels": ", ".join(map(str, levels)),
                     "gain_at_top_level": round(float(part["gain"].iloc[-1]), 4), "verdict": text})
    return pd.DataFrame(rows)


def curves_figure(frame: pd.DataFrame, task: str, labels: dict, protocol: str = "clean-trained",
                  level: str = "95 %") -> bytes:
    """Top row: score vs level per family (intervals as error bars; ir/vis dashed); bottom row:
    gain over the best single modality with its interval, zero line."""
    from pipeline.report.figures import _encode, _pyplot

    plt = _pyplot()
    part = frame[(frame["task"] == task) & (frame["protocol"] == protocol)]
    families = sorted(set(part["family"]))
    fig, axes = plt.subplots(2, len(families), figsize=(4.2 * len(families), 6.4), dpi=100, squeeze=False)
    methods = list(dict.fromkeys(part["method"]))
    colours = plt.get_cmap("tab10")
    for col, family in enumerate(families):
        rows = part[part["family"] == family]
        for k, method in enumerate(methods):
            r = rows[rows["method"] == method].sort_values("level")
            if r.empty:
                continue
            style = {"linestyle": "--", "color": "black" if method == "ir" else "grey"} if method in ("ir", "vis") \
                else {"color": colours(k % 10)}
            err = np.vstack([r["score"] - r["ci_low"], r["ci_high"] - r["score"]]).clip(0)
            axes[0, col].errorbar(r["level"] + 0.03 * k, r["score"], yerr=err, marker="o", capsize=2, label=method,
                                  **style)
            if "gain" in r and r["gain"].notna().any():
                gerr = np.vstack([r["gain"] - r["gain_ci_low"], r["gain_ci_high"] - r["gain"]]).clip(0)
                axes[1, col].errorbar(r["level"] + 0.03 * k, r["gain"], yerr=gerr, marker="o", capsize=2, **style)
        axes[0, col].set_title(family, fontsize=10)
        axes[1, col].axhline(0, color="#222", linewidth=0.8)
        levels = sorted(set(rows["level"]))
        for row in (0, 1):
            axes[row, col].set_xticks(levels)
            axes[row, col].grid(alpha=0.3)
        axes[1, col].set_xlabel("perturbation level (0 = clean)")
    metric = HEADLINE[task]
    axes[0, 0].set_ylabel(f"{metric}")
    axes[1, 0].set_ylabel(f"gain in {metric} over best single")
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"{task}: {metric} under perturbations, {protocol} models (bars: {level} bootstrap intervals)")
    fig.tight_layout()
    return _encode(fig, "png")


def frozen_comparison(root: Path, data_methods: list[str], datasets: dict, config: dict) -> dict:
    """Per task: both protocols' scores per method on common test images, and their rank correlation."""
    out = {}
    for task in ("detection", "segmentation"):
        retrain, frozen = {}, {}
        for method in data_methods:
            folder = root / "results" / "frozen" / method
            own = per_image_data(task, root / "results" / task / datasets.get(task, "") / method)
            if own is None:
                continue
            if task == "detection" and (folder / "detection.json").is_file():
                records = records_in(read_json_file(folder / "detection.json"), folder / "detection.json")
                frozen[method] = detection_groups([records], lambda _: "all", lambda k: k)["all"]
            elif task == "segmentation" and (folder / "segmentation.npz").is_file():
                names, mats = load_confusions(folder / "segmentation.npz")
                frozen[method] = segmentation_groups(names, mats, lambda _: "all", lambda k: k)["all"]
            else:
                continue
            retrain[method] = own
        if len(frozen) < 3:
            continue
        systems = {**{("retrain", m): p for m, p in retrain.items()}, **{("frozen", m): p for m, p in frozen.items()}}
        names, stats = aligned(systems)
        weights = resample_weights(len(names), int(config["samples"]), int(config["seed"]))
        boot = {k: s(weights) for k, s in stats.items()}
        full = {k: float(s(full_weights(len(names)))[0]) for k, s in stats.items()}
        methods = list(frozen)
        x = [full[("retrain", m)] for m in methods]
        y = [full[("frozen", m)] for m in methods]
        resamples = ((np.array([boot[("retrain", m)][b] for m in methods]), np.array([boot[("frozen", m)][b] for m in methods]))
                     for b in range(len(weights)))
        corr = correlate((x, y), resamples, len(names), config["confidence"])
        table = pd.DataFrame({"retrain": x, "frozen": y}, index=pd.Index(methods, name="method"))
        table["rank_retrain"] = table["retrain"].rank(ascending=False, method="min").astype(int)
        table["rank_frozen"] = table["frozen"].rank(ascending=False, method="min").astype(int)
        out[task] = {"table": table, "correlation": corr.as_dict(), "n_images": len(names)}
    return out


def _agree_text(task: str, result: dict, level: str = "95 %") -> str:
    c = result["correlation"]
    lo, hi = c["spearman_ci95"]
    if not np.isfinite(c["spearman"]):
        return f"- {task}: the rank correlation is undefined (a protocol gives every method the same score)."
    verdict = ("the frozen evaluator ranks the methods like the retrain protocol" if lo > 0.5 else
               "the two protocols rank the methods differently: the frozen evaluator cannot stand in"
               if hi < 0.5 else "the data cannot tell whether the frozen evaluator ranks the methods alike")
    return (f"- {task}: Spearman ρ = {c['spearman']:+.2f} ({level} interval {lo:+.2f} to {hi:+.2f}), Kendall τ = "
            f"{c['kendall']:+.2f}, {len(result['table'])} methods, {result['n_images']} test images: {verdict}.")


def robustness_blocks(root: Path, methods: list[str], datasets: dict, config: dict, out: Path | None = None) -> tuple[list, dict]:
    """The section's blocks (and a summary dict); writes ``robustness_*.csv`` / ``frozen_*.csv`` into ``out``."""
    from pipeline.results import write_csv

    base = Path(root) / "results" / "robustness"
    data = {m: load_method(base / m) for m in methods if (base / m / "summary.json").is_file()}
    blocks: list = []
    summary: dict = {}
    if not data:
        blocks.append(Text("The robustness stage has not run: no results under results/robustness (missing)."))
    else:
        frame = expand_clean(robustness_frame(data, config))
        labels = next(iter(data.values()))["summary"].get("labels", {})
        lost = breakdown(frame)
        cost = pd.DataFrame([{"method": m, "task": t, **{k: v for k, v in c.items() if k != "note"}}
                             for m, d in data.items() for t, c in d["summary"].get("cost", {}).items()])
        blocks.append(Text(
            "Each method's detector and segmenter, trained on its **clean** fused images, applied unchanged to "
            "its fusion of perturbed test pairs (labels in the visible frame; misregistration moves the infrared "
            "image). Level 0 is the clean test image; intervals are " + level_text(config["confidence"]) + " percentile bootstrap intervals over the "
            "perturbed test images; the gain is over the better single modality *at the same level*, significant "
            f"when its paired interval lies above 0. {len(data)} methods; "
            f"{int(frame['n_images'].max())} images per level."))
        blocks.append(Text("Levels: " + "; ".join(f"{f} {k}: {lab}" for f, per in labels.items()
                                                    for k, lab in per.items() if str(k) != "0")))
        for protocol in ("clean-trained", "retrained"):
            for task in ("detection", "segmentation"):
                if ((frame["task"] == task) & (frame["protocol"] == protocol)).any():
                    suffix = "" if protocol == "clean-trained" else "_retrained"
                    blocks.append(Figure(f"robustness_{task}{suffix}.png", f"{task}: score and gain vs perturbation "
                                         f"level ({protocol} models)",
                                         curves_figure(frame, task, labels, protocol, level_text(config["confidence"]))))
        if not lost.empty:
            blocks.append(Table("Where each method's gain over the best single modality stops being significant",
                                lost.set_index("method").astype(str), raw=True))
        if not cost.empty:
            blocks.append(Table("Extra cost per perturbation level (fusion + inference only, CPU seconds; no "
                                "retraining)", cost.set_index("method").round(3).astype(str), raw=True))
        if out is not None:
            write_csv(Path(out) / "robustness_levels.csv", frame)
            write_csv(Path(out) / "robustness_significance.csv", lost)
            write_csv(Path(out) / "robustness_cost.csv", cost)
        summary["significance"] = lost.to_dict(orient="records")
    comparison = frozen_comparison(Path(root), methods, datasets, config)
    blocks.append(Text("**Frozen evaluator vs retraining per method (clean data).** One detector and one segmenter "
                       "trained once on the source images (infrared and visible mixed) score every method's fused "
                       "test images; the retrain protocol trains one per method. Do they rank the methods alike?"))
    if not comparison:
        blocks.append(Text("Not available: the frozen evaluator or the per-method results are missing (needs at "
                           "least 3 methods)."))
    for task, result in comparison.items():
        blocks.append(Text(_agree_text(task, result, level_text(config["confidence"]))))
        blocks.append(Table(f"{task}: {HEADLINE[task]} under both protocols (same test images)",
                            result["table"].round(3).astype(str), raw=True))
        if out is not None:
            write_csv(Path(out) / f"frozen_vs_retrain_{task}.csv", result["table"].reset_index())
        summary[f"frozen_vs_retrain_{task}"] = result["correlation"]
    return blocks, summary
