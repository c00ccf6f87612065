"""What a learned fusion method adds to the generic trainer: a :class:`Recipe` (networks, optimisers,
one ``step(batch)``), plus the :class:`Context` the trainer hands it (device, AMP, optimiser updates).

A recipe is a small class registered with :func:`register_recipe` under the method's name::

    @register_recipe("fusiongan")
    class FusionGANRecipe(Recipe):
        options = ("lr", "d_steps", ...)          # its own keys of train.methods.fusiongan
        loss_names = ("g_total", "g_adv", ...)    # columns of losses.csv (after epoch, lr)
        health_keys = {"accuracy": ("d_acc",), "output_std": "g_std"}

        def build(self):                          # networks (torch is seeded before this call)
            self.nets = {"generator": G(), "discriminator": D()}
            self.opts = {"generator": Adam(...), "discriminator": Adam(...)}

        def step(self, batch, index):             # one iteration on a batch, any update schedule
            ...
            self.ctx.update("discriminator", d_loss)   # zero_grad, (scaled) backward, step
            return {"g_total": ..., "d_acc": ...}     # floats or 0-d tensors, one per loss_names

        def fuse(self, ir, vis):                  # 1×1×H×W in [0, 1] -> raw fused H×W (previews, health)
        def export(self, epoch):                  # what the fusion method loads (final checkpoint)

The trainer (:mod:`pipeline.training.trainer`) owns everything else: config checks, data, seeding,
the loop, checkpoint/resume (every entry of ``nets``, ``opts``, ``schedulers``, the GradScalers, the
RNG states and :meth:`Recipe.state`), logging with a progress bar, previews, ``losses.csv``, the
health check and ``summary.json``. ``schedulers`` are stepped once after every epoch; a recipe that
changes learning rates per update (DDcGAN) does it inside ``step`` and keeps its counters in
:meth:`state` / :meth:`load_state`.
"""
from __future__ import annotations

import contextlib
import importlib
import pkgutil
from typing import Any, Mapping

import numpy as np
import torch

from pipeline.errors import ConfigError

_RECIPES: dict[str, type["Recipe"]] = {}
_METHODS = "pipeline.training.methods"


def register_recipe(name: str):
    """Class decorator: the recipe trains the fusion method ``name`` (its registry kind)."""

    def wrap(cls):
        if name in _RECIPES and _RECIPES[name] is not cls:
            raise ValueError(f"training recipe {name!r} registered twice")
        cls.method = name
        _RECIPES[name] = cls
        return cls

    return wrap


def get_recipe(name: str) -> type["Recipe"]:
    """The recipe class of method ``name``, from module :mod:`pipeline.training.methods.<name>`
    (imported by a computed name, so a method's code fingerprint never covers the other recipes)."""
    if name not in _RECIPES and name in trainable_methods():
        importlib.import_module(f"{_METHODS}.{name}")
    if name not in _RECIPES:
        raise ConfigError(f"no training recipe for method {name!r} (trainable: {', '.join(trainable_methods())})",
                          f"train.methods.{name}")
    return _RECIPES[name]


def trainable_methods() -> list[str]:
    """Methods with a recipe module in :mod:`pipeline.training.methods`."""
    package = importlib.import_module(_METHODS)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


