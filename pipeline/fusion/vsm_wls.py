"""VSM-WLS fusion rule (Ma et al., Infrared Physics & Technology 82 (2017) 8-17), per ``spec/vsm.md`` §3.

Inputs I1, I2: single-channel float64 images in [0, 1] of equal size. Roles: I1 = visible, I2 =
infrared (the official code's in-code comment and the shared reference ``wls_fused_pair0.npy``;
its demo script passes them the other way round, and the rule is not symmetric, step C).

A. Decomposition of each input into four detail layers and a base (I = D1 + D2 + D3 + D4 + B):
   G1 = I; G_k = RGF(G_{k-1}; σs = 2, 4, 8; σr = 0.05; 4 iterations), D_{k-1} = G_{k-1} − G_k (k = 2..4);
   G5 = Gauss_{σ=2}(G4), D4 = G4 − G5, B = G5.
   RGF (rolling guidance, guided-filter variant): J = Gauss_{σs}(X); 4× J <- GF(guide J, input X,
   r = σs, ε = σr²).
B. Base: W1 = VSM(I1), W2 = VSM(I2) (:func:`pipeline.vsm.vsm`);
   B_F = (0.5 + 0.5(W1 − W2))·B1 + (0.5 + 0.5(W2 − W1))·B2.
C. Details: D1 -> the coefficient of larger magnitude (ties to image 1). Levels 2..4: C = [|D_k^1| < |D_k^2|]
   smoothed by a 13×13 Gaussian (σ0 = 2, symmetric borders); M = C·D_k^2 + (1 − C)·D_k^1;
   A = 1/(|box7(D_k^2)| + 1e-6) (7×7 mean, replicate borders); d = (M + λA·D_k^1)/(1 + λA), λ = 0.01
   (the per-pixel solution of the official diagonal "WLS" system).
D. Fused = B_F + D1_F + d4 + d3 + d2 (no clipping).

Gaussian blur: MATLAB ``fspecial('gaussian', 2·round(3σ)+1, σ)`` (separable here; no kernel entry
falls below the ε·max cut for these sizes), correlation with replicate borders. Guided filter
(He et al., ECCV 2010 / TPAMI 2013): box means over (2r+1)² windows truncated at the image border.
Checked against Octave running the official code: max abs difference below 1e-9 (tests).
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from pipeline.metrics.filters import gaussian_1d
from pipeline.vsm import vsm

RGF_SCALES = (2.0, 4.0, 8.0)
SIGMA_R = 0.05
RGF_ITERATIONS = 4
BASE_SIGMA = 2.0
MAP_SIGMA = 2.0
WLS_LAMBDA = 0.01
BOX_SIZE = 7


def gaussian_kernel_1d(sigma: float, size: int | None = None) -> np.ndarray:
    """Normalised 1-D Gaussian on integer offsets; default size 2·round(3σ) + 1 (round half away)."""
    if size is None:
        size = 2 * int(np.floor(3 * sigma + 0.5)) + 1
    return gaussian_1d(size, sigma)


def gaussian_blur(image: np.ndarray, sigma: float, size: int | None = None, mode: str = "nearest") -> np.ndarray:
    """Same-size Gaussian correlation; ``mode="nearest"`` = replicate, ``"reflect"`` = symmetric."""
    g = gaussian_kernel_1d(sigma, size)
    out = ndimage.correlate1d(image, g, axis=0, mode=mode)
    return ndimage.correlate1d(out, g, axis=1, mode=mode)


def box_mean(image: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)×(2r+1) window truncated at the border: window sum with zeros outside
    the image (``cv2.boxFilter``, unnormalised, constant border) divided by the in-image count."""
    h, w = image.shape
    size = 2 * r + 1
    sums = cv2.boxFilter(image, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    rows = np.minimum(np.arange(h) + r, h - 1) - np.maximum(np.arange(h) - r, 0) + 1
    cols = np.minimum(np.arange(w) + r, w - 1) - np.maximum(np.arange(w) - r, 0) + 1
    return sums / np.outer(rows, cols).astype(np.float64)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al. guided filter: a = cov(G,X)/(var G + ε), b = mean X − a·mean G, out = mean a·G + mean b."""
    mean_g = box_mean(guide, r)
    mean_x = box_mean(src, r)
    cov = box_mean(guide * src, r) - mean_g * mean_x
    var = box_mean(guide * guide, r) - mean_g * mean_g
    a = cov / (var + eps)
    b = mean_x - a * mean_g
    return box_mean(a, r) * guide + box_mean(b, r)


def rolling_guidance(image: np.ndarray, sigma_s: float, sigma_r: float = SIGMA_R,
                     iterations: int = RGF_ITERATIONS) -> np.ndarray:
    """Rolling guidance filter (guided-filter variant): Gaussian start, then iterated guided filtering."""
    j = gaussian_blur(image, sigma_s)
    for _ in range(iterations):
        j = guided_filter(j, image, int(sigma_s), sigma_r * sigma_r)
    return j


def decompose(image: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Details [D1, D2, D3, D4] (finest first) and base B with image = ΣD + B (step A)."""
    details, g = [], image
    for sigma_s in RGF_SCALES:
        nxt = rolling_guidance(g, sigma_s)
        details.append(g - nxt)
        g = nxt
    base = gaussian_blur(g, BASE_SIGMA)
    details.append(g - base)
    return details, base


def fuse_detail(d1: np.ndarray, d2: np.ndarray, lam: float = WLS_LAMBDA) -> np.ndarray:
    """Levels 2-4 (step C): smoothed choice map, then the per-pixel WLS solution."""
    choice = (np.abs(d1) < np.abs(d2)).astype(np.float64)
    choice = gaussian_blur(choice, MAP_SIGMA, size=2 * int(np.floor(3 * MAP_SIGMA)) + 1, mode="reflect")
    m = choice * d2 + (1.0 - choice) * d1
    local = np.abs(ndimage.uniform_filter(d2, size=BOX_SIZE, mode="nearest"))
    a = 1.0 / (local + 1e-6)
    return (m + lam * a * d1) / (1.0 + lam * a)


def vsm_wls_fuse(i1: np.ndarray, i2: np.ndarray) -> np.ndarray:
    """Fuse I1 (visible) and I2 (infrared), float arrays in [0, 1] of equal shape; float64 result."""
    i1 = np.asarray(i1, dtype=np.float64)
    i2 = np.asarray(i2, dtype=np.float64)
    if i1.shape != i2.shape or i1.ndim != 2:
        raise ValueError(f"vsm_wls needs two single-channel images of equal size, got {i1.shape} and {i2.shape}")
    det1, base1 = decompose(i1)
    det2, base2 = decompose(i2)
    w1, w2 = vsm(i1), vsm(i2)
    base = (0.5 + 0.5 * (w1 - w2)) * base1 + (0.5 + 0.5 * (w2 - w1)) * base2
    finest = np.where(np.abs(det1[0]) < np.abs(det2[0]), det2[0], det1[0])
    detail = finest
    for k in (3, 2, 1):
        detail = detail + fuse_detail(det1[k], det2[k])
    return base + detail
