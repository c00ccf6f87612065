"""MLFuse training (spec ``mlfuse.md`` sections 10-11): the four losses and the published recipe.

Recipe (:class:`MLFuseRecipe`, keys of ``params.yaml`` ``train.methods.mlfuse``): batch 16 of aligned
random 128×128 crops, model in training mode throughout, Adam (``lr`` 1e-4, betas (0.9, 0.999), eps 1e-8,
``weight_decay`` 5e-5 coupled as L2 on every parameter), cosine annealing over ``T_max = epochs`` to 0
stepped after every epoch, 501 epochs, the four losses below with ``loss_weights`` 0.3 / 3 / 0.5 / 1;
``vsm_bits`` 8 quantises the VSM maps as the official 8-bit PNGs were (null: float maps); ``vsm_root``
is the VSM stage's output; ``init`` = ``scratch`` (seeded default init) or fine-tuning from
``official`` / ``trained`` / a checkpoint path (:func:`pipeline.fusion.mlfuse.resolve_weights`).
The final checkpoint keeps the official layout ``{"epoch", "model"}`` of ``model_fuse.pth``.

Losses:

The network returns ``(f, l_edg, l_cmk, l_ssd)``: the fused image and three auxiliary tanh heads.
Each loss reads exactly one of them (all "means" are over every element of the N×1×H×W batch):

* :func:`edge_loss`        — edge head ``l_edg`` vs img1:        ``mean |S(l_edg) − S(img1)|``
* :func:`saliency_loss`    — spatial-spectral head ``l_ssd`` vs img2, weighted by M = VSM(img2):
  ``mean |M⊙l_ssd − M⊙img2|``
* :func:`cross_modal_loss` — cross-modal head ``l_cmk`` vs both: ``mean (l_cmk−img1)² + mean (l_cmk−img2)²``
* :func:`fusion_loss`      — fused output ``f`` vs both:        ``0.1·[(1−SSIM(img1,f))/2 + (1−SSIM(img2,f))/2]``

and :func:`mlfuse_loss` combines them with the published weights 0.3 / 3 / 0.5 / 1
(:data:`LOSS_WEIGHTS`). S is the Sobel magnitude :func:`sobel_magnitude`; SSIM is :func:`ssim`
(Wang et al., "Image quality assessment: from error visibility to structural similarity",
IEEE TIP 13(4), 2004) with the MLFuse settings: 11×11 Gaussian window σ = 1.5, zero padding 5,
C1 = 0.01², C2 = 0.03², no clamping. The fixed kernels are plain tensors built per call (never
parameters or persistent buffers), so nothing here enters a state_dict (spec section 11, item 2).
Reference: Sun et al., MLFuse (GitHub ``jialei-sc/MLFuse``); the formulas here follow the spec.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
import torch.nn.functional as F

from pipeline.errors import ConfigError
from pipeline.training.losses import gaussian_window, ssim_terms
from pipeline.training.recipe import Recipe, register_recipe

#: Published loss weights: L = 0.3·L_edg + 3·L_ssd + 0.5·L_cmk + 1·L_fus.
LOSS_WEIGHTS: dict[str, float] = {"edge": 0.3, "saliency": 3.0, "cross_modal": 0.5, "fusion": 1.0}
#: Names of the four losses in the order they are logged.
LOSS_NAMES: tuple[str, ...] = tuple(LOSS_WEIGHTS)

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
FUSION_SCALE = 0.1

# Sobel kernels (cross-correlation, as torch.conv2d applies them).
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """L1 Sobel gradient magnitude ``S(I) = |Kx ⋆ I| + |Ky ⋆ I|`` of an N×1×H×W tensor.

    ``Kx = [[-1,0,1],[-2,0,2],[-1,0,1]]``, ``Ky = [[1,2,1],[0,0,0],[-1,-2,-1]]``, cross-correlation
    with zero padding 1 (output has the input's size). The kernels are fixed, not learned.
    """
    _check_single_channel(image)
    kernels = torch.tensor((_SOBEL_X, _SOBEL_Y), dtype=image.dtype, device=image.device)
    kx, ky = kernels[0].view(1, 1, 3, 3), kernels[1].view(1, 1, 3, 3)
    return F.conv2d(image, kx, padding=1).abs() + F.conv2d(image, ky, padding=1).abs()


def ssim(a: torch.Tensor, b: torch.Tensor, window_size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
         c1: float = SSIM_C1, c2: float = SSIM_C2) -> torch.Tensor:
    """Mean SSIM of two N×1×H×W tensors (Wang et al. 2004), as MLFuse computes it.

    With ``w`` the Gaussian window (:func:`gaussian_window`) applied as a convolution with **zero
    padding** ``window_size//2`` (border statistics include the zeros)::

        μa = w⋆a, μb = w⋆b, σa² = w⋆a² − μa², σb² = w⋆b² − μb², σab = w⋆(ab) − μa μb
        SSIM = ((2 μa μb + C1)(2 σab + C2)) / ((μa² + μb² + C1)(σa² + σb² + C2))

    averaged over every element. Data range 1 is assumed (C1 = 0.01², C2 = 0.03²); no clamping.
    """
    _check_single_channel(a)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    window = gaussian_window(window_size, sigma, dtype=a.dtype, device=a.device)
    return ssim_terms(a, b, window, c1, c2, padding=window_size // 2)[0].mean()


def edge_loss(edge_head: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
    """Edge loss on the edge head: ``L_edg = mean |S(l_edg) − S(img1)|`` (S = :func:`sobel_magnitude`)."""
    return (sobel_magnitude(edge_head) - sobel_magnitude(img1)).abs().mean()


def saliency_loss(ssd_head: torch.Tensor, img2: torch.Tensor, vsm2: torch.Tensor) -> torch.Tensor:
    """Saliency loss on the spatial-spectral head: ``L_ssd = mean |M⊙l_ssd − M⊙img2|``.

    ``M`` = ``vsm2``, the visual saliency map of img2 in [0, 1] (computed on the full image and
    cropped like the images). The VSM of img1 is not used by any loss.
    """
    return (vsm2 * ssd_head - vsm2 * img2).abs().mean()


def cross_modal_loss(cmk_head: torch.Tensor, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
    """Cross-modal loss on the cross-modal head: ``L_cmk = mean (l_cmk − img1)² + mean (l_cmk − img2)²``."""
    return F.mse_loss(cmk_head, img1) + F.mse_loss(cmk_head, img2)


def fusion_loss(fused: torch.Tensor, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
    """SSIM fusion loss on the fused output: ``L_fus = 0.1·[(1 − SSIM(img1, f))/2 + (1 − SSIM(img2, f))/2]``."""
    return FUSION_SCALE * ((1 - ssim(img1, fused)) / 2 + (1 - ssim(img2, fused)) / 2)


class LossTerms(NamedTuple):
    """Weighted total and the four unweighted losses of one batch."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


def mlfuse_loss(outputs, img1: torch.Tensor, img2: torch.Tensor, vsm2: torch.Tensor,
                weights: Mapping[str, float] | None = None) -> LossTerms:
    """Total MLFuse loss ``L = 0.3·L_edg + 3·L_ssd + 0.5·L_cmk + 1·L_fus`` of one batch.

    ``outputs`` is the network's 4-tuple ``(f, l_edg, l_cmk, l_ssd)`` (spec section 3, step 5).
    ``weights`` overrides :data:`LOSS_WEIGHTS` (keys edge, saliency, cross_modal, fusion; missing keys
    keep the published value). Returns the total and the four unweighted terms.
    """
    fused, l_edg, l_cmk, l_ssd = outputs
    w = resolve_weights(weights)
    parts = {
        "edge": edge_loss(l_edg, img1),
        "saliency": saliency_loss(l_ssd, img2, vsm2),
        "cross_modal": cross_modal_loss(l_cmk, img1, img2),
        "fusion": fusion_loss(fused, img1, img2),
    }
    total = sum(w[name] * parts[name] for name in LOSS_NAMES)
    return LossTerms(total, parts)


def resolve_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """Published weights overridden by ``weights``; unknown names raise :class:`ConfigError`."""
    unknown = set(weights or {}) - set(LOSS_WEIGHTS)
    if unknown:
        raise ConfigError(f"train.methods.mlfuse.loss_weights: unknown loss name(s) {sorted(unknown)}; "
                          f"expected {list(LOSS_NAMES)}")
    return {**LOSS_WEIGHTS, **{k: float(v) for k, v in (weights or {}).items()}}


def _check_single_channel(image: torch.Tensor) -> None:
    if image.dim() != 4 or image.shape[1] != 1:
        raise ValueError(f"expected an N×1×H×W tensor, got shape {tuple(image.shape)}")


@register_recipe("mlfuse")
class MLFuseRecipe(Recipe):
    """MLFNet with the published recipe (module docstring); img1 = ``vis``, img2 = ``ir``."""

    options = ("init", "lr", "weight_decay", "vsm_bits", "loss_weights", "vsm_root")
    maps = ("vsm_ir",)
    loss_names = ("total", *LOSS_NAMES)
    min_crop = 15  # MLFNet's smallest input

    @classmethod
    def check(cls, config, where):
        resolve_weights(config["loss_weights"])

    def build(self) -> None:
        from pipeline.fusion.mlfuse import resolve_weights as weights_path
        from pipeline.fusion.mlfuse_net import MLFNet, load_mlfnet

        init = str(self.config["init"])
        model = MLFNet() if init == "scratch" else load_mlfnet(weights_path(init))
        self.weights = resolve_weights(self.config["loss_weights"])
        self.nets = {"model": model}
        self.opts = {"model": torch.optim.Adam(model.parameters(), lr=float(self.config["lr"]),
                                               weight_decay=float(self.config["weight_decay"]))}
        self.schedulers = {"model": torch.optim.lr_scheduler.CosineAnnealingLR(
            self.opts["model"], T_max=int(self.config["epochs"]), eta_min=0.0)}

    def step(self, batch, index):
        """Forward (autocast on CUDA with amp), the four losses in float32, one Adam update."""
        img1, img2, vsm2 = batch["vis"], batch["ir"], batch["vsm_ir"]
        with self.ctx.autocast():
            outputs = self.nets["model"](img1, img2)
        terms = mlfuse_loss([o.float() for o in outputs], img1, img2, vsm2, self.weights)
        self.ctx.update("model", terms.total)
        return {"total": terms.total.detach(), **{k: v.detach() for k, v in terms.parts.items()}}

    def fuse(self, ir, vis):
        """Eval-mode MLFNet output f (raw tanh image) of one pair."""
        model = self.nets["model"].eval()
        return model(vis, ir)[0][0, 0].float().cpu().numpy()

    def to_uint8(self, raw):
        from pipeline.fusion.mlfuse import to_uint8_official  # min-max, ×255, truncate (spec section 8)

        return to_uint8_official(raw)

    def export(self, epoch):
        from pipeline.training.checkpoints import cpu_state

        return {"epoch": epoch, "model": cpu_state(self.nets["model"])}
