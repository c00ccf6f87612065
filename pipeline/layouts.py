"""Loaders for the native dataset layouts (see :mod:`pipeline.datasets` for the abstraction).

Each ``load_<kind>(root, **options)`` returns an unfinished :class:`~pipeline.datasets.PairDataset`
whose structural problems are collected in ``problems``; :func:`pipeline.datasets.load_dataset`
finishes it (sorting, empty check, strict raising).
"""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.dataset_files import (IGNORE_INDEX, M3FD_CLASSES, MSRS_BOX_CLASSES, MSRS_SEG_CLASSES,
                                    Box, PairDataset, Sample, image_header_size, images_by_stem,
                                    match_pairs, read_class_names, read_coco_boxes, read_voc_boxes,
                                    read_yolo_boxes, seeded_split, split_from_lists)
from pipeline.errors import DataError


def _yolo_boxes_for(stems: list[str], folder: Path, images: dict[str, Path], file_classes,
                    classes, unknown, skipped, problems) -> dict[str, tuple[Box, ...]]:
    """YOLO txt boxes for ``stems`` from ``folder``; an absent txt is a background image."""
    out = {}
    for stem in stems:
        txt = folder / f"{stem}.txt"
        if not txt.is_file():
            out[stem] = ()
            continue
        try:
            size = image_header_size(images[stem])
            out[stem] = read_yolo_boxes(txt, file_classes, classes, size, unknown, skipped)
        except DataError as err:
            problems.append(err)
            out[stem] = ()
    return out


def _resolve_split(split, stems: list[str], meta: Path | None, problems) -> tuple[dict[str, str], str]:
    """Split assignment from ``meta/*.txt`` lists, a seeded rule, or everything in ``all``."""
    if isinstance(split, dict) and split.get("rule", "random") == "random":
        ratios = tuple(split.get("ratios", (8, 1, 1)))
        names = tuple(split.get("names", ("train", "val", "test")[: len(ratios)]))
        seed = int(split.get("seed", 0))
        return seeded_split(stems, ratios, seed, names), f"random ratios={list(ratios)} seed={seed}"
    if split in (None, "meta", "lists") and meta is not None and meta.is_dir():
        return split_from_lists(meta, stems, problems), f"lists {meta}"
    if split in (None, "all"):
        return {s: "all" for s in stems}, "all"
    if split in ("meta", "lists"):
        problems.append(DataError("split lists folder not found", meta))
        return {}, "missing"
    raise DataError(f"unknown split setting {split!r}; use 'meta', 'all' or "
                    "{rule: random, ratios: [...], seed: N}")


def load_msrs(root: Path, box_view: str | None = "auto", box_classes=MSRS_BOX_CLASSES,
              unknown_classes: str = "error", splits=("train", "val", "test")) -> PairDataset:
    """MSRS: ``<root>/<split>/{ir,vi,Segmentation_labels}``; boxes (optional) from
    ``<root>/<split>/labels`` or ``<root>/detection_labels/<box_view>/<split>`` (``box_view`` one of
    infrared/visible/fusion; ``auto`` prefers fusion). Class names from a ``classes.txt`` next to
    the labels (or ``detection_labels/classes.txt``)."""
    problems: list[DataError] = []
    skipped: dict[str, int] = {}
    samples: list[Sample] = []
    box_classes = tuple(box_classes)
    found_boxes = False
    for split in splits:
        folder = root / split
        if not folder.is_dir():
            continue
        ir, vi = images_by_stem(folder / "ir"), images_by_stem(folder / "vi")
        stems = match_pairs(ir, vi, problems)
        labels_dir = folder / "Segmentation_labels"
        labels = images_by_stem(labels_dir) if labels_dir.is_dir() else {}
        if labels_dir.is_dir():   # a label folder (even an empty one) must label every pair
            for stem in stems:
                if stem not in labels:
                    problems.append(DataError(f"no segmentation label for pair {stem!r}", labels_dir))
        box_dir, class_file = _msrs_box_folder(root, split, box_view)
        boxes = {}
        if box_dir is not None:
            found_boxes = True
            file_classes = read_class_names(class_file) if class_file else box_classes
            boxes = _yolo_boxes_for(stems, box_dir, vi, file_classes, box_classes, unknown_classes,
                                    skipped, problems)
        for stem in stems:
            samples.append(Sample(stem, split, ir[stem], vi[stem], labels.get(stem),
                                  boxes.get(stem) if found_boxes else None,
                                  (box_dir / f"{stem}.txt") if box_dir is not None else None))
    if not any((root / s).is_dir() for s in splits):
        problems.append(DataError("no train/ or test/ folder (expected the MSRS layout "
                                  "<root>/{train,test}/{ir,vi,Segmentation_labels})", root))
    return PairDataset("msrs", "msrs", root, samples, box_classes if found_boxes else (),
                       MSRS_SEG_CLASSES, IGNORE_INDEX, problems, skipped, "folders")


