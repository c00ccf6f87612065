"""Stage ``detect``: ultralytics YOLO trained and tested on one fusion method's images (mAP@0.5).

``python -m flows.detect method=<name>`` runs one method (what each DVC ``foreach`` stage calls,
so changing one method's fused images re-runs only that method); without ``method=`` every
method of :func:`pipeline.detection.stage.detection_methods` (``ir``, ``vis`` and every
``fusion.methods`` entry) runs in turn. Work units: ``prepare`` (load the dataset, check the
method's images, build its YOLO dataset), one Prefect task per seed (train + test, see
:func:`pipeline.detection.stage.run_seed`) and ``aggregate`` (``metrics.json``: mean/std over
seeds). Two trainings must not share a process at the same time (ultralytics keeps process-wide
state: logger, torch threads, deterministic mode), so seeds either run one after the other or, with
``detection.parallel_seeds`` > 1 (``auto`` on the CPU), side by side in forked workers with one
torch thread each, in one unit ``<method>:seeds`` (:mod:`pipeline.seedpool`).
Outputs: see :mod:`pipeline.detection.stage`; flow-run summary
``results/flow_runs/detect_<method>.json``.
"""
from __future__ import annotations

import functools

from flows._common import method_entry, run_method_seeds, stage_flow


@stage_flow("detect")
def detect_flow(params: dict, method: str | None = None) -> dict:
    from pipeline.detection.stage import detection_methods, prepare_method, run_seed, run_seeds, write_method_metrics
    from pipeline.results import read_json

    methods = [method] if method else detection_methods(params)
    results = {}
    for name in methods:
        seeds, path = run_method_seeds(
            "detect", name, functools.partial(prepare_method, params, name),
            lambda prepared: prepared.settings["seeds"], run_seed,
            lambda prepared, seeds, seed_results: write_method_metrics(prepared, seed_results), pool=run_seeds)
        results[name] = read_json(path)
        print(f"detect {name}: mAP50 {results[name]['mAP50']:.4f} (seeds {seeds})")
    return results


def main(argv: list[str] | None = None) -> None:
    from pipeline.seedpool import start_zygote

    start_zygote()   # before Prefect starts threads: the seed workers are forked from it
    method_entry(detect_flow, argv)


if __name__ == "__main__":
    main()
