"""Stage ``report``: the comparison report from every stage's results.

    python -m flows.report [root=<project folder>] [out=<folder>]

Reads ``<root>/results/{metrics,fusion,detection,segmentation}`` (whatever exists: a stage that has
not run is shown as missing, never as zero) and writes ``report.out`` (``results/report/``, see
:mod:`pipeline.report`). One coarse unit: the report takes seconds. The folder is built in a
staging folder and renamed into place when complete (:mod:`flows._staging`), so ``dvc`` never
caches half a report.
"""
from __future__ import annotations

from pathlib import Path

from flows._common import main_entry, run_inline, stage_flow
from flows._staging import stage_key, staged


@stage_flow("report")
def report_flow(params: dict, root: str = ".", out: str | None = None) -> dict:
    from pipeline.report import build_report, report_config

    final = Path(out) if out else Path(root) / report_config(params)["out"]
    with staged([final], stage_key("flows.report", params=params)) as (staging,):
        summary = run_inline("report", "build", build_report, params, root, staging, log=print)
    for task, per_dataset in summary["gains"].items():
        for dataset, per_method in per_dataset.items():
            for method, g in per_method.items():
                print(f"{task}/{dataset}/{method}: {g['metric']} {g['value']:.3f}, vs best single "
                      f"{g['vs_best_single']}, 95 % interval {g['ci95']}")
    print(f"report: {final / 'report.html'}")
    return summary


if __name__ == "__main__":
    main_entry(report_flow)
