"""Where fused images live and how every stage finds them: the one rule.

``fuse@<method>`` writes ``<fusion.out>/<dataset>/<method>/<sample name>.png`` (``fusion.out`` in
``params.yaml``, ``data/fused``; the other stages' ``fused_root`` keys are YAML aliases of it); the
metrics, detection, segmentation and report stages read them back through :func:`fused_images`: one image per sample of the dataset, found by its name (stem,
any image suffix, so a ``precomputed`` folder of ``.jpg`` files works too); a missing folder, a
missing image or two images sharing a name is a :class:`~pipeline.errors.DataError` naming the
folder and (up to 10 of) the names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from pipeline.errors import DataError


def fused_folder(root: str | Path, dataset: str, method: str) -> Path:
    """``<root>/<dataset>/<method>``."""
    return Path(root) / dataset / method


def fused_images(samples: Iterable, folder: str | Path) -> dict[str, Path]:
    """``{sample name: fused image}`` for every sample (see the module docstring for the rule)."""
    from pipeline.datasets import images_by_stem

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("fused image folder not found (run the fusion stage for this method first)", folder)
    found = images_by_stem(folder)
    names = [s.name for s in samples]
    missing = [n for n in names if n not in found]
    if missing:
        shown = ", ".join(missing[:10]) + (f" ... (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        raise DataError(f"{len(missing)} of {len(names)} images missing from the fused folder: {shown}", folder)
    return {n: found[n] for n in names}
