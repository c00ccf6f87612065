"""Single perturbation kinds: pure functions ``kind(image, rng, **params) -> image`` on uint8 images.

Every kind takes an 8-bit image as stored (H×W grey or H×W×3 RGB) and returns one of the same
shape and dtype; all arithmetic is float64 and the result is rounded half up and clipped to
[0, 255]. Random kinds draw only from the ``numpy.random.Generator`` they are given (seeded per
seed, family, level, image and step by :mod:`pipeline.perturb.families`), so a perturbation is
deterministic. Every kind with its strength parameter at 0 (or 1 for factors) is the identity.

Geometry (applied to the infrared image only: labels live in the visible frame, so moving the
infrared image *is* a misregistration):

* ``translate`` (``dx``, ``dy`` pixels): ``out(x, y) = in(x - dx, y - dy)``, borders replicated;
  integer shifts move every pixel by exactly that many pixels. Registration-aware fusion work
  generates misaligned pairs with an affine translation of about 1 % of the image side plus an
  elastic warp (the settings quoted in FuseBench issue 17).
* ``affine`` (``rotate`` degrees, ``scale``): rotation and isotropic scaling about the centre.
* ``elastic`` (``alpha`` pixels, ``sigma``, ``kernel``): the elastic warp of Simard et al.
  (ICDAR 2003): per-pixel displacements U(-1, 1) smoothed with a Gaussian
  (kernel 101, σ = 16 published), rescaled so the largest displacement is ``alpha`` pixels.

Infrared sensor faults (the degradation-aware fusion settings quoted in issue 17: Gaussian σ = 14
then Poisson with peak 70-90, column stripes with σ ~ U(5, 7)):

* ``noise`` (``sigma`` grey levels, ``peak`` photons or null): additive Gaussian N(0, σ²), then
  (when ``peak``) Poisson shot noise ``Poisson(x / 255 · peak) · 255 / peak``;
* ``stripes`` (``sigma`` = [low, high] or a number): one offset per column ~ N(0, s²),
  ``s ~ U(low, high)`` per image (fixed-pattern non-uniformity of microbolometer arrays);
* ``dead_pixels`` (``fraction``, ``hot``): that fraction of pixels stuck at 0, a ``hot`` share of
  them at 255;
* ``contrast`` (``factor``): ``mean + factor · (x - mean)`` (low contrast for ``factor`` < 1).

Visible degradations (Hendrycks & Dietterich, "Benchmarking neural network robustness to common
corruptions", ICLR 2019, severities 1-5; Michaelis et al. 2019):

* ``exposure`` (``gain``, ``gamma``, ``peak``): ``255 · (gain · x / 255)^gamma`` with shot noise
  at ``peak`` photons per full-scale pixel (under-exposure: gain < 1; over-exposure: gain > 1,
  clipped);
* ``blur`` (``sigma`` pixels): Gaussian blur (kernel ``2·ceil(3σ)+1``);
* ``haze`` (``transmission`` t, ``airlight`` A): the atmospheric scattering model
  ``x · t + A · (1 - t)`` (Koschmieder; He et al., "Dark channel prior", CVPR 2009), uniform t.
"""
from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

from pipeline.errors import ConfigError

GEOMETRIC = ("translate", "affine", "elastic")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round half up and clip a float image to uint8."""
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def _remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(image, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def translate(image: np.ndarray, rng: np.random.Generator, dx: float = 0, dy: float = 0) -> np.ndarray:
    h, w = image.shape[:2]
    if abs(dx) >= w or abs(dy) >= h:
        raise ConfigError(f"translate: shift (dx={dx}, dy={dy}) is not smaller than the {w}x{h} image "
                          "(parameter dx/dy)")
    if dx == 0 and dy == 0:
        return image.copy()
    if float(dx).is_integer() and float(dy).is_integer():     # exact integer shift, replicated border
        ys = np.clip(np.arange(h) - int(dy), 0, h - 1)
        xs = np.clip(np.arange(w) - int(dx), 0, w - 1)
        return np.ascontiguousarray(image[ys][:, xs])
    grid_y, grid_x = np.mgrid[0:h, 0:w].astype(np.float64)
    return _remap(image, grid_x - dx, grid_y - dy)


def affine(image: np.ndarray, rng: np.random.Generator, rotate: float = 0.0, scale: float = 1.0) -> np.ndarray:
    if rotate == 0 and scale == 1:
        return image.copy()
    if scale <= 0:
        raise ConfigError(f"affine: scale must be > 0, got {scale} (parameter scale)")
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(rotate), float(scale))
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def elastic_field(shape: tuple[int, int], rng: np.random.Generator, alpha: float, sigma: float = 16.0,
                  kernel: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Smooth displacement fields ``(dx, dy)`` whose largest magnitude is ``alpha`` pixels."""
    if kernel % 2 == 0 or kernel < 1:
        raise ConfigError(f"elastic: kernel must be an odd positive size, got {kernel} (parameter kernel)")
    fields = []
    for _ in range(2):
        noise = rng.uniform(-1.0, 1.0, size=shape)
        smooth = cv2.GaussianBlur(noise, (int(kernel), int(kernel)), float(sigma), borderType=cv2.BORDER_REFLECT)
        fields.append(smooth)
    peak = max(float(np.abs(f).max()) for f in fields) or 1.0
    return fields[0] * (alpha / peak), fields[1] * (alpha / peak)


