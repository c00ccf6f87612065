"""Loss building blocks shared by the training recipes (FusionGAN, PMGI, MFF-GAN, UFGAN, DenseFuse).

* :func:`laplacian` — ∇ = [[0,1,0],[1,−4,1],[0,1,0]] with zero 'SAME' padding, the gradient operator
  of FusionGAN, PMGI, MFF-GAN and UFGAN (spec ``methods.md`` sections 8, 9, 11, 12);
* :func:`centre` — the centre crop of a patch ("labels" of the VALID-padded generators);
* :func:`noisy` — uniform LSGAN targets U(lo, hi), one per sample, fresh per call (torch RNG);
* :func:`lsgan` — mean (D(x) − U(lo, hi))², the least-squares GAN term with noisy labels
  (Mao et al., "Least squares generative adversarial networks", ICCV 2017);
* :func:`gaussian_window`, :func:`ssim_terms` (the one SSIM, conventions as arguments), :func:`ssim_map` /
  :func:`ssim` — SSIM (Wang et al., IEEE TIP 13(4), 2004) with an 11×11
  Gaussian window σ 1.5, C1 = (0.01 L)², C2 = (0.03 L)², 'valid' windows (no padding);
* :func:`output_std` — the health signal "standard deviation of the generator's batch" on the [0, 1]
  scale (:mod:`pipeline.training.health`).

Fixed kernels are plain tensors built per call, never parameters (nothing enters a state_dict).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def filter3(x: torch.Tensor, kernel) -> torch.Tensor:
    """Cross-correlation of an N×1×H×W tensor with a 3×3 ``kernel``, zero 'SAME' padding."""
    weight = torch.tensor(kernel, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    return F.conv2d(x, weight, padding=1)


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """Laplacian [[0,1,0],[1,−4,1],[0,1,0]] of an N×1×H×W tensor, zero 'SAME' padding."""
    return filter3(x, LAPLACIAN)


def centre(x: torch.Tensor, shrink: int) -> torch.Tensor:
    """The centre crop ``shrink`` px smaller per axis."""
    a = shrink // 2
    return x[..., a:x.shape[-2] - (shrink - a), a:x.shape[-1] - (shrink - a)]


def noisy(shape_like: torch.Tensor, bounds) -> torch.Tensor:
    """Uniform targets U(lo, hi), one per sample, from the torch RNG (fresh each call)."""
    lo, hi = float(bounds[0]), float(bounds[1])
    return torch.rand(shape_like.shape, device=shape_like.device, dtype=shape_like.dtype) * (hi - lo) + lo


def lsgan(scores: torch.Tensor, bounds) -> torch.Tensor:
    """mean (scores − U(lo, hi))² with fresh noisy targets."""
    return ((scores - noisy(scores, bounds)) ** 2).mean()


def label_accuracy(real_scores: torch.Tensor, fake_scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Fraction of real scores above and fake scores below ``threshold`` (mean of the two rates)."""
    return ((real_scores > threshold).float().mean() + (fake_scores < threshold).float().mean()) / 2


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float32,
                    device=None, normalise_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """2-D Gaussian SSIM window of shape 1×1×size×size: the one window builder of the trainers.

    1-D weights ``g[k] = exp(−(k − size//2)² / (2σ²))`` for k = 0…size−1, normalised to sum 1 in
    ``normalise_dtype`` (float32 as MLFuse's official code does; Diff-IF's recipe: float64); the 2-D
    window is the outer product ``g gᵀ``, cast to ``dtype``.
    """
    center = size // 2
    g = torch.tensor([math.exp(-((k - center) ** 2) / (2.0 * sigma ** 2)) for k in range(size)],
                     dtype=normalise_dtype)
    g = g / g.sum()
    return torch.outer(g, g).to(dtype=dtype, device=device).view(1, 1, size, size)


def ssim_terms(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, c1: float, c2: float,
               padding: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(SSIM map, contrast-structure map) of N×1×H×W tensors with ``window`` (Wang et al. 2004),
    the one SSIM of the trainers; the conventions that differ between the recipes are arguments::

        μx = w⋆x, μy = w⋆y, σx² = w⋆x² − μx², σy² = w⋆y² − μy², σxy = w⋆(xy) − μx μy
        cs = (2 σxy + C2) / (σx² + σy² + C2)
        SSIM = ((2 μx μy + C1)(2 σxy + C2)) / ((μx² + μy² + C1)(σx² + σy² + C2))

    ``padding``: 0 = 'valid' windows; ``size//2`` with zeros = MLFuse's convention (border
    statistics include the zeros). No clamping."""
    mu_x = F.conv2d(x, window, padding=padding)
    mu_y = F.conv2d(y, window, padding=padding)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sxx = F.conv2d(x * x, window, padding=padding) - mu_xx
    syy = F.conv2d(y * y, window, padding=padding) - mu_yy
    sxy = F.conv2d(x * y, window, padding=padding) - mu_xy
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return ((2 * mu_xy + c1) * (2 * sxy + c2)) / ((mu_xx + mu_yy + c1) * (sxx + syy + c2)), cs


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, size: int = 11,
             sigma: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(SSIM map, contrast-structure map) of N×1×H×W tensors, 'valid' Gaussian windows (the window
    shrinks to the image when the image is smaller), C1 = (0.01 L)², C2 = (0.03 L)²."""
    size = min(size, x.shape[-2], x.shape[-1])
    w = gaussian_window(size, sigma, x.dtype, x.device)
    return ssim_terms(x, y, w, (0.01 * data_range) ** 2, (0.03 * data_range) ** 2)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM over the batch and the valid windows."""
    return ssim_map(x, y, data_range)[0].mean()


def output_std(x: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """Standard deviation of a generator batch on the [0, 1] scale (``signed``: x in [−1, 1])."""
    x = x.detach().float()
    return ((x + 1) / 2 if signed else x).std()
