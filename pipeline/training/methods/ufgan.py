"""**UFGAN, defects fixed** — training recipe (drowning-in-codes/UFGAN @d35fbbf, MIT © 2023 QiuhaoS;
spec ``methods.md`` section 12). Networks: :mod:`pipeline.fusion.nets.ufgan`. This is *not* the
published UFGAN (which has no weights and cannot be reproduced); it is the published recipe with these
**defects fixed**:

1. **paired batches** — the official IR and VI loaders are shuffled independently, so training pairs
   were misaligned; here every batch holds aligned crops of the same pairs (the generic trainer);
2. **dropout off at test** — the official Dropout layers are created inside ``forward`` and stay active
   in eval mode; here they are modules, inactive in ``eval()`` (deterministic fusion);
3. **style/perceptual term only with local VGG weights** — the official code downloads ImageNet VGG19
   at run time; here nothing downloads: ``vgg_weights`` is a local torchvision VGG19 state_dict file,
   or ``null`` (the term is then TV only — which is all that trained the official generator, see 4);
4. **the perceptual terms pass gradients** — officially the generator-side VGG features were the
   detached operand, so content and style gave G no gradient; here the *targets* are detached;
5. **style terms counted once** — a Python list repetition counted them 10 times;
6. **test inputs in [−1, 1]** as in training (the official ``norm_-1`` test branch compared a string
   with −1 and always scaled to [0, 1]).

Per batch (``params.yaml`` ``train.methods.ufgan``; IR, VI in [−1, 1]; G maps ``crop`` → ``crop − 8``
px, the labels are the centre crops; ∇ the Laplacian; ‖·‖₂ the root of the sum of squares, N the number
of elements):

* the discriminator every batch: L_D = mean(D(G) − U(0, 0.3))² + mean(D(VI_label) − U(0.7, 1.2))²;
* the generator every ``g_every`` (2) batches::

      L_G = mean(D(G) − U(0.7, 1.2))² + a·[‖G − IR‖₂/N + b·‖∇G − ∇VI‖₂/N]
            + c·[(1 − SSIM(G, IR)) + d·(1 − SSIM(G, VI))] + e·style

  a = ``intensity_weight`` 100, b = ``gradient_weight`` 5, c = ``ssim_weight`` 300, d = ``ssim_vis_weight``
  5, e = ``style_weight`` 100; SSIM with data range 2 (:func:`pipeline.training.losses.ssim`);
  style = ``content_weight``·‖φ25(G) − φ25(VI)‖² + ``gram_weight``·Σ_l ‖Gram φl(G) − Gram φl(IR)‖²
  (l ∈ 0, 5, 10, 19, 28 of VGG19 ``features``) + ``tv_weight``·TV(G), weights 1, 1e3, 10.

Published: 160-px patches (labels 152) at stride 60, batch 32, 30 epochs, Adam 1e-4 for both nets.
Not published: the patch count (``crops_per_pair`` random crops; ``full`` 100). ``width`` (published 64)
scales the U-Net for the demo; the checkpoint records it. TV is the mean absolute difference of
neighbours (the spec does not define its normalisation). Logged: every term, ``d_acc``, ``g_std``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from pipeline.errors import ConfigError, DataError
from pipeline.training.losses import centre, label_accuracy, laplacian, lsgan, output_std, ssim
from pipeline.training.recipe import Recipe, register_recipe

LABEL = "UFGAN, defects fixed"
STYLE_LAYERS = (0, 5, 10, 19, 28)
CONTENT_LAYER = 25


def norm_per_element(x: torch.Tensor) -> torch.Tensor:
    """‖x‖₂ / N: the root of the sum of squares over the number of elements."""
    return x.pow(2).sum().sqrt() / x.numel()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.flatten(2)
    return f @ f.transpose(1, 2) / (c * h * w)


class VGGFeatures(torch.nn.Module):
    """VGG19 ``features`` from a **local** torchvision state_dict (never downloaded); frozen."""

    def __init__(self, path: str | Path):
        super().__init__()
        from torchvision.models import vgg19

        from pipeline.fusion.checkpoints import load_strict, read_state

        model = vgg19(weights=None)
        state = read_state(path, "VGG19")
        state = {k: v for k, v in state.items() if k.startswith("features.")} or state
        self.features = model.features[:max(*STYLE_LAYERS, CONTENT_LAYER) + 1]
        load_strict(self.features, {k.removeprefix("features."): v for k, v in state.items()
                                    if k.removeprefix("features.") in self.features.state_dict()}, path, "VGG19")
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = (((x + 1) / 2).repeat(1, 3, 1, 1) - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in STYLE_LAYERS or i == CONTENT_LAYER:
                out[i] = x
        return out


@register_recipe("ufgan")
class UFGANRecipe(Recipe):
    label = LABEL
    options = ("width", "lr_g", "lr_d", "g_every", "intensity_weight", "gradient_weight", "ssim_weight",
               "ssim_vis_weight", "style_weight", "content_weight", "gram_weight", "tv_weight", "vgg_weights",
               "real_label", "fake_label")
    loss_names = ("g_total", "g_adv", "g_intensity", "g_gradient", "g_ssim_ir", "g_ssim_vis", "g_style",
                  "d_total", "d_acc", "g_std")
    health_keys = {"accuracy": ("d_acc",), "output_std": "g_std"}

    @classmethod
    def check(cls, config, where):
        from pipeline.fusion.nets.ufgan import smallest_input

        if config["crop"] < smallest_input():
            raise ConfigError(f"{where}.crop must be at least {smallest_input()} (the U-Net's smallest input), "
                              f"got {config['crop']}")
        if int(config["g_every"]) < 1:
            raise ConfigError(f"{where}.g_every must be at least 1, got {config['g_every']!r}")
        vgg = config["vgg_weights"]
        if vgg is not None and not Path(str(vgg)).is_file():
            raise DataError(f"{where}.vgg_weights: local VGG19 weights file not found (nothing is downloaded; "
                            "set null to train without the perceptual terms)", vgg)

    def build(self):
        from pipeline.fusion.nets.ufgan import SHRINK, Discriminator, UNetGenerator

        c = self.config
        self.generator = UNetGenerator(int(c["width"]))
        self.nets = {"generator": self.generator, "discriminator": Discriminator()}
        self.opts = {"generator": torch.optim.Adam(self.generator.parameters(), lr=float(c["lr_g"])),
                     "discriminator": torch.optim.Adam(self.nets["discriminator"].parameters(), lr=float(c["lr_d"]))}
        self.vgg = VGGFeatures(c["vgg_weights"]).to(self.ctx.device) if c["vgg_weights"] else None
        self.threshold = (sum(c["real_label"]) + sum(c["fake_label"])) / 4
        self.shrink = SHRINK
        self.last: dict = {}

    def style(self, fused, ir, vis):
        c = self.config
        tv = float(c["tv_weight"]) * total_variation(fused)
        if self.vgg is None:
            return tv
        f_g, f_ir, f_vis = self.vgg(fused), self.vgg(ir), self.vgg(vis)
        content = ((f_g[CONTENT_LAYER] - f_vis[CONTENT_LAYER].detach()) ** 2).mean()
        grams = sum(((gram(f_g[k]) - gram(f_ir[k]).detach()) ** 2).mean() for k in STYLE_LAYERS)
        return float(c["content_weight"]) * content + float(c["gram_weight"]) * grams + tv

    def step(self, batch, index):
        c, gen, disc = self.config, self.generator, self.nets["discriminator"]
        ir, vis = batch["ir"] * 2 - 1, batch["vis"] * 2 - 1
        vis_label = centre(vis, self.shrink)
        with torch.no_grad(), self.ctx.autocast():
            fused = gen(ir, vis)
        with self.ctx.autocast():
            d_real, d_fake = disc(vis_label).float(), disc(fused).float()
        d_total = lsgan(d_fake, c["fake_label"]) + lsgan(d_real, c["real_label"])
        self.ctx.update("discriminator", d_total)
        values = {"d_total": d_total.detach(), "d_acc": label_accuracy(d_real, d_fake, self.threshold)}
        if index % int(c["g_every"]) == 0:
            self.generator_update(batch, index)
        # batches without a generator update report its latest values (the first batch always has one)
        return {**self.last, **values}

    def generator_update(self, batch, index):
        """One generator update (every ``g_every``-th batch of :meth:`step`; alone in ``bench train
        --single-update``, the spec's "G only" step); its values are kept in ``self.last``."""
        c, gen = self.config, self.generator
        ir, vis = batch["ir"] * 2 - 1, batch["vis"] * 2 - 1
        ir_label, vis_label = centre(ir, self.shrink), centre(vis, self.shrink)
        with self.ctx.autocast():
            fused = gen(ir, vis)
            d_g = self.nets["discriminator"](fused)
        fused = fused.float()
        terms = {"g_adv": lsgan(d_g.float(), c["real_label"]),
                 "g_intensity": norm_per_element(fused - ir_label),
                 "g_gradient": norm_per_element(laplacian(fused) - laplacian(vis_label)),
                 "g_ssim_ir": 1 - ssim(fused, ir_label, 2.0), "g_ssim_vis": 1 - ssim(fused, vis_label, 2.0),
                 "g_style": self.style(fused, ir_label, vis_label)}
        g_total = (terms["g_adv"] + float(c["intensity_weight"]) * (
            terms["g_intensity"] + float(c["gradient_weight"]) * terms["g_gradient"])
            + float(c["ssim_weight"]) * (terms["g_ssim_ir"] + float(c["ssim_vis_weight"]) * terms["g_ssim_vis"])
            + float(c["style_weight"]) * terms["g_style"])
        self.ctx.update("generator", g_total)
        self.last = {"g_total": g_total.detach(), **{k: v.detach() for k, v in terms.items()},
                     "g_std": output_std(fused, signed=True)}
        return g_total

    def state(self):
        return {"last": {k: float(v) for k, v in self.last.items()}}

    def load_state(self, state):
        self.last = {k: torch.tensor(v) for k, v in (state.get("last") or {}).items()}

    def fuse(self, ir, vis):
        """As the fusion method ``ufgan``: eval mode (no dropout), :func:`~pipeline.fusion.nets.ufgan.fuse_full_size`."""
        from pipeline.fusion.nets.ufgan import fuse_full_size

        self.generator.eval()
        return fuse_full_size(self.generator, ir, vis)[0, 0].float().cpu().numpy()

    def to_uint8(self, raw):
        from pipeline.fusion.trained import minmax_uint8

        return minmax_uint8(raw)

    def export(self, epoch):
        from pipeline.training.checkpoints import cpu_state

        return {"method": self.method, "label": LABEL, "epoch": epoch, "width": int(self.config["width"]),
                "model": cpu_state(self.generator)}
