"""Small filtering helpers shared by the metrics (windows, 'valid'/'same' filtering, gradients).

All filters are correlations (MATLAB ``filter2``/``imfilter`` semantics); for the symmetric windows
used here correlation and convolution coincide. Separable windows are applied as two 1-D passes with
OpenCV (float64 stays float64), which is exact up to rounding order and much faster than
``scipy.signal.convolve2d`` with the full 2-D window.
"""
from __future__ import annotations

import cv2
import numpy as np


def gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)``.

    ``fspecial`` builds ``exp(-(x²+y²)/(2σ²))``, zeroes entries below ``eps·max`` and normalises to
    sum 1. For the windows used here (size ≤ 5σ+1) no entry is below ``eps·max``, so the 2-D window
    is exactly the outer product of this normalised 1-D kernel (up to rounding).
    """
    half = (size - 1) / 2.0
    x = np.arange(-half, half + 1)
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def gaussian_2d(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)`` (with its ``eps·max`` cut-off)."""
    half = (size - 1) / 2.0
    y, x = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1), indexing="ij")
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def sep_filter(image: np.ndarray, kernel_1d: np.ndarray, mode: str) -> np.ndarray:
    """Correlate ``image`` with ``outer(k, k)`` (float64).

    mode ``"valid"``: only fully inside positions (output shrinks by ``len(k)-1``);
    ``"replicate"``: same size, replicated borders (MATLAB ``imfilter(..., 'replicate')``).
    """
    image = np.ascontiguousarray(image, dtype=np.float64)
    k = np.asarray(kernel_1d, dtype=np.float64)
    border = cv2.BORDER_REPLICATE if mode == "replicate" else cv2.BORDER_CONSTANT
    out = cv2.sepFilter2D(image, cv2.CV_64F, k, k, anchor=(-1, -1), delta=0, borderType=border)
    if mode == "valid":
        r = (len(k) - 1) // 2
        out = out[r:out.shape[0] - r, r:out.shape[1] - r]
    return out


def box_sum_valid(image: np.ndarray, size: int) -> np.ndarray:
    """Sum over every fully inside ``size×size`` window, float64 (exact for data on a binary grid
    such as integers or quarter-integers, where every partial sum is representable)."""
    image = np.ascontiguousarray(image, dtype=np.float64)
    out = cv2.boxFilter(image, cv2.CV_64F, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    r = (size - 1) // 2
    return out[r:out.shape[0] - r, r:out.shape[1] - r]


def correlate3(image: np.ndarray, kernel: np.ndarray, mode: str) -> np.ndarray:
    """3×3 correlation, same size. mode: ``"zero"`` (zero padding, as ``conv2(...,'same')``),
    ``"replicate"`` (MATLAB ``imfilter`` replicate), ``"mirror"`` (reflect without repeating the
    border sample: x[1], x[0], x[1], ...). Works in the input's float dtype."""
    pad_mode = {"zero": "constant", "replicate": "edge", "mirror": "reflect"}[mode]
    padded = np.pad(image, 1, mode=pad_mode)
    h, w = image.shape
    out = np.zeros_like(image)
    for dy in range(3):
        for dx in range(3):
            weight = kernel[dy][dx]
            if weight:
                out += image.dtype.type(weight) * padded[dy:dy + h, dx:dx + w]
    return out


def matlab_gradient(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``gradient``: central differences inside, one-sided at the borders. Returns (gx, gy)
    in the input dtype (gx along columns, gy along rows)."""
    gx = np.empty_like(image)
    gy = np.empty_like(image)
    gx[:, 0] = image[:, 1] - image[:, 0]
    gx[:, -1] = image[:, -1] - image[:, -2]
    gx[:, 1:-1] = (image[:, 2:] - image[:, :-2]) / 2
    gy[0, :] = image[1, :] - image[0, :]
    gy[-1, :] = image[-1, :] - image[-2, :]
    gy[1:-1, :] = (image[2:, :] - image[:-2, :]) / 2
    return gx, gy


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over all pixels (MATLAB ``corr2``), computed in the inputs' dtype.

    Returns a NumPy scalar of the input dtype (float32 stays float32, as in the CDDFuse evaluator).
    Defined as 0 when either image is constant (the references would return NaN).
    """
    dx = x - np.mean(x)
    dy = y - np.mean(y)
    den = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    if den == 0:
        return x.dtype.type(0)
    return np.sum(dx * dy) / den
