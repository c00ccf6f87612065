"""Procedural demo data in the native MSRS and M3FD layouts (what ``make demo`` runs on).

Each pair is one street scene (:mod:`pipeline.demo_scene`, :mod:`pipeline.demo_objects`): a road in
perspective under a skyline, people, cars, lamps, cones, car stops and bumps on the ground plane,
seen by day or by night. The modalities are complementary, and so that a *cheap* downstream model
learns it (the demo's sensitivity check, docs/demo_budget.md) the split is clean: people are warm in
infrared and dressed like their surroundings in visible (:data:`CAMO`), so they are the
infrared-only class; painted cold objects (lamps in M3FD; cones, curbs, car stops, bumps in MSRS)
leave only a faint trace in infrared and are the visible-only classes; cars show in both. Night
visible images are dark and noisy. So an infrared-only or visible-only detector/segmenter each miss
a class that the other sees. Of the native class lists, M3FD scenes hold People, Car, Lamp and MSRS
scenes car, person, curve, car_stop, color_cone, bump (no bike, no guardrail: absent classes are
left out of mIoU, :mod:`pipeline.segmentation.metrics`).

Written layouts (read by the ordinary loaders of :mod:`pipeline.datasets`)::

    <out>/MSRS/{train,test}/{ir,vi,Segmentation_labels}/<00001D|00002N>.png   ir: 1 channel, vi: RGB
    <out>/MSRS/detection_labels/fusion/{train,test}/<name>.txt + classes.txt   YOLO person/bicycle/car
    <out>/M3FD/{Ir,Vis}/<00000>.png, Annotation/<00000>.xml (VOC), meta/{train,val,test}.txt
    <out>/MultiFocus/{near,far}/<00000>.png   multi-focus pairs (``multifocus_pairs``; kind ``pairs``)
    <out>/MSRS/{train,test}/evidence/<name>.png, <out>/M3FD/evidence/<name>.png  evidence maps
    <out>/manifest.json, <out>/README.txt                                     generator parameters

Evidence maps (:mod:`pipeline.demo_evidence`; read by the ``oracle`` control): per pixel 0 = no
labelled region or both/neither modality shows it, 1 = infrared only, 2 = visible only. The rule
that finds them: ``<folder of the visible image>/../evidence/<name>.png``.

Every pair draws from its own generator seeded with ``(seed, dataset, index)``, so output is
byte-identical for a seed whatever the thread scheduling. The folder is built beside ``out`` and
swapped in at the end (an interrupted run leaves the previous data intact).
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

import pipeline
from pipeline.datasets import MSRS_BOX_CLASSES, MSRS_SEG_CLASSES, seeded_split
from pipeline.demo_evidence import evidence_map
from pipeline.demo_objects import draw_background, place_objects
from pipeline.demo_scene import DemoObject, Scene, object_boxes, render
from pipeline.errors import ConfigError

GENERATOR = "fusebench demo-data"
M3FD_DEMO_CLASSES = {"person": "People", "car": "Car", "lamp": "Lamp"}   # scene kind -> M3FD name
MSRS_DEMO_BOXES = {"person": "person", "bike": "bicycle", "car": "car"}  # scene kind -> MSRS box name
_CODES = {"m3fd": 1, "msrs": 2, "multifocus": 3}
#: share of people dressed like their surroundings: people are the demo's infrared-only class
CAMO = 1.0
#: Gaussian σ (px) of the out-of-focus half of a multi-focus pair
MULTIFOCUS_BLUR = 2.0


@dataclass(frozen=True)
class DemoConfig:
    """Generator parameters (``params.yaml`` ``demo_data``)."""

    seed: int = 0
    m3fd_pairs: int = 120
    msrs_train: int = 80
    msrs_test: int = 40
    height: int = 192
    width: int = 256
    night_fraction: float = 0.4
    m3fd_split: tuple[float, float, float] = (0.6, 0.15, 0.25)
    multifocus_pairs: int = 0

    def __post_init__(self):
        if self.height % 16 or self.width % 16 or min(self.height, self.width) < 64:
            raise ConfigError(f"demo image size {self.height}x{self.width} must be at least 64x64 and "
                              "divisible by 16 (DeepLabV3+ downsamples by 16)")
        if min(self.m3fd_pairs, self.msrs_train, self.msrs_test, self.multifocus_pairs) < 0:
            raise ConfigError("demo pair counts must be >= 0")
        if not 0.0 <= self.night_fraction <= 1.0:
            raise ConfigError(f"night_fraction {self.night_fraction} must lie in [0, 1]")

    @classmethod
    def from_params(cls, section: dict | None, **overrides) -> "DemoConfig":
        values = {k: v for k, v in (section or {}).items() if k in cls.__dataclass_fields__}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "m3fd_split" in values:
            values["m3fd_split"] = tuple(float(v) for v in values["m3fd_split"])
        return cls(**values)


def make_scene(config: DemoConfig, dataset: str, index: int):
    """Render pair ``index`` of ``dataset`` (``m3fd`` or ``msrs``).

    Returns ``(ir, vis, label, objects, night)``: uint8 ``H×W`` infrared, ``H×W×3`` RGB visible,
    ``H×W`` MSRS class ids, the labelled :class:`DemoObject` list with boxes, and the night flag."""
    return make_scene_with_evidence(config, dataset, index)[:5]


def make_scene_with_evidence(config: DemoConfig, dataset: str, index: int):
    """:func:`make_scene` plus the scene's evidence map (uint8 ``H×W``, :mod:`pipeline.demo_evidence`)."""
    rng = np.random.default_rng([config.seed, _CODES[dataset], index])
    scene = Scene(rng, config.height, config.width, bool(rng.random() < config.night_fraction), camo=CAMO)
    msrs = dataset == "msrs"
    draw_background(scene, msrs)
    n = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    if msrs:
        counts = {"car_stop": n(1, 2), "car_rear": n(0, 2), "car_side": n(0, 1), "person": n(1, 3),
                  "cone": n(1, 3), "lamp": n(0, 1)}
        labelled = set(MSRS_DEMO_BOXES) | {"cone", "car_stop", "guardrail"}
    else:
        counts = {"car_rear": n(0, 2), "car_side": n(0, 1), "person": n(1, 3), "lamp": n(1, 2)}
        labelled = set(M3FD_DEMO_CLASSES)
    place_objects(scene, counts, labelled)
    ir, vis = render(scene)
    objects = object_boxes(scene)
    kept = np.isin(scene.inst, [o.inst for o in objects]) * scene.inst   # labelled objects with a box
    evidence = evidence_map(ir, vis, scene.label if msrs else np.zeros_like(scene.label), kept, msrs)
    return ir, vis, scene.label, objects, scene.night, evidence


