"""Dataset records and the file readers the layout loaders share (:mod:`pipeline.layouts`):
:class:`Sample`, :class:`PairDataset`, boxes, labels, splits, pair matching.

Re-exported by :mod:`pipeline.datasets` (the abstraction and its entry points,
:func:`~pipeline.datasets.load_dataset`); its own module so that :mod:`pipeline.layouts`
and :mod:`pipeline.datasets` do not import each other.
"""
from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.imageio import is_image, read_image, read_label_image

M3FD_CLASSES = ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")
MSRS_SEG_CLASSES = ("unlabelled", "car", "person", "bike", "curve", "car_stop", "guardrail",
                    "color_cone", "bump")
MSRS_BOX_CLASSES = ("person", "bicycle", "car")
IGNORE_INDEX = 255
KINDS = ("msrs", "m3fd", "pairs", "medical")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels, ``x1 < x2``, ``y1 < y2``, with its class name."""

    cls: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Sample:
    """One registered pair. ``boxes`` is ``None`` when the dataset has no box labels at all and an
    empty tuple for a background image of a labelled dataset."""

    name: str
    split: str
    ir: Path
    vis: Path
    seg_label: Path | None = None
    boxes: tuple[Box, ...] | None = None
    box_source: Path | None = None


@dataclass
class PairDataset:
    """A loaded dataset: sorted samples plus what is needed to interpret their labels."""

    name: str
    kind: str
    root: Path
    samples: list[Sample]
    box_classes: tuple[str, ...] = ()
    seg_classes: tuple[str, ...] = ()
    ignore_index: int = IGNORE_INDEX
    problems: list[DataError] = field(default_factory=list)
    skipped_boxes: dict[str, int] = field(default_factory=dict)
    split_source: str = "folders"

    def split(self, *names: str) -> list[Sample]:
        """Samples of the given split(s), sorted by name."""
        return [s for s in self.samples if s.split in names]

    @property
    def splits(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for sample in self.samples:
            out.setdefault(sample.split, []).append(sample.name)
        return out

    def by_name(self, name: str) -> Sample:
        for sample in self.samples:
            if sample.name == name:
                return sample
        raise KeyError(f"{self.name}: no sample named {name!r}")

    def manifest(self) -> dict:
        """The split actually used, as written next to results (``split_manifest.json``)."""
        return {"dataset": self.name, "kind": self.kind, "root": str(self.root),
                "split_source": self.split_source, "splits": self.splits,
                "box_classes": list(self.box_classes), "seg_classes": list(self.seg_classes)}


# --------------------------------------------------------------------------------------------
# reading one pair and its labels


def read_pair(sample: Sample, mode: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Read ``(ir, vis)`` as uint8 arrays and check they have the same height and width."""
    ir = read_image(sample.ir, mode)
    vis = read_image(sample.vis, mode)
    check_pair_sizes(sample, ir.shape, vis.shape)
    return ir, vis


def check_pair_sizes(sample: Sample, ir_shape: tuple[int, ...], vis_shape: tuple[int, ...]) -> None:
    """Raise :class:`DataError` naming the infrared file unless both images are ``H×W`` alike."""
    if tuple(ir_shape[:2]) != tuple(vis_shape[:2]):
        raise DataError(f"size mismatch: infrared is {ir_shape[1]}x{ir_shape[0]} but visible "
                        f"{sample.vis.name} is {vis_shape[1]}x{vis_shape[0]} (pairs must be registered)",
                        sample.ir)


