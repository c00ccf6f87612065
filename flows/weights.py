"""Stage ``weights``: one weights record per fusion method (``models/weights/<method>.json``).

    python -m flows.weights

Each ``fuse@<method>`` depends on its own record (:mod:`pipeline.fusion.weights_index`: the files the
method loads and their content digests) instead of the whole ``models/trained`` folder, so retraining one
method re-runs only that method's fuse@, metrics@, detect@ and segment@ stages: the other records
are rewritten byte-identical and DVC skips their stages. Cheap (hashes a few small files).
"""
from __future__ import annotations

from flows._common import main_entry, run_inline, stage_flow
from pipeline.config import section


@stage_flow("weights", prefect=False)  # cheap, runs on every repro: no Prefect server
def weights_flow(params: dict) -> list[str]:
    from pipeline.fusion.weights_index import write_index

    from pipeline.hermetic import state_dir

    written = run_inline("weights", "index", write_index, section(params, "fusion.methods") or {},
                         memo=state_dir() / "weights_index.json")
    print(f"weights records: {len(written)} methods")
    return [str(p) for p in written]


if __name__ == "__main__":
    main_entry(weights_flow)
