"""Diff-IF training recipe (Yi et al., Information Fusion 2024; spec ``diffif.md`` §2.4-2.6).

Networks: :mod:`pipeline.fusion.nets.diffif` (``arch``: ``faithful`` = the released configs, ``lite`` =
the §4.3 "Diff-IF-lite" VARIANT, or ``{unet: {...}, refiner: {...}}`` for another labelled variant).
Data: the trainer's aligned random crops of vis, ir and the prior stage's Fusion_K image (map
``prior``, read from ``prior_root``), as 8-bit luma scaled to [−1, 1]; then a random horizontal and a
random vertical flip per sample, the same for the three images (torch RNG: resumable). One iteration
(one Adam over both networks, lr 1e-4, default betas, no schedule, no EMA):

1. one t uniform in 1…1000 per batch; per sample γ ~ U(√ᾱ_{t−2}, √ᾱ_{t−1}) (0-based, ᾱ_{−1} = 1);
   x_t = γ·x₀ + √(1−γ²)·ε with x₀ = Fusion_K;
2. ε̂ = denoiser([vis, ir, x_t], γ); ``eps`` = mean|ε̂ − ε|;
3. x̂₀ = clamp(x_t/√ᾱ − ε̂·√(1/ᾱ − 1)) with the *discrete* ᾱ at index t−1 (the official mismatch),
   **detached**, so the refinement losses never reach the denoiser;
4. R = clamp(refiner([vis, ir], x̂₀, γ), −1, 1) (zero gradient where clamped);
   ``x0`` = mean|R − Fusion_K|; ``intensity`` = mean|R − max(vis, ir)|;
   ``gradient`` = mean|(|∂x R| + |∂y R|) − (max(|∂x vis|, |∂x ir|) + max(|∂y vis|, |∂y ir|))| with
   unnormalised 3×3 Sobel by cross-correlation after 1-px replicate padding;
   ``ssim`` = (1 − SSIM(R, vis)) + (1 − SSIM(R, ir)): 64×64 Gaussian window σ 1.5, valid filtering,
   E[x²] − E[x]², C = (0.01 L)², (0.03 L)² with L guessed from R per call (255 if max R > 128 else 1,
   minus −1 if min R < −0.5 else 0);
5. total = 8·eps + 2·x0 + 4·intensity + 5·gradient + 1·ssim (``loss_weights``).

``scale`` (1 = faithful) < 1 trains on area-downsampled crops and makes the method sample at that
fraction of the image size (a VARIANT for the CPU demo; exported in the checkpoint).

Iterations: the trainer counts epochs; ``full`` sets ``epochs × ⌊pairs·crops_per_pair/batch⌋`` to the
published 40K (MSRS train, 1083 pairs, 16 crops each, batch 16: 1083 batches × 37 epochs = 40,071).
Previews and the health check run the 4-step sampler (seed 1 per image) on reflect-padded full images.
The export ``{"method", "model", "arch", "variant", "epoch"}`` loads with
:func:`pipeline.fusion.nets.diffif.load_diffif` (strict).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import ConfigError
from pipeline.training import losses
from pipeline.training.recipe import Recipe, register_recipe

LOSS_KEYS = ("eps", "x0", "intensity", "gradient", "ssim")
SSIM_WINDOW, SSIM_SIGMA = 64, 1.5
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
PREVIEW_SEED = 1


def resolve_arch(arch):
    """``faithful`` | ``lite`` | ``{unet, refiner}`` -> :class:`DiffIFConfig` (ValueError otherwise)."""
    from pipeline.fusion.nets.diffif import FAITHFUL, LITE, DiffIFConfig

    if arch == "faithful":
        return FAITHFUL
    if arch == "lite":
        return LITE
    if isinstance(arch, dict):
        return DiffIFConfig.from_dict(arch)
    raise ValueError(f"arch must be faithful, lite or {{unet: ..., refiner: ...}}, got {arch!r}")


def variant_label(config) -> str:
    from pipeline.fusion.nets.diffif import FAITHFUL, LITE

    return "faithful" if config == FAITHFUL else "lite" if config == LITE else "custom variant"


def sobel_abs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(|∂x|, |∂y|) of N×1×H×W by unnormalised Sobel cross-correlation, replicate padding 1."""
    kx = torch.tensor(SOBEL_X, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kx).abs(), F.conv2d(padded, kx.transpose(-1, -2)).abs()


