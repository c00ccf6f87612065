"""Stage ``demo_data``: generate the procedural demo scenes (``params.yaml`` ``demo_data``).

    python -m flows.demo_data

One coarse unit (:func:`pipeline.demo_data.generate` already spreads the pairs over threads and
builds the folder beside ``demo_data.out`` before swapping it in, so a failure leaves no partial
data). Writes ``data/demo/{M3FD,MSRS}`` and the flow-run summary ``results/flow_runs/demo_data.json``.
"""
from __future__ import annotations

from flows._common import main_entry, run_inline, stage_flow
from pipeline.config import section


@stage_flow("demo_data")
def demo_data_flow(params: dict) -> dict:
    from pipeline.demo_data import DemoConfig, generate

    config = section(params, "demo_data", {}) or {}
    manifest = run_inline("demo_data", "generate", generate, config.get("out", "data/demo"),
                          DemoConfig.from_params(config))
    return manifest


if __name__ == "__main__":
    main_entry(demo_data_flow)
