"""Visual saliency map (VSM) of Ma et al. (2017) and the VSM stage for MLFuse training sets.

Reference: J. Ma, Z. Zhou, B. Wang et al., "Infrared and visible image fusion based on visual
saliency map and weighted least square optimization", Infrared Physics & Technology 82 (2017) 8-17;
behaviour of its MATLAB ``Visual_Weight_Map`` as described in ``../shared/spec/vsm.md`` §1-2.

For an image with 8-bit grey levels q (a float image in [0, 1] is first quantised with MATLAB's
rounding, q = ⌊255·I + 0.5⌋ clamped to 0..255)::

    h[i] = #{elements with q = i}                      (one shared 256-bin histogram over ALL channels)
    T[j] = Σ_i h[i]·|j − i|                              (saliency of grey level j)
    S(p) = T[q(p)]                                       (per element, so colour input -> colour map)
    V    = (S − min S) / (max S − min S)                 (one min-max over the whole array)

Multi-channel input (the "joint rule", which reproduces MLFuse's shipped ``vsm_img1``): every element
of every channel counts in the one histogram, the lookup is per element and the min-max runs over
the whole H×W×C array. Degenerate case, defined here: when max S = min S (a constant image, or e.g.
two levels with equal counts) every element is equally salient and V = 1 everywhere — the value
GNU Octave returned for the official code on a constant image.

8-bit maps are written as ⌊255·V + 0.5⌋ (MATLAB's conversion when a double image is saved).

VSM stage layout (read by :mod:`pipeline.mlfuse_train.data`)::

    <out_root>/<set_name>/img1/<name>.npy   float64, VSM of the structural image (Sample.vis):
                                            H×W for grey storage, H×W×3 (joint rule) for colour
    <out_root>/<set_name>/img2/<name>.npy   float64 H×W, VSM of the functional image (Sample.ir);
                                            a colour img2 (PET/SPECT) is mapped on its ITU-R 601
                                            luma so the map matches the single-channel loss head

``<name>`` is ``Sample.name``; images are read with :func:`pipeline.imageio.read_image` (grey or
equal-channel storage -> H×W, colour -> RGB). Writes are atomic; existing readable maps of the right
shape are kept (resume).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.imageio import read_image, rgb_to_gray, save_npy

LEVELS = 256


def quantise(image: np.ndarray) -> np.ndarray:
    """8-bit grey levels of ``image``: uint8 unchanged; floats in [0, 1] -> ⌊255·I + 0.5⌋ clamped."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind not in "fiu":
        raise TypeError(f"VSM needs a numeric image, got {image.dtype}")
    if image.dtype.kind in "iu":
        if image.min() < 0 or image.max() > 255:
            raise ValueError("integer images for VSM must hold 8-bit grey levels 0..255")
        return image.astype(np.uint8)
    scaled = np.floor(image.astype(np.float64) * 255.0 + 0.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def saliency_table(hist: np.ndarray) -> np.ndarray:
    """T[j] = Σ_i h[i]·|j − i| for j = 0..255 (float64, exact for any realistic pixel count)."""
    levels = np.arange(LEVELS, dtype=np.int64)
    distance = np.abs(levels[:, None] - levels[None, :])
    return (distance @ hist.astype(np.int64)).astype(np.float64)


def vsm(image: np.ndarray) -> np.ndarray:
    """Visual saliency map of ``image`` (uint8 or float in [0, 1]; H×W or H×W×C) as float64 in [0, 1].

    Joint rule for several channels, V = 1 everywhere when the saliency is constant (module docstring).
    """
    q = quantise(image)
    if q.size == 0:
        raise ValueError("VSM of an empty image")
    table = saliency_table(np.bincount(q.ravel(), minlength=LEVELS))
    s = table[q]
    lo, hi = s.min(), s.max()
    if hi == lo:
        return np.ones(q.shape, dtype=np.float64)
    return (s - lo) / (hi - lo)


def to_uint8(vsm_map: np.ndarray) -> np.ndarray:
    """8-bit map ⌊255·V + 0.5⌋ (round half up), as MATLAB writes a double image in [0, 1]."""
    return np.floor(np.asarray(vsm_map, dtype=np.float64) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def vsm_file(path: str | Path) -> np.ndarray:
    """VSM of an image file read as stored (grey -> H×W map, colour -> joint H×W×3 map)."""
    return vsm(read_image(path, mode="auto"))


def map_path(out_root: str | Path, set_name: str, name: str, image: str) -> Path:
    """``<out_root>/<set_name>/<image>/<name>.npy`` with ``image`` in {"img1", "img2"}."""
    if image not in ("img1", "img2"):
        raise ValueError(f"image must be img1 or img2, got {image!r}")
    return Path(out_root) / set_name / image / f"{name}.npy"


def _valid_map(path: Path, shape: tuple[int, ...]) -> bool:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return False
    return arr.shape == shape and arr.dtype == np.float64


def compute_vsm_maps(samples: Iterable, out_root: str | Path, set_name: str,
                     progress: bool = True) -> dict:
    """Write VSM maps of every sample (img1 = ``sample.vis``, img2 = ``sample.ir``) in the layout above.

    Resumes: a map already present with the expected shape and dtype is not recomputed. Returns
    ``{"set", "images", "computed", "skipped"}``. Raises :class:`~pipeline.errors.DataError` (naming the file) for
    unreadable images or a size mismatch between the two images of a pair.
    """
    from tqdm import tqdm

    from pipeline.datasets import read_pair

    samples = list(samples)
    computed = skipped = 0
    for sample in tqdm(samples, desc=f"vsm {set_name}", unit="pair", disable=not progress):
        ir, vis = read_pair(sample)
        if ir.ndim == 3:
            ir = rgb_to_gray(ir)  # = read_image(mode="gray"), without decoding again
        for key, image in (("img1", vis), ("img2", ir)):
            path = map_path(out_root, set_name, sample.name, key)
            if path.is_file() and _valid_map(path, image.shape):
                skipped += 1
                continue
            save_npy(path, vsm(image))
            computed += 1
    return {"set": set_name, "images": len(samples), "computed": computed, "skipped": skipped}
