"""The metrics stage as library functions (the Prefect flow ``flows/metrics.py`` wraps these).

For one dataset × fusion method: every (ir, vis, fused) triple is scored with every metric of the
convention, in parallel over images (a thread pool: NumPy, OpenCV and the compiled numba kernels
release the GIL, and each image then runs its kernels single-threaded, so the pool uses the cores
without oversubscription and without fork/spawn pitfalls), and written atomically to

* ``<out_dir>/<method>/<dataset>.csv`` — one row per image: ``name, split, <metric columns>``;
* ``<out_dir>/<method>/summary.json`` — ``{"convention", "directions", "datasets": {dataset:
  {metric: {"mean", "std", "n"}}}, "provenance"}``; other datasets already in the file are kept
  when their convention matches.

Fused images may be colour (``data/fused`` stores RGB when the visible image is colour): every image
is converted to grey **once**, with the convention's grey rule (:mod:`pipeline.metrics.inputs`).
Statistics: ``std`` is the population standard deviation (ddof 0) over images; values that are not
finite (e.g. PSNR = inf for a fused image identical to both sources, MS_SSIM NaN for images under
44 pixels) are left out of mean/std and ``n`` counts the finite ones.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.metrics.registry import compute_triple, metric_directions, resolve_names


@dataclass(frozen=True)
class TripleJob:
    """One image to score: its name and split, and the three files."""

    name: str
    split: str
    ir: Path
    vis: Path
    fused: Path


def triples_for_dataset(samples: Iterable, fused_dir: str | Path) -> list[TripleJob]:
    """Jobs for dataset samples (``pipeline.datasets.Sample``: name, split, ir, vis) whose fused
    images are found in ``fused_dir`` by :func:`pipeline.fused.fused_images` (the one rule; a missing
    image raises :class:`DataError` naming the folder and the names)."""
    from pipeline.fused import fused_images

    samples = list(samples)
    found = fused_images(samples, fused_dir)
    return [TripleJob(s.name, s.split, Path(s.ir), Path(s.vis), found[s.name]) for s in samples]



def _as_job(item) -> TripleJob:
    if isinstance(item, TripleJob):
        return item
    name, split, ir, vis, fused = item
    return TripleJob(str(name), str(split), Path(ir), Path(vis), Path(fused))


def score_job(job: TripleJob, convention: str, names: Sequence[str], parallel: bool = True) -> dict:
    """Row ``{name, split, metric: value...}`` of one triple (files read and converted once)."""
    from pipeline.metrics.inputs import load_triple

    triple = load_triple(job.ir, job.vis, job.fused, convention)
    triple.parallel = parallel
    return {"name": job.name, "split": job.split, **compute_triple(triple, names)}


def evaluate_triples(triples: Iterable, convention: str = "matlab", only=None, workers: int | None = None,
                     progress: bool = True):
    """Score every triple; returns a pandas DataFrame (``name, split, metrics...``) sorted by name,
    with ``frame.attrs["convention"]`` set.

    ``triples``: :class:`TripleJob` or ``(name, split, ir_path, vis_path, fused_path)`` tuples.
    ``workers``: threads over images (default: CPU count; 1 = one image at a time, each using
    numba's threads).
    """
    import pandas as pd
    from tqdm import tqdm

    jobs = [_as_job(t) for t in triples]
    names = resolve_names(only, convention)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    bar = tqdm(total=len(jobs), desc=f"metrics ({convention})", unit="img", disable=not progress)
    rows = []
    if workers == 1:
        for job in jobs:
            rows.append(score_job(job, convention, names))
            bar.update()
    else:
        import cv2

        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # the pool is the parallelism
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for row in pool.map(lambda job: score_job(job, convention, names, parallel=False), jobs):
                    rows.append(row)
                    bar.update()
        finally:
            cv2.setNumThreads(threads)
    bar.close()
    frame = pd.DataFrame(rows, columns=["name", "split", *names])
    frame = frame.sort_values("name", kind="stable").reset_index(drop=True)
    frame.attrs["convention"] = convention
    return frame


def summarise(frame, metrics: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """``{metric: {"mean", "std", "n"}}`` over the finite values (std with ddof 0; NaN when n = 0)."""
    import numpy as np

    metrics = [c for c in frame.columns if c not in ("name", "split")] if metrics is None else metrics
    out = {}
    for metric in metrics:
        values = frame[metric].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        n = int(finite.size)
        out[metric] = {"mean": float(finite.mean()) if n else math.nan,
                       "std": float(finite.std()) if n else math.nan, "n": n}
    return out


def write_metric_results(frame, out_dir: str | Path, dataset: str, method: str, convention: str | None = None,
                         params: dict | None = None, split: dict | None = None) -> tuple[Path, Path]:
    """Write ``<out_dir>/<method>/<dataset>.csv`` and merge ``dataset`` into ``summary.json``.

    Returns (csv path, summary path). ``convention`` defaults to ``frame.attrs["convention"]`` (set by
    :func:`evaluate_triples`), else ``matlab``. A summary written with another convention is
    replaced, not mixed. ``params``/``split`` go into the provenance block.
    """
    convention = convention or frame.attrs.get("convention", "matlab")
    from pipeline.results import provenance, read_json, write_csv, write_json

    method_dir = Path(out_dir) / method
    csv_path = write_csv(method_dir / f"{dataset}.csv", frame)
    summary_path = method_dir / "summary.json"
    metrics = [c for c in frame.columns if c not in ("name", "split")]
    directions = metric_directions(convention)
    summary = {"convention": convention, "directions": {}, "datasets": {}, "provenance": {}}
    if summary_path.is_file():
        try:
            old = read_json(summary_path)
        except ValueError:
            old = {}
        if old.get("convention") == convention:
            summary.update({k: old.get(k, summary[k]) for k in ("directions", "datasets", "provenance")})
    summary["directions"].update({m: directions[m] for m in metrics})
    summary["datasets"][dataset] = summarise(frame, metrics)
    block = provenance(params, split, method=method, convention=convention, images=int(len(frame)))
    summary["provenance"] = {**summary.get("provenance", {}), dataset: block}
    write_json(summary_path, summary)
    return csv_path, summary_path
