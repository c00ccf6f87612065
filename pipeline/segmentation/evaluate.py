"""Full-resolution evaluation on the test split and prediction overlays.

Each test image is segmented whole, at its native size: the normalised image is padded at the
bottom/right by reflection to a multiple of ``pad_multiple`` (16: DeepLabV3+ with output stride 16
needs it), the logits are cropped back to ``H×W`` and the arg-max is compared with the label. No
resizing, no multi-scale or flip testing. One confusion matrix per image is kept (``N×C×C``) so the
report can bootstrap over test images; the test-set matrix is their sum.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pipeline.imageio import write_image
from pipeline.segmentation.data import SegItem, pad_to_multiple, read_item, to_tensor
from pipeline.segmentation.metrics import confusion_matrix

#: Overlay colours per class id (RGB); the MSRS order: unlabelled, car, person, bike, curve,
#: car_stop, guardrail, color_cone, bump. Ids beyond the table cycle through it.
PALETTE = np.array([[0, 0, 0], [64, 0, 128], [64, 64, 0], [0, 128, 192], [0, 0, 192],
                    [128, 128, 0], [64, 64, 128], [192, 128, 128], [192, 64, 0]], dtype=np.uint8)


def predict(model, image: np.ndarray, mean: Sequence[float], std: Sequence[float], device: str,
            pad_multiple: int = 16) -> np.ndarray:
    """Class-id map ``H×W uint8`` of one ``H×W×3`` uint8 image at full resolution."""
    import torch

    x, (h, w) = pad_to_multiple(to_tensor(image, mean, std)[None].to(device), pad_multiple)
    with torch.no_grad():
        logits = model(x)[..., :h, :w]
    return logits.argmax(1)[0].to("cpu").numpy().astype(np.uint8)


def colorize(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """RGB picture of a class-id map (ignore pixels white)."""
    out = PALETTE[label.astype(np.int64) % len(PALETTE)]
    out[label == ignore_index] = 255
    return out


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.5, ignore_index: int = 255) -> np.ndarray:
    """Blend ``alpha`` of the class colours over the image; background (id 0) and ignore pixels
    keep the image."""
    colour = colorize(label, ignore_index).astype(np.float32)
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * colour
    keep = (label == 0) | (label == ignore_index)
    mixed[keep] = image[keep]
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def overlay_panel(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """``[image | ground truth over image | prediction over image]`` side by side (RGB)."""
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([image, gap, overlay(image, truth, ignore_index=ignore_index), gap,
                           overlay(image, pred, ignore_index=ignore_index)], axis=1)


def evaluate_items(model, items: Sequence[SegItem], n_classes: int, cfg: Mapping, device: str,
                   overlay_dir: str | Path | None = None, n_overlays: int = 0, ignore_index: int = 255,
                   progress: bool = True, desc: str = "evaluate", arrays: Sequence | None = None) -> np.ndarray:
    """Per-image confusion matrices ``N×C×C`` (int64, order of ``items``) of the model on ``items``.

    The first ``n_overlays`` items also get ``<overlay_dir>/<name>.png`` (:func:`overlay_panel`);
    ``arrays``: the items' decoded ``(image, label)`` pairs when already read."""
    from tqdm.auto import tqdm

    model.eval()
    tcfg, ecfg = cfg["train"], cfg["eval"]
    out = np.zeros((len(items), n_classes, n_classes), dtype=np.int64)
    for i, item in enumerate(tqdm(items, desc=desc, disable=not progress, leave=False)):
        image, label = arrays[i] if arrays is not None else read_item(item, n_classes, ignore_index)
        pred = predict(model, image, tcfg["mean"], tcfg["std"], device, int(ecfg["pad_multiple"]))
        out[i] = confusion_matrix(pred, label, n_classes, ignore_index)
        if overlay_dir is not None and i < n_overlays:
            write_image(Path(overlay_dir) / f"{item.name}.png", overlay_panel(image, label, pred, ignore_index))
    return out