def gradient_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    fx, fy = sobel_abs(fused)
    vx, vy = sobel_abs(vis)
    ix, iy = sobel_abs(ir)
    return ((fx + fy) - (torch.maximum(vx, ix) + torch.maximum(vy, iy))).abs().mean()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype=torch.float32, device=None):
    """The SSIM window of this recipe: :func:`pipeline.training.losses.gaussian_window`, 64×64 σ 1.5,
    normalised in float64."""
    return losses.gaussian_window(size, sigma, dtype=dtype, device=device, normalise_dtype=torch.float64)


def ssim(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Mean SSIM map (:func:`pipeline.training.losses.ssim_terms`, valid filtering) with the dynamic
    range guessed from ``x`` (module docstring)."""
    upper = 255.0 if float(x.detach().max()) > 128 else 1.0
    lower = -1.0 if float(x.detach().min()) < -0.5 else 0.0
    big_l = upper - lower
    return losses.ssim_terms(x, y, window, (0.01 * big_l) ** 2, (0.03 * big_l) ** 2)[0].mean()


def flip_batch(tensors: list[torch.Tensor], generator=None) -> list[torch.Tensor]:
    """Random horizontal and vertical flips per sample, the same for every tensor (torch RNG)."""
    n = tensors[0].shape[0]
    h = (torch.rand(n, generator=generator) < 0.5).view(n, 1, 1, 1).to(tensors[0].device)
    v = (torch.rand(n, generator=generator) < 0.5).view(n, 1, 1, 1).to(tensors[0].device)
    out = []
    for t in tensors:
        t = torch.where(h, t.flip(-1), t)
        out.append(torch.where(v, t.flip(-2), t))
    return out


def pad8(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad H and W up to multiples of 8 (spec §2.7 option (a)); returns the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % 8, (-w) % 8
    return (F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x), (h, w)


@register_recipe("diffif")
class DiffIFRecipe(Recipe):
    options = ("arch", "lr", "loss_weights", "prior_root", "scale")
    maps = ("prior",)
    map_root = "prior_root"
    loss_names = ("total", *LOSS_KEYS, "out_std")
    health_keys = {"output_std": "out_std"}
    min_crop = SSIM_WINDOW          # the SSIM loss filters with a valid 64×64 window
    code_modules = ("pipeline.fusion.nets.diffif",)

    @classmethod
    def check(cls, config, where):
        try:
            resolve_arch(config["arch"])
        except ValueError as err:
            raise ConfigError(f"{where}.arch: {err}") from err
        weights = config["loss_weights"]
        if not isinstance(weights, dict) or sorted(weights) != sorted(LOSS_KEYS):
            raise ConfigError(f"{where}.loss_weights must give {list(LOSS_KEYS)}, got {weights!r}")
        scale = config["scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
            raise ConfigError(f"{where}.scale must be in (0, 1], got {scale!r}")
        side = config["crop"] * scale
        if side != int(side) or int(side) % 8 or side < SSIM_WINDOW:
            raise ConfigError(f"{where}.crop × scale must be a multiple of 8 (the U-Net downsamples 3 "
                              f"times) and at least {SSIM_WINDOW} (the SSIM window), got {side:g}")

    def build(self):
        from pipeline.fusion.nets.diffif import DiffIF, orthogonal_init

        self.arch = resolve_arch(self.config["arch"])
        self.model = DiffIF(self.arch)
        orthogonal_init(self.model)
        self.nets = {"generator": self.model}
        self.opts = {"generator": torch.optim.Adam(self.model.parameters(), lr=float(self.config["lr"]))}
        self.weights = {k: float(v) for k, v in self.config["loss_weights"].items()}
        self._window = None
        self.scale = float(self.config["scale"])

    def _sqrt_prev(self) -> torch.Tensor:
        """√ᾱ with ᾱ_{−1} = 1 prepended (length 1001, float64 on CPU)."""
        from pipeline.fusion.nets.diffif import schedule_arrays

        return torch.from_numpy(np.sqrt(np.append(1.0, schedule_arrays()["alphas_cumprod"])))

    def step(self, batch, index):
        model = self.model
        images = [batch[k] * 2 - 1 for k in ("vis", "ir", "prior")]
        if self.scale != 1:
            images = [F.interpolate(x, scale_factor=self.scale, mode="area") for x in images]
        vis, ir, target = flip_batch(images)
        n, device = vis.shape[0], vis.device
        t = int(torch.randint(1, 1001, (1,)).item())
        sqrt_prev = self._sqrt_prev()
        lo, hi = float(sqrt_prev[t - 1]), float(sqrt_prev[t])
        gamma = (torch.rand(n, dtype=torch.float64) * (hi - lo) + lo).to(device=device, dtype=vis.dtype)
        noise = torch.randn(vis.shape, dtype=vis.dtype).to(device)
        g = gamma.view(n, 1, 1, 1)
        x_t = g * target + torch.sqrt(1 - g ** 2) * noise
        with self.ctx.autocast():
            eps_hat = model.denoise(vis, ir, x_t, gamma).float()
        alpha = float(model.alphas_cumprod[t - 1])
        x0 = (x_t / math.sqrt(alpha) - eps_hat * math.sqrt(1.0 / alpha - 1.0)).clamp(-1.0, 1.0).detach()
        with self.ctx.autocast():
            refined = model.refinement_fn(torch.cat([vis, ir], dim=1), x0, gamma).float().clamp(-1.0, 1.0)
        if self._window is None or self._window.device != refined.device:
            self._window = gaussian_window(device=refined.device)
        parts = {"eps": (eps_hat - noise).abs().mean(),
                 "x0": (refined - target).abs().mean(),
                 "intensity": (refined - torch.maximum(vis, ir)).abs().mean(),
                 "gradient": gradient_loss(refined, vis, ir),
                 "ssim": (1 - ssim(refined, vis, self._window)) + (1 - ssim(refined, ir, self._window))}
        total = sum(self.weights[k] * v for k, v in parts.items())
        self.ctx.update("generator", total)
        return {"total": total.detach(), **{k: v.detach() for k, v in parts.items()},
                "out_std": ((refined.detach() + 1) / 2).std()}

    def fuse(self, ir, vis):
        """The 4-step sampler on reflect-padded inputs (seed 1), cropped back; [0, 1] scale."""
        model = self.model
        model.eval()
        size = tuple(vis.shape[-2:])
        if self.scale != 1:
            ir, vis = (F.interpolate(t, scale_factor=self.scale, mode="area") for t in (ir, vis))
        (v, inner), (i, _) = pad8(vis * 2 - 1), pad8(ir * 2 - 1)
        generator = torch.Generator().manual_seed(PREVIEW_SEED)
        out = model.sample(v.contiguous(), i.contiguous(), generator)[..., :inner[0], :inner[1]]
        if self.scale != 1:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False).clamp(-1, 1)
        return ((out + 1) / 2)[0, 0].float().cpu().numpy()

    def export(self, epoch):
        from pipeline.training.checkpoints import cpu_state

        return {"method": "diffif", "epoch": epoch, "arch": self.arch.to_dict(),
                "variant": variant_label(self.arch) if self.scale == 1 else f"{variant_label(self.arch)}, scale {self.scale:g}",
                "scale": self.scale, "model": cpu_state(self.model)}
