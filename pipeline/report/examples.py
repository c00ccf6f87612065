"""Example scenes for the report: sources, every method's fusion, detection and segmentation overlays.

Scenes are test images (``params.datasets``) that every fusion method fused, picked evenly spaced
through the sorted names (deterministic). Panels come from the stage outputs:

* fused images ``data/fused/<dataset>/<method>/<name>.png``; ``ir``/``vis`` fall back to the source
  images when they have no such folder (the rule the detection and segmentation stages read by);
* detection: the method's input image with the boxes of the first seed's ``predictions.json``
  (predictions with score >= ``report.score_threshold`` in colour, ground truth in white);
* segmentation: the stage's ``overlays/<name>*.png``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from pipeline.errors import FuseBenchError
from pipeline.report.figures import draw_boxes, image_grid, load_panel, load_scaled
from pipeline.report.gains import records_in, seed_dirs
from pipeline.report.load import REFERENCE_METHODS, StageResults, read_json_file


def _fused_path(root: Path, fused_dir: str, dataset: str, method: str, name: str) -> Path:
    return root / fused_dir / dataset / method / f"{name}.png"


def choose_scenes(names: list[str], count: int) -> list[str]:
    """``count`` names evenly spaced through the sorted list (all of them if fewer)."""
    names = sorted(names)
    if count <= 0 or not names:
        return []
    if len(names) <= count:
        return names
    return [names[int(round(i))] for i in np.linspace(0, len(names) - 1, count)]


def _sources(params: dict, dataset: str) -> tuple[dict[str, object], str | None]:
    """Test samples of ``dataset`` by name (``{}`` and a reason when it cannot be loaded)."""
    from pipeline.datasets import load_configured

    try:
        data = load_configured(params, dataset, strict=False)
    except FuseBenchError as err:
        return {}, str(err)
    test = data.split("test") or data.samples
    return {s.name: s for s in test}, None


def dataset_examples(params: dict, results: StageResults, dataset: str, config: dict) -> dict:
    """Figures for one dataset: ``{"scenes": [...], "figures": [(key, caption, jpeg bytes)], "note"}``."""
    root = results.root
    fused_dir = str(config.get("fused_dir", "data/fused"))
    width = int(config.get("panel_width", 320))
    samples, note = _sources(params, dataset)
    fusion_methods = [m for m in results.methods if m not in REFERENCE_METHODS
                      and (root / fused_dir / dataset / m).is_dir()]
    candidates = [n for n in samples if all(_fused_path(root, fused_dir, dataset, m, n).is_file()
                                            for m in fusion_methods)]
    segmentation = results.segmentation.get(dataset) or {}
    with_overlays = [n for n in candidates                 # the stage saves overlays for a few scenes
                     if segmentation and all(_overlay(Path(r["dir"]), n) for r in segmentation.values())]
    scenes = choose_scenes(with_overlays or candidates, int(config.get("example_scenes", 3)))
    if not scenes:
        return {"scenes": [], "figures": [], "note": note or "no test scene has every method's fused image"}

    @functools.cache                                      # the fusion and detection grids share panels
    def scaled(method: str, name: str) -> tuple[np.ndarray, float] | None:
        path = _fused_path(root, fused_dir, dataset, method, name)
        if not path.is_file() and method in REFERENCE_METHODS:
            path = getattr(samples[name], method)
        return load_scaled(path, width)

    def panel(method: str, name: str) -> np.ndarray | None:
        loaded = scaled(method, name)
        return None if loaded is None else loaded[0]

    figures = []
    columns = ["infrared", "visible", *[f"{m} (control)" if m in results.controls else m for m in fusion_methods]]
    rows = [(n, [load_panel(samples[n].ir, width), load_panel(samples[n].vis, width),
                 *[panel(m, n) for m in fusion_methods]]) for n in scenes]
    figures.append(("fusion", f"{dataset}: infrared, visible and every method's fused image", image_grid(rows, columns)))

    detection = results.detection.get(dataset) or {}
    if detection:
        methods = [m for m in results.methods if m in detection]
        threshold = float(config.get("score_threshold", 0.25))
        records = {m: _first_seed_records(Path(detection[m]["dir"])) for m in methods}
        rows = []
        for name in scenes:
            panels = []
            for method in methods:
                found, classes = records[method]
                loaded, record = scaled(method, name), found.get(name)
                ok = loaded is not None and record is not None
                panels.append(draw_boxes(loaded[0], record, loaded[1], threshold, classes) if ok else None)
            rows.append((name, panels))
        figures.append(("detection", f"{dataset}: detections on each method's images (first seed; "
                        f"score >= {threshold}; ground truth in white)", image_grid(rows, methods)))

    if segmentation:                                      # one row per method: overlays are wide
        methods = [m for m in results.methods if m in segmentation]
        rows = [(m, [load_panel(_overlay(Path(segmentation[m]["dir"]), n), 3 * width) for n in scenes])
                for m in methods]
        figures.append(("segmentation", f"{dataset}: segmentation overlays saved by the segmentation stage "
                        "(per scene: image | ground truth | prediction of the first seed)",
                        image_grid(rows, list(scenes), panel_inches=min(6.6, 14.0 / len(scenes)))))
    return {"scenes": scenes, "figures": figures, "note": note}


def _first_seed_records(method_dir: Path) -> tuple[dict[str, dict], list[str]]:
    """The first seed's prediction records by image name, and the class names if the file has them."""
    for seed in seed_dirs(method_dir):
        path = seed / "predictions.json"
        if path.is_file():
            obj = read_json_file(path)
            classes = obj.get("classes", []) if isinstance(obj, dict) else []
            return {str(r["name"]): r for r in records_in(obj, path)}, list(classes)
    return {}, []


def _overlay(method_dir: Path, name: str) -> Path | None:
    folder = method_dir / "overlays"
    exact = folder / f"{name}.png"
    if exact.is_file():
        return exact
    matches = sorted(folder.glob(f"{name}*.png")) if folder.is_dir() else []
    return matches[0] if matches else None

