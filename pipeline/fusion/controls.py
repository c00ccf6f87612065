"""Controls: fusion "methods" whose downstream answer is known in advance (registry kind ``control``).

They are not fusion methods; they test the benchmark (:mod:`pipeline.report.sensitivity`):

* ``oracle`` (**positive** control, demo data only): see :class:`Oracle`;
* ``shuffled`` (**negative** control): see :class:`Shuffled`.

Reports show them apart from the real methods and never rank them; docs/verdicts.md explains the
sensitivity check they feed. The fusion stage builds them per scene (:meth:`Control.bind`,
:meth:`Control.sample_image`): they are not functions of the two images alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from pipeline.errors import ConfigError, DataError
from pipeline.fusion.registry import FusionMethod, register
from pipeline.imageio import read_image

EVIDENCE_FOLDER = "evidence"     # <folder of the visible image>/../evidence/<name>.png (pipeline.demo_data)
VIS_ONLY = 2                     # evidence code: only the visible image shows the region


def evidence_path(sample) -> Path:
    """Where the demo generator wrote ``sample``'s evidence map (:mod:`pipeline.demo_evidence`)."""
    return Path(sample.vis).parent.parent / EVIDENCE_FOLDER / f"{sample.name}.png"


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def _output(image: np.ndarray, gray: bool) -> np.ndarray:
    from pipeline.fusion import colour

    return colour.luma(image) if gray and image.ndim == 3 else image


class Control(FusionMethod):
    """A control: built from the scene itself (its name, evidence map, other scenes), so the fusion
    stage calls :meth:`bind` with the dataset's samples, then :meth:`sample_image` per scene."""

    kind = "control"
    role = "positive"

    def fuse_arrays(self, ir, vis):
        raise TypeError(f"{self.name} is a control (kind: control): it needs the scene, not two arrays "
                        "(use pipeline.fusion.stage.fuse_samples)")

    def bind(self, population: Sequence) -> None:
        """Check the control can be built for ``population`` (every sample of the dataset)."""

    def sample_image(self, sample, ir: np.ndarray, vis: np.ndarray, gray: bool = False) -> np.ndarray:
        raise NotImplementedError


@register("oracle")
class Oracle(Control):
    """Positive control (demo data only): the infrared image, replaced by the visible image inside
    the labelled regions whose evidence only the visible image carries (evidence code 2 of the demo
    generator's maps), with a soft boundary: the region mask is grown by ``grow`` px and blurred with
    a Gaussian of ``soften`` px (weights ``m`` in [0, 1]), and ``F = (1 - m) IR + m VIS`` per RGB
    channel (infrared replicated to three channels). Everywhere else it *is* the infrared image, so
    it holds the ``ir`` row's information plus strictly extra, label-relevant information: a
    benchmark that cannot rank it above the best single modality cannot see a fusion gain.

    (Taking each region from whichever modality shows it better, in both directions, was tried
    before and came out worse than infrared alone: switching the appearance of a class between
    modalities makes it harder to learn on a tiny budget. IR-plus-extra keeps the ``ir`` row's
    appearance and only adds.)"""

    role = "positive"
    option_names = ("grow", "soften")

    def __init__(self, name=None, grow: int = 2, soften: float = 1.5, **options):
        if int(grow) < 0 or float(soften) < 0:
            raise ConfigError("oracle: grow and soften must be >= 0", f"fusion.methods.{name or 'oracle'}")
        super().__init__(name=name, grow=int(grow), soften=float(soften), **options)

    def bind(self, population: Sequence) -> None:
        missing = [evidence_path(s) for s in population if not evidence_path(s).is_file()]
        if missing:
            raise ConfigError(
                f"the `oracle` control needs the demo generator's evidence maps, and {len(missing)} of "
                f"{len(population)} are missing (first: {missing[0]}); it exists for the demo data only "
                "(python -m pipeline demo-data): remove it from fusion.methods for other data",
                f"fusion.methods.{self.name}")

    def weights(self, evidence: np.ndarray) -> np.ndarray:
        """Soft visible-image weights ``m`` (float H×W in [0, 1]) of an evidence map."""
        mask = (evidence == VIS_ONLY).astype(np.uint8)
        grow = self.parameters["grow"]
        if grow:
            mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
        m = mask.astype(np.float64)
        if self.parameters["soften"] > 0:
            m = cv2.GaussianBlur(m, (0, 0), self.parameters["soften"])
        return np.clip(np.maximum(m, mask), 0.0, 1.0)   # inside the grown region: exactly visible

    def sample_image(self, sample, ir, vis, gray=False):
        path = evidence_path(sample)
        evidence = read_image(path, mode="gray")
        if evidence.shape != ir.shape[:2]:
            raise DataError(f"evidence map is {evidence.shape} but the pair is {ir.shape[:2]}", path)
        m = self.weights(evidence)[:, :, None]
        fused = (1.0 - m) * _rgb(ir).astype(np.float64) + m * _rgb(vis).astype(np.float64)
        return _output(np.floor(fused + 0.5).astype(np.uint8), gray)