def elastic(image: np.ndarray, rng: np.random.Generator, alpha: float = 0.0, sigma: float = 16.0,
            kernel: int = 101) -> np.ndarray:
    if alpha == 0:
        return image.copy()
    h, w = image.shape[:2]
    dx, dy = elastic_field((h, w), rng, float(alpha), float(sigma), int(kernel))
    grid_y, grid_x = np.mgrid[0:h, 0:w].astype(np.float64)
    return _remap(image, grid_x + dx, grid_y + dy)


def shot_noise(x: np.ndarray, rng: np.random.Generator, peak: float | None) -> np.ndarray:
    """Poisson noise at ``peak`` photons per full-scale (255) pixel; ``None``: unchanged."""
    if peak is None:
        return x
    if peak <= 0:
        raise ConfigError(f"peak must be > 0 photons, got {peak} (parameter peak)")
    return rng.poisson(np.clip(x, 0, None) / 255.0 * peak) * (255.0 / peak)


def noise(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.0, peak: float | None = None) -> np.ndarray:
    if sigma == 0 and peak is None:
        return image.copy()
    x = image.astype(np.float64) + rng.normal(0.0, float(sigma), size=image.shape)
    return to_uint8(shot_noise(x, rng, peak))


def stripes(image: np.ndarray, rng: np.random.Generator, sigma=0.0) -> np.ndarray:
    low, high = (sigma, sigma) if np.isscalar(sigma) else (float(sigma[0]), float(sigma[1]))
    if high == 0:
        return image.copy()
    s = float(rng.uniform(low, high)) if high > low else float(low)
    offsets = rng.normal(0.0, s, size=image.shape[1])
    shape = (1, -1) + ((1,) if image.ndim == 3 else ())
    return to_uint8(image.astype(np.float64) + offsets.reshape(shape))


def dead_pixels(image: np.ndarray, rng: np.random.Generator, fraction: float = 0.0, hot: float = 0.0) -> np.ndarray:
    if not 0 <= fraction <= 1:
        raise ConfigError(f"dead_pixels: fraction must be in [0, 1], got {fraction} (parameter fraction)")
    out = image.copy()
    if fraction == 0:
        return out
    h, w = image.shape[:2]
    dead = rng.random((h, w)) < fraction
    stuck_hot = dead & (rng.random((h, w)) < hot)
    out[dead] = 0
    out[stuck_hot] = 255
    return out


def contrast(image: np.ndarray, rng: np.random.Generator, factor: float = 1.0) -> np.ndarray:
    if factor == 1:
        return image.copy()
    x = image.astype(np.float64)
    return to_uint8(x.mean() + float(factor) * (x - x.mean()))


def exposure(image: np.ndarray, rng: np.random.Generator, gain: float = 1.0, gamma: float = 1.0,
             peak: float | None = None) -> np.ndarray:
    if gain == 1 and gamma == 1 and peak is None:
        return image.copy()
    x = 255.0 * np.clip(float(gain) * image.astype(np.float64) / 255.0, 0.0, 1.0) ** float(gamma)
    return to_uint8(shot_noise(x, rng, peak))


def blur(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.0) -> np.ndarray:
    if sigma == 0:
        return image.copy()
    size = 2 * math.ceil(3 * float(sigma)) + 1
    smooth = cv2.GaussianBlur(image.astype(np.float64), (size, size), float(sigma), borderType=cv2.BORDER_REFLECT)
    return to_uint8(smooth)


def haze(image: np.ndarray, rng: np.random.Generator, transmission: float = 1.0, airlight: float = 230.0) -> np.ndarray:
    if not 0 < transmission <= 1:
        raise ConfigError(f"haze: transmission must be in (0, 1], got {transmission} (parameter transmission)")
    if transmission == 1:
        return image.copy()
    return to_uint8(image.astype(np.float64) * transmission + float(airlight) * (1.0 - transmission))


KINDS: dict[str, Callable[..., np.ndarray]] = {
    "translate": translate, "affine": affine, "elastic": elastic, "noise": noise, "stripes": stripes,
    "dead_pixels": dead_pixels, "contrast": contrast, "exposure": exposure, "blur": blur, "haze": haze,
}
