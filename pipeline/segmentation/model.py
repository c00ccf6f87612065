"""Settings of the segmentation stage and the DeepLabV3+ model built from them.

The model is segmentation-models-pytorch's ``DeepLabV3Plus`` (Chen et al., "Encoder-Decoder with
Atrous Separable Convolution for Semantic Image Segmentation", ECCV 2018). Nothing is ever
downloaded: ``encoder_weights`` is ``null`` (random initialisation from the seed) or the path of
a local ``.pth`` holding the encoder's state dict (e.g. torchvision ImageNet ResNet weights; a
``fc.*`` head is dropped by smp's encoder), loaded with ``weights_only=True``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping

from pipeline.config import checked
from pipeline.errors import ConfigError

#: Every key of ``params.yaml`` ``segmentation`` and of its ``model`` / ``train`` / ``eval`` blocks.
#: All are required and the values live only in params.yaml (the ``full`` profile is the DeepLabV3+
#: paper's recipe): no defaults here that could silently differ from it; an unknown or missing key
#: is an error naming it and its section.
KEYS = ("dataset", "fused_root", "results_root", "models_root", "seeds", "device", "threads",
        "parallel_seeds", "model", "train", "eval")
BLOCK_KEYS = {
    "model": ("encoder", "encoder_weights", "encoder_depth", "output_stride", "decoder_channels", "in_channels"),
    "train": ("epochs", "batch_size", "crop", "scale", "hflip", "optimizer", "lr", "momentum", "weight_decay",
              "poly_power", "dice_weight", "num_workers", "checkpoint_every", "mean", "std"),
    "eval": ("pad_multiple", "overlays"),
}


def resolve_config(config: Mapping | None) -> dict:
    """The ``segmentation`` section (profile resolved) with every key of :data:`KEYS` and
    :data:`BLOCK_KEYS` present; checks values."""
    cfg = checked(copy.deepcopy(dict(config or {})), "segmentation", KEYS)
    for block, keys in BLOCK_KEYS.items():
        cfg[block] = checked(cfg[block], f"segmentation.{block}", keys)
    train = cfg["train"]
    crop = train["crop"]
    if not (isinstance(crop, (list, tuple)) and len(crop) == 2 and all(isinstance(c, int) for c in crop)):
        raise ConfigError(f"segmentation.train.crop must be [height, width], got {crop!r}")
    if any(c <= 0 or c % 16 for c in crop):
        raise ConfigError(f"segmentation.train.crop sides must be positive multiples of 16 "
                          f"(DeepLabV3+ with output stride 16), got {crop}")
    if not isinstance(train["batch_size"], int) or train["batch_size"] < 2:
        raise ConfigError(f"segmentation.train.batch_size must be >= 2 (batch norm in training "
                          f"mode), got {train['batch_size']!r}")
    if train["optimizer"] not in ("sgd", "adamw"):
        raise ConfigError(f"segmentation.train.optimizer must be 'sgd' or 'adamw', got {train['optimizer']!r}")
    lo, hi = train["scale"]
    if not 0 < lo <= hi:
        raise ConfigError(f"segmentation.train.scale must be [min, max] with 0 < min <= max, got {train['scale']}")
    for key in ("epochs", "checkpoint_every"):
        if not isinstance(train[key], int) or train[key] < 1:
            raise ConfigError(f"segmentation.train.{key} must be a positive integer, got {train[key]!r}")
    from pipeline.seedpool import resolve_workers

    resolve_workers(cfg["parallel_seeds"], 1, "cpu", "segmentation.parallel_seeds")
    seeds = cfg["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"segmentation.seeds must be a non-empty list of integers, got {seeds!r}")
    if cfg["model"]["in_channels"] != 3:
        raise ConfigError("segmentation.model.in_channels must be 3: fused images enter as RGB "
                          "(grey images are replicated to three channels)")
    if cfg["model"]["output_stride"] not in (8, 16):
        raise ConfigError("segmentation.model.output_stride must be 8 or 16")
    if cfg["eval"]["pad_multiple"] % 16:
        raise ConfigError("segmentation.eval.pad_multiple must be a multiple of 16")
    return cfg


def build_model(model_cfg: Mapping, n_classes: int, seed: int | None = None):
    """``smp.DeepLabV3Plus`` from ``model_cfg`` (the ``segmentation.model`` section).

    The weights are initialised after ``torch.manual_seed(seed)`` when a seed is given, then the
    encoder is loaded from ``encoder_weights`` if that is a file path."""
    import torch
    import segmentation_models_pytorch as smp

    if seed is not None:
        torch.manual_seed(int(seed))
    weights = model_cfg.get("encoder_weights")
    try:
        model = smp.DeepLabV3Plus(
            encoder_name=model_cfg["encoder"], encoder_weights=None,
            encoder_depth=int(model_cfg.get("encoder_depth", 5)),
            encoder_output_stride=int(model_cfg.get("output_stride", 16)),
            decoder_channels=int(model_cfg.get("decoder_channels", 256)),
            in_channels=int(model_cfg.get("in_channels", 3)), classes=int(n_classes))
    except (KeyError, ValueError) as err:
        raise ConfigError(f"segmentation.model: cannot build DeepLabV3Plus ({err})") from err
    if weights not in (None, "", "none", "null"):
        load_encoder_weights(model, weights)
    return model


def load_encoder_weights(model, path: str | Path) -> None:
    """Load a local encoder state dict (``{"state_dict": ...}`` or ``{"model": ...}`` wrappers
    accepted) into ``model.encoder``; a missing file or non-matching keys raise ConfigError, an
    unreadable one a DataError naming it."""
    from pipeline.imageio import load_torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError("segmentation.model.encoder_weights must be null or a local file "
                          "(nothing is downloaded); file not found", path)
    state = load_torch(path, "encoder weights")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    try:
        model.encoder.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"encoder weights do not match encoder {type(model.encoder).__name__}: "
                          f"{str(err).splitlines()[0]}", path) from err


def count_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))
