"""``precomputed``: fused images made elsewhere (any published method's results), matched by name.

Configuration: ``<name>: {kind: precomputed, folder: PATH}``. Images are looked up as
``PATH/<dataset>/<sample name>.<ext>`` (any of :data:`pipeline.imageio.IMAGE_SUFFIXES`), or directly
as ``PATH/<sample name>.<ext>`` when ``PATH/<dataset>`` does not exist. Validation before anything is
written (:meth:`PrecomputedMethod.locate`): every sample must have exactly one image (the error lists
the missing names and the count), and each image must have its sources' height and width (checked
per image when it is used, :meth:`PrecomputedMethod.load`).

Colour: a colour fused image is used as it is (its luma when grey output is requested); a grey one
is recombined with the source chrominance like every other method (:mod:`pipeline.fusion.colour`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.errors import ConfigError, DataError
from pipeline.fusion.registry import FusionMethod, register
from pipeline.imageio import is_image, read_image


@register("precomputed")
class PrecomputedMethod(FusionMethod):
    """Fused images read from a folder instead of computed (``kind = precomputed``)."""

    kind = "precomputed"
    option_names = ("folder",)

    def __init__(self, name=None, folder: str | None = None, **options):
        if not folder:
            raise ConfigError("a precomputed method needs `folder: PATH`", f"fusion.methods.{name}")
        super().__init__(name=name, folder=str(folder), **options)
        self.folder = Path(folder)

    def fuse_arrays(self, ir, vis):
        raise TypeError(f"{self.name} is precomputed: its images are looked up by name "
                        "(use pipeline.fusion.stage.fuse_samples)")

    def input_files(self) -> list[Path]:
        return [self.folder]

    def dataset_folder(self, dataset: str | None) -> Path:
        if dataset and (self.folder / dataset).is_dir():
            return self.folder / dataset
        if not self.folder.is_dir():
            raise DataError(f"folder of precomputed fused images for method {self.name!r} not found",
                            self.folder)
        return self.folder

    def locate(self, names: Iterable[str], dataset: str | None = None) -> dict[str, Path]:
        """``{name: path}`` for every name; DataError naming the folder when any is missing or ambiguous."""
        folder = self.dataset_folder(dataset)
        by_stem: dict[str, list[Path]] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and is_image(path):
                by_stem.setdefault(path.stem, []).append(path)
        names = list(names)
        missing = [n for n in names if n not in by_stem]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DataError(f"{len(missing)} of {len(names)} fused images missing for method "
                            f"{self.name!r} (found {len(by_stem)} images): {shown}", folder)
        doubled = [n for n in names if len(by_stem[n]) > 1]
        if doubled:
            raise DataError(f"several images share the name {doubled[0]!r} "
                            f"({', '.join(p.name for p in by_stem[doubled[0]])})", folder)
        return {n: by_stem[n][0] for n in names}

    @staticmethod
    def load(path: Path, shape: tuple[int, int]) -> np.ndarray:
        """The fused image (uint8 H×W or H×W×3), checked to be ``shape`` (H, W)."""
        image = read_image(path, mode="auto")
        if image.shape[:2] != tuple(shape):
            raise DataError(f"fused image is {image.shape[1]}×{image.shape[0]} but its sources are "
                            f"{shape[1]}×{shape[0]} (width×height)", path)
        return image