def _msrs_box_folder(root: Path, split: str, view: str | None) -> tuple[Path | None, Path | None]:
    if view in (None, "none"):
        return None, None
    inside = root / split / "labels"
    if view == "auto" and inside.is_dir():
        cls = inside / "classes.txt"
        return inside, cls if cls.is_file() else None
    views = ("fusion", "infrared", "visible") if view == "auto" else (view,)
    for name in views:
        folder = root / "detection_labels" / name / split
        if folder.is_dir():
            cls = root / "detection_labels" / "classes.txt"
            return folder, cls if cls.is_file() else None
    return None, None


def load_m3fd(root: Path, classes=M3FD_CLASSES, boxes: str = "auto", split=None,
              unknown_classes: str = "error", coco_file=None) -> PairDataset:
    """M3FD: ``<root>/{Ir,Vis}``; boxes from ``Annotation/*.xml`` (VOC), ``labels/*.txt`` (YOLO,
    names in ``labels/classes.txt``, else ``classes`` order) or COCO JSON (``coco_file``: a file, a
    folder or a list; default ``annotations.json``); split from ``meta/`` lists, a seeded rule,
    ``all``, or ``coco`` (the train/val/test word in each COCO file's name)."""
    problems: list[DataError] = []
    skipped: dict[str, int] = {}
    classes = tuple(classes)
    ir, vi = images_by_stem(root / "Ir"), images_by_stem(root / "Vis")
    stems = match_pairs(ir, vi, problems)
    source = boxes
    coco_paths = _coco_paths(root, coco_file)
    if source == "auto":
        source = ("voc" if (root / "Annotation").is_dir() else "yolo" if (root / "labels").is_dir()
                  else "coco" if any(p.is_file() for p in coco_paths) else "none")
    coco_split: dict[str, str] = {}
    box_map: dict[str, tuple[Box, ...]] = {}
    box_files: dict[str, Path] = {}
    if source == "voc":
        for stem in stems:
            xml = root / "Annotation" / f"{stem}.xml"
            box_files[stem] = xml
            if not xml.is_file():
                box_map[stem] = ()
                continue
            try:
                box_map[stem] = read_voc_boxes(xml, classes, unknown_classes, skipped)
            except DataError as err:
                problems.append(err)
                box_map[stem] = ()
    elif source == "yolo":
        cls_file = root / "labels" / "classes.txt"
        file_classes = read_class_names(cls_file) if cls_file.is_file() else classes
        box_map = _yolo_boxes_for(stems, root / "labels", vi, file_classes, classes,
                                  unknown_classes, skipped, problems)
        box_files = {s: root / "labels" / f"{s}.txt" for s in stems}
    elif source == "coco":
        for path in coco_paths:
            try:
                coco = read_coco_boxes(path, classes, unknown_classes, skipped)
            except DataError as err:
                problems.append(err)
                continue
            token = re.search(r"(train|val|test)", path.stem.lower())
            for stem in set(coco) & set(stems):
                if stem in box_files:
                    problems.append(DataError(f"image {stem!r} is also in {box_files[stem].name}", path))
                    continue
                box_map[stem], box_files[stem] = coco[stem], path
                if token:
                    coco_split[stem] = token.group(1)
        box_map = {s: box_map.get(s, ()) for s in stems}
    elif source != "none":
        raise DataError(f"unknown box source {source!r}; use auto, voc, yolo, coco or none", root)
    if split == "coco":   # split named by the COCO files (m3fd-train.json, m3fd-val.json, ...)
        for stem in stems:
            if stem not in coco_split:
                problems.append(DataError(f"pair {stem!r} is in no train/val/test COCO file", root))
        assignment, split_source = coco_split, "coco files " + ", ".join(p.name for p in coco_paths)
    else:
        assignment, split_source = _resolve_split(split, stems, root / "meta", problems)
    samples = [Sample(s, assignment[s], ir[s], vi[s], None,
                      box_map.get(s, ()) if source != "none" else None, box_files.get(s))
               for s in stems if s in assignment]
    return PairDataset("m3fd", "m3fd", root, samples, classes if source != "none" else (), (),
                       IGNORE_INDEX, problems, skipped, split_source)


