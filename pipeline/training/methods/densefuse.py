"""DenseFuse training recipe (Li & Wu, "DenseFuse: a fusion approach to infrared and visible images",
IEEE TIP 28(5), 2019; spec ``methods.md`` section 4, the authors' PyTorch port).

Network: :class:`pipeline.fusion.nets.densefuse.DenseFuseNet`. Training is the **autoencoder only**
(encoder → decoder, no fusion layer); the fusion rule is applied at test time by the fusion method
(``{kind: densefuse, weights: trained}``, :mod:`pipeline.fusion.published`; the port's default rule
"addition": decoder((enc(ir) + enc(vis)) / 2)). Values are 0..255, unscaled. Per batch (``params.yaml``
``train.methods.densefuse``) every IR and every VI crop is one training image (2·batch images)::

    L = mean (out − x)² + λ·(1 − MS-SSIM(out, x))          λ = ``ssim_weight`` 100

with the port's MS-SSIM (:func:`ms_ssim`), Adam ``lr`` 1e-4, batch 4, 4 epochs (published).
Initialisation (a deviation, every profile): :func:`identity_path_init` instead of PyTorch's default.

Deliberate differences: the port trains on the first 40,000 MS-COCO 2014 images resized to 256×256
(nearest); COCO is not part of the benchmark data, so the AE learns from the training pairs' own
images (both modalities, aligned random crops of ``crop`` px: 256 in ``full``). ``crops_per_pair``
is not published (``full``: 100 chosen).

Logged per epoch: ``total``, ``pixel`` (the MSE), ``ssim`` (1 − MS-SSIM), ``g_std`` (std of the
reconstructions on the [0, 1] scale; health signal).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.errors import ConfigError
from pipeline.training.losses import output_std, ssim_map
from pipeline.training.recipe import Recipe, register_recipe

#: the port's MS-SSIM level weights
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(out: torch.Tensor, x: torch.Tensor, weights=MS_SSIM_WEIGHTS) -> torch.Tensor:
    """The DenseFuse port's MS-SSIM of ``out`` against ``x`` (spec section 4), quirks kept:

    * dynamic range L from the first argument: (255 if max(out) > 128 else 1) − (−1 if min(out) < −0.5
      else 0);
    * per level (2×2 average pooling between levels) the means of SSIM and cs
      (:func:`pipeline.training.losses.ssim_map`: 11×11 Gaussian σ 1.5 shrunk to the image, no
      padding, C1 = (0.01 L)², C2 = (0.03 L)²), each mapped to (v + 1)/2 ("normalize");
    * product Π_{i < last} cs_i^{w_i} · ssim_last^{(levels − 1)·w_last}: the last SSIM enters
      levels − 1 = 4 times (the port multiplies it in once per level, a known bug).
    """
    with torch.no_grad():
        hi = 255.0 if float(out.max()) > 128 else 1.0
        lo = -1.0 if float(out.min()) < -0.5 else 0.0
    data_range = torch.tensor(hi - lo, dtype=out.dtype, device=out.device)
    w = torch.tensor(weights, dtype=out.dtype, device=out.device)
    css, sim = [], None
    for level in range(len(weights)):
        sim_map, cs_map = ssim_map(out, x, data_range)
        sim = sim_map.mean()
        css.append((cs_map.mean() + 1) / 2)
        if level < len(weights) - 1:
            out, x = F.avg_pool2d(out, 2), F.avg_pool2d(x, 2)
    sim = (sim + 1) / 2
    result = sim ** ((len(weights) - 1) * w[-1])
    for i in range(len(weights) - 1):
        result = result * css[i] ** w[i]
    return result


#: scale of PyTorch's default random weights around the identity path (:func:`identity_path_init`)
INIT_NOISE = 0.1


def identity_path_init(net, noise: float = INIT_NOISE) -> None:
    """Identity-path initialisation (every profile): PyTorch's default weights and biases scaled by
    ``noise``, plus a Dirac kernel from input channel 0 to output channel 0 of ``conv1`` and of every
    decoder layer. The dense block passes channel 0 through unchanged (its concatenation keeps the
    old channels first) and the inputs are ≥ 0, so every ReLU passes it: at ``noise`` 0 the
    autoencoder is exactly the identity and the addition rule exactly ``average``; at 0.1 it starts
    near the identity and the reconstruction loss trains all channels. Why: from the default init the
    port's AE needs thousands of steps to stop blurring (demo, 28 steps: reconstruction MSE 677 on the
    0..255 scale, fused SSIM 0.11 vs ``average`` 0.43); the AE's optimum is the identity anyway."""
    convs = [net.conv1.conv2d, net.conv2.conv2d, net.conv3.conv2d, net.conv4.conv2d, net.conv5.conv2d]
    with torch.no_grad():
        for conv in convs:
            conv.weight.mul_(noise)
            conv.bias.mul_(noise)
            conv.weight[0, 0, 1, 1] += 1.0


@register_recipe("densefuse")
class DenseFuseRecipe(Recipe):
    options = ("lr", "ssim_weight")
    loss_names = ("total", "pixel", "ssim", "g_std")
    health_keys = {"output_std": "g_std"}
    min_crop = 16  # four 2×2 poolings leave 1 px at least
    images_per_pair = 2

    @classmethod
    def check(cls, config, where):
        if not isinstance(config["ssim_weight"], (int, float)) or config["ssim_weight"] < 0:
            raise ConfigError(f"{where}.ssim_weight must be a non-negative number, got {config['ssim_weight']!r}")

    def build(self):
        from pipeline.fusion.nets.densefuse import DenseFuseNet

        self.net = DenseFuseNet()
        identity_path_init(self.net, INIT_NOISE)
        self.nets = {"autoencoder": self.net}
        self.opts = {"autoencoder": torch.optim.Adam(self.net.parameters(), lr=float(self.config["lr"]))}

    def step(self, batch, index):
        x = torch.cat([batch["ir"], batch["vis"]]) * 255.0
        with self.ctx.autocast():
            out = self.net.decoder(self.net.encoder(x)).float()
        pixel = ((out - x) ** 2).mean()
        ssim_loss = 1 - ms_ssim(out, x)
        total = pixel + float(self.config["ssim_weight"]) * ssim_loss
        self.ctx.update("autoencoder", total)
        return {"total": total.detach(), "pixel": pixel.detach(), "ssim": ssim_loss.detach(),
                "g_std": output_std(out / 255.0)}

    def fuse(self, ir, vis):
        """The fusion method's call: the addition rule on 0..255 inputs, raw output on the [0, 1] scale."""
        return (self.net(ir * 255.0, vis * 255.0) / 255.0)[0, 0].float().cpu().numpy()

    def to_uint8(self, raw):
        from pipeline.fusion.pretrained import to_uint8_rule

        return to_uint8_rule(raw, "truncate", (0.0, 1.0))

    def export(self, epoch):
        from pipeline.training.checkpoints import cpu_state

        return {"method": self.method, "epoch": epoch, "model": cpu_state(self.net)}
