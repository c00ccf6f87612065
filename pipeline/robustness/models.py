"""The one place that finds and loads the downstream models the robustness study re-uses.

Nothing here trains: the detection and segmentation stages wrote the models, this module only
locates them (layout of :mod:`pipeline.detection.stage` and :mod:`pipeline.segmentation.run`) and
loads them with their own public loaders, strictly and with ``weights_only=True``:

* detector of ``method``, seed ``k``:  ``<detection.models_root>/<dataset>/<method>/seed_<k>/weights/best_state.pt``
  (:func:`pipeline.detection.yolo.load_weights_only` is what :func:`pipeline.detection.yolo.evaluate` calls);
* segmenter of ``method``, seed ``k``: ``<segmentation.models_root>/<dataset>/<method>/seed_<k>/model.pth``
  (``{"model": state_dict, "model_config", "n_classes", ...}`` of :mod:`pipeline.segmentation.train`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from pipeline.errors import DataError

DETECTION_WEIGHTS = "best_state.pt"


def detector_path(det_settings: Mapping, dataset: str, method: str, seed: int) -> Path:
    return Path(det_settings["models_root"]) / dataset / method / f"seed_{seed}" / "weights" / DETECTION_WEIGHTS


def segmenter_path(seg_cfg: Mapping, dataset: str, method: str, seed: int) -> Path:
    return Path(seg_cfg["models_root"]) / dataset / method / f"seed_{seed}" / "model.pth"


def require(path: Path, what: str) -> Path:
    if not Path(path).is_file():
        raise DataError(f"{what} not found: run its training stage first (the robustness study never "
                        "retrains by default)", path)
    return Path(path)


def load_segmenter(path: Path, device: str = "cpu"):
    """The DeepLabV3+ saved by :func:`pipeline.segmentation.train.train_seed` (``model.pth``), in eval mode."""
    from pipeline.imageio import load_torch
    from pipeline.segmentation.model import build_model

    try:
        state = load_torch(require(path, "segmentation model"), "segmentation model")
        model = build_model(state["model_config"], int(state["n_classes"]))
        model.load_state_dict(state["model"], strict=True)
    except DataError:
        raise
    except Exception as err:  # key / shape errors: a bad file, named
        raise DataError(f"not a segmentation checkpoint written by this pipeline: {err}", path) from err
    return model.to(device).eval()