def _coco_paths(root: Path, coco_file) -> list[Path]:
    """COCO JSON files: ``coco_file`` is a file, a folder of ``*.json`` or a list of them (relative
    paths may be given relative to the root); default ``<root>/annotations.json``."""
    items = coco_file if isinstance(coco_file, (list, tuple)) else [coco_file or "annotations.json"]
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if not path.is_absolute() and not path.exists():
            path = root / path
        paths += sorted(path.glob("*.json")) if path.is_dir() else [path]
    return paths


def load_pairs(root: Path, ir_dir: str = "ir", vis_dir: str = "vi", split="all") -> PairDataset:
    """Generic registered pairs ``<root>/ir`` + ``<root>/vi`` (RoadScene, TNO)."""
    problems: list[DataError] = []
    ir, vi = images_by_stem(root / ir_dir), images_by_stem(root / vis_dir)
    stems = match_pairs(ir, vi, problems)
    assignment, split_source = _resolve_split(split, stems, None, problems)
    samples = [Sample(s, assignment[s], ir[s], vi[s]) for s in stems]
    return PairDataset(root.name, "pairs", root, samples, problems=problems, split_source=split_source)


_FUNCTIONAL = ("CT", "PET", "SPECT")
_PREFIXED = re.compile(r"^(mri)?(ct|pet|spect)(\d+)$", re.IGNORECASE)


def load_medical(root: Path, split="all") -> PairDataset:
    """Medical pairs: ``MRI/`` + ``CT|PET|SPECT/`` with equal names, or MLFuse's single-folder
    naming (``ct3.png`` with ``mrict3.png``). A root holding several such sets (``CT_MRI/``,
    ``MRI_PET/`` ...) loads them all, names prefixed with the set's folder name.
    MRI goes to the ``vis`` slot (img1, structural), the functional image to ``ir`` (img2)."""
    problems: list[DataError] = []
    samples: list[Sample] = []
    if _is_medical_set(root):
        samples = _medical_set(root, "", problems)
    else:
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            if _is_medical_set(sub):
                samples += _medical_set(sub, f"{sub.name}_", problems)
    names = [s.name for s in samples]
    assignment, split_source = _resolve_split(split, names, None, problems)
    samples = [Sample(s.name, assignment[s.name], s.ir, s.vis) for s in samples]
    return PairDataset(root.name, "medical", root, samples, problems=problems, split_source=split_source)


def _is_medical_set(folder: Path) -> bool:
    if (folder / "MRI").is_dir() and any((folder / f).is_dir() for f in _FUNCTIONAL):
        return True
    return any(_PREFIXED.match(p.stem) for p in folder.iterdir() if p.is_file())


def _medical_set(folder: Path, prefix: str, problems: list[DataError]) -> list[Sample]:
    if (folder / "MRI").is_dir():
        functional = [f for f in _FUNCTIONAL if (folder / f).is_dir()]
        if len(functional) != 1:
            raise DataError(f"expected one functional folder next to MRI/, found {functional}", folder)
        mri = images_by_stem(folder / "MRI")
        fun = images_by_stem(folder / functional[0])
        stems = match_pairs(fun, mri, problems, ir_label=functional[0], vis_label="MRI")
        return [Sample(f"{prefix}{s}", "all", fun[s], mri[s]) for s in stems]
    mri, fun = {}, {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        match = _PREFIXED.match(path.stem)
        if match:
            key = f"{match.group(2).lower()}{match.group(3)}"
            (mri if match.group(1) else fun)[key] = path
    stems = match_pairs(fun, mri, problems, ir_label="CT/PET/SPECT", vis_label="MRI")
    return [Sample(f"{prefix}{s}", "all", fun[s], mri[s]) for s in stems]