def _png(image: np.ndarray) -> bytes:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok, "PNG encoding failed"
    return buffer.tobytes()


def _voc_xml(name: str, objects: list[DemoObject], height: int, width: int) -> str:
    lines = ["<annotation>", f"  <filename>{name}.png</filename>",
             f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for obj in objects:
        x1, y1, x2, y2 = obj.box
        lines += ["  <object>", f"    <name>{M3FD_DEMO_CLASSES[obj.kind]}</name>",
                  "    <difficult>0</difficult>",
                  f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
                  "</bndbox>", "  </object>"]
    return "\n".join(lines + ["</annotation>", ""])


def _yolo_txt(objects: list[DemoObject], height: int, width: int) -> str:
    lines = []
    for obj in objects:
        x1, y1, x2, y2 = obj.box
        cid = MSRS_BOX_CLASSES.index(MSRS_DEMO_BOXES[obj.kind])
        lines.append(f"{cid} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return "".join(line + "\n" for line in lines)


def _write_msrs_pair(config: DemoConfig, root: Path, index: int, split: str) -> dict:
    ir, vis, label, objects, night, evidence = make_scene_with_evidence(config, "msrs", index)
    name = f"{index:05d}{'N' if night else 'D'}"
    (root / split / "evidence" / f"{name}.png").write_bytes(_png(evidence))
    (root / split / "ir" / f"{name}.png").write_bytes(_png(ir))
    (root / split / "vi" / f"{name}.png").write_bytes(_png(vis))
    (root / split / "Segmentation_labels" / f"{name}.png").write_bytes(_png(label))
    boxes = [o for o in objects if o.kind in MSRS_DEMO_BOXES]
    (root / "detection_labels" / "fusion" / split / f"{name}.txt").write_text(
        _yolo_txt(boxes, config.height, config.width))
    return {"name": name, "split": split, "night": night, "evidence": _evidence_share(evidence),
            "boxes": [MSRS_DEMO_BOXES[o.kind] for o in boxes],
            "pixels": np.bincount(label.ravel(), minlength=len(MSRS_SEG_CLASSES)).tolist()}


def _write_m3fd_pair(config: DemoConfig, root: Path, index: int) -> dict:
    ir, vis, _label, objects, night, evidence = make_scene_with_evidence(config, "m3fd", index)
    name = f"{index:05d}"
    (root / "evidence" / f"{name}.png").write_bytes(_png(evidence))
    (root / "Ir" / f"{name}.png").write_bytes(_png(np.repeat(ir[:, :, None], 3, axis=2)))
    (root / "Vis" / f"{name}.png").write_bytes(_png(vis))
    (root / "Annotation" / f"{name}.xml").write_text(_voc_xml(name, objects, config.height,
                                                              config.width))
    return {"name": name, "night": night, "evidence": _evidence_share(evidence),
            "boxes": [M3FD_DEMO_CLASSES[o.kind] for o in objects]}


def multifocus_pair(config: DemoConfig, index: int) -> tuple[np.ndarray, np.ndarray]:
    """``(near, far)`` uint8 grey: one sharp scene (the visible luma of an M3FD-style day scene seeded by
    ``(seed, "multifocus", index)``) blurred (Gaussian σ :data:`MULTIFOCUS_BLUR`) in its right half for
    the near-focus image and in its left half for the far-focus image, with a 16-px linear blend at
    the seam. The sharp half of each is the scene itself, so a multi-focus method can recover it."""
    from pipeline.fusion.colour import luma

    sharp = luma(make_scene(replace(config, night_fraction=0.0), "multifocus", index)[1]).astype(np.float32)
    blurred = cv2.GaussianBlur(sharp, (0, 0), MULTIFOCUS_BLUR)
    w = config.width
    ramp = np.clip((np.arange(w, dtype=np.float32) - (w / 2 - 8)) / 16, 0, 1)[None, :]  # 0 left, 1 right
    near = sharp * (1 - ramp) + blurred * ramp
    far = blurred * (1 - ramp) + sharp * ramp
    return tuple(np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8) for x in (near, far))


def _write_multifocus_pair(config: DemoConfig, root: Path, index: int) -> str:
    name = f"{index:05d}"
    near, far = multifocus_pair(config, index)
    (root / "near" / f"{name}.png").write_bytes(_png(near))
    (root / "far" / f"{name}.png").write_bytes(_png(far))
    return name


def _evidence_share(evidence: np.ndarray) -> list[int]:
    """Pixel counts of the evidence codes 0, 1, 2."""
    return np.bincount(evidence.ravel(), minlength=3)[:3].tolist()


def _evidence_total(records: list[dict]) -> dict[str, int]:
    total = np.sum([r["evidence"] for r in records], axis=0) if records else np.zeros(3, int)
    return dict(zip(("none_or_both", "ir_only", "vis_only"), (int(v) for v in total)))


def _count(records: list[dict], key: str = "boxes") -> dict[str, int]:
    out: dict[str, int] = {}
    for record in records:
        for cls in record[key]:
            out[cls] = out.get(cls, 0) + 1
    return dict(sorted(out.items()))


def _build(config: DemoConfig, out: Path, workers: int) -> dict:
    msrs, m3fd = out / "MSRS", out / "M3FD"
    for split in ("train", "test"):
        for sub in ("ir", "vi", "Segmentation_labels", "evidence"):
            (msrs / split / sub).mkdir(parents=True)
        (msrs / "detection_labels" / "fusion" / split).mkdir(parents=True)
    for sub in ("Ir", "Vis", "Annotation", "meta", "evidence"):
        (m3fd / sub).mkdir(parents=True)
    if config.multifocus_pairs:
        for sub in ("near", "far"):
            (out / "MultiFocus" / sub).mkdir(parents=True)
    (msrs / "detection_labels" / "classes.txt").write_text(
        "".join(f"{i} {c}\n" for i, c in enumerate(MSRS_BOX_CLASSES)))
    n_msrs = config.msrs_train + config.msrs_test
    with ThreadPoolExecutor(max_workers=workers) as pool:
        msrs_records = list(pool.map(
            lambda i: _write_msrs_pair(config, msrs, i, "train" if i <= config.msrs_train else "test"),
            range(1, n_msrs + 1)))
        m3fd_records = list(pool.map(lambda i: _write_m3fd_pair(config, m3fd, i),
                                     range(config.m3fd_pairs)))
        list(pool.map(lambda i: _write_multifocus_pair(config, out / "MultiFocus", i),
                      range(config.multifocus_pairs)))
    assignment = seeded_split([r["name"] for r in m3fd_records], config.m3fd_split, config.seed)
    for split in ("train", "val", "test"):
        names = sorted(n for n, s in assignment.items() if s == split)
        (m3fd / "meta" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    pixels = np.sum([r["pixels"] for r in msrs_records], axis=0) if msrs_records else \
        np.zeros(len(MSRS_SEG_CLASSES), int)
    manifest = {
        "generator": GENERATOR, "fusebench_version": pipeline.__version__,
        "params": {**asdict(config), "m3fd_split": list(config.m3fd_split)},
        "msrs": {"train": config.msrs_train, "test": config.msrs_test,
                 "night": sum(r["night"] for r in msrs_records),
                 "seg_classes": list(MSRS_SEG_CLASSES),
                 "pixels_per_class": dict(zip(MSRS_SEG_CLASSES, pixels.tolist())),
                 "box_classes": list(MSRS_BOX_CLASSES), "boxes_per_class": _count(msrs_records),
                 "evidence_pixels": _evidence_total(msrs_records)},
        "m3fd": {"pairs": config.m3fd_pairs, "night": sum(r["night"] for r in m3fd_records),
                 "classes": list(M3FD_DEMO_CLASSES.values()),
                 "split": {s: sum(v == s for v in assignment.values()) for s in ("train", "val", "test")},
                 "boxes_per_class": _count(m3fd_records), "evidence_pixels": _evidence_total(m3fd_records)},
        "multifocus": {"pairs": config.multifocus_pairs, "blur_sigma": MULTIFOCUS_BLUR},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (out / "README.txt").write_text(_readme(manifest))
    return manifest


def _readme(manifest: dict) -> str:
    p = manifest["params"]
    return (f"FuseBench demo data, generated by `python -m pipeline demo-data` (seed {p['seed']}).\n"
            "Synthetic registered infrared/visible street scenes; NOT real data, for demos and tests.\n\n"
            f"MSRS/  MSRS layout, {p['msrs_train']} train + {p['msrs_test']} test pairs of "
            f"{p['height']}x{p['width']}, names ending D (day) / N (night);\n"
            "       Segmentation_labels: class ids 0..8 = " + ", ".join(manifest["msrs"]["seg_classes"])
            + ";\n       detection_labels/fusion/<split>/*.txt: YOLO boxes (person, bicycle, car).\n"
            f"M3FD/  M3FD layout, {p['m3fd_pairs']} pairs (Ir stored as 3 equal channels), VOC boxes "
            "in Annotation/ with classes " + ", ".join(manifest["m3fd"]["classes"])
            + f",\n       meta/{{train,val,test}}.txt: seeded split {p['m3fd_split']}.\n"
            + (f"MultiFocus/  {p['multifocus_pairs']} multi-focus pairs (near/, far/): one sharp grey scene "
               "blurred in its right half (near) or left half (far); `pairs` kind, ir = far, vis = near.\n"
               if p.get("multifocus_pairs") else "") + "\n"
            "Evidence maps (for the `oracle` positive control): MSRS/<split>/evidence/<name>.png and\n"
            "M3FD/evidence/<name>.png, one 8-bit grey PNG per scene, the size of the pair. Per pixel:\n"
            "  0 = no labelled region there, or both or neither modality shows the region,\n"
            "  1 = only the infrared image shows it (e.g. warm people at night),\n"
            "  2 = only the visible image shows it (e.g. painted cold objects: cones, bumps, curbs).\n"
            "Regions: the labelled objects (M3FD boxes / MSRS instances) and, in MSRS, the labelled\n"
            "segmentation regions without an instance (curbs, bumps). A modality shows a region when its\n"
            "contrast-to-noise ratio CNR against the unlabelled ring around it passes the Rose criterion\n"
            "(CNR * sqrt(pixels) >= 5) and is >= 2x the other modality's (pipeline/demo_evidence.py).\n"
            "Pixel counts per code: manifest.json.\n\n"
            "Generator parameters and label statistics: manifest.json.\n")


def generate(out: str | Path, config: DemoConfig = DemoConfig(), workers: int | None = None) -> dict:
    """Generate the demo data into ``out`` (replacing earlier demo data there) and return the
    manifest. Refuses to replace a folder that is not FuseBench demo data."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("output path exists and is not a folder", out)
    if out.exists() and any(out.iterdir()):
        try:
            previous = json.loads((out / "manifest.json").read_text()).get("generator")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous != GENERATOR:
            raise ConfigError("refusing to replace a non-empty folder that is not FuseBench demo data "
                              "(no manifest.json from demo-data); choose another --out", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = out.with_name(f".{out.name}.tmp-{os.getpid()}"), out.with_name(f".{out.name}.old-{os.getpid()}")
    for path in (tmp, old):
        shutil.rmtree(path, ignore_errors=True)
    try:
        manifest = _build(config, tmp, workers or min(4, os.cpu_count() or 1))
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return manifest
