"""Diff-IF generator: noise schedule, denoiser + refiner, 4-step sampler (``../shared/spec/diffif.md``).

Yi, Tang, Zhang, Xu, Ma, "Diff-IF: multi-modality image fusion via diffusion model with fusion
knowledge prior", Information Fusion 2024 (102450). The module tree is the official
``GaussianDiffusion`` state dict (spec appendix ``diffif_state_dict_keys.tsv``: 12 schedule buffers,
``denoise_fn.*`` = :class:`~pipeline.fusion.nets.diffif_unet.UNet`, ``refinement_fn.*`` =
:class:`~pipeline.fusion.nets.diffif_refiner.Refiner`), so released checkpoints load strictly
(:func:`load_diffif`; the official loader's ``strict=False`` is not copied).

Schedule (§2.4): β linear from 1e-6 to 1e-2 over T = 1000 (float64, stored as float32 buffers),
ᾱ_t = ∏_{s≤t}(1 − β_s), e.g. ᾱ₂₄₉ = 0.731952; the network is conditioned on γ = √ᾱ.

Sampler (§2.7, DDIM-style with η = 1, 4 steps at t = 999, 749, 499, 249; ᾱ_prev = ᾱ of the next
step, 1 after the last): x_T ~ N(0, I);
  ε̂ = UNet([vis, ir, x_t], γ_t);  x̂₀ = clamp(x_t/√ᾱ_t − ε̂·√(1/ᾱ_t − 1), −1, 1);
  R = clamp(Refiner([vis, ir], x̂₀, γ_t), −1, 1);
  σ = η·√((1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev));  x_prev = √ᾱ_prev·R + √(1 − ᾱ_prev − σ²)·ε̂ + σ·z.
The output is the clamped refiner output of the last step (there √ᾱ_prev = 1 and σ = 0).
Deviation (spec §5.2 item 6): the noise comes from a generator seeded per image, so an image's
result does not depend on its position in the dataset.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from pipeline.errors import DataError
from pipeline.fusion.checkpoints import load_strict
from pipeline.fusion.nets.diffif_refiner import Refiner, RefinerConfig
from pipeline.fusion.nets.diffif_unet import UNet, UNetConfig
from pipeline.imageio import load_torch

T_STEPS = 1000
BETA_START, BETA_END = 1e-6, 1e-2
SAMPLE_STEPS = (999, 749, 499, 249)
N_DENOISER, N_REFINER = 22_377_073, 1_359_326
BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
           "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
           "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
           "posterior_mean_coef1", "posterior_mean_coef2")


@dataclass(frozen=True)
class DiffIFConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)

    def to_dict(self) -> dict:
        return {"unet": {**asdict(self.unet), "mults": list(self.unet.mults)},
                "refiner": {**asdict(self.refiner), "heads": list(self.refiner.heads)}}

    @classmethod
    def from_dict(cls, data: dict) -> "DiffIFConfig":
        unet = dict(data.get("unet") or {})
        refiner = dict(data.get("refiner") or {})
        if "mults" in unet:
            unet["mults"] = tuple(unet["mults"])
        if "heads" in refiner:
            refiner["heads"] = tuple(refiner["heads"])
        try:
            return cls(UNetConfig(**unet), RefinerConfig(**refiner))
        except TypeError as err:
            raise ValueError(f"bad Diff-IF architecture settings: {err}") from err


FAITHFUL = DiffIFConfig()
#: spec §4.3 "Diff-IF-lite" (a scaled-down VARIANT, not comparable with published numbers)
LITE = DiffIFConfig(UNetConfig(width=24, mults=(1, 2, 4, 4), res_blocks=1, groups=8),
                    RefinerConfig(width=16, blocks=1, refinement_blocks=1))


def schedule_arrays() -> dict[str, np.ndarray]:
    """The 12 float64 schedule arrays of the official ``GaussianDiffusion`` (§2.4)."""
    betas = np.linspace(BETA_START, BETA_END, T_STEPS, dtype=np.float64)
    alphas = 1.0 - betas
    ac = np.cumprod(alphas)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    return {"betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": np.sqrt(ac), "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
            "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac), "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
            "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac)}


@dataclass(frozen=True)
class Step:
    """One sampler step: timestep, ᾱ_t, ᾱ_prev and the coefficients derived from them (float64)."""

    t: int
    alpha: float
    alpha_prev: float
    eta: float = 1.0

    @property
    def gamma(self) -> float:
        return math.sqrt(self.alpha)

    @property
    def sigma(self) -> float:
        return self.eta * math.sqrt((1 - self.alpha_prev) / (1 - self.alpha) * (1 - self.alpha / self.alpha_prev))

    @property
    def direction(self) -> float:
        return math.sqrt(max(1 - self.alpha_prev - self.sigma ** 2, 0.0))


def sampler_steps(steps=SAMPLE_STEPS, eta: float = 1.0) -> list[Step]:
    ac = schedule_arrays()["alphas_cumprod"]
    prev = [float(ac[t]) for t in steps[1:]] + [1.0]
    return [Step(t, float(ac[t]), p, eta) for t, p in zip(steps, prev)]


class DiffIF(nn.Module):
    """The generator: schedule buffers + ``denoise_fn`` + ``refinement_fn`` (module docstring)."""

    def __init__(self, config: DiffIFConfig = FAITHFUL):
        super().__init__()
        self.config = config
        for name, values in schedule_arrays().items():
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32))
        self.denoise_fn = UNet(config.unet)
        self.refinement_fn = Refiner(config.refiner)

    def denoise(self, vis: torch.Tensor, ir: torch.Tensor, x_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return self.denoise_fn(torch.cat([vis, ir, x_t], dim=1), gamma)

    def refine(self, vis: torch.Tensor, ir: torch.Tensor, x0: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return self.refinement_fn(torch.cat([vis, ir], dim=1), x0, gamma).clamp(-1.0, 1.0)

    @torch.inference_mode()
    def sample(self, vis: torch.Tensor, ir: torch.Tensor, generator: torch.Generator | None = None,
               steps=SAMPLE_STEPS, eta: float = 1.0, trace: Callable | None = None) -> torch.Tensor:
        """The eager 4-step sampler (module docstring); ``vis``/``ir``: N×1×H×W in [−1, 1].
        ``trace(step, gamma, eps, x0, refined)`` is called after every step (tests)."""
        return run_sampler(self.denoise, self.refine, vis, ir, generator, steps, eta, trace)


def run_sampler(denoise: Callable, refine: Callable, vis: torch.Tensor, ir: torch.Tensor,
                generator: torch.Generator | None, steps=SAMPLE_STEPS, eta: float = 1.0,
                trace: Callable | None = None) -> torch.Tensor:
    """The sampler loop shared by the eager model and the fast path (same noise draws, same order:
    x_T first, then one z per step with σ > 0). ``generator`` may be a list, one per image of the
    batch, so a batched image gets exactly the noise it gets alone (seed per image)."""
    n = vis.shape[0]
    x = noise_like(vis, generator)
    refined = x
    for step in sampler_steps(steps, eta):
        gamma = torch.full((n,), step.gamma, dtype=vis.dtype, device=vis.device)
        eps = denoise(vis, ir, x, gamma)
        x0 = (x * (1.0 / math.sqrt(step.alpha)) - eps * math.sqrt(1.0 / step.alpha - 1.0)).clamp(-1.0, 1.0)
        refined = refine(vis, ir, x0, gamma)
        if trace is not None:
            trace(step, gamma, eps, x0, refined)
        if step.alpha_prev == 1.0:
            break                                   # last step: the output is R itself
        x = math.sqrt(step.alpha_prev) * refined + step.direction * eps
        if step.sigma > 0:
            z = noise_like(vis, generator)
            x = x + step.sigma * z
    return refined


def noise_like(x: torch.Tensor, generator) -> torch.Tensor:
    """N(0, I) noise of ``x``'s shape drawn on the CPU from ``generator`` (or one generator per image)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != x.shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]}")
        z = torch.cat([torch.randn((1, *x.shape[1:]), generator=g, dtype=x.dtype) for g in generator])
    else:
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu")
    return z.to(x.device)


