"""Stage ``train_diffif``: train Diff-IF on the prior stage's Fusion_K targets with the generic trainer.

    python -m flows.train_diffif

Settings: ``params.yaml`` ``diffif.train`` (trainer keys + the recipe's, :mod:`pipeline.training.methods.diffif`;
``full`` = the released recipe, ``demo`` = the labelled ``diffif_lite`` variant). Its own stage, not a
``train@<method>`` item: it reads ``data/prior``, which is built from the ``train@`` outputs, so it
cannot share their dependency list. Outputs: ``models/diffif/trained.pth`` (what ``weights: trained``
of ``diffif_lite`` loads), resume checkpoints in ``models/checkpoints/diffif`` (persist), and
``results/training/diffif/`` (losses.csv, summary.json, previews).
"""
from __future__ import annotations

from pathlib import Path

from flows._common import main_entry, run_inline, stage_flow

RESULTS = Path("results") / "training" / "diffif"
CHECKPOINTS = Path("models") / "checkpoints" / "diffif"


@stage_flow("train_diffif")
def train_diffif_flow(params: dict) -> str:
    from pipeline.fusion.diffif import TRAINED
    from pipeline.training.trainer import train_from_params

    final = run_inline("train_diffif", "diffif", train_from_params, params, "diffif", resume=True,
                       progress=True, out=TRAINED, results_dir=RESULTS, config_key="diffif.train",
                       ckpt_dir=CHECKPOINTS)
    print(f"diffif weights: {final}")
    return str(final)


if __name__ == "__main__":
    main_entry(train_diffif_flow)
