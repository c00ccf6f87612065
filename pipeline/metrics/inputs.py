"""Input handling shared by every metric: grey conversion, checks, and the per-convention arrays.

Both reference implementations score **grey** images on the 0..255 scale (see
``../shared/spec/metrics.md``, "Input handling"):

* ``cddfuse`` (CDDFuse ``utils/Evaluator.py``): images are read as float32 and colour is converted
  with OpenCV's ``BGR2GRAY`` on the float data (0.299 R + 0.587 G + 0.114 B) followed by
  ``np.round`` (half to even). Every metric then receives these **float32** arrays, and several
  compute in float32; we keep that so values match to the last digit.
* ``matlab`` (``analysis_Reference.m``): ``rgb2gray`` (0.298936021293776 R + 0.587043074451121 G +
  0.114020904255103 B, rounded half away from zero to uint8); EN and MI use the uint8 image, every
  other metric the same values as float64.

A colour image (``H×W×3`` RGB, as :func:`pipeline.imageio.read_image` returns) is converted **once**
here with the convention's rule; grey inputs are used as they are. Inputs must be finite and lie
in 0..255 (uint8, or float holding grey levels); anything else raises
:class:`~pipeline.errors.DataError` naming the image, as do differing sizes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import ConfigError, DataError

CONVENTIONS = ("matlab", "cddfuse")
MATLAB_GRAY_WEIGHTS = (0.298936021293776, 0.587043074451121, 0.114020904255103)


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown metrics convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return convention


def to_gray(image: np.ndarray, convention: str, label: str = "image") -> np.ndarray:
    """Grey 0..255 array in the convention's dtype (float32 for cddfuse, float64 for matlab).

    ``image``: ``H×W`` grey or ``H×W×3`` RGB (``H×W×1``/``H×W×4`` are reduced to these). Colour is
    converted with the convention's grey rule (module docstring). Raises :class:`DataError` for
    other shapes, non-finite values or values outside 0..255.
    """
    check_convention(convention)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    elif array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise DataError(f"expected an H×W grey or H×W×3 colour image, got shape {array.shape}", label)
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise DataError(f"image is too small for fusion metrics ({array.shape[0]}×{array.shape[1]})", label)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            or array.dtype == bool):
        raise DataError(f"unsupported pixel type {array.dtype}", label)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise DataError("image contains NaN or infinite values", label)
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise DataError(f"grey levels must lie in 0..255, found {low:g}..{high:g}", label)
    if array.ndim == 2:
        return array.astype(np.float32 if convention == "cddfuse" else np.float64)
    if convention == "cddfuse":
        rgb = array.astype(np.float32)
        return np.round(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    weights = np.asarray(MATLAB_GRAY_WEIGHTS)
    grey = array.astype(np.float64) @ weights
    return np.clip(np.floor(grey + 0.5), 0, 255)


def to_uint8(gray: np.ndarray) -> np.ndarray:
    """``uint8`` grey levels as MATLAB's ``uint8()`` cast makes them (round half away, saturate)."""
    return np.clip(np.floor(np.asarray(gray, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


@dataclass
class Triple:
    """The three grey images of one evaluation, in the convention's dtype, plus a cache.

    ``a`` = infrared (or CT/PET/SPECT) source, ``b`` = visible (or MRI) source, ``f`` = fused.
    ``cache`` holds intermediate results shared by several metrics (e.g. Sobel maps). ``parallel``:
    compiled kernels may use several threads (set False when images are scored in parallel threads).
    """

    a: np.ndarray
    b: np.ndarray
    f: np.ndarray
    convention: str
    cache: dict = field(default_factory=dict)
    parallel: bool = True

    def cached(self, key, compute):
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def uint8(self, which: str) -> np.ndarray:
        return self.cached(("uint8", which), lambda: to_uint8(getattr(self, which)))


def make_triple(ir, vis, fused, convention: str = "matlab",
                labels: tuple[str, str, str] = ("ir", "vis", "fused")) -> Triple:
    """Check and convert the three images (arrays) once; sizes must agree."""
    check_convention(convention)
    arrays = [to_gray(img, convention, label) for img, label in zip((ir, vis, fused), labels)]
    shapes = {label: arr.shape for label, arr in zip(labels, arrays)}
    if len(set(shapes.values())) != 1:
        described = ", ".join(f"{label} {s[0]}×{s[1]}" for label, s in shapes.items())
        raise DataError(f"images must have the same size, got {described}", labels[2])
    return Triple(arrays[0], arrays[1], arrays[2], convention)


def load_triple(ir_path: str | Path, vis_path: str | Path, fused_path: str | Path,
                convention: str = "matlab") -> Triple:
    """Read three image files (colour kept, converted once by :func:`make_triple`)."""
    from pipeline.imageio import read_image

    paths = (Path(ir_path), Path(vis_path), Path(fused_path))
    images = [read_image(p, mode="auto") for p in paths]
    return make_triple(*images, convention=convention, labels=tuple(str(p) for p in paths))