def orthogonal_init(model: nn.Module) -> None:
    """Official initialisation (§2.6): orthogonal (gain 1) Conv/Linear weights, zero biases."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(module.weight, gain=1)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def count_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def read_checkpoint(path: str | Path) -> tuple[OrderedDict, DiffIFConfig, float]:
    """(state_dict, architecture, sampling scale) of a Diff-IF checkpoint read with
    ``weights_only=True``: a bare state dict (the official ``*_gen.pth`` layout: faithful
    architecture, scale 1) or this pipeline's ``{"model": state_dict, "arch":
    DiffIFConfig.to_dict(), "scale": s, ...}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError("Diff-IF weights file not found (official weights are not downloaded: "
                        "put IVF_weights_gen.pth somewhere and give its path)", path)
    obj = load_torch(path, "checkpoint")
    if not isinstance(obj, dict):
        raise DataError("not a Diff-IF checkpoint (expected a state_dict)", path)
    arch, scale = FAITHFUL, 1.0
    if "model" in obj and isinstance(obj["model"], dict):
        try:
            arch = DiffIFConfig.from_dict(obj.get("arch") or {})
        except ValueError as err:
            raise DataError(str(err), path) from err
        scale = float(obj.get("scale", 1.0))
        obj = obj["model"]
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError("not a Diff-IF checkpoint (state_dict values must be tensors)", path)
    return OrderedDict(obj), arch, scale


def build_diffif(state: dict, arch: DiffIFConfig, path: str | Path,
                 device: str | torch.device = "cpu") -> DiffIF:
    """The generator of ``arch`` with ``state`` (read from ``path``) loaded strictly, eval mode on ``device``."""
    return load_strict(DiffIF(arch), state, path, "Diff-IF").to(device).eval()


def load_diffif(path: str | Path, device: str | torch.device = "cpu",
                expect: DiffIFConfig | None = None) -> DiffIF:
    """Build the generator of the checkpoint's architecture, load it strictly, eval mode on ``device``.
    ``expect``: the architecture the caller requires (DataError when the checkpoint is another)."""
    state, arch, _ = read_checkpoint(path)
    if expect is not None and arch != expect:
        raise DataError(f"checkpoint holds another Diff-IF architecture ({arch.to_dict()}) than the "
                        f"method needs ({expect.to_dict()})", path)
    return build_diffif(state, arch, path, device)


def step_gflops(config: DiffIFConfig, height: int, width: int) -> tuple[float, float]:
    """(denoiser, refiner) GFLOPs of one pass at H×W, counted by ``torch.utils.flop_counter`` on meta
    tensors (a multiply-add counts 2; convolutions and matrix products only, as spec §4)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = DiffIF(config).to("meta").eval()
    x = torch.empty(1, 1, height, width, device="meta")
    gamma = torch.empty(1, device="meta")
    out = []
    for call in (lambda: model.denoise(x, x, x, gamma),
                 lambda: model.refinement_fn(torch.empty(1, 2, height, width, device="meta"), x, gamma)):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            call()
        out.append(counter.get_total_flops() / 1e9)
    return out[0], out[1]
