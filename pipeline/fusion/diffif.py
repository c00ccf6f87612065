"""Registry methods ``diffif`` (the faithful generator, weights the user supplies) and ``diffif_lite``
(a scaled-down VARIANT trained by the ``train_diffif`` stage); spec ``diffif.md`` §2.1, §2.7, §4.3.

Yi, Tang, Zhang, Xu, Ma, "Diff-IF: multi-modality image fusion via diffusion model with fusion
knowledge prior", Information Fusion 2024 (102450).

* Inputs: the project's colour rule (:meth:`FusionMethod.prepare`): each source's 8-bit luma /255, so
  the network sees Y in [−1, 1] (×2 − 1); the fused Y is recombined with the colour source's Cb/Cr
  (full-range BT.601, as the official OpenCV YCrCb merge). Medical pairs: with ``mode: mif`` the slots
  are swapped (spec §2.1): Diff-IF "vis" ← FuseBench ``ir`` (CT/PET/SPECT), Diff-IF "ir" ← FuseBench
  ``vis`` (MRI); the colour donor is then the functional image, as officially.
* Sampling: the 4-step η = 1 sampler of :mod:`pipeline.fusion.nets.diffif`, noise from a generator
  seeded with ``seed`` (default 1) **per image** (deviation from the official once-per-run seed, spec
  §5.2 item 6). Same-size pairs are batched (``batch``), one generator per image. A checkpoint
  trained with ``scale`` < 1 (a VARIANT, see the recipe) samples at that fraction of the source size
  (area-downsampled sources) and its output is upsampled bilinearly. Sides that are not multiples of 8 are reflect-padded and cropped back (§2.7 option
  (a), a deviation; at 480×640 nothing happens). ``fast: true`` runs the same maths through
  :mod:`pipeline.fusion.diffif_fast` (channels-last, fused attention), equal within float tolerance.
* Output: clamp to [−1, 1], map to [0, 1]; 8 bits by ⌊255·x + 0.5⌋.
* ``weights``: a path (``diffif``: the official ``IVF_weights_gen.pth`` / ``MIF_weights_gen.pth``,
  never downloaded; the state dict loads **strictly**) or ``trained`` = :data:`TRAINED` (the
  ``train_diffif`` stage's export). ``diffif`` requires the faithful architecture at scale 1,
  ``diffif_lite`` takes any; its metadata carries ``variant`` so no table can pass it off as Diff-IF.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.errors import ConfigError, DataError
from pipeline.fusion.registry import FusionMethod, register

TRAINED = Path("models") / "diffif" / "trained.pth"
STEPS = 4
VARIANT_NOTE = "Diff-IF VARIANT trained here (spec diffif.md §4.3; architecture and scale in the metadata); not Diff-IF"


@register("diffif")
class DiffIFMethod(FusionMethod):
    """Faithful Diff-IF generator with user-supplied weights (module docstring)."""

    kind = "network"
    option_names = ("weights", "device", "seed", "mode", "fast", "batch")
    variant: str | None = None

    def __init__(self, name=None, weights: str | None = None, device: str = "auto", seed: int = 1,
                 mode: str = "ivf", fast: bool = True, batch: int = 8):
        if not weights:
            raise ConfigError(f"{name or self.registered_name} needs `weights: PATH` (the official "
                              "IVF_weights_gen.pth / MIF_weights_gen.pth; nothing is downloaded) or "
                              "`weights: trained`", f"fusion.methods.{name or self.registered_name}")
        if mode not in ("ivf", "mif"):
            raise TypeError(f"mode must be ivf or mif, got {mode!r}")
        super().__init__(name=name, weights=str(weights), device=device, seed=int(seed), mode=mode,
                         fast=bool(fast), batch=max(1, int(batch)))
        self.weights_path = TRAINED if str(weights) == "trained" else Path(weights)
        self._model = None
        self._sampler = None
        self._flops: dict[tuple[int, int], float] = {}

    def check_arch(self, arch, scale: float) -> None:
        from pipeline.fusion.nets.diffif import FAITHFUL

        if arch != FAITHFUL or scale != 1.0:
            raise DataError(f"{self.name} needs the faithful Diff-IF architecture; this checkpoint holds "
                            f"{arch.to_dict()} (use kind: diffif_lite for a variant)", self.weights_path)

    @property
    def model(self):
        if self._model is None:
            from pipeline.device import resolve_device
            from pipeline.fusion.nets.diffif import build_diffif, read_checkpoint

            state, arch, scale = read_checkpoint(self.weights_path)   # read once (official: ~90 MB)
            self.check_arch(arch, scale)
            self._model = build_diffif(state, arch, self.weights_path, resolve_device(self.parameters["device"]))
            self._scale = scale
        return self._model

    def sampler(self):
        if self._sampler is None:
            if self.parameters["fast"]:
                from pipeline.fusion.diffif_fast import FastSampler

                self._sampler = FastSampler(self.model)
            else:
                self._sampler = self.model.sample
        return self._sampler

    @property
    def scale(self) -> float:
        """Sampling resolution relative to the sources (1 = faithful; the checkpoint's ``scale``)."""
        self.model
        return float(self._scale)

    def fuse_arrays(self, ir, vis):
        return self.fuse_batch([(ir, vis)])[0]

    def fuse_batch(self, pairs):
        """Same-size pairs are sampled together (``batch`` at a time), each with its own seeded
        generator, so a result does not depend on the batch it was in."""
        from pipeline.fusion.registry import check_pair

        out: list = [None] * len(pairs)
        groups: dict[tuple, list[int]] = {}
        for k, (ir, vis) in enumerate(pairs):
            check_pair(np.asarray(ir), np.asarray(vis))
            groups.setdefault(np.asarray(ir).shape, []).append(k)
        for indices in groups.values():
            for start in range(0, len(indices), self.parameters["batch"]):
                chunk = indices[start:start + self.parameters["batch"]]
                for k, raw in zip(chunk, self._sample([pairs[k] for k in chunk])):
                    out[k] = raw
        return out

    def _sample(self, pairs) -> list[np.ndarray]:
        import torch.nn.functional as F

        from pipeline.training.methods.diffif import pad8

        if self.parameters["mode"] == "mif":
            pairs = [(vis, ir) for ir, vis in pairs]      # Diff-IF "vis" = functional, "ir" = MRI
        device = next(self.model.parameters()).device
        stacks = [torch.from_numpy(np.stack([np.asarray(p[j], np.float32) for p in pairs]))[:, None].to(device)
                  for j in (1, 0)]                         # [vis, ir] in [0, 1]
        size = tuple(stacks[0].shape[-2:])
        if self.scale != 1.0:
            stacks = [F.interpolate(t, scale_factor=self.scale, mode="area") for t in stacks]
        (v, inner), (i, _) = pad8(stacks[0] * 2 - 1), pad8(stacks[1] * 2 - 1)
        generators = [torch.Generator().manual_seed(self.parameters["seed"]) for _ in pairs]
        with torch.inference_mode():
            y = self.sampler()(v, i, generators)[..., :inner[0], :inner[1]].clamp(-1, 1)
            if self.scale != 1.0:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False).clamp(-1, 1)
        return [a for a in ((y + 1) / 2)[:, 0].float().cpu().numpy()]

    def params_count(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    def gflops(self, height, width):
        from pipeline.fusion.nets.diffif import step_gflops

        h, w = round(height * self.scale), round(width * self.scale)
        key = (-(-h // 8) * 8, -(-w // 8) * 8)
        if key not in self._flops:
            self._flops[key] = STEPS * sum(step_gflops(self.model.config, *key))
        return self._flops[key]

    def metadata(self):
        meta = super().metadata()
        meta["weights"] = {"file": str(self.weights_path)}
        if self.weights_path.is_file():
            from pipeline.results import file_digest

            meta["weights"]["sha256"] = file_digest(self.weights_path)
        if self.variant:
            meta["variant"] = self.variant
            if self.weights_path.is_file():
                meta["architecture"] = {**self.model.config.to_dict(), "scale": self.scale}
        return meta


@register("diffif_lite")
class DiffIFLite(DiffIFMethod):
    """Diff-IF trained in the pipeline (``train_diffif``; default ``weights: trained``): the demo's
    scaled-down architecture, or in the ``full`` profile the faithful architecture retrained on this
    pipeline's prior. Either way a VARIANT (not the published model), labelled so."""

    variant = VARIANT_NOTE

    def __init__(self, name=None, weights: str = "trained", **options):
        super().__init__(name=name, weights=weights, **options)

    def check_arch(self, arch, scale: float) -> None:
        """Any architecture and scale (the checkpoint records them; the metadata lists them)."""
