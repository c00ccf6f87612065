"""One registry of fusion methods with a common interface.

Interface (:class:`FusionMethod`): ``fuse(ir, vis) -> raw`` takes two **registered single-channel
float images in [0, 1]** (H×W, float32 or float64, equal size; ``ir`` = infrared / CT / PET / SPECT,
``vis`` = visible / MRI) and returns the method's float output ``raw`` (H×W). ``to_uint8(raw)`` is the
method's own conversion to 8 bits (default: clip to [0, 1], ×255, round half up; ``mlfuse`` uses the
official min-max + truncation). Metadata: ``name``, ``kind`` (``baseline`` | ``classical`` |
``network`` | ``precomputed`` | ``control``; controls, :mod:`pipeline.fusion.controls`, are built
per scene through ``bind``/``sample_image`` and exist to test the benchmark), ``parameters`` (the options it was built with), ``params_count()``
(learnable numbers, 0 for non-network methods) and ``gflops(h, w)`` (per image; 0 for non-network).

``get_method(name, **options)``: ``options["kind"]`` may name a registered implementation so one
implementation can be configured under several names (``mlfuse_official: {kind: mlfuse, weights:
official}``); ``kind: precomputed`` builds :class:`pipeline.fusion.precomputed.PrecomputedMethod`.
Colour and file handling live in :mod:`pipeline.fusion.colour` and :mod:`pipeline.fusion.stage`.

Stored sources (what the fusion stage calls, so no method needs a special case there):
``prepare(ir, vis) -> (inputs, context)`` turns the two images **as stored** (uint8 H×W grey or
H×W×3 RGB, :func:`pipeline.imageio.read_image`) into what ``fuse_batch`` takes, and
``finish(raw, ir, vis, context, gray) -> uint8`` turns the raw output into the image written.
Defaults: the project's colour rule (:func:`pipeline.fusion.colour.split_pair`: both lumas /255
in, fused Y recombined with the chrominance donor's Cb/Cr out; a ``source`` attribute makes a
single-modality baseline that writes its source as stored). Pretrained networks override both to
follow the official script (their own YCbCr, grey rule, colour merge; :mod:`pipeline.fusion.pretrained`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipeline.errors import ConfigError

_REGISTRY: dict[str, type["FusionMethod"]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator adding a :class:`FusionMethod` subclass to the registry under ``name``."""

    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"fusion method {name!r} registered twice")
        cls.registered_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def check_pair(ir: np.ndarray, vis: np.ndarray) -> None:
    """Both inputs single-channel, equal size, floating point (raises ValueError otherwise)."""
    if ir.ndim != 2 or vis.ndim != 2:
        raise ValueError(f"fusion inputs must be single-channel H×W, got {ir.shape} and {vis.shape}")
    if ir.shape != vis.shape:
        raise ValueError(f"fusion inputs differ in size: ir {ir.shape} vs vis {vis.shape}")
    if ir.dtype.kind != "f" or vis.dtype.kind != "f":
        raise ValueError("fusion inputs must be float images in [0, 1]")


def clip_round_uint8(raw: np.ndarray) -> np.ndarray:
    """⌊255·clip(raw, 0, 1) + 0.5⌋ as uint8."""
    return np.floor(np.clip(np.asarray(raw, dtype=np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class FusionMethod:
    """Base class: subclasses implement :meth:`fuse_arrays` (and may override the rest)."""

    registered_name = "base"
    kind = "classical"
    option_names: tuple[str, ...] = ()  # the options a subclass accepts (others are a TypeError)

    def __init__(self, name: str | None = None, **options):
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            raise TypeError(f"unexpected option(s) {', '.join(unknown)}"
                            f" (accepted: {', '.join(self.option_names) or 'none'})")
        self.name = name or self.registered_name
        self.parameters = dict(options)

    def fuse_arrays(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fuse(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """Fused float image (H×W) of two single-channel float images in [0, 1]."""
        ir, vis = np.asarray(ir), np.asarray(vis)
        check_pair(ir, vis)
        return self.fuse_arrays(ir, vis)

    def fuse_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Fuse several ``(ir, vis)`` pairs (networks override this to batch same-size pairs)."""
        return [self.fuse(ir, vis) for ir, vis in pairs]

    def to_uint8(self, raw: np.ndarray) -> np.ndarray:
        return clip_round_uint8(raw)

    def prepare(self, ir: np.ndarray, vis: np.ndarray):
        """Stored sources -> (``fuse_batch`` item, context for :meth:`finish`)."""
        from pipeline.fusion import colour

        y_ir, y_vis, cbcr = colour.split_pair(ir, vis)
        return (colour.to_float(y_ir), colour.to_float(y_vis)), cbcr

    def finish(self, raw: np.ndarray, ir: np.ndarray, vis: np.ndarray, context, gray: bool = False) -> np.ndarray:
        """The 8-bit image written for ``raw`` (``context`` from :meth:`prepare`).

        Fused Y recombined with the chrominance donor's Cb/Cr (grey with ``gray``). Single-modality
        baselines (``source`` attribute) are the source image **as stored**: the ``ir`` row is the
        infrared image itself, never infrared luminance with the visible colour put back, so the
        infrared-only downstream baseline sees no visible information.
        """
        from pipeline.fusion import colour

        source = getattr(self, "source", None)
        if source is not None:
            image = ir if source == "ir" else vis
            return colour.luma(image) if gray and image.ndim == 3 else image
        return colour.merge(self.to_uint8(raw), None if gray else context)

    def params_count(self) -> int:
        return 0

    def gflops(self, height: int, width: int) -> float:
        return 0.0

    def input_files(self) -> list[Path]:
        """Files besides the source images whose bytes decide the output (weights; a precomputed
        folder): part of the fuse stage's resume key. Default: ``weights_path`` when the method has
        one."""
        path = getattr(self, "weights_path", None)
        return [Path(path)] if path is not None else []

    def metadata(self) -> dict:
        return {"name": self.name, "kind": self.kind, "implementation": self.registered_name,
                "parameters": self.parameters, "params": self.params_count()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, parameters={self.parameters!r})"


def _load_builtin() -> None:
    # importing the modules registers their classes
    from pipeline.fusion import (classical, controls, diffif, mlfuse, precomputed, published,  # noqa: F401
                                 published_tf, trained)


def available_methods() -> list[str]:
    """Names of the registered implementations (plus ``precomputed``)."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_method(name: str, **options) -> FusionMethod:
    """Build the method configured as ``name: {options}`` (see the module docstring)."""
    _load_builtin()
    options = dict(options)
    impl = options.pop("kind", None) or name
    if impl not in _REGISTRY:
        raise ConfigError(f"unknown fusion method {impl!r} (available: {', '.join(sorted(_REGISTRY))}; "
                          f"or kind: precomputed with a folder)", f"fusion.methods.{name}")
    try:
        return _REGISTRY[impl](name=name, **options)
    except TypeError as err:
        raise ConfigError(f"bad options for fusion method {impl!r}: {err}", f"fusion.methods.{name}") from err
