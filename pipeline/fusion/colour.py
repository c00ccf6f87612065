"""Colour handling for fusion: fuse the luminance, put the chrominance back (spec/protocols.md).

Formulas (ITU-R BT.601, full-range "JFIF" YCbCr, 8-bit, R, G, B in 0..255):

* fusion input Y (what every method sees): the 8-bit luma exactly as PIL's ``convert("L")``
  computes it, Y = (19595·R + 38470·G + 7471·B + 32768) >> 16 (≈ 0.299R + 0.587G + 0.114B rounded),
  so MLFuse sees the same input as the official loader;
* chrominance of the colour source, in float64:
  Cb = 128 − 0.168736·R − 0.331264·G + 0.5·B,  Cr = 128 + 0.5·R − 0.418688·G − 0.081312·B;
* recombination with the fused 8-bit Y (float64, then ⌊x + 0.5⌋ clipped to 0..255):
  R = Y + 1.402·(Cr − 128),  G = Y − 0.344136·(Cb − 128) − 0.714136·(Cr − 128),  B = Y + 1.772·(Cb − 128).

Grey/colour mix (``split_pair``): each source is reduced to its luma; the chrominance comes from the
visible/MRI image when it is colour, otherwise from the infrared/functional image when that one is
colour (PET/SPECT), otherwise there is none and the output is grey. ``gray=True`` always gives the
grey fused Y. Images whose three channels are equal count as grey (:func:`pipeline.imageio.read_image`).
"""
from __future__ import annotations

import numpy as np

Chroma = tuple[np.ndarray, np.ndarray]


def luma(image: np.ndarray) -> np.ndarray:
    """8-bit luma of an H×W×3 RGB uint8 image (PIL "L" integer formula); H×W input is returned as is."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.dtype != np.uint8 or image.shape[2] != 3:
        raise ValueError(f"luma needs an H×W×3 uint8 RGB image, got {image.dtype} {image.shape}")
    rgb = image.astype(np.uint32)
    y = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 32768) >> 16
    return y.astype(np.uint8)


def chroma(image: np.ndarray) -> Chroma:
    """(Cb, Cr) float64 planes of an H×W×3 RGB uint8 image (BT.601 full range)."""
    rgb = np.asarray(image, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return cb, cr


def merge(y: np.ndarray, cbcr: Chroma | None) -> np.ndarray:
    """RGB uint8 from a fused 8-bit Y and the source chrominance (grey Y back when ``cbcr`` is None)."""
    if cbcr is None:
        return np.asarray(y, dtype=np.uint8)
    yf = np.asarray(y, dtype=np.float64)
    cb, cr = cbcr[0] - 128.0, cbcr[1] - 128.0
    rgb = np.stack([yf + 1.402 * cr, yf - 0.344136 * cb - 0.714136 * cr, yf + 1.772 * cb], axis=-1)
    return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)


def split_pair(ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray, Chroma | None]:
    """(ir luma, vis luma, chrominance donor's (Cb, Cr) or None) per the module's grey/colour rule."""
    donor = vis if vis.ndim == 3 else (ir if ir.ndim == 3 else None)
    return luma(ir), luma(vis), (chroma(donor) if donor is not None else None)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 grey -> float32 in [0, 1] (value / 255, as the official ``ToTensor``)."""
    return np.asarray(image, dtype=np.float32) / np.float32(255.0)


def unit_float64(image: np.ndarray) -> np.ndarray:
    """A [0, 1] image as float64 without the float32 rounding of :func:`to_float`.

    A float32 image that is exactly ``to_float`` of 8-bit levels k (every pixel = float32(k/255))
    becomes k/255 computed in float64; anything else is converted as is. float32(k/255) differs
    from k/255 by up to 3e-8 (relative 6e-8), which a float64 method such as ``vsm_wls`` would
    otherwise carry to its output (4.7e-8 on TNO pairs).
    """
    x = np.asarray(image)
    if x.dtype == np.float32:
        levels = np.round(x.astype(np.float64) * 255.0)
        if np.array_equal(levels.astype(np.float32) / np.float32(255.0), x):
            return levels / 255.0
    return x.astype(np.float64)
