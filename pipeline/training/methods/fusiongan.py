"""FusionGAN training recipe (Ma et al., Information Fusion 2019; spec ``methods.md`` section 9).

Networks: :mod:`pipeline.fusion.nets.fusiongan`. Per batch (``params.yaml`` ``train.methods.fusiongan``):

* inputs: IR and VI crops of ``crop`` px (published 132) scaled to [−1, 1]; the generator maps them to
  ``crop − 12`` px (120); the "labels" are the centre ``crop − 12`` crops of the same patches;
* ``d_steps`` (published 2) discriminator updates, each with fresh noisy LSGAN targets drawn per sample
  (labels a = U(``fake_label``) = U(0, 0.3) for fused patches, b = U(``real_label``) = U(0.7, 1.2) for
  visible patches; the discriminator sees the visible image as "real")::

      L_D = mean(D(VI_label) − b)² + mean(D(F) − a)²

* one generator update (label c = U(``real_label``): the generator wants D to call F visible)::

      L_G = mean(D(F) − c)² + λ·[mean(F − IR_label)² + ξ·mean(∇F − ∇VI_label)²]

  with λ = ``content_weight`` (100), ξ = ``gradient_weight`` (5) and ∇ the Laplacian
  [[0,1,0],[1,−4,1],[0,1,0]] with zero 'SAME' padding;
* Adam (``lr_g``, ``lr_d``: both 1e-4 published; default betas), batch 32, 10 epochs, sequential
  (unshuffled) batches: ``shuffle: false``.

Logged per epoch (``losses.csv``): ``g_total``, ``g_adv``, ``g_content``, ``g_intensity``,
``g_gradient``, ``d_total``, ``d_real``, ``d_fake`` and the health signals ``d_acc`` (fraction of
visible patches scored above and fused patches scored below the midpoint of the two label ranges,
over the last discriminator step) and ``g_std`` (std of the fused batch on the [0, 1] scale).

Deliberate differences: the published patches are cut at stride 14 from 45 TNO pairs (not in the
repository); here every epoch takes ``crops_per_pair`` seeded random crops per pair (the count of
patches per image is not published; ``full`` uses 100, roughly the stride-14 count of a 360×270
TNO image at 132 px). The discriminator's linear layer has no spectral norm (the spec lists it for
the convolutions only). ``widths`` (the generator's channels, published 256/128/64/32) is a param so
the demo can train a narrow generator in seconds; the exported checkpoint records it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import ConfigError
from pipeline.training.losses import centre, label_accuracy, laplacian, lsgan, output_std
from pipeline.training.recipe import Recipe, register_recipe


def discriminator_loss(d_real, d_fake, real_label, fake_label):
    """``(total, real term, fake term)`` of L_D (module docstring)."""
    real, fake = lsgan(d_real, real_label), lsgan(d_fake, fake_label)
    return real + fake, real, fake


@register_recipe("fusiongan")
class FusionGANRecipe(Recipe):
    options = ("widths", "lr_g", "lr_d", "d_steps", "content_weight", "gradient_weight", "real_label", "fake_label")
    loss_names = ("g_total", "g_adv", "g_content", "g_intensity", "g_gradient", "d_total", "d_real", "d_fake",
                  "d_acc", "g_std")
    health_keys = {"accuracy": ("d_acc",), "output_std": "g_std"}
    min_crop = 12 + 31  # labels of 31 px at least: four stride-2 VALID 3×3 convs

    @classmethod
    def check(cls, config, where):
        for key in ("real_label", "fake_label"):
            value = config[key]
            if not (isinstance(value, (list, tuple)) and len(value) == 2 and value[0] <= value[1]):
                raise ConfigError(f"{where}.{key} must be [low, high], got {value!r}")
        if "widths" in cls.options and len(config["widths"]) != 4:
            raise ConfigError(f"{where}.widths must list 4 channel counts, got {config['widths']!r}")
        if int(config["d_steps"]) < 1:
            raise ConfigError(f"{where}.d_steps must be at least 1, got {config['d_steps']!r}")

    def build(self):
        from pipeline.fusion.nets.fusiongan import Discriminator, Generator

        c = self.config
        self.generator = Generator(c["widths"])
        self.shrink = self.generator.shrink
        self.nets = {"generator": self.generator, "discriminator": Discriminator(c["crop"] - self.shrink)}
        self.opts = {"generator": torch.optim.Adam(self.generator.parameters(), lr=float(c["lr_g"])),
                     "discriminator": torch.optim.Adam(self.nets["discriminator"].parameters(), lr=float(c["lr_d"]))}
        self.threshold = (np.mean(c["real_label"]) + np.mean(c["fake_label"])) / 2

    # -- hooks (MFF-GAN overrides them; pipeline/training/methods/mff_gan.py)
    def inputs(self, batch):
        """Generator inputs in [−1, 1] and the loss targets (centre "labels")."""
        ir, vis = batch["ir"] * 2 - 1, batch["vis"] * 2 - 1
        return {"ir": ir, "vis": vis, "ir_label": centre(ir, self.shrink), "vis_label": centre(vis, self.shrink)}

    def generate(self, x):
        return self.generator(x["ir"], x["vis"])

    def real_for_d(self, x):
        """What the discriminator must call real: the visible label patch."""
        return x["vis_label"]

    def fake_for_d(self, fused):
        return fused

    def content(self, fused, x):
        """``(content, parts)``: intensity to IR + ξ·Laplacian gradient to VI (module docstring)."""
        intensity = ((fused - x["ir_label"]) ** 2).mean()
        gradient = ((laplacian(fused) - laplacian(x["vis_label"])) ** 2).mean()
        content = intensity + float(self.config["gradient_weight"]) * gradient
        return content, {"g_intensity": intensity, "g_gradient": gradient}

    def discriminator_update(self, x, real):
        """One discriminator update on the generator's current output; ``(d_real, d_fake, losses)``."""
        c, disc = self.config, self.nets["discriminator"]
        with torch.no_grad(), self.ctx.autocast():
            fused = self.generate(x)
        with self.ctx.autocast():
            d_real, d_fake = disc(real).float(), disc(self.fake_for_d(fused)).float()
        losses = discriminator_loss(d_real, d_fake, c["real_label"], c["fake_label"])
        self.ctx.update("discriminator", losses[0])
        return d_real, d_fake, losses

    def generator_step(self, x):
        """One generator update; ``(fused, g_total, adv, content, parts)``."""
        c = self.config
        with self.ctx.autocast():
            fused = self.generate(x)
            d_fake_g = self.nets["discriminator"](self.fake_for_d(fused))
        fused = fused.float()
        adv = lsgan(d_fake_g.float(), c["real_label"])
        content, parts = self.content(fused, x)
        g_total = adv + float(c["content_weight"]) * content
        self.ctx.update("generator", g_total)
        return fused, g_total, adv, content, parts

    def generator_update(self, batch, index):
        """The generator update of one batch alone (``bench train --single-update``, spec's "G only")."""
        return self.generator_step(self.inputs(batch))[1]

    def step(self, batch, index):
        x = self.inputs(batch)
        real = self.real_for_d(x)
        for _ in range(int(self.config["d_steps"])):
            d_real, d_fake, (d_total, d_real_loss, d_fake_loss) = self.discriminator_update(x, real)
        fused, g_total, adv, content, parts = self.generator_step(x)
        acc = label_accuracy(d_real, d_fake, self.threshold)
        return {"g_total": g_total.detach(), "g_adv": adv.detach(), "g_content": content.detach(),
                **{k: v.detach() for k, v in parts.items()},
                "d_total": d_total.detach(), "d_real": d_real_loss.detach(), "d_fake": d_fake_loss.detach(),
                "d_acc": acc, "g_std": output_std(fused, signed=True)}

    def fuse(self, ir, vis):
        """The generator in training form (batch statistics, spectral norm) on edge-padded inputs."""
        pad = self.shrink // 2
        x = [F.pad(t * 2 - 1, (pad,) * 4, mode="replicate") for t in (ir, vis)]
        return ((self.generator(*x) + 1) / 2)[0, 0].float().cpu().numpy()

    def to_uint8(self, raw):
        from pipeline.fusion.trained import minmax_uint8

        return minmax_uint8(raw)

    def export(self, epoch):
        from pipeline.training.checkpoints import cpu_state

        return {"method": self.method, "epoch": epoch, "widths": list(self.config["widths"]),
                "model": cpu_state(self.generator)}
