"""The fusion stage: fuse pairs with any registered method, with colour handling, resume and timing.

Public functions (used by the CLI and by ``flows/fuse.py``):

* :func:`fuse_pair(method, ir, vis, gray=False) -> uint8` and :func:`fuse_pair_raw` (also returns the
  method's float output): ``ir``/``vis`` are uint8 arrays as :func:`pipeline.imageio.read_image`
  returns them (H×W grey or H×W×3 RGB) or image paths. Colour rule: :mod:`pipeline.fusion.colour`.
* :func:`fuse_samples(method, samples, out_dir, gray=False, dataset=None) -> stats`: writes
  ``out_dir/<sample.name>.png`` for every :class:`pipeline.datasets.Sample` (atomic writes; an
  existing output with the sources' size is kept, so an interrupted run resumes); tqdm progress;
  returns ``{"images", "computed", "skipped", "seconds_per_image", "wall_seconds_per_image",
  "gflops"}`` where seconds are measured on the fusion call only (reading/writing excluded) and
  ``gflops`` is the mean per image at the images' sizes (0 for non-network methods).

The ``fusion`` params section (``methods``, ``datasets``, ``out``, ``results``, ``gray``) is read by
``flows/fuse.py``; where fused images live and how they are found is :mod:`pipeline.fused`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pipeline.datasets import Sample, read_pair
from pipeline.errors import DataError
from pipeline.fusion import colour
from pipeline.fusion.registry import FusionMethod, get_method
from pipeline.imageio import read_image, write_image

CHUNK = 8  # pairs read and fused per call (lets network methods batch same-size pairs)


def read_sources(ir_path: str | Path, vis_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair given by paths as stored (grey H×W or RGB H×W×3); the sizes must agree
    (:func:`pipeline.datasets.read_pair`, which raises a DataError naming both files otherwise)."""
    ir_path, vis_path = Path(ir_path), Path(vis_path)
    return read_pair(Sample(ir_path.stem, "all", ir_path, vis_path))


def _as_array(image) -> np.ndarray:
    return read_image(image) if isinstance(image, (str, Path)) else np.asarray(image)


def compose(method: FusionMethod, raw: np.ndarray, ir: np.ndarray, vis: np.ndarray, context,
            gray: bool = False) -> np.ndarray:
    """The 8-bit image a method's raw output becomes (:meth:`FusionMethod.finish`)."""
    return method.finish(raw, ir, vis, context, gray)


