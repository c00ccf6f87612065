"""Training data of every learned fusion method: pairs, optional per-pair maps, seeded aligned crops.

A training pair is one registered image pair from the dataset layer (:class:`pipeline.datasets.Sample`):
``ir`` (infrared / CT / PET / SPECT, or the far-focus image of a multi-focus pair) and ``vis``
(visible / MRI, or near focus), plus optional per-pixel **maps** a recipe asks for by name
(:data:`MAP_KINDS`; MLFuse reads ``vsm_ir``, the VSM stage's saliency map of the infrared image,
``<vsm_root>/<set>/img2/<name>.npy``, never recomputed here; Diff-IF reads ``prior``, the prior
stage's Fusion_K image ``<prior_root>/<set>/<name>.<ext>``, as 8-bit luma like the sources).

Fixes of the official loaders (spec ``mlfuse.md`` sections 10-11, ``methods.md`` sections 9-10):

* pairs come from the dataset layer (matched by file stem) and are **sorted** by ``(set, name)``;
* crop positions and the shuffle order are drawn from generators seeded by ``(seed, epoch, index)``
  (:func:`crop_origin`, :func:`epoch_order`), so a run is reproducible and a resumed run draws exactly
  what an uninterrupted one would — no global RNG state is involved;
* a training set that cannot fill one batch with ``drop_last`` and a crop larger than an image raise a
  :class:`DataError` naming the sets / the file instead of dividing by zero or failing deep in torch.

Per-sample processing: 8-bit grey images (colour files reduced to PIL "L" luma with
:func:`pipeline.fusion.colour.luma`, as the official loaders and the fusion methods do), one
``crop×crop`` window at the same position in both images and every map (top-left drawn uniformly from
``0…W−crop`` and ``0…H−crop``, both ends inclusive), values ``/255``. An epoch visits every pair
``crops_per_pair`` times (item ``i`` is pair ``i // crops_per_pair``), each time at its own crop; the
published recipes that cut fixed patches (FusionGAN, PMGI: stride-14 patches) are approximated by random
crops, ``crops_per_pair`` patches per image and epoch. VSM maps: the official ones were 8-bit PNGs, so by
default (``vsm_bits: 8``) a map is quantised as they were written, ``⌊255·V + 0.5⌋ / 255``;
``vsm_bits: null`` keeps the float map.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from pipeline.errors import DataError
from pipeline.fusion.colour import luma
from pipeline.imageio import read_image

# stream ids for the seeded generators (kept apart so changing one never shifts the other)
_SHUFFLE_STREAM = 1
_CROP_STREAM = 2

#: Per-pair maps a recipe may request: name -> VSM image slot (``img2`` = the infrared/functional one).
MAP_KINDS = {"vsm_ir": "img2", "vsm_vis": "img1", "prior": None}
PRIOR_MAP = "prior"   # an image (any suffix) of the prior stage, not a VSM map


@dataclass(frozen=True)
class TrainPair:
    """One training pair: ``ir`` and ``vis`` image files plus named map files (``.npy``)."""

    set: str
    name: str
    ir: Path
    vis: Path
    maps: tuple[tuple[str, Path], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.set}/{self.name}"

    def map(self, name: str) -> Path:
        return dict(self.maps)[name]

    def files(self) -> list[Path]:
        """Every file whose content decides the training (images, then maps)."""
        return [self.ir, self.vis, *(path for _, path in self.maps)]


def load_training_sets(params: Mapping, sets, splits: Sequence[str] = ("train", "all")) -> dict[str, list]:
    """Samples of each training set, restricted to ``splits``.

    ``sets`` is a list of dataset names configured under ``datasets:`` in params.yaml, or a mapping
    ``name -> {kind, root, ...loader options}`` defining them inline (or ``name -> null`` to use the
    configured one). Raises :class:`DataError` naming the root when a set has no pair in ``splits``.
    """
    from pipeline.datasets import load_configured, load_dataset

    entries = sets if isinstance(sets, Mapping) else {name: None for name in (sets or [])}
    out = {}
    for name, spec in entries.items():
        if spec:
            spec = dict(spec)
            spec.pop("task", None)
            dataset = load_dataset(spec.pop("kind"), spec.pop("root"), name=name, where=f"sets.{name}", **spec)
        else:
            dataset = load_configured(dict(params), name)
        samples = dataset.split(*splits)
        if not samples:
            raise DataError(f"training set {name!r} has no pairs in split(s) {list(splits)} "
                            f"(it has {sorted(dataset.splits)})", dataset.root)
        out[name] = samples
    return out


def map_file(map_root: str | Path, map_name: str, set_name: str, name: str) -> Path:
    """Where the VSM stage writes map ``map_name`` (:data:`MAP_KINDS`) of pair ``name`` of ``set_name``."""
    from pipeline.vsm import map_path

    if map_name == PRIOR_MAP:
        from pipeline.imageio import IMAGE_SUFFIXES

        folder = Path(map_root) / set_name
        found = [folder / f"{name}{ext}" for ext in IMAGE_SUFFIXES if (folder / f"{name}{ext}").is_file()]
        return found[0] if found else folder / f"{name}.png"
    return map_path(map_root, set_name, name, MAP_KINDS[map_name])


def training_pairs(sets: Mapping[str, Iterable], map_root: str | Path | None = None,
                   maps: Sequence[str] = ()) -> list[TrainPair]:
    """Training pairs from any mix of pair sets, sorted by ``(set, name)``.

    ``sets`` maps a set name (the VSM stage's ``<trainset>`` folder) to its samples — objects with
    ``.name``, ``.ir`` and ``.vis`` such as :class:`pipeline.datasets.Sample`. ``maps`` names the
    per-pair maps to attach (read from ``map_root``). Raises :class:`DataError` naming the file when a
    map is missing.
    """
    pairs = []
    for set_name in sorted(sets):
        for sample in sets[set_name]:
            attached = []
            for map_name in maps:
                path = map_file(map_root, map_name, set_name, sample.name)
                if not path.is_file():
                    stage = "prior" if map_name == PRIOR_MAP else "vsm"
                    raise DataError(f"{'prior image' if stage == 'prior' else 'VSM map ' + map_name} for pair "
                                    f"{sample.name!r} of training set {set_name!r} not found; run the "
                                    f"{stage} stage first", path)
                attached.append((map_name, path))
            pairs.append(TrainPair(set_name, sample.name, Path(sample.ir), Path(sample.vis), tuple(attached)))
    pairs.sort(key=lambda p: (p.set, p.name))
    return pairs


def read_vsm(path: str | Path, shape: tuple[int, int], bits: int | None = 8) -> np.ndarray:
    """Read a VSM ``.npy`` map, check it is H×W in [0, 1] with the image's ``shape``.

    ``bits=8`` returns ``uint8`` ``⌊255·V + 0.5⌋`` (the 8-bit maps of the official recipe);
    ``bits=None`` returns the map as float32.
    """
    path = Path(path)
    try:
        vsm = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read VSM map ({err})", path) from err
    if vsm.shape != tuple(shape):
        raise DataError(f"VSM map has shape {vsm.shape} but its image is {tuple(shape)}", path)
    if not np.all(np.isfinite(vsm)) or vsm.min() < 0 or vsm.max() > 1:
        raise DataError("VSM map must hold finite values in [0, 1]", path)
    if bits is None:
        return vsm.astype(np.float32)
    if bits != 8:
        raise DataError(f"vsm_bits must be 8 or null, got {bits!r}", path)
    from pipeline.vsm import to_uint8

    return to_uint8(vsm)


def read_map_image(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """An image map (the prior's Fusion_K file, colour or grey) as 8-bit luma, checked to be ``shape``."""
    image = luma(read_image(path))
    if image.shape != tuple(shape):
        raise DataError(f"image is {image.shape[1]}x{image.shape[0]} but its pair is {shape[1]}x{shape[0]}", path)
    return image


@dataclass
class TrainArrays:
    """Training pairs held in memory: uint8 grey images and named maps (uint8 or float32)."""

    pairs: list[TrainPair]
    ir: list[np.ndarray] = field(default_factory=list)
    vis: list[np.ndarray] = field(default_factory=list)
    maps: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pairs)


def load_arrays(pairs: Sequence[TrainPair], crop: int, vsm_bits: int | None = 8,
                crop_param: str = "crop") -> TrainArrays:
    """Read every pair as 8-bit grey plus its maps; check sizes agree and fit one crop.

    ``crop_param`` is the parameter named in the error when an image is smaller than the crop.
    """
    out = TrainArrays(list(pairs))
    for pair in pairs:
        ir = luma(read_image(pair.ir))
        vis = luma(read_image(pair.vis))
        if ir.shape != vis.shape:
            raise DataError(f"size mismatch: {pair.ir.name} is {ir.shape[1]}x{ir.shape[0]} "
                            f"but its partner is {vis.shape[1]}x{vis.shape[0]}", pair.vis)
        if min(ir.shape) < crop:
            raise DataError(f"image is {ir.shape[1]}x{ir.shape[0]}, smaller than the "
                            f"{crop}x{crop} training crop (lower {crop_param})", pair.vis)
        out.ir.append(ir)
        out.vis.append(vis)
        for map_name, path in pair.maps:
            out.maps.setdefault(map_name, []).append(read_map_image(path, ir.shape) if map_name == PRIOR_MAP
                                                     else read_vsm(path, ir.shape, vsm_bits))
    return out


def describe_sets(pairs: Sequence[TrainPair]) -> str:
    counts: dict[str, int] = {}
    for pair in pairs:
        counts[pair.set] = counts.get(pair.set, 0) + 1
    return ", ".join(f"{name} ({n} pairs)" for name, n in sorted(counts.items())) or "no sets"


def batches_per_epoch(n: int, batch_size: int, drop_last: bool, pairs: Sequence[TrainPair] = (),
                      where: str = "train") -> int:
    """Number of batches per epoch for ``n`` items; a :class:`DataError` naming the sets if it would be
    zero (``where`` is the params section named in the hint)."""
    count = n // batch_size if drop_last else -(-n // batch_size)
    if count == 0:
        folder = pairs[0].vis.parent if pairs else None
        raise DataError(f"training set {describe_sets(pairs)} has {n} pairs, fewer than batch_size "
                        f"{batch_size}, and drop_last is on: an epoch would have no batch. Add pairs, "
                        f"lower {where}.batch_size or set {where}.drop_last: false", folder)
    return count


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *(int(s) for s in stream)])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of the ``n`` items in ``epoch`` (a permutation seeded by ``(seed, epoch)``)."""
    return _rng(seed, _SHUFFLE_STREAM, epoch).permutation(n)


def epoch_batches(n: int, batch_size: int, drop_last: bool, seed: int, epoch: int,
                  shuffle: bool = True) -> list[np.ndarray]:
    """Index batches of one epoch: the seeded permutation (or ``0…n−1`` without ``shuffle``) cut into
    ``batch_size`` chunks."""
    order = epoch_order(n, seed, epoch) if shuffle else np.arange(n)
    stop = (n // batch_size) * batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def crop_origin(height: int, width: int, crop: int, seed: int, epoch: int, index: int) -> tuple[int, int]:
    """Top-left ``(y, x)`` of the crop of item ``index`` in ``epoch``: uniform over ``0…H−crop`` and
    ``0…W−crop`` (both inclusive), from a generator seeded by ``(seed, epoch, index)``."""
    rng = _rng(seed, _CROP_STREAM, epoch, index)
    x = int(rng.integers(0, width - crop + 1))
    y = int(rng.integers(0, height - crop + 1))
    return y, x


def make_batch(arrays: TrainArrays, indices: Sequence[int], crop: int, seed: int, epoch: int,
               device: str | torch.device = "cpu", crops_per_pair: int = 1) -> dict[str, torch.Tensor]:
    """``{"ir", "vis", <maps>}`` float32 tensors N×1×crop×crop in [0, 1] for the items ``indices``
    (item ``i`` is a crop of pair ``i // crops_per_pair``)."""
    sources = {"ir": arrays.ir, "vis": arrays.vis, **arrays.maps}
    stacks: dict[str, list] = {key: [] for key in sources}
    for index in indices:
        index = int(index)
        pair = index // crops_per_pair
        y, x = crop_origin(*arrays.ir[pair].shape, crop, seed, epoch, index)
        window = (slice(y, y + crop), slice(x, x + crop))
        for key, source in sources.items():
            stacks[key].append(source[pair][window])
    out = {}
    for key, stack in stacks.items():
        block = np.stack(stack)[:, None]
        scaled = block.astype(np.float32) / np.float32(255.0) if block.dtype == np.uint8 else block
        out[key] = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32)).to(device)
    return out
