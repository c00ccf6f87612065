"""Where the training stages write (one rule, shared with the fusion methods' ``weights: trained``).

* ``models/trained/<method>.pth`` — the final checkpoint of ``train@<method>`` (what ``fuse@<method>``
  loads); MLFuse's keeps the official layout ``{"epoch", "model"}``;
* ``models/checkpoints/<method>/epoch_NNNN.pth`` — resume checkpoints (a DVC ``persist`` output);
* ``results/training/<method>/`` — ``losses.csv``, ``summary.json``, ``previews/``.
"""
from __future__ import annotations

from pathlib import Path

TRAINED_ROOT = Path("models") / "trained"
CHECKPOINT_ROOT = Path("models") / "checkpoints"
RESULTS_ROOT = Path("results") / "training"


def trained_weights(method: str) -> Path:
    """``models/trained/<method>.pth``."""
    return TRAINED_ROOT / f"{method}.pth"


def checkpoint_dir(method: str) -> Path:
    """``models/checkpoints/<method>``."""
    return CHECKPOINT_ROOT / method


def results_dir(method: str) -> Path:
    """``results/training/<method>``."""
    return RESULTS_ROOT / method
