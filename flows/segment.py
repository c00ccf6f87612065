"""Stage ``segment``: DeepLabV3+ trained and tested on one fusion method's images (per-class IoU).

``python -m flows.segment method=<name> [dataset=msrs]`` runs one method (what each DVC ``foreach``
stage calls); without ``method=`` every method of :func:`pipeline.segmentation.run.method_names`
(``ir``, ``vis`` and every ``fusion.methods`` entry) runs in turn. Work units: ``prepare`` (load the
dataset and fused images, check every label), one Prefect task per seed (train + test, see
:func:`pipeline.segmentation.run.run_seed`) and ``aggregate`` (mean/std over seeds). With
``segmentation.parallel_seeds`` > 1 (``auto`` on the CPU) one unit ``<method>:seeds`` runs the seeds
side by side in forked workers, one torch thread each (:mod:`pipeline.seedpool`). Otherwise the seed
units run one after the other: each seeds torch's process-wide generator (initial weights, dropout), so
two seeds training at once in one process would draw from each other's generator and neither
would be reproducible. Only on CUDA with the ``dask`` task runner (single-threaded worker
processes, one per GPU) are they submitted together. Outputs: see
:mod:`pipeline.segmentation.run`; flow-run summary ``results/flow_runs/segment_<method>.json``.
"""
from __future__ import annotations

import functools

from flows._common import method_entry, run_method_seeds, stage_flow


@stage_flow("segment")
def segment_flow(params: dict, method: str | None = None, dataset: str | None = None) -> dict:
    from pipeline.segmentation.run import aggregate, method_names, prepare, run_seed, run_seeds

    methods = [method] if method else method_names(params)
    results = {}
    for name in methods:
        seeds, results[name] = run_method_seeds(
            "segment", name, functools.partial(prepare, params, name, dataset),
            lambda job: job.cfg["seeds"], run_seed,
            lambda job, seeds, _seed_results: aggregate(job, seeds),
            seed_args=lambda k: (k == 0,), together=functools.partial(_seeds_together, params),
            pool=lambda job, seeds: run_seeds(job, seeds))
        print(f"segment {name}: mIoU {results[name]['mIoU']:.4f} (seeds {seeds})")
    return results


def _seeds_together(params: dict, job) -> bool:
    """Seeds may train at once only in separate processes (Dask workers) on a GPU."""
    runner = (params.get("orchestration") or {}).get("task_runner", "thread")
    return job.device != "cpu" and runner == "dask"


def main(argv: list[str] | None = None) -> None:
    from pipeline.seedpool import start_zygote

    start_zygote()   # before Prefect starts threads: the seed workers are forked from it
    method_entry(segment_flow, argv)


if __name__ == "__main__":
    main()
