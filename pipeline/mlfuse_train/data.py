"""MLFuse training data: pairs, VSM maps of img2, seeded aligned random crops, batches.

Roles (spec ``mlfuse.md`` section 3): **img1** = the structural image (visible / MRI, the dataset
layer's ``Sample.vis``), **img2** = the thermal / functional image (infrared / CT / PET / SPECT,
``Sample.ir``). The only saliency weight is the VSM of img2, read from the VSM stage's output
``<vsm_root>/<set>/img2/<name>.npy`` (float64 in [0, 1], same H×W as the image; see
:mod:`pipeline.vsm`) — never recomputed here.

Fixes of the official loader (spec section 11, items 9-10 and section 10):

* pairs come from the dataset layer (matched by file stem) and are **sorted** by ``(set, name)``;
* crop positions and the shuffle order are drawn from generators seeded by ``(seed, epoch, index)``
  (:func:`crop_origin`, :func:`epoch_order`), so a run is reproducible and a resumed run draws exactly
  what an uninterrupted one would — no global RNG state is involved;
* a training set that cannot fill one batch with ``drop_last`` raises a :class:`DataError` naming the
  sets (:func:`batches_per_epoch`) instead of dividing by zero.

Per-sample processing follows the recipe: 8-bit grey images (colour files reduced to PIL "L" luma
with :func:`pipeline.fusion.colour.luma`, as the official loader and the ``mlfuse`` method do),
one ``crop×crop`` window at the same position in image, partner and map (top-left drawn uniformly
from ``0…W−crop`` and ``0…H−crop``, both ends inclusive), values ``/255``. The official maps were
8-bit PNGs, so by default (``vsm_bits: 8``) the map is quantised as they were written,
``⌊255·V + 0.5⌋ / 255``; ``vsm_bits: null`` keeps the float map.
"""
from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class TrainPair:
    """One training pair: structural ``img1``, functional ``img2`` and the VSM map of ``img2``."""

    set: str
    name: str
    img1: Path
    img2: Path
    vsm2: Path

    @property
    def key(self) -> str:
        return f"{self.set}/{self.name}"


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
            dataset = load_dataset(spec.pop("kind"), spec.pop("root"), name=name, **spec)
        else:
            dataset = load_configured(dict(params), name)
        samples = dataset.split(*splits)
        if not samples:
            raise DataError(f"training set {name!r} has no pairs in split(s) {list(splits)} "
                            f"(it has {sorted(dataset.splits)})", dataset.root)
        out[name] = samples
    return out


def vsm_path(vsm_root: str | Path, set_name: str, name: str) -> Path:
    """Where the VSM stage writes the map of img2 of pair ``name`` of ``set_name``
    (:func:`pipeline.vsm.map_path`)."""
    from pipeline.vsm import map_path

    return map_path(vsm_root, set_name, name, "img2")


def training_pairs(sets: Mapping[str, Iterable], vsm_root: str | Path) -> list[TrainPair]:
    """Training pairs from any mix of pair sets, sorted by ``(set, name)``.

    ``sets`` maps a set name (the VSM stage's ``<trainset>`` folder) to its samples — objects with
    ``.name``, ``.ir`` and ``.vis`` such as :class:`pipeline.datasets.Sample`. img1 = ``vis``,
    img2 = ``ir``. Raises :class:`DataError` naming the file when a VSM map is missing.
    """
    pairs = []
    for set_name in sorted(sets):
        for sample in sets[set_name]:
            vsm = vsm_path(vsm_root, set_name, sample.name)
            if not vsm.is_file():
                raise DataError(f"VSM map of img2 (infrared/functional) for pair {sample.name!r} of "
                                f"training set {set_name!r} not found; run the vsm stage first", vsm)
            pairs.append(TrainPair(set_name, sample.name, Path(sample.vis), Path(sample.ir), vsm))
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


@dataclass
class TrainArrays:
    """Training pairs held in memory: uint8 grey images and VSM maps (uint8 or float32)."""

    pairs: list[TrainPair]
    img1: list[np.ndarray]
    img2: list[np.ndarray]
    vsm2: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.pairs)


