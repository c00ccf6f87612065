"""Stage ``robustness``: every method's clean-trained downstream models on its fusion of the
perturbed test pairs, and the frozen evaluator on every method's clean test images.

    python -m flows.robustness [method=<name>]

ONE process for all methods (torch, ultralytics and the fusion registry are imported once: the
demo budget), one inline unit per method and protocol (:func:`pipeline.robustness.stage.run_method`,
:func:`pipeline.robustness.frozen.apply_frozen`). Per-method outputs are fingerprinted and kept
(persistent DVC outputs), so adding a method computes only that method. Outputs:
``results/robustness/<method>/``, ``results/frozen/<method>/``.
"""
from __future__ import annotations

from pathlib import Path

from flows._common import main_entry, run_inline, stage_flow


@stage_flow("robustness")
def robustness_flow(params: dict, method: str | None = None) -> dict:
    from pipeline.robustness.evaluate import inference_threads
    from pipeline.robustness.frozen import apply_frozen
    from pipeline.robustness.stage import make_context, methods, remove_stale, run_method

    ctx = make_context(params)
    names = [method] if method else methods(params, ctx.settings)
    out = {}
    with inference_threads(ctx.settings["threads"]):
        for name in names:
            out[name] = run_inline("robustness", f"{name}:perturbed", run_method, ctx, name, print)["cost"]
            run_inline("robustness", f"{name}:frozen", apply_frozen, ctx, name, print)
    if not method:
        remove_stale(Path(ctx.settings["out"]), names)
        remove_stale(Path(ctx.settings["frozen_out"]), names)
    return out


if __name__ == "__main__":
    main_entry(robustness_flow)