class Context:
    """Device, mixed precision and optimiser updates, shared by the trainer and the recipe.

    ``amp`` is honoured on CUDA only (float16 autocast + one ``GradScaler`` per optimiser);
    ``channels_last`` converts batches to NHWC (oneDNN convolves it faster on CPU).
    """

    def __init__(self, device: str, amp: bool = False, channels_last: bool = False):
        self.device = device
        self.amp = bool(amp) and device.startswith("cuda")
        self.channels_last = bool(channels_last)
        self.batches_per_epoch = 1  # set by the trainer (recipes with per-update schedules read it)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    def attach(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        self.optimizers = dict(optimizers)
        self.scalers = {name: torch.amp.GradScaler("cuda", enabled=self.amp) for name in self.optimizers}

    def autocast(self):
        """Autocast context for forward passes (float16 on CUDA when ``amp``; a no-op otherwise)."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=torch.float16)

    def update(self, name: str, loss: torch.Tensor) -> None:
        """One update of optimiser ``name``: zero its gradients, (scaled) backward of ``loss`` to its
        parameters only, step. A generator's loss runs through the discriminator, but only the
        generator's gradients are computed (as TF's ``minimize(var_list=...)`` of the official GAN
        code): the discriminator's weight gradients were a wasted part of every generator update."""
        optimizer, scaler = self.optimizers[name], self.scalers[name]
        optimizer.zero_grad(set_to_none=True)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        scaler.scale(loss).backward(inputs=params)
        scaler.step(optimizer)
        scaler.update()

    def prepare(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.channels_last:
            return dict(batch)
        return {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}


class Recipe:
    """Base class of a method's training recipe (see the module docstring)."""

    method = "base"
    #: method-specific keys of ``train.methods.<method>`` (all required; the trainer checks them)
    options: tuple[str, ...] = ()
    #: per-pair maps the batches must carry (:data:`pipeline.training.data.MAP_KINDS`)
    maps: tuple[str, ...] = ()
    #: the option naming the folder the maps are read from
    map_root: str = "vsm_root"
    #: columns of ``losses.csv`` after ``epoch`` and ``lr``: every value ``step`` returns
    loss_names: tuple[str, ...] = ()
    #: which returned values the health check reads: ``accuracy`` (discriminator accuracies in
    #: [0, 1]) and ``output_std`` (standard deviation of the generator's output batch)
    health_keys: Mapping[str, Any] = {}
    #: smallest crop the networks accept
    min_crop: int = 1
    #: modules whose source decides the training (besides the trainer's); digested in the fingerprint
    code_modules: tuple[str, ...] = ()

    def __init__(self, config: Mapping, ctx: Context):
        self.config = config
        self.ctx = ctx
        self.nets: dict[str, torch.nn.Module] = {}
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}

    @classmethod
    def check(cls, config: Mapping, where: str) -> None:
        """Raise :class:`ConfigError` naming ``where.<key>`` for a bad method option (optional)."""

    def build(self) -> None:
        """Create ``self.nets``, ``self.opts`` (first = the one whose lr is logged) and ``self.schedulers``."""
        raise NotImplementedError

    def step(self, batch: Mapping[str, torch.Tensor], index: int) -> Mapping[str, Any]:
        """Train on one batch (global batch index ``index``); return the values of :attr:`loss_names`."""
        raise NotImplementedError

    #: GAN recipes: ``generator_update(batch, index)``, the generator's update of one batch without the
    #: discriminators' (what ``bench train --single-update`` times: the spec's "G only" step)
    generator_update = None
    #: training images per pair of a batch (DenseFuse's autoencoder trains on the IR and the VI crop)
    images_per_pair: int = 1

    def fuse(self, ir: torch.Tensor, vis: torch.Tensor) -> np.ndarray:
        """Raw fused H×W float image (the [0, 1] scale) of one full-size pair (1×1×H×W tensors in
        [0, 1] on the device), as the method's fusion code computes it; runs under ``no_grad`` and the
        trainer restores the networks' train/eval modes afterwards."""
        raise NotImplementedError

    def to_uint8(self, raw: np.ndarray) -> np.ndarray:
        """8-bit preview of :meth:`fuse`'s output (default: clip to [0, 1], ×255, round half up)."""
        from pipeline.fusion.registry import clip_round_uint8

        return clip_round_uint8(raw)

    def export(self, epoch: int) -> dict:
        """The final checkpoint the method's fusion code loads."""
        raise NotImplementedError

    def state(self) -> dict:
        """Extra resumable state (counters); tensors, numbers and strings only."""
        return {}

    def load_state(self, state: Mapping) -> None:
        pass