def fuse_pair_raw(method: FusionMethod, ir, vis, gray: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(8-bit fused image, raw float output) of one registered pair (see the module docstring)."""
    ir, vis = _as_array(ir), _as_array(vis)
    if ir.shape[:2] != vis.shape[:2]:
        raise DataError(f"size mismatch: infrared {ir.shape[:2]} vs visible {vis.shape[:2]}")
    inputs, context = method.prepare(ir, vis)
    raw = method.fuse_batch([inputs])[0]
    return method.finish(raw, ir, vis, context, gray), raw


def fuse_pair(method: FusionMethod, ir, vis, gray: bool = False) -> np.ndarray:
    """8-bit fused image (RGB when a source is colour and ``gray`` is false, else grey)."""
    return fuse_pair_raw(method, ir, vis, gray)[0]


def _done(out: Path, shape: tuple[int, int]) -> bool:
    from pipeline.datasets import image_header_size

    try:
        return out.is_file() and image_header_size(out) == tuple(shape)
    except DataError:
        return False


def _precomputed_image(method, path: Path, ir: np.ndarray, vis: np.ndarray, gray: bool) -> np.ndarray:
    fused = method.load(path, ir.shape[:2])
    if fused.ndim == 3:
        return colour.luma(fused) if gray else fused
    cbcr = colour.split_pair(ir, vis)[2]
    return colour.merge(fused, None if gray else cbcr)


def fuse_samples(method: FusionMethod, samples: Iterable, out_dir: str | Path, gray: bool = False,
                 dataset: str | None = None, progress: bool = True, population: Sequence | None = None) -> dict:
    """Fuse every sample into ``out_dir/<name>.png`` (resumable); returns timing stats.

    ``population``: every sample of the dataset when ``samples`` is one batch of it; a control
    (``kind: control``) is bound to it (the ``shuffled`` control draws its donors from it)."""
    from tqdm import tqdm

    from pipeline.datasets import image_header_size

    samples = list(samples)
    out_dir = Path(out_dir)
    located = method.locate([s.name for s in samples], dataset) if method.kind == "precomputed" else {}
    if method.kind == "control":
        method.bind(list(population) if population is not None else samples)
    shapes = {s.name: image_header_size(s.vis) for s in samples}
    todo = [s for s in samples if not _done(out_dir / f"{s.name}.png", shapes[s.name])]
    compute = wall = 0.0
    flops_cache: dict[tuple[int, int], float] = {}
    flops_total = 0.0
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), unit="img",
               desc=f"fuse {dataset or ''}/{method.name}", disable=not progress)
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        t0 = time.perf_counter()
        pairs = [read_pair(s) for s in chunk]
        if method.kind in ("precomputed", "control"):
            t1 = time.perf_counter()
            images = [_precomputed_image(method, located[s.name], ir, vis, gray) if method.kind == "precomputed"
                      else method.sample_image(s, ir, vis, gray) for s, (ir, vis) in zip(chunk, pairs)]
            compute += time.perf_counter() - t1
        else:
            prepared = [method.prepare(ir, vis) for ir, vis in pairs]
            t1 = time.perf_counter()
            raws = method.fuse_batch([inputs for inputs, _ in prepared])
            compute += time.perf_counter() - t1
            images = [method.finish(raw, ir, vis, context, gray)
                      for raw, (ir, vis), (_, context) in zip(raws, pairs, prepared)]
        for sample, image in zip(chunk, images):
            shape = image.shape[:2]
            if shape not in flops_cache:
                flops_cache[shape] = method.gflops(*shape)
            flops_total += flops_cache[shape]
            write_image(out_dir / f"{sample.name}.png", image)
        wall += time.perf_counter() - t0
        bar.update(len(chunk))
    bar.close()
    n = len(todo)
    return {"images": len(samples), "computed": n, "skipped": len(samples) - n,
            "seconds_per_image": compute / n if n else None,
            "wall_seconds_per_image": wall / n if n else None,
            "gflops": flops_total / n if n else None}


def mean_gflops(method: FusionMethod, samples: Sequence) -> float:
    """Mean of ``method.gflops(h, w)`` over the samples' sizes (read from the file headers)."""
    from pipeline.datasets import image_header_size

    sizes: dict[tuple[int, int], int] = {}
    for sample in samples:
        shape = image_header_size(sample.vis)
        sizes[shape] = sizes.get(shape, 0) + 1
    return sum(method.gflops(*k) * v for k, v in sizes.items()) / max(1, len(samples))


def fusion_record(method: FusionMethod, dataset, stats: dict, previous: dict | None, params: dict) -> dict:
    """The timing/efficiency record of ``method`` on ``dataset`` (a PairDataset) from
    :func:`fuse_samples` stats; ``previous`` (the record already on disk) keeps the measured timing
    when everything was resumed."""
    from pipeline.results import provenance

    if not stats["computed"] and previous:  # everything resumed: keep the measured timing
        stats = {**stats, **{k: previous.get(k) for k in ("seconds_per_image", "wall_seconds_per_image", "gflops")}}
    if stats["gflops"] is None:
        stats["gflops"] = mean_gflops(method, dataset.samples)
    return {"method": method.name, "dataset": dataset.name, "images": stats["images"],
            "seconds_per_image": stats["seconds_per_image"],
            "wall_seconds_per_image": stats["wall_seconds_per_image"],
            "params": method.params_count(), "gflops": float(stats["gflops"]),
            "kind": method.kind, "computed": stats["computed"], "skipped": stats["skipped"],
            "weights": method.metadata().get("weights"),
            "provenance": provenance(params, split=dataset.manifest().get("splits"),
                                     method=method.metadata())}
