"""The report's two study sections (FuseBench issue 17), added by one hook in :mod:`.build`:

* "How robust is the downstream gain? (perturbations, frozen evaluator)" -- :mod:`.robustness`;
* "Do fusion metrics predict downstream value?" -- :mod:`.predict`.

Settings (``report``): ``robustness_samples`` (bootstrap resamples for these sections; default
``bootstrap_samples``), ``most_used_metric`` (default ``EN``), ``seed``, ``confidence``.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.report.load import configured_datasets
from pipeline.report.render import Section

STUDY_KEYS = ("robustness_samples", "most_used_metric")     # optional keys of the report section


def study_sections(root: Path, methods: list[str], params: dict, config: dict, out: Path | None) -> tuple[list, dict]:
    """Both sections and their summary block (``summary.json["studies"]``); CSVs into ``out``."""
    from pipeline.report.predict import predict_blocks
    from pipeline.report.robustness import robustness_blocks

    cfg = {"samples": int(config.get("robustness_samples") or config["bootstrap_samples"]), "seed": int(config["seed"]),
           "confidence": float(config["confidence"]), "most_used_metric": config.get("most_used_metric", "EN")}
    datasets = {task: next(iter(configured_datasets(params, task)), default)
                for task, default in (("detection", "m3fd"), ("segmentation", "msrs"))}
    robust, robust_summary = robustness_blocks(Path(root), methods, datasets, cfg, out)
    predict, predict_summary = predict_blocks(Path(root), methods, datasets, cfg, out)
    return ([Section("How robust is the downstream gain? (perturbations, frozen evaluator)", robust),
             Section("Do fusion metrics predict downstream value?", predict)],
            {"robustness": robust_summary, "metrics_vs_downstream": predict_summary})
