"""Building the comparison report: load every stage's results, compute gains, write all outputs.

Outputs in ``report.out`` (default ``results/report``):

* ``summary.json`` — DVC metrics file (structure in :func:`build_summary`);
* ``gains.csv`` — the gain table (one row per task, dataset and fusion method), a DVC plot;
* ``fusion_metrics_<dataset>.csv``, ``detection_<dataset>.csv``, ``segmentation_<dataset>.csv``,
  ``efficiency.csv`` — every table of the report, numbers only (missing rows have empty cells and
  ``status=missing``);
* ``report.md`` (+ ``figures/``) and the self-contained ``report.html``.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pandas as pd
import yaml

from pipeline.config import checked, section
from pipeline.imageio import write_bytes, write_text
from pipeline.report import tables as T
from pipeline.report.bootstrap import level_text
from pipeline.report.examples import dataset_examples
from pipeline.report.figures import gain_chart
from pipeline.report.gains import HEADLINE, BootstrapConfig, compute_gains_and_check
from pipeline.report.load import StageResults, configured_datasets, load_results
from pipeline.report.render import Figure, Section, Table, Text, to_html, to_markdown
from pipeline.report.studies import STUDY_KEYS, study_sections
from pipeline.report.prior import TITLE as PRIOR_TITLE, prior_blocks
from pipeline.report.training import flagged, training_blocks, training_summaries
from pipeline.results import versions, write_csv, write_json

#: The keys of ``params.yaml`` ``report`` (all required there; no defaults in the code).
KEYS = ("out", "bootstrap_samples", "confidence", "seed", "min_seeds", "example_scenes", "score_threshold",
        "panel_width", "fused_dir")
UNITS = ("AP and IoU values are fractions in [0, 1] (0.746 means 74.6 %); gains are differences of "
         "those fractions (+0.010 = one point).")
TASK_DIRECTIONS = {"mAP50": "up", "mAP50_95": "up", "AP50": "up", "precision": "up", "recall": "up",
                   "mIoU": "up", "mIoU_no_bg": "up", "IoU": "up", "pixel_accuracy": "up",
                   "params": "down", "gflops": "down", "seconds_per_image": "down",
                   "vs_ir": "up", "vs_vis": "up", "vs_best_single": "up"}
TITLE = "FuseBench report: does image fusion help detection and segmentation?"


def report_config(params: dict) -> dict:
    """``params.report``: every key of :data:`KEYS`, an unknown or missing one is a ConfigError."""
    return checked(section(params, "report"), "report", KEYS, optional=STUDY_KEYS)


def level(config: dict) -> str:
    """The configured interval level as text (:func:`.bootstrap.level_text`)."""
    return level_text(config["confidence"])


def bootstrap_config(config: dict) -> BootstrapConfig:
    return BootstrapConfig(int(config["bootstrap_samples"]), int(config["seed"]), float(config["confidence"]),
                           int(config["min_seeds"]))


def _task_summary(rows: dict[str, dict], keys: tuple[str, ...]) -> dict:
    return {m: {k: r.get(k) for k in keys if k in r} for m, r in rows.items()}


def _splits(results: StageResults) -> dict:
    """The split each stage recorded in its provenance, summarised as image counts per split."""
    out: dict = {}
    conflicts = set()
    for key, block in results.provenance.items():
        split = block.get("split") if isinstance(block, dict) else None
        if split is None:
            continue
        if isinstance(split, dict):
            split = split.get("images_per_split", split)   # the metrics stage records counts
        splits = split.get("splits", split) if isinstance(split, dict) else split
        if isinstance(splits, dict) and all(isinstance(v, list) for v in splits.values()):
            summary = {k: len(v) for k, v in splits.items()}
            if isinstance(split, dict) and "split_source" in split:
                summary["source"] = split["split_source"]
        else:
            summary = splits
        where = "/".join(key.split("/")[:2])               # stage/dataset; methods must agree
        if out.setdefault(where, summary) != summary:
            conflicts.add(where)
    for where in conflicts:
        out[where] = "WARNING: the methods of this stage recorded different splits; the rows are not comparable"
    return out


def _efficiency_summary(results: StageResults, params: dict) -> dict:
    order = configured_datasets(params)
    out = {}
    for method, per in results.efficiency.items():
        dataset = next((d for d in order if d in per), sorted(per)[0])
        out[method] = {**{k: per[dataset][k] for k in ("params", "gflops", "seconds_per_image")},
                       "weights": per[dataset].get("weights"), "dataset": dataset, "per_dataset": per}
    return out


def build_summary(results: StageResults, gains: dict, params: dict, config: dict,
                  sensitivity: dict | None = None) -> dict:
    """``summary.json``: sensitivity (the controls' check, :mod:`.sensitivity`), fusion_metrics,
    detection, segmentation, efficiency, gains, params, versions (plus units, directions, missing,
    splits, bootstrap settings, controls, methods on disk but not configured)."""
    return {
        "sensitivity": sensitivity or {},
        "controls": results.controls,
        "not_configured": results.ignored,
        "units": UNITS,
        "directions": {**results.directions, **TASK_DIRECTIONS},
        "fusion_metrics": results.fusion_metrics,
        "detection": {d: _task_summary(rows, ("mAP50", "mAP50_95", "AP50", "seeds", "precision", "recall",
                                              "mAP50_std", "mAP50_per_seed", "n_test_images"))
                      for d, rows in results.detection.items()},
        "segmentation": {d: _task_summary(rows, ("mIoU", "mIoU_no_bg", "IoU", "seeds", "pixel_accuracy",
                                                 "mIoU_std", "mIoU_per_seed", "n_test_images"))
                         for d, rows in results.segmentation.items()},
        "efficiency": _efficiency_summary(results, params),
        "gains": gains,
        "bootstrap": {"samples": int(config["bootstrap_samples"]), "seed": int(config["seed"]),
                      "confidence": float(config["confidence"]), "min_seeds": int(config["min_seeds"]),
                      "method": "two-level paired percentile bootstrap: training seeds, then test images "
                      "(docs/verdicts.md); ci95 is the interval of vs_best_single at `confidence`"},
        "missing": results.missing,
        "splits": _splits(results),
        "params": params,
        "versions": versions(),
    }


def _missing_text(what: str, state) -> str | None:
    if state == "not run":
        return f"{what} was not run: there are no results for it yet, so it is shown as missing."
    return None


def _headline(gains: dict, config: dict) -> list[str]:
    """One line per task and dataset: the fusion method(s) with the largest gain over the best
    single modality (controls are never ranked), with the interval and its plain-words verdict."""
    lines = []
    for task, per_dataset in gains.items():
        for dataset, per_method in per_dataset.items():
            ranked = [(g["vs_best_single"], m) for m, g in per_method.items()
                      if g["vs_best_single"] is not None and not g.get("control")]
            if not ranked:
                continue
            gain, method = max(ranked)
            tied = sorted(m for value, m in ranked if value == gain)
            g = per_method[tied[0]]
            who = (f"best fusion method `{method}`" if len(tied) == 1 else
                   "best fusion methods (tied) " + ", ".join(f"`{m}`" for m in tied))
            ci = g.get("ci95")
            interval = (f" ({level(config)} interval {ci[0]:+.3f} to {ci[1]:+.3f})"
                        if ci and None not in ci else "")
            lines.append(f"- {task} on {dataset} ({g['metric']}): {who} with {g['value']:.3f}, "
                         f"{gain:+.3f} over the best single modality (`{g['best_single']}`){interval}: "
                         f"{T.verdict(g)}.")
    return lines


def _sensitivity_lines(check: dict) -> list[str]:
    """The sensitivity check first (:mod:`.sensitivity`): its status and each control's result."""
    if not check:
        return []
    lines = [f"- **Sensitivity check {check['status']}**: {check['message']}"]
    for c in check.get("checks", []):
        gain = c.get("vs_best_single")
        ci = c.get("interval") or [None, None]
        numbers = (f" {gain:+.3f} ({ci[0]:+.3f} to {ci[1]:+.3f})" if gain is not None and None not in ci else "")
        lines.append(f"  - {c['role']} control `{c['control']}` on {c['task']}/{c['dataset']}:{numbers} -> "
                     f"{c['verdict']} ({c['reason']}); expected {c['expected']}: "
                     f"{'ok' if c['passed'] else 'NOT MET'}.")
    return lines


def _degenerate(results: StageResults) -> list[str]:
    """Warnings for tasks whose rows are all zero (the models learned nothing to compare)."""
    lines = []
    for task, metric in HEADLINE.items():
        for dataset, rows in results.task(task).items():
            values = [r.get(metric) for r in rows.values()]
            if len(values) > 1 and all(v == 0 for v in values):
                lines.append(f"- WARNING: every {task} result on {dataset} has {metric} = 0: the models did "
                             "not learn, so these rows cannot tell the methods apart (check the settings).")
    return lines


def _gain_sections(gains: dict, gain_table, config: dict) -> list:
    blocks: list = [Text("Each fusion method's detection and segmentation result minus the result of "
                         "the same detector / segmenter trained on infrared only, on visible only, and on "
                         f"the better of the two. The interval is a {level(config)} two-level paired "
                         "bootstrap interval over training seeds and test images (docs/verdicts.md): a "
                         "verdict says better/worse only when it excludes 0 and both rows have at least "
                         f"{config['min_seeds']} seeds; otherwise it is inconclusive, with the reason. "
                         "Controls are listed last and never ranked. " + UNITS)]
    if gain_table.empty:
        return blocks + [Text("No gains yet: they need detection or segmentation results for the fusion "
                              "methods and for both single-modality rows.")]
    columns = ["task", "dataset", "role", "value", "seeds", "per_seed", "vs_ir", "vs_vis", "best_single",
               "vs_best_single", "ci95_low", "ci95_high", "verdict"] + (
                   ["note"] if gain_table["note"].astype(bool).any() else [])
    shown = gain_table.set_index("method")[columns].rename(columns={
        "ci95_low": f"{level(config)} low", "ci95_high": f"{level(config)} high", "per_seed": "per seed"})
    shown = shown.assign(seeds=shown["seeds"].map(lambda v: "n/a" if v != v or v is None else f"{int(v)}"),
                         **{"per seed": shown["per seed"].fillna("n/a")})
    shown = shown.assign(value=shown["value"].map("{:.3f}".format),
                         **{c: shown[c].map(lambda v: "n/a" if v != v or v is None else f"{v:+.3f}")
                            for c in ("vs_ir", "vs_vis", "vs_best_single", f"{level(config)} low",
                                      f"{level(config)} high")})
    blocks.append(Table("Gains of each fusion method (headline metric)", shown, raw=True))
    for task, per_dataset in gains.items():
        for dataset in per_dataset:
            rows = gain_table[(gain_table["task"] == task) & (gain_table["dataset"] == dataset)]
            if len(rows):
                blocks.append(Figure(f"gains_{task}_{dataset}.png",
                                     f"Gains in {task} on {dataset} with {level(config)} intervals",
                                     gain_chart(rows, f"{task} on {dataset}: gain in {rows['metric'].iloc[0]}",
                                                level(config))))
    return blocks


def build_sections(results: StageResults, summary: dict, params: dict, config: dict,
                   frames: dict[str, tuple[str, object, dict, dict]], gain_table) -> list[Section]:
    """All report sections, in reading order; ``summary`` from :func:`build_summary` (its gains,
    splits and versions), ``gain_table`` = :func:`tables.gains_frame` of its gains."""
    gains, splits = summary["gains"], summary["splits"]
    head = _sensitivity_lines(summary.get("sensitivity") or {}) + _headline(gains, config) + _degenerate(results) + flagged(training_summaries(results.root, results.methods)) + [
        f"- {where}: {text}" for where, text in splits.items()
        if isinstance(text, str) and text.startswith("WARNING")]
    if results.ignored:
        head.append("- Not reported (results on disk, but not in fusion.methods): "
                    + ", ".join(f"`{m}`" for m in results.ignored) + ".")
    sections = [Section("In short", [Text("\n".join(head) if head else
                                          "No downstream gains are available yet (see below for what is missing)."),
                                     Text(UNITS + " ↑ means higher is better, ↓ lower is better; the best value "
                                          "in each column is in bold. `missing` means the stage has not "
                                          "produced that result (it is never shown as zero).")]),
                Section("How much does fusion help the downstream tasks?", _gain_sections(gains, gain_table, config))]
    for task, what in (("detection", "Object detection: average precision per class"),
                       ("segmentation", "Semantic segmentation: IoU per class")):
        blocks: list = []
        note = _missing_text(task.capitalize(), results.missing.get(task))
        if note:
            blocks.append(Text(note))
        for key, (caption, frame, directions, specs) in frames.items():
            if key.startswith(f"{task}_"):
                blocks.append(Table(caption, frame, directions, specs=specs))
        sections.append(Section(what, blocks))
    blocks = [Text(_missing_text("Fusion-metric scoring", results.missing.get("fusion_metrics")) or
                   "Scores of the fused images themselves (no downstream task): mean over the images "
                   "the metrics stage scored (counts per split at the end). Arrows give each metric's "
                   "direction.")]
    blocks += [Table(c, f, d, specs=s) for k, (c, f, d, s) in frames.items() if k.startswith("fusion_metrics_")]
    sections.append(Section("How good do the fused images look? (fusion metrics)", blocks))
    blocks = [Text(_missing_text("Fusion timing", results.missing.get("efficiency")) or
                   "Model size, compute and measured speed of each fusion method (0 GFLOPs for methods "
                   "that are not networks; n/a for precomputed methods, whose images were made elsewhere). "
                   "Times were measured on this machine and may be noisy.")]
    if "efficiency" in frames:
        caption, frame, directions, specs = frames["efficiency"]
        blocks.append(Table(caption, frame, directions, specs=specs))
    sections.append(Section("How big and how fast is each method?", blocks))
    trained = training_summaries(results.root, results.methods)
    sections.append(Section("How were the trained methods trained?", training_blocks(trained)))
    sections.append(Section(PRIOR_TITLE, prior_blocks(results.root, params, results.methods)))
    sections.append(Section("What the images look like", _example_blocks(results, params, config)))
    sections.append(Section("How these numbers were produced",
                            _provenance_blocks(splits, summary["versions"], params, config)))
    return sections


def _example_blocks(results: StageResults, params: dict, config: dict) -> list:
    blocks: list = []
    datasets = list(dict.fromkeys([*configured_datasets(params), *results.fusion_metrics]))
    for dataset in datasets:
        found = dataset_examples(params, results, dataset, config)
        if not found["figures"]:
            blocks.append(Text(f"{dataset}: no example scenes ({found['note']})."))
            continue
        blocks.append(Text(f"{dataset}: test scenes " + ", ".join(f"`{s}`" for s in found["scenes"]) + "."))
        blocks += [Figure(f"examples_{dataset}_{key}.jpg", caption, data) for key, caption, data in found["figures"]]
    return blocks or [Text("No datasets are configured.")]


def _counts(value) -> str:
    return ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)


