"""PMGI training recipe (Zhang et al., "Rethinking the image fusion: a fast unified image fusion network
based on proportional maintenance of gradient and intensity", AAAI 2020; spec ``methods.md`` section 8).

Network: :class:`pipeline.fusion.nets.pmgi.PMGINet` (the published layout, BN in training mode with
batch statistics). Not adversarial: the official code's discriminator is commented out. Per batch
(``params.yaml`` ``train.methods.pmgi``), with IR and VI crops scaled to [−1, 1] and ∇ the Laplacian
[[0,1,0],[1,−4,1],[0,1,0]] with zero 'SAME' padding, the **gradient-and-intensity proportional loss**::

    L = s·[ a·mean(F − IR)² + b·mean(F − VI)² + c·mean(∇F − ∇VI)² + d·mean(∇F − ∇IR)² ]

with s = ``loss_scale`` 100 and ``loss_weights`` {intensity_ir a: 1, intensity_vis b: 0.3,
gradient_vis c: 5, gradient_ir d: 4} (published). Adam ``lr`` 1e-4 (default betas), batch 32,
15 epochs (the flag's value; the released checkpoint is the one after epoch index 1).

Crops: the official network runs on the central 120×120 "label" windows of 132×132 patches cut at
stride 14 (SAME padding: 120 in, 120 out), so ``crop`` is 120 here and the 6-px margins, never seen
by the loss, are not cut. Not published: the training images (a Google Drive archive) and so the
patch count per image; every epoch takes ``crops_per_pair`` seeded random crops per pair (``full``:
100, about the stride-14 count of a 360×270 TNO image). ``shuffle`` is not stated in the spec;
``full`` keeps the sequential order of the same authors' FusionGAN code.

Logged per epoch (``losses.csv``): ``total`` and the four weighted-in terms ``intensity_ir``,
``intensity_vis``, ``gradient_vis``, ``gradient_ir`` (unweighted means) and ``g_std`` (std of the
fused batch on the [0, 1] scale; health signal). Previews and the health check fuse as the fusion
method ``{kind: pmgi, weights: trained}`` does (:mod:`pipeline.fusion.published_tf`): per-image BN
statistics with scale 1 / shift 0 (the official test graph), min–max stretch to 8 bits.
"""
from __future__ import annotations

import torch

from pipeline.errors import ConfigError
from pipeline.training.losses import laplacian, output_std
from pipeline.training.recipe import Recipe, register_recipe

TERMS = ("intensity_ir", "intensity_vis", "gradient_vis", "gradient_ir")


def check_terms(config, where: str, terms=TERMS) -> None:
    """``loss_weights`` must give a non-negative number for exactly ``terms``."""
    weights = config["loss_weights"]
    if not isinstance(weights, dict) or sorted(weights) != sorted(terms):
        raise ConfigError(f"{where}.loss_weights must map {', '.join(terms)} to weights, got {weights!r}")
    bad = [k for k, v in weights.items() if not isinstance(v, (int, float)) or v < 0]
    if bad:
        raise ConfigError(f"{where}.loss_weights.{bad[0]} must be a non-negative number, got {weights[bad[0]]!r}")


def proportional_loss(fused, ir, vis, weights, scale):
    """``(total, parts)`` of PMGI's gradient-and-intensity proportional loss (module docstring)."""
    grad_f = laplacian(fused)
    parts = {"intensity_ir": ((fused - ir) ** 2).mean(), "intensity_vis": ((fused - vis) ** 2).mean(),
             "gradient_vis": ((grad_f - laplacian(vis)) ** 2).mean(),
             "gradient_ir": ((grad_f - laplacian(ir)) ** 2).mean()}
    total = scale * sum(float(weights[k]) * v for k, v in parts.items())
    return total, parts


@register_recipe("pmgi")
class PMGIRecipe(Recipe):
    options = ("lr", "loss_scale", "loss_weights")
    loss_names = ("total", *TERMS, "g_std")
    health_keys = {"output_std": "g_std"}
    min_crop = 8

    @classmethod
    def check(cls, config, where):
        check_terms(config, where)

    def build(self):
        from pipeline.fusion.nets.pmgi import PMGINet

        self.net = PMGINet()
        self.nets = {"generator": self.net}
        self.opts = {"generator": torch.optim.Adam(self.net.parameters(), lr=float(self.config["lr"]))}

    def step(self, batch, index):
        ir, vis = batch["ir"] * 2 - 1, batch["vis"] * 2 - 1
        with self.ctx.autocast():
            fused = self.net(ir, vis).float()
        total, parts = proportional_loss(fused, ir, vis, self.config["loss_weights"], float(self.config["loss_scale"]))
        self.ctx.update("generator", total)
        return {"total": total.detach(), **{k: v.detach() for k, v in parts.items()},
                "g_std": output_std(fused, signed=True)}

    def fuse(self, ir, vis):
        from pipeline.fusion.nets.blocks import set_bn_mode

        set_bn_mode(self.net, "image_unit")
        try:
            return ((self.net(ir * 2 - 1, vis * 2 - 1) + 1) / 2)[0, 0].float().cpu().numpy()
        finally:
            set_bn_mode(self.net, None)

    def to_uint8(self, raw):
        from pipeline.fusion.trained import minmax_uint8

        return minmax_uint8(raw)

    def export(self, epoch):
        from pipeline.training.checkpoints import cpu_state

        return {"method": self.method, "epoch": epoch, "model": cpu_state(self.net)}
