"""DDcGAN training recipe, same-resolution variant (Xu et al. IJCAI 2019 / Ma et al. TIP 2020;
spec ``methods.md`` section 10). Networks: :mod:`pipeline.fusion.nets.ddcgan`.

Losses (ε = ``eps`` 1e-8; Frobenius and L1 terms are per-sample sums averaged over the batch; ∇ is
[[1/8,1/8,1/8],[1/8,−1,1/8],[1/8,1/8,1/8]] with zero 'SAME' padding)::

    L_G  = −mean log(D1(F) + ε) − mean log(D2(F) + ε) + μ·[‖F − IR‖²_F / s + η·Σ|∇F − ∇VIS|]
    L_D1 = −mean log(D1(VIS) + ε) − mean log(1 − D1(F) + ε)      (D2: IR instead of VIS)

μ = ``content_weight`` 0.6, s = ``frobenius_scale`` 16, η = ``gradient_weight`` 1.2. Optimisers: G
RMSProp (``rmsprop_alpha`` 0.9 and ``rmsprop_eps`` 1e-10, TF's defaults), D1 and D2 plain SGD; every
update uses lr = ``lr``·``lr_decay``^(u / batches per epoch) (2e-4, 0.9), u = the global update count
shared by all three solvers; after every update all parameters of that net are clipped to
[−``clip``, ``clip``] (8).

Adaptive schedule (the published rule; ``max_updates`` 20, thresholds ``d_threshold`` 1.7,
``g_adv_threshold`` 1.4, ``g_threshold`` 200): on even batches one D1 and one D2 update, then more D1
updates while L_D1 > 1.7 and then more D2 updates while L_D2 > 1.7 (at most 20 D1 / 20 D2 updates in
all); on odd batches one G update, then adversarial-only G updates while L_D1 < 1.4 or L_D2 < 1.4, then
full G updates while L_G > 200 (at most 20 G updates in all). Conditions are evaluated on the
current batch after each update.

Logged per epoch: the loss terms, ``d1_acc``/``d2_acc`` (real above 0.5, fused below), the update
counts ``d1_updates``/``d2_updates``/``g_updates`` per batch and ``g_std`` (health signals).

Deliberate differences: 84×84 random crops (``crops_per_pair`` per pair and epoch) instead of the
unpublished HDF5 patch file; ``shuffle`` is a param (the HDF5 order is not known); TF's RMSProp
initialises its mean-square slot to 1 and puts ε inside the square root, PyTorch's starts at 0 with ε
outside (same rule otherwise). ``widths`` scales the generator for the demo; the checkpoint records it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.errors import ConfigError
from pipeline.training.recipe import Recipe, register_recipe

_GRAD = ((0.125, 0.125, 0.125), (0.125, -1.0, 0.125), (0.125, 0.125, 0.125))


def gradient(x: torch.Tensor) -> torch.Tensor:
    """DDcGAN's ∇: [[1/8]*3, [1/8, −1, 1/8], [1/8]*3] with zero 'SAME' padding."""
    kernel = torch.tensor(_GRAD, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    return F.conv2d(x, kernel, padding=1)


@register_recipe("ddcgan")
class DDcGANRecipe(Recipe):
    options = ("widths", "double_first", "lr", "lr_decay", "clip", "eps", "content_weight", "frobenius_scale",
               "gradient_weight", "rmsprop_alpha", "rmsprop_eps", "d_threshold", "g_adv_threshold", "g_threshold",
               "max_updates")
    loss_names = ("g_total", "g_adv", "g_intensity", "g_gradient", "d1_total", "d2_total", "d1_acc", "d2_acc",
                  "d1_updates", "d2_updates", "g_updates", "g_std")
    health_keys = {"accuracy": ("d1_acc", "d2_acc"), "output_std": "g_std"}
    min_crop = 8

    @classmethod
    def check(cls, config, where):
        if len(config["widths"]) != 4:
            raise ConfigError(f"{where}.widths must list 4 channel counts, got {config['widths']!r}")
        if int(config["max_updates"]) < 1:
            raise ConfigError(f"{where}.max_updates must be at least 1, got {config['max_updates']!r}")

    def build(self):
        from pipeline.fusion.nets.ddcgan import Discriminator, Generator

        c = self.config
        self.nets = {"generator": Generator(c["widths"], bool(c["double_first"])),
                     "d1": Discriminator(c["crop"]), "d2": Discriminator(c["crop"])}
        lr = float(c["lr"])
        self.opts = {"generator": torch.optim.RMSprop(self.nets["generator"].parameters(), lr=lr,
                                                      alpha=float(c["rmsprop_alpha"]), eps=float(c["rmsprop_eps"])),
                     "d1": torch.optim.SGD(self.nets["d1"].parameters(), lr=lr),
                     "d2": torch.optim.SGD(self.nets["d2"].parameters(), lr=lr)}
        self.updates = 0

    def state(self):
        return {"updates": self.updates}

    def load_state(self, state):
        self.updates = int(state.get("updates", 0))

    # -- losses
    def _fused(self, batch, grad: bool):
        with torch.set_grad_enabled(grad), self.ctx.autocast():
            return self.nets["generator"](batch["vis"], batch["ir"]).float()

    def _d_loss(self, name, real, fused):
        eps = float(self.config["eps"])
        with self.ctx.autocast():
            p_real, p_fake = self.nets[name](real).float(), self.nets[name](fused).float()
        loss = -torch.log(p_real + eps).mean() - torch.log(1 - p_fake + eps).mean()
        acc = ((p_real > 0.5).float().mean() + (p_fake < 0.5).float().mean()) / 2
        return loss, acc

    def _g_loss(self, batch, fused):
        c = self.config
        eps = float(c["eps"])
        with self.ctx.autocast():
            p1, p2 = self.nets["d1"](fused).float(), self.nets["d2"](fused).float()
        adv = -torch.log(p1 + eps).mean() - torch.log(p2 + eps).mean()
        intensity = ((fused - batch["ir"]) ** 2).flatten(1).sum(1).mean() / float(c["frobenius_scale"])
        grad = (gradient(fused) - gradient(batch["vis"])).abs().flatten(1).sum(1).mean()
        total = adv + float(c["content_weight"]) * (intensity + float(c["gradient_weight"]) * grad)
        return total, adv, intensity, grad

    # -- updates
    def _update(self, name, loss):
        lr = float(self.config["lr"]) * float(self.config["lr_decay"]) ** (self.updates / self.ctx.batches_per_epoch)
        for group in self.opts[name].param_groups:
            group["lr"] = lr
        self.ctx.update(name, loss)
        clip = float(self.config["clip"])
        with torch.no_grad():
            for p in self.nets[name].parameters():
                p.clamp_(-clip, clip)
        self.updates += 1

    def _d_step(self, name, real, batch):
        loss, _ = self._d_loss(name, real, self._fused(batch, False))
        self._update(name, loss)
        with torch.no_grad():
            return float(self._d_loss(name, real, self._fused(batch, False))[0])

    def generator_update(self, batch, index):
        """One generator update on L_G alone (``bench train --single-update``, the spec's "G only" step)."""
        loss = self._g_loss(batch, self._fused(batch, True))[0]
        self._update("generator", loss)
        return loss

    def step(self, batch, index):
        c = self.config
        limit, counts = int(c["max_updates"]), {"d1": 0, "d2": 0, "generator": 0}
        reals = {"d1": batch["vis"], "d2": batch["ir"]}
        if index % 2 == 0:
            after = {name: self._d_step(name, reals[name], batch) for name in ("d1", "d2")}
            counts.update(d1=1, d2=1)
            for name in ("d1", "d2"):
                while after[name] > float(c["d_threshold"]) and counts[name] < limit:
                    after[name] = self._d_step(name, reals[name], batch)
                    counts[name] += 1
        else:
            self.generator_update(batch, index)
            counts["generator"] = 1
            while counts["generator"] < limit:
                with torch.no_grad():
                    fused = self._fused(batch, False)
                    l1, l2 = (float(self._d_loss(n, reals[n], fused)[0]) for n in ("d1", "d2"))
                    g_total = float(self._g_loss(batch, fused)[0])
                if l1 < float(c["g_adv_threshold"]) or l2 < float(c["g_adv_threshold"]):
                    self._update("generator", self._g_loss(batch, self._fused(batch, True))[1])
                elif g_total > float(c["g_threshold"]):
                    self._update("generator", self._g_loss(batch, self._fused(batch, True))[0])
                else:
                    break
                counts["generator"] += 1
        with torch.no_grad():
            fused = self._fused(batch, False)
            g_total, adv, intensity, grad = self._g_loss(batch, fused)
            (d1, acc1), (d2, acc2) = (self._d_loss(n, reals[n], fused) for n in ("d1", "d2"))
        return {"g_total": g_total, "g_adv": adv, "g_intensity": intensity, "g_gradient": grad,
                "d1_total": d1, "d2_total": d2, "d1_acc": acc1, "d2_acc": acc2, "d1_updates": counts["d1"],
                "d2_updates": counts["d2"], "g_updates": counts["generator"], "g_std": fused.std()}

    def fuse(self, ir, vis):
        return self.nets["generator"](vis, ir)[0, 0].float().cpu().numpy()

    def to_uint8(self, raw):
        from pipeline.fusion.trained import minmax_uint8

        return minmax_uint8(raw)

    def export(self, epoch):
        from pipeline.training.checkpoints import cpu_state

        return {"method": "ddcgan", "epoch": epoch, "widths": list(self.config["widths"]),
                "double_first": bool(self.config["double_first"]), "model": cpu_state(self.nets["generator"])}