def _provenance_blocks(splits: dict, package_versions: dict, params: dict, config: dict) -> list:
    split_text = ("\n".join(f"- {key}: {_counts(value)}" for key, value in splits.items()) if splits
                  else "- the stages recorded no split in their results")
    version_frame = pd.DataFrame({"version": package_versions}).rename_axis("package")
    return [Text(f"Profile `{params.get('profile', 'n/a')}`. Bootstrap: {config['bootstrap_samples']} two-level "
                 f"paired resamples (training seeds, then test images), seed {config['seed']}, {level(config)} "
                 f"percentile intervals; a verdict needs >= {config['min_seeds']} seeds (docs/verdicts.md)."),
            Text("Splits used by the stages (images per split):"), Text(split_text),
            Text("Parameters (params.yaml, active profile resolved):"),
            Text("```\n" + yaml.safe_dump(params, sort_keys=False, allow_unicode=True) + "```"),
            Table("Software versions", version_frame, raw=True)]


def _frames(results: StageResults, params: dict) -> dict[str, tuple[str, object, dict, dict]]:
    frames = {}
    up = lambda f: {c: "up" for c in f.columns  # noqa: E731
                    if c not in ("status", "seeds") and not c.endswith((" std", " per seed"))}
    for dataset in sorted(set(results.fusion_metrics) | set(configured_datasets(params))):
        if dataset in results.fusion_metrics:
            frame = T.fusion_table(results, dataset)
            frames[f"fusion_metrics_{dataset}"] = (f"Fusion metrics on {dataset}", frame, results.directions,
                                                   {c: ".4g" for c in frame.columns})
    for task in ("detection", "segmentation"):
        for dataset in sorted(results.task(task)):
            frame = T.task_table(results, task, dataset)
            caption = (f"Detection on {dataset}: AP@0.5 per class, mAP@0.5 and mAP@0.5:0.95 (mean over seeds)"
                       if task == "detection" else
                       f"Segmentation on {dataset}: IoU per class, mIoU with and without background (mean over seeds)")
            caption += "; seed spread: std over seeds and the per-seed values"
            frames[f"{task}_{dataset}"] = (caption, frame, up(frame),
                                           {"seeds": "int", **{c: "str" for c in frame.columns if c.endswith(" per seed")}})
    if results.efficiency:
        frame = T.efficiency_table(results)
        frames["efficiency"] = ("Size, compute and speed of each fusion method, and its weights "
                                "(file, sha256)", frame,
                                {c: "down" for c in frame.columns if c not in ("status", "weights")},
                                {"params": "int", **{c: ".4g" for c in frame.columns if c != "params"},
                                 "weights": "str"})
    return frames