def load_arrays(pairs: Sequence[TrainPair], crop: int, vsm_bits: int | None = 8) -> TrainArrays:
    """Read every pair as 8-bit grey plus its VSM map; check sizes agree and fit one crop."""
    out = TrainArrays(list(pairs), [], [], [])
    for pair in pairs:
        img1 = luma(read_image(pair.img1))
        img2 = luma(read_image(pair.img2))
        if img1.shape != img2.shape:
            raise DataError(f"size mismatch: img2 {pair.img2.name} is {img2.shape[1]}x{img2.shape[0]} "
                            f"but img1 is {img1.shape[1]}x{img1.shape[0]}", pair.img1)
        if min(img1.shape) < crop:
            raise DataError(f"image is {img1.shape[1]}x{img1.shape[0]}, smaller than the "
                            f"{crop}x{crop} training crop", pair.img1)
        out.img1.append(img1)
        out.img2.append(img2)
        out.vsm2.append(read_vsm(pair.vsm2, img1.shape, vsm_bits))
    return out


def describe_sets(pairs: Sequence[TrainPair]) -> str:
    counts: dict[str, int] = {}
    for pair in pairs:
        counts[pair.set] = counts.get(pair.set, 0) + 1
    return ", ".join(f"{name} ({n} pairs)" for name, n in sorted(counts.items())) or "no sets"


def batches_per_epoch(n: int, batch_size: int, drop_last: bool, pairs: Sequence[TrainPair] = ()) -> int:
    """Number of batches per epoch; a :class:`DataError` naming the sets if it would be zero."""
    count = n // batch_size if drop_last else -(-n // batch_size)
    if count == 0:
        where = pairs[0].img1.parent if pairs else None
        raise DataError(f"training set {describe_sets(pairs)} has {n} pairs, fewer than batch_size "
                        f"{batch_size}, and drop_last is on: an epoch would have no batch. Add pairs, "
                        "lower mlfuse.train.batch_size or set mlfuse.train.drop_last: false", where)
    return count


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *(int(s) for s in stream)])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of the ``n`` pairs in ``epoch`` (a permutation seeded by ``(seed, epoch)``)."""
    return _rng(seed, _SHUFFLE_STREAM, epoch).permutation(n)


def epoch_batches(n: int, batch_size: int, drop_last: bool, seed: int, epoch: int) -> list[np.ndarray]:
    """Index batches of one epoch: the seeded permutation cut into ``batch_size`` chunks."""
    order = epoch_order(n, seed, epoch)
    stop = (n // batch_size) * batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def crop_origin(height: int, width: int, crop: int, seed: int, epoch: int, index: int) -> tuple[int, int]:
    """Top-left ``(y, x)`` of the crop of pair ``index`` in ``epoch``: uniform over ``0…H−crop`` and
    ``0…W−crop`` (both inclusive), from a generator seeded by ``(seed, epoch, index)``."""
    rng = _rng(seed, _CROP_STREAM, epoch, index)
    x = int(rng.integers(0, width - crop + 1))
    y = int(rng.integers(0, height - crop + 1))
    return y, x


def make_batch(arrays: TrainArrays, indices: Sequence[int], crop: int, seed: int, epoch: int,
               device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(img1, img2, vsm2)`` float32 tensors N×1×crop×crop in [0, 1] for the pairs ``indices``."""
    stacks: tuple[list, list, list] = ([], [], [])
    for index in indices:
        index = int(index)
        y, x = crop_origin(*arrays.img1[index].shape, crop, seed, epoch, index)
        window = (slice(y, y + crop), slice(x, x + crop))
        for stack, source in zip(stacks, (arrays.img1, arrays.img2, arrays.vsm2)):
            stack.append(source[index][window])
    tensors = []
    for stack in stacks:
        block = np.stack(stack)[:, None]
        scaled = block.astype(np.float32) / np.float32(255.0) if block.dtype == np.uint8 else block
        tensors.append(torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32)).to(device))
    return tensors[0], tensors[1], tensors[2]
