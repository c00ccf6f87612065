"""Stage ``inputs``: content manifests of the active profile's data roots.

    python -m flows.inputs

Writes ``results/inputs/{datasets,training}.json`` (:mod:`pipeline.inputs`); DVC runs it on
every ``dvc repro`` (``always_changed``) and the stages that read data depend on these files, so
editing the real data of the ``full`` profile re-runs what reads it.
"""
from __future__ import annotations

from flows._common import main_entry, run_inline, stage_flow


@stage_flow("inputs", prefect=False)  # cheap, runs on every repro: no Prefect server
def inputs_flow(params: dict, out: str = "results/inputs") -> dict:
    from pipeline.inputs import write_manifests

    manifests = run_inline("inputs", "manifests", write_manifests, params, out)
    print(f"inputs: {len(manifests['datasets.json'])} datasets, {len(manifests['training.json'])} inline training sets")
    return manifests


if __name__ == "__main__":
    main_entry(inputs_flow)
