"""MFF-GAN training recipe, multi-focus (Zhang et al., "MFF-GAN: an unsupervised generative adversarial
network with adaptive and gradient joint constraints for multi-focus image fusion", Information Fusion
66, 2021; spec ``methods.md`` section 11).

Networks: the generator :class:`pipeline.fusion.nets.mff_gan.MFFGANNet` (PMGI's two-path layout, no
BN; first path = near focus, second = far focus) and the FusionGAN discriminator layout without
spectral norm (:class:`pipeline.fusion.nets.fusiongan.Discriminator`). Training pairs come from the
generic ``pairs`` dataset kind: ``ir`` = **far** focus, ``vis`` = **near** focus (the fusion method
``{kind: mff_gan}`` reads them the same way). Values in [−1, 1]. Per batch, the FusionGAN update
schedule (:class:`~pipeline.training.methods.fusiongan.FusionGANRecipe`) with MFF-GAN's terms:

* **sharpness map** from a low-pass residual: with b the 3×3 kernel [[0.0947, 0.1183, 0.0947],
  [0.1183, 0.1478, 0.1183], [0.0947, 0.1183, 0.0947]] applied twice (zero 'SAME' padding),
  far_score = 1 where |far − b(b(far))| > |near − b(b(near))| (ties → near), near_score = 1 − far_score
  (:func:`focus_scores`; no gradient flows through it);
* **adaptive** intensity and **gradient** joint constraints (∇ the Laplacian)::

      L_int  = mean(far_score·(F − far)²) + mean(near_score·(F − near)²)
      L_grad = mean(far_score·(∇F − ∇far)²) + mean(near_score·(∇F − ∇near)²)
      L_G    = LSGAN(D(|∇F|), U(0.7, 1.2)) + λ·(L_int + ξ·L_grad)        λ = 10, ξ = 5

* the discriminator tells max(|∇far|, |∇near|) (real) from |∇F| (fake), ``d_steps`` 2 updates per
  generator update.

Published: 60×60 patches at stride 10, batch 32, 20 epochs, Adam 1e-4 (both nets). Not in the spec:
the discriminator's label ranges (FusionGAN's a = U(0, 0.3), b = c = U(0.7, 1.2) chosen, same
authors' code lineage); the patch count per image (``crops_per_pair`` random crops; ``full`` 100) and
the batch order (sequential chosen). Logged: FusionGAN's columns (``g_intensity``/``g_gradient`` are
L_int/L_grad) plus ``far_share`` (mean far_score: how much of the batch the map gives the far image).
"""
from __future__ import annotations

import torch

from pipeline.training.losses import filter3, laplacian
from pipeline.training.methods.fusiongan import FusionGANRecipe
from pipeline.training.recipe import register_recipe

BLUR = ((0.0947, 0.1183, 0.0947), (0.1183, 0.1478, 0.1183), (0.0947, 0.1183, 0.0947))


def focus_scores(near: torch.Tensor, far: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(near_score, far_score)`` 0/1 maps from the low-pass residuals (module docstring)."""
    with torch.no_grad():
        def residual(x):
            return (x - filter3(filter3(x, BLUR), BLUR)).abs()

        far_score = (residual(far) > residual(near)).to(near.dtype)
    return 1 - far_score, far_score


def joint_constraints(fused, near, far, near_score, far_score):
    """``(L_int, L_grad)`` weighted by the sharpness map."""
    intensity = (far_score * (fused - far) ** 2).mean() + (near_score * (fused - near) ** 2).mean()
    grad_f = laplacian(fused)
    gradient = (far_score * (grad_f - laplacian(far)) ** 2).mean() + (near_score * (grad_f - laplacian(near)) ** 2).mean()
    return intensity, gradient


@register_recipe("mff_gan")
class MFFGANRecipe(FusionGANRecipe):
    options = ("lr_g", "lr_d", "d_steps", "content_weight", "gradient_weight", "real_label", "fake_label")
    loss_names = (*FusionGANRecipe.loss_names, "far_share")
    min_crop = 31  # four stride-2 VALID 3×3 convs in the discriminator

    def build(self):
        import numpy as np

        from pipeline.fusion.nets.fusiongan import Discriminator
        from pipeline.fusion.nets.mff_gan import MFFGANNet

        c = self.config
        self.generator = MFFGANNet()
        self.shrink = 0
        self.nets = {"generator": self.generator,
                     "discriminator": Discriminator(c["crop"], spectral_norm=False)}
        self.opts = {"generator": torch.optim.Adam(self.generator.parameters(), lr=float(c["lr_g"])),
                     "discriminator": torch.optim.Adam(self.nets["discriminator"].parameters(), lr=float(c["lr_d"]))}
        self.threshold = (np.mean(c["real_label"]) + np.mean(c["fake_label"])) / 2

    def inputs(self, batch):
        near, far = batch["vis"] * 2 - 1, batch["ir"] * 2 - 1
        near_score, far_score = focus_scores(near, far)
        self.far_share = far_score.mean()
        return {"near": near, "far": far, "near_score": near_score, "far_score": far_score}

    def generate(self, x):
        return self.generator(x["near"], x["far"])

    def real_for_d(self, x):
        return torch.maximum(laplacian(x["far"]).abs(), laplacian(x["near"]).abs())

    def fake_for_d(self, fused):
        return laplacian(fused).abs()

    def content(self, fused, x):
        intensity, gradient = joint_constraints(fused, x["near"], x["far"], x["near_score"], x["far_score"])
        return intensity + float(self.config["gradient_weight"]) * gradient, {"g_intensity": intensity,
                                                                               "g_gradient": gradient}

    def step(self, batch, index):
        return {**super().step(batch, index), "far_share": self.far_share}

    def fuse(self, ir, vis):
        """As the fusion method ``{kind: mff_gan}``: near = vis, far = ir, tanh output on [0, 1]."""
        return ((self.generator(vis * 2 - 1, ir * 2 - 1) + 1) / 2)[0, 0].float().cpu().numpy()

    def export(self, epoch):
        from pipeline.training.checkpoints import cpu_state

        return {"method": self.method, "epoch": epoch, "model": cpu_state(self.generator)}
