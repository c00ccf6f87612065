"""One dataset abstraction for every registered-pair set FuseBench reads.

A :class:`PairDataset` is a sorted list of :class:`Sample` (one registered infrared/visible pair,
its split and its labels), built by one loader per native layout (``../shared/spec/protocols.md``):

==========  =====================================================================================
kind        layout
==========  =====================================================================================
``msrs``    ``<root>/{train,test}/{ir,vi,Segmentation_labels}/<name>.png``; optional YOLO boxes in
            ``<root>/detection_labels/<view>/<split>/<name>.txt`` (+ ``classes.txt``) or
            ``<root>/<split>/labels/<name>.txt``.
``m3fd``    ``<root>/{Ir,Vis}/<name>.png``; boxes from ``Annotation/<name>.xml`` (Pascal VOC),
            ``labels/<name>.txt`` (YOLO, class names from ``labels/classes.txt`` or ``classes``)
            or COCO JSON (``annotations.json``, or ``coco_file``: a file, folder or list); split
            from ``meta/{train,val,test}.txt``, a seeded rule (``split: {rule: random, ratios:
            [train, val, test], seed}``) or ``split: coco`` (per-split COCO files' names).
``pairs``   ``<root>/{ir,vi}/<name>.*`` (RoadScene, TNO); every pair in split ``all`` unless a
            seeded rule is given.
``medical`` ``<root>/MRI/`` + ``<root>/{CT,PET,SPECT}/`` with equal names, or MLFuse's single-folder
            naming ``ctN.png`` + ``mrictN.png`` (also ``petN``/``mripetN``, ``spectN``/``mrispectN``).
            MRI is the structural image (``vis`` slot), CT/PET/SPECT the functional one (``ir``).
==========  =====================================================================================

Rules kept everywhere:

* pairs are matched by file stem and sorted by name, never by listing order;
* boxes are mapped to the configured class list **by name** (M3FD class-id order differs between
  repositories); an unknown name is an error, or is skipped and counted with
  ``unknown_classes="skip"``;
* an image without a box file is a valid background image only when the dataset has a box source;
* structural problems (missing partner, unknown class, split list naming an absent image, empty
  dataset) raise :class:`~pipeline.errors.DataError` naming the file, or are collected into
  ``dataset.problems`` with ``strict=False`` (what ``fusebench validate`` uses);
* :func:`read_pair` normalises storage (grey or equal-channel → ``H×W``, colour → ``H×W×3`` RGB, see
  :mod:`pipeline.imageio`) and checks the two sizes agree.
"""
from __future__ import annotations

import random
from pathlib import Path

from pipeline import layouts
# the records and readers, re-exported (pipeline.layouts imports them from their own module)
from pipeline.dataset_files import (Box, IGNORE_INDEX, KINDS, M3FD_CLASSES, MSRS_BOX_CLASSES,
                                    MSRS_SEG_CLASSES, PairDataset, Sample, check_boxes, check_label_size,
                                    check_pair_sizes, finish_dataset, image_header, image_header_size,
                                    images_by_stem, match_pairs, read_class_names, read_coco_boxes,
                                    read_pair, read_segmentation, read_voc_boxes, read_yolo_boxes,
                                    seeded_split, split_from_lists)
from pipeline.errors import DataError


def load_dataset(kind: str, root: str | Path, name: str | None = None, strict: bool = True,
                 where: str | None = None, **options) -> PairDataset:
    """Load a dataset of ``kind`` (``msrs``, ``m3fd``, ``pairs``, ``medical``) from ``root``.

    ``options`` are the loader's keyword arguments (see :mod:`pipeline.layouts`), e.g.
    ``classes``, ``unknown_classes="skip"``, ``split={"rule": "random", "ratios": [8, 1, 1], "seed": 0}``,
    plus ``subset`` / ``subset_seed`` (:func:`take_subset`) for every kind.
    With ``strict=False`` problems are collected in ``dataset.problems`` instead of raised. An
    option the loader does not take is a :class:`ConfigError` naming it and ``where`` (the params
    section, default ``datasets.<name>``).
    """
    import inspect

    from pipeline.errors import ConfigError

    loaders = {"msrs": layouts.load_msrs, "m3fd": layouts.load_m3fd, "pairs": layouts.load_pairs,
               "medical": layouts.load_medical}
    if kind not in loaders:
        raise DataError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}", root)
    accepted = (set(inspect.signature(loaders[kind]).parameters) - {"root"}) | {"subset", "subset_seed"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"{where or f'datasets.{name or kind}'}: unknown key(s) {unknown} for a {kind!r} "
                          f"dataset; known: {sorted(accepted | {'kind', 'root', 'task'})}")
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset root folder not found", root)
    subset, subset_seed = options.pop("subset", None), options.pop("subset_seed", 0)
    dataset = loaders[kind](root, **options)
    dataset.name = name or dataset.name
    return take_subset(finish_dataset(dataset, strict), subset, subset_seed)


def take_subset(dataset: PairDataset, subset, seed: int = 0) -> PairDataset:
    """Keep at most ``subset`` pairs per split (an int for every split, or ``{split: count}``;
    splits not named keep all their pairs), chosen by a seeded shuffle of each split's sorted
    names: small real-data runs (the ``shared`` profile) with a fixed, representative choice."""
    if subset is None:
        return dataset
    if isinstance(subset, bool) or not isinstance(subset, (int, dict)):
        raise DataError(f"subset must be a count or {{split: count}}, got {subset!r}", dataset.root)
    counts = subset if isinstance(subset, dict) else {split: subset for split in dataset.splits}
    for split, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise DataError(f"subset: split {split!r} needs a positive count, got {count!r}", dataset.root)
    keep: set[str] = set()
    for split, names in dataset.splits.items():
        chosen = sorted(names)
        if split in counts:
            random.Random(f"{seed}:{split}").shuffle(chosen)
            chosen = chosen[:counts[split]]
        keep.update(f"{split}/{n}" for n in chosen)
    dataset.samples = [s for s in dataset.samples if f"{s.split}/{s.name}" in keep]
    return dataset


def load_configured(params: dict, dataset_name: str, strict: bool = True) -> PairDataset:
    """Load dataset ``dataset_name`` as configured in ``params["datasets"][name]``
    (``{kind, root, ...loader options}``)."""
    from pipeline.errors import ConfigError

    config = dict((params.get("datasets") or {}).get(dataset_name) or {})
    if not config:
        raise ConfigError(f"dataset {dataset_name!r} is not configured under 'datasets' in params.yaml")
    kind = config.pop("kind", dataset_name)
    root = config.pop("root", None)
    if root is None:
        raise ConfigError(f"dataset {dataset_name!r} has no 'root' in params.yaml")
    config.pop("task", None)
    return load_dataset(kind, root, name=dataset_name, strict=strict, **config)
