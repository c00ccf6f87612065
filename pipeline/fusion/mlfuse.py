"""The ``mlfuse`` fusion method: MLFuse inference as the official test does it (spec/mlfuse.md §8).

* input: the two 8-bit grey images / 255 as float32 (colour sources reduced to PIL "L" luma by
  :mod:`pipeline.fusion.colour`); img1 = ``vis`` (visible / MRI), img2 = ``ir`` (infrared / CT /
  PET / SPECT); model in eval mode, no gradients, no resizing or padding;
* raw output: the tanh image f (float32 H×W) — what ``--raw-out`` saves;
* 8-bit output (:func:`to_uint8_official`): n = (f − min f)/(max f − min f) in float32, then ⌊255·n⌋
  (truncation, not rounding).

Options: ``weights`` = ``official`` (``$FUSEBENCH_SHARED`` or ``../shared`` +
``weights/mlfuse/model_fuse.pth``), ``trained`` (``models/trained/mlfuse.pth``, written by the
training stage ``train@mlfuse``) or a path; ``device`` (``auto`` = CUDA when present); ``fast`` (default true:
:class:`~pipeline.fusion.mlfuse_fast.FastMLFNet`; false = the plain eager module);
``batch_pixels`` (same-size pairs are batched while N·H·W stays within it; default 0 = one pair
per forward, the official setting; batching changes results only by float rounding).

Agreement with the official outputs (tests): raw outputs within 8e-7 (fast path) / 1.8e-7 (eager
module) of every shipped reference, CT/MRI and RoadScene; 8-bit images identical except ±1 on a few
pixels sitting on a truncation boundary. This is machine-independent because the channel gate's
float32 sum over all pixels runs in the order of the BLAS that made the official files
(:mod:`pipeline.fusion.mlfuse_reduction`); left to the local BLAS, that one sum moved the CT/MRI
outputs by up to 1.7e-5.

Deliberate differences from the official code (spec §11): modality order is fixed by role
(img1 = vis, img2 = ir) instead of depending on Python's string-hash seed (item 3); pairs come
matched by name from the dataset layer, not by listing order (items 3, 9); runs on CPU or CUDA
(item 1); an image with max f = min f (constant output) gives 0 everywhere instead of a division by
zero; outputs are always lossless PNG whatever the input format (item 14).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pipeline.fusion.registry import FusionMethod, check_pair, register
from pipeline.training.paths import trained_weights

TRAINED_WEIGHTS = trained_weights("mlfuse")


def resolve_weights(weights: str | Path) -> Path:
    """``official`` / ``trained`` / a path -> the checkpoint path (existence checked when loading)."""
    if str(weights) == "official":
        shared = Path(os.environ.get("FUSEBENCH_SHARED", "../shared"))
        return shared / "weights" / "mlfuse" / "model_fuse.pth"
    if str(weights) == "trained":
        return TRAINED_WEIGHTS
    return Path(weights)


def to_uint8_official(raw: np.ndarray) -> np.ndarray:
    """Official post-processing: float32 min-max over the image, ×255, truncate toward zero."""
    f = np.asarray(raw, dtype=np.float32)
    lo, hi = f.min(), f.max()
    if hi == lo:
        return np.zeros(f.shape, dtype=np.uint8)
    n = (f - lo) / (hi - lo)
    return (n * np.float32(255.0)).astype(np.uint8)


@register("mlfuse")
class MLFuse(FusionMethod):
    """MLFuse (Jialei et al.; network in :mod:`pipeline.fusion.mlfuse_net`) with given weights."""

    kind = "network"
    option_names = ("weights", "device", "fast", "batch_pixels")

    def __init__(self, name=None, weights: str = "official", device: str = "auto", fast: bool = True,
                 batch_pixels: int = 0, **options):
        super().__init__(name=name, weights=str(weights), device=device, fast=bool(fast),
                         batch_pixels=int(batch_pixels), **options)
        self.weights_path = resolve_weights(weights)
        self.device = device
        self.fast = bool(fast)
        self.batch_pixels = int(batch_pixels)
        self._model = None
        self._runner = None

    @property
    def model(self):
        """The eager :class:`MLFNet`, loaded strictly on first use (DataError if missing/wrong keys)."""
        if self._model is None:
            from pipeline.device import resolve_device
            from pipeline.fusion.mlfuse_net import load_mlfnet

            self._model = load_mlfnet(self.weights_path, resolve_device(self.device))
        return self._model

    def runner(self):
        """Callable ``(img1, img2) -> f`` (N×1×H×W tensors): the fast path or the eager module."""
        if self._runner is None:
            if self.fast:
                from pipeline.fusion.mlfuse_fast import FastMLFNet

                self._runner = FastMLFNet(self.model)
            else:
                model = self.model

                def eager(img1, img2):
                    with torch.inference_mode():
                        return model(img1, img2)[0]

                self._runner = eager
        return self._runner

    def _forward(self, irs: Sequence[np.ndarray], viss: Sequence[np.ndarray]) -> list[np.ndarray]:
        if min(irs[0].shape) < 15:
            raise ValueError(f"MLFuse needs images of at least 15×15 pixels, got {irs[0].shape}")
        device = next(self.model.parameters()).device
        img1 = torch.from_numpy(np.stack([np.asarray(v, np.float32) for v in viss])[:, None]).to(device)
        img2 = torch.from_numpy(np.stack([np.asarray(i, np.float32) for i in irs])[:, None]).to(device)
        f = self.runner()(img1, img2)
        # copies: the arrays must own their memory (oneDNN-produced outputs are not kept alive
        # by a numpy view in every torch build; observed as a silent overwrite otherwise)
        return [f[k, 0].float().cpu().numpy().copy() for k in range(f.shape[0])]

    def fuse_arrays(self, ir, vis):
        return self._forward([ir], [vis])[0]

    def fuse_batch(self, pairs):
        """Fuse pairs, batching consecutive same-size pairs up to ``batch_pixels`` pixels."""
        out: list[np.ndarray] = []
        i = 0
        while i < len(pairs):
            shape = pairs[i][0].shape
            j = i + 1
            while (j < len(pairs) and pairs[j][0].shape == shape
                   and (j - i + 1) * shape[0] * shape[1] <= self.batch_pixels):
                j += 1
            if j - i == 1:
                out.append(self.fuse(*pairs[i]))
            else:
                chunk = [(np.asarray(ir), np.asarray(vis)) for ir, vis in pairs[i:j]]
                for ir, vis in chunk:
                    check_pair(ir, vis)
                out.extend(self._forward([p[0] for p in chunk], [p[1] for p in chunk]))
            i = j
        return out

    def to_uint8(self, raw):
        return to_uint8_official(raw)

    def params_count(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    def metadata(self) -> dict:
        from pipeline.fusion.checkpoints import sha256_file

        path = self.weights_path
        return {**super().metadata(), "weights": [{"file": path.name, "path": str(path),
                                                   "sha256": sha256_file(path) if path.is_file() else None}]}

    def gflops(self, height: int, width: int) -> float:
        """GFLOPs of one eager forward at H×W, counted by ``torch.utils.flop_counter.FlopCounterMode``
        on meta tensors (a multiply-add counts 2; convolutions and matrix products)."""
        return mlfnet_gflops(height, width)


def mlfnet_gflops(height: int, width: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.fusion.mlfuse_net import MLFNet

    model = MLFNet().eval().to("meta")
    x = torch.empty(1, 1, height, width, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, x)
    return counter.get_total_flops() / 1e9