@register("shuffled")
class Shuffled(Control):
    """Negative control: scene ``i`` gets the ``source`` image (default the infrared image, as stored)
    of *another* scene of the same split, by a deterministic derangement: the split's samples
    sorted by name, permuted with ``default_rng(seed)``, and each takes the image of its successor
    in that cycle (so no scene keeps its own image, and every donor is used once). Image statistics
    stay exactly those of the ``ir`` row; only the correspondence between image and labels is
    destroyed (the logic of a permutation / randomised-label control: Good, *Permutation Tests*,
    2000; Zhang et al., "Understanding deep learning requires rethinking generalization", ICLR
    2017). Whatever it scores comes from label priors alone, so it must be worse than the best
    single modality. Works on any dataset with at least two scenes per split."""

    role = "negative"
    option_names = ("source", "seed")

    def __init__(self, name=None, source: str = "ir", seed: int = 0, **options):
        if source not in ("ir", "vis"):
            raise ConfigError(f"shuffled: source must be ir or vis, got {source!r}",
                              f"fusion.methods.{name or 'shuffled'}.source")
        super().__init__(name=name, source=source, seed=int(seed), **options)
        self.donors: dict[str, object] = {}

    def bind(self, population: Sequence) -> None:
        self.donors = derangement(population, self.parameters["seed"])

    def sample_image(self, sample, ir, vis, gray=False):
        if sample.name not in self.donors:
            raise DataError(f"scene {sample.name!r} is not among the samples the control was bound to")
        donor = self.donors[sample.name]
        image = read_image(donor.ir if self.parameters["source"] == "ir" else donor.vis)
        if image.shape[:2] != ir.shape[:2]:
            image = cv2.resize(image, (ir.shape[1], ir.shape[0]), interpolation=cv2.INTER_AREA)
        return _output(image, gray)


def derangement(samples: Sequence, seed: int = 0) -> dict[str, object]:
    """``{name: donor sample}``: within each split a seeded cyclic derangement (no fixed point)."""
    by_split: dict[str, list] = {}
    for sample in samples:
        by_split.setdefault(sample.split, []).append(sample)
    donors = {}
    for split, group in sorted(by_split.items()):
        if len(group) < 2:
            raise DataError(f"the `shuffled` control needs at least two scenes in split {split!r}, "
                            f"found {len(group)}")
        group = sorted(group, key=lambda s: s.name)
        order = np.random.default_rng([seed, len(group)]).permutation(len(group))
        for k, index in enumerate(order):
            donors[group[index].name] = group[order[(k + 1) % len(order)]]
    return donors


CONTROL_ROLES = {cls.registered_name: cls.role for cls in (Oracle, Shuffled)}   # implementation -> role