def read_segmentation(sample: Sample, n_classes: int, image_shape: tuple[int, int] | None = None,
                      ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Read a class-id label PNG, checking its size and that every id is ``< n_classes`` or ignore."""
    if sample.seg_label is None:
        raise DataError("no segmentation label for this image", sample.vis)
    label = read_label_image(sample.seg_label)
    if image_shape is not None:
        check_label_size(sample, label.shape, image_shape)
    values = np.unique(label)
    bad = [int(v) for v in values if v >= n_classes and v != ignore_index]
    if bad:
        raise DataError(f"label id(s) {bad} outside the class list 0..{n_classes - 1} "
                        f"(ignore id {ignore_index})", sample.seg_label)
    return label


def check_label_size(sample: Sample, label_shape: tuple[int, ...], image_shape: tuple[int, ...],
                     image: Path | None = None) -> None:
    """Raise :class:`DataError` naming the label file (and ``image``, the file it is paired with,
    when given) unless the label has its image's height and width."""
    if tuple(label_shape[:2]) != tuple(image_shape[:2]):
        which = f"its image {image}" if image else "its image"
        raise DataError(f"label is {label_shape[1]}x{label_shape[0]} but {which} is "
                        f"{image_shape[1]}x{image_shape[0]}", sample.seg_label)


def check_boxes(sample: Sample, width: int, height: int) -> list[DataError]:
    """Problems with a sample's boxes given its image size (empty list when all are fine).

    Half a pixel of slack is allowed at the border (VOC boxes often end at ``width``)."""
    problems = []
    where = sample.box_source or sample.vis
    for box in sample.boxes or ():
        text = f"{box.cls} box ({box.x1:g}, {box.y1:g}, {box.x2:g}, {box.y2:g})"
        if box.x2 <= box.x1 or box.y2 <= box.y1:
            problems.append(DataError(f"{text} has non-positive size", where))
        elif box.x1 < -0.5 or box.y1 < -0.5 or box.x2 > width + 0.5 or box.y2 > height + 0.5:
            problems.append(DataError(f"{text} lies outside the {width}x{height} image", where))
    return problems


# --------------------------------------------------------------------------------------------
# box files


def _map_class(name: str, classes: tuple[str, ...], source: Path, unknown: str,
               skipped: dict[str, int]) -> str | None:
    lookup = {c.lower(): c for c in classes}
    key = name.strip().lower()
    if key in lookup:
        return lookup[key]
    if unknown == "skip":
        skipped[name] = skipped.get(name, 0) + 1
        return None
    raise DataError(f"unknown class {name!r} (configured classes: {', '.join(classes)})", source)


def read_voc_boxes(path: Path, classes: tuple[str, ...], unknown: str = "error",
                   skipped: dict[str, int] | None = None) -> tuple[Box, ...]:
    """Pascal-VOC XML: ``object/name`` and ``object/bndbox/{xmin,ymin,xmax,ymax}`` in pixels."""
    skipped = {} if skipped is None else skipped
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise DataError(f"cannot parse VOC XML ({err})", path) from err
    boxes = []
    for obj in root.iter("object"):
        cls = _map_class(obj.findtext("name", ""), classes, path, unknown, skipped)
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError("object without bndbox", path)
        try:
            coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError) as err:
            raise DataError("bndbox with a missing or non-numeric coordinate", path) from err
        if cls is not None:
            boxes.append(Box(cls, *coords))
    return tuple(boxes)


def read_yolo_boxes(path: Path, file_classes: tuple[str, ...], classes: tuple[str, ...],
                    size: tuple[int, int], unknown: str = "error",
                    skipped: dict[str, int] | None = None) -> tuple[Box, ...]:
    """YOLO txt: ``class cx cy w h`` normalised to [0, 1]; ids index ``file_classes``; ``size=(H, W)``."""
    skipped = {} if skipped is None else skipped
    height, width = size
    boxes = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DataError(f"line {lineno}: expected 'class cx cy w h', got {line.strip()!r}", path)
        try:
            cid = int(float(parts[0]))
            cx, cy, w, h = (float(v) for v in parts[1:])
        except ValueError as err:
            raise DataError(f"line {lineno}: non-numeric value", path) from err
        if not 0 <= cid < len(file_classes):
            raise DataError(f"line {lineno}: class id {cid} outside the class list "
                            f"0..{len(file_classes) - 1}", path)
        cls = _map_class(file_classes[cid], classes, path, unknown, skipped)
        if cls is not None:
            boxes.append(Box(cls, (cx - w / 2) * width, (cy - h / 2) * height,
                             (cx + w / 2) * width, (cy + h / 2) * height))
    return tuple(boxes)


