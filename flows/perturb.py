"""Stage ``perturb``: every selected perturbation family and level of the test split, written once.

    python -m flows.perturb

One coarse unit (:func:`pipeline.perturb.stage.run_perturb`: NumPy/OpenCV only, seconds). The
folder ``perturb.out`` (``data/perturbed``) is built in a staging folder and renamed into place
when complete (:mod:`flows._staging`), so DVC never caches half of it.
"""
from __future__ import annotations

from pathlib import Path

from flows._common import main_entry, run_inline, stage_flow
from flows._staging import stage_key, staged
from pipeline.config import section


@stage_flow("perturb")
def perturb_flow(params: dict) -> dict:
    from pipeline.perturb.stage import perturb_settings, run_perturb

    final = Path(perturb_settings(params)["out"])
    key = stage_key("flows.perturb", perturb=section(params, "perturb"), datasets=section(params, "datasets"))
    with staged([final], key) as (staging,):
        index = run_inline("perturb", "write", run_perturb, params, staging, log=print)
    return {"levels": index["families"]}


if __name__ == "__main__":
    main_entry(perturb_flow)
