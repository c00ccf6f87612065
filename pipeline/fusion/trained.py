"""Registry glue of the networks trained in the pipeline (``train@<method>``): FusionGAN, DDcGAN and
UFGAN ("UFGAN, defects fixed"). (PMGI, DenseFuse and MFF-GAN are the published network methods with
``weights: trained``, :mod:`pipeline.fusion.pretrained`.)

Option ``weights``: ``trained`` = ``models/trained/<kind>.pth`` (:mod:`pipeline.training.paths`, the
training stage's output) or a path. The checkpoint (``torch.load(weights_only=True)``) holds
``method``, ``model`` (the generator's state_dict), the architecture fields the recipe exported and the
training ``health`` verdict; a run flagged ``collapsed``/``diverged`` is fused with a warning naming the
file (and shown in the report), never silently. ``device``: ``auto`` = CUDA when present.
Subclasses give :meth:`build` (network from the checkpoint) and :meth:`forward` (inputs in [0, 1] ->
raw output on the [0, 1] scale); ``to_uint8`` is SciPy ``imsave``'s min–max stretch
(:func:`minmax_uint8`), as both official test scripts write their results.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import DataError
from pipeline.fusion.checkpoints import load_strict
from pipeline.fusion.registry import FusionMethod, register
from pipeline.imageio import load_torch

log = logging.getLogger(__name__)


def minmax_uint8(raw: np.ndarray) -> np.ndarray:
    """SciPy ≤ 1.1 ``imsave`` of a float array: ⌊clip((a − min)·255/(max − min), 0, 255) + 0.5⌋
    (divisor 1 when max = min; spec ``methods.md`` section 1)."""
    a = np.asarray(raw, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    scale = 255.0 / (hi - lo) if hi > lo else 255.0
    return np.floor(np.clip((a - lo) * scale, 0, 255) + 0.5).astype(np.uint8)


def load_trained(path: str | Path, method: str) -> dict:
    """A trained checkpoint of ``method``; :class:`DataError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"trained {method} checkpoint not found: run the train@{method} stage "
                        f"(python -m flows.train method={method}) or give weights: PATH", path)
    state = load_torch(path, "checkpoint")
    if not isinstance(state, dict) or state.get("method") != method or "model" not in state:
        got = state.get("method") if isinstance(state, dict) else type(state).__name__
        raise DataError(f"not a trained {method} checkpoint (method {got!r})", path)
    health = state.get("health") or {}
    if health.get("status", "ok") != "ok":
        log.warning("%s: training was flagged %s (%s); fusing anyway, the report shows the flag", path,
                    health.get("status"), "; ".join(health.get("reasons", [])))
    return state


class TrainedNetworkMethod(FusionMethod):
    """Base class of a network trained by ``train@<kind>`` (module docstring)."""

    kind = "network"
    option_names = ("weights", "device")

    def __init__(self, name=None, weights: str = "trained", device: str = "auto", **options):
        super().__init__(name=name, weights=str(weights), device=device, **options)
        from pipeline.training.paths import trained_weights

        self.weights_path = trained_weights(self.registered_name) if str(weights) == "trained" else Path(weights)
        self.device = device
        self._net = None
        self.checkpoint: dict | None = None

    def build(self, state: dict) -> torch.nn.Module:
        raise NotImplementedError

    def forward(self, net: torch.nn.Module, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            from pipeline.device import resolve_device

            self.checkpoint = load_trained(self.weights_path, self.registered_name)
            net = self.build(self.checkpoint)
            self._net = net.to(resolve_device(self.device)).eval()
        return self._net

    def fuse_arrays(self, ir, vis):
        net = self.net
        device = next(net.parameters()).device
        x = [torch.from_numpy(np.asarray(a, np.float32))[None, None].to(device) for a in (ir, vis)]
        with torch.inference_mode():
            return self.forward(net, *x)[0, 0].float().cpu().numpy().copy()

    def to_uint8(self, raw):
        return minmax_uint8(raw)

    def params_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def health(self) -> dict:
        self.net
        return dict((self.checkpoint or {}).get("health") or {})


@register("fusiongan")
class FusionGAN(TrainedNetworkMethod):
    """FusionGAN generator; official test conventions by default (spec section 9): edge-replicate
    padding of 6 px, per-image BN statistics with scale 1 / shift 0 (``bn: image_unit``; ``image`` =
    the trained scale/shift), raw kernels without spectral norm (``spectral_norm: false``), tanh
    output mapped to [0, 1], min–max stretched to 8 bits."""

    option_names = ("weights", "device", "bn", "spectral_norm")

    def __init__(self, name=None, weights="trained", device="auto", bn="image_unit", spectral_norm=False):
        super().__init__(name=name, weights=weights, device=device, bn=bn, spectral_norm=bool(spectral_norm))
        if bn not in ("image_unit", "image", "batch"):
            raise TypeError(f"bn must be image_unit, image or batch, got {bn!r}")

    def build(self, state):
        from pipeline.fusion.nets.fusiongan import Generator, set_test_mode

        net = Generator(state["widths"])
        load_strict(net, state["model"], self.weights_path, "FusionGAN generator")
        bn = self.parameters["bn"]
        return set_test_mode(net, None if bn == "batch" else bn, self.parameters["spectral_norm"])

    def forward(self, net, ir, vis):
        import torch.nn.functional as F

        pad = net.shrink // 2
        x = [F.pad(t * 2 - 1, (pad,) * 4, mode="replicate") for t in (ir, vis)]
        return (net(*x) + 1) / 2

    def gflops(self, height, width):
        from pipeline.fusion.nets.fusiongan import gflops

        return gflops(height, width, [b.num_features for b in self.net.bns])


@register("ddcgan")
class DDcGAN(TrainedNetworkMethod):
    """DDcGAN generator (same resolution) as the official ``generate.py`` runs it: inputs /255 in
    [0, 1] (VIS first), BN with each image's own statistics and the trained scale/shift, output
    tanh/2 + 0.5, min–max stretched to 8 bits (spec section 10)."""

    def build(self, state):
        from pipeline.fusion.nets.ddcgan import Generator

        net = Generator(state["widths"], bool(state["double_first"]))
        load_strict(net, state["model"], self.weights_path, "DDcGAN generator")
        return net

    def forward(self, net, ir, vis):
        return net(vis, ir)

    def gflops(self, height, width):
        from pipeline.fusion.nets.ddcgan import gflops

        state = self.checkpoint if self.net is not None else {}
        return gflops(height, width, state["widths"], bool(state["double_first"]))


@register("ufgan")
class UFGAN(TrainedNetworkMethod):
    """**UFGAN, defects fixed** (:mod:`pipeline.training.methods.ufgan` lists the fixes): the U-Net
    generator in eval mode (dropout off, BN running statistics), inputs in [−1, 1] (the official test
    script's [0, 1] was a defect) reflect-padded by 4 px so the output has the input's size, tanh
    output mapped to [0, 1], min–max stretched to 8 bits."""

    label = "UFGAN, defects fixed"

    def build(self, state):
        from pipeline.fusion.nets.ufgan import UNetGenerator

        net = UNetGenerator(int(state["width"]))
        load_strict(net, state["model"], self.weights_path, "UFGAN generator")
        return net

    def forward(self, net, ir, vis):
        from pipeline.fusion.nets.ufgan import fuse_full_size

        return fuse_full_size(net, ir, vis)

    def metadata(self):
        return {**super().metadata(), "label": self.label}
