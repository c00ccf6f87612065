"""Stage ``frozen``: the frozen evaluator's detector and segmenter, trained once on the source images.

    python -m flows.frozen

Two coarse units run one after the other (ultralytics keeps process-wide state):
:func:`pipeline.robustness.frozen.train_detector` and :func:`~pipeline.robustness.frozen.train_segmenter`.
Output ``frozen.models`` (``models/frozen``); both resume (fingerprinted marker / checkpoint), so the
folder is persistent. The models are applied to every method by the ``robustness`` stage.
"""
from __future__ import annotations

from flows._common import main_entry, run_inline, stage_flow


@stage_flow("frozen")
def frozen_flow(params: dict) -> dict:
    from pipeline.robustness.frozen import frozen_settings, train_detector, train_segmenter

    settings = frozen_settings(params)
    out = {"detection": str(run_inline("frozen", "detector", train_detector, params, settings, print)),
           "segmentation": str(run_inline("frozen", "segmenter", train_segmenter, params, settings, print))}
    print(f"frozen evaluator: {out}")
    return out


if __name__ == "__main__":
    main_entry(frozen_flow)
