"""Stage ``metrics@<method>``: fusion-quality metrics of one method's fused images.

    python -m flows.metrics method=<name>

For every fused dataset (``fusion.datasets``, default ``m3fd`` and ``msrs``) the (ir, vis, fused)
triples are split into batches of ``orchestration.batch_size`` images, one Prefect task per batch
(retried once) on the configured task runner (threads, or Dask workers across machines); each
batch is scored in its task's process by :func:`pipeline.metrics.stage.evaluate_triples`. The
``metrics`` params section gives ``convention`` (``matlab`` default, or ``cddfuse``), ``only``
(metric names, default all) and ``splits`` (dataset splits to score, default all).

Outputs (:mod:`pipeline.metrics.stage` layout, built in a staging folder and renamed into place
when every batch succeeded): ``results/metrics/<method>/<dataset>.csv`` and ``summary.json``.
Finished batches are kept in the staging folder, so a re-run after a failure scores only the rest.
A failing batch does not stop the others; the flow then fails listing every failed batch.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from flows._batches import batch_size, batches
from flows._common import main_entry, run_units, stage_flow
from flows._fused import fused_datasets, fused_root
from flows._staging import stage_key, staged
from pipeline.config import checked, section
from pipeline.fused import fused_folder
from pipeline.errors import ConfigError

OUT_ROOT = Path("results/metrics")


def metrics_config(params: dict) -> dict:
    """The ``metrics`` section, every key required and no other (see :func:`pipeline.config.checked`)."""
    config = checked(section(params, "metrics"), "metrics", ("convention", "only", "splits"))
    only, splits = config["only"], config["splits"]
    return {"convention": config["convention"],
            "only": ",".join(only) if isinstance(only, (list, tuple)) else only,
            "splits": list(splits) if splits else None}


def scored_samples(params: dict, dataset: str) -> list:
    """The samples of ``dataset`` in ``metrics.splits`` (all when unset)."""
    from pipeline.datasets import load_configured

    data = load_configured(params, dataset)
    splits = metrics_config(params)["splits"]
    return data.split(*splits) if splits else list(data.samples)


def score_batch(jobs: list, convention: str, only, done_file: str | None = None):
    """Scores of a batch of triples as a DataFrame (scored in this process); with ``done_file``
    the frame is also saved there (exact float round trip) and reused when already present."""
    import pandas as pd

    from pipeline.metrics.stage import evaluate_triples

    if done_file and Path(done_file).is_file():
        return pd.read_csv(done_file, dtype={"name": str, "split": str})
    frame = evaluate_triples(jobs, convention, only, workers=1, progress=False)
    if done_file:
        from pipeline.results import write_csv

        write_csv(done_file, frame)
    return frame


def score_method(params: dict, method: str, out_root: Path, scored: dict[str, list]) -> dict:
    """Score ``method`` on every fused dataset's samples ``scored`` (``{dataset: samples}``, from
    :func:`scored_samples`), writing into ``out_root/<method>/``; returns ``{dataset: DataFrame}``."""
    import pandas as pd

    from pipeline.metrics.stage import triples_for_dataset, write_metric_results

    cfg = metrics_config(params)
    frames = {}
    batch_dir = out_root / method / ".batches"
    for dataset, samples in scored.items():
        if not samples:
            raise ConfigError(f"dataset {dataset!r} has no images in metrics.splits {cfg['splits']}", "params.yaml")
        jobs = triples_for_dataset(samples, fused_folder(fused_root(params), dataset, method))
        units = [(f"{dataset}:{start}", (batch, cfg["convention"], cfg["only"],
                                          str(batch_dir / f"{dataset}-{start:06d}.csv")))
                 for start, batch in batches(jobs, batch_size(params))]
        report = run_units(f"metrics:{method}", score_batch, units)
        report.raise_if_failed()
        frame = pd.concat([report.values[unit] for unit, _ in units], ignore_index=True)
        frame = frame.sort_values("name", kind="stable").reset_index(drop=True)
        splits = frame["split"].value_counts().sort_index().to_dict()
        write_metric_results(frame, out_root, dataset, method, cfg["convention"],
                             {"metrics": cfg, "datasets": params.get("datasets"), "profile": params.get("profile")},
                             {"images_per_split": {k: int(v) for k, v in splits.items()}})
        frames[dataset] = frame
    shutil.rmtree(batch_dir, ignore_errors=True)
    return frames


@stage_flow("metrics")
def metrics_flow(params: dict, method: str) -> dict:
    from pipeline.fingerprint import file_digest, samples_digest
    from pipeline.metrics.stage import triples_for_dataset

    scored = {ds: scored_samples(params, ds) for ds in fused_datasets(params)}
    inputs = {ds: samples_digest(samples) for ds, samples in scored.items()}
    fused = {ds: [(job.name, file_digest(job.fused))
                  for job in triples_for_dataset(samples, fused_folder(fused_root(params), ds, method))]
             for ds, samples in scored.items()}   # the bytes of every fused image scored
    key = stage_key("flows.metrics", method=method, metrics=metrics_config(params), inputs=inputs, fused=fused)
    with staged([OUT_ROOT / method], key) as (staging,):
        frames = score_method(params, method, staging.parent, scored)
    return {ds: len(frame) for ds, frame in frames.items()}


if __name__ == "__main__":
    main_entry(metrics_flow)