def _write_csvs(out: Path, frames: dict, gain_table) -> list[Path]:
    written = []
    for key, (_, frame, _, _) in frames.items():
        written.append(write_csv(out / f"{key}.csv", frame))
    gain_table = gain_table.copy()                   # x axis of the DVC plot: one label per row
    gain_table.insert(0, "system", [f"{t}/{d}/{m}" for t, d, m in
                                    zip(gain_table.get("task", []), gain_table.get("dataset", []),
                                        gain_table.get("method", []))])
    if "vs_best_single" in gain_table:               # last column = DVC's default plot y
        gain_table = gain_table[[c for c in gain_table if c != "vs_best_single"] + ["vs_best_single"]]
    written.append(write_csv(out / "gains.csv", gain_table))
    for stale in out.glob("*.csv"):                   # tables of datasets that no longer exist
        if stale not in written:
            stale.unlink()
    return written


def build_report(params: dict | None = None, root: str | Path = ".", out: str | Path | None = None,
                 log: Callable[[str], None] = lambda _: None) -> dict:
    """Build every report output from the stage results under ``root`` and return the summary.

    ``params``: resolved params (``pipeline.config.load_params``); ``out`` defaults to
    ``<root>/<report.out>``; ``log`` receives progress lines.
    """
    params = params or {}
    config = report_config(params)
    root = Path(root)
    out = Path(out) if out is not None else root / config["out"]
    log(f"loading stage results under {root / 'results'}")
    results = load_results(root, params)
    log(f"bootstrapping gains ({config['bootstrap_samples']} resamples)")
    required = [task for task in HEADLINE if configured_datasets(params, task)]   # both tasks, normally
    gains, sensitivity = compute_gains_and_check(results, bootstrap_config(config), progress=log,
                                                 roles=results.controls, required=required)
    frames = _frames(results, params)
    gain_table = T.gains_frame(gains)
    _write_csvs(out, frames, gain_table)
    summary = build_summary(results, gains, params, config, sensitivity)
    log("drawing figures and writing report.md / report.html")
    sections = build_sections(results, summary, params, config, frames, gain_table)
    studies, summary["studies"] = study_sections(root, [m for m in results.methods if m not in results.controls],
                                                 params, config, out)                   # issue 17
    sections[-1:-1] = studies                                  # before "How these numbers were produced"
    figures_dir = out / "figures"
    if figures_dir.is_dir():
        shutil.rmtree(figures_dir)
    for sec in sections:
        for block in sec.blocks:
            if isinstance(block, Figure):
                write_bytes(figures_dir / block.name, block.data)
    write_text(out / "report.md", to_markdown(TITLE, sections))
    write_text(out / "report.html", to_html(TITLE, sections))
    write_json(out / "summary.json", summary)
    return summary