def read_coco_boxes(path: Path, classes: tuple[str, ...], unknown: str = "error",
                    skipped: dict[str, int] | None = None) -> dict[str, tuple[Box, ...]]:
    """COCO JSON → ``{file stem: boxes}``; ``bbox`` is ``[x, y, w, h]`` in pixels."""
    skipped = {} if skipped is None else skipped
    try:
        coco = json.loads(path.read_text())
        cats = {c["id"]: c["name"] for c in coco["categories"]}
        images = {im["id"]: Path(im["file_name"]).stem for im in coco["images"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"not a COCO detection JSON ({err})", path) from err
    out: dict[str, list[Box]] = {stem: [] for stem in images.values()}
    for ann in coco.get("annotations", []):
        if ann.get("image_id") not in images or ann.get("category_id") not in cats:
            raise DataError(f"annotation {ann.get('id')} names an unknown image or category", path)
        cls = _map_class(cats[ann["category_id"]], classes, path, unknown, skipped)
        if cls is not None:
            x, y, w, h = (float(v) for v in ann["bbox"])
            out[images[ann["image_id"]]].append(Box(cls, x, y, x + w, y + h))
    return {k: tuple(v) for k, v in out.items()}


def read_class_names(path: Path) -> tuple[str, ...]:
    """``classes.txt``: one name per line, optionally prefixed by its id (``0 person``)."""
    names = []
    for line in path.read_text().splitlines():
        parts = line.strip().split(maxsplit=1)
        if parts:
            names.append(parts[1] if len(parts) == 2 and parts[0].isdigit() else parts[0])
    return tuple(names)


# --------------------------------------------------------------------------------------------
# pairing and splits


def images_by_stem(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the images in a folder (error on two files with one stem)."""
    if not folder.is_dir():
        raise DataError("folder not found", folder)
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_image(path):
            if path.stem in out:
                raise DataError(f"two images share the name {path.stem!r}: {out[path.stem].name}, "
                                f"{path.name}", folder)
            out[path.stem] = path
    return out


def match_pairs(ir: dict[str, Path], vis: dict[str, Path], problems: list[DataError],
                ir_label: str = "infrared", vis_label: str = "visible") -> list[str]:
    """Stems present in both folders, sorted; a stem in only one is reported as a missing partner."""
    for stem in sorted(set(ir) - set(vis)):
        problems.append(DataError(f"missing partner image: no {vis_label} image named {stem!r}", ir[stem]))
    for stem in sorted(set(vis) - set(ir)):
        problems.append(DataError(f"missing partner image: no {ir_label} image named {stem!r}", vis[stem]))
    return sorted(set(ir) & set(vis))


def seeded_split(names: list[str], ratios: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0,
                 split_names: tuple[str, ...] = ("train", "val", "test")) -> dict[str, str]:
    """Deterministic random split: shuffle the sorted names with ``seed``, cut by ``ratios``."""
    order = sorted(names)
    random.Random(seed).shuffle(order)
    total = float(sum(ratios))
    bounds, acc = [], 0.0
    for ratio in ratios:
        acc += ratio / total
        bounds.append(round(acc * len(order)))
    out, start = {}, 0
    for split, stop in zip(split_names, bounds):
        for name in order[start:stop]:
            out[name] = split
        start = stop
    return out


def split_from_lists(meta: Path, names: list[str], problems: list[DataError]) -> dict[str, str]:
    """Read ``meta/{train,val,test}.txt``; names listed there but absent are problems."""
    out: dict[str, str] = {}
    present = set(names)
    for split in ("train", "val", "test"):
        path = meta / f"{split}.txt"
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            stem = Path(line.strip()).stem
            if not stem:
                continue
            if stem not in present:
                problems.append(DataError(f"split list names {stem!r}, which has no image pair", path))
            elif stem in out:
                problems.append(DataError(f"{stem!r} is already in split {out[stem]!r}", path))
            else:
                out[stem] = split
    for stem in names:
        if stem not in out:
            problems.append(DataError(f"pair {stem!r} is in no split list", meta))
    return out


def finish_dataset(dataset: PairDataset, strict: bool) -> PairDataset:
    if not dataset.samples:
        dataset.problems.append(DataError("empty dataset (no registered pairs found)", dataset.root))
    if strict and dataset.problems:
        raise dataset.problems[0]
    dataset.samples.sort(key=lambda s: (s.name, s.split))
    return dataset


def image_header(path: Path) -> tuple[int, int, str]:
    """``(height, width, PIL mode)`` from the file header only, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise DataError("image file not found", path)
    if Path(path).stat().st_size == 0:
        raise DataError("image file is empty (0 bytes)", path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            mode = image.mode
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image header ({err.__class__.__name__})", path) from err
    return height, width, mode


def image_header_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file header only (fast; used to scale YOLO boxes)."""
    return image_header(path)[:2]
